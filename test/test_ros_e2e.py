"""End to end over real DDS on loopback, in separate processes.

A camera process publishes Image + CameraInfo at 30 Hz (with malformed messages mid-stream),
the node runs as ``fasthmr node hands --transport dds`` on random-weights test assets, and this
process subscribes to the outputs and decodes them with rosbags.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from ros_test_support import Collector, random_domain_id, sample_rgb, write_loopback_config

pytest.importorskip("cyclonedds", reason="the dds transport needs the cyclonedds package")

from fasthmr_ros.ros import messages, qos  # noqa: E402
from fasthmr_ros.ros.dds import DdsTransport, unpad_cdr  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
NAMESPACE = "/e2e"

CAMERA_SCRIPT = r'''
import json, sys, time
import numpy as np
from fasthmr_ros.pipeline.results import CameraIntrinsics
from fasthmr_ros.ros import messages
from fasthmr_ros.ros.dds import DdsTransport
from fasthmr_ros.ros.image_codec import encode_image
from fasthmr_ros.ros.image_publisher import CameraPublisher

frames = np.load(sys.argv[1])
count, report = int(sys.argv[2]), sys.argv[3]
transport = DdsTransport("camera", sys.argv[4])
camera = CameraPublisher(transport, intrinsics=CameraIntrinsics(300.0, 300.0, 160.0, 120.0))
assert camera.wait_for_subscribers(20), "the node never subscribed"
time.sleep(0.5)
good, bad = [], []
start = time.monotonic()
for i in range(count):
    time.sleep(max(0.0, start + i / 30.0 - time.monotonic()))
    stamp = time.time_ns()
    if 15 <= i < 20:  # malformed messages in the middle of the stream
        header = messages.make_header(stamp, "camera_optical_frame")
        msg = encode_image(frames[i % len(frames)], header)
        if i == 15:
            msg.step = 7
        elif i == 16:
            msg.data = msg.data[:-11]
        elif i == 17:
            msg = messages.new_message("sensor_msgs/msg/Image", header=header, encoding="rgb8")
        elif i == 18:
            msg.encoding = "16UC1"
        if i == 19:
            info = camera.camera_info
            bad_info = messages.new_message("sensor_msgs/msg/CameraInfo", header=header,
                                            width=320, height=240,
                                            k=np.full(9, np.nan))
            info.publish(messages.serialize(bad_info, "sensor_msgs/msg/CameraInfo"))
        else:
            camera.images.publish(messages.serialize(msg, "sensor_msgs/msg/Image"))
        bad.append(stamp)
        continue
    camera.publish(frames[i % len(frames)], stamp)
    good.append(stamp)
time.sleep(0.5)
transport.close()
with open(report, "w") as f:
    json.dump({"good": good, "bad": bad}, f)
'''


def _env(tmp_path: Path, domain: int) -> dict[str, str]:
    env = dict(os.environ)
    env.update({
        "CYCLONEDDS_URI": "file://" + str(write_loopback_config(tmp_path)),
        "ROS_DOMAIN_ID": str(domain),
        "PYTHONPATH": str(ROOT),
        "OMP_NUM_THREADS": "1",
    })
    return env


def _stop(process: subprocess.Popen, timeout: float = 15.0) -> str:
    """Stop a child process (SIGTERM, then SIGKILL) and return its output."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        output, _ = process.communicate()
    return output or ""


def _node_process(env, assets, *extra) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "fasthmr_ros.cli.main", "node", "hands", "--transport", "dds",
         "--namespace", NAMESPACE, "--params", str(ROOT / "config" / "hands.yaml"),
         "--param", f"checkpoint={assets.checkpoint}", "--param", "detector=full_frame",
         "--duration", "120", *extra],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )


@pytest.fixture()
def listener(tmp_path, monkeypatch):
    domain = random_domain_id()
    env = _env(tmp_path, domain)
    monkeypatch.setenv("CYCLONEDDS_URI", env["CYCLONEDDS_URI"])
    transport = DdsTransport("listener", NAMESPACE, domain_id=domain)
    collector = Collector()
    topics = {
        "hands": ("fasthmr_ros/msg/HandMeshArray", qos.DEFAULT),
        "hands/markers": ("visualization_msgs/msg/MarkerArray", qos.DEFAULT),
        "hands/topology": ("fasthmr_ros/msg/MeshTopology", qos.LATCHED),
        "/tf": ("tf2_msgs/msg/TFMessage", qos.TF),
        "/diagnostics": ("diagnostic_msgs/msg/DiagnosticArray", qos.DEFAULT),
    }
    for topic, (msgtype, profile) in topics.items():
        transport.create_subscription(topic, msgtype, profile, collector.callback(topic))
    yield env, collector, {t: m for t, (m, _) in topics.items()}
    transport.close()


