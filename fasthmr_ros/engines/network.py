"""The network as engines see it: backbone + head of a regressor, optionally at a lower resolution.

:class:`NetworkModule` is what every engine runs and what ONNX export traces. At
``input_scale=1`` it computes exactly :meth:`MeshRegressor.forward_network`. Below 1, the
256x192 window the backbone sees is resized (bilinear) to a smaller multiple of
:data:`RESOLUTION_MULTIPLE` pixels before the backbone: a training-free speed-up for the ViT
teacher, whose position embedding is interpolated to the smaller token grid
(:meth:`VisionTransformer.position_embedding`). At 0.75 the ViT-H sees 192x144 (108 tokens
instead of 192), the resolution fasterhamer runs at.

Accuracy caveat: the network was trained at 256x192 only. A lower resolution changes the
outputs; how much must be measured on real weights and real images (``fasthmr bench`` reports
the output change on whatever weights it is given; random test weights say nothing about
accuracy).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fasthmr_ros.models.constants import CROP_HEIGHT, CROP_WIDTH
from fasthmr_ros.models.merge_plan import applied_plan
from fasthmr_ros.models.regressor import MeshRegressor, central_window

#: Reduced window sides are rounded to multiples of this (the ViT patch size).
RESOLUTION_MULTIPLE = 16


def window_size(input_scale: float) -> tuple[int, int]:
    """(height, width) the backbone sees at ``input_scale`` (1.0 gives 256x192).

    Raises ``ValueError`` unless ``0 < input_scale <= 1``.
    """
    if not 0.0 < float(input_scale) <= 1.0:
        raise ValueError(
            f"input_scale must be in (0, 1], got {input_scale}; 1.0 is the native 256x192 "
            "window, 0.75 gives 192x144."
        )
    if input_scale == 1.0:
        return CROP_HEIGHT, CROP_WIDTH

    def side(length: int) -> int:
        return max(RESOLUTION_MULTIPLE,
                   round(length * input_scale / RESOLUTION_MULTIPLE) * RESOLUTION_MULTIPLE)

    return side(CROP_HEIGHT), side(CROP_WIDTH)


class NetworkModule(nn.Module):
    """Backbone + head of ``regressor`` (sharing its weights) on ``(B, 3, 256, 256)`` crops.

    ``forward`` returns the dict of network outputs named :attr:`output_names` (for hands
    ``global_orient``, ``hand_pose``, ``betas``, ``cam``; for bodies ``body_pose`` instead of
    ``hand_pose``). The mesh model (MANO, SMPL) is not part of this module.
    """

    def __init__(self, regressor: MeshRegressor, input_scale: float = 1.0) -> None:
        super().__init__()
        self.backbone = regressor.backbone
        self.head = regressor.head
        self.output_names: tuple[str, ...] = regressor.network_outputs
        self.output_shapes: dict[str, tuple[int, ...]] = regressor.network_output_shapes
        self.input_scale = float(input_scale)
        self.window_size = window_size(input_scale)
        plan = applied_plan(regressor)
        #: Whether ``forward`` takes per-token foreground flags (a masked merge plan).
        self.uses_foreground = plan is not None and plan.uses_mask
        if plan is not None and plan.tokens is not None and self.input_scale != 1.0:
            raise ValueError(
                f"input_scale {input_scale} cannot be combined with a token-merging plan (its "
                "token counts are for the native 16x12 grid); use input_scale 1.0"
            )

    def forward(
        self, crops: torch.Tensor, foreground: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """Run backbone and head on the (possibly resized) central window of ``crops``.

        ``foreground`` (B, tokens) reaches the backbone only when :attr:`uses_foreground`.
        """
        window = central_window(crops)
        if self.window_size != (CROP_HEIGHT, CROP_WIDTH):
            window = F.interpolate(
                window, size=self.window_size, mode="bilinear", align_corners=False
            )
        if self.uses_foreground:
            return self.head(self.backbone(window, foreground))
        return self.head(self.backbone(window))
