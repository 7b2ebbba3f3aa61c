"""Random-weights model files in the official HaMeR layout, for tests and first runs.

``write_test_assets(DIR)`` produces what HaMeR's data download provides, structurally:
``DIR/_DATA/hamer_ckpts/checkpoints/hamer.ckpt`` (a Lightning-style checkpoint whose training
configuration is pickled as yacs ``CfgNode`` objects), ``DIR/_DATA/hamer_ckpts/model_config.yaml``
and a synthetic ``DIR/_DATA/data/mano/MANO_RIGHT.pkl`` holding chumpy-like objects. The weights
are random: the meshes they produce mean nothing, and every consumer says so.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml

from fasthmr_ros.models.checkpoint import OFFICIAL_CHECKPOINT, OFFICIAL_CONFIG
from fasthmr_ros.models.mano import ManoLayer
from fasthmr_ros.models.mano_files import load_mano_file, write_synthetic_mano
from fasthmr_ros.models.pickle_names import pickled_under
from fasthmr_ros.models.regressor import (
    SMALL_CONFIG,
    HandMeshRegressor,
    RegressorConfig,
    build_hand_regressor,
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
RANDOM_WEIGHTS_NOTICE = (
    "These files hold RANDOM weights and a SYNTHETIC MANO model: the meshes they produce mean "
    "nothing. Use HaMeR's data download for real results."
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


def official_model_config(config: RegressorConfig) -> dict:
    """The ``model_config.yaml`` content HaMeR would write for ``config``."""
    head = config.head
    return {
        "MODEL": {
            "IMAGE_SIZE": 256,
            "IMAGE_MEAN": [0.485, 0.456, 0.406],
            "IMAGE_STD": [0.229, 0.224, 0.225],
            "BBOX_SHAPE": [192, 256],
            "BACKBONE": {"TYPE": "vit"},
            "MANO_HEAD": {
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
        },
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


def init_near_mean_hand(model: HandMeshRegressor) -> HandMeshRegressor:
    """Shrink the random decoders of ``model`` so its outputs stay near HaMeR's mean hand."""
    head = model.mano_head
    with torch.no_grad():
        head.init_hand_pose[0, :6] = torch.tensor(MEAN_GLOBAL_ORIENT_6D)
        for layer in (head.decpose, head.decshape, head.deccam):
            layer.weight.mul_(0.05)
            layer.bias.zero_()
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

    generator = torch.Generator().manual_seed(seed + 1)
    state = dict(model.state_dict())
    state["initialized"] = torch.tensor(True)
    for name, shape in DISCRIMINATOR_SHAPES.items():
        state[f"discriminator.{name}"] = torch.randn(shape, generator=generator) * 0.01

    yaml_config = official_model_config(config)
    checkpoint = data_dir / OFFICIAL_CHECKPOINT
    checkpoint.parent.mkdir(parents=True, exist_ok=True)
    with pickled_under("yacs.config", CfgNode=_CfgNode):
        torch.save(
            {
                "epoch": 0,
                "global_step": 0,
                "pytorch-lightning_version": "2.0.0",
                "state_dict": state,
                "hyper_parameters": (
                    {"cfg": _as_cfg(yaml_config)} if hyper_parameters is None
                    else hyper_parameters
                ),
                "fasthmr_test_asset": True,
                "fasthmr_config": config.to_dict(),
            },
            checkpoint,
        )
    model_config = data_dir / OFFICIAL_CONFIG
    model_config.write_text(yaml.safe_dump(yaml_config, sort_keys=False), encoding="utf-8")
    (root / "README.txt").write_text(RANDOM_WEIGHTS_NOTICE + "\n", encoding="utf-8")
    return TestAssets(root=root, checkpoint=checkpoint, model_config=model_config,
                      mano_dir=mano_dir)
