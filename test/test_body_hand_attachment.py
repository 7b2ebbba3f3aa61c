"""Hands attached to landmark-fit bodies: matching hands to wrists, fingers from the hand fit."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation
from shared_data import PHOTO_DIR
from test_body_fit import CAMERA, _synthetic_person

from fasthmr_ros.pipeline.results import HandResult

pytest.importorskip("safetensors")
MIRROR_X = np.diag([-1.0, 1.0, 1.0])


def _camera_rotations(result, model) -> np.ndarray:
    """Camera-frame bone rotations of a body result, from its relative ``model_params``."""
    relative = Rotation.from_rotvec(result.model_params[1:].reshape(-1, 3)).as_matrix()
    out = np.empty_like(relative)
    for k, parent in enumerate(model.parents):
        out[k] = relative[k] if parent < 0 else out[parent] @ relative[k]
    return out


def _anny_hand(side: str, orientation: np.ndarray, local: np.ndarray, wrist_px) -> HandResult:
    """A landmark-fit hand result with these right-hand parameters (mirror for a left hand)."""
    from fasthmr_ros.models.mesh_model import MODEL_ANNY_HAND

    params = np.concatenate([[1.0], np.ones(5), np.ones(4),
                             Rotation.from_matrix(orientation).as_rotvec(),
                             Rotation.from_matrix(local).as_rotvec().ravel()])
    keypoints = np.zeros((21, 2), np.float32)
    keypoints[0] = wrist_px
    return HandResult(side=side, score=0.9, box=np.array([0.0, 0.0, 10.0, 10.0]),
                      keypoints_2d=keypoints, joints=np.zeros((21, 3), np.float32),
                      vertices=np.zeros((0, 3), np.float32), cam_t=np.zeros(3),
                      wrist_rotation=np.eye(3), model=MODEL_ANNY_HAND,
                      model_params=params.astype(np.float32))


def _hand_pose_near_the_wrist(model, body, side, rng):
    """Right-hand parameters whose wrist is the body's wrist turned 20 degrees, fingers curled.

    Returns the orientation, the local bone rotations and the posed hand-rig bone heads in
    the camera frame (left hands mirrored), whose directions the body's fingers must take.
    """
    from fasthmr_ros.models.anny_body import CANONICAL_FROM_ANNY
    from fasthmr_ros.models.anny_hand import shipped_anny_hand

    hand = shipped_anny_hand()
    mirror = np.eye(3) if side == "right" else MIRROR_X
    wrist = model.bone("wrist.R" if side == "right" else "wrist.L")
    turn = Rotation.from_rotvec(np.radians(20.0) * np.array([0.6, 0.0, 0.8])).as_matrix()
    wanted = _camera_rotations(body, model)[wrist] @ turn @ CANONICAL_FROM_ANNY  # G_w, camera
    # The wrist's rest rotation with the root unturned: G_w(O) = O G_w(I) for the right hand.
    local = Rotation.from_rotvec(rng.normal(0.0, 0.35, (len(hand.pose_bones), 3))).as_matrix()
    unturned = hand.bone_rotations(np.eye(3), local)[hand.wrist_bone]
    orientation = (mirror @ wanted @ mirror) @ unturned.T
    deltas = hand.reference_deltas()
    deltas[0, :3, :3] = orientation
    deltas[0] = deltas[0] @ hand.reference_poses[0]
    deltas[list(hand.pose_bones), :3, :3] = local
    heads = hand.posed_bones(deltas)[:, :3, 3] @ mirror
    return orientation, local, heads


def _bone_angles(model, body_joints, hand_heads, suffix: str) -> list[float]:
    """Degrees between each hand-rig bone (head to child head) in the body and in the hand."""
    from fasthmr_ros.models.anny_hand import shipped_anny_hand

    labels = shipped_anny_hand().data.bone_labels
    angles = []
    for k, parent in enumerate(shipped_anny_hand().parents):
        if parent <= 0:  # the root and the wrist have no bone to compare
            continue
        body_dir = (body_joints[model.bone(labels[k][:-2] + "." + suffix)]
                    - body_joints[model.bone(labels[parent][:-2] + "." + suffix)])
        hand_dir = hand_heads[k] - hand_heads[parent]
        cos = body_dir @ hand_dir / np.linalg.norm(body_dir) / np.linalg.norm(hand_dir)
        angles.append(float(np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))))
    return angles


@pytest.mark.parametrize("side", ["right", "left"])
def test_an_attached_hand_turns_the_wrist_and_curls_the_fingers(anny_body, body_fitter, side):
    model, fitter = anny_body, body_fitter
    from fasthmr_ros.pipeline.hand_attachment import ATTACHED_HANDS
    from fasthmr_ros.pipeline.pose_landmarks import LEFT_WRIST, RIGHT_WRIST

    rng = np.random.default_rng(11)
    person, _ = _synthetic_person(model, fitter, rng)
    (body,) = fitter.estimate(None, [person], CAMERA)
    assert body.extras[ATTACHED_HANDS].tolist() == [-1, -1]
    orientation, local, hand_heads = _hand_pose_near_the_wrist(model, body, side, rng)
    wrist_px = person.keypoints_2d[RIGHT_WRIST if side == "right" else LEFT_WRIST] + 4.0
    other = "left" if side == "right" else "right"
    hands = [_anny_hand(other, np.eye(3), local, wrist_px),  # wrong side: not attached
             _anny_hand(side, orientation, local, wrist_px)]
    (attached,) = fitter.estimate(None, [person], CAMERA, hands=hands)
    assert attached.extras[ATTACHED_HANDS].tolist() == ([-1, 1] if side == "right" else [1, -1])

    suffix = "R" if side == "right" else "L"
    attached_angles = _bone_angles(model, attached.joints, hand_heads, suffix)
    assert len(attached_angles) == 19
    assert max(attached_angles) < 0.5, attached_angles
    # Without the hand the same bones point elsewhere (the test can fail).
    assert max(_bone_angles(model, body.joints, hand_heads, suffix)) > 10.0
    # The rest of the body did not move.
    arm = model.bone(f"lowerarm01.{suffix}")
    np.testing.assert_allclose(attached.joints[arm], body.joints[arm], atol=1e-6)


def test_hands_match_the_nearest_wrist_of_their_side(anny_body, body_fitter):
    model, fitter = anny_body, body_fitter
    from fasthmr_ros.pipeline.hand_attachment import match_hands_to_wrists
    from fasthmr_ros.pipeline.pose_landmarks import LEFT_ELBOW, LEFT_WRIST, RIGHT_WRIST

    rng = np.random.default_rng(5)
    person, _ = _synthetic_person(model, fitter, rng)
    left, right = person.keypoints_2d[LEFT_WRIST], person.keypoints_2d[RIGHT_WRIST]
    forearm = float(np.linalg.norm(left - person.keypoints_2d[LEFT_ELBOW]))
    far = left + np.array([0.8 * forearm + 20.0, 0.0])
    hands = [_anny_hand("left", np.eye(3), np.tile(np.eye(3), (19, 1, 1)), p)
             for p in (far, left + 3.0, left + 1.0)]
    hands.append(_anny_hand("right", np.eye(3), np.tile(np.eye(3), (19, 1, 1)), right))
    no_landmarks = type(person)(0.0, 0.0, 5.0, 5.0)
    matches = match_hands_to_wrists([person, no_landmarks], hands)
    assert matches == [{"left": 2, "right": 3}, {}]
    assert match_hands_to_wrists([person], hands[:1]) == [{}]  # too far from the wrist


def test_a_network_hand_is_attached_through_its_joints(anny_body, body_fitter):
    """A MANO hand (HaMeR) has no Anny parameters: the Anny hand is fitted to its joints."""
    model, fitter = anny_body, body_fitter
    from fasthmr_ros.models.anny_hand import shipped_anny_hand
    from fasthmr_ros.pipeline.anny_hand_fit import AnnyHandFitter
    from fasthmr_ros.pipeline.hand_attachment import ATTACHED_HANDS, hand_bone_rotations
    from fasthmr_ros.pipeline.pose_landmarks import RIGHT_WRIST

    rng = np.random.default_rng(2)
    person, _ = _synthetic_person(model, fitter, rng)
    (body,) = fitter.estimate(None, [person], CAMERA)
    hand_model = shipped_anny_hand()
    orientation, local, _ = _hand_pose_near_the_wrist(model, body, "right", rng)
    deltas = hand_model.reference_deltas()
    deltas[0, :3, :3] = orientation
    deltas[0] = deltas[0] @ hand_model.reference_poses[0]
    deltas[list(hand_model.pose_bones), :3, :3] = local
    _, joints = hand_model.forward(deltas)
    # What the landmark hand pipeline would report for these joints ...
    fit = AnnyHandFitter(hand_model).fit(joints)
    anny = _anny_hand("right", fit.orientation, fit.rotations,
                      person.keypoints_2d[RIGHT_WRIST])
    # ... and the same hand from a network: only its (smaller, moved) joints.
    mano = HandResult(**{**anny.__dict__, "model": "mano", "model_params": np.zeros(0),
                         "joints": (joints * 0.95 + [0.1, 0.0, 0.6]).astype(np.float32)})
    expected, fitted = hand_bone_rotations(anny), hand_bone_rotations(mano)
    errors = np.degrees(Rotation.from_matrix(expected.transpose(0, 2, 1) @ fitted).magnitude())
    assert errors.max() < 1.0, errors
    (attached,) = fitter.estimate(None, [person], CAMERA, hands=[mano])
    assert attached.extras[ATTACHED_HANDS].tolist() == [-1, 0]
    broken = HandResult(**{**mano.__dict__, "joints": np.full((21, 3), np.nan, np.float32)})
    (skipped,) = fitter.estimate(None, [person], CAMERA, hands=[broken])
    assert skipped.extras[ATTACHED_HANDS].tolist() == [-1, -1]
    assert any("right hand not attached" in reason for reason in fitter.skipped)


@pytest.mark.skipif(not PHOTO_DIR.is_dir(),
                    reason="the shared photographs are not on this machine")
def test_the_hand_at_a_wrist_curls_the_body_fingers_in_the_shared_photo(anny_body):
    """test1.jpg: the raised right hand is attached; the body's fingers then follow it."""
    model = anny_body
    import cv2

    pytest.importorskip("mediapipe")
    from fasthmr_ros.models.anny_hand import JOINT_BONES
    from fasthmr_ros.pipeline.body_estimator import create_body_estimator
    from fasthmr_ros.pipeline.body_pipeline import BodyPipeline
    from fasthmr_ros.pipeline.camera import default_intrinsics, project_points
    from fasthmr_ros.pipeline.hand_attachment import ATTACHED_HANDS, DetectedHands
    from fasthmr_ros.pipeline.landmark_hand_pipeline import LandmarkHandPipeline
    from fasthmr_ros.pipeline.mediapipe_detector import MediaPipeHandDetector
    from fasthmr_ros.pipeline.person_detector import MediaPipePersonDetector

    bgr = cv2.imread(str(PHOTO_DIR / "test1.jpg"))
    bgr = cv2.resize(bgr, (640, round(640 * bgr.shape[0] / bgr.shape[1])))
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    camera = default_intrinsics(rgb.shape[1], rgb.shape[0])
    estimator = create_body_estimator("landmarks", model=model)
    hands = DetectedHands(MediaPipeHandDetector(max_hands=4, use_pose=False),
                          LandmarkHandPipeline())
    with MediaPipePersonDetector() as detector:
        people = detector.detect(rgb)
    pipeline = BodyPipeline(estimator, hand_source=hands)
    plain = estimator.estimate(rgb, people, camera)
    attached = pipeline.process(rgb, people, camera)
    assert pipeline.timings.hands_ms > 0.0
    compared = 0
    for before, after in zip(plain, attached, strict=True):
        for side, index in zip(("left", "right"), after.extras[ATTACHED_HANDS], strict=True):
            if index < 0:
                continue
            hand = pipeline.last_hands[index]
            suffix = "L" if side == "left" else "R"
            joints = [j for j, name in enumerate(JOINT_BONES) if name]
            bones = [model.bone(JOINT_BONES[j][:-2] + "." + suffix) for j in joints]
            target = hand.keypoints_2d[joints] - hand.keypoints_2d[joints].mean(axis=0)

            def error(body, bones=bones, target=target) -> float:
                pixels = project_points(body.joints[bones], camera)
                return float(np.linalg.norm(pixels - pixels.mean(axis=0) - target,
                                            axis=1).mean())

            # Finger joints against the hand fit's, positions centred (measured 8.5 px
            # attached, 32.7 px with the fingers at rest).
            assert error(after) < 15.0 < error(before)
            compared += 1
    assert compared >= 1


