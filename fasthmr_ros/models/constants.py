"""Numbers fixed by HaMeR's training and by the MANO hand model.

Everything here is a fact of the published model, not a tuning knob.
"""

from __future__ import annotations

#: Side length in pixels of the square crop the network receives.
CROP_SIZE: int = 256
#: The ViT sees the central ``CROP_HEIGHT x CROP_WIDTH`` window of the crop (columns 32:224).
CROP_HEIGHT: int = 256
CROP_WIDTH: int = 192
#: Focal length in pixels that HaMeR assumes for a ``CROP_SIZE`` crop.
CROP_FOCAL_LENGTH: float = 5000.0
#: ImageNet statistics on 0-1 RGB; HaMeR applies them to 0-255 RGB as ``255 * mean``.
IMAGE_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGE_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)

NUM_MANO_JOINTS: int = 16
NUM_HAND_POSE_JOINTS: int = 15
NUM_BETAS: int = 10
NUM_VERTICES: int = 778
NUM_FACES: int = 1538
NUM_JOINTS: int = 21

#: MANO vertex ids used as fingertips, in the order thumb, index, middle, ring, pinky.
FINGERTIP_VERTEX_IDS: tuple[int, ...] = (744, 320, 443, 554, 671)
#: Maps [16 MANO joints + 5 fingertips] to the OpenPose hand order below.
MANO_TO_OPENPOSE: tuple[int, ...] = (
    0, 13, 14, 15, 16, 1, 2, 3, 17, 4, 5, 6, 18, 10, 11, 12, 19, 7, 8, 9, 20,
)
#: MANO kinematic tree (parent of each of the 16 joints; -1 for the wrist).
MANO_PARENTS: tuple[int, ...] = (-1, 0, 1, 2, 0, 4, 5, 0, 7, 8, 0, 10, 11, 0, 13, 14)

#: The 21 output joints, OpenPose hand order.
JOINT_NAMES: tuple[str, ...] = (
    "wrist",
    "thumb1", "thumb2", "thumb3", "thumb_tip",
    "index1", "index2", "index3", "index_tip",
    "middle1", "middle2", "middle3", "middle_tip",
    "ring1", "ring2", "ring3", "ring_tip",
    "pinky1", "pinky2", "pinky3", "pinky_tip",
)
#: Bones as (parent, child) pairs over :data:`JOINT_NAMES`.
HAND_SKELETON: tuple[tuple[int, int], ...] = tuple(
    pair
    for finger in range(5)
    for pair in (
        (0, 1 + 4 * finger),
        (1 + 4 * finger, 2 + 4 * finger),
        (2 + 4 * finger, 3 + 4 * finger),
        (3 + 4 * finger, 4 + 4 * finger),
    )
)
