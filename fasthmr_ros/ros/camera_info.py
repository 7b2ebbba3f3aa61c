"""``sensor_msgs/CameraInfo`` to :class:`CameraIntrinsics` and back."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import numpy as np

from fasthmr_ros.pipeline.results import CameraIntrinsics
from fasthmr_ros.ros import messages

CAMERA_INFO = "sensor_msgs/msg/CameraInfo"


class CameraInfoError(ValueError):
    """A CameraInfo message whose intrinsics cannot be used."""


def intrinsics_from_camera_info(msg: Any) -> CameraIntrinsics | None:
    """Return the pinhole intrinsics of a ``CameraInfo``, or ``None`` if it is uncalibrated.

    ``sensor_msgs/CameraInfo`` marks an uncalibrated camera with an all-zero ``K``.

    Raises:
        CameraInfoError: when ``K`` has the wrong length, a non-finite value or a focal length
            that is not positive.

    """
    k = np.asarray(msg.k, dtype=np.float64).reshape(-1)
    if k.size != 9:
        raise CameraInfoError(f"CameraInfo.k must hold 9 values, got {k.size}")
    if not np.isfinite(k).all():
        raise CameraInfoError(
            f"CameraInfo.k has non-finite values {k.tolist()}; fix the camera calibration"
        )
    if not k.any():
        return None
    try:
        return CameraIntrinsics.from_matrix(k)
    except ValueError as exc:
        raise CameraInfoError(str(exc)) from exc


def camera_info_message(
    header: Any,
    width: int,
    height: int,
    intrinsics: CameraIntrinsics | None,
    store: Any | None = None,
) -> Any:
    """Build a ``CameraInfo`` for an undistorted pinhole camera.

    ``intrinsics=None`` writes the all-zero matrices ROS uses for an uncalibrated camera.
    """
    if intrinsics is None:
        k = np.zeros(9)
        p = np.zeros(12)
        r = np.zeros(9)
    else:
        k = intrinsics.matrix().reshape(-1)
        p = np.concatenate([intrinsics.matrix(), np.zeros((3, 1))], axis=1).reshape(-1)
        r = np.eye(3).reshape(-1)
    return messages.new_message(
        CAMERA_INFO,
        store,
        header=header,
        height=int(height),
        width=int(width),
        distortion_model="plumb_bob",
        d=np.zeros(5, dtype=np.float64),
        k=k.astype(np.float64),
        r=r.astype(np.float64),
        p=p.astype(np.float64),
    )


class IntrinsicsByStamp:
    """Remember the intrinsics of recent CameraInfo messages, looked up by image stamp.

    Camera drivers stamp an image and its CameraInfo identically; when no CameraInfo carries
    the image's stamp (dropped, or not arrived yet) the newest one is used, since intrinsics
    change rarely.
    """

    def __init__(self, capacity: int = 32) -> None:
        self._capacity = capacity
        self._by_stamp: OrderedDict[int, CameraIntrinsics | None] = OrderedDict()

    def add(self, stamp_ns: int, intrinsics: CameraIntrinsics | None) -> None:
        """Record the intrinsics (``None``: uncalibrated) announced for ``stamp_ns``."""
        self._by_stamp[stamp_ns] = intrinsics
        self._by_stamp.move_to_end(stamp_ns)
        while len(self._by_stamp) > self._capacity:
            self._by_stamp.popitem(last=False)

    @property
    def empty(self) -> bool:
        """Whether no CameraInfo has been recorded."""
        return not self._by_stamp

    def lookup(self, stamp_ns: int) -> tuple[CameraIntrinsics | None, bool]:
        """Return ``(intrinsics, exact)`` for an image stamp.

        ``exact`` tells whether a CameraInfo with that very stamp was found. Raises
        ``LookupError`` when no CameraInfo was recorded at all.
        """
        if stamp_ns in self._by_stamp:
            return self._by_stamp[stamp_ns], True
        if not self._by_stamp:
            raise LookupError("no CameraInfo received")
        return next(reversed(self._by_stamp.values())), False
