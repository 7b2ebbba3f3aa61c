"""The body mesh node end to end over real DDS on loopback, in separate processes.

A camera process streams rendered people (Anny bodies, CC0) as Image + CameraInfo, with
malformed messages mid-stream; ``fasthmr node bodies --transport dds`` answers with
BodyMeshArray, markers, a latched topology and pelvis TF frames, decoded here with rosbags.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import numpy as np
import pytest
from ros_test_support import Collector, random_domain_id
from test_ros_e2e import CAMERA_SCRIPT, NAMESPACE, ROOT, _env, _stop

pytest.importorskip("cyclonedds", reason="the dds transport needs the cyclonedds package")
pytest.importorskip("mediapipe", reason="the body node's person detector needs mediapipe")

from fasthmr_ros.ros import messages, qos  # noqa: E402
from fasthmr_ros.ros.dds import DdsTransport  # noqa: E402

TOPICS = {
    "bodies": ("fasthmr_ros/msg/BodyMeshArray", qos.DEFAULT),
    "bodies/markers": ("visualization_msgs/msg/MarkerArray", qos.DEFAULT),
    "bodies/topology": ("fasthmr_ros/msg/MeshTopology", qos.LATCHED),
    "/tf": ("tf2_msgs/msg/TFMessage", qos.TF),
    "/diagnostics": ("diagnostic_msgs/msg/DiagnosticArray", qos.DEFAULT),
}


def _subscribe(domain: int, name: str, topics: dict) -> tuple[DdsTransport, Collector]:
    transport = DdsTransport(name, NAMESPACE, domain_id=domain)
    collector = Collector()
    for topic, (msgtype, profile) in topics.items():
        transport.create_subscription(topic, msgtype, profile, collector.callback(topic))
    return transport, collector


def _frames(tmp_path) -> np.ndarray:
    import cv2

    from fasthmr_ros.models.anny_body import AnnyBodyModel
    from fasthmr_ros.pipeline.results import CameraIntrinsics
    from fasthmr_ros.pipeline.sample_image import render_people

    model = AnnyBodyModel.default()
    camera = CameraIntrinsics(300.0, 300.0, 160.0, 120.0)  # the camera script's intrinsics
    image, _ = render_people(model, camera, placements=(((-0.6, 0.1, 3.0), 0.3),
                                                        ((0.7, 0.1, 3.4), -0.3)),
                             size=(320, 240))
    rgb = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    return np.stack([rgb, rgb])


def test_body_node_serves_a_camera_over_dds(tmp_path, monkeypatch):
    domain = random_domain_id()
    env = _env(tmp_path, domain)
    monkeypatch.setenv("CYCLONEDDS_URI", env["CYCLONEDDS_URI"])
    np.save(tmp_path / "frames.npy", _frames(tmp_path))
    report = tmp_path / "camera.json"
    listener, collector = _subscribe(domain, "listener", TOPICS)
    node = subprocess.Popen(
        [sys.executable, "-m", "fasthmr_ros.cli.main", "node", "bodies", "--transport", "dds",
         "--namespace", NAMESPACE, "--params", str(ROOT / "config" / "bodies.yaml"),
         "--param", "publish_tf=true", "--param", "score_threshold=0.0", "--duration", "150"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    camera = None
    try:
        assert collector.wait_for(lambda: collector.count("bodies/topology") == 1, 120), \
            _stop(node)
        camera = subprocess.Popen(
            [sys.executable, "-c", CAMERA_SCRIPT, str(tmp_path / "frames.npy"), "40",
             str(report), NAMESPACE],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        camera_output, _ = camera.communicate(timeout=60)
        assert camera.returncode == 0, camera_output
        sent = json.loads(report.read_text())
        assert collector.wait_for(lambda: collector.count("bodies") >= 3, 30), _stop(node)
        time.sleep(1.5)  # the frame in flight and one more diagnostics period
        # A subscriber that comes late still gets the (transient-local) topology.
        late, late_collector = _subscribe(domain, "late", {
            "bodies/topology": TOPICS["bodies/topology"]})
        try:
            assert late_collector.wait_for(
                lambda: late_collector.count("bodies/topology") == 1, 20)
        finally:
            late.close()
    finally:
        node_output = _stop(node)
        if camera is not None:
            _stop(camera)
        listener.close()

    types = {topic: msgtype for topic, (msgtype, _) in TOPICS.items()}
    (topology,) = [messages.deserialize(r, types["bodies/topology"])
                   for r in collector.messages["bodies/topology"]]
    assert topology.model == "anny_body" and topology.num_vertices == 13718
    assert topology.faces.shape == (27420 * 3,) and len(topology.joint_names) == 104
    assert len(topology.parameter_names) == 1 + 3 * 104 and "CC0" in topology.licence

    good, bad = set(sent["good"]), set(sent["bad"])
    arrays = [messages.deserialize(raw, types["bodies"]) for raw in collector.messages["bodies"]]
    stamps = [messages.stamp_to_ns(a.header.stamp) for a in arrays]
    assert set(stamps) <= good and not set(stamps) & bad and stamps == sorted(stamps), node_output
    found = [a for a in arrays if a.bodies]
    assert found, node_output
    for array in found:
        assert array.header.frame_id == "camera_optical_frame"
        for body in array.bodies:
            assert body.model == "anny_body"
            assert body.vertices.shape == (13718 * 3,) and np.isfinite(body.vertices).all()
            assert len(body.joints) == 104 and body.keypoints_2d.shape == (208,)
            assert body.global_orient.size == 0 and body.betas.size == 0
            assert body.model_params.shape == (313,)
            assert 0.0 <= body.fit_residual_m < 0.2 and 0.0 <= body.fit_residual_px < 20.0
            assert 2.0 < body.root_pose.position.z < 4.5  # rendered 3.0-3.4 m away
    assert max(len(a.bodies) for a in found) == 2
    markers = [messages.deserialize(r, types["bodies/markers"])
               for r in collector.messages["bodies/markers"]]
    assert any({m.ns for m in ma.markers} == {"body_mesh", "body_skeleton", "body_joints"}
               for ma in markers)
    tfs = [messages.deserialize(r, types["/tf"]) for r in collector.messages["/tf"]]
    assert tfs and all(t.transforms[0].child_frame_id.endswith("_pelvis") for t in tfs)
    diagnostics = messages.deserialize(collector.messages["/diagnostics"][-1],
                                       types["/diagnostics"])
    assert "body mesh pipeline" in diagnostics.status[0].name
    stats = json.loads(node_output.strip().splitlines()[-1])
    assert stats["frames_processed"] >= len(arrays)
    assert stats["messages_rejected"] >= 1  # the malformed images were skipped, not fatal


def test_bag_bodies_processes_every_image(tmp_path, capsys):
    pytest.importorskip("rosbags", reason="bags are read and written with rosbags")
    from rosbags.rosbag2 import StoragePlugin, Writer
    from test_ros_bag import read_bag

    from fasthmr_ros.cli.main import main
    from fasthmr_ros.pipeline.results import CameraIntrinsics
    from fasthmr_ros.ros.camera_info import camera_info_message
    from fasthmr_ros.ros.image_codec import encode_image

    rgb = _frames(tmp_path)[0]
    intrinsics = CameraIntrinsics(300.0, 300.0, 160.0, 120.0)
    store = messages.typestore()
    start = 1_700_000_000_000_000_000
    with Writer(tmp_path / "in", version=8, storage_plugin=StoragePlugin.MCAP) as writer:
        image = writer.add_connection("/cam/image_raw", "sensor_msgs/msg/Image", typestore=store)
        info = writer.add_connection("/cam/camera_info", "sensor_msgs/msg/CameraInfo",
                                     typestore=store)
        for i in range(3):
            header = messages.make_header(start + i * 33_000_000, "cam_optical")
            writer.write(image, start + i * 33_000_000 + 1000, messages.serialize(
                encode_image(rgb, header), "sensor_msgs/msg/Image"))
            writer.write(info, start + i * 33_000_000 + 2000, messages.serialize(
                camera_info_message(header, 320, 240, intrinsics), "sensor_msgs/msg/CameraInfo"))
    output = tmp_path / "bodies.mcap"
    assert main(["bag", "bodies", str(tmp_path / "in"), str(output),
                 "--param", "publish_tf=true", "--param", "score_threshold=0.0"]) == 0
    assert "3 of 3 images processed" in capsys.readouterr().out
    out, types, _ = read_bag(output)
    assert types["/bodies"] == "fasthmr_ros/msg/BodyMeshArray"
    assert len(out["/bodies/topology"]) == 1 and len(out["/bodies"]) == 3
    for _, array in out["/bodies"]:
        assert array.header.frame_id == "cam_optical" and len(array.bodies) == 2
        for body in array.bodies:
            joints = np.array([[p.x, p.y, p.z] for p in body.joints])
            projected = np.stack([300.0 * joints[:, 0] / joints[:, 2] + 160.0,
                                  300.0 * joints[:, 1] / joints[:, 2] + 120.0], 1)
            np.testing.assert_allclose(body.keypoints_2d.reshape(-1, 2), projected, atol=0.05)
    assert len(out["/tf"]) == 3 and len(out["/tf"][0][1].transforms) == 2
