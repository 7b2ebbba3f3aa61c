"""HandResult -> HandMeshArray, MeshTopology, MarkerArray, TF; detections; diagnostics."""

from __future__ import annotations

import numpy as np
import pytest
from ros_test_support import make_hand_result
from scipy.spatial.transform import Rotation

from fasthmr_ros.models.constants import HAND_SKELETON, JOINT_NAMES, NUM_FACES, NUM_VERTICES
from fasthmr_ros.models.mano_info import mano_info
from fasthmr_ros.models.mesh_model import (
    BODY,
    HAND,
    MODEL_ANNY_BODY,
    MODEL_ANNY_HAND,
    MeshModelInfo,
)
from fasthmr_ros.pipeline.results import FIT_RESIDUAL_M, FIT_RESIDUAL_PX, BodyResult
from fasthmr_ros.ros import messages
from fasthmr_ros.ros.diagnostics import NodeStatistics, diagnostic_array
from fasthmr_ros.ros.hand_messages import (
    HAND_MESH_ARRAY,
    boxes_from_detections,
    hand_ids,
    hand_mesh_array_message,
    hand_mesh_message,
    side_name,
)
from fasthmr_ros.ros.markers import (
    JOINTS_NS,
    MESH_NS,
    SIDE_COLOURS,
    SKELETON_NS,
    HandMarkerBuilder,
)
from fasthmr_ros.ros.mesh_messages import (
    BODY_MESH_ARRAY,
    PERSON_DETECTION_ARRAY,
    body_mesh_array_message,
    body_mesh_message,
    boxes_from_person_detections,
    topology_message,
)
from fasthmr_ros.ros.tf_frames import wrist_frame_id, wrist_transforms

HEADER = messages.make_header(1_700_000_000_000_000_123, "camera_optical_frame")


@pytest.fixture(scope="module")
def faces() -> np.ndarray:
    return np.random.default_rng(0).integers(0, NUM_VERTICES, (NUM_FACES, 3))


def test_hand_mesh_carries_every_value():
    result = make_hand_result("left", seed=3)
    msg = hand_mesh_message(result, "left_0")
    cls = messages.typestore().types["fasthmr_ros/msg/HandMesh"]
    assert msg.id == "left_0" and msg.side == cls.SIDE_LEFT
    assert msg.score == pytest.approx(result.score)
    np.testing.assert_allclose(msg.box, result.box, rtol=1e-6)
    np.testing.assert_allclose(msg.keypoints_2d.reshape(21, 2), result.keypoints_2d)
    joints = np.array([[p.x, p.y, p.z] for p in msg.joints])
    np.testing.assert_allclose(joints, result.joints, rtol=1e-6)
    np.testing.assert_array_equal(msg.vertices.reshape(-1, 3), result.vertices)
    np.testing.assert_allclose(msg.betas, result.betas, rtol=1e-6)
    cam = msg.camera_translation
    np.testing.assert_allclose([cam.x, cam.y, cam.z], result.cam_t)
    # Rotations: axis-angle back to the matrices given.
    np.testing.assert_allclose(Rotation.from_rotvec(msg.global_orient).as_matrix(),
                               result.global_orient, atol=1e-5)
    np.testing.assert_allclose(Rotation.from_rotvec(msg.hand_pose.reshape(15, 3)).as_matrix(),
                               result.hand_pose, atol=1e-5)
    q = msg.wrist_pose.orientation
    np.testing.assert_allclose(Rotation.from_quat([q.x, q.y, q.z, q.w]).as_matrix(),
                               result.wrist_rotation, atol=1e-6)
    p = msg.wrist_pose.position
    np.testing.assert_allclose([p.x, p.y, p.z], result.joints[0], rtol=1e-6)
    assert msg.model == "mano" and msg.model_params.size == 0
    assert msg.fit_residual_m == -1 and msg.fit_residual_px == -1  # not a landmark fit


