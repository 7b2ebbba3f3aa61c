"""Where hand (and person) boxes come from: a detector, a JSON file, or the whole frame.

JSON box files (``fasthmr hands --boxes FILE``, ``fasthmr bodies --boxes FILE``) are one
object whose keys name frames and whose values list that frame's hands (or people)::

    {
      "test1.jpg": [{"box": [x1, y1, x2, y2], "side": "right", "score": 0.98}],
      "3":         [{"box": [120, 40, 260, 210], "side": "left"}]
    }

A key is an image file name (``test1.jpg``), its stem (``test1``), a frame name as written by
``fasthmr hands`` (``clip_000012``), or a frame index as a decimal string (``"3"``, counting
frames from 0 over all inputs in order). Boxes are tight pixel boxes around the hand;
``side`` is required, ``score`` defaults to 1 and must be in [0, 1]. Frames without a key have
no hands. Person files (:func:`parse_person_entry`) have the same layout, with boxes around
the whole visible body and no ``side``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from fasthmr_ros.pipeline.results import SIDES, HandBox, PersonBox


@runtime_checkable
class HandDetector(Protocol):
    """Finds hands in a frame: tight boxes with side (left/right) and score."""

    def detect(self, image_rgb: np.ndarray) -> list[HandBox]:
        """Return the hands in an ``H x W x 3`` uint8 RGB frame."""
        ...


def _is_number(value: Any) -> bool:
    """Whether a JSON value is a number (JSON's ``true``/``false`` and strings are not)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _box_and_score(entry: Any, where: str, what: str) -> tuple[list[float], float]:
    """The checked ``box`` and ``score`` (default 1) of one JSON entry."""
    if not isinstance(entry, Mapping):
        raise ValueError(f"{where}: {what} must be an object with 'box', got {entry!r}")
    box = entry.get("box")
    if not isinstance(box, (list, tuple)) or len(box) != 4:
        raise ValueError(f"{where}: 'box' must be [x1, y1, x2, y2], got {box!r}")
    if not all(_is_number(v) for v in box):
        raise ValueError(f"{where}: 'box' values must be numbers, got {box!r}")
    score = entry.get("score", 1.0)
    if not _is_number(score) or not 0.0 <= score <= 1.0:
        raise ValueError(f"{where}: 'score' must be a number in [0, 1], got {score!r}")
    return [float(v) for v in box], float(score)


def _parse_hand(entry: Any, where: str) -> HandBox:
    """Build a :class:`HandBox` from one JSON hand entry; ``where`` names it in errors."""
    box, score = _box_and_score(entry, where, "a hand")
    side = entry.get("side")
    if side not in SIDES:
        raise ValueError(f"{where}: 'side' must be 'left' or 'right', got {side!r}")
    try:
        return HandBox(*box, side=side, score=score, source="json")
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None


def parse_person_entry(entry: Any, where: str) -> PersonBox:
    """Build a :class:`PersonBox` from one JSON person entry (``box``, optional ``score``)."""
    box, score = _box_and_score(entry, where, "a person")
    try:
        return PersonBox(*box, score=score, source="json")
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None


class JsonBoxes:
    """Hand (or person) boxes read from a JSON file (format in the module docstring).

    ``parse_entry(entry, where)`` turns one listed entry into a box (hands by default;
    :func:`parse_person_entry` for people) and raises ``ValueError`` naming ``where``.
    """

    def __init__(self, frames: Mapping[str, list[Any]], origin: str = "<memory>") -> None:
        self.frames = dict(frames)
        self.origin = origin

    @classmethod
    def load(
        cls, path: str | Path, parse_entry: Callable[[Any, str], Any] = _parse_hand
    ) -> JsonBoxes:
        """Read and validate a box file; errors name the file and the bad entry."""
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise ValueError(f"box file {path} does not exist") from None
        except json.JSONDecodeError as exc:
            raise ValueError(f"box file {path} is not valid JSON: {exc}") from None
        return cls.from_dict(data, origin=str(path), parse_entry=parse_entry)

    @classmethod
    def from_dict(
        cls, data: Any, origin: str = "<memory>",
        parse_entry: Callable[[Any, str], Any] = _parse_hand,
    ) -> JsonBoxes:
        """Validate an already-parsed box mapping."""
        if not isinstance(data, Mapping):
            raise ValueError(
                f"{origin}: top level must be an object mapping frame names or indices to box "
                "lists, e.g. {\"img.jpg\": [{\"box\": [x1, y1, x2, y2], \"side\": \"left\"}]}"
            )
        frames: dict[str, list[Any]] = {}
        for key, entries in data.items():
            if not isinstance(entries, list):
                raise ValueError(f"{origin}: frame {key!r} must map to a list of boxes")
            frames[str(key)] = [
                parse_entry(entry, f"{origin}: frame {key!r} entry {i}")
                for i, entry in enumerate(entries)
            ]
        return cls(frames, origin)

    def keys_for(self, name: str, frame_index: int) -> Iterable[str]:
        """Candidate keys for a frame, most specific first."""
        yield name
        yield Path(name).stem
        yield str(frame_index)

    def has_frame(self, name: str, frame_index: int) -> bool:
        """Whether the file lists this frame (possibly with zero hands)."""
        return any(key in self.frames for key in self.keys_for(name, frame_index))

    def boxes_for(self, name: str, frame_index: int) -> list[Any]:
        """Boxes of the frame called ``name`` (file name or frame name) or numbered ``index``."""
        for key in self.keys_for(name, frame_index):
            if key in self.frames:
                return list(self.frames[key])
        return []


class FullFrameBoxes:
    """For inputs already cropped to one hand: the whole frame is the hand's tight box.

    The box spans the frame's pixel edges (``-0.5 .. W - 0.5`` in pixel-centre coordinates), so
    its centre is the frame centre; the pipeline then enlarges it as it does any tight box.
    """

    def __init__(self, side: str, score: float = 1.0) -> None:
        if side not in SIDES:
            raise ValueError(f"side must be 'left' or 'right', got {side!r}")
        self.side = side
        self.score = float(score)

    def detect(self, image_rgb: np.ndarray) -> list[HandBox]:
        """Return one box covering the whole frame."""
        height, width = np.asarray(image_rgb).shape[:2]
        return [
            HandBox(-0.5, -0.5, width - 0.5, height - 0.5, side=self.side, score=self.score,
                    source="full-frame")
        ]
