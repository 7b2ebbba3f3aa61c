"""Overlapping square tiles that cover a frame: the search grid of a zoomed detection pass.

Detectors with a small fixed input (MediaPipe's palm detector sees the frame resized to
192x192) lose hands that are small in the frame. Running them again on square tiles cut from
the frame zooms in by ``frame side / tile side``. Neighbouring tiles overlap so that a hand
smaller than the overlap lies whole inside at least one tile.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Tile:
    """A square window of a frame in pixels: columns ``x:x+side``, rows ``y:y+side``."""

    x: int
    y: int
    side: int

    @property
    def xyxy(self) -> tuple[int, int, int, int]:
        """Corners ``(x1, y1, x2, y2)``, end exclusive."""
        return self.x, self.y, self.x + self.side, self.y + self.side


def tile_starts(length: int, side: int, min_overlap: float) -> list[int]:
    """Start offsets of windows of ``side`` pixels covering ``[0, length)``.

    The first window starts at 0, the last one ends at ``length``, and the starts in between
    are evenly spaced, with the fewest windows for which neighbours share at least
    ``min_overlap * side`` pixels (at most ``side - 1``: starts are distinct). A window at
    least as long as ``length`` gives ``[0]``.
    """
    if length < 1 or side < 1:
        raise ValueError(f"length and side must be positive, got length={length} side={side}")
    if not 0.0 <= min_overlap < 1.0:
        raise ValueError(f"min_overlap must be in [0, 1), got {min_overlap}")
    if side >= length:
        return [0]
    longest_stride = max(1.0, side * (1.0 - min_overlap))  # distinct starts: 1 px at least
    count = math.ceil((length - side) / longest_stride) + 1
    return [round(i * (length - side) / (count - 1)) for i in range(count)]


def square_tiles(
    height: int, width: int, side_fraction: float, min_overlap: float, min_side: int = 1
) -> list[Tile]:
    """Square tiles of side ``side_fraction`` times the frame's shorter side, row by row.

    The side is raised to ``min_side`` (a detector gains nothing from tiles smaller than its
    input) but never beyond the shorter side. Together the tiles cover the whole ``height`` x
    ``width`` frame; see :func:`tile_starts` for the spacing. ``side_fraction`` 1 gives the
    fewest squares along the longer side.
    """
    if height < 1 or width < 1:
        raise ValueError(f"frame must be at least 1x1 pixels, got {height}x{width}")
    if not 0.0 < side_fraction <= 1.0:
        raise ValueError(f"tile side fraction must be in (0, 1], got {side_fraction}")
    short = min(height, width)
    side = min(short, max(min_side, round(side_fraction * short), 1))
    return [
        Tile(x, y, side)
        for y in tile_starts(height, side, min_overlap)
        for x in tile_starts(width, side, min_overlap)
    ]