def _anny_like_hand(num_vertices: int = 1609):
    """A non-MANO hand result: its own vertex count, no MANO parameters, fit residuals."""
    result = make_hand_result("right", seed=5)
    rng = np.random.default_rng(5)
    result.vertices = rng.normal(0.0, 0.03, (num_vertices, 3)) + result.cam_t
    result.global_orient = result.hand_pose = result.betas = None
    result.model = MODEL_ANNY_HAND
    result.model_params = np.arange(7, dtype=np.float32)
    result.extras = {FIT_RESIDUAL_M: 0.004, FIT_RESIDUAL_PX: 2.5}
    return result


def test_non_mano_hand_has_empty_mano_fields_and_its_own_parameters():
    result = _anny_like_hand()
    msg = hand_mesh_message(result, "right_0", num_vertices=1609)
    assert msg.model == "anny_hand"
    assert msg.global_orient.size == msg.hand_pose.size == msg.betas.size == 0
    np.testing.assert_array_equal(msg.model_params, np.arange(7))
    assert msg.vertices.size == 3 * 1609
    assert msg.fit_residual_m == pytest.approx(0.004)
    assert msg.fit_residual_px == pytest.approx(2.5)
    raw = messages.serialize(hand_mesh_array_message(HEADER, [result]), HAND_MESH_ARRAY)
    back = messages.deserialize(raw, HAND_MESH_ARRAY).hands[0]
    assert back.model == "anny_hand" and back.vertices.size == 3 * 1609
    with pytest.raises(ValueError, match=r"shape \(778, 3\)"):
        hand_mesh_message(result, "x", num_vertices=778)


def test_array_keeps_the_image_header_and_round_trips():
    results = [make_hand_result("right", 1), make_hand_result("left", 2)]
    msg = hand_mesh_array_message(HEADER, results)
    raw = messages.serialize(msg, HAND_MESH_ARRAY)
    back = messages.deserialize(raw, HAND_MESH_ARRAY)
    assert back.header.stamp.sec == 1_700_000_000 and back.header.stamp.nanosec == 123
    assert back.header.frame_id == "camera_optical_frame"
    assert [h.id for h in back.hands] == ["right_0", "left_0"]
    assert [side_name(h.side) for h in back.hands] == ["right", "left"]
    np.testing.assert_array_equal(back.hands[1].vertices, msg.hands[1].vertices)


def test_empty_frame_is_an_empty_array():
    msg = hand_mesh_array_message(HEADER, [])
    assert msg.hands == [] and msg.header.frame_id == "camera_optical_frame"


def test_ids_use_track_ids_or_side_counters():
    results = [make_hand_result("right", 0), make_hand_result("right", 1),
               make_hand_result("left", 2), make_hand_result("left", 3, track_id=7)]
    assert hand_ids(results) == ["right_0", "right_1", "left_0", "7"]


@pytest.mark.parametrize("field,value,message", [
    ("vertices", np.zeros((10, 2)), "vertices must have shape"),
    ("joints", np.full((21, 3), np.nan), "joints has non-finite"),
    ("keypoints_2d", np.zeros((21, 3)), "keypoints_2d must have shape"),
    ("hand_pose", np.zeros((16, 3, 3)), "hand_pose must have shape"),
])
def test_wrong_results_are_reported(field, value, message):
    result = make_hand_result()
    setattr(result, field, value)
    with pytest.raises(ValueError, match=message):
        hand_mesh_message(result, "x")


def test_topology(faces):
    msg = topology_message(mano_info(faces), HEADER)
    cls = messages.typestore().types["fasthmr_ros/msg/MeshTopology"]
    assert msg.model == cls.MODEL_MANO == "mano"
    assert msg.num_vertices == NUM_VERTICES
    np.testing.assert_array_equal(msg.faces.reshape(-1, 3), faces)
    assert list(msg.joint_names) == list(JOINT_NAMES)
    assert [tuple(b) for b in msg.bones.reshape(-1, 2)] == list(HAND_SKELETON)
    assert list(msg.parameter_names) == [] and "MANO" in msg.licence
    with pytest.raises(ValueError, match="outside"):
        mano_info(np.array([[0, 1, NUM_VERTICES]]))


