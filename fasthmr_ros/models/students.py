"""Fast-HaMeR students: HaMeR's MANO head on a light ``timm`` CNN backbone.

A student is a :class:`HandMeshRegressor` whose backbone is a ``timm`` model built with
``features_only=True`` (its last stage by default). The feature map ``(B, C, h, w)`` becomes
``h * w`` context tokens of width ``C`` for the same decoder head as the teacher's, with
``context_dim = C`` (only the cross-attention's key/value projection depends on it; there is no
adapter). The student sees the same central 256x192 window of the 256x256 crop as the teacher
(``central_window``), so teacher and student targets stay spatially aligned (Fast-HaMeR fed
its students the full 256x256 crop, a known mismatch). At 256x192 a stride-32 backbone gives an
8x6 map: 48 tokens.

Backbones are always built with ``pretrained=False``: nothing is downloaded; weights come from
a student checkpoint (distillation starts from whatever weights ``fasthmr distill`` is given).

Student checkpoint format (written by :func:`fasthmr_ros.models.registry.save_regressor`, read by
:func:`fasthmr_ros.load_hand_regressor`): a ``torch.save`` dict with

* ``fasthmr_format``: ``"fasthmr_ros.hand_regressor/1"``;
* ``config``: ``{"kind": "timm", "backbone": {"name": <timm name>, "out_index": -1},
  "head": <HeadConfig fields, context_dim = feature channels>}``;
* ``state_dict``: the student's own weights (``backbone.body.*``, ``mano_head.*``) plus the MANO
  buffers (``mano.*``), never a teacher's weights or optimiser state;
* optionally ``fasthmr_test_asset: True`` for random-weights files.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from fasthmr_ros.models.decoder_head import HAND_LAYOUT, DecoderHead, HeadConfig
from fasthmr_ros.models.mano import ManoLayer
from fasthmr_ros.models.registry import register_backbone_kind, save_regressor
from fasthmr_ros.models.regressor import SMALL_CONFIG, HandMeshRegressor

#: Configuration kind of students.
STUDENT_KIND = "timm"
#: The backbones Fast-HaMeR distilled into (timm names); any timm name with features works.
STUDENT_BACKBONES: tuple[str, ...] = (
    "mobilenetv3_large_100",
    "mobilevit_s",
    "resnet50",
    "convnext_large",
)
#: A tiny head (the small test teacher's widths) for fast tests; real students use HaMeR's.
SMALL_STUDENT_HEAD: HeadConfig = SMALL_CONFIG.head


class TimmBackbone(nn.Module):
    """A ``timm`` feature extractor returning one feature map ``(B, C, h, w)``."""

    def __init__(self, name: str, out_index: int = -1) -> None:
        super().__init__()
        import timm

        self.name = name
        self.out_index = out_index
        try:
            self.body = timm.create_model(
                name, pretrained=False, features_only=True, out_indices=(out_index,)
            )
        except RuntimeError as exc:
            raise ValueError(
                f"timm cannot build backbone '{name}' ({exc}); use a timm model name that "
                "supports features_only (see timm.list_models()), e.g. "
                f"{', '.join(STUDENT_BACKBONES)}."
            ) from None
        self.out_channels = int(self.body.feature_info.channels()[-1])
        self.reduction = int(self.body.feature_info.reduction()[-1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map (B, 3, H, W) images to the selected stage's (B, C, H/r, W/r) features."""
        return self.body(x)[-1]


@dataclass(frozen=True)
class StudentConfig:
    """What a student is made of: a timm backbone name and the head's architecture.

    ``head.context_dim`` must equal the backbone's feature channels; :func:`build_student`
    sets it.
    """

    backbone: str = "mobilenetv3_large_100"
    out_index: int = -1
    head: HeadConfig = field(default_factory=HeadConfig)

    def to_dict(self) -> dict:
        """The checkpoint ``config`` dict (see the module docstring)."""
        return {
            "kind": STUDENT_KIND,
            "backbone": {"name": self.backbone, "out_index": self.out_index},
            "head": self.head.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: dict) -> StudentConfig:
        """Parse a checkpoint ``config`` dict, naming what is missing."""
        try:
            backbone = data["backbone"]
            return cls(
                backbone=str(backbone["name"]),
                out_index=int(backbone.get("out_index", -1)),
                head=HeadConfig.from_dict(data["head"]),
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(
                f"student configuration lacks {exc}; expected {{'kind': 'timm', 'backbone': "
                "{'name': ..., 'out_index': -1}, 'head': {...}}"
            ) from None


def build_student(
    backbone: str | StudentConfig,
    mano: ManoLayer,
    head: HeadConfig | None = None,
) -> HandMeshRegressor:
    """Build a student with fresh weights: timm ``backbone`` + a MANO head sized to it.

    Args:
        backbone: a timm model name (e.g. ``"mobilenetv3_large_100"``) or a full config.
        mano: the MANO layer.
        head: head architecture (HaMeR's by default); ``context_dim`` is set to the
            backbone's channels.

    """
    if isinstance(backbone, StudentConfig):
        config = backbone if head is None else dataclasses.replace(backbone, head=head)
    else:
        config = StudentConfig(backbone=backbone, head=head or HeadConfig())
    body = TimmBackbone(config.backbone, config.out_index)
    config = dataclasses.replace(
        config, head=dataclasses.replace(config.head, context_dim=body.out_channels)
    )
    head_module = DecoderHead(config.head, HAND_LAYOUT)
    return HandMeshRegressor(body, head_module, mano, config=config.to_dict())


@register_backbone_kind(STUDENT_KIND)
def _build_from_config(config: dict, mano: ManoLayer) -> HandMeshRegressor:
    student = StudentConfig.from_dict(config)
    model = build_student(student, mano)
    built = model.mano_head.cfg.context_dim
    if student.head.context_dim != built:
        raise ValueError(
            f"student configuration says context_dim {student.head.context_dim} but backbone "
            f"'{student.backbone}' gives {built} channels; the checkpoint does not match "
            "this timm version's model."
        )
    return model


def write_student_asset(
    path: str | Path,
    backbone: str,
    mano: ManoLayer,
    head: HeadConfig | None = None,
    seed: int = 0,
) -> Path:
    """Write a random-weights student checkpoint (a test asset) to ``path``; return it."""
    from fasthmr_ros.models.test_assets import init_near_mean_hand

    torch.manual_seed(seed)
    model = init_near_mean_hand(build_student(backbone, mano, head))
    return save_regressor(model, path, extra={"fasthmr_test_asset": True})
