"""One-Euro filtering of hand and body outputs over time (Casiez, Roussel, Vogel, CHI 2012).

The One-Euro filter is an exponential low-pass whose cutoff frequency rises with the signal's
speed: at rest a low cutoff (``min_cutoff``, Hz) removes jitter, in fast motion the cutoff grows
by ``beta`` per unit of speed so the lag stays small. The speed itself is the low-passed
(cutoff ``d_cutoff``) finite difference of the raw samples. It is causal and the first sample
passes through unchanged, so it adds no latency: every output is available as soon as its
input is.

Arrays are filtered with one cutoff for the whole array, derived from the root-mean-square speed
of its elements. Every element is then the same weighted average of its past values, so a
filtered mesh is an average of meshes and keeps its shape.

:class:`MeshSmoother` keeps one set of filters per track id and smooths a
:class:`~fasthmr_ros.pipeline.results.HandResult`'s or
:class:`~fasthmr_ros.pipeline.results.BodyResult`'s camera translation and its root-relative
joints and vertices, so translation and articulation adapt to their own speeds.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable
from typing import TypeVar

import numpy as np

from fasthmr_ros.pipeline.results import BodyResult, HandResult

#: A result with ``track_id``, ``cam_t``, ``joints`` and ``vertices``: a hand or a body.
MeshResult = TypeVar("MeshResult", HandResult, BodyResult)


def smoothing_factor(cutoff_hz: float | np.ndarray, dt: float) -> float | np.ndarray:
    """Exponential smoothing weight of the new sample for a first-order low-pass."""
    tau = 1.0 / (2.0 * math.pi * cutoff_hz)
    return 1.0 / (1.0 + tau / dt)


class OneEuroFilter:
    """One-Euro filter for a fixed-shape float array sampled at arbitrary times.

    Args:
        min_cutoff: cutoff in Hz at zero speed (lower: smoother at rest, more lag).
        beta: cutoff increase per unit of speed (units of the signal per second; higher: less
            lag in fast motion).
        d_cutoff: cutoff in Hz of the low-pass on the speed estimate.

    """

    def __init__(self, min_cutoff: float = 1.0, beta: float = 0.0, d_cutoff: float = 1.0) -> None:
        for name, value in (("min_cutoff", min_cutoff), ("d_cutoff", d_cutoff)):
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive frequency in Hz, got {value}")
        if not (math.isfinite(beta) and beta >= 0):
            raise ValueError(f"beta must be 0 or more, got {beta}")
        self.min_cutoff = float(min_cutoff)
        self.beta = float(beta)
        self.d_cutoff = float(d_cutoff)
        self.reset()

    def reset(self) -> None:
        """Forget the history: the next sample passes through unchanged."""
        self._value: np.ndarray | None = None
        self._raw: np.ndarray | None = None
        self._speed: np.ndarray | None = None
        self._stamp: float | None = None

    def __call__(self, value: np.ndarray, stamp: float) -> np.ndarray:
        """Filter ``value`` observed at time ``stamp`` (seconds) and return the estimate.

        A stamp equal to the previous one returns the previous estimate (the same frame seen
        twice). A stamp earlier than the previous one (a replayed bag, a reset clock) restarts
        the filter.
        """
        x = np.asarray(value, dtype=np.float64)
        if not math.isfinite(stamp):
            raise ValueError(f"stamp must be a finite time in seconds, got {stamp}")
        if not np.all(np.isfinite(x)):
            raise ValueError("cannot filter an array with NaN or infinite values")
        if self._value is not None and x.shape != self._value.shape:
            raise ValueError(
                f"the filtered array changed shape from {self._value.shape} to {x.shape}; "
                "use one filter per signal, or reset() it"
            )
        if self._value is None or self._stamp is None or stamp < self._stamp:
            self._value, self._raw, self._stamp = x.copy(), x.copy(), float(stamp)
            self._speed = np.zeros_like(x)
            return x.copy()
        dt = float(stamp) - self._stamp
        if dt == 0.0:
            return self._value.copy()
        raw_speed = (x - self._raw) / dt
        a_d = smoothing_factor(self.d_cutoff, dt)
        self._speed = a_d * raw_speed + (1.0 - a_d) * self._speed
        speed = float(np.sqrt(np.mean(np.square(self._speed)))) if x.size else 0.0
        a = smoothing_factor(self.min_cutoff + self.beta * speed, dt)
        self._value = a * x + (1.0 - a) * self._value
        self._raw = x.copy()
        self._stamp = float(stamp)
        return self._value.copy()


@dataclasses.dataclass(frozen=True)
class OneEuroParameters:
    """Parameters of one signal's One-Euro filter (see :class:`OneEuroFilter`)."""

    min_cutoff: float = 1.0
    beta: float = 0.0
    d_cutoff: float = 1.0

    def make(self) -> OneEuroFilter:
        """Build a fresh filter with these parameters."""
        return OneEuroFilter(self.min_cutoff, self.beta, self.d_cutoff)