def test_topology_of_other_models_and_unknown_names():
    cls = messages.typestore().types["fasthmr_ros/msg/MeshTopology"]
    assert (cls.MODEL_ANNY_HAND, cls.MODEL_ANNY_BODY) == (MODEL_ANNY_HAND, MODEL_ANNY_BODY)
    info = MeshModelInfo(name=MODEL_ANNY_HAND, kind=HAND, num_vertices=5,
                         faces=np.array([[0, 1, 2], [2, 3, 4]]), joint_names=("a", "b"),
                         bones=((0, 1),), parameter_names=("scale", "root_x"),
                         licence="CC0-1.0")
    msg = topology_message(info, HEADER)
    assert msg.model == "anny_hand" and msg.num_vertices == 5
    assert list(msg.parameter_names) == ["scale", "root_x"] and msg.licence == "CC0-1.0"
    unknown = MeshModelInfo(name="other", kind=BODY, num_vertices=3,
                            faces=np.array([[0, 1, 2]]), joint_names=("a",), bones=())
    with pytest.raises(ValueError, match="not a MeshTopology model name"):
        topology_message(unknown, HEADER)


def _body(model: str, num_joints: int = 4, num_vertices: int = 50) -> BodyResult:
    rng = np.random.default_rng(1)
    joints = rng.normal(0, 0.2, (num_joints, 3)) + [0, 0, 3]
    rotations = Rotation.random(24, random_state=1).as_matrix()
    smpl = model == "smpl"
    return BodyResult(
        model=model, score=0.8, box=np.array([1.0, 2.0, 30.0, 40.0]),
        keypoints_2d=rng.uniform(0, 100, (num_joints, 2)), joints=joints,
        vertices=rng.normal(0, 0.2, (num_vertices, 3)) + [0, 0, 3], cam_t=np.array([0, 0, 3.0]),
        root_rotation=rotations[0],
        global_orient=rotations[0] if smpl else None,
        body_pose=rotations[1:] if smpl else None,
        betas=np.linspace(-1, 1, 10) if smpl else None,
        model_params=np.zeros(0 if smpl else 9, np.float32),
        extras={} if smpl else {FIT_RESIDUAL_M: 0.02, FIT_RESIDUAL_PX: 3.0},
    )


def test_body_messages_for_smpl_and_anny():
    smpl = body_mesh_message(_body("smpl"), "body_0", num_vertices=50)
    assert smpl.model == "smpl" and smpl.body_pose.size == 69 and smpl.betas.size == 10
    np.testing.assert_allclose(Rotation.from_rotvec(smpl.body_pose.reshape(23, 3)).as_matrix(),
                               _body("smpl").body_pose, atol=1e-5)
    assert smpl.fit_residual_m == -1 and smpl.model_params.size == 0
    anny = body_mesh_message(_body("anny_body", num_joints=6), "body_1")
    assert anny.global_orient.size == anny.body_pose.size == anny.betas.size == 0
    assert anny.model_params.size == 9 and len(anny.joints) == 6
    assert anny.fit_residual_px == pytest.approx(3.0)
    raw = messages.serialize(body_mesh_array_message(HEADER, [_body("anny_body")]),
                             BODY_MESH_ARRAY)
    back = messages.deserialize(raw, BODY_MESH_ARRAY)
    assert back.bodies[0].id == "body_0" and back.bodies[0].vertices.size == 150
    with pytest.raises(ValueError, match="topology's vertex count"):
        body_mesh_message(_body("smpl"), "x", num_vertices=6890)


