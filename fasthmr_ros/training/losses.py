"""Output-level losses of Fast-HaMeR (and HaMeR): keypoints, joints, rotations, shape.

The same five terms serve two purposes (Fast-HaMeR, ``hamer/models/losses.py``):

* **ground truth** (``L_gt``): the student against dataset labels;
* **output-level distillation** (``L_KD``): the student against the teacher's outputs.

Per sample, with Fast-HaMeR's weights (``LossWeights``)::

    0.01   * sum |kp2d_s - kp2d_t|          2D keypoints, normalised crop coordinates
    0.05   * sum |j_s - j_s[0] - (j_t - j_t[0])|   3D joints relative to the wrist (metres)
    0.001  * sum (R_glob_s - R_glob_t)^2    global orientation, rotation matrices
    0.001  * sum (R_hand_s - R_hand_t)^2    15 finger joint rotations, rotation matrices
    0.0005 * sum (beta_s - beta_t)^2        MANO shape

Fast-HaMeR sums these over the batch too; here they are averaged over the batch so that the
logged loss does not depend on the batch size (the relative weights are unchanged). 2D
keypoints are the 3D joints seen through the weak-perspective crop camera: translated by
``(tx, ty, 2 * 5000 / (256 * s))`` and projected with focal ``5000 / 256``, which puts the crop
in ``[-0.5, 0.5]`` with 0 at its centre (HaMeR's convention for predicted and labelled
keypoints alike).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass

import torch

from fasthmr_ros.models.constants import CROP_FOCAL_LENGTH, CROP_SIZE

#: The quantities both loss kinds compare, in :func:`hand_targets` layout.
TARGET_KEYS: tuple[str, ...] = (
    "keypoints_2d", "joints_rel", "global_orient", "hand_pose", "betas",
)
#: Which mask of a labelled batch gates each term.
TERM_MASKS: dict[str, str] = {
    "keypoints_2d": "has_joints",
    "joints_rel": "has_joints",
    "global_orient": "has_mano",
    "hand_pose": "has_mano",
    "betas": "has_mano",
}
# HaMeR guards the division by the predicted scale with this epsilon.
_SCALE_EPS = 1e-9


@dataclass(frozen=True)
class LossWeights:
    """Weights of the loss terms; the defaults are Fast-HaMeR's (``hamer.md`` section 1.4).

    ``kd`` is lambda_KD (``KNOWLEDGE_DISTILATION``, 0.3 in most configs), ``feature`` the
    feature-distillation scaler (``FEATURE_DISTILLATION_SCALER``, 6) and ``ground_truth`` the
    weight of the labelled loss (1 in Fast-HaMeR).
    """

    keypoints_2d: float = 0.01
    joints_rel: float = 0.05
    global_orient: float = 0.001
    hand_pose: float = 0.001
    betas: float = 0.0005
    kd: float = 0.3
    feature: float = 6.0
    ground_truth: float = 1.0

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if not value >= 0.0:
                raise ValueError(f"loss weight {name} must be >= 0, got {value}")

    def term(self, key: str) -> float:
        """Weight of one output term (a key of :data:`TARGET_KEYS`)."""
        return float(getattr(self, key))

    def to_dict(self) -> dict[str, float]:
        """Plain dict (for checkpoints and logs)."""
        return asdict(self)


def crop_keypoints(joints: torch.Tensor, cam: torch.Tensor) -> torch.Tensor:
    """Project ``(B, 21, 3)`` MANO joints with ``(B, 3)`` crop cameras to ``(B, 21, 2)``.

    The result is in normalised crop coordinates: ``[-0.5, 0.5]`` spans the 256-pixel crop.
    """
    scale, tx, ty = cam[:, 0], cam[:, 1], cam[:, 2]
    tz = 2.0 * CROP_FOCAL_LENGTH / (CROP_SIZE * scale + _SCALE_EPS)
    translation = torch.stack([tx, ty, tz], dim=-1)[:, None, :]
    points = joints + translation
    return (CROP_FOCAL_LENGTH / CROP_SIZE) * points[..., :2] / points[..., 2:3]


def hand_targets(outputs: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The compared quantities of a regressor's outputs (``joints``, ``cam`` and MANO)."""
    joints = outputs["joints"]
    return {
        "keypoints_2d": crop_keypoints(joints, outputs["cam"]),
        "joints_rel": joints - joints[:, :1],
        "global_orient": outputs["global_orient"],
        "hand_pose": outputs["hand_pose"],
        "betas": outputs["betas"],
    }


def _per_sample(key: str, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    difference = prediction - target
    values = difference.abs() if key in ("keypoints_2d", "joints_rel") else difference.square()
    return values.flatten(1).sum(dim=1)


def output_terms(
    prediction: Mapping[str, torch.Tensor],
    target: Mapping[str, torch.Tensor],
    masks: Mapping[str, torch.Tensor] | None = None,
) -> dict[str, torch.Tensor]:
    """Unweighted batch-mean terms between two :func:`hand_targets` dicts.

    Args:
        prediction: the student's quantities.
        target: the teacher's or the labels' quantities (keys missing from it are skipped).
        masks: per-sample float masks ``(B,)`` named as in :data:`TERM_MASKS`; a masked-out
            sample contributes zero (the mean still divides by the batch size).

    """
    terms = {}
    for key in TARGET_KEYS:
        if key not in target:
            continue
        per_sample = _per_sample(key, prediction[key].float(), target[key].float())
        if masks is not None:
            per_sample = per_sample * masks[TERM_MASKS[key]].to(per_sample)
        terms[key] = per_sample.mean()
    return terms


def weighted_sum(terms: Mapping[str, torch.Tensor], weights: LossWeights) -> torch.Tensor:
    """Fast-HaMeR's weighted sum of :func:`output_terms`."""
    total = None
    for key, value in terms.items():
        part = weights.term(key) * value
        total = part if total is None else total + part
    if total is None:
        raise ValueError("no loss terms to sum")
    return total
