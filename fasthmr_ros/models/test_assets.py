"""Random-weights model files in the official HaMeR and HMR2.0 layouts, for tests and first runs.

``write_test_assets(DIR)`` produces what HaMeR's data download provides, structurally:
``DIR/_DATA/hamer_ckpts/checkpoints/hamer.ckpt`` (a Lightning-style checkpoint whose training
configuration is pickled as yacs ``CfgNode`` objects), ``DIR/_DATA/hamer_ckpts/model_config.yaml``
and a synthetic ``DIR/_DATA/data/mano/MANO_RIGHT.pkl`` holding chumpy-like objects.

``write_body_test_assets(DIR)`` produces 4D-Humans' download (``~/.cache/4DHumans``):
``DIR/4DHumans/logs/train/multiruns/hmr2/0/checkpoints/epoch=35-step=1000000.ckpt`` with its
``model_config.yaml``, the training configuration pickled as an omegaconf ``DictConfig`` as
Hydra training writes it (run ``1`` beside it holds the same weights with a yacs configuration),
and a synthetic ``DIR/4DHumans/data/`` folder (``smpl/SMPL_NEUTRAL.pkl``, ``SMPL_to_J19.pkl``,
``smpl_mean_params.npz``). The weights are random: the meshes they produce mean nothing, and
every consumer says so.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml

from fasthmr_ros.models.checkpoint import (
    HMR2_OFFICIAL_CHECKPOINT,
    HMR2_OFFICIAL_RUN,
    OFFICIAL_CHECKPOINT,
    OFFICIAL_CONFIG,
)
from fasthmr_ros.models.decoder_head import DecoderHead
from fasthmr_ros.models.mano import ManoLayer
from fasthmr_ros.models.mano_files import load_mano_file, write_synthetic_mano
from fasthmr_ros.models.pickle_names import pickled_under
from fasthmr_ros.models.regressor import (
    SMALL_CONFIG,
    BodyMeshRegressor,
    HandMeshRegressor,
    RegressorConfig,
    build_body_regressor,
    build_hand_regressor,
)
from fasthmr_ros.models.smpl import SmplLayer
from fasthmr_ros.models.smpl_files import (
    load_joint_regressor_extra,
    load_mean_params,
    load_smpl_file,
    write_synthetic_smpl,
)

#: HaMeR's mean global orientation in 6D (a +90 degree turn about x, near-degenerate form).
MEAN_GLOBAL_ORIENT_6D = (1.0, 0.0, 0.0, -1.0, 0.0, 1.5e-7)
#: Discriminator entries of the official checkpoint (training only; loaders must skip them).
DISCRIMINATOR_SHAPES: dict[str, tuple[int, ...]] = {
    "D_conv1.weight": (32, 9, 1, 1),
    "D_conv1.bias": (32,),
    "D_conv2.weight": (32, 32, 1, 1),
    "D_conv2.bias": (32,),
    "betas_fc1.weight": (10, 10),
    "betas_fc1.bias": (10,),
    "D_alljoints_fc1.weight": (1024, 480),
    "D_alljoints_fc1.bias": (1024,),
}
#: HMR2.0's discriminator entries (training only; loaders must skip them).
HMR2_DISCRIMINATOR_SHAPES: dict[str, tuple[int, ...]] = {
    "D_conv1.weight": (32, 9, 1, 1),
    "D_conv1.bias": (32,),
    "D_conv2.weight": (32, 32, 1, 1),
    "D_conv2.bias": (32,),
    **{f"pose_out.{i}.{kind}": shape for i in range(23)
       for kind, shape in (("weight", (1, 32)), ("bias", (1,)))},
    "betas_fc1.weight": (10, 10),
    "betas_fc1.bias": (10,),
    "betas_fc2.weight": (5, 10),
    "betas_fc2.bias": (5,),
    "betas_out.weight": (1, 5),
    "betas_out.bias": (1,),
    "D_alljoints_fc1.weight": (1024, 736),
    "D_alljoints_fc1.bias": (1024,),
    "D_alljoints_fc2.weight": (1024, 1024),
    "D_alljoints_fc2.bias": (1024,),
    "D_alljoints_out.weight": (1, 1024),
    "D_alljoints_out.bias": (1,),
}
RANDOM_WEIGHTS_NOTICE = (
    "These files hold RANDOM weights and a SYNTHETIC MANO model: the meshes they produce mean "
    "nothing. Use HaMeR's data download for real results."
)
BODY_RANDOM_WEIGHTS_NOTICE = (
    "These files hold RANDOM weights and a SYNTHETIC SMPL model: the meshes they produce mean "
    "nothing. Use 4D-Humans' download (hmr2_data.tar.gz) and your SMPL_NEUTRAL.pkl for real "
    "results."
)


@dataclass(frozen=True)
class TestAssets:
    """Paths written by :func:`write_test_assets`."""

    root: Path
    checkpoint: Path
    model_config: Path
    mano_dir: Path


class _CfgNode(dict):
    """Pickles like yacs' ``CfgNode``: a dict with yacs' bookkeeping attributes as state."""

    def __init__(self, values: dict | None = None) -> None:
        super().__init__(values or {})
        self.__dict__["__immutable__"] = True
        self.__dict__["__deprecated_keys__"] = set()
        self.__dict__["__renamed_keys__"] = {}
        self.__dict__["__new_allowed__"] = False


def _as_cfg(value: object) -> object:
    if isinstance(value, dict):
        return _CfgNode({k: _as_cfg(v) for k, v in value.items()})
    return value


def _model_section(config: RegressorConfig, head_key: str) -> dict:
    head = config.head
    return {
        "IMAGE_SIZE": 256,
        "IMAGE_MEAN": [0.485, 0.456, 0.406],
        "IMAGE_STD": [0.229, 0.224, 0.225],
        "BBOX_SHAPE": [192, 256],
        "BACKBONE": {"TYPE": "vit"},
        head_key: {
            "TYPE": "transformer_decoder",
            "IN_CHANNELS": 2048,
            "TRANSFORMER_DECODER": {
                "depth": head.depth,
                "heads": head.heads,
                "mlp_dim": head.mlp_dim,
                "dim_head": head.dim_head,
                "dropout": 0.0,
                "emb_dropout": 0.0,
                "norm": "layer",
                "context_dim": head.context_dim,
            },
        },
    }


def official_model_config(config: RegressorConfig) -> dict:
    """The ``model_config.yaml`` content HaMeR would write for ``config``."""
    return {
        "MODEL": _model_section(config, "MANO_HEAD"),
        "EXTRA": {"FOCAL_LENGTH": 5000},
        "MANO": {
            "DATA_DIR": "_DATA/data/",
            "MODEL_PATH": "_DATA/data/mano",
            "GENDER": "neutral",
            "NUM_HAND_JOINTS": 15,
            "MEAN_PARAMS": "_DATA/data/mano_mean_params.npz",
            "CREATE_BODY_POSE": False,
        },
    }


def random_hand_regressor(
    config: RegressorConfig, mano: ManoLayer, seed: int = 0
) -> HandMeshRegressor:
    """A regressor with random weights whose outputs stay near HaMeR's mean hand."""
    torch.manual_seed(seed)
    return init_near_mean_hand(build_hand_regressor(config, mano))


