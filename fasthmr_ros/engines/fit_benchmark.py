"""Latency of the default hand path: MediaPipe landmarks -> fitted Anny hands (no network).

The frame is the rendered sample image (:func:`~fasthmr_ros.pipeline.sample_image.
render_sample_hands`, two hands MediaPipe finds); for ``N`` hands per frame its detected hands
are repeated. Stages: ``detect`` (MediaPipe, when a detector is given), ``fit`` (analytic fit,
skinning and camera placement of all ``N`` hands) and ``serialize`` (HandMeshArray, when a
serializer is given). Frames of all hand counts are timed in rounds, like ``fasthmr bench``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from fasthmr_ros.engines.benchmark import StageStats, _fmt

FIT_STAGES: tuple[str, ...] = ("detect", "fit", "serialize")


@dataclass
class FitResult:
    """Stage statistics of the landmark fit with ``hands`` hands per frame."""

    hands: int
    stages: dict[str, StageStats] = field(default_factory=dict)
    mean_residual_px: float = float("nan")

    @property
    def fit_per_hand_ms(self) -> float:
        """Median fit latency divided by the hand count."""
        return self.stages["fit"].median_ms / self.hands

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {"hands": self.hands, "fit_per_hand_ms": self.fit_per_hand_ms,
                "mean_residual_px": self.mean_residual_px,
                "stages": {k: asdict(v) for k, v in self.stages.items()}}


def run_fit_benchmark(
    hand_counts: Sequence[int],
    detector: Callable[[np.ndarray], list[Any]],
    warmup: int = 3,
    iterations: int = 20,
    time_detector: bool = True,
    serializer: Callable[[list[Any]], bytes] | None = None,
) -> list[FitResult]:
    """Time the landmark-fit path on the rendered sample image.

    Args:
        hand_counts: hands per frame to measure (the two rendered hands, repeated).
        detector: ``detect(rgb) -> boxes`` with landmarks (MediaPipe); also timed when
            ``time_detector``.
        warmup: untimed rounds first.
        iterations: timed rounds.
        time_detector: include the ``detect`` stage.
        serializer: ``serializer(results) -> bytes`` for the ``serialize`` stage, or ``None``.

    Raises:
        ValueError: on bad counts, or when the detector finds no hand with landmarks.

    """
    import cv2

    from fasthmr_ros.pipeline.landmark_hand_pipeline import LandmarkHandPipeline
    from fasthmr_ros.pipeline.sample_image import render_sample_hands, sample_camera

    if warmup < 0 or iterations < 1 or any(n < 1 for n in hand_counts):
        raise ValueError(f"need warmup >= 0, iterations >= 1 and hand counts >= 1, got "
                         f"{warmup}, {iterations}, {list(hand_counts)}")
    rgb = cv2.cvtColor(render_sample_hands(), cv2.COLOR_BGR2RGB)
    found = [b for b in detector(rgb) if b.world_landmarks is not None]
    if not found:
        raise ValueError("the detector found no hand with landmarks on the rendered sample")
    camera = sample_camera()
    pipeline = LandmarkHandPipeline()
    results = [FitResult(n) for n in hand_counts]
    samples: list[dict[str, list[float]]] = [{s: [] for s in FIT_STAGES} for _ in results]
    for round_index in range(warmup + iterations):
        for result, timing in zip(results, samples, strict=True):
            boxes = [found[i % len(found)] for i in range(result.hands)]
            start = time.perf_counter()
            if time_detector:
                detector(rgb)
            detected = time.perf_counter()
            hands = pipeline.process(rgb, boxes, camera)
            fitted = time.perf_counter()
            if serializer is not None:
                serializer(hands)
            done = time.perf_counter()
            if round_index >= warmup:
                if time_detector:
                    timing["detect"].append(1e3 * (detected - start))
                timing["fit"].append(1e3 * (fitted - detected))
                if serializer is not None:
                    timing["serialize"].append(1e3 * (done - fitted))
            result.mean_residual_px = float(np.mean([h.extras["fit_residual_px"]
                                                     for h in hands]))
    for result, timing in zip(results, samples, strict=True):
        result.stages = {s: StageStats.from_samples(v) for s, v in timing.items() if v}
    return results


def fit_markdown_table(results: Sequence[FitResult]) -> str:
    """The landmark-fit results as a markdown table (medians; fit also p90/p99)."""
    lines = ["| hands | detect ms | fit ms (p50 / p90 / p99) | fit / hand ms | serialize ms | "
             "mean residual px |", "|---|---|---|---|---|---|"]
    for r in results:
        fit = r.stages["fit"]
        detect = r.stages.get("detect")
        serialize = r.stages.get("serialize")
        lines.append(
            f"| {r.hands} | {_fmt(detect.median_ms if detect else None)} | "
            f"{_fmt(fit.median_ms)} / {_fmt(fit.p90_ms)} / {_fmt(fit.p99_ms)} | "
            f"{_fmt(r.fit_per_hand_ms)} | {_fmt(serialize.median_ms if serialize else None)} "
            f"| {_fmt(r.mean_residual_px)} |")
    return "\n".join(lines) + "\n"
