"""The restated blend skinning (models/skinning.py) that MANO and SMPL share, on MANO.

SMPL's side of it is checked in test_smpl_files.py (against smplx, rounding, buffers loaded
after a forward); these are the same checks on the MANO layer, plus the skinning tensors.
"""

from __future__ import annotations

import contextlib
import io

import pytest
import smplx
import torch
from smplx.utils import Struct

from fasthmr_ros.models.mano import ManoLayer
from fasthmr_ros.models.mano_files import load_mano_file, write_synthetic_mano
from fasthmr_ros.models.skinning import SkinningTensors


@pytest.fixture(scope="module")
def mano_arrays(tmp_path_factory) -> dict:
    return load_mano_file(write_synthetic_mano(tmp_path_factory.mktemp("mano"), seed=3))


def _smplx_mano(arrays: dict, dtype: torch.dtype) -> smplx.MANOLayer:
    with contextlib.redirect_stdout(io.StringIO()):
        return smplx.MANOLayer(model_path="", data_struct=Struct(**arrays), use_pca=False,
                               flat_hand_mean=False, is_rhand=True, dtype=dtype)


def _hand_pose(batch: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    upper = 0.6 * torch.randn(batch, 16, 3, 3, generator=generator).triu(1)
    return torch.linalg.matrix_exp(upper - upper.mT), torch.randn(batch, 10, generator=generator)


def test_mano_equals_smplx_and_rounds_no_worse(mano_arrays) -> None:
    ours = ManoLayer(mano_arrays)
    rot, betas = _hand_pose(3, seed=0)
    vertices, joints = ours(rot[:, :1], rot[:, 1:], betas)
    theirs = _smplx_mano(mano_arrays, torch.float32)(
        global_orient=rot[:, :1], hand_pose=rot[:, 1:], betas=betas)
    torch.testing.assert_close(vertices, theirs.vertices, rtol=0, atol=1e-6)
    tips = theirs.vertices.index_select(1, ours.extra_joints_idxs)
    expected = torch.cat([theirs.joints, tips], dim=1).index_select(1, ours.joint_map)
    torch.testing.assert_close(joints, expected, rtol=0, atol=1e-6)
    truth = _smplx_mano(mano_arrays, torch.float64)(
        global_orient=rot[:, :1].double(), hand_pose=rot[:, 1:].double(),
        betas=betas.double()).vertices
    their_error = (theirs.vertices.double() - truth).abs().max().item()
    our_error = (vertices.double() - truth).abs().max().item()
    assert our_error <= 2.0 * their_error, (our_error, their_error)


def test_mano_follows_buffers_loaded_after_its_first_forward(mano_arrays) -> None:
    layer = ManoLayer(mano_arrays)
    rot, betas = _hand_pose(1, seed=1)
    layer(rot[:, :1], rot[:, 1:], betas)  # builds the skinning tensors
    changed = {**mano_arrays, "v_template": mano_arrays["v_template"] + 0.01,
               "shapedirs": mano_arrays["shapedirs"] * 1.5,
               "posedirs": mano_arrays["posedirs"] * 2.0}
    fresh = ManoLayer(changed)
    layer.load_state_dict(fresh.state_dict())
    for got, want in zip(layer(rot[:, :1], rot[:, 1:], betas),
                         fresh(rot[:, :1], rot[:, 1:], betas), strict=True):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-6)


def test_kinematic_levels_of_mano(mano_arrays) -> None:
    """MANO's tree: the wrist, then five chains of three joints, posed level by level."""
    layer = ManoLayer(mano_arrays)
    tensors = SkinningTensors.build(layer.v_template, layer.shapedirs, layer.posedirs,
                                    layer.J_regressor, layer.parents)
    assert tensors.level_spans == ((1, 6), (6, 11), (11, 16))
    parents = layer.parents.tolist()
    order = tensors.order.tolist()
    for (start, end), places in zip(tensors.level_spans, tensors.level_parents, strict=True):
        previous_start = 0 if start == 1 else start - 5
        for joint, place in zip(order[start:end], places.tolist(), strict=True):
            assert parents[joint] == order[previous_start + place]
    assert (tensors.order[tensors.unorder] == torch.arange(16)).all()
    assert tensors.blend_dirs.shape == (10 + 9 * 15, 778 * 3)


@pytest.mark.parametrize("first", [torch.inference_mode, torch.no_grad])
def test_tensors_built_without_autograd_serve_a_recorded_forward(mano_arrays, first) -> None:
    """A first forward under inference mode (a node) must not spoil training through MANO."""
    layer = ManoLayer(mano_arrays)
    rot, betas = _hand_pose(2, seed=2)
    with first():
        expected, _ = layer(rot[:, :1], rot[:, 1:], betas)
    betas = betas.clone().requires_grad_(True)
    vertices, joints = layer(rot[:, :1], rot[:, 1:], betas)
    (vertices.square().sum() + joints.sum()).backward()
    assert betas.grad is not None and torch.isfinite(betas.grad).all()
    assert betas.grad.abs().sum() > 0
    torch.testing.assert_close(vertices.detach(), expected, rtol=0, atol=0)
