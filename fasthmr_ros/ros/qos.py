"""Quality-of-service profiles, independent of the transport that applies them.

The values mirror ROS 2's: ``rmw_qos_profile_default`` (reliable, volatile, keep last 10),
``rmw_qos_profile_sensor_data`` (best effort, volatile, keep last 5), a latched profile
(reliable, transient local, keep last 1) for data that never changes, and the profile
``tf2_ros.TransformBroadcaster`` uses (reliable, volatile, keep last 100).
"""

from __future__ import annotations

from dataclasses import dataclass

RELIABLE = "reliable"
BEST_EFFORT = "best_effort"
VOLATILE = "volatile"
TRANSIENT_LOCAL = "transient_local"

RELIABILITIES = (RELIABLE, BEST_EFFORT)
DURABILITIES = (VOLATILE, TRANSIENT_LOCAL)


@dataclass(frozen=True)
class QosProfile:
    """History depth, reliability and durability of a publisher or subscription."""

    depth: int = 10
    reliability: str = RELIABLE
    durability: str = VOLATILE

    def __post_init__(self) -> None:
        if self.depth < 1:
            raise ValueError(f"QoS depth must be at least 1, got {self.depth}")
        if self.reliability not in RELIABILITIES:
            raise ValueError(
                f"QoS reliability must be one of {RELIABILITIES}, got {self.reliability!r}"
            )
        if self.durability not in DURABILITIES:
            raise ValueError(
                f"QoS durability must be one of {DURABILITIES}, got {self.durability!r}"
            )


#: ROS 2 default profile: outputs other consumers must not miss.
DEFAULT = QosProfile(depth=10, reliability=RELIABLE, durability=VOLATILE)
#: ROS 2 sensor-data profile: camera streams where the newest frame is all that matters.
SENSOR_DATA = QosProfile(depth=5, reliability=BEST_EFFORT, durability=VOLATILE)
#: Latched data sent once (mesh topology): late subscribers still receive it.
LATCHED = QosProfile(depth=1, reliability=RELIABLE, durability=TRANSIENT_LOCAL)
#: What ``tf2_ros.TransformBroadcaster`` uses on ``/tf``.
TF = QosProfile(depth=100, reliability=RELIABLE, durability=VOLATILE)


def image_qos(reliability: str, depth: int = 5) -> QosProfile:
    """Return the subscription profile for camera streams (the sensor-data profile by default).

    A best-effort reader matches both reliable and best-effort publishers, so it is the
    default. The node takes every sample at once and keeps only the newest itself, so frames it
    skips are counted rather than silently overwritten in the DDS reader's history.
    """
    return QosProfile(depth=depth, reliability=reliability, durability=VOLATILE)