#: Defaults for metres at camera frame rates: translation jitters in depth and moves fast,
#: articulation (root-relative joints and vertices) moves more slowly.
DEFAULT_TRANSLATION = OneEuroParameters(min_cutoff=1.0, beta=20.0, d_cutoff=1.0)
DEFAULT_ARTICULATION = OneEuroParameters(min_cutoff=1.5, beta=40.0, d_cutoff=1.0)


class MeshSmoother:
    """One-Euro smoothing of tracked hands' or bodies' joints, vertices and camera translation.

    ``cam_t`` is filtered with ``translation``; joints and vertices are filtered relative to
    ``cam_t`` with ``articulation`` and put back at the filtered translation. Results without a
    ``track_id`` pass through unchanged. Filters of ids not seen for ``forget_after`` seconds
    are dropped.
    """

    def __init__(
        self,
        translation: OneEuroParameters = DEFAULT_TRANSLATION,
        articulation: OneEuroParameters = DEFAULT_ARTICULATION,
        forget_after: float = 2.0,
    ) -> None:
        translation.make()
        articulation.make()  # validates the parameters now rather than at the first hand
        self.translation = translation
        self.articulation = articulation
        self.forget_after = float(forget_after)
        self._filters: dict[int, dict[str, OneEuroFilter]] = {}
        self._last_seen: dict[int, float] = {}

    def __call__(self, result: MeshResult, stamp: float) -> MeshResult:
        """Return ``result`` with smoothed ``joints``, ``vertices`` and ``cam_t``."""
        if result.track_id is None:
            return result
        self._drop_stale(stamp)
        filters = self._filters.get(result.track_id)
        if filters is None:
            filters = {
                "cam_t": self.translation.make(),
                "joints": self.articulation.make(),
                "vertices": self.articulation.make(),
            }
            self._filters[result.track_id] = filters
        self._last_seen[result.track_id] = stamp
        cam_t = np.asarray(result.cam_t, dtype=np.float64)
        new_cam_t = filters["cam_t"](cam_t, stamp)
        joints = filters["joints"](np.asarray(result.joints) - cam_t, stamp) + new_cam_t
        vertices = filters["vertices"](np.asarray(result.vertices) - cam_t, stamp) + new_cam_t
        return dataclasses.replace(
            result,
            cam_t=new_cam_t.astype(np.asarray(result.cam_t).dtype),
            joints=joints.astype(np.asarray(result.joints).dtype),
            vertices=vertices.astype(np.asarray(result.vertices).dtype),
        )

    def smooth_all(self, results: Iterable[MeshResult], stamp: float) -> list[MeshResult]:
        """Smooth every hand (or body) of one frame."""
        return [self(result, stamp) for result in results]

    def forget(self, track_id: int) -> None:
        """Drop the filters of one track (e.g. when the tracker ends it)."""
        self._filters.pop(track_id, None)
        self._last_seen.pop(track_id, None)

    @property
    def track_ids(self) -> list[int]:
        """Ids that currently have filters."""
        return sorted(self._filters)

    def _drop_stale(self, stamp: float) -> None:
        for track_id, seen in list(self._last_seen.items()):
            if stamp - seen > self.forget_after or stamp < seen:
                self.forget(track_id)


#: The hand path's name for :class:`MeshSmoother`.
HandSmoother = MeshSmoother
