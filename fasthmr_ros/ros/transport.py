"""What a node needs from a transport: publishers and subscriptions of CDR bytes, a logger.

Messages cross the transport as CDR bytes (with the 4-byte encapsulation header) encoded and
decoded by :mod:`fasthmr_ros.ros.messages`, so every transport (rclpy, plain DDS, a rosbag2
file) carries byte-identical payloads and the node code never depends on which one runs it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from fasthmr_ros.ros.qos import QosProfile

#: A subscription callback: receives one message's CDR bytes.
RawCallback = Callable[[bytes], None]


class Logger(Protocol):
    """The logging calls nodes use (``logging.Logger`` and rclpy's logger both provide them)."""

    def debug(self, msg: str) -> Any:
        """Log a debug message."""

    def info(self, msg: str) -> Any:
        """Log an informational message."""

    def warning(self, msg: str) -> Any:
        """Log a warning."""

    def error(self, msg: str) -> Any:
        """Log an error."""


class RawPublisher(Protocol):
    """A publisher of one topic that sends serialized messages."""

    topic: str

    def publish(self, raw: bytes) -> None:
        """Send one message given as CDR bytes."""

    def subscription_count(self) -> int:
        """Return how many subscriptions currently receive this topic."""


class Transport(Protocol):
    """Publishers, subscriptions, logging and time for one node."""

    node_name: str
    logger: Logger

    def create_publisher(self, topic: str, msgtype: str, qos: QosProfile) -> RawPublisher:
        """Create a publisher; ``topic`` is resolved against the node's namespace and remaps."""

    def create_subscription(
        self, topic: str, msgtype: str, qos: QosProfile, callback: RawCallback
    ) -> Any:
        """Subscribe ``callback`` to ``topic``; it may be called from another thread."""

    def resolve(self, topic: str) -> str:
        """Return the fully qualified, remapped name of ``topic``."""

    def now_ns(self) -> int:
        """Return the node clock's current time in nanoseconds (stamps of diagnostics)."""