def _detections(entries):
    store = messages.typestore()
    det = store.types["fasthmr_ros/msg/HandDetection"]
    return messages.new_message(
        "fasthmr_ros/msg/HandDetectionArray", header=HEADER,
        detections=[det(side=s, score=sc, box=np.array(b, np.float32),
                        keypoints_2d=np.array(k, np.float32)) for s, sc, b, k in entries],
    )


def test_detections_to_boxes():
    keypoints = np.arange(42, dtype=np.float32)
    msg = _detections([
        (1, 0.9, [10, 20, 110, 140], keypoints),
        (0, 0.5, [200, 20, 260, 90], []),
        (3, 0.5, [0, 0, 10, 10], []),        # bad side
        (1, 0.5, [50, 50, 40, 60], []),      # x2 < x1
        (0, 0.5, [0, 0, 10, 10], [1, 2, 3]),  # keypoints of the wrong length
    ])
    boxes, problems = boxes_from_detections(msg)
    assert [b.side for b in boxes] == ["right", "left"]
    assert boxes[0].xyxy.tolist() == [10, 20, 110, 140] and boxes[0].score == pytest.approx(0.9)
    np.testing.assert_array_equal(boxes[0].keypoints_2d, keypoints.reshape(21, 2))
    assert boxes[1].keypoints_2d is None
    assert len(problems) == 3
    assert "detection 2" in problems[0] and "SIDE_LEFT" in problems[0]
    assert "x2 > x1" in problems[1]
    assert "keypoints_2d" in problems[2]


def test_person_detections_to_boxes_through_cdr():
    store = messages.typestore()
    det = store.types["fasthmr_ros/msg/PersonDetection"]
    keypoints = np.arange(66, dtype=np.float32)
    entries = [
        (0.9, [10, 20, 110, 240], keypoints),
        (0.4, [200, 20, 260, 190], []),
        (0.5, [50, 50, 40, 60], []),               # x2 < x1
        (0.5, [0, float("nan"), 10, 10], []),      # non-finite box
        (1.5, [0, 0, 10, 10], []),                 # score outside [0, 1]
        (float("nan"), [0, 0, 10, 10], []),        # score not a number
        (0.5, [0, 0, 10, 10], np.zeros(42)),       # 21 points: a hand's count, not Pose's 33
        (0.5, [0, 0, 10, 10], np.full(66, np.inf)),  # non-finite keypoints
    ]
    msg = messages.new_message(
        PERSON_DETECTION_ARRAY, header=HEADER,
        detections=[det(score=sc, box=np.array(b, np.float32),
                        keypoints_2d=np.array(k, np.float32)) for sc, b, k in entries])
    back = messages.deserialize(messages.serialize(msg, PERSON_DETECTION_ARRAY),
                                PERSON_DETECTION_ARRAY)
    assert back.header.stamp == HEADER.stamp
    boxes, problems = boxes_from_person_detections(back, store)
    assert [b.xyxy.tolist() for b in boxes] == [[10, 20, 110, 240], [200, 20, 260, 190]]
    assert [round(b.score, 3) for b in boxes] == [0.9, 0.4]
    assert {b.source for b in boxes} == {"external"}
    np.testing.assert_array_equal(boxes[0].keypoints_2d, keypoints.reshape(33, 2))
    assert boxes[1].keypoints_2d is None
    assert all(b.world_landmarks is None for b in boxes)  # the landmark fit needs Pose's
    assert len(problems) == 6
    assert problems[0].startswith("person detection 2") and "x2 > x1" in problems[0]
    assert "non-finite" in problems[1]
    assert "score must be in [0, 1]" in problems[2] and "nan" in problems[3]
    assert "66 values, got 42" in problems[4]
    assert "keypoints_2d" in problems[5] and "non-finite" in problems[5]


def test_hand_detection_scores_outside_the_unit_range_are_skipped():
    msg = _detections([(1, 1.2, [0, 0, 10, 10], []), (1, 0.3, [0, 0, 10, 10], [])])
    boxes, problems = boxes_from_detections(msg)
    assert len(boxes) == 1 and "score must be in [0, 1], got 1.2" in problems[0]


