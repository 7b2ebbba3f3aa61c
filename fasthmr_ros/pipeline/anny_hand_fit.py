"""Fit the Anny hand to 21 metric hand landmarks, analytically, in well under a millisecond.

Keypoints fix each bone's direction but not its twist about itself, and a learned detector's
landmarks are sometimes anatomically impossible. So the fit is one pass down the kinematic
tree, with no optimiser:

1. **Scale**: the ratio of the landmark skeleton's total bone length to the model's, clamped
   to a plausible range of adult and child hands.
2. **Palm**: the rotation and translation that best align the model's wrist and four knuckles
   (MCP joints) with the landmarks' (Kabsch). This fixes the hand's orientation, twist
   included, from the rigid palm. After a first pass of step 4 the whole posed hand is
   re-aligned with all 21 landmarks (Kabsch again) and step 3 runs once more: palms whose
   proportions differ from Anny's then share the error with the fingers.
3. **Proportions**: each finger's three phalanges are scaled together (about their heads)
   by the ratio of its landmark chain length to the model's, and each metacarpal so that its
   knuckle lies as far from the wrist as the landmark's, all clamped: knuckles and fingertips
   then reach their landmarks (MediaPipe's thumbs were ~15% shorter and its palms shorter
   than Anny's on rendered Anny hands).
4. **Bones**, parents first: each bone is swung so that its child joint (the next joint, or the
   fingertip vertex for a last phalanx) points at its landmark. The swing is split into flexion
   (towards the palm) and abduction (sideways), each clamped to the joint's range, and applied
   as the minimal rotation: the twist about the bone stays zero.

The residual (mean joint distance to the landmarks, metres) is reported with the fit. Left
hands are fitted as the x-mirror of the right-hand model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from fasthmr_ros.models.anny_hand import AnnyHandModel
from fasthmr_ros.models.constants import HAND_SKELETON, NUM_JOINTS

#: Joints (OpenPose order) of the rigid palm used for the orientation: wrist and four MCPs.
PALM_JOINTS: tuple[int, ...] = (0, 5, 9, 13, 17)
#: Rounds of "pose the bones, re-align the whole hand rigidly" before the final bone pass.
ROOT_PASSES = 1
#: Allowed range of each finger's length against the hand's scale (MediaPipe's thumbs were
#: about 15% shorter than Anny's on rendered Anny hands; people's proportions differ too).
FINGER_LENGTH_RANGE: tuple[float, float] = (0.8, 1.2)
#: Allowed range of the uniform scale against Anny's default 18 cm hand.
SCALE_RANGE: tuple[float, float] = (0.6, 1.5)
#: Smallest landmark palm (wrist to middle MCP, metres) accepted as a hand.
MIN_PALM_LENGTH = 0.02
#: Largest landmark palm accepted as a hand (metres).
MAX_PALM_LENGTH = 0.30

#: The landmark each posed bone aims its child at (OpenPose joint index).
_AIMS: dict[str, int] = {
    "finger1-1.R": 2, "finger1-2.R": 3, "finger1-3.R": 4,
    "metacarpal1.R": 5, "finger2-1.R": 6, "finger2-2.R": 7, "finger2-3.R": 8,
    "metacarpal2.R": 9, "finger3-1.R": 10, "finger3-2.R": 11, "finger3-3.R": 12,
    "metacarpal3.R": 13, "finger4-1.R": 14, "finger4-2.R": 15, "finger4-3.R": 16,
    "metacarpal4.R": 17, "finger5-1.R": 18, "finger5-2.R": 19, "finger5-3.R": 20,
}


@dataclass(frozen=True)
class JointRange:
    """Range of a joint in degrees: flexion (towards the palm) and sideways abduction."""

    flex_min: float
    flex_max: float
    abduction: float


#: Joint ranges by bone kind: generous anatomical limits, to reject impossible landmarks.
JOINT_RANGES: dict[str, JointRange] = {
    "metacarpal": JointRange(-15.0, 20.0, 15.0),
    "thumb1": JointRange(-50.0, 70.0, 60.0),  # carpometacarpal: a saddle joint
    "thumb2": JointRange(-30.0, 90.0, 30.0),
    "thumb3": JointRange(-30.0, 100.0, 15.0),
    "finger1": JointRange(-45.0, 100.0, 35.0),  # MCP
    "finger2": JointRange(-20.0, 120.0, 15.0),  # PIP
    "finger3": JointRange(-30.0, 100.0, 20.0),  # DIP
}


def _range_of(label: str) -> JointRange:
    if label.startswith("metacarpal"):
        return JOINT_RANGES["metacarpal"]
    finger, segment = label.split(".")[0].removeprefix("finger").split("-")
    return JOINT_RANGES[("thumb" if finger == "1" else "finger") + segment]


class LandmarkError(ValueError):
    """A landmark set that cannot be a hand (wrong shape, NaN, degenerate scale)."""


@dataclass
class AnnyHandFit:
    """A fitted right-hand Anny pose, in the landmarks' frame (metres).

    ``vertices`` and ``joints`` are the fitted mesh, scaled, in the (possibly mirrored) frame
    the landmarks were given in: ``joints`` approximate the landmarks. ``rotations`` are the
    local rotations of bones ``model.pose_bones``; ``orientation`` and ``translation`` place
    the scaled right-hand model (``x -> scale * (orientation @ x) + translation``).
    """

    scale: float
    finger_lengths: np.ndarray  # (5,) thumb first, relative to scale
    palm_lengths: np.ndarray  # (4,) metacarpal scales, index first
    orientation: np.ndarray  # (3, 3)
    translation: np.ndarray  # (3,)
    rotations: np.ndarray  # (len(pose_bones), 3, 3)
    wrist_rotation: np.ndarray  # (3, 3) posed wrist bone orientation
    vertices: np.ndarray  # (V, 3); (0, 3) when fitted with mesh=False
    joints: np.ndarray  # (21, 3)
    residual_m: float
    clamped: int  # how many bones hit a joint limit


def check_landmarks(world: np.ndarray) -> np.ndarray:
    """Return 21 metric landmarks as ``(21, 3)`` float64 or raise :class:`LandmarkError`."""
    points = np.asarray(world, dtype=np.float64)
    if points.shape != (NUM_JOINTS, 3):
        raise LandmarkError(f"need 21 3D hand landmarks, got an array of shape {points.shape}")
    if not np.isfinite(points).all():
        raise LandmarkError("hand landmarks contain NaN or infinite values")
    palm = float(np.linalg.norm(points[9] - points[0]))
    if not MIN_PALM_LENGTH <= palm <= MAX_PALM_LENGTH:
        raise LandmarkError(
            f"degenerate hand landmarks: wrist to middle knuckle is {palm * 100:.1f} cm, "
            f"expected {MIN_PALM_LENGTH * 100:.0f}-{MAX_PALM_LENGTH * 100:.0f} cm (metric "
            "world landmarks are needed, not image coordinates)"
        )
    return points


def kabsch(source: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rotation ``R`` and translation ``t`` minimising ``|R source + t - target|``."""
    src_c, tgt_c = source.mean(axis=0), target.mean(axis=0)
    u, _, vt = np.linalg.svd((source - src_c).T @ (target - tgt_c))
    d = np.sign(np.linalg.det(vt.T @ u.T)) or 1.0
    rotation = vt.T @ np.diag([1.0, 1.0, d]) @ u.T
    return rotation, tgt_c - rotation @ src_c


