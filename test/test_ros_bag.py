"""``fasthmr bag hands``: the node logic over rosbag2 recordings (mcap and sqlite3)."""

from __future__ import annotations

import numpy as np
import pytest
from ros_test_support import sample_rgb

pytest.importorskip("rosbags", reason="bags are read and written with rosbags")

from rosbags.rosbag2 import Reader, StoragePlugin, Writer  # noqa: E402

from fasthmr_ros.cli.main import main  # noqa: E402
from fasthmr_ros.pipeline.results import CameraIntrinsics  # noqa: E402
from fasthmr_ros.ros import messages  # noqa: E402
from fasthmr_ros.ros.bag import BagError, find_image_topic  # noqa: E402
from fasthmr_ros.ros.camera_info import camera_info_message  # noqa: E402
from fasthmr_ros.ros.image_codec import encode_compressed_image, encode_image  # noqa: E402

START = 1_700_000_000_000_000_000
INTRINSICS = CameraIntrinsics(200.0, 200.0, 80.0, 60.0)


def write_input_bag(path, frames: int = 4, storage=StoragePlugin.MCAP, compressed=False,
                    bad_frame: int | None = None):
    """A recording of /camera/color/image_raw (+ /compressed) and /camera/color/camera_info."""
    store = messages.typestore()
    rgb = sample_rgb(160, 120)
    stamps = []
    with Writer(path, version=8, storage_plugin=storage) as writer:
        if compressed:
            image = writer.add_connection("/camera/color/image_raw/compressed",
                                          "sensor_msgs/msg/CompressedImage", typestore=store)
        else:
            image = writer.add_connection("/camera/color/image_raw", "sensor_msgs/msg/Image",
                                          typestore=store)
        info = writer.add_connection("/camera/color/camera_info", "sensor_msgs/msg/CameraInfo",
                                     typestore=store)
        for i in range(frames):
            stamp = START + i * 33_000_000
            header = messages.make_header(stamp, "camera_color_optical_frame")
            if compressed:
                msg = encode_compressed_image(rgb, header)
                msgtype = "sensor_msgs/msg/CompressedImage"
            else:
                msg = encode_image(rgb, header, "bgr8")
                msgtype = "sensor_msgs/msg/Image"
                if i == bad_frame:
                    msg.step = 3
            # Recorded as drivers do: the image first, its CameraInfo just after.
            writer.write(image, stamp + 1000, messages.serialize(msg, msgtype))
            writer.write(info, stamp + 2000, messages.serialize(
                camera_info_message(header, 160, 120, INTRINSICS),
                "sensor_msgs/msg/CameraInfo"))
            stamps.append(stamp)
    return stamps


def model_args(assets) -> list[str]:
    """Random-weights model; each image is one hand (the pictures are not of hands)."""
    return ["--param", f"checkpoint={assets.checkpoint}", "--param", "detector=full_frame"]


def read_bag(path):
    out: dict[str, list] = {}
    with Reader(path) as reader:
        types = {c.topic: c.msgtype for c in reader.connections}
        qos = {c.topic: c.ext.offered_qos_profiles for c in reader.connections}
        for connection, timestamp, raw in reader.messages():
            out.setdefault(connection.topic, []).append(
                (timestamp, messages.deserialize(raw, connection.msgtype)))
    return out, types, qos


