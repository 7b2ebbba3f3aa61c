"""Unlabelled footage: every image, and every ``frame_step``-th video frame, under a path.

This is the input of label-free distillation: the detector finds the hands, the teacher
provides the targets. Files are visited in sorted path order so runs are repeatable.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from fasthmr_ros.pipeline.video import IMAGE_SUFFIXES  # the images ``fasthmr hands`` reads

#: Files read as videos.
VIDEO_SUFFIXES: frozenset[str] = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v"})

_LOG = logging.getLogger(__name__)


@dataclass
class MediaFrame:
    """One RGB ``uint8`` frame and where it came from (``frame_index`` is 0 for images)."""

    source: Path
    frame_index: int
    image: np.ndarray

    @property
    def key(self) -> str:
        """Stable identifier, ``<file>#<frame>``."""
        return f"{self.source}#{self.frame_index}"


class MediaFolder:
    """Iterate the frames of an image/video file or of every such file under a folder.

    Args:
        path: an image, a video, or a folder searched recursively.
        frame_step: keep every ``frame_step``-th video frame (1 keeps all).
        max_frames_per_video: stop reading a video after this many kept frames (``None``: all).

    """

    def __init__(
        self, path: Path | str, frame_step: int = 1, max_frames_per_video: int | None = None
    ) -> None:
        self.path = Path(path)
        if frame_step < 1:
            raise ValueError(f"frame_step must be >= 1, got {frame_step}")
        if max_frames_per_video is not None and max_frames_per_video < 1:
            raise ValueError(f"max_frames_per_video must be >= 1, got {max_frames_per_video}")
        self.frame_step = frame_step
        self.max_frames_per_video = max_frames_per_video
        if not self.path.exists():
            raise FileNotFoundError(f"no such file or folder: {self.path}")
        known = IMAGE_SUFFIXES | VIDEO_SUFFIXES
        if self.path.is_file():
            if self.path.suffix.lower() not in known:
                raise ValueError(
                    f"{self.path} is neither an image nor a video; supported suffixes: "
                    f"{', '.join(sorted(known))}"
                )
            self.files = [self.path]
        else:
            self.files = sorted(
                p for p in self.path.rglob("*") if p.is_file() and p.suffix.lower() in known
            )
            if not self.files:
                raise FileNotFoundError(
                    f"no images or videos under {self.path}; supported suffixes: "
                    f"{', '.join(sorted(known))}"
                )

    @property
    def images(self) -> list[Path]:
        """The image files."""
        return [p for p in self.files if p.suffix.lower() in IMAGE_SUFFIXES]

    @property
    def videos(self) -> list[Path]:
        """The video files."""
        return [p for p in self.files if p.suffix.lower() in VIDEO_SUFFIXES]

    def __iter__(self) -> Iterator[MediaFrame]:
        """Yield frames file by file; unreadable files are logged and skipped."""
        for path in self.files:
            if path.suffix.lower() in IMAGE_SUFFIXES:
                image = cv2.imread(str(path), cv2.IMREAD_COLOR)
                if image is None:
                    _LOG.warning("skipping %s: OpenCV cannot decode it", path)
                    continue
                yield MediaFrame(path, 0, cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
            else:
                yield from self._video_frames(path)

    def _video_frames(self, path: Path) -> Iterator[MediaFrame]:
        capture = cv2.VideoCapture(str(path))
        if not capture.isOpened():
            _LOG.warning("skipping %s: OpenCV cannot open the video", path)
            return
        kept = 0
        index = 0
        try:
            while True:
                ok, frame = capture.read()
                if not ok:
                    break
                if index % self.frame_step == 0:
                    yield MediaFrame(path, index, cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
                    kept += 1
                    if self.max_frames_per_video is not None and kept >= self.max_frames_per_video:
                        break
                index += 1
        finally:
            capture.release()