def test_markers(faces):
    builder = HandMarkerBuilder(faces, lifetime_s=0.25)
    right, left = make_hand_result("right", 1), make_hand_result("left", 2)
    packed = builder.build(HEADER, [right, left], ["right_0", "left_0"])
    array = packed.full_message()
    cls = messages.typestore().types["visualization_msgs/msg/Marker"]
    kinds = {(m.ns, m.id): m for m in array.markers}
    assert set(kinds) == {(ns, i) for ns in (MESH_NS, SKELETON_NS, JOINTS_NS) for i in (0, 1)}
    mesh = kinds[(MESH_NS, 0)]
    assert mesh.type == cls.TRIANGLE_LIST and mesh.action == cls.ADD
    assert (mesh.scale.x, mesh.scale.y, mesh.scale.z) == (1.0, 1.0, 1.0)
    assert mesh.pose.orientation.w == 1.0 and mesh.header.frame_id == "camera_optical_frame"
    assert (mesh.lifetime.sec, mesh.lifetime.nanosec) == (0, 250_000_000)
    points = np.array([[p.x, p.y, p.z] for p in mesh.points])
    np.testing.assert_allclose(points, right.vertices[faces.reshape(-1)], rtol=1e-6)
    left_points = np.array([[p.x, p.y, p.z] for p in kinds[(MESH_NS, 1)].points])
    np.testing.assert_allclose(left_points, left.vertices[faces[:, [0, 2, 1]].reshape(-1)],
                               rtol=1e-6)
    skeleton = kinds[(SKELETON_NS, 0)]
    assert skeleton.type == cls.LINE_LIST and len(skeleton.points) == 2 * len(HAND_SKELETON)
    joints = kinds[(JOINTS_NS, 1)]
    assert joints.type == cls.SPHERE_LIST and len(joints.points) == 21
    c = joints.color
    assert (c.r, c.g, c.b, c.a) == pytest.approx(SIDE_COLOURS["left"])
    raw = packed.serialize()
    assert raw == messages.serialize(array, "visualization_msgs/msg/MarkerArray")
    assert len(messages.deserialize(raw, "visualization_msgs/msg/MarkerArray").markers) == 6


@pytest.mark.parametrize("hands,mesh,shifts", [(1, True, 0), (2, True, 1), (3, False, 2),
                                               (2, True, 3)])
def test_packed_markers_encode_exactly_like_rosbags(faces, hands, mesh, shifts):
    # Strings of several lengths move every later field to other alignments.
    builder = HandMarkerBuilder(faces, mesh=mesh)
    header = messages.make_header(7, "cam" + "x" * shifts)
    results = [make_hand_result("right" if i % 2 else "left", seed=i) for i in range(hands)]
    ids = [f"h{i}" for i in range(hands)]
    builder.build(header, results, ids)
    packed = builder.build(header, results[:-1], ids[:-1])  # with DELETE markers at the end
    expected = messages.serialize(packed.full_message(), "visualization_msgs/msg/MarkerArray")
    assert packed.serialize() == expected


def test_packed_markers_with_an_empty_point_list():
    from fasthmr_ros.ros.markers import PackedMarkerArray

    store = messages.typestore()
    markers = [messages.new_message("visualization_msgs/msg/Marker", ns=n, points=[
        store.types["geometry_msgs/msg/Point"](x=0.0, y=0.0, z=0.0)]) for n in ("a", "bb")]
    array = store.types["visualization_msgs/msg/MarkerArray"](markers=markers)
    packed = PackedMarkerArray(array, [np.zeros((0, 3)), np.ones((5, 3))], store)
    assert packed.serialize() == messages.serialize(packed.full_message(),
                                                    "visualization_msgs/msg/MarkerArray")


