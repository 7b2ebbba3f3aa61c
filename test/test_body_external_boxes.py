"""People from external boxes (a detector of the user's own, ``--boxes``) on rendered bodies.

The boxes come from the rendered people's true joints, as a foreign person detector would draw
them: no landmarks. MediaPipe Pose runs inside each box for the landmark fit; HMR2.0 takes the
boxes as they are.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from fasthmr_ros.pipeline.camera import project_points
from fasthmr_ros.pipeline.results import CameraIntrinsics, PersonBox

pytest.importorskip("safetensors")
pytest.importorskip("mediapipe", reason="the Pose run inside the boxes needs mediapipe")
CAMERA = CameraIntrinsics(600.0, 600.0, 320.0, 240.0)


def boxes_around(truths, camera: CameraIntrinsics, size: tuple[int, int],
                 scores=(0.9, 0.8)) -> list[list[float]]:
    """Boxes a person detector would draw: the projected true joints, padded, in the image."""
    width, height = size
    boxes = []
    for joints in truths:
        uv = project_points(np.asarray(joints, dtype=np.float64), camera)
        (x1, y1), (x2, y2) = uv.min(axis=0), uv.max(axis=0)
        pad_x, pad_y = 0.15 * (x2 - x1), 0.12 * (y2 - y1)
        boxes.append([max(0.0, x1 - pad_x), max(0.0, y1 - 1.5 * pad_y),
                      min(width - 1.0, x2 + pad_x), min(height - 1.0, y2 + pad_y)])
    assert len(boxes) == len(scores)
    return boxes


@pytest.fixture(scope="module")
def model(anny_body):
    return anny_body


@pytest.fixture(scope="module")
def rendered(model):
    import cv2

    from fasthmr_ros.pipeline.sample_image import render_people

    image, truths = render_people(model, CAMERA)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB), truths


def test_pose_inside_external_boxes_gives_landmarks_and_keeps_the_box(rendered):
    from fasthmr_ros.pipeline.person_detector import MediaPipePersonDetector

    rgb, truths = rendered
    boxes = boxes_around(truths, CAMERA, (640, 480))
    people = [PersonBox(*box, score=score, source="external")
              for box, score in zip(boxes, (0.9, 0.8), strict=True)]
    empty = PersonBox(5.0, 5.0, 60.0, 60.0, score=0.7, source="external")  # only the wall
    with MediaPipePersonDetector() as detector:
        refined = detector.landmarks_in_boxes(rgb, [*people, empty])
        again = detector.landmarks_in_boxes(rgb, refined[:1])
    assert len(refined) == 3
    for person, before, joints in zip(refined, people, truths, strict=False):
        assert (person.xyxy == before.xyxy).all() and person.score == before.score
        assert person.source == "external"
        assert person.keypoints_2d.shape == (33, 2) and person.world_landmarks.shape == (33, 3)
        assert person.visibility.shape == (33,) and person.mask.shape == rgb.shape[:2]
        # Landmarks are in frame pixels (not crop pixels): inside this person's box, near
        # the true pelvis projected.
        visible = person.keypoints_2d[person.visibility > 0.5]
        assert len(visible) >= 20
        x1, y1, x2, y2 = before.xyxy
        assert ((visible >= [x1 - 10, y1 - 10]) & (visible <= [x2 + 10, y2 + 10])).all()
        hips = 0.5 * (person.keypoints_2d[23] + person.keypoints_2d[24])
        assert np.linalg.norm(hips - project_points(joints[:1], CAMERA)[0]) < 15.0
    assert refined[2] is empty  # Pose found nobody there: unchanged, the fit skips it
    assert again[0] is refined[0]  # people with landmarks are not run again


def test_pipeline_fits_external_boxes_with_pose_inside_them(rendered, model):
    from fasthmr_ros.pipeline.body_estimator import create_body_estimator
    from fasthmr_ros.pipeline.body_pipeline import BodyPipeline
    from fasthmr_ros.pipeline.person_detector import MediaPipePersonDetector

    rgb, truths = rendered
    boxes = boxes_around(truths, CAMERA, (640, 480))
    people = [PersonBox(*box, score=score, source="external")
              for box, score in zip(boxes, (0.9, 0.8), strict=True)]
    estimator = create_body_estimator("landmarks", model=model)
    # Without a landmarker the landmark fit cannot use a bare box and says so.
    assert BodyPipeline(estimator).run(rgb, CAMERA, people=people) == []
    assert len(estimator.skipped) == 2
    with MediaPipePersonDetector() as pose:
        pipeline = BodyPipeline(estimator, landmarker=pose)
        bodies = pipeline.run(rgb, CAMERA, people=people)
    assert len(bodies) == 2, pipeline.skipped
    for body, box, truth in zip(bodies, boxes, truths, strict=True):
        np.testing.assert_allclose(body.box, box, atol=1e-4)  # the external box is kept
        assert np.linalg.norm(body.cam_t - truth[0]) < 0.25
        # Height within 10 cm (Pose's metric landmarks from a crop are a little less exact
        # than from the whole frame, where the same test allows 6 cm).
        assert abs(float(body.extras["height_m"][0]) - model.rest_height) < 0.10
    assert sorted(round(b.score, 2) for b in bodies) == [0.8, 0.9]  # the external scores


def test_bodies_command_reads_person_boxes(rendered, tmp_path):
    import cv2

    from fasthmr_ros.cli.main import main

    rgb, truths = rendered
    cv2.imwrite(str(tmp_path / "people.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    boxes = boxes_around(truths, CAMERA, (640, 480))
    box_file = tmp_path / "people.json"
    box_file.write_text(json.dumps({"people.png": [{"box": boxes[0], "score": 0.9},
                                                   {"box": boxes[1]}]}))
    out = tmp_path / "out"
    assert main(["bodies", str(tmp_path / "people.png"), "--fx", "600", "--boxes",
                 str(box_file), "--out", str(out)]) == 0
    record = json.loads((out / "people.json").read_text())
    assert record["model"] == "anny_body" and len(record["bodies"]) == 2
    assert sorted(b["score"] for b in record["bodies"]) == pytest.approx([0.9, 1.0])
    for body in record["bodies"]:
        assert 1.5 < body["height_m"] < 1.8 and body["fit_residual_px"] < 12.0
        assert any(np.allclose(body["box"], box, atol=1e-3) for box in boxes)


def test_bodies_command_box_file_errors_name_the_entry(tmp_path, capsys):
    import cv2

    from fasthmr_ros.cli.main import main

    cv2.imwrite(str(tmp_path / "x.png"), np.zeros((40, 40, 3), np.uint8))
    box_file = tmp_path / "people.json"
    box_file.write_text(json.dumps({"x.png": [{"box": [10, 10, 5, 30], "score": 0.5}]}))
    assert main(["bodies", str(tmp_path / "x.png"), "--boxes", str(box_file),
                 "--out", str(tmp_path / "out")]) != 0
    err = capsys.readouterr().err
    assert "people.json: frame 'x.png' entry 0" in err and "x2 > x1" in err
    box_file.write_text(json.dumps({"x.png": [{"box": [0, 0, 5, 30], "score": 3}]}))
    assert main(["bodies", str(tmp_path / "x.png"), "--boxes", str(box_file),
                 "--out", str(tmp_path / "out")]) != 0
    assert "'score' must be a number in [0, 1]" in capsys.readouterr().err


def test_bodies_command_runs_hmr2_on_boxes_without_pose(rendered, body_assets, tmp_path,
                                                        monkeypatch):
    """With --checkpoint the boxes go straight to the network: MediaPipe is never built."""
    import cv2

    from fasthmr_ros.cli.main import main
    from fasthmr_ros.pipeline import person_detector

    def refuse(*args, **kwargs):
        raise AssertionError("MediaPipe Pose must not run for hmr2 on external boxes")

    monkeypatch.setattr(person_detector.MediaPipePersonDetector, "__init__", refuse)
    rgb, truths = rendered
    cv2.imwrite(str(tmp_path / "people.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    boxes = boxes_around(truths, CAMERA, (640, 480))
    box_file = tmp_path / "people.json"
    box_file.write_text(json.dumps({"0": [{"box": b, "score": 0.9} for b in boxes]}))
    out = tmp_path / "out"
    assert main(["bodies", str(tmp_path / "people.png"), "--fx", "600", "--boxes",
                 str(box_file), "--checkpoint", str(body_assets.root), "--out", str(out)]) == 0
    record = json.loads((out / "people.json").read_text())
    assert record["model"] == "smpl" and len(record["bodies"]) == 2
    assert np.load(out / "people.npz")["vertices"].shape == (2, 6890, 3)
