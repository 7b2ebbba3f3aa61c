"""The hand mesh node's logic, run for real over the DDS transport (in this process).

A peer DDS participant plays the camera, the external detector and the consumers; the node
runs the real pipeline on random-weights test assets. The test drives the node's processing
loop itself (``spin_once``) so every step is deterministic.
"""

from __future__ import annotations

import logging
import signal
import time

import numpy as np
import pytest
from ros_test_support import (
    Collector,
    connected_publisher,
    random_domain_id,
    sample_rgb,
    write_loopback_config,
)

pytest.importorskip("cyclonedds", reason="the dds transport needs the cyclonedds package")

from fasthmr_ros.pipeline.results import CameraIntrinsics  # noqa: E402
from fasthmr_ros.ros import messages, qos  # noqa: E402
from fasthmr_ros.ros.camera_info import camera_info_message  # noqa: E402
from fasthmr_ros.ros.dds import DdsTransport  # noqa: E402
from fasthmr_ros.ros.hand_node import HandMeshNode, LatestFrameSlot, select_boxes  # noqa: E402
from fasthmr_ros.ros.hand_setup import create_hand_node  # noqa: E402
from fasthmr_ros.ros.image_codec import encode_compressed_image, encode_image  # noqa: E402
from fasthmr_ros.ros.parameters import ParameterError, ParameterSet  # noqa: E402

HANDS = "fasthmr_ros/msg/HandMeshArray"
MARKERS = "visualization_msgs/msg/MarkerArray"
INTRINSICS = CameraIntrinsics(500.0, 510.0, 80.0, 60.0)
OUTPUTS = {
    "hands": (HANDS, qos.DEFAULT),
    "hands/markers": (MARKERS, qos.DEFAULT),
    "hands/topology": ("fasthmr_ros/msg/MeshTopology", qos.LATCHED),
    "hands/debug_image": ("sensor_msgs/msg/Image", qos.SENSOR_DATA),
    "/tf": ("tf2_msgs/msg/TFMessage", qos.TF),
    "/diagnostics": ("diagnostic_msgs/msg/DiagnosticArray", qos.DEFAULT),
}


class Harness:
    """A node and a peer on one loopback domain."""

    def __init__(self, assets, overrides: dict, namespace: str = "/", remaps=()) -> None:
        self.domain = random_domain_id()
        params = ParameterSet()
        params.initialize({"checkpoint": str(assets.checkpoint), "detector": "full_frame",
                           **overrides})
        self.node_transport = DdsTransport("hand_mesh_node", namespace, remaps,
                                           domain_id=self.domain)
        self.node: HandMeshNode = create_hand_node(self.node_transport, params)
        self.node.start()
        self.peer = DdsTransport("peer", namespace, domain_id=self.domain)
        self.out = Collector()
        for topic, (msgtype, profile) in OUTPUTS.items():
            self.peer.create_subscription(topic, msgtype, profile, self.out.callback(topic))
        self.publishers = {}

    def publisher(self, topic: str, msgtype: str):
        if topic not in self.publishers:
            self.publishers[topic] = connected_publisher(self.peer, topic, msgtype, qos.DEFAULT)
        return self.publishers[topic]

    def send(self, topic: str, msgtype: str, msg_or_raw) -> None:
        raw = msg_or_raw if isinstance(msg_or_raw, bytes) else messages.serialize(
            msg_or_raw, msgtype)
        self.publisher(topic, msgtype).publish(raw)

    def send_frame(self, rgb, stamp_ns: int, intrinsics=INTRINSICS, topic: str = "image"):
        header = messages.make_header(stamp_ns, "camera_optical_frame")
        self.send("camera_info", "sensor_msgs/msg/CameraInfo",
                  camera_info_message(header, rgb.shape[1], rgb.shape[0], intrinsics))
        self.send(topic, "sensor_msgs/msg/Image", encode_image(rgb, header))

    def wait_received(self, count: int) -> None:
        deadline = time.monotonic() + 10
        while self.node.stats.snapshot(time.monotonic()).frames_received + \
                self.node.stats.messages_rejected < count:
            assert time.monotonic() < deadline, "the node did not receive the frames"
            time.sleep(0.01)

    def wait_camera_info(self, stamp_ns: int) -> None:
        deadline = time.monotonic() + 10
        while True:
            try:
                if self.node.intrinsics.lookup(stamp_ns)[1]:
                    return
            except LookupError:
                pass
            assert time.monotonic() < deadline, "the node did not receive the CameraInfo"
            time.sleep(0.01)

    def outputs(self, topic: str) -> list:
        msgtype = OUTPUTS[topic][0]
        return [messages.deserialize(raw, msgtype) for raw in self.out.messages[topic]]

    def close(self) -> None:
        self.node.shutdown()
        self.node_transport.close()
        self.peer.close()


