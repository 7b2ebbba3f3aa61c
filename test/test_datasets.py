"""Dataset readers on tiny synthetic folders in the official FreiHAND and HO3D layouts."""

from __future__ import annotations

import json
import logging
import os
import pickle
from pathlib import Path

import cv2
import numpy as np
import pytest

from fasthmr_ros.models.constants import MANO_TO_OPENPOSE
from fasthmr_ros.pipeline.datasets import (
    HO3D,
    DatasetFormatError,
    FreiHAND,
    MediaFolder,
    UnsafePickleError,
    load_freihand_ground_truth,
    load_restricted_pickle,
)

FREIHAND_UNIQUE = 3


def _write_json(path: Path, value) -> None:
    path.write_text(json.dumps(np.asarray(value).tolist()))


def _write_jpg(path: Path, shade: int, size: int = 32) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = np.full((size, size, 3), shade, dtype=np.uint8)
    image[:8, :8] = (255, 0, 0)  # RGB red marker; stored as BGR by OpenCV
    assert cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))


def _joints(rng: np.random.Generator, count: int) -> np.ndarray:
    return rng.normal(scale=0.03, size=(count, 21, 3)) + np.array([0.0, 0.0, 0.6])


@pytest.fixture
def freihand_root(tmp_path: Path) -> dict:
    rng = np.random.default_rng(0)
    root = tmp_path / "FreiHAND_pub_v2"
    root.mkdir()
    n = FREIHAND_UNIQUE
    K = np.array([[[480.0 + i, 0, 112], [0, 481.0 + i, 110], [0, 0, 1]] for i in range(n)])
    xyz = _joints(rng, n)
    mano = rng.normal(size=(n, 1, 61))
    verts = rng.normal(scale=0.03, size=(n, 778, 3)) + np.array([0, 0, 0.6])
    for name, value in (("K", K), ("xyz", xyz), ("mano", mano), ("verts", verts)):
        _write_json(root / f"training_{name}.json", value)
    for image_id in range(4 * n):
        _write_jpg(root / "training" / "rgb" / f"{image_id:08d}.jpg", shade=10 * image_id)
    for unique in range(n):
        _write_jpg(root / "training" / "mask" / f"{unique:08d}.jpg", shade=255)
    eval_n = 2
    _write_json(root / "evaluation_K.json", K[:eval_n])
    _write_json(root / "evaluation_xyz.json", xyz[:eval_n])
    _write_json(root / "evaluation_verts.json", verts[:eval_n])
    for image_id in range(eval_n):
        _write_jpg(root / "evaluation" / "rgb" / f"{image_id:08d}.jpg", shade=200)
    return {"root": root, "K": K, "xyz": xyz, "mano": mano, "verts": verts}


def test_freihand_training_indexing_follows_the_four_versions(freihand_root):
    data = FreiHAND(freihand_root["root"], "training")
    n = FREIHAND_UNIQUE
    assert len(data) == 4 * n
    # Image id = unique index + n_unique * version index (gs, hom, sample, auto).
    for index in range(len(data)):
        assert data.image_path(index).name == f"{index:08d}.jpg"
    subset = FreiHAND(freihand_root["root"], "training", versions=("gs", "auto"))
    assert len(subset) == 2 * n
    sample = subset[n + 1]
    assert sample.image_path.name == f"{1 + 3 * n:08d}.jpg"
    assert sample.key == "training/auto/00000001"
    assert sample.mask_path.name == "00000001.jpg" and sample.mask_path.is_file()
    image = sample.load_image()
    assert image.shape == (32, 32, 3) and image.dtype == np.uint8
    assert image[2, 2, 0] > 200 and image[2, 2, 2] < 60  # RGB order, not BGR
    assert abs(int(image[16, 16, 0]) - 10 * (1 + 3 * n)) <= 3


def test_freihand_sample_geometry(freihand_root):
    data = FreiHAND(freihand_root["root"], "training", versions=("hom",))
    sample = data[2]
    K, xyz = freihand_root["K"][2], freihand_root["xyz"][2]
    np.testing.assert_allclose(sample.joints, xyz)
    assert sample.side == "right" and sample.dataset == "freihand"
    uvw = xyz @ K.T
    np.testing.assert_allclose(sample.keypoints_2d, uvw[:, :2] / uvw[:, 2:], rtol=1e-12)
    x1, y1, x2, y2 = sample.box
    assert (x1, y1) == tuple(sample.keypoints_2d.min(0)) and (x2, y2) == tuple(
        sample.keypoints_2d.max(0)
    )
    np.testing.assert_allclose(sample.camera.matrix(), K)
    np.testing.assert_allclose(sample.mano.pose, freihand_root["mano"][2, 0, :48])
    np.testing.assert_allclose(sample.mano.betas, freihand_root["mano"][2, 0, 48:58])
    assert sample.mano.flat_hand_mean is False and sample.mano.frame == "opencv"
    assert sample.vertices is None
    with_verts = FreiHAND(freihand_root["root"], "training", load_vertices=True)
    np.testing.assert_allclose(with_verts[2 + FREIHAND_UNIQUE].vertices, freihand_root["verts"][2])
    with pytest.raises(IndexError, match="out of range"):
        data[FREIHAND_UNIQUE]


