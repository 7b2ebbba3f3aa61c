"""Image and CompressedImage decoding (every encoding, step padding, errors) and CameraInfo."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
from ros_test_support import sample_rgb

from fasthmr_ros.pipeline.results import CameraIntrinsics
from fasthmr_ros.ros import messages
from fasthmr_ros.ros.camera_info import (
    CameraInfoError,
    IntrinsicsByStamp,
    camera_info_message,
    intrinsics_from_camera_info,
)
from fasthmr_ros.ros.image_codec import (
    SUPPORTED_ENCODINGS,
    ImageDecodeError,
    UnsupportedEncodingError,
    compression_format,
    decode_compressed_image,
    decode_image,
    encode_compressed_image,
    encode_image,
)

HEADER = messages.make_header(1_000, "camera_optical_frame")


@pytest.fixture(scope="module")
def rgb() -> np.ndarray:
    return sample_rgb(160, 120)


def raw_image(pixels: np.ndarray, encoding: str, pad: int = 0):
    """An Image message with ``pad`` extra bytes at the end of every row."""
    height, width = pixels.shape[:2]
    rows = pixels.reshape(height, -1)
    padded = np.concatenate([rows, np.full((height, pad), 7, np.uint8)], axis=1)
    return messages.new_message(
        "sensor_msgs/msg/Image", header=HEADER, height=height, width=width, encoding=encoding,
        step=padded.shape[1], data=padded.reshape(-1),
    )


def packed_422(rgb: np.ndarray, order: str) -> np.ndarray:
    """Pack RGB as 4:2:2 (order 'uyvy' or 'yuyv') using OpenCV's YUV conversion."""
    yuv = cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV).astype(np.float64)
    y = yuv[..., 0]
    u = (yuv[:, 0::2, 1] + yuv[:, 1::2, 1]) / 2
    v = (yuv[:, 0::2, 2] + yuv[:, 1::2, 2]) / 2
    out = np.empty((rgb.shape[0], rgb.shape[1] * 2), np.float64)
    if order == "uyvy":
        out[:, 0::4], out[:, 1::4], out[:, 2::4], out[:, 3::4] = u, y[:, 0::2], v, y[:, 1::2]
    else:
        out[:, 0::4], out[:, 1::4], out[:, 2::4], out[:, 3::4] = y[:, 0::2], u, y[:, 1::2], v
    return np.clip(np.round(out), 0, 255).astype(np.uint8).reshape(rgb.shape[0], -1, 2)


@pytest.mark.parametrize("pad", [0, 13])
def test_colour_encodings_decode_to_the_same_rgb(rgb, pad):
    variants = {
        "rgb8": rgb,
        "bgr8": rgb[..., ::-1],
        "rgba8": np.dstack([rgb, np.full(rgb.shape[:2], 200, np.uint8)]),
        "bgra8": np.dstack([rgb[..., ::-1], np.full(rgb.shape[:2], 200, np.uint8)]),
    }
    for encoding, pixels in variants.items():
        decoded = decode_image(raw_image(np.ascontiguousarray(pixels), encoding, pad))
        assert decoded.shape == rgb.shape and decoded.dtype == np.uint8, encoding
        np.testing.assert_array_equal(decoded, rgb, err_msg=encoding)


def test_mono8_becomes_grey_rgb(rgb):
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    decoded = decode_image(raw_image(grey, "mono8", pad=3))
    for channel in range(3):
        np.testing.assert_array_equal(decoded[..., channel], grey)


@pytest.mark.parametrize("encoding,order", [("yuv422", "uyvy"), ("uyvy", "uyvy"),
                                            ("yuv422_yuy2", "yuyv"), ("yuyv", "yuyv")])
def test_yuv422_encodings_decode_close_to_the_original(rgb, encoding, order):
    decoded = decode_image(raw_image(packed_422(rgb, order), encoding, pad=4))
    assert decoded.shape == rgb.shape
    error = np.abs(decoded.astype(int) - rgb.astype(int)).mean()
    assert error < 12, f"{encoding}: mean error {error}"
    # The wrong byte order gives a visibly different picture: the order matters.
    other = "yuyv" if order == "uyvy" else "uyvy"
    swapped = decode_image(raw_image(packed_422(rgb, order), other, pad=0))
    assert np.abs(swapped.astype(int) - rgb.astype(int)).mean() > 2 * error


def test_every_supported_encoding_is_tested():
    assert set(SUPPORTED_ENCODINGS) == {"rgb8", "bgr8", "rgba8", "bgra8", "mono8", "yuv422",
                                        "uyvy", "yuv422_yuy2", "yuyv"}


def test_rgb8_without_padding_is_a_view(rgb):
    msg = raw_image(rgb, "rgb8")
    decoded = decode_image(msg)
    assert np.shares_memory(decoded, msg.data)


def test_unsupported_encoding_is_refused_with_the_list(rgb):
    msg = raw_image(rgb, "rgb8")
    msg.encoding = "16UC1"
    with pytest.raises(UnsupportedEncodingError, match="16UC1.*rgb8"):
        decode_image(msg)


