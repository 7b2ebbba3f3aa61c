"""Feature-level distillation: the teacher's feature map, projected and aligned to the student's.

Fast-HaMeR projects the teacher's ``(B, 1280, 16, 12)`` ViT features with a 1x1 convolution to
the student's channel count, resizes them bilinearly to the student's grid and takes the mean
squared error. Its code gets two things wrong, both corrected here:

* the projection was never given to the optimiser, so the target was a fixed random projection;
  :class:`FeatureProjection` is an ``nn.Module`` the distiller trains with the student;
* the teacher saw the central 256x192 window of the crop while the student saw all 256x256, so
  resizing one grid onto the other misaligned them by the 32-pixel side margins. Here each grid
  is placed at the columns of the crop its backbone actually saw (measured from the backbone's
  input, see :func:`backbone_window`), the teacher's map is sampled at the centres of the
  student's cells, and student cells outside the teacher's view are left out of the loss.

Training the projection jointly with the student admits a degenerate optimum under a plain MSE:
projection and student features shrinking together towards zero. The loss therefore compares
both maps after standardising every channel over the batch and the aligned positions (zero
mean, unit variance; statistics computed with gradients), which makes it ``2 (1 - r)`` per
channel, ``r`` the Pearson correlation of the student channel with the projected teacher
channel: it cannot be lowered by shrinking either side.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from fasthmr_ros.models.constants import CROP_SIZE

# Added to each channel's variance before dividing, relative to the mean channel variance of the
# map (an absolute epsilon would reward shrinking the whole map below it), plus a floor.
_RELATIVE_VARIANCE_EPS = 1e-4
_VARIANCE_FLOOR = 1e-30


@dataclass(frozen=True)
class CropWindow:
    """The part of the 256x256 crop a backbone saw: pixel columns ``[x0, x1)``, rows ``[y0, y1)``.

    Windows are centred (HaMeR's ``central_window`` and the full crop both are), so they follow
    from the size of the backbone's input.
    """

    x0: float
    x1: float
    y0: float
    y1: float


def backbone_window(input_height: int, input_width: int, crop_size: int = CROP_SIZE) -> CropWindow:
    """The crop region seen by a backbone whose input is ``input_height x input_width``."""
    if not (0 < input_width <= crop_size and 0 < input_height <= crop_size):
        raise ValueError(
            f"backbone input {input_height}x{input_width} is not a centred window of the "
            f"{crop_size}x{crop_size} crop"
        )
    x_margin = (crop_size - input_width) / 2.0
    y_margin = (crop_size - input_height) / 2.0
    return CropWindow(x_margin, crop_size - x_margin, y_margin, crop_size - y_margin)


def _cell_centres(start: float, stop: float, cells: int) -> torch.Tensor:
    step = (stop - start) / cells
    return start + step * (torch.arange(cells, dtype=torch.float64) + 0.5)


def alignment_grid(
    teacher: CropWindow, student: CropWindow, student_grid: tuple[int, int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Where each student cell centre falls in the teacher's map.

    Returns:
        ``grid`` ``(1, h, w, 2)`` in ``grid_sample`` coordinates of the teacher's map
        (``align_corners=False``) and ``valid`` ``(h, w)`` bool: the centre lies inside the
        teacher's window.

    """
    rows, cols = student_grid
    xs = _cell_centres(student.x0, student.x1, cols)
    ys = _cell_centres(student.y0, student.y1, rows)
    u = 2.0 * (xs - teacher.x0) / (teacher.x1 - teacher.x0) - 1.0
    v = 2.0 * (ys - teacher.y0) / (teacher.y1 - teacher.y0) - 1.0
    grid_v, grid_u = torch.meshgrid(v, u, indexing="ij")
    valid = (grid_u.abs() <= 1.0) & (grid_v.abs() <= 1.0)
    grid = torch.stack([grid_u, grid_v], dim=-1)[None].float()
    return grid, valid


class FeatureProjection(nn.Module):
    """Trained 1x1 projection of teacher features onto the student's channels and grid."""

    def __init__(self, teacher_channels: int, student_channels: int) -> None:
        super().__init__()
        if teacher_channels < 1 or student_channels < 1:
            raise ValueError("channel counts must be positive")
        self.teacher_channels = teacher_channels
        self.student_channels = student_channels
        self.proj = nn.Conv2d(teacher_channels, student_channels, kernel_size=1)

    def forward(
        self,
        teacher_features: torch.Tensor,
        teacher_window: CropWindow,
        student_window: CropWindow,
        student_grid: tuple[int, int],
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Sample the teacher's map at the student's cells, then project its channels.

        Returns:
            The projected map ``(B, student_channels, h, w)`` and the ``(h, w)`` bool mask of
            cells the teacher saw.

        """
        if teacher_features.shape[1] != self.teacher_channels:
            raise ValueError(
                f"teacher features have {teacher_features.shape[1]} channels, the projection "
                f"expects {self.teacher_channels}"
            )
        grid, valid = alignment_grid(teacher_window, student_window, student_grid)
        grid = grid.to(teacher_features.device).expand(teacher_features.shape[0], -1, -1, -1)
        sampled = F.grid_sample(
            teacher_features.to(self.proj.weight.dtype),
            grid.to(self.proj.weight.dtype),
            mode="bilinear",
            padding_mode="border",
            align_corners=False,
        )
        return self.proj(sampled), valid.to(teacher_features.device)


def _standardised(values: torch.Tensor) -> torch.Tensor:
    """Standardise ``(B, C, N)`` per channel over the batch and positions (scale-free)."""
    mean = values.mean(dim=(0, 2), keepdim=True)
    var = values.var(dim=(0, 2), unbiased=False, keepdim=True)
    eps = _RELATIVE_VARIANCE_EPS * var.mean().detach() + _VARIANCE_FLOOR
    return (values - mean) / torch.sqrt(var + eps)


def feature_distillation_loss(
    student_features: torch.Tensor, projected_teacher: torch.Tensor, valid: torch.Tensor
) -> torch.Tensor:
    """Mean squared error of the standardised maps over the cells the teacher saw."""
    if student_features.shape != projected_teacher.shape:
        raise ValueError(
            f"student features {tuple(student_features.shape)} and projected teacher features "
            f"{tuple(projected_teacher.shape)} differ"
        )
    if not bool(valid.any()):
        raise ValueError("the teacher's and the student's views of the crop do not overlap")
    flat_valid = valid.flatten()
    student = student_features.float().flatten(2)[..., flat_valid]
    teacher = projected_teacher.float().flatten(2)[..., flat_valid]
    return F.mse_loss(_standardised(student), _standardised(teacher))


class BackboneTap:
    """Record what ``model.backbone`` receives and returns during a forward pass.

    Works for any :class:`~fasthmr_ros.models.regressor.HandMeshRegressor` whose
    ``forward_network`` runs its ``backbone`` once: the teacher's ViT on the central window,
    or a student's backbone on whatever part of the crop it takes. Use as a context manager
    around the forward pass; afterwards ``features`` is the ``(B, C, h, w)`` map and ``window``
    the part of the crop it came from.
    """

    def __init__(self, model: nn.Module) -> None:
        backbone = getattr(model, "backbone", None)
        if not isinstance(backbone, nn.Module):
            raise TypeError(
                f"{type(model).__name__} has no 'backbone' module: feature distillation needs a "
                "HandMeshRegressor (backbone + MANO head)"
            )
        self.backbone = backbone
        self.features: torch.Tensor | None = None
        self.window: CropWindow | None = None
        self._handle: torch.utils.hooks.RemovableHandle | None = None

    def _record(self, module: nn.Module, inputs: tuple, output: object) -> None:
        if not isinstance(output, torch.Tensor) or output.ndim != 4:
            raise TypeError(
                f"the backbone returned {type(output).__name__}"
                f"{'' if not isinstance(output, torch.Tensor) else tuple(output.shape)}; "
                "feature distillation needs one (B, C, h, w) feature map"
            )
        height, width = inputs[0].shape[-2:]
        self.window = backbone_window(int(height), int(width))
        self.features = output

    def __enter__(self) -> BackboneTap:
        self.features = None
        self.window = None
        self._handle = self.backbone.register_forward_hook(self._record)
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None
