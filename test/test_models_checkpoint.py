"""Loading checkpoints: official layout, our format, and every kind of bad file."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch

from fasthmr_ros import load_hand_regressor
from fasthmr_ros.models.checkpoint import CheckpointError, read_checkpoint
from fasthmr_ros.models.registry import save_regressor


def _copy_official(test_assets, tmp_path: Path) -> Path:
    target = tmp_path / "copy"
    shutil.copytree(test_assets.root, target)
    return target / "_DATA" / "hamer_ckpts" / "checkpoints" / "hamer.ckpt"


def _edit_state(path: Path, edit) -> None:
    data = read_checkpoint(path)
    edit(data["state_dict"])
    data.pop("hyper_parameters")
    torch.save(data, path)


@pytest.mark.parametrize("which", ["file", "hamer_ckpts", "_DATA", "root"])
def test_official_layout_round_trip(test_assets, which: str) -> None:
    path = {
        "file": test_assets.checkpoint,
        "hamer_ckpts": test_assets.root / "_DATA" / "hamer_ckpts",
        "_DATA": test_assets.root / "_DATA",
        "root": test_assets.root,
    }[which]
    model = load_hand_regressor(path)
    assert not model.training
    assert model.is_test_asset
    reference = read_checkpoint(test_assets.checkpoint)["state_dict"]
    for key, value in model.state_dict().items():
        assert torch.equal(value, reference[key]), key


def test_outputs_contract(hand_regressor) -> None:
    with torch.no_grad():
        out = hand_regressor(torch.randn(2, 3, 256, 256))
    shapes = {k: tuple(v.shape) for k, v in out.items()}
    assert shapes == {
        "vertices": (2, 778, 3),
        "joints": (2, 21, 3),
        "cam": (2, 3),
        "global_orient": (2, 1, 3, 3),
        "hand_pose": (2, 15, 3, 3),
        "betas": (2, 10),
    }
    assert all(torch.isfinite(v).all() for v in out.values())
    assert hand_regressor.faces.shape == (1538, 3)


def test_mano_dir_equals_embedded_mano(test_assets, hand_regressor) -> None:
    from_dir = load_hand_regressor(test_assets.checkpoint, mano_dir=test_assets.mano_dir)
    crops = torch.randn(2, 3, 256, 256)
    with torch.no_grad():
        a, b = hand_regressor(crops), from_dir(crops)
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-6)


def test_bare_file_without_yaml_derives_architecture(test_assets, tmp_path: Path) -> None:
    bare = tmp_path / "hamer.ckpt"
    data = read_checkpoint(test_assets.checkpoint)
    data.pop("fasthmr_config")
    data.pop("hyper_parameters")
    torch.save(data, bare)
    model = load_hand_regressor(bare)
    crops = torch.randn(1, 3, 256, 256)
    expected = load_hand_regressor(test_assets.checkpoint)
    with torch.no_grad():
        torch.testing.assert_close(model(crops)["vertices"], expected(crops)["vertices"])


def test_our_format_round_trip(hand_regressor, tmp_path: Path) -> None:
    path = save_regressor(hand_regressor, tmp_path / "mine.ckpt")
    again = load_hand_regressor(path)
    crops = torch.randn(1, 3, 256, 256)
    with torch.no_grad():
        torch.testing.assert_close(again(crops)["joints"], hand_regressor(crops)["joints"])


def test_missing_key_is_named(test_assets, tmp_path: Path) -> None:
    path = _copy_official(test_assets, tmp_path)
    _edit_state(path, lambda s: s.pop("mano_head.decpose.weight"))
    with pytest.raises(CheckpointError, match=r"1 missing keys \[mano_head\.decpose\.weight\]"):
        load_hand_regressor(path)


def test_wrong_shape_and_unexpected_key_in_one_error(test_assets, tmp_path: Path) -> None:
    path = _copy_official(test_assets, tmp_path)

    def edit(state):
        state["mano_head.deccam.bias"] = torch.zeros(4)
        state["backbone.extra.weight"] = torch.zeros(1)

    _edit_state(path, edit)
    with pytest.raises(CheckpointError) as info:
        load_hand_regressor(path)
    message = str(info.value)
    assert "unexpected keys [backbone.extra.weight]" in message
    assert "mano_head.deccam.bias: file (4,) vs model (3,)" in message
    assert "_DATA/hamer_ckpts/checkpoints/hamer.ckpt" in message


def test_truncated_file(test_assets, tmp_path: Path) -> None:
    path = tmp_path / "hamer.ckpt"
    path.write_bytes(test_assets.checkpoint.read_bytes()[:5000])
    with pytest.raises(CheckpointError, match="truncated"):
        load_hand_regressor(path)


def test_not_a_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "hamer.ckpt"
    path.write_text("hello, I am a text file\n")
    with pytest.raises(CheckpointError, match="not a PyTorch checkpoint"):
        load_hand_regressor(path)


def test_missing_file_and_empty_folder(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="does not exist"):
        load_hand_regressor(tmp_path / "nope.ckpt")
    with pytest.raises(CheckpointError, match="no hamer.ckpt found"):
        load_hand_regressor(tmp_path)


class _RunsCode:
    def __reduce__(self):
        return (os.system, ("touch pwned_by_checkpoint",))


def test_checkpoint_that_would_run_code_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {"a": torch.zeros(1)}, "payload": _RunsCode()}, path)
    os.chdir(tmp_path)
    with pytest.raises(CheckpointError, match=r"(posix|os)\.system.*refusing"):
        load_hand_regressor(path)
    assert not (tmp_path / "pwned_by_checkpoint").exists()


def test_checkpoint_without_mano_needs_mano_dir(test_assets, tmp_path: Path) -> None:
    path = _copy_official(test_assets, tmp_path)
    _edit_state(path, lambda s: [s.pop(k) for k in list(s) if k.startswith("mano.")])
    with pytest.raises(CheckpointError, match="pass mano_dir"):
        load_hand_regressor(path)
    model = load_hand_regressor(path, mano_dir=test_assets.mano_dir)
    assert model.faces.shape == (1538, 3)


def test_loaded_models_hold_real_tensors_only(test_assets, tmp_path: Path) -> None:
    """The network is built empty (meta device) and must end up with every tensor real."""
    official = load_hand_regressor(test_assets.checkpoint)
    ours = load_hand_regressor(save_regressor(official, tmp_path / "ours.ckpt"))
    for model in (official, ours):
        tensors = [*model.parameters(), *model.buffers()]
        assert tensors and all(t.device.type == "cpu" for t in tensors)
        assert all(p.requires_grad for p in model.parameters())
