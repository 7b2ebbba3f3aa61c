"""Mesh regressors: backbone + decoder head + mesh model (HaMeR's hands, HMR2.0's bodies).

One concept, :class:`MeshRegressor`, with two configurations: :class:`HandMeshRegressor` (MANO
head and layer) and :class:`BodyMeshRegressor` (SMPL head and layer). The crop is a 256x256
normalised RGB image; the backbone sees its central 256x192 window. The network part (backbone
and head) is what engines export and accelerate; the mesh model runs after it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import torch
from torch import nn

from fasthmr_ros.models.constants import CROP_SIZE, CROP_WIDTH
from fasthmr_ros.models.decoder_head import (
    BODY_LAYOUT,
    HAND_LAYOUT,
    DecoderHead,
    HeadConfig,
    OutputLayout,
)
from fasthmr_ros.models.mano import ManoLayer
from fasthmr_ros.models.mesh_model import MODEL_SMPL, MeshModelInfo
from fasthmr_ros.models.smpl import SmplLayer
from fasthmr_ros.models.vit import VIT_HUGE, VisionTransformer, ViTConfig

#: Keys of the hand network output (before MANO), in the order engines return them.
NETWORK_OUTPUTS: tuple[str, ...] = HAND_LAYOUT.outputs
#: Keys of the full hand regressor output.
REGRESSOR_OUTPUTS: tuple[str, ...] = ("vertices", "joints", *NETWORK_OUTPUTS)


@dataclass(frozen=True)
class RegressorConfig:
    """What a ViT regressor is made of (stored in our checkpoints, derived for official ones)."""

    backbone: ViTConfig = field(default_factory=lambda: VIT_HUGE)
    head: HeadConfig = field(default_factory=HeadConfig)

    def to_dict(self) -> dict:
        """Return a plain dict (for checkpoints)."""
        return {"backbone": self.backbone.to_dict(), "head": self.head.to_dict()}

    @classmethod
    def from_dict(cls, data: dict) -> RegressorConfig:
        """Build from :meth:`to_dict` output."""
        return cls(
            backbone=ViTConfig.from_dict(data["backbone"]),
            head=HeadConfig.from_dict(data["head"]),
        )


#: A tiny configuration with HaMeR's structure and head widths (80 in the ViT, 64 in the
#: decoder), for tests and test assets.
SMALL_CONFIG = RegressorConfig(
    backbone=ViTConfig(embed_dim=160, depth=2, num_heads=2),
    head=HeadConfig(dim=64, depth=2, heads=2, dim_head=64, mlp_dim=64, context_dim=160),
)


def central_window(crops: torch.Tensor) -> torch.Tensor:
    """Cut the 256x192 window the backbone sees out of 256x256 crops."""
    margin = (CROP_SIZE - CROP_WIDTH) // 2
    return crops[..., margin : crops.shape[-1] - margin]


class MeshRegressor(nn.Module):
    """Backbone + transformer-decoder head + mesh model: HaMeR's and HMR2.0's forward pass.

    Subclasses name the head and mesh-model attributes as the official checkpoints do
    (``mano_head``/``mano``, ``smpl_head``/``smpl``) and pick the head's output layout; the
    forward pass is the same: the backbone sees the central 256x192 window of the crop, the
    head decodes rotations, shape and camera (:meth:`forward_network`, what engines export and
    accelerate), and the mesh model turns them into vertices and joints
    (:meth:`run_mesh_model`, always in PyTorch).
    """

    #: Attribute (and checkpoint key prefix) of the head and of the mesh model.
    head_attribute: ClassVar[str]
    mesh_model_attribute: ClassVar[str]

    def __init__(
        self,
        backbone: nn.Module,
        head: DecoderHead,
        mesh_model: nn.Module,
        config: dict | None = None,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        setattr(self, self.head_attribute, head)
        setattr(self, self.mesh_model_attribute, mesh_model)
        self.config = config or {}
        self.is_test_asset = False

    @property
    def head(self) -> DecoderHead:
        """The decoder head."""
        return getattr(self, self.head_attribute)

    @property
    def mesh_model(self) -> nn.Module:
        """The mesh model layer (MANO or SMPL)."""
        return getattr(self, self.mesh_model_attribute)

    @property
    def info(self) -> MeshModelInfo:
        """Structure of the mesh model the outputs describe."""
        return self.mesh_model.info

    @property
    def faces(self) -> np.ndarray:
        """Triangles (F, 3) int64 of the mesh model."""
        return self.mesh_model.faces_array

    @property
    def network_outputs(self) -> tuple[str, ...]:
        """Names of the network outputs, in the order engines return them."""
        return self.head.layout.outputs

    @property
    def network_output_shapes(self) -> dict[str, tuple[int, ...]]:
        """Shape of each network output without the batch axis."""
        return self.head.layout.output_shapes

    @property
    def regressor_outputs(self) -> tuple[str, ...]:
        """Keys of :meth:`forward`'s result."""
        return ("vertices", "joints", *self.network_outputs)

    @property
    def uses_foreground(self) -> bool:
        """Whether the network takes per-token foreground flags (a masked merge plan)."""
        from fasthmr_ros.models.merge_plan import needs_foreground

        return needs_foreground(self)

    def forward_network(
        self, crops: torch.Tensor, foreground: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """Run backbone and head: ``global_orient``, the pose, ``betas``, ``cam``.

        ``foreground`` (B, tokens): per-token flags for a ViT with a masked merge plan
        (:mod:`fasthmr_ros.models.merge_plan`); other backbones take none.
        """
        window = central_window(crops)
        if foreground is None:
            return self.head(self.backbone(window))
        return self.head(self.backbone(window, foreground))

    def run_mesh_model(self, params: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Add ``vertices`` and ``joints`` to network outputs ``params``."""
        vertices, joints = self.mesh_model(
            params["global_orient"], params[self.head.layout.pose_name], params["betas"]
        )
        return {"vertices": vertices, "joints": joints, **params}

    def forward(
        self, crops: torch.Tensor, foreground: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """Run the whole model on normalised crops (``foreground``: see forward_network)."""
        return self.run_mesh_model(self.forward_network(crops, foreground))


class HandMeshRegressor(MeshRegressor):
    """Crops ``(B, 3, 256, 256)`` to MANO meshes, joints and a weak-perspective camera.

    ``forward`` returns ``vertices`` (B, 778, 3) and ``joints`` (B, 21, 3) in metres in the MANO
    frame of a right hand (not root-centred; OpenPose joint order), ``cam`` (B, 3) = (s, tx, ty)
    for a 256-pixel crop with focal length 5000, ``global_orient`` (B, 1, 3, 3),
    ``hand_pose`` (B, 15, 3, 3) and ``betas`` (B, 10).
    """

    head_attribute = "mano_head"
    mesh_model_attribute = "mano"

    #: The hand name of :meth:`MeshRegressor.run_mesh_model`.
    run_mano = MeshRegressor.run_mesh_model


class BodyMeshRegressor(MeshRegressor):
    """Crops ``(B, 3, 256, 256)`` to SMPL meshes, HMR2.0's 44 joints and a camera.

    ``forward`` returns ``vertices`` (B, 6890, 3) and ``joints`` (B, 44, 3) in metres in the
    SMPL frame (not root-centred; 25 OpenPose joints then 19 regressed ones), ``cam`` (B, 3) =
    (s, tx, ty) for a 256-pixel crop with focal length 5000, ``global_orient`` (B, 1, 3, 3),
    ``body_pose`` (B, 23, 3, 3) and ``betas`` (B, 10): HMR2.0's ``pred_vertices``,
    ``pred_keypoints_3d``, ``pred_cam`` and ``pred_smpl_params``.
    """

    head_attribute = "smpl_head"
    mesh_model_attribute = "smpl"


def _check_widths(config: RegressorConfig) -> None:
    if config.head.context_dim != config.backbone.embed_dim:
        raise ValueError(
            f"head context_dim {config.head.context_dim} must equal the backbone width "
            f"{config.backbone.embed_dim}"
        )


def _build_vit(
    regressor: type[MeshRegressor],
    layout: OutputLayout,
    config: RegressorConfig,
    mesh_model: nn.Module,
    tags: dict,
) -> MeshRegressor:
    _check_widths(config)
    return regressor(
        VisionTransformer(config.backbone),
        DecoderHead(config.head, layout),
        mesh_model,
        config={"kind": "vit", **tags, **config.to_dict()},
    )


def build_hand_regressor(config: RegressorConfig, mano: ManoLayer) -> HandMeshRegressor:
    """Build a ViT-backbone hand regressor (HaMeR's architecture) with fresh weights."""
    return _build_vit(HandMeshRegressor, HAND_LAYOUT, config, mano, {})  # type: ignore[return-value]


def build_body_regressor(config: RegressorConfig, smpl: SmplLayer) -> BodyMeshRegressor:
    """Build a ViT-backbone body regressor (HMR2.0's architecture) with fresh weights."""
    return _build_vit(  # type: ignore[return-value]
        BodyMeshRegressor, BODY_LAYOUT, config, smpl, {"mesh_model": MODEL_SMPL}
    )
