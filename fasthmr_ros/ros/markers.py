"""RViz markers for hands: mesh (TRIANGLE_LIST), skeleton (LINE_LIST), joints (SPHERE_LIST).

One marker id per hand, kept for as long as the hand keeps its message id, so RViz updates
markers in place. Markers carry a lifetime (vanished hands fade out even if the node stops) and
hands that vanish between two frames are deleted explicitly.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from fasthmr_ros.models.constants import HAND_SKELETON
from fasthmr_ros.pipeline.results import LEFT, HandResult
from fasthmr_ros.ros import messages

MARKER = "visualization_msgs/msg/Marker"
MARKER_ARRAY = "visualization_msgs/msg/MarkerArray"

#: Marker namespaces, one per kind of marker.
MESH_NS = "hand_mesh"
SKELETON_NS = "hand_skeleton"
JOINTS_NS = "hand_joints"

#: RGBA colours per side: right hands blue, left hands orange.
SIDE_COLOURS: dict[str, tuple[float, float, float, float]] = {
    "right": (0.20, 0.55, 1.00, 0.85),
    "left": (1.00, 0.55, 0.15, 0.85),
}
#: Width of skeleton lines and diameter of joint spheres (metres).
BONE_WIDTH = 0.004
JOINT_DIAMETER = 0.008

_BONES = np.asarray(HAND_SKELETON, dtype=np.int64).reshape(-1)


class MarkerIds:
    """Map hand ids (strings) to small, stable integer marker ids."""

    def __init__(self) -> None:
        self._ids: dict[str, int] = {}

    def __call__(self, hand_id: str) -> int:
        """Return the marker id of ``hand_id``, assigning the next free one when new."""
        if hand_id not in self._ids:
            self._ids[hand_id] = len(self._ids)
        return self._ids[hand_id]


class HandMarkerBuilder:
    """Build a ``MarkerArray`` per frame from hand results.

    Args:
        faces: ``(F, 3)`` MANO triangles with right-hand winding.
        lifetime_s: how long RViz keeps a marker without an update.
        mesh: whether to include the mesh (the heaviest marker: 3 points per triangle).
        store: typestore (the package one when omitted).

    """

    def __init__(
        self,
        faces: np.ndarray,
        lifetime_s: float = 0.5,
        mesh: bool = True,
        store: Any | None = None,
    ) -> None:
        tri = np.asarray(faces, dtype=np.int64)
        if tri.ndim != 2 or tri.shape[1] != 3:
            raise ValueError(f"faces must have shape (F, 3), got {tri.shape}")
        self._faces_right = tri.reshape(-1)
        # A left hand is a mirrored mesh: swapping two corners keeps normals pointing outwards.
        self._faces_left = tri[:, [0, 2, 1]].reshape(-1)
        self.lifetime_s = float(lifetime_s)
        self.mesh = bool(mesh)
        self._store = store if store is not None else messages.typestore()
        self._ids = MarkerIds()
        self._shown: set[tuple[str, int]] = set()

    def build(self, header: Any, results: Sequence[HandResult], hand_ids: Sequence[str]) -> Any:
        """Return the ``MarkerArray`` for one frame (adds, and deletes of vanished hands)."""
        markers = []
        shown: set[tuple[str, int]] = set()
        for result, hand_id in zip(results, hand_ids, strict=True):
            marker_id = self._ids(hand_id)
            colour = SIDE_COLOURS[result.side]
            joints = np.asarray(result.joints, dtype=np.float64)
            if self.mesh:
                faces = self._faces_left if result.side == LEFT else self._faces_right
                vertices = np.asarray(result.vertices, dtype=np.float64)
                markers.append(self._marker(header, MESH_NS, marker_id, "TRIANGLE_LIST",
                                            vertices[faces], colour, (1.0, 1.0, 1.0)))
                shown.add((MESH_NS, marker_id))
            markers.append(self._marker(header, SKELETON_NS, marker_id, "LINE_LIST",
                                        joints[_BONES], colour, (BONE_WIDTH, 0.0, 0.0)))
            markers.append(self._marker(header, JOINTS_NS, marker_id, "SPHERE_LIST", joints,
                                        colour, (JOINT_DIAMETER,) * 3))
            shown.update({(SKELETON_NS, marker_id), (JOINTS_NS, marker_id)})
        for ns, marker_id in sorted(self._shown - shown):
            markers.append(self._delete(header, ns, marker_id))
        self._shown = shown
        return self._store.types[MARKER_ARRAY](markers=markers)

    def _marker(
        self,
        header: Any,
        ns: str,
        marker_id: int,
        kind: str,
        points: np.ndarray,
        colour: tuple[float, float, float, float],
        scale: tuple[float, float, float],
    ) -> Any:
        types = self._store.types
        cls = types[MARKER]
        point_type = types["geometry_msgs/msg/Point"]
        sec, nanosec = divmod(int(round(self.lifetime_s * 1e9)), 1_000_000_000)
        return messages.new_message(
            MARKER,
            self._store,
            header=header,
            ns=ns,
            id=marker_id,
            type=int(getattr(cls, kind)),
            action=int(cls.ADD),
            pose=_identity_pose(self._store),
            scale=types["geometry_msgs/msg/Vector3"](x=scale[0], y=scale[1], z=scale[2]),
            color=types["std_msgs/msg/ColorRGBA"](
                r=colour[0], g=colour[1], b=colour[2], a=colour[3]
            ),
            lifetime=types["builtin_interfaces/msg/Duration"](sec=sec, nanosec=nanosec),
            points=[point_type(x=x, y=y, z=z) for x, y, z in points.tolist()],
        )

    def _delete(self, header: Any, ns: str, marker_id: int) -> Any:
        cls = self._store.types[MARKER]
        return messages.new_message(
            MARKER, self._store, header=header, ns=ns, id=marker_id, action=int(cls.DELETE),
            pose=_identity_pose(self._store),
        )


def _identity_pose(store: Any) -> Any:
    types = store.types
    return types["geometry_msgs/msg/Pose"](
        position=types["geometry_msgs/msg/Point"](x=0.0, y=0.0, z=0.0),
        orientation=types["geometry_msgs/msg/Quaternion"](x=0.0, y=0.0, z=0.0, w=1.0),
    )