def _rotation_between(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Minimal rotation taking unit vector ``a`` to unit vector ``b`` (Rodrigues).

    Written on Python floats: for one 3-vector this is several times faster than numpy.
    """
    ax, ay, az = float(a[0]), float(a[1]), float(a[2])
    bx, by, bz = float(b[0]), float(b[1]), float(b[2])
    kx, ky, kz = ay * bz - az * by, az * bx - ax * bz, ax * by - ay * bx
    c = ax * bx + ay * by + az * bz
    if c < -1.0 + 1e-12:
        # Opposite vectors: half a turn about an axis perpendicular to a.
        perp = np.cross(a, [1.0, 0.0, 0.0] if abs(ax) < 0.9 else [0.0, 1.0, 0.0])
        perp /= np.linalg.norm(perp)
        return 2.0 * np.outer(perp, perp) - np.eye(3)
    # R = I + [k]x + [k]x^2 / (1 + c) with k = a x b (|k| = sin).
    f = 1.0 / (1.0 + c)
    return np.array([
        [1.0 - f * (ky * ky + kz * kz), f * kx * ky - kz, f * kx * kz + ky],
        [f * kx * ky + kz, 1.0 - f * (kx * kx + kz * kz), f * ky * kz - kx],
        [f * kx * kz - ky, f * ky * kz + kx, 1.0 - f * (kx * kx + ky * ky)],
    ])


class AnnyHandFitter:
    """Analytic fit of :class:`AnnyHandModel` to 21 metric landmarks (see the module doc)."""

    def __init__(self, model: AnnyHandModel) -> None:
        self.model = model
        labels = model.data.bone_labels
        reference = model.reference_deltas()
        world = model.posed_bones(reference)
        vertices = model.skin(world)
        self.reference_joints = model.joints(world, vertices)
        j = self.reference_joints
        self._bone_ends = np.asarray(HAND_SKELETON, dtype=np.int64).T
        self.reference_length = self._skeleton_length(j)
        palm_normal = np.cross(j[5] - j[0], j[17] - j[0])  # palmar side for the right hand
        palm_normal /= np.linalg.norm(palm_normal)
        self.bones = np.array(model.pose_bones, dtype=np.int64)
        self.aim_joint = np.array([_AIMS[labels[b]] for b in self.bones], dtype=np.int64)
        # Per bone, in its reference frame: the aim (head to child), the palmar direction
        # perpendicular to it and the sideways axis; and the joint range in radians.
        self.basis = np.empty((len(self.bones), 3, 3))
        self.limits = np.empty((len(self.bones), 3))
        for i, bone in enumerate(self.bones):
            frame = model.reference_poses[bone]
            rot = frame[:3, :3]
            aim = rot.T @ (j[self.aim_joint[i]] - frame[:3, 3])
            aim /= np.linalg.norm(aim)
            palmar = rot.T @ palm_normal
            palmar -= np.dot(palmar, aim) * aim
            palmar /= np.linalg.norm(palmar)
            self.basis[i] = np.stack([aim, palmar, np.cross(aim, palmar)])
            r = _range_of(labels[bone])
            self.limits[i] = np.radians([r.flex_min, r.flex_max, r.abduction])
        self.reference_local = model.reference_local
        self.parents = model.parents
        # Each finger's phalanges (thumb: finger1-1..3) and its landmark chain (4 joints).
        self.finger_bones = [[labels.index(f"finger{k}-{s}.R") for s in (1, 2, 3)]
                             for k in range(1, 6)]
        self.finger_chains = np.array([[1, 2, 3, 4]] + [[4 * k + 1, 4 * k + 2, 4 * k + 3,
                                                         4 * k + 4] for k in range(1, 5)])
        self.reference_finger_lengths = self._chain_lengths(j)
        # The metacarpals (index to pinky): their heads and the reference palm lengths.
        self.metacarpal_bones = np.array([labels.index(f"metacarpal{k}.R") for k in range(1, 5)])
        heads = model.reference_poses[self.metacarpal_bones, :3, 3]
        knuckles = j[[5, 9, 13, 17]]
        self.palm_lengths = np.linalg.norm(knuckles - j[0], axis=1)
        # Scaling a metacarpal by k moves its knuckle by (k - 1) times this offset.
        self.metacarpal_offsets = knuckles - heads

    def _chain_lengths(self, joints: np.ndarray) -> np.ndarray:
        chains = joints[self.finger_chains]  # (5, 4, 3)
        return np.sqrt((np.diff(chains, axis=1) ** 2).sum(axis=2)).sum(axis=1)

    def _skeleton_length(self, joints: np.ndarray) -> float:
        parent, child = self._bone_ends
        return float(np.sqrt(((joints[child] - joints[parent]) ** 2).sum(axis=1)).sum())

    def _pose_bones(
        self,
        orientation: np.ndarray,
        translation: np.ndarray,
        target: np.ndarray,
        bone_scales: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray, int]:
        """Place the root, then swing every bone at its target: world poses, rotations, clamps."""
        model = self.model
        world = np.empty((model.num_bones, 4, 4))
        root = np.eye(4)
        root[:3, :3], root[:3, 3] = orientation, translation
        world[0] = root @ model.reference_poses[0]
        world[1] = world[0] @ self.reference_local[1]
        rotations = np.empty((len(self.bones), 3, 3))
        clamped = 0
        for i, bone in enumerate(self.bones):
            frame = world[self.parents[bone]] @ self.reference_local[bone]
            basis = self.basis[i]
            # The wanted direction in the (aim, palmar, side) basis of the bone.
            aim_c, palm_c, side_c = (basis @ frame[:3, :3].T
                                     @ (target[self.aim_joint[i]] - frame[:3, 3])).tolist()
            norm = math.sqrt(aim_c * aim_c + palm_c * palm_c + side_c * side_c)
            if norm < 1e-9:
                rotation = np.eye(3)
            else:
                aim_c, palm_c, side_c = aim_c / norm, palm_c / norm, side_c / norm
                flex = math.atan2(palm_c, aim_c)
                abduction = math.asin(max(-1.0, min(1.0, side_c)))
                flex_min, flex_max, abd_max = self.limits[i]
                flex_c = min(max(flex, flex_min), flex_max)
                abd_c = min(max(abduction, -abd_max), abd_max)
                clamped += (flex_c != flex) or (abd_c != abduction)
                direction = basis.T @ np.array([
                    math.cos(abd_c) * math.cos(flex_c),
                    math.cos(abd_c) * math.sin(flex_c),
                    math.sin(abd_c),
                ])
                rotation = _rotation_between(basis[0], direction)
            rotations[i] = rotation
            # The parent's scale rode into frame: keep this bone's own (see posed_bones).
            parent = self.parents[bone]
            frame[:3, :3] = frame[:3, :3] @ rotation * (bone_scales[bone] / bone_scales[parent])
            world[bone] = frame
        return world, rotations, clamped

    def fit(
        self,
        landmarks: np.ndarray,
        scale: float | None = None,
        mesh: bool = True,
        root_passes: int = ROOT_PASSES,
    ) -> AnnyHandFit:
        """Fit the right-hand model to ``(21, 3)`` metric landmarks (mirror left hands first).

        Args:
            landmarks: the targets (metres).
            scale: keep this scale instead of estimating it from the landmarks' bone lengths.
            mesh: skin the whole mesh (else only the joints: ``vertices`` is empty).
            root_passes: rounds of whole-hand re-alignment before the last bone pass.

        Raises:
            LandmarkError: when the landmarks cannot be a hand.

        """
        points = check_landmarks(landmarks)
        target = points
        if scale is None:
            scale = float(np.clip(self._skeleton_length(points) / self.reference_length,
                                  *SCALE_RANGE))
        target = target / scale  # fit in model units
        lengths = np.clip(self._chain_lengths(target) / self.reference_finger_lengths,
                          *FINGER_LENGTH_RANGE)
        bone_scales = np.ones(self.model.num_bones)
        # Palm: each metacarpal stretched so that its knuckle is as far from the wrist as the
        # landmark's (to first order along the metacarpal), clamped.
        ratio = np.linalg.norm(target[[5, 9, 13, 17]] - target[0], axis=1) / self.palm_lengths
        along = np.linalg.norm(self.metacarpal_offsets, axis=1)
        palm_scales = np.clip(1.0 + (ratio - 1.0) * self.palm_lengths / along,
                              *FINGER_LENGTH_RANGE)
        bone_scales[self.metacarpal_bones] = palm_scales
        for bones, length in zip(self.finger_bones, lengths, strict=True):
            bone_scales[bones] = length
        palm = list(PALM_JOINTS)
        reference = self.reference_joints.copy()
        reference[[5, 9, 13, 17]] += (palm_scales - 1.0)[:, None] * self.metacarpal_offsets
        orientation, translation = kabsch(reference[palm], target[palm])
        for _ in range(root_passes):
            world, rotations, clamped = self._pose_bones(orientation, translation, target,
                                                            bone_scales)
            # Re-align the whole posed hand, fingers included, and pose the bones again.
            joints = self.model.joints(world, self.model.skin_vertices(
                world, self.model.data.fingertip_vertices), tips_only=True)
            correction, shift = kabsch(joints, target)
            orientation, translation = correction @ orientation, correction @ translation + shift
        world, rotations, clamped = self._pose_bones(orientation, translation, target,
                                                            bone_scales)
        model = self.model
        if mesh:
            vertices = model.skin(world) * scale
            joints = model.joints(world, vertices / scale) * scale
        else:
            vertices = np.zeros((0, 3))
            tips = model.skin_vertices(world, model.data.fingertip_vertices)
            joints = model.joints(world, tips, tips_only=True) * scale
        offset = (points - points.mean(axis=0)) - (joints - joints.mean(axis=0))
        return AnnyHandFit(
            scale=scale,
            finger_lengths=lengths,
            palm_lengths=palm_scales,
            orientation=orientation,
            translation=translation * scale,
            rotations=rotations,
            wrist_rotation=world[1][:3, :3].copy(),
            vertices=vertices,
            joints=joints,
            residual_m=float(np.linalg.norm(offset, axis=1).mean()),
            clamped=int(clamped),
        )