@pytest.fixture()
def harness(test_assets, tmp_path, monkeypatch):
    monkeypatch.setenv("CYCLONEDDS_URI", "file://" + str(write_loopback_config(tmp_path)))
    made = []

    def make(overrides=None, **kwargs) -> Harness:
        h = Harness(test_assets, overrides or {}, **kwargs)
        made.append(h)
        return h

    yield make
    for h in made:
        h.close()


@pytest.fixture(scope="module")
def rgb() -> np.ndarray:
    return sample_rgb(160, 120)


def test_outputs_carry_the_image_stamp_and_frame(harness, rgb):
    h = harness({"publish_tf": True, "publish_debug_image": True, "tracking": False})
    stamp = 1_700_000_000_123_456_789
    h.send_frame(rgb, stamp)
    h.wait_received(1)
    # CameraInfo and image travel on two topics: wait until both are in before processing.
    h.wait_camera_info(stamp)
    assert h.node.spin_once(1.0)
    assert h.out.wait_for(lambda: h.out.count("hands") == 1 and h.out.count("/tf") == 1
                          and h.out.count("hands/debug_image") == 1
                          and h.out.count("hands/markers") == 1, 10)
    (array,) = h.outputs("hands")
    assert messages.stamp_to_ns(array.header.stamp) == stamp
    assert array.header.frame_id == "camera_optical_frame"
    (hand,) = array.hands
    assert hand.id == "right_0" and hand.score == 1.0
    vertices = hand.vertices.reshape(-1, 3)
    assert vertices.shape == (778, 3) and np.isfinite(vertices).all()
    joints = np.array([[p.x, p.y, p.z] for p in hand.joints])
    assert np.isfinite(joints).all() and (joints[:, 2] > 0).all()
    # The keypoints are the joints seen through the CameraInfo intrinsics.
    projected = np.stack([INTRINSICS.fx * joints[:, 0] / joints[:, 2] + INTRINSICS.cx,
                          INTRINSICS.fy * joints[:, 1] / joints[:, 2] + INTRINSICS.cy], 1)
    np.testing.assert_allclose(hand.keypoints_2d.reshape(21, 2), projected, atol=1e-2)
    (markers,) = h.outputs("hands/markers")
    assert len(markers.markers) == 3
    assert all(messages.stamp_to_ns(m.header.stamp) == stamp for m in markers.markers)
    (tf,) = h.outputs("/tf")
    assert tf.transforms[0].child_frame_id == "hand_right_0_wrist"
    (debug,) = h.outputs("hands/debug_image")
    assert (debug.width, debug.height) == (160, 120)
    (topology,) = h.outputs("hands/topology")
    assert topology.faces.size == 3 * 1538 and topology.num_vertices == 778
    h.node.publish_diagnostics()
    assert h.out.wait_for(lambda: h.out.count("/diagnostics") >= 1, 10)
    values = {kv.key: kv.value for kv in h.outputs("/diagnostics")[-1].status[0].values}
    assert values["frames_processed"] == "1" and values["engine"] == "torch"


