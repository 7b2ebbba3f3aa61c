"""Hands attached to bodies: which hand is at which wrist, and the bone pose it gives the body.

The landmark body fit (:mod:`fasthmr_ros.pipeline.body_fit`) sees a hand as three Pose
landmarks (wrist, index and pinky knuckles); the hand fit sees all 21 joints. Where a fitted
hand lies at a body's wrist, the body takes that hand's orientation and finger pose:

- :func:`match_hands_to_wrists` pairs hands with the wrists of the people in the image: same
  side (MediaPipe's left/right are the person's own, for hands and bodies alike), the hand's
  wrist joint within :data:`MAX_WRIST_DISTANCE` forearm lengths (at least
  :data:`MIN_WRIST_DISTANCE_PX` pixels) of the body's wrist landmark, nearest pairs first,
  each hand and wrist used once.
- :func:`hand_bone_rotations` turns a hand result into the rotation of each bone of the Anny
  hand rig from its rest pose, in the camera frame. The rig is the Anny body's hand, bone for
  bone, with the same rest pose, so the body copies these rotations. Anny hands carry them in
  ``model_params``; hands of another model (MANO, from the HaMeR network) are first fitted
  with the Anny hand on their 21 joints.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import numpy as np

from fasthmr_ros.models.anny_hand import shipped_anny_hand, split_anny_hand_params
from fasthmr_ros.models.mesh_model import MODEL_ANNY_HAND
from fasthmr_ros.pipeline.anny_hand_fit import AnnyHandFitter
from fasthmr_ros.pipeline.pose_landmarks import LEFT_ELBOW, LEFT_WRIST, RIGHT_ELBOW, RIGHT_WRIST
from fasthmr_ros.pipeline.results import CameraIntrinsics, HandResult, PersonBox

#: ``BodyResult.extras`` key: the index (in the hands given) of the left and right hand
#: attached to the body, -1 where none is.
ATTACHED_HANDS = "attached_hands"
#: Largest distance from a hand's wrist joint to a body's wrist landmark, in forearm lengths
#: (elbow to wrist, in the image).
MAX_WRIST_DISTANCE = 0.5
#: The distance limit never drops below this many pixels (foreshortened forearms).
MIN_WRIST_DISTANCE_PX = 15.0
#: Each side's Pose landmarks: (wrist, elbow).
SIDE_LANDMARKS: dict[str, tuple[int, int]] = {
    "left": (LEFT_WRIST, LEFT_ELBOW),
    "right": (RIGHT_WRIST, RIGHT_ELBOW),
}
_MIRROR_X = np.diag([-1.0, 1.0, 1.0])


def match_hands_to_wrists(
    people: Sequence[PersonBox],
    hands: Sequence[HandResult],
    max_distance: float = MAX_WRIST_DISTANCE,
    min_distance_px: float = MIN_WRIST_DISTANCE_PX,
) -> list[dict[str, int]]:
    """Per person, the index in ``hands`` of the hand at each of its wrists (see module doc).

    People without image landmarks get no hands.
    """
    pairs: list[tuple[float, int, str, int]] = []
    for p, person in enumerate(people):
        if person.keypoints_2d is None:
            continue
        pixels = np.asarray(person.keypoints_2d, dtype=np.float64)
        for side, (wrist, elbow) in SIDE_LANDMARKS.items():
            if not np.isfinite(pixels[[wrist, elbow]]).all():
                continue
            limit = max(min_distance_px,
                        max_distance * float(np.linalg.norm(pixels[wrist] - pixels[elbow])))
            for h, hand in enumerate(hands):
                if hand.side != side:
                    continue
                distance = float(np.linalg.norm(np.asarray(hand.keypoints_2d[0], np.float64)
                                                - pixels[wrist]))
                if distance <= limit:
                    pairs.append((distance, p, side, h))
    matches: list[dict[str, int]] = [{} for _ in people]
    used: set[int] = set()
    for _, p, side, h in sorted(pairs):
        if h not in used and side not in matches[p]:
            matches[p][side] = h
            used.add(h)
    return matches


def hand_bone_rotations(hand: HandResult) -> np.ndarray:
    """Rotation ``(21, 3, 3)`` of each Anny hand-rig bone from its rest pose, camera frame.

    Bones are in the rig's order (``shipped_anny_hand().data.bone_labels``); rest poses are
    the right hand's in Anny's axes, and for a left hand their x-mirror (the body's left hand).

    Raises:
        ValueError: when the hand's parameters or joints cannot give a pose.

    """
    model = shipped_anny_hand()
    mirror = np.eye(3) if hand.is_right else _MIRROR_X
    if hand.model == MODEL_ANNY_HAND:
        orientation, rotations = split_anny_hand_params(hand.model_params,
                                                        len(model.pose_bones))
    else:  # fit the Anny hand to the hand's joints (a right hand: mirror a left one first)
        joints = np.asarray(hand.joints, dtype=np.float64)
        if joints.shape != (21, 3) or not np.isfinite(joints).all():
            raise ValueError(f"need 21 finite joints, got shape {joints.shape}")
        fit = _fitter().fit(joints @ mirror, mesh=False)
        orientation, rotations = fit.orientation, fit.rotations
    # Right-hand parameters of a left hand describe its mirror image: mirror back.
    return mirror @ model.bone_rotations(orientation, rotations) @ mirror


class DetectedHands:
    """A hand source for :class:`~fasthmr_ros.pipeline.body_pipeline.BodyPipeline`.

    Runs a hand detector and a hand pipeline (e.g. the MediaPipe hand detector and the
    landmark hand fit) on the body's frame.
    """

    def __init__(self, detector: Any, pipeline: Any) -> None:
        self.detector = detector
        self.pipeline = pipeline

    def __call__(self, image_rgb: np.ndarray, camera: CameraIntrinsics) -> list[HandResult]:
        """The hands in the frame."""
        boxes = self.detector.detect(image_rgb)
        return self.pipeline.process(image_rgb, boxes, camera) if boxes else []


@lru_cache(maxsize=1)
def _fitter() -> AnnyHandFitter:
    return AnnyHandFitter(shipped_anny_hand())