def test_marker_ids_are_stable_and_vanished_hands_are_deleted(faces):
    builder = HandMarkerBuilder(faces, mesh=False)
    right, left = make_hand_result("right", 1), make_hand_result("left", 2)
    first = builder.build(HEADER, [right, left], ["right_0", "left_0"]).full_message()
    assert {(m.ns, m.id) for m in first.markers} == {(SKELETON_NS, 0), (JOINTS_NS, 0),
                                                     (SKELETON_NS, 1), (JOINTS_NS, 1)}
    second = builder.build(HEADER, [left], ["left_0"]).full_message()
    cls = messages.typestore().types["visualization_msgs/msg/Marker"]
    adds = {(m.ns, m.id) for m in second.markers if m.action == cls.ADD}
    deletes = {(m.ns, m.id) for m in second.markers if m.action == cls.DELETE}
    assert adds == {(SKELETON_NS, 1), (JOINTS_NS, 1)}  # left keeps id 1
    assert deletes == {(SKELETON_NS, 0), (JOINTS_NS, 0)}
    third = builder.build(HEADER, [left], ["left_0"]).full_message()
    assert all(m.action == cls.ADD for m in third.markers)


def test_wrist_transforms():
    results = [make_hand_result("right", 4), make_hand_result("left", 5, track_id=12)]
    tf = wrist_transforms(HEADER, results, hand_ids(results), prefix="cam1/")
    assert [t.child_frame_id for t in tf.transforms] == ["cam1/hand_right_0_wrist",
                                                         "cam1/hand_12_wrist"]
    assert wrist_frame_id("3") == "hand_3_wrist"
    first = tf.transforms[0]
    assert first.header.frame_id == "camera_optical_frame"
    tr = first.transform.translation
    np.testing.assert_allclose([tr.x, tr.y, tr.z], results[0].joints[0], rtol=1e-6)
    r = first.transform.rotation
    np.testing.assert_allclose(Rotation.from_quat([r.x, r.y, r.z, r.w]).as_matrix(),
                               results[0].wrist_rotation, atol=1e-6)


def test_statistics_and_diagnostics():
    stats = NodeStatistics(window_s=2.0)
    status_cls = messages.typestore().types["diagnostic_msgs/msg/DiagnosticStatus"]
    stats.start(0.0)
    waiting = diagnostic_array(HEADER, "n", "cpu", stats.snapshot(0.5))
    assert waiting.status[0].level == status_cls.WARN
    for i in range(20):
        stats.input(i * 0.1)
        if i % 2 == 0:
            stats.output(i * 0.1 + 0.05, latency_s=0.01 * (1 + i % 4))
        else:
            stats.dropped()
    snap = stats.snapshot(2.0)
    assert snap.frames_received == 20 and snap.frames_dropped == 10
    assert snap.input_rate_hz == pytest.approx(20 / 2.0, rel=0.15)
    assert snap.output_rate_hz == pytest.approx(10 / 2.0, rel=0.25)
    # latencies alternate 10 ms and 30 ms
    assert snap.latency_median_ms == pytest.approx(20.0)
    assert snap.latency_p95_ms == pytest.approx(30.0)
    msg = diagnostic_array(HEADER, "hand_mesh_node: pipeline", "cpu", snap,
                           extra={"engine": "torch"})
    status = msg.status[0]
    values = {kv.key: kv.value for kv in status.values}
    assert status.level == status_cls.OK and status.hardware_id == "cpu"
    assert values["frames_dropped"] == "10" and values["engine"] == "torch"
    assert float(values["latency_p95_ms"]) >= float(values["latency_median_ms"]) > 0
    stale = diagnostic_array(HEADER, "n", "cpu", stats.snapshot(30.0))
    assert stale.status[0].level == status_cls.WARN and "no image" in stale.status[0].message
    raw = messages.serialize(msg, "diagnostic_msgs/msg/DiagnosticArray")
    assert messages.deserialize(raw, "diagnostic_msgs/msg/DiagnosticArray").status[0].name
