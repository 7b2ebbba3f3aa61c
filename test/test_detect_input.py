"""Bad and unusual frames, and bad settings, for the MediaPipe detector."""

from __future__ import annotations

import numpy as np
import pytest

from fasthmr_ros.pipeline.mediapipe_detector import as_rgb_uint8

pytest.importorskip("mediapipe", reason="the default detector needs mediapipe (extra 'detect')")


@pytest.fixture(scope="module")
def detector():
    from fasthmr_ros.pipeline.mediapipe_detector import MediaPipeHandDetector

    with MediaPipeHandDetector(max_hands=2) as det:
        yield det


@pytest.mark.parametrize("shape", [(0, 0, 3), (0, 640, 3), (480, 0, 3), (0, 0), (0, 5, 1)])
def test_empty_frames_raise_a_clear_error(detector, shape):
    with pytest.raises(ValueError, match="empty"):
        detector.detect(np.zeros(shape, dtype=np.uint8))


def test_detector_satisfies_the_pipeline_protocol(detector):
    from fasthmr_ros.pipeline.box_sources import HandDetector

    assert isinstance(detector, HandDetector)


def test_one_pixel_frame_has_no_hands(detector):
    assert detector.detect(np.full((1, 1, 3), 128, dtype=np.uint8)) == []


def test_grayscale_frames_are_expanded_to_rgb():
    gray = np.arange(12, dtype=np.uint8).reshape(3, 4)
    rgb = as_rgb_uint8(gray)
    assert rgb.shape == (3, 4, 3) and rgb.flags.c_contiguous
    assert (rgb == gray[:, :, None]).all()
    assert (as_rgb_uint8(gray[:, :, None]) == rgb).all()


def test_grayscale_frame_is_detected_like_its_rgb_copy(detector):
    rng = np.random.default_rng(0)
    gray = rng.integers(0, 255, size=(240, 320), dtype=np.uint8)
    as_gray = [b.xyxy for b in detector.detect(gray)]
    as_rgb = [b.xyxy for b in detector.detect(np.repeat(gray[:, :, None], 3, axis=2))]
    assert len(as_gray) == len(as_rgb)
    for a, b in zip(as_gray, as_rgb, strict=True):
        np.testing.assert_allclose(a, b)


def test_four_k_frame_is_handled(detector):
    assert detector.detect(np.zeros((2160, 3840, 3), dtype=np.uint8)) == []


@pytest.mark.parametrize(
    ("image", "message"),
    [
        (np.zeros((4, 4, 4), dtype=np.uint8), "alpha"),
        (np.zeros((4, 4, 2), dtype=np.uint8), r"\(H, W, 3\)"),
        (np.zeros((2, 4, 4, 3), dtype=np.uint8), r"\(H, W, 3\)"),
        (np.zeros((4, 4, 3), dtype=np.float32), "uint8"),
        (np.zeros((4, 4, 3), dtype=np.uint16), "8 bits"),
    ],
)
def test_wrong_layouts_and_dtypes_name_the_fix(detector, image, message):
    with pytest.raises(ValueError, match=message):
        detector.detect(image)


def test_non_array_input_is_rejected(detector):
    with pytest.raises(TypeError, match="numpy array"):
        detector.detect([[0, 0, 0]])


def test_non_contiguous_views_are_accepted(detector):
    frame = np.zeros((120, 160, 3), dtype=np.uint8)
    assert detector.detect(frame[:, ::-1]) == []
    assert detector.detect(frame[::2, ::2]) == []


def test_detector_still_works_after_a_rejected_frame(detector):
    with pytest.raises(ValueError):
        detector.detect(np.zeros((0, 0, 3), dtype=np.uint8))
    assert detector.detect(np.zeros((48, 64, 3), dtype=np.uint8)) == []


def test_closed_detector_says_so():
    from fasthmr_ros.pipeline.mediapipe_detector import MediaPipeHandDetector

    det = MediaPipeHandDetector(use_pose=False)
    det.close()
    with pytest.raises(RuntimeError, match="closed"):
        det.detect(np.zeros((8, 8, 3), dtype=np.uint8))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_hands": 0}, "max_hands"),
        ({"hand_model_complexity": 2}, "hand_model_complexity"),
        ({"pose_model_complexity": 3}, "pose_model_complexity"),
        ({"min_detection_confidence": 1.5}, "min_detection_confidence"),
        ({"arm_match_overlap": -0.1}, "arm_match_overlap"),
        ({"pose_box_scale": 0.0}, "pose_box_scale"),
        ({"search_tile_fraction": 0.0}, "search_tile_fraction"),
        ({"search_tile_fraction": 1.5}, "search_tile_fraction"),
        ({"search_tile_overlap": 0.95}, "search_tile_overlap"),
        ({"search_min_presence": 2.0}, "search_min_presence"),
        ({"search_min_handedness": -0.5}, "search_min_handedness"),
        ({"search_max_overlap": 1.5}, "search_max_overlap"),
    ],
)
def test_bad_settings_are_rejected(kwargs, message):
    from fasthmr_ros.pipeline.mediapipe_detector import MediaPipeHandDetector

    with pytest.raises(ValueError, match=message):
        MediaPipeHandDetector(**kwargs)


@pytest.mark.parametrize("complexity", [0, 2])
def test_pose_models_missing_from_the_wheel_are_never_downloaded(complexity):
    from fasthmr_ros.pipeline.mediapipe_detector import (
        MediaPipeHandDetector,
        bundled_model_dir,
    )

    name = {0: "pose_landmark_lite.tflite", 2: "pose_landmark_heavy.tflite"}[complexity]
    path = bundled_model_dir() / "modules" / "pose_landmark" / name
    if path.exists():
        pytest.skip(f"{path} was added to this mediapipe install; nothing to refuse")
    with pytest.raises(FileNotFoundError, match="never downloads"):
        MediaPipeHandDetector(pose_model_complexity=complexity)
    assert not path.exists()


def test_bundled_models_are_all_present():
    from fasthmr_ros.pipeline.mediapipe_detector import bundled_model_dir

    modules = bundled_model_dir() / "modules"
    for relative in (
        "palm_detection/palm_detection_full.tflite",
        "palm_detection/palm_detection_lite.tflite",
        "hand_landmark/hand_landmark_full.tflite",
        "hand_landmark/hand_landmark_lite.tflite",
        "pose_detection/pose_detection.tflite",
        "pose_landmark/pose_landmark_full.tflite",
    ):
        assert (modules / relative).is_file(), relative


def test_tile_search_handles_one_pixel_thin_strip_and_four_k_grayscale_frames():
    from fasthmr_ros.pipeline.mediapipe_detector import MediaPipeHandDetector

    with MediaPipeHandDetector(search_tiles=True, use_pose=False) as det:
        assert det.detect(np.full((1, 1, 3), 128, dtype=np.uint8)) == []
        assert det.tile_boxes(np.full((63, 900, 3), 128, dtype=np.uint8)) == []
        assert det.detect(np.full((3, 900, 3), 128, dtype=np.uint8)) == []
        assert det.detect(np.zeros((2160, 3840), dtype=np.uint8)) == []
