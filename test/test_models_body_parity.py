"""HMR2.0 bodies: equality with HMR2.0's formulas, official key layout, hostile SMPL files.

The network reference is the functional re-statement in ``test_models_parity`` (HaMeR and
HMR2.0 share backbone and decoder). SMPL is re-stated here from its published definition
(Loper et al. 2015; HMR2.0's ``smpl_wrapper``: smplx's 24 joints and 21 vertex joints, mapped
to OpenPose BODY_25, then 19 joints regressed by ``SMPL_to_J19.pkl``), in float64, on arrays
taken straight from the synthetic generator or from the raw checkpoint.
"""

from __future__ import annotations

import json
import math
import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from test_models_parity import _reference_network

from fasthmr_ros import load_body_regressor, load_hand_regressor
from fasthmr_ros.models.checkpoint import CheckpointError, read_checkpoint
from fasthmr_ros.models.model_files import UnsafeFileError
from fasthmr_ros.models.smpl_files import make_synthetic_smpl

REFERENCE_KEYS = Path(__file__).parent / "data" / "hmr2_state_dict.json"
#: smplx's SMPL-H vertex joints: nose, eyes, ears, feet (then fingertips, unused by HMR2.0).
VERTEX_JOINTS = [332, 6260, 2800, 4071, 583, 3216, 3226, 3387, 6617, 6624, 6787,
                 2746, 2319, 2445, 2556, 2673, 6191, 5782, 5905, 6016, 6133]
SMPL_TO_OPENPOSE = [24, 12, 17, 19, 21, 16, 18, 20, 0, 2, 5, 8, 1, 4, 7, 25, 26, 27, 28, 29,
                    30, 31, 32, 33, 34]
OUTPUTS = ("vertices", "joints", "cam", "global_orient", "body_pose", "betas")


def _smpl_from_generator(seed: int = 0) -> dict[str, np.ndarray]:
    arrays = make_synthetic_smpl(seed)
    parents = arrays["kintree_table"][0].astype(np.int64)
    parents[0] = -1
    return {
        "v_template": arrays["v_template"],
        "shapedirs": arrays["shapedirs"],
        "posedirs": arrays["posedirs"],  # (6890, 3, 207)
        "J_regressor": arrays["J_regressor"],
        "weights": arrays["weights"],
        "parents": parents,
        "J19": arrays["joint_regressor_extra"],
    }


def _smpl_from_checkpoint(state: dict) -> dict[str, np.ndarray]:
    def arr(key):
        return state[f"smpl.{key}"].double().numpy()

    return {
        "v_template": arr("v_template"),
        "shapedirs": arr("shapedirs"),
        "posedirs": arr("posedirs").T.reshape(6890, 3, 207),
        "J_regressor": arr("J_regressor"),
        "weights": arr("lbs_weights"),
        "parents": state["smpl.parents"].numpy().astype(np.int64),
        "J19": arr("joint_regressor_extra"),
    }


def _reference_smpl(smpl, global_orient, body_pose, betas):
    """SMPL's linear blend skinning and HMR2.0's 44 joints, written out."""
    t = {k: torch.as_tensor(v, dtype=torch.float64) for k, v in smpl.items() if k != "parents"}
    parents = smpl["parents"]
    rot = torch.cat([global_orient, body_pose], dim=1)  # (B, 24, 3, 3)
    b = rot.shape[0]
    v_shaped = t["v_template"] + torch.einsum("vcs,bs->bvc", t["shapedirs"], betas)
    rest = torch.einsum("jv,bvc->bjc", t["J_regressor"], v_shaped)
    pose_feature = (rot[:, 1:] - torch.eye(3, dtype=torch.float64)).reshape(b, -1)
    v_posed = v_shaped + torch.einsum("vcp,bp->bvc", t["posedirs"], pose_feature)
    world = []
    for j in range(24):
        local = torch.zeros(b, 4, 4, dtype=torch.float64)
        local[:, :3, :3] = rot[:, j]
        offset = rest[:, j] - (rest[:, parents[j]] if parents[j] >= 0 else 0)
        local[:, :3, 3] = offset
        local[:, 3, 3] = 1
        world.append(local if parents[j] < 0 else world[parents[j]] @ local)
    world = torch.stack(world, dim=1)  # (B, 24, 4, 4)
    posed_joints = world[:, :, :3, 3]
    skin = world.clone()
    skin[:, :, :3, 3] -= torch.einsum("bjrc,bjc->bjr", world[:, :, :3, :3], rest)
    blend = torch.einsum("vj,bjrc->bvrc", t["weights"], skin)
    vertices = torch.einsum("bvrc,bvc->bvr", blend[:, :, :3, :3], v_posed) + blend[:, :, :3, 3]
    joints45 = torch.cat([posed_joints, vertices[:, VERTEX_JOINTS]], dim=1)
    extra = torch.einsum("jv,bvc->bjc", t["J19"], vertices)
    return vertices, torch.cat([joints45[:, SMPL_TO_OPENPOSE], extra], dim=1)