def test_bag_to_single_mcap_file(tmp_path, test_assets, capsys):
    stamps = write_input_bag(tmp_path / "in", frames=4, bad_frame=2)
    output = tmp_path / "hands.mcap"
    status = main(["bag", "hands", str(tmp_path / "in"), str(output), *model_args(test_assets),
                   "--param", "publish_tf=true"])
    assert status == 0
    assert output.is_file() and not (tmp_path / "hands.mcap.bag-tmp").exists()
    assert "3 of 4 images processed, 1 messages rejected" in capsys.readouterr().out
    out, types, qos = read_bag(output)
    assert types["/hands"] == "fasthmr_ros/msg/HandMeshArray"
    arrays = out["/hands"]
    good = [s for i, s in enumerate(stamps) if i != 2]
    assert [messages.stamp_to_ns(m.header.stamp) for _, m in arrays] == good
    # Written at the bag time of the image (its receive time in the recording).
    assert [t for t, _ in arrays] == [s + 1000 for s in good]
    for _, array in arrays:
        assert array.header.frame_id == "camera_color_optical_frame"
        (hand,) = array.hands
        joints = np.array([[p.x, p.y, p.z] for p in hand.joints])
        # CameraInfo recorded after the image was still used: keypoints follow its intrinsics.
        projected = np.stack([INTRINSICS.fx * joints[:, 0] / joints[:, 2] + INTRINSICS.cx,
                              INTRINSICS.fy * joints[:, 1] / joints[:, 2] + INTRINSICS.cy], 1)
        np.testing.assert_allclose(hand.keypoints_2d.reshape(21, 2), projected, atol=1e-2)
    assert len(out["/hands/markers"]) == 3 and len(out["/tf"]) == 3
    assert len(out["/hands/topology"]) == 1
    assert "transient_local" in str(qos["/hands/topology"]).lower()
    assert len(out["/diagnostics"]) >= 1
    assert "/camera/color/image_raw" not in out  # inputs are not copied by default


def test_sqlite3_bag_to_folder_with_inputs(tmp_path, test_assets):
    write_input_bag(tmp_path / "in", frames=2, storage=StoragePlugin.SQLITE3)
    output = tmp_path / "out"
    assert main(["bag", "hands", str(tmp_path / "in"), str(output), "--storage", "sqlite3",
                 "--copy-inputs", *model_args(test_assets),
                 "--param", "publish_markers=false"]) == 0
    assert (output / "metadata.yaml").is_file() and list(output.glob("*.db3"))
    out, _, _ = read_bag(output)
    assert len(out["/hands"]) == 2 and "/hands/markers" not in out
    assert len(out["/camera/color/image_raw"]) == 2
    assert len(out["/camera/color/camera_info"]) == 2


def test_compressed_bag(tmp_path, test_assets):
    write_input_bag(tmp_path / "in", frames=2, compressed=True)
    output = tmp_path / "out.mcap"
    assert main(["bag", "hands", str(tmp_path / "in"), str(output), *model_args(test_assets),
                 "--param", "image_transport=compressed"]) == 0
    out, _, _ = read_bag(output)
    assert len(out["/hands"]) == 2


def test_bag_errors(tmp_path, test_assets, capsys):
    write_input_bag(tmp_path / "in", frames=1)
    args = model_args(test_assets)
    assert main(["bag", "hands", str(tmp_path / "missing"), str(tmp_path / "o.mcap"),
                 *args]) == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "exists.mcap").write_text("")
    assert main(["bag", "hands", str(tmp_path / "in"), str(tmp_path / "exists.mcap"),
                 *args]) == 2
    assert "exists already" in capsys.readouterr().err
    assert main(["bag", "hands", str(tmp_path / "in"), str(tmp_path / "c.mcap"), *args,
                 "--param", "image_transport=compressed"]) == 2
    assert "no sensor_msgs/msg/CompressedImage topic" in capsys.readouterr().err
    assert main(["bag", "hands", str(tmp_path / "in"), str(tmp_path / "x.mcap"),
                 "--param", "detector=full_frame"]) == 2
    assert "gives no hand landmarks" in capsys.readouterr().err


def test_find_image_topic():
    topics = {"/a/image": "sensor_msgs/msg/Image", "/a/info": "sensor_msgs/msg/CameraInfo"}
    assert find_image_topic(topics, compressed=False) == "/a/image"
    with pytest.raises(BagError, match="several"):
        find_image_topic({**topics, "/b/image": "sensor_msgs/msg/Image"}, compressed=False)
