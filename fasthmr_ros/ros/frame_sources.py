"""Frames from a video file, an image folder or a camera, as RGB arrays with their rate."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


class FrameSourceError(ValueError):
    """A source that cannot be opened or read."""


@dataclass
class FrameSource:
    """An opened source: iterate to get ``(H, W, 3)`` uint8 RGB frames.

    ``fps`` is the source's own rate (video container, camera driver) or the rate asked for.
    """

    description: str
    fps: float
    length: int | None
    _video: cv2.VideoCapture | None = None
    _files: tuple[Path, ...] = ()
    loop: bool = False

    def __iter__(self) -> Iterator[np.ndarray]:
        while True:
            if self._video is not None:
                yield from self._read_video()
            else:
                yield from self._read_files()
            if not self.loop:
                return

    def _read_video(self) -> Iterator[np.ndarray]:
        assert self._video is not None
        self._video.set(cv2.CAP_PROP_POS_FRAMES, 0)
        while True:
            ok, bgr = self._video.read()
            if not ok or bgr is None:
                return
            yield cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)

    def _read_files(self) -> Iterator[np.ndarray]:
        for path in self._files:
            bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if bgr is None:
                raise FrameSourceError(f"cannot read image {path} (corrupt or not an image)")
            yield cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)

    def close(self) -> None:
        """Release the video file or camera."""
        if self._video is not None:
            self._video.release()
            self._video = None


def open_frame_source(source: str, rate: float | None = None, loop: bool = False) -> FrameSource:
    """Open ``source``: a camera index (``0``), an image folder, or a video file.

    Args:
        source: what to read.
        rate: frames per second to report; required meaning for folders (default 30), an
            override for videos and cameras.
        loop: start again at the end (folders and videos).

    Raises:
        FrameSourceError: when the source does not exist or cannot be opened.

    """
    if rate is not None and rate <= 0:
        raise FrameSourceError(f"rate must be positive, got {rate}")
    if source.isdigit():
        capture = cv2.VideoCapture(int(source))
        if not capture.isOpened():
            raise FrameSourceError(f"cannot open camera {source}; check the device index")
        fps = rate or capture.get(cv2.CAP_PROP_FPS) or 30.0
        return FrameSource(f"camera {source}", float(fps), None, _video=capture)
    path = Path(source)
    if path.is_dir():
        files = tuple(sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES))
        if not files:
            raise FrameSourceError(
                f"folder {path} has no images ({', '.join(IMAGE_SUFFIXES)})"
            )
        return FrameSource(f"{len(files)} images in {path}", float(rate or 30.0), len(files),
                           _files=files, loop=loop)
    if not path.exists():
        raise FrameSourceError(
            f"{source} is not a camera index, an image folder or an existing video file"
        )
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return FrameSource(f"image {path}", float(rate or 30.0), 1, _files=(path,), loop=loop)
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise FrameSourceError(f"OpenCV cannot open video {path}")
    fps = rate or capture.get(cv2.CAP_PROP_FPS) or 30.0
    count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) or None
    return FrameSource(f"video {path}", float(fps), count, _video=capture, loop=loop)