def test_freihand_evaluation_split(freihand_root):
    data = FreiHAND(freihand_root["root"], "evaluation", load_vertices=True)
    assert len(data) == 2
    sample = data[1]
    assert sample.image_path == freihand_root["root"] / "evaluation" / "rgb" / "00000001.jpg"
    assert sample.mask_path is None and sample.mano is None
    np.testing.assert_allclose(sample.vertices, freihand_root["verts"][1])
    with pytest.raises(ValueError, match="only has the 'gs' version"):
        FreiHAND(freihand_root["root"], "evaluation", versions=("hom",))
    joints, verts = load_freihand_ground_truth(freihand_root["root"])
    assert joints.shape == (2, 21, 3) and verts.shape == (2, 778, 3)


def test_freihand_errors_name_the_problem(freihand_root, tmp_path):
    root = freihand_root["root"]
    with pytest.raises(FileNotFoundError, match="training_K.json"):
        FreiHAND(tmp_path, "training")
    with pytest.raises(ValueError, match="split must be one of"):
        FreiHAND(root, "test")
    with pytest.raises(ValueError, match="subset of"):
        FreiHAND(root, "training", versions=("colour",))
    _write_json(root / "training_xyz.json", freihand_root["xyz"][:2])
    with pytest.raises(DatasetFormatError, match="has 2 entries but training_K.json has 3"):
        FreiHAND(root, "training")
    _write_json(root / "training_xyz.json", np.zeros((3, 20, 3)))
    with pytest.raises(DatasetFormatError, match=r"shape \(21, 3\)"):
        FreiHAND(root, "training")
    (root / "training_xyz.json").write_text("[[1, 2")
    with pytest.raises(DatasetFormatError, match="not valid JSON"):
        FreiHAND(root, "training")
    (root / "evaluation_verts.json").unlink()
    with pytest.raises(FileNotFoundError, match="evaluation_verts.json"):
        load_freihand_ground_truth(root)


def _ho3d_meta(rng: np.random.Generator, joints_gl: np.ndarray | None) -> dict:
    return {
        "camMat": np.array([[614.6, 0.0, 312.4], [0.0, 614.0, 238.3], [0.0, 0.0, 1.0]]),
        "handJoints3D": joints_gl,
        "handPose": rng.normal(scale=0.2, size=48),
        "handBeta": rng.normal(size=10),
        "handTrans": np.array([0.01, -0.02, -0.5]),
        "objName": "003_cracker_box",
        "objRot": rng.normal(size=(3, 1)),
        "objTrans": np.array([0.0, 0.0, -0.6]),
    }


def _write_pickle(path: Path, value, protocol: int = 2) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(value, protocol=protocol))


@pytest.fixture
def ho3d_root(tmp_path: Path) -> dict:
    rng = np.random.default_rng(1)
    root = tmp_path / "HO3D_v3"
    frames = ["ABF10/0000", "ABF10/0001", "MC1/0007"]
    root.mkdir()
    (root / "train.txt").write_text("\n".join(frames) + "\n")
    joints_gl = {}
    for i, frame in enumerate(frames):
        seq, fid = frame.split("/")
        _write_jpg(root / "train" / seq / "rgb" / f"{fid}.jpg", shade=50)
        joints = rng.normal(scale=0.03, size=(21, 3)) + np.array([0.0, 0.0, -0.5])  # OpenGL
        joints_gl[frame] = joints
        meta = _ho3d_meta(rng, None if i == 2 else joints)
        protocol = (2, 5, 4)[i]  # HO3D ships protocol 2; re-saved copies may use newer ones
        _write_pickle(root / "train" / seq / "meta" / f"{fid}.pkl", meta, protocol=protocol)
    (root / "evaluation.txt").write_text("SM1/0003\n")
    _write_jpg(root / "evaluation" / "SM1" / "rgb" / "0003.jpg", shade=80)
    eval_meta = _ho3d_meta(rng, np.array([0.02, 0.03, -0.45]))
    eval_meta["handBoundingBox"] = np.array([100.0, 120.0, 220.0, 260.0])
    _write_pickle(root / "evaluation" / "SM1" / "meta" / "0003.pkl", eval_meta)
    return {"root": root, "joints_gl": joints_gl}


def test_ho3d_train_sample_converts_to_optical_frame_and_openpose_order(ho3d_root):
    data = HO3D(ho3d_root["root"], "train")
    assert len(data) == 3 and data.version == "v3"
    sample = data[1]
    assert sample.key == "train/ABF10/0001" and sample.dataset == "ho3d_v3"
    gl = ho3d_root["joints_gl"]["ABF10/0001"]
    expected = gl[list(MANO_TO_OPENPOSE)] * np.array([1.0, -1.0, -1.0])
    np.testing.assert_allclose(sample.joints, expected)
    assert np.all(sample.joints[:, 2] > 0)
    # HO3D's own projection: flip y and z, multiply by camMat, divide by depth.
    K = sample.camera.matrix()
    cam = (gl * np.array([1.0, -1.0, -1.0])) @ K.T
    ho3d_uv = cam[:, :2] / cam[:, 2:]
    np.testing.assert_allclose(sample.keypoints_2d, ho3d_uv[list(MANO_TO_OPENPOSE)])
    np.testing.assert_allclose(sample.box[:2], ho3d_uv.min(0))
    assert sample.mano.frame == "opengl" and sample.mano.flat_hand_mean is True
    assert sample.mano.pose.shape == (48,) and sample.mano.translation.shape == (3,)
    assert sample.load_image().shape == (32, 32, 3)