def test_landmark_fit_node_publishes_anny_hands(harness):
    # No checkpoint: MediaPipe on the rendered sample image, fitted with the Anny hand.
    pytest.importorskip("mediapipe", reason="the landmark fit needs the detect extra")
    from fasthmr_ros.pipeline.sample_image import render_sample_hands, sample_camera

    h = harness({"checkpoint": "", "detector": "mediapipe", "tracking": False,
                 "publish_debug_image": True})
    rgb = render_sample_hands()[:, :, ::-1].copy()
    stamp = 1_700_000_000_000_000_000
    h.send_frame(rgb, stamp, intrinsics=sample_camera())
    h.wait_received(1)
    h.wait_camera_info(stamp)
    assert h.node.spin_once(5.0)
    assert h.out.wait_for(lambda: h.out.count("hands") == 1
                          and h.out.count("hands/markers") == 1
                          and h.out.count("hands/debug_image") == 1, 10)
    (topology,) = h.outputs("hands/topology")
    assert topology.model == "anny_hand" and topology.num_vertices == 1609
    assert topology.faces.size == 3 * 3196 and "CC0" in topology.licence
    (array,) = h.outputs("hands")
    assert sorted(hand.id for hand in array.hands) == ["left_0", "right_0"]
    for hand in array.hands:
        assert hand.model == "anny_hand" and hand.vertices.size == 3 * 1609
        assert hand.global_orient.size == hand.hand_pose.size == hand.betas.size == 0
        assert hand.model_params.size == len(topology.parameter_names)
        assert 0 <= hand.fit_residual_px <= 4.0 and 0 <= hand.fit_residual_m < 0.01
        assert 0.4 < hand.wrist_pose.position.z < 0.6  # rendered at 0.5 m


def test_tracked_hands_keep_their_id_across_frames(harness, rgb):
    h = harness({"publish_markers": False, "publish_tf": True})
    stamps = [1_700_000_000_000_000_000 + k * 33_000_000 for k in range(3)]
    for k, stamp in enumerate(stamps):
        h.send_frame(rgb, stamp)
        h.wait_received(k + 1)
        h.wait_camera_info(stamp)
        assert h.node.spin_once(1.0)
        assert h.out.wait_for(lambda n=k + 1: h.out.count("hands") == n, 10)
    ids = [[hand.id for hand in array.hands] for array in h.outputs("hands")]
    assert ids == [["0"], ["0"], ["0"]]
    frames = {t.child_frame_id for m in h.outputs("/tf") for t in m.transforms}
    assert frames == {"hand_0_wrist"}


def test_latest_frame_wins_and_drops_are_counted(harness, rgb):
    h = harness({"publish_markers": False, "image_reliability": "reliable"})
    for i in range(1, 6):
        h.send_frame(rgb, i * 1_000_000)
    h.wait_received(5)
    assert h.node.spin_once(1.0)
    assert not h.node.spin_once(0.05)  # nothing queued behind it
    assert h.out.wait_for(lambda: h.out.count("hands") == 1, 10)
    (array,) = h.outputs("hands")
    assert messages.stamp_to_ns(array.header.stamp) == 5_000_000
    assert h.node.stats.frames_dropped == 4


def test_bad_messages_are_logged_and_skipped(harness, rgb, caplog):
    h = harness({"publish_markers": False})
    caplog.set_level(logging.WARNING)
    good = encode_image(rgb, messages.make_header(1, "cam"))
    bad = []
    wrong_step = encode_image(rgb, messages.make_header(2, "cam"))
    wrong_step.step = 10
    bad.append(wrong_step)
    truncated = encode_image(rgb, messages.make_header(3, "cam"))
    truncated.data = truncated.data[:-100]
    bad.append(truncated)
    bad.append(messages.new_message("sensor_msgs/msg/Image", header=messages.make_header(4, "c"),
                                    encoding="rgb8"))
    depth = encode_image(rgb, messages.make_header(5, "cam"))
    depth.encoding = "32FC1"
    bad.append(depth)
    nan_info = camera_info_message(messages.make_header(6, "cam"), 160, 120, INTRINSICS)
    nan_info.k[0] = float("nan")
    after = encode_image(rgb, messages.make_header(7, "cam"))

    h.send("image", "sensor_msgs/msg/Image", good)
    h.wait_received(1)
    assert h.node.spin_once(1.0)
    for msg in bad:
        h.send("image", "sensor_msgs/msg/Image", msg)
        h.wait_received(1)
        h.node.spin_once(1.0)
    h.send("camera_info", "sensor_msgs/msg/CameraInfo", nan_info)
    # Cyclone DDS validates CDR before delivery, so corrupt bytes cannot arrive over it; other
    # RMWs hand them to a raw subscription: feed the node's callback directly.
    h.node.on_image(b"\x00\x01\x00\x00garbage")
    time.sleep(0.3)
    h.send("image", "sensor_msgs/msg/Image", after)
    h.wait_received(1)
    assert h.node.spin_once(1.0)
    assert h.out.wait_for(lambda: h.out.count("hands") == 2, 10)
    time.sleep(0.2)
    assert [a.header.stamp.nanosec for a in h.outputs("hands")] == [1, 7]
    assert h.node.stats.messages_rejected == 6
    log = caplog.text
    for words in ("step 10 is shorter", "truncated", "zero size", "'32FC1' is not supported",
                  "non-finite", "does not decode"):
        assert words in log, words