def _reference_hmr2(state, crops, config, smpl):
    sd = {k: v.double() for k, v in state.items() if not k.startswith("smpl.")}
    out = _reference_network(
        sd, crops.double(), config["backbone"]["num_heads"], config["head"]["heads"],
        head="smpl_head", pose="body_pose",
    )
    out["vertices"], out["joints"] = _reference_smpl(
        smpl, out["global_orient"], out["body_pose"], out["betas"]
    )
    return out


def _checkpoint_of(body_assets, config_format: str) -> Path:
    if config_format == "dictconfig":
        pytest.importorskip("omegaconf")
        return body_assets.checkpoint
    return body_assets.yacs_checkpoint


@pytest.mark.parametrize("config_format", ["yacs", "dictconfig"])
@pytest.mark.parametrize("smpl_source", ["smpl_folder", "4dhumans_data", "checkpoint"])
def test_body_regressor_matches_hmr2_formulas(body_assets, config_format, smpl_source) -> None:
    checkpoint = _checkpoint_of(body_assets, config_format)
    smpl_dir = {
        "smpl_folder": body_assets.smpl_dir,
        "4dhumans_data": body_assets.data_dir,
        "checkpoint": None,
    }[smpl_source]
    model = load_body_regressor(checkpoint, smpl_dir=smpl_dir)
    assert not model.training
    raw = read_checkpoint(checkpoint)
    smpl = (
        _smpl_from_checkpoint(raw["state_dict"]) if smpl_dir is None else _smpl_from_generator()
    )
    crops = torch.randn(3, 3, 256, 256, generator=torch.Generator().manual_seed(7))
    expected = _reference_hmr2(raw["state_dict"], crops, raw["fasthmr_config"], smpl)
    with torch.no_grad():
        got = model(crops)
    assert {k: tuple(v.shape) for k, v in got.items()} == {
        "vertices": (3, 6890, 3), "joints": (3, 44, 3), "cam": (3, 3),
        "global_orient": (3, 1, 3, 3), "body_pose": (3, 23, 3, 3), "betas": (3, 10),
    }
    for key in OUTPUTS:
        assert got[key].dtype == torch.float32
        torch.testing.assert_close(got[key].double(), expected[key], rtol=0, atol=1e-4, msg=key)
    # The outputs are not trivially constant: the random network moves them away from the mean.
    assert (got["body_pose"][0] - got["body_pose"][1]).abs().max() > 1e-6
    assert model.info.num_joints == 44 and model.info.name == "smpl"
    assert model.faces.shape == (13776, 3)


def test_dictconfig_and_yacs_checkpoints_agree(body_assets) -> None:
    pytest.importorskip("omegaconf")
    crops = torch.randn(2, 3, 256, 256, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        a = load_body_regressor(body_assets.checkpoint)(crops)
        b = load_body_regressor(body_assets.yacs_checkpoint)(crops)
    for key in OUTPUTS:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)