@pytest.mark.skipif(not PHOTO_DIR.is_dir(),
                    reason="the shared photographs are not on this machine")
def test_bodies_command_attaches_hands(tmp_path, capsys):
    import json

    pytest.importorskip("mediapipe")
    from fasthmr_ros.cli.main import main

    out = tmp_path / "out"
    assert main(["bodies", str(PHOTO_DIR / "test1.jpg"), "--hands", "--out", str(out)]) == 0
    record = json.loads((out / "test1.json").read_text())
    attached = [body["hands_attached"] for body in record["bodies"]]
    assert len(attached) == 2 and any(any(sides.values()) for sides in attached)
    assert main(["bodies", str(PHOTO_DIR / "test1.jpg"), "--out", str(out)]) == 0
    record = json.loads((out / "test1.json").read_text())
    assert all(not any(body["hands_attached"].values()) for body in record["bodies"])


def test_bodies_command_refuses_hands_with_the_network(body_assets, tmp_path, capsys):
    pytest.importorskip("mediapipe")
    from fasthmr_ros.cli.main import main

    image = tmp_path / "blank.png"
    import cv2

    cv2.imwrite(str(image), np.zeros((48, 64, 3), np.uint8))
    assert main(["bodies", str(image), "--hands", "--checkpoint", str(body_assets.root),
                 "--out", str(tmp_path / "out")]) != 0
    assert "--hands needs an estimator that attaches hands" in capsys.readouterr().err
