"""Landmark-fit bodies: MediaPipe Pose's 33 landmarks -> the Anny body, analytically.

The permissive default :class:`~fasthmr_ros.pipeline.body_estimator.BodyEstimator`
(``landmarks``). Per person, with no optimiser:

1. **Scale.** One uniform scale ``s`` of the default Anny body: the summed lengths of the
   limbs and the torso in the world landmarks (metres) over the same sums on the rest body,
   bounded to ``scale_range`` (heights about 1.0-2.2 m).
2. **Orientation per bone.** The pelvis, the chest and the head get full rotations from two
   landmark directions each (hips + spine, shoulders + spine, ears + nose); the spine and
   neck bones interpolate between them. Every limb bone (upper arm, forearm, thigh, shin,
   foot) gets the smallest rotation turning its rest direction, as carried by its parent, onto
   the landmark direction, so its twist about its own axis (not observable from landmarks) is
   inherited from the parent and stays bounded; swings are bounded to ``max_swing_deg``. The
   hand gets a full rotation from the wrist, index and pinky landmarks, bounded to
   ``max_wrist_deg`` from the forearm. Toes keep their rest pose; so do the fingers unless a
   hand is attached to that wrist (step 4).
3. **Placement.** The fitted body's landmark points and the 33 image landmarks give a
   perspective-n-point solve with the real intrinsics (OpenCV's iterative solver, started from
   the closed-form translation of :func:`~fasthmr_ros.pipeline.camera.solve_translation`), so
   the body is placed metrically in the camera optical frame.
4. **Attached hands.** Given the camera-frame bone rotations of a hand fitted at that wrist
   (:mod:`fasthmr_ros.pipeline.hand_attachment`: the Anny hand rig is the body's hand, bone
   for bone, with the same rest pose), the body's hand takes that hand's orientation (bounded
   to ``max_wrist_deg`` from the forearm) and every finger bone its rotation relative to the
   wrist: the body's fingers curl as the hand fit's.

Each result reports ``extras[FIT_RESIDUAL_M]`` (mean distance in metres between the fitted
body's landmark points and the world landmarks, hip centres aligned, before placement) and
``extras[FIT_RESIDUAL_PX]`` (mean reprojection error of the placed landmark points), over
landmarks whose visibility reaches ``min_visibility``, plus ``extras["height_m"]`` (standing
height of the fitted body); messages carry them as ``fit_residual_m`` / ``fit_residual_px``.
Joints are the Anny bone heads (``info.joint_names``); ``cam_t`` is the pelvis (root bone
head) in the camera frame and ``root_rotation`` the pelvis orientation (at rest: x the person's
left, y down, z the person's back). ``model_params`` is ``[scale, rotation vector of each bone
relative to its parent ...]`` (the root's relative to the camera), as ``info.parameter_names``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import cv2
import numpy as np
from scipy.spatial.transform import Rotation

from fasthmr_ros.models.anny_body import CANONICAL_FROM_ANNY, AnnyBodyModel
from fasthmr_ros.models.anny_hand import shipped_anny_hand
from fasthmr_ros.models.mesh_model import MeshModelInfo
from fasthmr_ros.pipeline.body_estimator import PERSON_INDEX
from fasthmr_ros.pipeline.camera import project_points, solve_translation
from fasthmr_ros.pipeline.hand_attachment import (
    ATTACHED_HANDS,
    hand_bone_rotations,
    match_hands_to_wrists,
)
from fasthmr_ros.pipeline.pose_landmarks import (
    LEFT_ANKLE,
    LEFT_EAR,
    LEFT_ELBOW,
    LEFT_EYE,
    LEFT_FOOT_INDEX,
    LEFT_HEEL,
    LEFT_HIP,
    LEFT_INDEX,
    LEFT_KNEE,
    LEFT_PINKY,
    LEFT_SHOULDER,
    LEFT_THUMB,
    LEFT_WRIST,
    NOSE,
    NUM_LANDMARKS,
    RIGHT_ANKLE,
    RIGHT_EAR,
    RIGHT_ELBOW,
    RIGHT_EYE,
    RIGHT_FOOT_INDEX,
    RIGHT_HEEL,
    RIGHT_HIP,
    RIGHT_INDEX,
    RIGHT_KNEE,
    RIGHT_PINKY,
    RIGHT_SHOULDER,
    RIGHT_THUMB,
    RIGHT_WRIST,
)
from fasthmr_ros.pipeline.results import (
    FIT_RESIDUAL_M,
    FIT_RESIDUAL_PX,
    BodyResult,
    CameraIntrinsics,
    HandResult,
    PersonBox,
)

#: Landmarks that are Anny bone heads. MediaPipe's left/right are the person's own sides,
#: Anny's ``.L``/``.R`` too.
_BONE_LANDMARKS: dict[int, str] = {
    LEFT_EYE: "eye.L", RIGHT_EYE: "eye.R",
    LEFT_SHOULDER: "upperarm01.L", RIGHT_SHOULDER: "upperarm01.R",
    LEFT_ELBOW: "lowerarm01.L", RIGHT_ELBOW: "lowerarm01.R",
    LEFT_WRIST: "wrist.L", RIGHT_WRIST: "wrist.R",
    LEFT_PINKY: "finger5-1.L", RIGHT_PINKY: "finger5-1.R",
    LEFT_INDEX: "finger2-1.L", RIGHT_INDEX: "finger2-1.R",
    LEFT_THUMB: "finger1-2.L", RIGHT_THUMB: "finger1-2.R",
    LEFT_HIP: "upperleg01.L", RIGHT_HIP: "upperleg01.R",
    LEFT_KNEE: "lowerleg01.L", RIGHT_KNEE: "lowerleg01.R",
    LEFT_ANKLE: "foot.L", RIGHT_ANKLE: "foot.R",
}
#: Limb segments whose lengths set the scale (the torso is added as hip centre - shoulder centre).
_SCALE_SEGMENTS = (
    (LEFT_SHOULDER, LEFT_ELBOW), (LEFT_ELBOW, LEFT_WRIST),
    (RIGHT_SHOULDER, RIGHT_ELBOW), (RIGHT_ELBOW, RIGHT_WRIST),
    (LEFT_HIP, LEFT_KNEE), (LEFT_KNEE, LEFT_ANKLE),
    (RIGHT_HIP, RIGHT_KNEE), (RIGHT_KNEE, RIGHT_ANKLE),
)
#: Landmarks the fit needs finite (world and image): the torso, the head and every limb.
_REQUIRED = (
    NOSE, LEFT_EAR, RIGHT_EAR, LEFT_SHOULDER, RIGHT_SHOULDER, LEFT_ELBOW, RIGHT_ELBOW,
    LEFT_WRIST, RIGHT_WRIST, LEFT_PINKY, RIGHT_PINKY, LEFT_INDEX, RIGHT_INDEX, LEFT_HIP,
    RIGHT_HIP, LEFT_KNEE, RIGHT_KNEE, LEFT_ANKLE, RIGHT_ANKLE, LEFT_FOOT_INDEX, RIGHT_FOOT_INDEX,
)
_SPINE = ("spine05", "spine04", "spine03", "spine02", "spine01")
_NECK = ("neck01", "neck02", "neck03")
#: Smallest PnP correspondences.
MIN_PNP_POINTS = 6


class LandmarkFitError(ValueError):
    """A landmark set the fit cannot use (the person is skipped)."""


def _cross(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cross product of two 3-vectors (``np.cross`` costs microseconds of axis handling)."""
    return np.array((a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2],
                     a[0] * b[1] - a[1] * b[0]))


