"""Geometry of the overlapping square tiles of the detector's tile search (pure Python)."""

from __future__ import annotations

import numpy as np
import pytest

from fasthmr_ros.pipeline.tiling import Tile, square_tiles, tile_starts


def test_starts_of_a_known_row():
    # 640 px with 240 px windows: a stride of at most 180 px needs 4 windows, evenly spread.
    assert tile_starts(640, 240, 0.25) == [0, 133, 267, 400]
    assert tile_starts(640, 240, 0.0) == [0, 200, 400]
    assert tile_starts(480, 480, 0.5) == [0]
    assert tile_starts(100, 300, 0.25) == [0]


@pytest.mark.parametrize("seed", range(5))
def test_starts_cover_the_row_with_the_overlap_and_no_spare_window(seed):
    rng = np.random.default_rng(seed)
    for _ in range(200):
        length = int(rng.integers(1, 3000))
        side = int(rng.integers(1, length + 1))
        overlap = float(rng.uniform(0.0, 0.9))
        starts = tile_starts(length, side, overlap)
        assert starts[0] == 0 and starts[-1] + side == length
        assert starts == sorted(set(starts))
        shared = [a + side - b for a, b in zip(starts, starts[1:])]
        # Rounding the starts to pixels may cost one pixel of the asked-for overlap.
        assert all(s >= overlap * side - 1 for s in shared)
        if len(starts) >= 3:
            # One window fewer would need a longer stride than the overlap allows.
            assert (length - side) / (len(starts) - 2) > max(1.0, side * (1 - overlap))


def test_tiles_cover_the_frame_inside_its_bounds():
    height, width = 480, 640
    tiles = square_tiles(height, width, 0.5, 0.25)
    assert len(tiles) == 12
    assert {t.side for t in tiles} == {240}
    covered = np.zeros((height, width), dtype=int)
    for tile in tiles:
        x1, y1, x2, y2 = tile.xyxy
        assert 0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height
        covered[y1:y2, x1:x2] += 1
    assert covered.min() >= 1
    # Any 60x60 square (the overlap) lies whole inside some tile.
    for x in range(0, width - 60, 37):
        for y in range(0, height - 60, 29):
            assert any(
                t.x <= x and t.y <= y and x + 60 <= t.x + t.side and y + 60 <= t.y + t.side
                for t in tiles
            )


def test_whole_side_tiles_and_portrait_frames():
    assert square_tiles(480, 640, 1.0, 0.0) == [Tile(0, 0, 480), Tile(160, 0, 480)]
    portrait = square_tiles(1600, 1182, 1.0, 0.0)
    assert [(t.x, t.y) for t in portrait] == [(0, 0), (0, 418)]
    assert square_tiles(1, 1, 0.5, 0.25) == [Tile(0, 0, 1)]


def test_tiles_are_never_smaller_than_the_minimum_side_unless_the_frame_is():
    assert {t.side for t in square_tiles(240, 320, 0.5, 0.25, min_side=192)} == {192}
    assert len(square_tiles(240, 320, 0.5, 0.25, min_side=192)) == 4
    assert {t.side for t in square_tiles(100, 400, 0.5, 0.25, min_side=192)} == {100}
    assert {t.side for t in square_tiles(480, 640, 0.5, 0.25, min_side=192)} == {240}


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: tile_starts(0, 10, 0.2), "positive"),
        (lambda: tile_starts(10, 0, 0.2), "positive"),
        (lambda: tile_starts(10, 5, 1.0), "min_overlap"),
        (lambda: tile_starts(10, 5, -0.1), "min_overlap"),
        (lambda: square_tiles(0, 10, 0.5, 0.2), "1x1"),
        (lambda: square_tiles(10, 10, 0.0, 0.2), "fraction"),
        (lambda: square_tiles(10, 10, 1.5, 0.2), "fraction"),
    ],
)
def test_bad_tiling_arguments_are_named(call, message):
    with pytest.raises(ValueError, match=message):
        call()