class NonFiniteOnce:
    """The real pipeline, whose first hand comes out with NaN vertices (an fp16 overflow)."""

    def __init__(self, pipeline) -> None:
        self.pipeline = pipeline
        self.calls = 0

    def process(self, image_rgb, boxes, intrinsics=None):
        results = self.pipeline.process(image_rgb, boxes, intrinsics)
        self.calls += 1
        if self.calls == 1:
            results[0].vertices = np.full_like(results[0].vertices, np.nan)
        return results


def test_non_finite_hands_are_dropped_and_never_smoothed(harness, rgb, caplog):
    h = harness({"publish_markers": False})  # tracking and smoothing on (the defaults)
    h.node.pipeline = NonFiniteOnce(h.node.pipeline)
    caplog.set_level(logging.WARNING)
    for k, stamp in enumerate((61_000_000, 94_000_000)):
        h.send_frame(rgb, stamp)
        h.wait_received(k + 1)
        assert h.node.spin_once(1.0)  # the frame is processed, only the bad hand is dropped
    assert h.out.wait_for(lambda: h.out.count("hands") == 2, 10)
    first, second = h.outputs("hands")
    assert first.hands == [] and len(second.hands) == 1
    assert np.isfinite(second.hands[0].vertices).all()
    assert "with non-finite vertices or joints" in caplog.text
    assert h.node.stats.messages_rejected == 0


def test_compressed_images_follow_remaps_of_the_base_topic(harness, rgb):
    h = harness({"image_transport": "compressed", "publish_markers": False},
                remaps=["image:=/camera/rgb"])
    header = messages.make_header(11, "cam")
    h.send("/camera/rgb/compressed", "sensor_msgs/msg/CompressedImage",
           encode_compressed_image(rgb, header, "jpeg"))
    h.wait_received(1)
    assert h.node.spin_once(1.0)
    corrupt = encode_compressed_image(rgb, messages.make_header(12, "cam"), "jpeg")
    corrupt.data = corrupt.data[:50].copy()
    h.send("/camera/rgb/compressed", "sensor_msgs/msg/CompressedImage", corrupt)
    h.wait_received(2)
    assert not h.node.spin_once(1.0)
    assert h.out.wait_for(lambda: h.out.count("hands") == 1, 10)
    assert h.outputs("hands")[0].header.stamp.nanosec == 11
    assert h.node.stats.messages_rejected == 1


def _detections(stamp: int, entries):
    det = messages.typestore().types["fasthmr_ros/msg/HandDetection"]
    return messages.new_message(
        "fasthmr_ros/msg/HandDetectionArray", header=messages.make_header(stamp, "cam"),
        detections=[det(side=side, score=score, box=np.array(box, np.float32),
                        keypoints_2d=np.zeros(0, np.float32)) for side, score, box in entries])


def test_external_detections_are_paired_by_stamp(harness, rgb):
    h = harness({"detector": "external", "score_threshold": 0.5, "max_hands": 2,
                 "publish_markers": False})
    entries = [(0, 0.9, [10, 10, 70, 80]), (1, 0.8, [80, 20, 150, 100]),
               (1, 0.7, [60, 40, 120, 110]), (0, 0.2, [0, 0, 30, 30])]
    # Detections before their image, then an image before its detections.
    h.send("hand_detections", "fasthmr_ros/msg/HandDetectionArray", _detections(21, entries))
    time.sleep(0.3)
    h.send_frame(rgb, 21)
    h.wait_received(1)
    assert h.node.spin_once(1.0)
    h.send_frame(rgb, 22)
    h.wait_received(2)
    assert not h.node.spin_once(0.3)  # no detections for stamp 22 yet
    h.send("hand_detections", "fasthmr_ros/msg/HandDetectionArray",
           _detections(22, entries[:1]))
    assert h.node.spin_once(2.0)
    h.send_frame(rgb, 23)  # never gets detections: never processed
    assert h.out.wait_for(lambda: h.out.count("hands") == 2, 10)
    first, second = h.outputs("hands")
    assert first.header.stamp.nanosec == 21
    # Score threshold 0.5 and max_hands 2 keep the two best: left 0.9, right 0.8.
    assert [(x.side, round(x.score, 2)) for x in first.hands] == [(0, 0.9), (1, 0.8)]
    np.testing.assert_allclose(first.hands[0].box, [10, 10, 70, 80])
    assert second.header.stamp.nanosec == 22 and len(second.hands) == 1


