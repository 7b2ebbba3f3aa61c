"""Checkpoints whose training configuration is an omegaconf DictConfig (Hydra trainers: HaMeR,
HMR2.0): they load as plain data without omegaconf, and hostile files are refused unrun."""

from __future__ import annotations

import enum
import os
import pathlib
import subprocess
import sys
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import pytest
import torch
from omegaconf import DictConfig, ListConfig, OmegaConf

from fasthmr_ros import load_hand_regressor
from fasthmr_ros.models.checkpoint import (
    CheckpointError,
    read_checkpoint,
    read_state_and_hyper_parameters,
)
from fasthmr_ros.models.regressor import SMALL_CONFIG
from fasthmr_ros.models.test_assets import official_model_config, write_test_assets

REPO = Path(__file__).resolve().parents[1]


class Stage(enum.Enum):
    PRETRAIN = 1
    FINETUNE = "finetune"


@dataclass
class TrainSchema:
    """A structured config: typed nodes (EnumNode, PathNode, IntegerNode, ...)."""

    stage: Stage = Stage.FINETUNE
    log_dir: pathlib.Path = pathlib.Path("/tmp/hamer_logs")
    batch_size: int = 48
    lr: float = 1e-5
    name: str = "hamer"
    amp: bool = True
    max_steps: Optional[int] = None  # noqa: UP045 (pickles typing.Optional: the case tested)
    milestones: list = field(default_factory=lambda: [100, 200])


def _training_config() -> dict[str, Any]:
    """HaMeR's model_config plus what a Hydra training config adds (raw, unresolved)."""
    config = official_model_config(SMALL_CONFIG)
    config["TRAIN"] = {
        "LR": 1e-5,
        "WARMUP_FOCAL": "${EXTRA.FOCAL_LENGTH}",  # unresolved interpolation
        "STAGES": [[1, 2], [3, {"x": "???", "y": None}]],  # nested lists, a MISSING value
        "STAGE": Stage.PRETRAIN,  # enum value in an untyped node
        "LOG_DIR": pathlib.PosixPath("/data/logs"),
    }
    return config


def _omegaconf_hyper_parameters() -> dict[str, Any]:
    return {
        "cfg": OmegaConf.create(_training_config()),
        "schema": OmegaConf.structured(TrainSchema),
        "stages": OmegaConf.create([1, "${cfg.TRAIN.LR}", [2, 3]]),
        "by_stage": OmegaConf.create({Stage.PRETRAIN: 1, Stage.FINETUNE: 2}),
    }


def _as_plain(value: Any) -> Any:
    """The oracle: omegaconf's own unresolved container, enums as values, paths as strings."""
    if isinstance(value, (DictConfig, ListConfig)):
        value = OmegaConf.to_container(value, resolve=False)
    if isinstance(value, dict):
        return {_as_plain(k): _as_plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_as_plain(v) for v in value]
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, pathlib.PurePath):
        return str(value)
    return value


@pytest.fixture(scope="module")
def omegaconf_assets(tmp_path_factory):
    """The test assets (same seed, same weights) with DictConfig hyper-parameters."""
    return write_test_assets(
        tmp_path_factory.mktemp("omegaconf_assets"),
        hyper_parameters=_omegaconf_hyper_parameters(),
    )