def test_ho3d_unannotated_and_evaluation_frames(ho3d_root):
    missing = HO3D(ho3d_root["root"], "train")[2]
    assert missing.joints is None and missing.box is None and not missing.has_joints
    evaluation = HO3D(ho3d_root["root"], "evaluation")[0]
    assert evaluation.joints is None
    np.testing.assert_allclose(evaluation.root_joint, [0.02, -0.03, 0.45])
    np.testing.assert_allclose(evaluation.box, [100.0, 120.0, 220.0, 260.0])


def test_ho3d_joints_without_a_camera_name_the_camera(ho3d_root):
    root = ho3d_root["root"]
    meta = _ho3d_meta(np.random.default_rng(2), ho3d_root["joints_gl"]["ABF10/0000"])
    meta["camMat"] = np.zeros((3, 3))
    _write_pickle(root / "train" / "ABF10" / "meta" / "0000.pkl", meta)
    with pytest.raises(DatasetFormatError, match="camMat"):
        HO3D(root, "train")[0]


def test_ho3d_v2_png_and_layout_errors(ho3d_root, tmp_path):
    root = ho3d_root["root"]
    for jpg in (root / "train").rglob("*.jpg"):
        jpg.rename(jpg.with_suffix(".png"))
    data = HO3D(root, "train")
    assert data.version == "v2" and data[0].image_path.suffix == ".png"
    with pytest.raises(FileNotFoundError, match="train.txt"):
        HO3D(tmp_path, "train")
    (root / "train.txt").write_text("ABF10-0000\n")
    with pytest.raises(DatasetFormatError, match="<sequence>/<frame id>"):
        HO3D(root, "train")


def test_restricted_pickle_loads_arrays_but_runs_no_code(tmp_path):
    value = {"a": np.arange(6.0).reshape(2, 3), "s": np.float32(1.5), "n": None, "t": "x"}
    for protocol in (2, 5):
        path = tmp_path / f"ok{protocol}.pkl"
        path.write_bytes(pickle.dumps(value, protocol=protocol))
        loaded = load_restricted_pickle(path)
        np.testing.assert_array_equal(loaded["a"], value["a"])
        assert loaded["s"] == np.float32(1.5) and loaded["n"] is None and loaded["t"] == "x"

    victim = tmp_path / "victim.txt"
    victim.write_text("still here")

    class Exploit:
        def __reduce__(self):
            return (os.remove, (str(victim),))

    evil = tmp_path / "evil.pkl"
    evil.write_bytes(pickle.dumps({"handJoints3D": Exploit()}, protocol=2))
    with pytest.raises(UnsafePickleError, match="remove"):
        load_restricted_pickle(evil)
    assert victim.read_text() == "still here"
    with pytest.raises(FileNotFoundError):
        load_restricted_pickle(tmp_path / "absent.pkl")


def _write_video(path: Path, frames: int) -> None:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (48, 32))
    assert writer.isOpened(), "OpenCV cannot write MJPG AVI here"
    for i in range(frames):
        writer.write(np.full((32, 48, 3), 20 * i, dtype=np.uint8))
    writer.release()


def test_media_folder_reads_images_and_videos(tmp_path, caplog):
    folder = tmp_path / "footage"
    _write_jpg(folder / "a.jpg", shade=30)
    _write_jpg(folder / "sub" / "b.png", shade=60)
    (folder / "broken.jpg").write_bytes(b"not an image")
    (folder / "notes.txt").write_text("ignored")
    _write_video(folder / "clip.avi", frames=7)

    media = MediaFolder(folder, frame_step=3)
    assert [p.name for p in media.files] == ["a.jpg", "broken.jpg", "clip.avi", "b.png"]
    with caplog.at_level(logging.WARNING):
        frames = list(media)
    assert "broken.jpg" in caplog.text
    assert [(f.source.name, f.frame_index) for f in frames] == [
        ("a.jpg", 0),
        ("clip.avi", 0),
        ("clip.avi", 3),
        ("clip.avi", 6),
        ("b.png", 0),
    ]
    video_frame = frames[2]
    assert video_frame.image.shape == (32, 48, 3)
    assert abs(int(video_frame.image.mean()) - 60) <= 6  # the 4th written frame, shade 60
    limited = list(MediaFolder(folder / "clip.avi", max_frames_per_video=2))
    assert [f.frame_index for f in limited] == [0, 1]


def test_media_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        MediaFolder(tmp_path / "absent")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no images or videos"):
        MediaFolder(tmp_path / "empty")
    with pytest.raises(ValueError, match="frame_step"):
        MediaFolder(tmp_path, frame_step=0)
