"""Safe SMPL loading (chumpy-like pickles), conversion, J19 and mean parameters, convert-smpl."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import smplx
import torch
from smplx.utils import Struct

from fasthmr_ros.cli.main import main
from fasthmr_ros.models.model_files import UnsafeFileError
from fasthmr_ros.models.smpl import SmplLayer
from fasthmr_ros.models.smpl_files import (
    SMPL_FILE,
    convert_smpl,
    find_smpl_files,
    load_joint_regressor_extra,
    load_mean_params,
    load_smpl_file,
    make_synthetic_smpl,
    write_synthetic_smpl,
)


@pytest.fixture(scope="module")
def smpl_data(tmp_path_factory: pytest.TempPathFactory):
    return write_synthetic_smpl(tmp_path_factory.mktemp("smpl_data"))


@pytest.mark.parametrize("chumpy_like", [True, False])
def test_synthetic_pickle_reads_as_the_generated_arrays(tmp_path, chumpy_like) -> None:
    files = write_synthetic_smpl(tmp_path, seed=3, chumpy_like=chumpy_like)
    arrays = load_smpl_file(files.model)
    expected = make_synthetic_smpl(3)
    for key, shape in SMPL_FILE.required_shapes.items():
        assert arrays[key].shape == shape, key
        np.testing.assert_array_equal(arrays[key], expected[key].astype(arrays[key].dtype))
    assert arrays["kintree_table"].dtype == np.int64 and arrays["f"].dtype == np.int64
    np.testing.assert_allclose(
        load_joint_regressor_extra(files.joint_regressor_extra),
        expected["joint_regressor_extra"], rtol=1e-6,
    )
    mean = load_mean_params(files.mean_params)
    np.testing.assert_allclose(mean["pose"], expected["mean_pose"], rtol=1e-6)


def test_layer_equals_smplx_on_the_converted_file(smpl_data, tmp_path) -> None:
    """Our SMPL layer is smplx's SMPLLayer plus HMR2.0's joint map and 19 regressed joints."""
    npz = convert_smpl(smpl_data.model.parent.parent, tmp_path / "SMPL_NEUTRAL.npz")
    # smplx reads SMPL only from pickles; hand it the converted file's arrays instead.
    with np.load(npz) as data:
        struct = Struct(**{key: data[key] for key in data.files})
    reference = smplx.SMPLLayer(model_path="", data_struct=struct, num_betas=10)
    j19 = load_joint_regressor_extra(smpl_data.joint_regressor_extra)
    ours = SmplLayer(load_smpl_file(smpl_data.model), j19)
    generator = torch.Generator().manual_seed(0)
    upper = 0.4 * torch.randn(2, 24, 3, 3, generator=generator).triu(1)
    rot = torch.linalg.matrix_exp(upper - upper.mT)  # exp of a skew matrix: a rotation
    betas = torch.randn(2, 10, generator=generator)
    vertices, joints = ours(rot[:, :1], rot[:, 1:], betas)
    ref = reference(global_orient=rot[:, :1], body_pose=rot[:, 1:], betas=betas)
    openpose = ref.joints[:, list(ours.joint_map)]
    extra = torch.einsum("jv,bvc->bjc", torch.from_numpy(j19), ref.vertices)
    torch.testing.assert_close(vertices, ref.vertices, rtol=0, atol=1e-6)
    torch.testing.assert_close(joints, torch.cat([openpose, extra], 1), rtol=0, atol=1e-6)


def test_layer_rounds_no_worse_than_smplx(smpl_data) -> None:
    """Against smplx in float64 (the exact answer), our float32 vertices err as little as
    smplx's own float32 forward: the restated products lose no precision on any BLAS."""
    arrays = load_smpl_file(smpl_data.model)
    struct = Struct(**arrays)
    exact = smplx.SMPLLayer(model_path="", data_struct=struct, num_betas=10,
                            dtype=torch.float64)
    smplx32 = smplx.SMPLLayer(model_path="", data_struct=struct, num_betas=10)
    ours = SmplLayer(arrays, load_joint_regressor_extra(smpl_data.joint_regressor_extra))
    generator = torch.Generator().manual_seed(1)
    upper = 0.6 * torch.randn(3, 24, 3, 3, generator=generator).triu(1)
    rot = torch.linalg.matrix_exp(upper - upper.mT)
    betas = 2.0 * torch.randn(3, 10, generator=generator)
    truth = exact(global_orient=rot[:, :1].double(), body_pose=rot[:, 1:].double(),
                  betas=betas.double()).vertices
    theirs = smplx32(global_orient=rot[:, :1], body_pose=rot[:, 1:], betas=betas).vertices
    vertices, _ = ours(rot[:, :1], rot[:, 1:], betas)
    their_error = (theirs.double() - truth).abs().max().item()
    our_error = (vertices.double() - truth).abs().max().item()
    assert our_error <= 2.0 * their_error, (our_error, their_error)