@pytest.mark.parametrize("which", ["file", "checkpoints", "run", "cache"])
def test_official_layout_paths(body_assets, which) -> None:
    path = {
        "file": body_assets.yacs_checkpoint,
        "checkpoints": body_assets.yacs_checkpoint.parent,
        "run": body_assets.yacs_checkpoint.parent.parent,
        "cache": body_assets.root,
    }[which]
    if which == "cache":
        pytest.importorskip("omegaconf")  # the cache folder's run 0 holds the DictConfig file
    model = load_body_regressor(path)
    assert model.is_test_asset


def test_bare_checkpoint_without_yaml_or_embedded_config(body_assets, tmp_path) -> None:
    data = read_checkpoint(body_assets.yacs_checkpoint)
    data.pop("fasthmr_config")
    data.pop("hyper_parameters")
    bare = tmp_path / "hmr2.ckpt"
    torch.save(data, bare)
    crops = torch.randn(1, 3, 256, 256)
    with torch.no_grad():
        got = load_body_regressor(bare)(crops)
        expected = load_body_regressor(body_assets.yacs_checkpoint)(crops)
    torch.testing.assert_close(got["vertices"], expected["vertices"], rtol=0, atol=0)


def test_our_format_round_trip(body_assets, tmp_path) -> None:
    from fasthmr_ros.models.registry import save_regressor

    model = load_body_regressor(body_assets.yacs_checkpoint)
    again = load_body_regressor(save_regressor(model, tmp_path / "body.ckpt"))
    crops = torch.randn(1, 3, 256, 256)
    with torch.no_grad():
        torch.testing.assert_close(again(crops)["joints"], model(crops)["joints"])


def test_default_configuration_is_the_official_state_dict() -> None:
    """HMR2.0's architecture key for key and shape for shape, built without memory (meta)."""
    from fasthmr_ros.models.regressor import RegressorConfig, build_body_regressor
    from fasthmr_ros.models.smpl import SmplLayer

    arrays = make_synthetic_smpl(0)
    reference = json.loads(REFERENCE_KEYS.read_text())
    expected = [
        (k, tuple(v)) for k, v in reference.items()
        if not k.startswith(("_", "discriminator.")) and k != "initialized"
    ]
    with torch.device("meta"):
        model = build_body_regressor(
            RegressorConfig(), SmplLayer(arrays, arrays["joint_regressor_extra"])
        )
    got = [(k, tuple(v.shape)) for k, v in model.state_dict().items()]
    assert got == expected
    backbone = sum(p.numel() for p in model.backbone.parameters())
    head = sum(p.numel() for p in model.smpl_head.parameters())
    head_buffers = sum(b.numel() for b in model.smpl_head.buffers())
    assert (backbone, head, head_buffers) == (630_912_000, 39_547_037, 157)
    assert reference["_note"]["backbone_parameters"] == backbone
    assert reference["_note"]["smpl_head_parameters"] == head


class _RunsCode:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("target", ["smpl/SMPL_NEUTRAL.pkl", "SMPL_to_J19.pkl"])
def test_hostile_smpl_files_are_refused_without_running(body_assets, tmp_path, target) -> None:
    data = tmp_path / "data"
    shutil.copytree(body_assets.data_dir, data)
    marker = tmp_path / "pwned"
    path = data / target
    if target.endswith("SMPL_NEUTRAL.pkl"):
        content = {"v_template": np.zeros((6890, 3)), "payload": _RunsCode(marker)}
    else:
        content = _RunsCode(marker)
    path.write_bytes(pickle.dumps(content, protocol=2))
    with pytest.raises(UnsafeFileError, match=r"(posix|os)\.system.*may be malicious"):
        load_body_regressor(body_assets.yacs_checkpoint, smpl_dir=data)
    assert not marker.exists()


