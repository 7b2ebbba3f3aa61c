"""Node statistics (rates, latency, drops) and their ``diagnostic_msgs/DiagnosticArray``."""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np

from fasthmr_ros.ros import messages

DIAGNOSTIC_ARRAY = "diagnostic_msgs/msg/DiagnosticArray"
#: The aggregator's input topic (absolute: never inside the node's namespace).
DIAGNOSTICS_TOPIC = "/diagnostics"


@dataclass(frozen=True)
class StatisticsSnapshot:
    """Counters and rates at one moment."""

    frames_received: int
    frames_processed: int
    frames_dropped: int
    messages_rejected: int
    input_rate_hz: float
    output_rate_hz: float
    latency_median_ms: float
    latency_p95_ms: float
    seconds_since_input: float | None


class NodeStatistics:
    """Thread-safe counters of a perception node.

    Rates are counted over the last ``window_s`` seconds; latency (image received -> outputs
    published) over the last ``latency_samples`` frames. Times are monotonic seconds.
    """

    def __init__(self, window_s: float = 5.0, latency_samples: int = 300) -> None:
        self.window_s = float(window_s)
        self._lock = threading.Lock()
        self._inputs: deque[float] = deque()
        self._outputs: deque[float] = deque()
        self._latencies: deque[float] = deque(maxlen=latency_samples)
        self.frames_received = 0
        self.frames_processed = 0
        self.frames_dropped = 0
        self.messages_rejected = 0
        self._last_input: float | None = None
        self._start: float | None = None

    def start(self, now: float) -> None:
        """Mark the start of the measurement."""
        with self._lock:
            self._start = now

    def input(self, now: float) -> None:
        """Count one received frame."""
        with self._lock:
            self.frames_received += 1
            self._inputs.append(now)
            self._last_input = now

    def dropped(self, count: int = 1) -> None:
        """Count frames replaced by a newer one before they were processed."""
        with self._lock:
            self.frames_dropped += count

    def rejected(self) -> None:
        """Count a malformed message that was skipped."""
        with self._lock:
            self.messages_rejected += 1

    def output(self, now: float, latency_s: float) -> None:
        """Count one processed frame and its latency."""
        with self._lock:
            self.frames_processed += 1
            self._outputs.append(now)
            self._latencies.append(latency_s)

    def snapshot(self, now: float) -> StatisticsSnapshot:
        """Return the current counters and rates."""
        with self._lock:
            for times in (self._inputs, self._outputs):
                while times and times[0] < now - self.window_s:
                    times.popleft()
            span = self.window_s
            if self._start is not None:
                span = max(min(self.window_s, now - self._start), 1e-3)
            lat = np.asarray(self._latencies, dtype=np.float64) * 1e3
            return StatisticsSnapshot(
                frames_received=self.frames_received,
                frames_processed=self.frames_processed,
                frames_dropped=self.frames_dropped,
                messages_rejected=self.messages_rejected,
                input_rate_hz=len(self._inputs) / span,
                output_rate_hz=len(self._outputs) / span,
                latency_median_ms=float(np.median(lat)) if lat.size else float("nan"),
                latency_p95_ms=float(np.percentile(lat, 95)) if lat.size else float("nan"),
                seconds_since_input=None if self._last_input is None else now - self._last_input,
            )


def diagnostic_array(
    header: Any,
    name: str,
    hardware_id: str,
    snapshot: StatisticsSnapshot,
    extra: dict[str, str] | None = None,
    stale_after_s: float = 5.0,
    store: Any | None = None,
) -> Any:
    """Return a ``DiagnosticArray`` with one status describing the node.

    Level: OK while frames flow; WARN before the first frame, when input stopped for
    ``stale_after_s`` or when more than half the frames are dropped.
    """
    store = store if store is not None else messages.typestore()
    status_cls = store.types["diagnostic_msgs/msg/DiagnosticStatus"]
    key_value = store.types["diagnostic_msgs/msg/KeyValue"]
    level, text = status_cls.OK, "processing images"
    if snapshot.seconds_since_input is None:
        level, text = status_cls.WARN, "no image received yet"
    elif snapshot.seconds_since_input > stale_after_s:
        level, text = status_cls.WARN, f"no image for {snapshot.seconds_since_input:.1f} s"
    elif snapshot.frames_received and snapshot.frames_dropped > snapshot.frames_received / 2:
        level, text = status_cls.WARN, "dropping most frames: processing is slower than input"
    values = {
        "input_rate_hz": f"{snapshot.input_rate_hz:.2f}",
        "output_rate_hz": f"{snapshot.output_rate_hz:.2f}",
        "latency_median_ms": f"{snapshot.latency_median_ms:.1f}",
        "latency_p95_ms": f"{snapshot.latency_p95_ms:.1f}",
        "frames_received": str(snapshot.frames_received),
        "frames_processed": str(snapshot.frames_processed),
        "frames_dropped": str(snapshot.frames_dropped),
        "messages_rejected": str(snapshot.messages_rejected),
    }
    values.update(extra or {})
    status = status_cls(
        level=int(level),
        name=name,
        message=text,
        hardware_id=hardware_id,
        values=[key_value(key=k, value=v) for k, v in values.items()],
    )
    return store.types[DIAGNOSTIC_ARRAY](header=header, status=[status])