def test_runtime_parameter_changes(harness, rgb):
    h = harness({})
    ok, reason = h.node.set_parameters({"score_threshold": 2.0})
    assert not ok and "between 0.0 and 1.0" in reason
    ok, reason = h.node.set_parameters({"device": "cuda"})
    assert not ok and "read-only" in reason
    assert h.node.set_parameters({"marker_mesh": False, "score_threshold": 1.0}) == (True, "")
    h.send_frame(rgb, 31)
    h.wait_received(1)
    assert h.node.spin_once(1.0)
    assert h.out.wait_for(lambda: h.out.count("hands/markers") == 1, 10)
    assert {m.ns for m in h.outputs("hands/markers")[0].markers} == {"hand_skeleton",
                                                                      "hand_joints"}
    assert len(h.outputs("hands")[0].hands) == 1  # full-frame boxes score 1.0
    assert h.node.set_parameters({"publish_markers": False}) == (True, "")
    h.send_frame(rgb, 32)
    h.wait_received(2)
    assert h.node.spin_once(1.0)
    assert h.out.wait_for(lambda: h.out.count("hands") == 2, 10)
    time.sleep(0.2)
    assert h.out.count("hands/markers") == 1


def test_intrinsics_parameter_overrides_camera_info(harness, rgb):
    override = [300.0, 300.0, 70.0, 50.0]
    h = harness({"intrinsics": override, "publish_markers": False})
    h.send_frame(rgb, 41)  # CameraInfo says INTRINSICS; the override wins
    h.wait_received(1)
    h.wait_camera_info(41)
    assert h.node.spin_once(1.0)
    assert h.out.wait_for(lambda: h.out.count("hands") == 1, 10)
    hand = h.outputs("hands")[0].hands[0]
    joints = np.array([[p.x, p.y, p.z] for p in hand.joints])
    fx, fy, cx, cy = override
    projected = np.stack([fx * joints[:, 0] / joints[:, 2] + cx,
                          fy * joints[:, 1] / joints[:, 2] + cy], 1)
    np.testing.assert_allclose(hand.keypoints_2d.reshape(21, 2), projected, atol=1e-2)


def test_no_checkpoint_means_the_landmark_fit(tmp_path, monkeypatch, caplog):
    pytest.importorskip("mediapipe", reason="the landmark fit needs the detect extra")
    monkeypatch.setenv("CYCLONEDDS_URI", "file://" + str(write_loopback_config(tmp_path)))
    with DdsTransport("n", "/", domain_id=random_domain_id()) as transport:
        params = ParameterSet()
        params.initialize({"detector": "full_frame"})
        with pytest.raises(ParameterError, match="gives no hand landmarks"):
            create_hand_node(transport, params)
        with caplog.at_level(logging.INFO):
            node = create_hand_node(transport, ParameterSet())
        assert node.model.name == "anny_hand" and node.model.num_vertices == 1609
        assert sum("fitted with the Anny hand model" in r.message
                   for r in caplog.records) == 1


@pytest.mark.parametrize("missing", ["checkpoint", "mano_dir"])
def test_unloadable_model_is_a_command_error(test_assets, tmp_path, monkeypatch, capsys,
                                             missing):
    from fasthmr_ros.cli.main import main

    monkeypatch.setenv("CYCLONEDDS_URI", "file://" + str(write_loopback_config(tmp_path)))
    monkeypatch.setenv("ROS_DOMAIN_ID", str(random_domain_id()))
    values = {"checkpoint": str(test_assets.checkpoint), missing: str(tmp_path / "nothing")}
    args = [f"--param={name}={value}" for name, value in values.items()]
    handlers = [signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)]
    assert main(["node", "hands", "--duration", "0", *args]) == 2
    error = capsys.readouterr().err
    assert "cannot load the model" in error and "nothing does not exist" in error
    # The node's Ctrl-C handling ends with it.
    assert [signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)] == handlers