def test_find_smpl_files_in_both_layouts(smpl_data) -> None:
    for folder in (smpl_data.model.parent, smpl_data.model.parent.parent, smpl_data.model):
        assert find_smpl_files(folder) == smpl_data


class _RunsCode:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_hostile_pickles_are_refused(tmp_path) -> None:
    marker = tmp_path / "pwned"
    model = tmp_path / "SMPL_NEUTRAL.pkl"
    model.write_bytes(pickle.dumps({"f": _RunsCode(marker)}, protocol=2))
    with pytest.raises(UnsafeFileError, match="may be malicious or is not a SMPL file"):
        load_smpl_file(model)
    j19 = tmp_path / "SMPL_to_J19.pkl"
    j19.write_bytes(pickle.dumps(_RunsCode(marker), protocol=4))
    with pytest.raises(UnsafeFileError, match="system"):
        load_joint_regressor_extra(j19)
    mean = tmp_path / "smpl_mean_params.npz"
    np.savez(mean, pose=np.array([_RunsCode(marker)], dtype=object))
    with pytest.raises(UnsafeFileError, match="pickled object arrays"):
        load_mean_params(mean)
    assert not marker.exists()


def test_malformed_files_are_named(tmp_path) -> None:
    arrays = {k: v for k, v in make_synthetic_smpl(0).items() if k != "posedirs"}
    arrays["weights"] = arrays["weights"][:100]
    bad = tmp_path / "SMPL_NEUTRAL.pkl"
    bad.write_bytes(pickle.dumps(arrays, protocol=2))
    with pytest.raises(ValueError, match=r"'posedirs' is missing.*'weights' has shape"):
        load_smpl_file(bad)
    mean = tmp_path / "smpl_mean_params.npz"
    np.savez(mean, pose=np.zeros(72), shape=np.zeros(10))
    with pytest.raises(ValueError, match=r"'pose' has shape \(72,\); 'cam' missing"):
        load_mean_params(mean)


def test_cli_convert_smpl(smpl_data, tmp_path, capsys) -> None:
    out = tmp_path / "SMPL_NEUTRAL.npz"
    assert main(["convert-smpl", str(smpl_data.model.parent.parent), str(out)]) == 0
    assert "wrote" in capsys.readouterr().out
    np.testing.assert_array_equal(
        load_smpl_file(out)["v_template"], load_smpl_file(smpl_data.model)["v_template"]
    )
    assert main(["convert-smpl", str(tmp_path / "nowhere")]) == 2
    assert "smpl.is.tue.mpg.de" in capsys.readouterr().err


def test_layer_follows_buffers_loaded_after_its_first_forward(smpl_data) -> None:
    """Derived tensors (blend shapes, joint regressors) are rebuilt when a state dict loads."""
    j19 = load_joint_regressor_extra(smpl_data.joint_regressor_extra)
    arrays = load_smpl_file(smpl_data.model)
    layer = SmplLayer(arrays, j19)
    rot = torch.eye(3).expand(1, 24, 3, 3).clone()
    rot[0, 5] = torch.linalg.matrix_exp(torch.tensor([[0.0, -0.3, 0.0], [0.3, 0.0, 0.0],
                                                      [0.0, 0.0, 0.0]]))
    betas = torch.linspace(-1.0, 1.0, 10)[None]
    layer(rot[:, :1], rot[:, 1:], betas)  # builds the derived tensors
    changed = {**arrays, "v_template": arrays["v_template"] + 0.01,
               "shapedirs": arrays["shapedirs"] * 1.5, "posedirs": arrays["posedirs"] * 2.0}
    fresh = SmplLayer(changed, j19 * 0.5)
    layer.load_state_dict(fresh.state_dict())
    for got, want in zip(layer(rot[:, :1], rot[:, 1:], betas),
                         fresh(rot[:, :1], rot[:, 1:], betas), strict=True):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-6)
