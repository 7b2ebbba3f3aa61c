"""Numbers fixed by HaMeR's and HMR2.0's training and by the MANO and SMPL models.

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

# ---------------------------------------------------------------------------------------------
# SMPL as HMR2.0 uses it (neutral model, 10 shape components, 44 output joints)

NUM_SMPL_JOINTS: int = 24
NUM_SMPL_BODY_JOINTS: int = 23
NUM_SMPL_VERTICES: int = 6890
NUM_SMPL_FACES: int = 13776
#: Joints HMR2.0 regresses with ``SMPL_to_J19.pkl`` from the vertices.
NUM_SMPL_EXTRA_JOINTS: int = 19
#: SMPL kinematic tree (parent of each of the 24 joints; -1 for the pelvis).
SMPL_PARENTS: tuple[int, ...] = (
    -1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 20, 21,
)
#: Maps smplx's [24 SMPL joints + vertex joints] to OpenPose BODY_25 (HMR2.0's ``joint_map``).
SMPL_TO_OPENPOSE: tuple[int, ...] = (
    24, 12, 17, 19, 21, 16, 18, 20, 0, 2, 5, 8, 1, 4, 7, 25, 26, 27, 28, 29, 30, 31, 32, 33, 34,
)
#: HMR2.0's 44 output joints: OpenPose BODY_25, then the 19 regressed by ``SMPL_to_J19.pkl``.
BODY_JOINT_NAMES: tuple[str, ...] = (
    "nose", "neck",
    "right_shoulder", "right_elbow", "right_wrist",
    "left_shoulder", "left_elbow", "left_wrist",
    "mid_hip",
    "right_hip", "right_knee", "right_ankle",
    "left_hip", "left_knee", "left_ankle",
    "right_eye", "left_eye", "right_ear", "left_ear",
    "left_big_toe", "left_small_toe", "left_heel",
    "right_big_toe", "right_small_toe", "right_heel",
    "lsp_right_ankle", "lsp_right_knee", "lsp_right_hip",
    "lsp_left_hip", "lsp_left_knee", "lsp_left_ankle",
    "lsp_right_wrist", "lsp_right_elbow", "lsp_right_shoulder",
    "lsp_left_shoulder", "lsp_left_elbow", "lsp_left_wrist",
    "lsp_neck", "lsp_head_top", "mpii_pelvis", "mpii_thorax",
    "h36m_spine", "h36m_jaw", "h36m_head",
)
#: Index of the MPII pelvis in :data:`BODY_JOINT_NAMES` (HMR2.0's ``PELVIS_IND``).
BODY_PELVIS_INDEX: int = 39
#: The OpenPose BODY_25 skeleton as (parent, child) pairs over :data:`BODY_JOINT_NAMES`.
BODY_SKELETON: tuple[tuple[int, int], ...] = (
    (1, 0), (1, 2), (2, 3), (3, 4), (1, 5), (5, 6), (6, 7), (1, 8),
    (8, 9), (9, 10), (10, 11), (8, 12), (12, 13), (13, 14),
    (0, 15), (15, 17), (0, 16), (16, 18),
    (14, 19), (19, 20), (14, 21), (11, 22), (22, 23), (11, 24),
)
