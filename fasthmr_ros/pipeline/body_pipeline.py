"""Bodies from frames: person detection, tracking, a body estimator and smoothing.

:class:`BodyPipeline` is what ``fasthmr bodies``, ``fasthmr bag bodies`` and the body node run
per frame. The estimator behind it is any
:class:`~fasthmr_ros.pipeline.body_estimator.BodyEstimator` (the landmark fit by default, the
HMR2.0 network when its checkpoint is given); the pipeline itself does not know which.

Per frame: people come from the person detector (MediaPipe Pose, several per frame) or from
the caller (external boxes: a detection topic, ``--boxes``); the best ``max_people`` above
``score_threshold`` are kept; external boxes gain landmarks from the ``landmarker`` when one
is given (MediaPipe Pose run inside each box, for estimators that fit landmarks); the
tracker gives them ids, the estimator reconstructs them, and the results are stamped with
their person's id and One-Euro smoothed
(:class:`~fasthmr_ros.pipeline.temporal.MeshStream`, the same code as for hands). With a hand
source (the frame's hand results: the hand pipeline on the same image, or the hand node's
latest message), an estimator that attaches hands (the landmark fit) curls each body's
fingers as the hand found at that wrist (:mod:`fasthmr_ros.pipeline.hand_attachment`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from fasthmr_ros.models.mesh_model import MeshModelInfo
from fasthmr_ros.pipeline.body_estimator import PERSON_INDEX, BodyEstimator
from fasthmr_ros.pipeline.results import BodyResult, CameraIntrinsics, HandResult, PersonBox
from fasthmr_ros.pipeline.temporal import MeshStream


class PersonDetector(Protocol):
    """A source of people in a frame (e.g. :class:`MediaPipePersonDetector`)."""

    def detect(self, image_rgb: np.ndarray) -> list[PersonBox]:
        """Return the people found in the image, best first."""


class BoxLandmarker(Protocol):
    """Adds landmarks to boxes that lack them (e.g. :class:`MediaPipePersonDetector`)."""

    def landmarks_in_boxes(
        self, image_rgb: np.ndarray, people: Sequence[PersonBox]
    ) -> list[PersonBox]:
        """Return ``people`` in order, those without landmarks given them where found."""


@dataclass
class BodyTimings:
    """Milliseconds spent per stage of the last frame."""

    detect_ms: float = 0.0
    hands_ms: float = 0.0  # the hand source (part of estimate_ms)
    estimate_ms: float = 0.0
    track_ms: float = 0.0


def select_people(
    people: Sequence[PersonBox], score_threshold: float, max_people: int
) -> list[PersonBox]:
    """Keep the ``max_people`` highest-scoring people whose score reaches ``score_threshold``."""
    kept = sorted((p for p in people if p.score >= score_threshold), key=lambda p: p.score,
                  reverse=True)
    return kept[:max_people]


def result_track_ids(
    results: Sequence[BodyResult], track_ids: Sequence[int | None]
) -> list[int | None]:
    """The track id of each result, through ``extras[PERSON_INDEX]`` (input order otherwise)."""
    ids = []
    for position, result in enumerate(results):
        index = result.extras.get(PERSON_INDEX)
        ids.append(track_ids[int(np.asarray(index).reshape(-1)[0]) if index is not None
                             else position])
    return ids


class BodyPipeline:
    """Person detection + tracking + a body estimator + smoothing, one camera stream.

    Args:
        estimator: the body estimator (image + camera + people -> bodies).
        detector: the person detector; ``None`` when people always come from the caller.
        stream: tracking and smoothing state (default: :class:`MeshStream` with defaults).
        max_people: most bodies per frame (highest scores).
        score_threshold: people scoring lower are ignored.
        hand_source: ``(image_rgb, camera) -> hands`` of the frame, attached to the bodies'
            wrists by estimators that attach hands; ``None``: fingers keep their rest pose.
        landmarker: gives external boxes (no landmarks) MediaPipe Pose landmarks before the
            estimator runs; ``None`` (the default) passes boxes on as they are (the HMR2.0
            network needs only the box).

    """

    def __init__(
        self,
        estimator: BodyEstimator,
        detector: PersonDetector | None = None,
        *,
        stream: MeshStream | None = None,
        max_people: int = 4,
        score_threshold: float = 0.0,
        hand_source: Callable[[np.ndarray, CameraIntrinsics], Sequence[HandResult]]
        | None = None,
        landmarker: BoxLandmarker | None = None,
    ) -> None:
        if int(max_people) < 1:
            raise ValueError(f"max_people must be at least 1, got {max_people}")
        self.estimator = estimator
        self.detector = detector
        self.stream = stream or MeshStream()
        self.max_people = int(max_people)
        self.score_threshold = float(score_threshold)
        self.hand_source = hand_source
        #: The hands of the last frame that the hand source gave (attached or not).
        self.last_hands: list[HandResult] = []
        self.landmarker = landmarker
        self.timings = BodyTimings()

    @property
    def info(self) -> MeshModelInfo:
        """The estimator's mesh model (for the topology and overlays)."""
        return self.estimator.info

    @property
    def skipped(self) -> list[str]:
        """Why people of the last frame were not reconstructed."""
        return self.estimator.skipped

    def process(
        self, image_rgb: np.ndarray, people: Sequence[PersonBox], camera: CameraIntrinsics
    ) -> list[BodyResult]:
        """Reconstruct ``people`` (no detection, no tracking): the node core's pipeline call.

        People without landmarks get them from the ``landmarker`` first, when there is one.
        """
        people = list(people)
        if self.landmarker is not None and any(p.world_landmarks is None for p in people):
            people = self.landmarker.landmarks_in_boxes(image_rgb, people)
        self.last_hands = []
        self.timings.hands_ms = 0.0
        if self.hand_source is None or not getattr(self.estimator, "attaches_hands", False):
            return self.estimator.estimate(image_rgb, people, camera)
        start = time.perf_counter()
        self.last_hands = list(self.hand_source(image_rgb, camera)) if people else []
        self.timings.hands_ms = 1e3 * (time.perf_counter() - start)
        return self.estimator.estimate(  # type: ignore[call-arg]
            image_rgb, people, camera, hands=self.last_hands)

    def run(
        self,
        image_rgb: np.ndarray,
        camera: CameraIntrinsics,
        stamp: float | None = None,
        people: Sequence[PersonBox] | None = None,
    ) -> list[BodyResult]:
        """Detect (unless ``people`` is given), track, reconstruct and smooth one frame.

        ``stamp`` is the frame time in seconds; ``None`` marks an unrelated still image (the
        tracks are reset and results keep ``track_id=None``).
        """
        start = time.perf_counter()
        if people is None:
            if self.detector is None:
                raise ValueError("this pipeline has no person detector: pass people")
            people = self.detector.detect(image_rgb)
        people = select_people(people, self.score_threshold, self.max_people)
        detected = time.perf_counter()
        if stamp is None:
            self.stream.reset()
        people, track_ids = self.stream.assign(people)
        results = self.process(image_rgb, people, camera)
        estimated = time.perf_counter()
        ids = result_track_ids(results, track_ids) if stamp is not None else [None] * len(
            results)
        results = self.stream.finish(results, ids, stamp or 0.0, camera)
        done = time.perf_counter()
        self.timings = BodyTimings(
            detect_ms=1e3 * (detected - start),
            hands_ms=self.timings.hands_ms,
            estimate_ms=1e3 * (estimated - detected),
            track_ms=1e3 * (done - estimated),
        )
        return results
