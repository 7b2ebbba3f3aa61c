"""JSON box files and the full-frame box source."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fasthmr_ros.pipeline.box_sources import (
    FullFrameBoxes,
    HandDetector,
    JsonBoxes,
    parse_person_entry,
)
from fasthmr_ros.pipeline.crop import crop_region


def write(tmp_path, data):
    path = tmp_path / "boxes.json"
    path.write_text(json.dumps(data) if not isinstance(data, str) else data)
    return path


def test_lookup_by_file_name_stem_and_index(tmp_path):
    boxes = JsonBoxes.load(write(tmp_path, {
        "photo.jpg": [{"box": [10, 20, 50, 90], "side": "left", "score": 0.5}],
        "other": [{"box": [1, 2, 3, 4], "side": "right"}],
        "7": [{"box": [5, 5, 9, 9], "side": "right"}, {"box": [0, 0, 2, 2], "side": "left"}],
        "empty.png": [],
    }))
    (hand,) = boxes.boxes_for("photo.jpg", 0)
    assert (hand.side, hand.score) == ("left", 0.5)
    np.testing.assert_array_equal(hand.xyxy, [10, 20, 50, 90])
    assert boxes.boxes_for("other.png", 1)[0].score == 1.0  # stem match, default score
    assert len(boxes.boxes_for("clip_000007", 7)) == 2  # index match
    assert boxes.boxes_for("unknown.jpg", 3) == []
    assert boxes.has_frame("empty.png", 4) and not boxes.has_frame("unknown.jpg", 3)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("[1, 2]", "top level must be an object"),
        ("{not json", "not valid JSON"),
        ({"a.jpg": {"box": [0, 0, 1, 1]}}, "must map to a list"),
        ({"a.jpg": [{"box": [0, 0, 1], "side": "left"}]}, r"'box' must be \[x1, y1, x2, y2\]"),
        ({"a.jpg": [{"box": [0, 0, "x", 1], "side": "left"}]}, "must be numbers"),
        ({"a.jpg": [{"box": [0, 0, "1", 1], "side": "left"}]}, "must be numbers"),
        ({"a.jpg": [{"box": [0, 0, True, 1], "side": "left"}]}, "must be numbers"),
        ({"a.jpg": [{"box": [0, 0, 1, 1], "side": "both"}]}, "'side' must be"),
        ({"a.jpg": [{"box": [0, 0, 1, 1]}]}, "'side' must be"),
        ({"a.jpg": [{"box": [5, 0, 1, 1], "side": "left"}]}, "x2 > x1"),
        ({"a.jpg": [{"box": [0, 0, 1, 1], "side": "left", "score": "high"}]}, "'score'"),
        ({"a.jpg": [{"box": [0, 0, 1, 1], "side": "left", "score": True}]}, "'score'"),
        ({"a.jpg": [{"box": [0, 0, 1, 1], "side": "left", "score": 1.5}]}, r"in \[0, 1\]"),
        ({"a.jpg": ["box"]}, "a hand must be an object"),
    ],
)
def test_bad_box_files_name_the_problem(tmp_path, content, message):
    with pytest.raises(ValueError, match=message) as info:
        JsonBoxes.load(write(tmp_path, content))
    assert "boxes.json" in str(info.value)


def test_person_box_files_use_the_same_reader(tmp_path):
    people = JsonBoxes.load(write(tmp_path, {
        "crowd.jpg": [{"box": [10, 20, 110, 300], "score": 0.8}, {"box": [200, 0, 260, 90]}],
        "3": [],
    }), parse_person_entry)
    first, second = people.boxes_for("crowd.jpg", 0)
    assert first.xyxy.tolist() == [10, 20, 110, 300] and first.score == 0.8
    assert second.score == 1.0 and {first.source, second.source} == {"json"}
    assert first.keypoints_2d is None and first.world_landmarks is None
    assert people.has_frame("x.png", 3) and people.boxes_for("x.png", 3) == []
    with pytest.raises(ValueError, match=r"frame 'a.jpg' entry 0: person box must have x2 > x1"):
        JsonBoxes.load(write(tmp_path, {"a.jpg": [{"box": [9, 0, 1, 5]}]}), parse_person_entry)
    with pytest.raises(ValueError, match="a person must be an object"):
        JsonBoxes.load(write(tmp_path, {"a.jpg": [[0, 0, 1, 1]]}), parse_person_entry)


def test_missing_box_file(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        JsonBoxes.load(tmp_path / "nope.json")


def test_full_frame_box_is_the_frame():
    source = FullFrameBoxes("left", score=0.7)
    assert isinstance(source, HandDetector)
    (box,) = source.detect(np.zeros((120, 90, 3), np.uint8))
    assert (box.side, box.score) == ("left", 0.7)
    center, _ = crop_region(box)
    np.testing.assert_allclose(center, [(90 - 1) / 2, (120 - 1) / 2])
    assert (box.x2 - box.x1, box.y2 - box.y1) == (90, 120)
    with pytest.raises(ValueError, match="side"):
        FullFrameBoxes("up")