def test_dictconfig_checkpoint_gives_the_yacs_outputs(omegaconf_assets, hand_regressor) -> None:
    model = load_hand_regressor(omegaconf_assets.checkpoint)
    crops = torch.randn(2, 3, 256, 256, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        got, expected = model(crops), hand_regressor(crops)
    assert got.keys() == expected.keys()
    for key in got:
        assert torch.equal(got[key], expected[key]), key


def test_dictconfig_becomes_plain_data(omegaconf_assets, test_assets) -> None:
    state, hyper_parameters = read_state_and_hyper_parameters(omegaconf_assets.checkpoint)
    assert hyper_parameters == _as_plain(_omegaconf_hyper_parameters())
    cfg = hyper_parameters["cfg"]
    assert type(cfg) is dict and type(cfg["TRAIN"]["STAGES"]) is list
    assert cfg["TRAIN"]["WARMUP_FOCAL"] == "${EXTRA.FOCAL_LENGTH}"
    assert cfg["TRAIN"]["STAGES"][1][1] == {"x": "???", "y": None}
    assert cfg["TRAIN"]["STAGE"] == 1 and cfg["TRAIN"]["LOG_DIR"] == "/data/logs"
    assert hyper_parameters["schema"]["stage"] == "finetune"
    assert hyper_parameters["schema"]["log_dir"] == "/tmp/hamer_logs"
    assert hyper_parameters["by_stage"] == {1: 1, "finetune": 2}
    # The same model configuration as the yacs form of the same file.
    _, yacs = read_state_and_hyper_parameters(test_assets.checkpoint)
    assert {k: v for k, v in cfg.items() if k != "TRAIN"} == yacs["cfg"]
    assert all(isinstance(v, torch.Tensor) for v in state.values())


def test_lightning_hparams_type_and_top_level_dictconfig(tmp_path: Path) -> None:
    """Lightning stores a Container's class in ``hparams_type`` when hparams is one."""
    path = tmp_path / "lightning.ckpt"
    hparams = OmegaConf.create(_training_config())
    torch.save({"state_dict": {"w": torch.ones(2)}, "hyper_parameters": hparams,
                "hparams_type": type(hparams), "hparams_name": "cfg"}, path)
    data = read_checkpoint(path)
    assert data["hparams_type"] == "omegaconf.dictconfig.DictConfig"
    assert data["hyper_parameters"] == _as_plain(hparams)


def test_loading_imports_neither_omegaconf_nor_yacs(omegaconf_assets, test_assets) -> None:
    script = (
        "import sys\n"
        "sys.modules['omegaconf'] = None\n"
        "sys.modules['yacs'] = None\n"
        "from fasthmr_ros import load_hand_regressor\n"
        "from fasthmr_ros.models.checkpoint import read_state_and_hyper_parameters\n"
        f"model = load_hand_regressor({str(omegaconf_assets.checkpoint)!r})\n"
        f"load_hand_regressor({str(test_assets.checkpoint)!r})\n"
        f"_, hp = read_state_and_hyper_parameters({str(omegaconf_assets.checkpoint)!r})\n"
        "print('loaded', hp['cfg']['TRAIN']['WARMUP_FOCAL'], model.faces.shape[0])\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=300,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert result.returncode == 0, result.stderr
    assert "loaded ${EXTRA.FOCAL_LENGTH} 1538" in result.stdout


STORED = sorted((Path(__file__).parent / "data" / "omegaconf").glob("omegaconf-*.pt"))


@pytest.mark.parametrize("path", STORED, ids=[p.stem for p in STORED])
def test_files_pickled_by_omegaconf_2_1_to_2_3(path: Path) -> None:
    """Files written by data/omegaconf/write_files.py under each omegaconf version."""
    state, hyper_parameters = read_state_and_hyper_parameters(path)
    assert torch.equal(state["w"], torch.arange(3.0))
    cfg = {"a": 1, "b": "${a}", "l": [1, [2, 3], {"z": None}], "m": "???", "e": "b"}
    if path.stem >= "omegaconf-2.2":
        cfg["p"] = "x/y"
    assert hyper_parameters == {
        "cfg": cfg,
        "schema": {"color": 1, "steps": None, "size": 3, "rate": 1.5, "name": "hi",
                   "flag": True},
        "stages": [1, {"q": "${a}"}],
    }


def test_stored_files_cover_three_versions() -> None:
    assert [p.stem for p in STORED] == ["omegaconf-2.1.2", "omegaconf-2.2.3", "omegaconf-2.3.0"]


# --- hostile files ---------------------------------------------------------------------------


class _Payload:
    """Pickles as ``function(*args)``: what a malicious ``__reduce__`` does."""

    def __init__(self, function, *args) -> None:
        self.function, self.args = function, args

    def __reduce__(self):
        return self.function, self.args


@pytest.fixture()
def helpers_module(monkeypatch):
    """An importable module (as a training package would be) with code that makes a marker.

    A loader that called anything named by the file would find these and run them.
    """
    module = types.ModuleType("trainhelpers")

    def make_marker(path):
        Path(path).write_text("ran")

    class MakeMarker:
        def __init__(self, path, *more):
            Path(path).write_text("ran")

    for name, obj in (("make_marker", make_marker), ("MakeMarker", MakeMarker)):
        obj.__module__, obj.__qualname__ = "trainhelpers", name
        setattr(module, name, obj)
    monkeypatch.setitem(sys.modules, "trainhelpers", module)
    return module


def _cfg_with_value(path_in_cfg: tuple[str, str], value: Any) -> DictConfig:
    cfg = OmegaConf.create(_training_config())
    node = cfg._get_node(path_in_cfg[0])._get_node(path_in_cfg[1])
    node.__dict__["_val"] = value  # what a crafted file holds: a payload inside a config node
    return cfg


def _save(path: Path, state_extra=None, **hyper_parameters) -> Path:
    state = {"backbone.w": torch.zeros(2), **(state_extra or {})}
    torch.save({"state_dict": state, "hyper_parameters": hyper_parameters}, path)
    return path


def _assert_refused_and_never_run(path: Path, marker: Path, match: str) -> None:
    with pytest.raises(CheckpointError, match=match) as info:
        load_hand_regressor(path)
    assert "refusing to load it" in str(info.value)
    assert not marker.exists(), "the payload ran"
    with pytest.raises(CheckpointError, match=match):
        read_state_and_hyper_parameters(path)
    assert not marker.exists(), "the payload ran"
    # The payload is real: an ordinary unpickler runs it.
    torch.load(path, weights_only=False)
    assert marker.exists(), "the test payload is not live"


def test_os_system_in_hyper_parameters(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    path = _save(tmp_path / "evil.ckpt", cfg=OmegaConf.create(_training_config()),
                 x=_Payload(os.system, f"touch {marker}"))
    _assert_refused_and_never_run(path, marker, r"the object (posix|os)\.system")


def test_eval_in_the_state_dict(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    code = f"open({str(marker)!r}, 'w').close()"
    path = _save(tmp_path / "evil.ckpt", state_extra={"head.w": _Payload(eval, code)},
                 cfg=OmegaConf.create(_training_config()))
    _assert_refused_and_never_run(path, marker, r"the object builtins\.eval")


def test_unknown_callable_in_the_state_dict(tmp_path: Path, helpers_module) -> None:
    marker = tmp_path / "marker"
    path = _save(tmp_path / "evil.ckpt",
                 state_extra={"head.w": _Payload(helpers_module.MakeMarker, str(marker))})
    _assert_refused_and_never_run(
        path, marker, r"the object trainhelpers\.MakeMarker \(at state_dict\.head\.w\)"
    )


def test_reference_to_a_callable_in_the_state_dict(tmp_path: Path, helpers_module) -> None:
    path = _save(tmp_path / "evil.ckpt", state_extra={"hook": helpers_module.make_marker})
    with pytest.raises(CheckpointError, match=r"trainhelpers\.make_marker \(at state_dict\.hook"):
        read_checkpoint(path)


@pytest.mark.parametrize("payload", ["os.system", "subprocess", "function", "two_args"])
def test_reduce_payload_in_a_config_node(tmp_path: Path, helpers_module, payload: str) -> None:
    marker = tmp_path / "marker"
    value, match = {
        "os.system": (_Payload(os.system, f"touch {marker}"), r"(posix|os)\.system"),
        "subprocess": (_Payload(subprocess.call, ["touch", str(marker)]), r"subprocess\.call"),
        "function": (_Payload(helpers_module.make_marker, str(marker)),
                     r"trainhelpers\.make_marker \(at hyper_parameters\.cfg\.TRAIN\.LR\)"),
        "two_args": (_Payload(helpers_module.MakeMarker, str(marker), 1),
                     r"trainhelpers\.MakeMarker \(at hyper_parameters\.cfg\.TRAIN\.LR\)"),
    }[payload]
    path = _save(tmp_path / "evil.ckpt", cfg=_cfg_with_value(("TRAIN", "LR"), value))
    _assert_refused_and_never_run(path, marker, match)


def test_payload_in_an_enum_node_of_another_class(tmp_path: Path, helpers_module) -> None:
    marker = tmp_path / "marker"
    schema = OmegaConf.structured(TrainSchema)
    schema._get_node("stage").__dict__["_val"] = _Payload(helpers_module.MakeMarker, str(marker))
    path = _save(tmp_path / "evil.ckpt", schema=schema)
    _assert_refused_and_never_run(path, marker, r"trainhelpers\.MakeMarker \(at hyper_param")


def test_payload_in_node_metadata(tmp_path: Path, helpers_module) -> None:
    marker = tmp_path / "marker"
    cfg = OmegaConf.create(_training_config())
    cfg._get_node("TRAIN")._metadata.flags["readonly"] = _Payload(
        helpers_module.MakeMarker, str(marker)
    )
    path = _save(tmp_path / "evil.ckpt", cfg=cfg)
    _assert_refused_and_never_run(path, marker, r"MakeMarker \(at hyper_parameters\.cfg\.TRAIN")


def test_enum_shaped_call_in_an_untyped_node_is_recorded_not_made(
    tmp_path: Path, helpers_module
) -> None:
    """``Class(one scalar)`` is how an enum member pickles: kept as its value, never called."""
    marker = tmp_path / "marker"
    cfg = _cfg_with_value(("TRAIN", "LR"), _Payload(helpers_module.MakeMarker, str(marker)))
    path = _save(tmp_path / "odd.ckpt", cfg=cfg)
    _, hyper_parameters = read_state_and_hyper_parameters(path)
    assert hyper_parameters["cfg"]["TRAIN"]["LR"] == str(marker)
    assert not marker.exists()


# --- files with neither form -----------------------------------------------------------------


def _reshaped(path: Path, out: Path, hyper_parameters: Any) -> Path:
    data = read_checkpoint(path)
    data["state_dict"]["mano_head.deccam.bias"] = torch.zeros(4)
    data.pop("fasthmr_config")
    if hyper_parameters is None:
        data.pop("hyper_parameters")
    else:
        data["hyper_parameters"] = hyper_parameters
    torch.save(data, out)
    return out


@pytest.mark.parametrize("form", ["none", "plain", "omegaconf"])
def test_key_and_shape_report_whatever_the_config_form(test_assets, tmp_path, form) -> None:
    hyper_parameters = {
        "none": None,
        "plain": {"lr": 1e-3, "note": "no training configuration"},
        "omegaconf": {"cfg": OmegaConf.create(_training_config())},
    }[form]
    path = _reshaped(test_assets.checkpoint, tmp_path / "hamer.ckpt", hyper_parameters)
    with pytest.raises(CheckpointError, match=r"mano_head\.deccam\.bias: file \(4,\) vs model"):
        load_hand_regressor(path)


# --- the real architecture -------------------------------------------------------------------


@pytest.mark.slow
def test_vit_h_dictconfig_checkpoint_matches_the_official_formulas(tmp_path: Path) -> None:
    """ViT-H, official layout, DictConfig hyper-parameters: equal to HaMeR's formulas."""
    from test_models_parity import _reference_network

    from fasthmr_ros.models.regressor import RegressorConfig

    config = RegressorConfig()
    cfg = OmegaConf.create(official_model_config(config))
    assets = write_test_assets(tmp_path, config, hyper_parameters={"cfg": cfg})
    model = load_hand_regressor(assets.root / "_DATA")
    crops = torch.randn(1, 3, 256, 256, generator=torch.Generator().manual_seed(1))
    state = {k: v.detach() for k, v in model.state_dict().items()}
    with torch.no_grad():
        expected = _reference_network(state, crops, 16, config.head.heads)
        got = model.forward_network(crops)
    for key, value in expected.items():
        torch.testing.assert_close(got[key], value, rtol=0, atol=1e-4, msg=key)
