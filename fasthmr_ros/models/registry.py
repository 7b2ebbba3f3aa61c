"""Build hand regressors by name from a configuration dict; save them in our format.

A configuration's ``kind`` selects the builder: ``"vit"`` is HaMeR's architecture; other
backbones (students) register themselves here with :func:`register_backbone_kind`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from fasthmr_ros.models.mano import ManoLayer
from fasthmr_ros.models.regressor import (
    BodyMeshRegressor,
    HandMeshRegressor,
    MeshRegressor,
    RegressorConfig,
    build_hand_regressor,
)

Builder = Callable[[dict, ManoLayer], HandMeshRegressor]
_BUILDERS: dict[str, Builder] = {}


def register_backbone_kind(kind: str) -> Callable[[Builder], Builder]:
    """Register ``builder(config, mano)`` for configurations with ``"kind": kind``."""

    def decorate(builder: Builder) -> Builder:
        _BUILDERS[kind] = builder
        return builder

    return decorate


@register_backbone_kind("vit")
def _build_vit(config: dict, mano: ManoLayer) -> HandMeshRegressor:
    return build_hand_regressor(RegressorConfig.from_dict(config), mano)


def build_regressor_from_config(config: dict, mano: ManoLayer) -> HandMeshRegressor:
    """Build a regressor with fresh weights from a configuration dict."""
    kind = config.get("kind", "vit")
    if kind not in _BUILDERS:
        # Student backbones register on import of their module.
        import fasthmr_ros.models.students  # noqa: F401

    if kind not in _BUILDERS:
        raise ValueError(f"unknown regressor kind '{kind}'; known: {sorted(_BUILDERS)}")
    return _BUILDERS[kind](config, mano)


def save_regressor(
    model: MeshRegressor, path: str | Path, extra: dict[str, Any] | None = None
) -> Path:
    """Save ``model`` in this package's checkpoint format (configuration + its own weights).

    The file holds the model's configuration and its ``state_dict`` only (MANO or SMPL buffers
    included, as in the official checkpoints, so it loads without a model folder). It never
    contains a teacher or optimiser state unless ``extra`` adds them.
    """
    from fasthmr_ros.models.checkpoint import FASTHMR_BODY_FORMAT, FASTHMR_FORMAT

    if "merge_plan" in model.config:
        raise ValueError("this model has a merge plan applied; save the unmerged model and "
                         "keep the plan file beside it (plans are applied at load time)")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "fasthmr_format": (
            FASTHMR_BODY_FORMAT if isinstance(model, BodyMeshRegressor) else FASTHMR_FORMAT
        ),
        "config": dict(model.config),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        **(extra or {}),
    }
    torch.save(payload, path)
    return path
