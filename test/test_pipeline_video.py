"""Frames from images, folders and video files, with clear errors."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from fasthmr_ros.pipeline.video import FrameSource, iter_frames


def image(value: int, shape=(24, 32)) -> np.ndarray:
    img = np.full((*shape, 3), value, np.uint8)
    img[0, 0] = (1, 2, 3)
    return img


def test_images_and_folders(tmp_path):
    folder = tmp_path / "seq"
    folder.mkdir()
    for name, value in (("b.png", 20), ("a.png", 10), ("notes.txt", 0)):
        if name.endswith(".png"):
            cv2.imwrite(str(folder / name), image(value))
        else:
            (folder / name).write_text("not an image")
    single = tmp_path / "single.jpg"
    cv2.imwrite(str(single), image(200))
    source = FrameSource([str(single), str(folder)])
    assert source.total == 3
    frames = list(source)
    assert [f.name for f in frames] == ["single", "a", "b"]
    assert [f.index for f in frames] == [0, 1, 2]
    assert [f.file_name for f in frames] == ["single.jpg", "a.png", "b.png"]
    assert frames[1].image_bgr.shape == (24, 32, 3)
    assert frames[1].image_bgr[5, 5, 0] == 10
    np.testing.assert_array_equal(frames[2].image_bgr[0, 0], (1, 2, 3))  # BGR order kept


def test_duplicate_names_are_made_unique(tmp_path):
    for sub in ("x", "y"):
        (tmp_path / sub).mkdir()
        cv2.imwrite(str(tmp_path / sub / "frame.png"), image(5))
    names = [f.name for f in iter_frames([str(tmp_path / "x"), str(tmp_path / "y")])]
    assert len(set(names)) == 2


def test_video_file(tmp_path):
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (32, 24))
    assert writer.isOpened(), "this OpenCV build cannot write MJPG AVI"
    for value in (0, 100, 200):
        writer.write(image(value))
    writer.release()
    source = FrameSource([str(path)])
    assert source.total == 3
    frames = list(source)
    assert [f.name for f in frames] == ["clip_000000", "clip_000001", "clip_000002"]
    assert frames[0].file_name is None
    assert abs(int(frames[1].image_bgr[10, 10, 1]) - 100) < 10  # lossy codec


def test_errors(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        FrameSource([str(tmp_path / "missing.jpg")])
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no images"):
        FrameSource([str(tmp_path / "empty")])
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    with pytest.raises(ValueError, match="cannot read image"):
        list(FrameSource([str(broken)]))
    bogus_video = tmp_path / "bogus.mp4"
    bogus_video.write_bytes(b"\0" * 100)
    with pytest.raises(ValueError, match="bogus.mp4"):
        list(FrameSource([str(bogus_video)]))
    with pytest.raises(ValueError, match="no inputs"):
        FrameSource([])


def test_missing_camera_is_reported():
    source = FrameSource(["97"])
    assert source.total is None
    with pytest.raises(ValueError, match="camera 97"):
        list(source)