def _unit(v: np.ndarray) -> np.ndarray:
    n = float(np.linalg.norm(v))
    if not n > 1e-9:
        raise LandmarkFitError("two landmarks coincide (degenerate landmark set)")
    return v / n


def frame_from(primary: np.ndarray, secondary: np.ndarray) -> np.ndarray:
    """Orthonormal frame (columns) from a first axis and a second direction in its plane."""
    x = _unit(primary)
    y = _unit(secondary - np.dot(secondary, x) * x)
    return np.stack((x, y, _cross(x, y)), axis=1)


def swing(a: np.ndarray, b: np.ndarray, max_angle: float) -> np.ndarray:
    """Smallest rotation turning direction ``a`` onto ``b``, its angle bounded (radians)."""
    a, b = _unit(a), _unit(b)
    axis = _cross(a, b)
    sin, cos = float(np.linalg.norm(axis)), float(np.dot(a, b))
    angle = min(math.atan2(sin, cos), max_angle)
    if sin < 1e-9:
        if cos > 0:
            return np.eye(3)
        axis = _cross(a, np.array([1.0, 0.0, 0.0]))  # opposite: any perpendicular axis
        if np.linalg.norm(axis) < 1e-6:
            axis = _cross(a, np.array([0.0, 1.0, 0.0]))
    k = axis / np.linalg.norm(axis)
    kx = np.array([[0.0, -k[2], k[1]], [k[2], 0.0, -k[0]], [-k[1], k[0], 0.0]])
    return np.eye(3) + math.sin(angle) * kx + (1.0 - math.cos(angle)) * (kx @ kx)


