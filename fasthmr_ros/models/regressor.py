"""``HandMeshRegressor``: backbone + MANO head + MANO layer, HaMeR's forward pass.

The crop is a 256x256 normalised RGB image; the backbone sees its central 256x192 window. The
network part (backbone and head) is what engines export and accelerate; MANO runs after it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from fasthmr_ros.models.constants import CROP_SIZE, CROP_WIDTH
from fasthmr_ros.models.mano import ManoLayer
from fasthmr_ros.models.mano_head import HeadConfig, ManoHead
from fasthmr_ros.models.mesh_model import MeshModelInfo
from fasthmr_ros.models.vit import VIT_HUGE, VisionTransformer, ViTConfig

#: Keys of the network output (before MANO), in the order engines return them.
NETWORK_OUTPUTS: tuple[str, ...] = ("global_orient", "hand_pose", "betas", "cam")
#: Keys of the full regressor output.
REGRESSOR_OUTPUTS: tuple[str, ...] = ("vertices", "joints", *NETWORK_OUTPUTS)


@dataclass(frozen=True)
class RegressorConfig:
    """What a hand regressor is made of (stored in our checkpoints, derived for HaMeR's)."""

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


class HandMeshRegressor(nn.Module):
    """Crops ``(B, 3, 256, 256)`` to MANO meshes, joints and a weak-perspective camera.

    ``forward`` returns ``vertices`` (B, 778, 3) and ``joints`` (B, 21, 3) in metres in the MANO
    frame of a right hand (not root-centred; OpenPose joint order), ``cam`` (B, 3) = (s, tx, ty)
    for a 256-pixel crop with focal length 5000, ``global_orient`` (B, 1, 3, 3),
    ``hand_pose`` (B, 15, 3, 3) and ``betas`` (B, 10).
    """

    def __init__(
        self, backbone: nn.Module, mano_head: ManoHead, mano: ManoLayer, config: dict | None = None
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.mano_head = mano_head
        self.mano = mano
        self.config = config or {}
        self.is_test_asset = False

    @property
    def faces(self) -> np.ndarray:
        """Triangles (1538, 3) int64 of the right hand."""
        return self.mano.faces_array

    @property
    def info(self) -> MeshModelInfo:
        """The mesh model the regressor outputs (MANO)."""
        return self.mano.info

    def forward_network(self, crops: torch.Tensor) -> dict[str, torch.Tensor]:
        """Run backbone and head: ``global_orient``, ``hand_pose``, ``betas``, ``cam``."""
        return self.mano_head(self.backbone(central_window(crops)))

    def run_mano(self, params: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Add ``vertices`` and ``joints`` to network outputs ``params``."""
        vertices, joints = self.mano(params["global_orient"], params["hand_pose"], params["betas"])
        return {"vertices": vertices, "joints": joints, **params}

    def forward(self, crops: torch.Tensor) -> dict[str, torch.Tensor]:
        """Run the whole model on normalised crops."""
        return self.run_mano(self.forward_network(crops))


def build_hand_regressor(config: RegressorConfig, mano: ManoLayer) -> HandMeshRegressor:
    """Build a ViT-backbone regressor (HaMeR's architecture) with fresh weights."""
    if config.head.context_dim != config.backbone.embed_dim:
        raise ValueError(
            f"head context_dim {config.head.context_dim} must equal the backbone width "
            f"{config.backbone.embed_dim}"
        )
    return HandMeshRegressor(
        VisionTransformer(config.backbone),
        ManoHead(config.head),
        mano,
        config={"kind": "vit", **config.to_dict()},
    )