def test_step_shorter_than_a_row(rgb):
    msg = raw_image(rgb, "rgb8")
    msg.step = rgb.shape[1] * 3 - 1
    with pytest.raises(ImageDecodeError, match="step .* shorter than one row"):
        decode_image(msg)


def test_data_size_mismatch(rgb):
    msg = raw_image(rgb, "rgb8")
    msg.data = msg.data[:-5]
    with pytest.raises(ImageDecodeError, match="truncated"):
        decode_image(msg)


def test_zero_size(rgb):
    msg = messages.new_message("sensor_msgs/msg/Image", header=HEADER, encoding="rgb8")
    with pytest.raises(ImageDecodeError, match="zero size"):
        decode_image(msg)


def test_odd_width_yuv(rgb):
    odd = np.zeros((4, 3, 2), np.uint8)
    with pytest.raises(ImageDecodeError, match="even width"):
        decode_image(raw_image(odd, "yuyv"))


@pytest.mark.parametrize("fmt", ["jpeg", "png"])
def test_compressed_round_trip(rgb, fmt):
    msg = encode_compressed_image(rgb, HEADER, fmt)
    assert compression_format(msg.format) == fmt
    decoded = decode_compressed_image(msg)
    assert decoded.shape == rgb.shape
    error = np.abs(decoded.astype(int) - rgb.astype(int)).mean()
    assert error == 0 if fmt == "png" else error < 4


def test_compression_format_strings():
    assert compression_format("jpeg") == "jpeg"
    assert compression_format("bgr8; jpeg compressed bgr8") == "jpeg"
    assert compression_format("rgb8; png compressed rgb8") == "png"
    with pytest.raises(UnsupportedEncodingError, match="theora"):
        compression_format("theora")
    with pytest.raises(UnsupportedEncodingError):
        compression_format("16UC1; compressedDepth png")


def test_corrupt_jpeg(rgb):
    good = encode_compressed_image(rgb, HEADER, "jpeg")
    corrupt = messages.new_message("sensor_msgs/msg/CompressedImage", header=HEADER,
                                   format="jpeg", data=good.data[:20].copy())
    with pytest.raises(ImageDecodeError, match="could not be decoded"):
        decode_compressed_image(corrupt)
    empty = messages.new_message("sensor_msgs/msg/CompressedImage", header=HEADER,
                                 format="jpeg")
    with pytest.raises(ImageDecodeError, match="no data"):
        decode_compressed_image(empty)


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "mono8"])
def test_encode_then_decode(rgb, encoding):
    msg = encode_image(rgb, HEADER, encoding)
    assert msg.encoding == encoding and msg.header.frame_id == "camera_optical_frame"
    raw = messages.serialize(msg, "sensor_msgs/msg/Image")
    decoded = decode_image(messages.deserialize(raw, "sensor_msgs/msg/Image"))
    expected = rgb if encoding != "mono8" else cv2.cvtColor(
        cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)
    np.testing.assert_array_equal(decoded, expected)


def test_encode_rejects_wrong_arrays():
    with pytest.raises(ValueError, match="uint8 RGB"):
        encode_image(np.zeros((4, 4), np.uint8), HEADER)
    with pytest.raises(ValueError, match="rgb8, bgr8 or mono8"):
        encode_image(np.zeros((4, 4, 3), np.uint8), HEADER, "yuyv")


# ------------------------------------------------------------------ CameraInfo
def test_camera_info_round_trip():
    intrinsics = CameraIntrinsics(600.0, 610.0, 320.5, 240.5)
    msg = camera_info_message(HEADER, 640, 480, intrinsics)
    raw = messages.serialize(msg, "sensor_msgs/msg/CameraInfo")
    back = messages.deserialize(raw, "sensor_msgs/msg/CameraInfo")
    assert intrinsics_from_camera_info(back) == intrinsics
    assert (back.width, back.height) == (640, 480)
    assert back.p[0] == 600.0 and back.p[3] == 0.0 and back.p[10] == 1.0


def test_all_zero_k_means_uncalibrated():
    assert intrinsics_from_camera_info(camera_info_message(HEADER, 640, 480, None)) is None


@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_non_finite_k_is_an_error(value):
    msg = camera_info_message(HEADER, 640, 480, CameraIntrinsics(600, 600, 320, 240))
    msg.k[0] = value
    with pytest.raises(CameraInfoError, match="non-finite"):
        intrinsics_from_camera_info(msg)


def test_negative_focal_is_an_error():
    msg = camera_info_message(HEADER, 640, 480, CameraIntrinsics(600, 600, 320, 240))
    msg.k[4] = -600.0
    with pytest.raises(CameraInfoError, match="positive"):
        intrinsics_from_camera_info(msg)


def test_intrinsics_by_stamp():
    table = IntrinsicsByStamp(capacity=3)
    assert table.empty
    with pytest.raises(LookupError):
        table.lookup(1)
    a, b = CameraIntrinsics(500, 500, 1, 1), CameraIntrinsics(600, 600, 2, 2)
    table.add(10, a)
    table.add(20, b)
    assert table.lookup(10) == (a, True)
    assert table.lookup(15) == (b, False)  # no exact stamp: the newest
    for stamp in (30, 40, 50):
        table.add(stamp, None)
    assert table.lookup(10) == (None, False)  # evicted; the newest is uncalibrated