def _shrink_decoders(head: DecoderHead) -> None:
    with torch.no_grad():
        for layer in (head.decpose, head.decshape, head.deccam):
            layer.weight.mul_(0.05)
            layer.bias.zero_()


def init_near_mean_hand(model: HandMeshRegressor) -> HandMeshRegressor:
    """Shrink the random decoders of ``model`` so its outputs stay near HaMeR's mean hand."""
    head = model.mano_head
    with torch.no_grad():
        head.init_hand_pose[0, :6] = torch.tensor(MEAN_GLOBAL_ORIENT_6D)
    _shrink_decoders(head)
    return model.eval()


def write_test_assets(
    directory: str | Path,
    config: RegressorConfig = SMALL_CONFIG,
    seed: int = 0,
    hyper_parameters: Mapping[str, Any] | None = None,
) -> TestAssets:
    """Write a random-weights checkpoint in HaMeR's layout plus a synthetic MANO folder.

    Args:
        directory: where ``_DATA`` is created.
        config: the architecture (default: the small test configuration).
        seed: seeds the weights and the synthetic MANO model.
        hyper_parameters: stored as the checkpoint's ``hyper_parameters`` instead of the
            yacs form ``{"cfg": CfgNode(model_config)}`` (e.g. an omegaconf ``DictConfig``, as
            Hydra trainers pickle it).

    """
    root = Path(directory)
    data_dir = root / "_DATA"
    mano_dir = data_dir / "data" / "mano"
    mano_file = write_synthetic_mano(mano_dir, seed=seed)
    model = random_hand_regressor(config, ManoLayer(load_mano_file(mano_file)), seed=seed)

    state = lightning_state(model, DISCRIMINATOR_SHAPES, seed)
    yaml_config = official_model_config(config)
    checkpoint = data_dir / OFFICIAL_CHECKPOINT
    _save_lightning(
        checkpoint,
        state,
        {"cfg": _as_cfg(yaml_config)} if hyper_parameters is None else dict(hyper_parameters),
        config,
    )
    model_config = data_dir / OFFICIAL_CONFIG
    model_config.write_text(yaml.safe_dump(yaml_config, sort_keys=False), encoding="utf-8")
    (root / "README.txt").write_text(RANDOM_WEIGHTS_NOTICE + "\n", encoding="utf-8")
    return TestAssets(root=root, checkpoint=checkpoint, model_config=model_config,
                      mano_dir=mano_dir)


