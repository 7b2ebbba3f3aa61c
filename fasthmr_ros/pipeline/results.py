"""Plain result types shared by the pipeline, the ROS layer and the CLI.

Units: pixels for image quantities, metres for 3D quantities. 3D quantities are expressed in
the camera optical frame of REP-103 (x right, y down, z forward), the frame the models use.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from fasthmr_ros.models.mesh_model import MODEL_MANO

LEFT = "left"
RIGHT = "right"
SIDES = (LEFT, RIGHT)

#: ``extras`` keys of a landmark fit's residuals (means over the fitted joints): the distance
#: to the detector's metric landmarks (metres) and to its image landmarks (pixels). A result
#: without them is not a fit (the network path); messages then carry -1.
FIT_RESIDUAL_M = "fit_residual_m"
FIT_RESIDUAL_PX = "fit_residual_px"


@dataclass(frozen=True)
class CameraIntrinsics:
    """Pinhole intrinsics in pixels (``K = [[fx, 0, cx], [0, fy, cy], [0, 0, 1]]``)."""

    fx: float
    fy: float
    cx: float
    cy: float

    def __post_init__(self) -> None:
        values = (self.fx, self.fy, self.cx, self.cy)
        if not all(math.isfinite(v) for v in values):
            raise ValueError(
                f"camera intrinsics must be finite, got fx={self.fx} fy={self.fy} "
                f"cx={self.cx} cy={self.cy}; check the CameraInfo K matrix or the intrinsics "
                "override parameter"
            )
        if self.fx <= 0 or self.fy <= 0:
            raise ValueError(
                f"focal lengths must be positive, got fx={self.fx} fy={self.fy}; an all-zero K "
                "means the camera is uncalibrated: calibrate it or set the intrinsics override"
            )

    @classmethod
    def from_matrix(cls, k: np.ndarray | list[float]) -> CameraIntrinsics:
        """Build from a 3x3 matrix or the 9 row-major values of ``CameraInfo.k``."""
        m = np.asarray(k, dtype=np.float64).reshape(3, 3)
        return cls(fx=float(m[0, 0]), fy=float(m[1, 1]), cx=float(m[0, 2]), cy=float(m[1, 2]))

    def matrix(self) -> np.ndarray:
        """Return the 3x3 camera matrix ``K``."""
        return np.array(
            [[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]], dtype=np.float64
        )


@dataclass
class HandBox:
    """A detected hand: a tight box around the hand, its side and confidence.

    The box is tight around the hand (as a keypoint detector gives it); the pipeline enlarges it
    the way HaMeR does. ``keypoints_2d`` holds the detector's 21 landmarks (OpenPose order,
    pixels) when it has them, ``world_landmarks`` its 21 metric landmarks (OpenPose order,
    metres, in the detector's hand-centred frame with camera-frame axes) when it has them: the
    landmark-fit model needs both.
    """

    x1: float
    y1: float
    x2: float
    y2: float
    side: str = RIGHT
    score: float = 1.0
    keypoints_2d: np.ndarray | None = None
    source: str = ""
    world_landmarks: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.side not in SIDES:
            raise ValueError(f"hand side must be 'left' or 'right', got {self.side!r}")
        coords = (self.x1, self.y1, self.x2, self.y2)
        if not all(math.isfinite(float(v)) for v in coords):
            raise ValueError(f"hand box has a non-finite coordinate: {coords}")
        if self.x2 <= self.x1 or self.y2 <= self.y1:
            raise ValueError(f"hand box must have x2 > x1 and y2 > y1, got {coords}")

    @property
    def xyxy(self) -> np.ndarray:
        """Return the box as ``[x1, y1, x2, y2]`` float64."""
        return np.array([self.x1, self.y1, self.x2, self.y2], dtype=np.float64)

    @property
    def is_right(self) -> bool:
        """Whether this is a right hand."""
        return self.side == RIGHT


@dataclass
class HandResult:
    """One reconstructed hand in the camera optical frame.

    ``joints`` and ``vertices`` already include ``cam_t``: they are where the hand is in front
    of the camera. ``model`` names the mesh model (:class:`MeshModelInfo` ``name``): the vertex
    count is that model's. MANO parameters (set only when ``model`` is MANO, else ``None``) are
    those of the right-hand model the network runs; for a left hand the network saw the
    mirrored crop, so the left mesh is the x-mirror of the MANO right-hand mesh (mirror a
    rotation ``R`` as ``M R M`` with ``M = diag(-1, 1, 1)``). Other models put their own
    parameters (of the right-hand model, mirrored the same way) in ``model_params`` (layout:
    the model's ``parameter_names``). ``wrist_rotation`` is already the proper rotation of the
    wrist in the camera frame for either side. Landmark fits record their residuals in
    ``extras`` under :data:`FIT_RESIDUAL_M` and :data:`FIT_RESIDUAL_PX`.
    """

    side: str
    score: float
    box: np.ndarray  # (4,) x1, y1, x2, y2 in pixels (the detector's box)
    keypoints_2d: np.ndarray  # (21, 2) pixels, OpenPose hand order
    joints: np.ndarray  # (21, 3) metres, camera frame
    vertices: np.ndarray  # (V, 3) metres, camera frame; V is the model's num_vertices
    cam_t: np.ndarray  # (3,) metres: translation from the model frame to the camera frame
    wrist_rotation: np.ndarray  # (3, 3) wrist orientation in the camera frame
    global_orient: np.ndarray | None = None  # (3, 3) MANO root rotation (right-hand model)
    hand_pose: np.ndarray | None = None  # (15, 3, 3) MANO joint rotations (right-hand model)
    betas: np.ndarray | None = None  # (10,) MANO shape
    model: str = MODEL_MANO
    model_params: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.float32))
    track_id: int | None = None
    extras: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def is_right(self) -> bool:
        """Whether this is a right hand."""
        return self.side == RIGHT


@dataclass
class BodyResult:
    """One reconstructed body in the camera optical frame.

    ``joints`` and ``vertices`` already include ``cam_t``. ``model`` names the mesh model
    (:class:`fasthmr_ros.models.mesh_model.MeshModelInfo` ``name``); the joint order is that
    model's ``joint_names``. SMPL parameters (rotation matrices) are set only for SMPL results;
    other models put their own parameters in ``model_params`` (layout: the model's
    ``parameter_names``). Per-result diagnostics such as fit residuals go into ``extras``
    (:data:`FIT_RESIDUAL_M`, :data:`FIT_RESIDUAL_PX` for landmark fits).
    """

    model: str
    score: float
    box: np.ndarray  # (4,) x1, y1, x2, y2 in pixels (the detector's box)
    keypoints_2d: np.ndarray  # (J, 2) pixels, the joints projected into the image
    joints: np.ndarray  # (J, 3) metres, camera frame
    vertices: np.ndarray  # (V, 3) metres, camera frame
    cam_t: np.ndarray  # (3,) metres: translation from the model frame to the camera frame
    root_rotation: np.ndarray  # (3, 3) pelvis orientation in the camera frame
    global_orient: np.ndarray | None = None  # (3, 3) SMPL root rotation
    body_pose: np.ndarray | None = None  # (23, 3, 3) SMPL joint rotations
    betas: np.ndarray | None = None  # (10,) SMPL shape
    model_params: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.float32))
    track_id: int | None = None
    extras: dict[str, np.ndarray] = field(default_factory=dict)
    #: Index into ``joints`` of the root (pelvis) joint: 0 for Anny's root bone, HMR2.0's
    #: regressed pelvis (``BODY_PELVIS_INDEX``) for SMPL results.
    root_joint: int = 0

    @property
    def root_position(self) -> np.ndarray:
        """The pelvis position (3,) in metres, camera frame."""
        return np.asarray(self.joints)[self.root_joint]


@dataclass
class PersonBox:
    """A detected person: a box around the whole body, a confidence and, when known, landmarks.

    The box is tight around the visible body (pixels). A landmark detector (MediaPipe Pose)
    also fills ``keypoints_2d`` (its 33 image landmarks, pixels), ``world_landmarks`` (the same
    33 points in metres, origin between the hips, axes those of the camera) and
    ``visibility`` (per landmark, 0-1); an external box source (a person detector topic,
    ``--boxes``) leaves them ``None``. Estimators that need landmarks skip a box without them.
    """

    x1: float
    y1: float
    x2: float
    y2: float
    score: float = 1.0
    keypoints_2d: np.ndarray | None = None
    world_landmarks: np.ndarray | None = None
    visibility: np.ndarray | None = None
    source: str = ""
    #: The person's segmentation (frame-sized, 0-1) when the detector gives one: the
    #: foreground of mask-guided token merging (:mod:`fasthmr_ros.pipeline.foreground`).
    mask: np.ndarray | None = None

    def __post_init__(self) -> None:
        coords = (self.x1, self.y1, self.x2, self.y2)
        if not all(math.isfinite(float(v)) for v in coords):
            raise ValueError(f"person box has a non-finite coordinate: {coords}")
        if self.x2 <= self.x1 or self.y2 <= self.y1:
            raise ValueError(f"person box must have x2 > x1 and y2 > y1, got {coords}")

    @property
    def xyxy(self) -> np.ndarray:
        """Return the box as ``[x1, y1, x2, y2]`` float64."""
        return np.array([self.x1, self.y1, self.x2, self.y2], dtype=np.float64)