def test_hostile_body_checkpoint_is_refused_without_running(tmp_path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "epoch=35-step=1000000.ckpt"
    torch.save({"state_dict": {"a": torch.zeros(1)}, "hyper_parameters": _RunsCode(marker)}, path)
    with pytest.raises(CheckpointError, match=r"(posix|os)\.system.*refusing"):
        load_body_regressor(path)
    assert not marker.exists()


def test_wrong_smpl_files_are_named(body_assets, tmp_path) -> None:
    data = tmp_path / "data"
    shutil.copytree(body_assets.data_dir, data)
    np.save(data / "x.npy", np.zeros(3))
    (data / "SMPL_to_J19.pkl").write_bytes(pickle.dumps(np.zeros((19, 100)), protocol=2))
    with pytest.raises(ValueError, match=r"SMPL_to_J19.*\(19, 6890\)"):
        load_body_regressor(body_assets.yacs_checkpoint, smpl_dir=data)
    with pytest.raises(FileNotFoundError, match=r"SMPL neutral model not found.*smpl\.is\.tue"):
        load_body_regressor(body_assets.yacs_checkpoint, smpl_dir=tmp_path / "nothing")


def test_checkpoint_without_smpl_needs_smpl_dir(body_assets, tmp_path) -> None:
    data = read_checkpoint(body_assets.yacs_checkpoint)
    data.pop("hyper_parameters")
    data["state_dict"] = {k: v for k, v in data["state_dict"].items() if not k.startswith("smpl.")}
    path = tmp_path / "no_smpl.ckpt"
    torch.save(data, path)
    with pytest.raises(CheckpointError, match="pass smpl_dir"):
        load_body_regressor(path)
    assert load_body_regressor(path, smpl_dir=body_assets.data_dir).faces.shape == (13776, 3)


def test_hand_and_body_checkpoints_are_not_confused(test_assets, body_assets) -> None:
    with pytest.raises(CheckpointError, match="HaMeR checkpoint.*load_hand_regressor"):
        load_body_regressor(test_assets.checkpoint)
    with pytest.raises(CheckpointError, match="HMR2.0 checkpoint.*load_body_regressor"):
        load_hand_regressor(body_assets.yacs_checkpoint)


def test_missing_and_misshapen_body_keys_in_one_report(body_assets, tmp_path) -> None:
    data = read_checkpoint(body_assets.yacs_checkpoint)
    data.pop("hyper_parameters")
    state = data["state_dict"]
    state.pop("smpl_head.decshape.bias")
    state["smpl_head.deccam.bias"] = torch.zeros(4)
    path = tmp_path / "broken.ckpt"
    torch.save(data, path)
    with pytest.raises(CheckpointError) as info:
        load_body_regressor(path)
    message = str(info.value)
    assert "1 missing keys [smpl_head.decshape.bias]" in message
    assert "smpl_head.deccam.bias: file (4,) vs model (3,)" in message
    assert "HMR2.0" in message


def test_pelvis_and_camera_conventions(body_assets) -> None:
    """The MPII pelvis (index 39) sits between the hips; the mean camera scale is positive."""
    model = load_body_regressor(body_assets.yacs_checkpoint)
    with torch.no_grad():
        out = model(torch.zeros(1, 3, 256, 256))
    joints = out["joints"][0]
    names = model.info.joint_names
    assert names[39] == "mpii_pelvis" and len(set(names)) == 44
    hips = (joints[names.index("left_hip")] + joints[names.index("right_hip")]) / 2
    assert torch.linalg.norm(joints[39] - hips) < 0.1
    assert out["cam"][0, 0] > 0 and math.isfinite(float(out["cam"].sum()))


def test_cli_make_test_assets_writes_loadable_bodies(tmp_path, capsys) -> None:
    from fasthmr_ros.cli.main import main

    assert main(["make-test-assets", str(tmp_path), "--models", "bodies"]) == 0
    printed = capsys.readouterr().out
    assert "RANDOM weights" in printed and "4DHumans/data" in printed
    assert not (tmp_path / "_DATA").exists()
    run1 = tmp_path / "4DHumans/logs/train/multiruns/hmr2/1"
    model = load_body_regressor(run1, smpl_dir=tmp_path / "4DHumans" / "data")
    assert model.is_test_asset and (run1 / "model_config.yaml").is_file()
