"""RViz markers for hands and bodies: mesh (TRIANGLE_LIST), skeleton (LINE_LIST), joints.

One marker id per hand (body), kept for as long as it keeps its message id, so RViz updates
markers in place. Markers carry a lifetime (vanished hands fade out even if the node stops) and
hands that vanish between two frames are deleted explicitly.

A hand mesh is 4614 points, and a Python object per point costs milliseconds to build and to
encode. So marker points stay numpy arrays (:class:`PackedMarkerArray`): rosbags encodes the
message with one placeholder point per marker, and the points are spliced into its CDR as raw
float64 triples. ``geometry_msgs/Point`` is three float64 (24 bytes, a multiple of CDR's largest
alignment), so every byte after a point list keeps its alignment; the tests check the result
against rosbags encoding the full message.
"""

from __future__ import annotations

import struct
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np

from fasthmr_ros.models.constants import HAND_SKELETON
from fasthmr_ros.pipeline.results import LEFT
from fasthmr_ros.ros import messages

MARKER = "visualization_msgs/msg/Marker"
MARKER_ARRAY = "visualization_msgs/msg/MarkerArray"

#: Marker namespaces of hands, one per kind of marker (bodies: body_mesh, ...).
MESH_NS = "hand_mesh"
SKELETON_NS = "hand_skeleton"
JOINTS_NS = "hand_joints"

#: RGBA colours per side: right hands blue, left hands orange.
SIDE_COLOURS: dict[str, tuple[float, float, float, float]] = {
    "right": (0.20, 0.55, 1.00, 0.85),
    "left": (1.00, 0.55, 0.15, 0.85),
}
#: RGBA colour of bodies (results without a side).
BODY_COLOUR: tuple[float, float, float, float] = (0.35, 0.80, 0.45, 0.85)
#: Width of skeleton lines and diameter of joint spheres (metres).
BONE_WIDTH = 0.004
JOINT_DIAMETER = 0.008

_BONES = np.asarray(HAND_SKELETON, dtype=np.int64).reshape(-1)


# Placeholder x values: quiet NaNs with a tag and the marker's index in the payload bits, so
# each placeholder's bytes are unique in the encoded message and can be found.
_TAG = 0x7FF8_F0E5_0000_0000


def _placeholder(index: int) -> float:
    return struct.unpack("<d", struct.pack("<Q", _TAG | index))[0]


class PackedMarkerArray:
    """A ``MarkerArray`` whose point lists are numpy arrays until it is encoded.

    Args:
        message: the MarkerArray (its markers' point lists are replaced where ``points`` has
            an array).
        points: per marker, an ``(N, 3)`` array of its points, or ``None`` (the marker's own
            ``points`` are kept).
        store: typestore.

    """

    def __init__(self, message: Any, points: list[np.ndarray | None], store: Any) -> None:
        if len(points) != len(message.markers):
            raise ValueError("one entry of points per marker is needed")
        points = list(points)
        point = store.types["geometry_msgs/msg/Point"]
        for index, pts in enumerate(points):
            if pts is None:
                continue
            if len(pts) == 0:
                # An empty list has no alignment padding: encode it the ordinary way.
                message.markers[index].points = []
                points[index] = None
            else:
                message.markers[index].points = [point(x=_placeholder(index), y=0.0, z=0.0)]
        self.message = message
        self.points = points
        self._store = store

    @property
    def markers(self) -> list[Any]:
        """The markers (placeholder points where arrays are kept)."""
        return self.message.markers

    def full_message(self) -> Any:
        """Return the MarkerArray with every point as a ``geometry_msgs/Point`` (slow)."""
        point = self._store.types["geometry_msgs/msg/Point"]
        markers = []
        for marker, pts in zip(self.message.markers, self.points, strict=True):
            if pts is not None:
                marker = type(marker)(**{**vars(marker), "points": [
                    point(x=x, y=y, z=z) for x, y, z in pts.tolist()]})
            markers.append(marker)
        return type(self.message)(markers=markers)

    def serialize(self) -> bytes:
        """Encode as CDR: identical to rosbags encoding :meth:`full_message`."""
        if sys.byteorder != "little":  # the splice writes native float64
            return messages.serialize(self.full_message(), MARKER_ARRAY, self._store)
        raw = messages.serialize(self.message, MARKER_ARRAY, self._store)
        pieces = []
        done = 0
        for index, pts in enumerate(self.points):
            if pts is None:
                continue
            sentinel = struct.pack("<d", _placeholder(index))
            start = raw.find(sentinel, done)
            if start < 0 or raw.find(sentinel, start + 1) >= 0:
                raise RuntimeError(f"placeholder of marker {index} not found exactly once")
            # The uint32 count precedes the points, maybe followed by 4 bytes of padding.
            count_at = start - 4 if raw[start - 4 : start] == b"\x01\0\0\0" else start - 8
            if raw[count_at : count_at + 4] != b"\x01\0\0\0":
                raise RuntimeError(f"no point count found before marker {index}'s points")
            data = np.ascontiguousarray(pts, dtype="<f8").reshape(-1, 3)
            pieces += [raw[done:count_at], struct.pack("<I", len(data)),
                       raw[count_at + 4 : start], data.tobytes()]
            done = start + 24
        pieces.append(raw[done:])
        return b"".join(pieces)