@dataclass(frozen=True)
class BodyTestAssets:
    """Paths written by :func:`write_body_test_assets`."""

    root: Path  # the 4DHumans folder (as ~/.cache/4DHumans)
    checkpoint: Path  # DictConfig hyper-parameters (or yacs where omegaconf is missing)
    model_config: Path
    yacs_checkpoint: Path  # the same weights, yacs hyper-parameters
    data_dir: Path  # 4D-Humans' data/ folder
    smpl_dir: Path  # the folder holding SMPL_NEUTRAL.pkl


def official_body_model_config(config: RegressorConfig) -> dict:
    """The ``model_config.yaml`` content 4D-Humans would write for ``config``."""
    return {
        "MODEL": _model_section(config, "SMPL_HEAD"),
        "EXTRA": {"FOCAL_LENGTH": 5000, "PELVIS_IND": 39},
        "SMPL": {
            "DATA_DIR": "data/",
            "MODEL_PATH": "data/smpl",
            "GENDER": "neutral",
            "NUM_BODY_JOINTS": 23,
            "JOINT_REGRESSOR_EXTRA": "data/SMPL_to_J19.pkl",
            "MEAN_PARAMS": "data/smpl_mean_params.npz",
        },
    }


def random_body_regressor(
    config: RegressorConfig, smpl: SmplLayer, mean_params: dict, seed: int = 0
) -> BodyMeshRegressor:
    """A regressor with random weights whose outputs stay near the mean parameters."""
    torch.manual_seed(seed)
    model = build_body_regressor(config, smpl)
    model.smpl_head.set_mean_params(
        torch.from_numpy(mean_params["pose"]),
        torch.from_numpy(mean_params["shape"]),
        torch.from_numpy(mean_params["cam"]),
    )
    _shrink_decoders(model.smpl_head)
    return model.eval()


def _dict_config(values: dict) -> object | None:
    """``values`` as an omegaconf ``DictConfig`` (what Hydra training pickles), if installed."""
    try:
        from omegaconf import OmegaConf
    except ImportError:
        return None
    return OmegaConf.create(values)


def lightning_state(
    model: torch.nn.Module, discriminator_shapes: Mapping[str, tuple[int, ...]], seed: int
) -> dict[str, torch.Tensor]:
    """``model``'s state dict as a Lightning training run saves it (with a discriminator)."""
    generator = torch.Generator().manual_seed(seed + 1)
    state = dict(model.state_dict())
    state["initialized"] = torch.tensor(True)
    for name, shape in discriminator_shapes.items():
        state[f"discriminator.{name}"] = torch.randn(shape, generator=generator) * 0.01
    return state


def _save_lightning(
    path: Path, state: dict, hyper_parameters: dict, config: RegressorConfig
) -> None:
    """A Lightning-style checkpoint; yacs ``CfgNode`` objects pickle under yacs' name."""
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "epoch": 35,
        "global_step": 1000000,
        "pytorch-lightning_version": "1.8.1",
        "state_dict": state,
        "hyper_parameters": hyper_parameters,
        "fasthmr_test_asset": True,
        "fasthmr_config": config.to_dict(),
    }
    with pickled_under("yacs.config", CfgNode=_CfgNode):
        torch.save(payload, path)


def write_body_test_assets(
    directory: str | Path, config: RegressorConfig = SMALL_CONFIG, seed: int = 0
) -> BodyTestAssets:
    """Write a random-weights HMR2.0 checkpoint in 4D-Humans' layout plus synthetic SMPL files."""
    root = Path(directory) / "4DHumans"
    files = write_synthetic_smpl(root / "data", seed=seed)
    smpl = SmplLayer(
        load_smpl_file(files.model), load_joint_regressor_extra(files.joint_regressor_extra)
    )
    model = random_body_regressor(config, smpl, load_mean_params(files.mean_params), seed=seed)

    state = lightning_state(model, HMR2_DISCRIMINATOR_SHAPES, seed)

    yaml_config = official_body_model_config(config)
    checkpoint = root / HMR2_OFFICIAL_CHECKPOINT
    dict_config = _dict_config(yaml_config)
    _save_lightning(
        checkpoint,
        state,
        {"cfg": dict_config if dict_config is not None else _as_cfg(yaml_config)},
        config,
    )
    yacs_run = root / HMR2_OFFICIAL_RUN.parent / "1"
    yacs_checkpoint = yacs_run / HMR2_OFFICIAL_CHECKPOINT.relative_to(HMR2_OFFICIAL_RUN)
    _save_lightning(yacs_checkpoint, state, {"cfg": _as_cfg(yaml_config)}, config)
    text = yaml.safe_dump(yaml_config, sort_keys=False)
    model_config = root / HMR2_OFFICIAL_RUN / "model_config.yaml"
    for folder in (model_config.parent, yacs_run):
        (folder / "model_config.yaml").write_text(text, encoding="utf-8")
    (root / "README.txt").write_text(BODY_RANDOM_WEIGHTS_NOTICE + "\n", encoding="utf-8")
    return BodyTestAssets(
        root=root,
        checkpoint=checkpoint,
        model_config=model_config,
        yacs_checkpoint=yacs_checkpoint,
        data_dir=root / "data",
        smpl_dir=files.model.parent,
    )
