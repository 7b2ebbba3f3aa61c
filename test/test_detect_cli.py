"""``fasthmr hands`` with the default MediaPipe detector (random-weights model assets)."""

from __future__ import annotations

import json
import sys

import cv2
import numpy as np
import pytest

from fasthmr_ros.cli.main import main

pytest.importorskip("mediapipe", reason="the default detector needs mediapipe (extra 'detect')")


def photo(name: str) -> np.ndarray:
    from test_detect_real_images import load_rgb

    return cv2.cvtColor(load_rgb(name), cv2.COLOR_RGB2BGR)


def test_default_detector_on_a_real_photo(tmp_path, test_assets, capsys):
    path = tmp_path / "people.jpg"
    cv2.imwrite(str(path), photo("test1.jpg"), [cv2.IMWRITE_JPEG_QUALITY, 95])
    out = tmp_path / "out"
    assert main(["hands", str(path), "--checkpoint", str(test_assets.checkpoint),
                 "--out", str(out)]) == 0
    assert "detect" in capsys.readouterr().out
    hands = json.loads((out / "people.json").read_text())["hands"]
    assert [h["side"] for h in hands] == ["right", "right"]
    assert all(h["track_id"] is None for h in hands)  # still images are not tracked
    centres = sorted(((b[0] + b[2]) / 2, (b[1] + b[3]) / 2) for b in (h["box"] for h in hands))
    np.testing.assert_allclose(centres, [(319, 246), (432, 359)], atol=15)
    assert np.load(out / "people.npz")["vertices"].shape == (2, 778, 3)


def test_search_tiles_option_adds_the_small_hand_on_the_knee(tmp_path, test_assets):
    path = tmp_path / "people.png"
    cv2.imwrite(str(path), photo("test1.jpg"))
    out = tmp_path / "out"
    assert main(["hands", str(path), "--checkpoint", str(test_assets.checkpoint),
                 "--search-tiles", "--out", str(out)]) == 0
    hands = json.loads((out / "people.json").read_text())["hands"]
    by_x = sorted(hands, key=lambda h: h["box"][0])
    assert [h["side"] for h in by_x] == ["left", "right", "right"]
    knee = by_x[0]["box"]
    np.testing.assert_allclose(((knee[0] + knee[2]) / 2, (knee[1] + knee[3]) / 2),
                               (170, 516), atol=15)


def test_default_detector_tracks_hands_through_a_video(tmp_path, test_assets):
    rgb_frames = []
    image = photo("test1.jpg")[:480, :640]
    for frame in range(5):
        warp = np.float32([[1, 0, 6 * frame], [0, 1, 0]])
        rgb_frames.append(cv2.warpAffine(image, warp, (640, 480),
                                         borderMode=cv2.BORDER_REPLICATE))
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (640, 480))
    assert writer.isOpened(), "OpenCV cannot write MJPG video here"
    for frame in rgb_frames:
        writer.write(frame)
    writer.release()
    out = tmp_path / "out"
    assert main(["hands", str(video), "--checkpoint", str(test_assets.checkpoint),
                 "--max-hands", "2", "--no-pose", "--out", str(out)]) == 0
    ids = []
    for frame in range(5):
        hands = json.loads((out / f"clip_{frame:06d}.json").read_text())["hands"]
        assert len(hands) == 2
        ids.append(sorted(h["track_id"] for h in hands))
    assert all(frame_ids == ids[0] for frame_ids in ids)
    assert len(set(ids[0])) == 2


def test_blank_frame_has_no_hands(tmp_path, test_assets):
    path = tmp_path / "wall.png"
    cv2.imwrite(str(path), np.full((120, 160, 3), 200, np.uint8))
    out = tmp_path / "out"
    assert main(["hands", str(path), "--checkpoint", str(test_assets.checkpoint),
                 "--out", str(out)]) == 0
    assert json.loads((out / "wall.json").read_text())["hands"] == []


@pytest.mark.parametrize(
    ("extra", "message"),
    [(["--max-hands", "0"], "--max-hands"), (["--detection-threshold", "2"], "[0, 1]")],
)
def test_bad_detector_options(tmp_path, test_assets, capsys, extra, message):
    path = tmp_path / "wall.png"
    cv2.imwrite(str(path), np.zeros((8, 8, 3), np.uint8))
    assert main(["hands", str(path), "--checkpoint", str(test_assets.checkpoint),
                 "--out", str(tmp_path / "out"), *extra]) == 2
    assert message in capsys.readouterr().err


def test_missing_mediapipe_names_the_alternatives(tmp_path, test_assets, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "mediapipe", None)  # as if the extra were not installed
    path = tmp_path / "wall.png"
    cv2.imwrite(str(path), np.zeros((8, 8, 3), np.uint8))
    assert main(["hands", str(path), "--checkpoint", str(test_assets.checkpoint),
                 "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "fasthmr_ros[detect]" in err and "--boxes" in err


def test_help_explains_the_detector(capsys):
    with pytest.raises(SystemExit):
        main(["hands", "--help"])
    text = capsys.readouterr().out
    assert "--max-hands" in text and "--mirrored" in text and "track_id" in text
    assert "--search-tiles" in text