class MarkerIds:
    """Map hand ids (strings) to small, stable integer marker ids."""

    def __init__(self) -> None:
        self._ids: dict[str, int] = {}

    def __call__(self, hand_id: str) -> int:
        """Return the marker id of ``hand_id``, assigning the next free one when new."""
        if hand_id not in self._ids:
            self._ids[hand_id] = len(self._ids)
        return self._ids[hand_id]


class MarkerBuilder:
    """Build a ``MarkerArray`` per frame from hand or body results.

    Args:
        faces: ``(F, 3)`` triangles (right-hand winding for hands; left hands get the
            mirrored winding).
        bones: ``(B, 2)`` joint index pairs of the skeleton (default: the 21-joint hand).
        prefix: namespace prefix: ``hand`` (``hand_mesh``, ...) or ``body``.
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
        bones: np.ndarray | None = None,
        prefix: str = "hand",
    ) -> None:
        tri = np.asarray(faces, dtype=np.int64)
        if tri.ndim != 2 or tri.shape[1] != 3:
            raise ValueError(f"faces must have shape (F, 3), got {tri.shape}")
        self._faces_right = tri.reshape(-1)
        # A left hand is a mirrored mesh: swapping two corners keeps normals pointing outwards.
        self._faces_left = tri[:, [0, 2, 1]].reshape(-1)
        self._bones = _BONES if bones is None else np.asarray(bones, dtype=np.int64).reshape(-1)
        self._ns = (f"{prefix}_mesh", f"{prefix}_skeleton", f"{prefix}_joints")
        self.lifetime_s = float(lifetime_s)
        self.mesh = bool(mesh)
        self._store = store if store is not None else messages.typestore()
        self._ids = MarkerIds()
        self._shown: set[tuple[str, int]] = set()

    def build(
        self, header: Any, results: Sequence[Any], hand_ids: Sequence[str]
    ) -> PackedMarkerArray:
        """Return the markers of one frame (adds, and deletes of vanished ones)."""
        mesh_ns, skeleton_ns, joints_ns = self._ns
        markers: list[Any] = []
        points: list[np.ndarray | None] = []
        shown: set[tuple[str, int]] = set()
        for result, hand_id in zip(results, hand_ids, strict=True):
            marker_id = self._ids(hand_id)
            side = getattr(result, "side", None)
            colour = SIDE_COLOURS[side] if side is not None else BODY_COLOUR
            joints = np.asarray(result.joints, dtype=np.float64)
            if self.mesh:
                faces = self._faces_left if side == LEFT else self._faces_right
                vertices = np.asarray(result.vertices, dtype=np.float64)
                markers.append(self._marker(header, mesh_ns, marker_id, "TRIANGLE_LIST", colour,
                                            (1.0, 1.0, 1.0)))
                points.append(vertices[faces])
                shown.add((mesh_ns, marker_id))
            markers.append(self._marker(header, skeleton_ns, marker_id, "LINE_LIST", colour,
                                        (BONE_WIDTH, 0.0, 0.0)))
            points.append(joints[self._bones])
            markers.append(self._marker(header, joints_ns, marker_id, "SPHERE_LIST", colour,
                                        (JOINT_DIAMETER,) * 3))
            points.append(joints)
            shown.update({(skeleton_ns, marker_id), (joints_ns, marker_id)})
        for ns, marker_id in sorted(self._shown - shown):
            markers.append(self._delete(header, ns, marker_id))
            points.append(None)
        self._shown = shown
        return PackedMarkerArray(self._store.types[MARKER_ARRAY](markers=markers), points,
                                 self._store)

    def _marker(
        self,
        header: Any,
        ns: str,
        marker_id: int,
        kind: str,
        colour: tuple[float, float, float, float],
        scale: tuple[float, float, float],
    ) -> Any:
        types = self._store.types
        cls = types[MARKER]
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


#: The hand node's name for :class:`MarkerBuilder`.
HandMarkerBuilder = MarkerBuilder
