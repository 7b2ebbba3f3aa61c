"""Frames from image files, folders of images, video files or cameras (OpenCV)."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

#: File endings read as still images (anything else that exists is opened as a video).
IMAGE_SUFFIXES: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
)


@dataclass
class Frame:
    """One input frame.

    ``name`` is unique per frame and safe as a file stem (``photo`` for ``photo.jpg``,
    ``clip_000012`` for frame 12 of ``clip.mp4``, ``camera0_000012`` for a camera);
    ``file_name`` is the image's file name for still images; ``index`` counts frames from 0
    over all inputs in order; ``stamp`` is the frame's time in seconds (position in a video,
    a monotonic clock for a camera, ``None`` for still images).
    """

    name: str
    index: int
    image_bgr: np.ndarray
    file_name: str | None = None
    stamp: float | None = None


@dataclass(frozen=True)
class _Source:
    kind: str  # "image", "video" or "camera"
    target: str  # path or camera index


def _is_camera(spec: str) -> bool:
    return spec.isdigit() and not Path(spec).exists()


def _expand(spec: str) -> list[_Source]:
    """Turn one command-line input into sources, with a clear error when it cannot be read."""
    if _is_camera(spec):
        return [_Source("camera", spec)]
    path = Path(spec)
    if path.is_dir():
        images = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not images:
            raise ValueError(
                f"folder {path} holds no images (looked for {', '.join(sorted(IMAGE_SUFFIXES))})"
            )
        return [_Source("image", str(p)) for p in images]
    if not path.exists():
        raise ValueError(
            f"input {spec} does not exist; give image files, folders of images, video files or "
            "a camera index such as 0"
        )
    kind = "image" if path.suffix.lower() in IMAGE_SUFFIXES else "video"
    return [_Source(kind, str(path))]


def _open_capture(source: _Source) -> cv2.VideoCapture:
    target = int(source.target) if source.kind == "camera" else source.target
    capture = cv2.VideoCapture(target)
    if not capture.isOpened():
        capture.release()
        if source.kind == "camera":
            raise ValueError(f"cannot open camera {source.target}; is it connected and free?")
        raise ValueError(
            f"cannot read {source.target} as an image or video; supported images: "
            f"{', '.join(sorted(IMAGE_SUFFIXES))}; videos: whatever this OpenCV build decodes"
        )
    return capture


class FrameSource:
    """Iterates :class:`Frame` objects over inputs given as on the command line.

    Inputs are image files, folders (their images, sorted by name), video files, or camera
    indices (``"0"``). All inputs are checked when the source is made, so a typo fails before
    any work is done; an unreadable file raises ``ValueError`` naming it.
    """

    def __init__(self, inputs: Sequence[str]) -> None:
        if not inputs:
            raise ValueError("no inputs given")
        self._sources = [src for spec in inputs for src in _expand(str(spec))]

    @property
    def total(self) -> int | None:
        """Number of frames when known in advance (``None`` with a camera)."""
        count = 0
        for source in self._sources:
            if source.kind == "camera":
                return None
            if source.kind == "image":
                count += 1
                continue
            capture = _open_capture(source)
            frames = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
            capture.release()
            if frames <= 0:
                return None
            count += frames
        return count

    def __iter__(self) -> Iterator[Frame]:
        index = 0
        used: set[str] = set()
        for source in self._sources:
            for name, image, file_name, stamp in self._frames_of(source):
                unique = name if name not in used else f"{name}_{index:06d}"
                used.add(unique)
                yield Frame(
                    name=unique, index=index, image_bgr=image, file_name=file_name, stamp=stamp
                )
                index += 1

    @staticmethod
    def _frames_of(
        source: _Source,
    ) -> Iterator[tuple[str, np.ndarray, str | None, float | None]]:
        if source.kind == "image":
            path = Path(source.target)
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if image is None:
                raise ValueError(f"cannot read image {path}: not an image OpenCV can decode")
            yield path.stem, image, path.name, None
            return
        stem = f"camera{source.target}" if source.kind == "camera" else Path(source.target).stem
        capture = _open_capture(source)
        fps = capture.get(cv2.CAP_PROP_FPS) or 30.0
        try:
            number = 0
            while True:
                ok, image = capture.read()
                if not ok:
                    if number == 0:
                        raise ValueError(f"{source.kind} {source.target} delivered no frames")
                    return
                stamp = time.monotonic() if source.kind == "camera" else number / fps
                yield f"{stem}_{number:06d}", image, None, stamp
                number += 1
        finally:
            capture.release()


def iter_frames(inputs: Sequence[str]) -> Iterator[Frame]:
    """Iterate the frames of ``inputs`` (see :class:`FrameSource`)."""
    return iter(FrameSource(inputs))