def _bounded(relative: np.ndarray, max_angle: float) -> np.ndarray:
    rotvec = Rotation.from_matrix(relative).as_rotvec()
    angle = float(np.linalg.norm(rotvec))
    if angle <= max_angle:
        return relative
    return Rotation.from_rotvec(rotvec * (max_angle / angle)).as_matrix()


def _interpolate(start: np.ndarray, end: np.ndarray, fractions: Sequence[float]) -> np.ndarray:
    rotvec = Rotation.from_matrix(start.T @ end).as_rotvec()
    steps = Rotation.from_rotvec(np.outer(fractions, rotvec)).as_matrix()
    return start[None] @ steps


class LandmarkBodyFitter:
    """Fit the Anny body to MediaPipe Pose landmarks (the ``landmarks`` body estimator).

    Args:
        model: the Anny body (default: :meth:`AnnyBodyModel.default`, built on first use).
        min_visibility: landmarks below this visibility are left out of the placement and of
            the residuals (the world landmarks of hidden parts are MediaPipe's guesses).
        scale_range: bounds of the body's uniform scale (1.0 is Anny's 1.63 m average body).
        max_swing_deg: largest rotation of a limb bone away from its parent-carried direction.
        max_wrist_deg: largest rotation of the hand away from the forearm.

    """

    def __init__(
        self,
        model: AnnyBodyModel | None = None,
        *,
        min_visibility: float = 0.5,
        scale_range: tuple[float, float] = (0.6, 1.35),
        max_swing_deg: float = 175.0,
        max_wrist_deg: float = 90.0,
    ) -> None:
        self.model = model or AnnyBodyModel.default()
        self.min_visibility = float(min_visibility)
        low, high = (float(v) for v in scale_range)
        if not 0.0 < low <= high:
            raise ValueError(f"scale_range must be 0 < low <= high, got {scale_range}")
        self.scale_range = (low, high)
        self.max_swing = math.radians(max_swing_deg)
        self.max_wrist = math.radians(max_wrist_deg)
        self._skipped: list[str] = []
        m = self.model
        self._b = {name: m.bone(name) for name in (
            "root", *_SPINE, *_NECK, "head",
            *(f"{part}.{side}" for side in "LR" for part in (
                "upperarm01", "lowerarm01", "wrist", "upperleg01", "lowerleg01", "foot")),
        )}
        self._landmark_bones = np.array(
            [m.bone(_BONE_LANDMARKS[i]) if i in _BONE_LANDMARKS else -1
             for i in range(NUM_LANDMARKS)]
        )
        self._landmark_vertices = self._find_landmark_vertices()
        self._vertex_landmarks = np.array(list(self._landmark_vertices), dtype=np.int64)
        self._vertex_ids = np.array(list(self._landmark_vertices.values()), dtype=np.int64)
        self._used = np.array(
            [i in _BONE_LANDMARKS or i in self._landmark_vertices for i in range(NUM_LANDMARKS)]
        )
        self._hand_bones = {side: self._hand_subtree(side) for side in ("left", "right")}
        rest = self._landmarks(m.rest_vertices[self._vertex_ids], m.rest_heads)
        self._rest = rest
        self._rest_lengths = self._segment_lengths(rest)

    # ---------------------------------------------------------------- estimator API
    @property
    def info(self) -> MeshModelInfo:
        """The Anny body's structure."""
        return self.model.info

    @property
    def skipped(self) -> list[str]:
        """Why people of the last :meth:`estimate` call were skipped."""
        return list(self._skipped)

    @property
    def attaches_hands(self) -> bool:
        """Whether :meth:`estimate` takes ``hands`` (it does: fingers from the hand fit)."""
        return True

    def estimate(
        self,
        image_rgb: np.ndarray | None,
        people: Sequence[PersonBox],
        camera: CameraIntrinsics,
        hands: Sequence[HandResult] | None = None,
    ) -> list[BodyResult]:
        """Fit every person that carries MediaPipe landmarks (the image itself is not read).

        ``hands`` (the frame's hand results, any hand model) are attached to the wrists they
        lie at (:func:`~fasthmr_ros.pipeline.hand_attachment.match_hands_to_wrists`); each
        result's ``extras[ATTACHED_HANDS]`` names the index in ``hands`` of its left and right
        hand (-1: none, the fingers keep their rest pose).
        """
        self._skipped = []
        results = []
        matches = match_hands_to_wrists(people, hands) if hands else [{} for _ in people]
        for index, (person, matched) in enumerate(zip(people, matches, strict=True)):
            attached = {}
            for side, hand_index in matched.items():
                try:
                    attached[side] = hand_bone_rotations(hands[hand_index])  # type: ignore[index]
                except ValueError as exc:
                    self._skipped.append(f"person {index}: {side} hand not attached: {exc}")
            try:
                result = self.fit(person, camera, attached)
            except LandmarkFitError as exc:
                self._skipped.append(f"person {index}: {exc}")
                continue
            result.extras[PERSON_INDEX] = np.array([index], dtype=np.int64)
            result.extras[ATTACHED_HANDS] = np.array(
                [matched.get(side, -1) if side in attached else -1 for side in ("left", "right")],
                dtype=np.int64)
            results.append(result)
        return results

    # ---------------------------------------------------------------------- the fit
    def fit(
        self,
        person: PersonBox,
        camera: CameraIntrinsics,
        hands: Mapping[str, np.ndarray] | None = None,
    ) -> BodyResult:
        """Fit one person; raise :class:`LandmarkFitError` for an unusable landmark set.

        ``hands`` maps ``"left"`` / ``"right"`` to the camera-frame bone rotations of the hand
        attached to that wrist (:func:`~fasthmr_ros.pipeline.hand_attachment.hand_bone_rotations`).
        """
        world, image, visible = self._check(person)
        scale = self._scale(world)
        rotations = self._rotations(world)
        m = self.model
        heads = m.joints(rotations, scale)
        points, shift = self._placed_landmarks(rotations, scale, heads, world)
        fit_mask = self._used & visible
        rotation, translation = self._place(points[fit_mask], image[fit_mask], camera)
        if hands:
            for side, bone_rotations in hands.items():
                self._attach_hand(rotations, side, rotation.T @ bone_rotations)
            heads = m.joints(rotations, scale)
            points, shift = self._placed_landmarks(rotations, scale, heads, world)
        residual_m = float(np.mean(np.linalg.norm(points[fit_mask] - world[fit_mask], axis=1)))
        vertices, heads = m.skin(rotations, scale, heads=heads)
        offset = rotation @ shift + translation
        vertices = vertices @ rotation.T + offset
        joints = heads @ rotation.T + offset
        placed = points[fit_mask] @ rotation.T + translation
        residual_px = float(np.mean(np.linalg.norm(project_points(placed, camera)
                                                   - image[fit_mask], axis=1)))
        root = self._b["root"]
        relative = np.einsum("kji,kjl->kil", rotations[np.maximum(m.parents, 0)], rotations)
        relative[root] = rotation @ rotations[root]
        params = np.concatenate(([scale], Rotation.from_matrix(relative).as_rotvec().ravel()))
        return BodyResult(
            model=m.info.name,
            score=float(person.score),
            box=person.xyxy,
            keypoints_2d=project_points(joints, camera).astype(np.float32),
            joints=joints.astype(np.float32),
            vertices=vertices.astype(np.float32),
            cam_t=joints[root].astype(np.float32),
            root_rotation=(rotation @ rotations[root]).astype(np.float32),
            model_params=params.astype(np.float32),
            extras={
                FIT_RESIDUAL_M: np.array([residual_m], dtype=np.float32),
                FIT_RESIDUAL_PX: np.array([residual_px], dtype=np.float32),
                "height_m": np.array([scale * m.rest_height], dtype=np.float32),
            },
        )

    def _check(self, person: PersonBox) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if person.world_landmarks is None or person.keypoints_2d is None:
            raise LandmarkFitError(
                "no landmarks (an external box?): the landmark fit needs MediaPipe Pose "
                "landmarks; use the person detector 'mediapipe' or a network estimator"
            )
        world = np.asarray(person.world_landmarks, dtype=np.float64)
        image = np.asarray(person.keypoints_2d, dtype=np.float64)
        if world.shape != (NUM_LANDMARKS, 3) or image.shape != (NUM_LANDMARKS, 2):
            raise LandmarkFitError(
                f"expected {NUM_LANDMARKS} world (x, y, z) and image (u, v) landmarks, got "
                f"{world.shape} and {image.shape}"
            )
        required = list(_REQUIRED)
        if not (np.isfinite(world[required]).all() and np.isfinite(image[required]).all()):
            raise LandmarkFitError("landmarks contain NaN or infinite values")
        if person.visibility is None:
            visible = np.ones(NUM_LANDMARKS, dtype=bool)
        else:
            visibility = np.asarray(person.visibility, dtype=np.float64).reshape(-1)
            if visibility.shape != (NUM_LANDMARKS,):
                raise LandmarkFitError(f"expected {NUM_LANDMARKS} visibilities, got "
                                       f"{visibility.shape}")
            visible = np.nan_to_num(visibility, nan=0.0) >= self.min_visibility
        visible &= np.isfinite(world).all(axis=1) & np.isfinite(image).all(axis=1)
        shoulders = np.linalg.norm(world[LEFT_SHOULDER] - world[RIGHT_SHOULDER])
        torso = np.linalg.norm(0.5 * (world[LEFT_SHOULDER] + world[RIGHT_SHOULDER])
                               - 0.5 * (world[LEFT_HIP] + world[RIGHT_HIP]))
        if not (shoulders > 0.05 and torso > 0.1):
            raise LandmarkFitError(
                f"degenerate landmark scale (shoulder width {shoulders:.3f} m, torso "
                f"{torso:.3f} m)"
            )
        if int((self._used & visible).sum()) < MIN_PNP_POINTS:
            raise LandmarkFitError(
                f"fewer than {MIN_PNP_POINTS} landmarks reach visibility {self.min_visibility}"
            )
        return world, image, visible

    def _segment_lengths(self, points: np.ndarray) -> float:
        limbs = sum(float(np.linalg.norm(points[a] - points[b])) for a, b in _SCALE_SEGMENTS)
        torso = np.linalg.norm(0.5 * (points[LEFT_SHOULDER] + points[RIGHT_SHOULDER])
                               - 0.5 * (points[LEFT_HIP] + points[RIGHT_HIP]))
        return limbs + float(torso)

    def _scale(self, world: np.ndarray) -> float:
        scale = self._segment_lengths(world) / self._rest_lengths
        return float(np.clip(scale, *self.scale_range))

    def _rotations(self, world: np.ndarray) -> np.ndarray:
        """One rotation per bone (canonical frame) from the world landmarks."""
        m, b, rest = self.model, self._b, self._rest
        rotations = np.empty((m.num_bones, 3, 3))

        def torso_frame(points: np.ndarray, left: int, right: int) -> np.ndarray:
            up = (0.5 * (points[LEFT_SHOULDER] + points[RIGHT_SHOULDER])
                  - 0.5 * (points[LEFT_HIP] + points[RIGHT_HIP]))
            return frame_from(points[left] - points[right], up)

        def head_frame(points: np.ndarray) -> np.ndarray:
            ears = 0.5 * (points[LEFT_EAR] + points[RIGHT_EAR])
            return frame_from(points[LEFT_EAR] - points[RIGHT_EAR], points[NOSE] - ears)

        def hand_frame(points: np.ndarray, wrist: int, index: int, pinky: int) -> np.ndarray:
            knuckles = 0.5 * (points[index] + points[pinky])
            return frame_from(knuckles - points[wrist], points[index] - points[pinky])

        pelvis = torso_frame(world, LEFT_HIP, RIGHT_HIP) @ torso_frame(
            rest, LEFT_HIP, RIGHT_HIP).T
        chest = torso_frame(world, LEFT_SHOULDER, RIGHT_SHOULDER) @ torso_frame(
            rest, LEFT_SHOULDER, RIGHT_SHOULDER).T
        head = head_frame(world) @ head_frame(rest).T
        head = chest @ _bounded(chest.T @ head, math.radians(90.0))
        fixed: dict[int, np.ndarray] = {b["root"]: pelvis, b["head"]: head}
        for name, rotation in zip(_SPINE, _interpolate(pelvis, chest, np.linspace(0, 1, 5))):
            fixed[b[name]] = rotation
        for name, rotation in zip(_NECK, _interpolate(chest, head, (1 / 3, 2 / 3, 1.0))):
            fixed[b[name]] = rotation
        limbs = {}
        for side, (sh, el, wr, ix, pk, hip, kn, an, ft) in {
            "L": (LEFT_SHOULDER, LEFT_ELBOW, LEFT_WRIST, LEFT_INDEX, LEFT_PINKY, LEFT_HIP,
                  LEFT_KNEE, LEFT_ANKLE, LEFT_FOOT_INDEX),
            "R": (RIGHT_SHOULDER, RIGHT_ELBOW, RIGHT_WRIST, RIGHT_INDEX, RIGHT_PINKY,
                  RIGHT_HIP, RIGHT_KNEE, RIGHT_ANKLE, RIGHT_FOOT_INDEX),
        }.items():
            limbs[b[f"upperarm01.{side}"]] = (sh, el)
            limbs[b[f"lowerarm01.{side}"]] = (el, wr)
            limbs[b[f"upperleg01.{side}"]] = (hip, kn)
            limbs[b[f"lowerleg01.{side}"]] = (kn, an)
            limbs[b[f"foot.{side}"]] = (an, ft)
            limbs[b[f"wrist.{side}"]] = (wr, ix, pk)
        for k, parent in enumerate(m.parents):
            if k in fixed:
                rotations[k] = fixed[k]
                continue
            carried = rotations[parent] if parent >= 0 else np.eye(3)
            limb = limbs.get(k)
            if limb is None:
                rotations[k] = carried
            elif len(limb) == 3:
                target = hand_frame(world, *limb) @ hand_frame(rest, *limb).T
                rotations[k] = carried @ _bounded(carried.T @ target, self.max_wrist)
            else:
                start, end = limb
                turn = swing(carried @ (rest[end] - rest[start]), world[end] - world[start],
                             self.max_swing)
                rotations[k] = turn @ carried
        return rotations

    # ---------------------------------------------------------------- attached hands
    def _hand_subtree(self, side: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """A body hand's bones, the hand rig's bone of the same name, and their parents.

        The bones are the wrist and its descendants (parents first); a bone the hand rig
        lacks (-1) follows its parent.
        """
        m = self.model
        suffix = {"left": "L", "right": "R"}[side]
        labels = shipped_anny_hand().data.bone_labels  # right-hand rig: "<bone>.R"
        wrist = m.bone(f"wrist.{suffix}")
        inside = {wrist}
        for k, parent in enumerate(m.parents):  # bones are stored parents first
            if parent in inside:
                inside.add(k)
        bones = np.array(sorted(inside), dtype=np.int64)
        names = [m.assets.bone_names[k] for k in bones]
        hand = np.array([labels.index(f"{name[:-2]}.R") if f"{name[:-2]}.R" in labels else -1
                         for name in names], dtype=np.int64)
        return bones, hand, m.parents[bones]

    def _attach_hand(self, rotations: np.ndarray, side: str, hand: np.ndarray) -> None:
        """Turn the wrist and curl the fingers of ``side`` as ``hand`` (in place).

        ``hand`` holds the hand rig's bone rotations from its rest pose in the body's world
        frame (Anny's axes in the rest pose: the canonical frame needs ``CANONICAL_FROM_ANNY``).
        """
        canonical = CANONICAL_FROM_ANNY
        bones, hand_bones, parents = self._hand_bones[side]
        wrist, wrist_hand = bones[0], hand_bones[0]
        carried = rotations[parents[0]]
        target = hand[wrist_hand] @ canonical.T
        rotations[wrist] = carried @ _bounded(carried.T @ target, self.max_wrist)
        # Each finger bone relative to the wrist, as in the hand: D_b = D_w C G_w^T G_b C^T.
        relative = canonical @ hand[wrist_hand].T
        for bone, hand_bone, parent in zip(bones[1:], hand_bones[1:], parents[1:], strict=True):
            rotations[bone] = (rotations[wrist] @ relative @ hand[hand_bone] @ canonical.T
                               if hand_bone >= 0 else rotations[parent])

    # ---------------------------------------------------------------- landmarks, PnP
    def _find_landmark_vertices(self) -> dict[int, int]:
        """Mesh vertices standing for the landmarks that are not bone heads."""
        m = self.model
        assets = m.assets
        dominant = assets.skin_indices[
            np.arange(len(assets.skin_indices)), np.argmax(assets.skin_weights, axis=1)
        ]
        v = m.rest_vertices
        head_v = np.flatnonzero(dominant == m.bone("head"))
        out = {NOSE: int(head_v[np.argmin(v[head_v, 2] + 5.0 * np.abs(v[head_v, 0]))])}
        eyes = m.rest_heads[[m.bone("eye.L"), m.bone("eye.R")]]
        level = head_v[(np.abs(v[head_v, 1] - eyes[:, 1].mean()) < 0.03)
                       & (v[head_v, 2] > eyes[:, 2].mean() + 0.04)]
        out[LEFT_EAR] = int(level[np.argmax(v[level, 0])])
        out[RIGHT_EAR] = int(level[np.argmin(v[level, 0])])
        for side, heel, toe in (("L", LEFT_HEEL, LEFT_FOOT_INDEX),
                                ("R", RIGHT_HEEL, RIGHT_FOOT_INDEX)):
            ankle = m.rest_heads[m.bone(f"foot.{side}")]
            foot_v = np.flatnonzero(dominant == m.bone(f"foot.{side}"))
            low = foot_v[v[foot_v, 1] > ankle[1] + 0.03]
            out[heel] = int(low[np.argmax(v[low, 2])])
            toe_bones = [m.bone(f"toe2-{j}.{side}") for j in (1, 2, 3)]
            toes = np.flatnonzero(np.isin(dominant, toe_bones))
            out[toe] = int(toes[np.argmin(v[toes, 2])])
        return out

    def _landmarks(self, landmark_vertices: np.ndarray, heads: np.ndarray) -> np.ndarray:
        """The 33 landmark points of a posed body (NaN where the body has none).

        ``landmark_vertices`` are the posed vertices standing for landmarks, in the order of
        ``_landmark_vertices``.
        """
        points = np.full((NUM_LANDMARKS, 3), np.nan)
        has_bone = self._landmark_bones >= 0
        points[has_bone] = heads[self._landmark_bones[has_bone]]
        points[self._vertex_landmarks] = landmark_vertices
        return points

    def landmark_points(self, vertices: np.ndarray, heads: np.ndarray) -> np.ndarray:
        """The 33 landmark points ``(33, 3)`` of a posed mesh and its joints (NaN: none)."""
        return self._landmarks(vertices[self._vertex_ids], heads)

    def _placed_landmarks(
        self, rotations: np.ndarray, scale: float, heads: np.ndarray, world: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """The posed landmark points, hip centre on the world landmarks', and that shift."""
        vertices = self.model.skin_vertices(rotations, scale, heads, self._vertex_ids)
        points = self._landmarks(vertices, heads)
        shift = (0.5 * (world[LEFT_HIP] + world[RIGHT_HIP])
                 - 0.5 * (points[LEFT_HIP] + points[RIGHT_HIP]))
        return points + shift, shift

    def _place(
        self, points: np.ndarray, image: np.ndarray, camera: CameraIntrinsics
    ) -> tuple[np.ndarray, np.ndarray]:
        """Rotation and translation putting ``points`` where ``image`` sees them."""
        if not float(np.ptp(image, axis=0).max()) > 1.0:
            raise LandmarkFitError("image landmarks collapse to a point")
        try:  # the closed-form translation (no rotation) starts the full PnP solve
            guess = solve_translation(points, image, camera)
        except ValueError as exc:
            raise LandmarkFitError(f"the camera placement failed: {exc}") from None
        rvec, tvec = np.zeros((3, 1)), guess.reshape(3, 1)
        ok, rvec, tvec = cv2.solvePnP(
            points.astype(np.float64), image.astype(np.float64), camera.matrix(), None,
            rvec, tvec, useExtrinsicGuess=True, flags=cv2.SOLVEPNP_ITERATIVE,
        )
        rotation = cv2.Rodrigues(rvec)[0]
        translation = tvec.reshape(3)
        if not ok or not np.isfinite(translation).all():
            raise LandmarkFitError("the camera placement (PnP) failed")
        if (points @ rotation.T + translation)[:, 2].min() <= 0.0:
            raise LandmarkFitError("the camera placement puts the body behind the camera")
        return rotation, translation