def test_node_process_serves_a_30hz_camera_process(listener, test_assets, tmp_path):
    env, collector, types = listener
    frames = np.stack([sample_rgb(320, 240), sample_rgb(320, 240)[:, ::-1]])
    np.save(tmp_path / "frames.npy", frames)
    report = tmp_path / "camera.json"
    node = _node_process(env, test_assets, "--param", "publish_tf=true")
    camera = None
    try:
        assert collector.wait_for(lambda: collector.count("hands/topology") == 1, 90), \
            _stop(node)
        camera = subprocess.Popen(
            [sys.executable, "-c", CAMERA_SCRIPT, str(tmp_path / "frames.npy"), "60",
             str(report), NAMESPACE],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        camera_output, _ = camera.communicate(timeout=60)
        assert camera.returncode == 0, camera_output
        sent = json.loads(report.read_text())
        last_good = max(sent["good"])
        assert collector.wait_for(
            lambda: any(messages.stamp_to_ns(messages.deserialize(r, types["hands"]).header.stamp)
                        == last_good for r in collector.messages["hands"]), 30)
        time.sleep(1.5)  # one more diagnostics period
    finally:
        node_output = _stop(node)
        if camera is not None:
            _stop(camera)
    stats = json.loads(node_output.strip().splitlines()[-1])

    good, bad = set(sent["good"]), set(sent["bad"])
    arrays = [messages.deserialize(raw, types["hands"]) for raw in collector.messages["hands"]]
    stamps = [messages.stamp_to_ns(a.header.stamp) for a in arrays]
    assert len(arrays) >= 5, node_output
    assert set(stamps) <= good and not set(stamps) & bad
    assert stamps == sorted(stamps)
    assert any(s > max(bad) for s in stamps), "the stream did not continue after bad messages"
    for array in arrays:
        assert array.header.frame_id == "camera_optical_frame"
        (hand,) = array.hands
        assert hand.vertices.shape == (778 * 3,) and np.isfinite(hand.vertices).all()
        assert len(hand.joints) == 21 and hand.keypoints_2d.shape == (42,)
        assert np.isfinite([[p.x, p.y, p.z] for p in hand.joints]).all()
        assert np.isfinite(hand.hand_pose).all() and np.isfinite(hand.betas).all()
    # Bytes on the wire are rosbags' CDR of the same content.
    for raw in collector.messages["hands"][:5]:
        msg = messages.deserialize(raw, types["hands"])
        assert unpad_cdr(raw) == messages.serialize(msg, types["hands"])

    markers = [messages.deserialize(r, types["hands/markers"])
               for r in collector.messages["hands/markers"]]
    assert {messages.stamp_to_ns(m.markers[0].header.stamp) for m in markers} <= good
    assert all(len(m.markers) == 3 for m in markers)
    tfs = [messages.deserialize(r, types["/tf"]) for r in collector.messages["/tf"]]
    assert {messages.stamp_to_ns(t.transforms[0].header.stamp) for t in tfs} == set(stamps)
    (topology,) = [messages.deserialize(r, types["hands/topology"])
                   for r in collector.messages["hands/topology"]]
    assert topology.faces.shape == (1538 * 3,) and topology.model == "mano"

    diagnostics = messages.deserialize(collector.messages["/diagnostics"][-1],
                                       types["/diagnostics"])
    values = {kv.key: kv.value for kv in diagnostics.status[0].values}
    assert int(values["frames_processed"]) >= len(arrays)
    assert int(values["messages_rejected"]) >= 1
    assert stats["frames_processed"] >= len(arrays)
    # Every image received was processed, dropped (a newer one came first) or rejected.
    accounted = stats["frames_processed"] + stats["frames_dropped"]
    assert accounted <= stats["frames_received"] <= accounted + stats["messages_rejected"]
    assert "skipped" in node_output


def test_publish_images_command_drives_the_node(listener, test_assets, tmp_path):
    import cv2

    env, collector, types = listener
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(8):
        cv2.imwrite(str(folder / f"{i:03d}.png"), sample_rgb(256, 192)[:, :, ::-1])
    node = _node_process(env, test_assets, "--param", "image_transport=compressed",
                         "--remap", "image:=/cam/color")
    publisher = None
    try:
        assert collector.wait_for(lambda: collector.count("hands/topology") == 1, 90), \
            _stop(node)
        publisher = subprocess.run(
            [sys.executable, "-m", "fasthmr_ros.cli.main", "publish-images", str(folder),
             "--rate", "10", "--compressed", "jpeg", "--topic", "/cam/color",
             "--camera-info-topic", "/cam/camera_info", "--intrinsics", "250,250,128,96",
             "--frame-id", "cam_optical"],
            env=env, capture_output=True, text=True, timeout=60)
        assert publisher.returncode == 0, publisher.stderr
        assert collector.wait_for(lambda: collector.count("hands") >= 4, 30)
    finally:
        _stop(node)
    arrays = [messages.deserialize(raw, types["hands"]) for raw in collector.messages["hands"]]
    assert {a.header.frame_id for a in arrays} == {"cam_optical"}
    assert all(len(a.hands) == 1 for a in arrays)