def test_latest_frame_slot_and_box_selection():
    drops = []
    slot = LatestFrameSlot(on_drop=lambda: drops.append(1))
    assert slot.take(0.01) is None
    assert not slot.put("a") and slot.put("b")
    assert slot.take(0) == "b" and drops == [1]
    slot.close()
    start = time.monotonic()
    assert slot.take(5.0) is None and time.monotonic() - start < 1.0
    from fasthmr_ros.pipeline.results import HandBox
    from fasthmr_ros.ros.hand_node import Frame, StampPairing

    dropped = []
    pairing = StampPairing(capacity=2, on_drop=lambda: dropped.append(1))
    frames = [Frame(messages.new_message("sensor_msgs/msg/Image",
                                         header=messages.make_header(s, "c")), "", 0.0)
              for s in (1, 2, 3)]
    for frame in frames:
        assert pairing.add_image(frame) is None
    assert dropped == [1]  # stamp 1 given up
    assert pairing.add_detections(1, []) is None
    paired = pairing.add_detections(3, ["box"])
    assert paired is frames[2] and paired.detections == ["box"]

    boxes = [HandBox(0, 0, 1, 1, score=s) for s in (0.2, 0.9, 0.5, 0.7)]
    assert [b.score for b in select_boxes(boxes, 0.4, 2)] == [0.9, 0.7]


def test_default_mediapipe_detector_finds_hands_in_a_photo(harness):
    from ros_test_support import PHOTO

    if not PHOTO.exists():
        pytest.skip(f"the real photograph {PHOTO} is not available on this machine")
    pytest.importorskip("mediapipe", reason="the default detector needs mediapipe")
    photo = sample_rgb(640, 480)
    h = harness({"detector": "mediapipe", "publish_markers": False, "max_hands": 4})
    h.send_frame(photo, 51, intrinsics=None)
    h.wait_received(1)
    assert h.node.spin_once(30.0)
    assert h.out.wait_for(lambda: h.out.count("hands") == 1, 10)
    hands = h.outputs("hands")[0].hands
    assert 1 <= len(hands) <= 4
    for hand in hands:
        x1, y1, x2, y2 = hand.box
        assert 0 <= x1 < x2 <= 640 and 0 <= y1 < y2 <= 480
        assert 0.0 < hand.score <= 1.0 and hand.side in (0, 1)


def test_warning_tables_stay_bounded(harness, caplog):
    from fasthmr_ros.ros.hand_node import MAX_WARNING_KEYS

    node = harness({"publish_markers": False}).node
    now = [0.0]
    node.clock = lambda: now[0]
    for i in range(5 * MAX_WARNING_KEYS):  # a bad-message reason that changes every time
        now[0] += 0.1
        node._reject(f"skipped an image: {i} bytes missing")
    assert len(node._warned_at) <= MAX_WARNING_KEYS + 1
    logged = [r.getMessage() for r in caplog.records if "bytes missing" in r.getMessage()]
    assert len(logged) == 5 * MAX_WARNING_KEYS  # every distinct reason was still logged
    for i in range(2 * MAX_WARNING_KEYS):
        node._warn_once(f"encoding:{i}", f"unsupported encoding {i}")
    assert len(node._warned) == MAX_WARNING_KEYS + 1
    assert any("further new ones are not logged" in r.getMessage() for r in caplog.records)


def test_merge_plan_parameter_runs_the_merged_teacher(harness, rgb, tmp_path):
    plan = tmp_path / "plan.json"
    plan.write_text('{"format": "fasthmr-merge-plan/1", "layers": {"merge": [[0, 1]]}, '
                    '"tokens": {"keep": 96, "per_layer": 96, "layers": 1}}')
    h = harness({"merge_plan": str(plan), "tracking": False})
    assert len(h.node.pipeline.regressor.regressor.backbone.blocks) == 1
    assert h.node.pipeline.uses_foreground  # hand tokens are protected
    stamp = 1_700_000_000_000_000_001
    h.send_frame(rgb, stamp)
    h.wait_received(1)
    h.wait_camera_info(stamp)
    assert h.node.spin_once(1.0)
    assert h.out.wait_for(lambda: h.out.count("hands") == 1, 10)
    (array,) = h.outputs("hands")
    assert np.isfinite(array.hands[0].vertices).all()
