"""``sensor_msgs/Image`` and ``CompressedImage`` to RGB arrays and back, without cv_bridge.

Decoding honours ``step`` (row padding) and rejects malformed messages with an
:class:`ImageDecodeError` that names the problem; an encoding this module cannot convert raises
:class:`UnsupportedEncodingError` (a subclass) so callers can warn about it once.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from fasthmr_ros.ros import messages

IMAGE = "sensor_msgs/msg/Image"
COMPRESSED_IMAGE = "sensor_msgs/msg/CompressedImage"


class ImageDecodeError(ValueError):
    """An image message that cannot be turned into pixels (bad size, step or data)."""


class UnsupportedEncodingError(ImageDecodeError):
    """An image encoding this node does not convert."""


# encoding -> (channels, bytes per pixel, OpenCV conversion to RGB or None for a copy-free view)
_PIXEL_ENCODINGS: dict[str, tuple[int, int, int | None]] = {
    "rgb8": (3, 3, None),
    "bgr8": (3, 3, cv2.COLOR_BGR2RGB),
    "rgba8": (4, 4, cv2.COLOR_RGBA2RGB),
    "bgra8": (4, 4, cv2.COLOR_BGRA2RGB),
    "mono8": (1, 1, cv2.COLOR_GRAY2RGB),
    # Packed 4:2:2, two bytes per pixel. "yuv422" is the historical ROS name of UYVY and
    # "yuv422_yuy2" that of YUYV; Jazzy adds the names "uyvy" and "yuyv".
    "yuv422": (2, 2, cv2.COLOR_YUV2RGB_UYVY),
    "uyvy": (2, 2, cv2.COLOR_YUV2RGB_UYVY),
    "yuv422_yuy2": (2, 2, cv2.COLOR_YUV2RGB_YUY2),
    "yuyv": (2, 2, cv2.COLOR_YUV2RGB_YUY2),
}

#: Encodings :func:`decode_image` accepts.
SUPPORTED_ENCODINGS: tuple[str, ...] = tuple(_PIXEL_ENCODINGS)
#: Compression formats :func:`decode_compressed_image` accepts.
SUPPORTED_COMPRESSIONS: tuple[str, ...] = ("jpeg", "png")


def decode_image(msg: Any) -> np.ndarray:
    """Return the pixels of a ``sensor_msgs/Image`` as an ``(H, W, 3)`` uint8 RGB array.

    For ``rgb8`` without row padding the result is a read-only view of the message data.

    Raises:
        UnsupportedEncodingError: for encodings not in :data:`SUPPORTED_ENCODINGS`.
        ImageDecodeError: for zero size, a step shorter than a row, data whose length is not
            ``step * height``, or an odd width in a 4:2:2 encoding.

    """
    encoding = str(msg.encoding).strip().lower()
    if encoding not in _PIXEL_ENCODINGS:
        raise UnsupportedEncodingError(
            f"image encoding {msg.encoding!r} is not supported; publish one of "
            f"{', '.join(SUPPORTED_ENCODINGS)} (or use image_transport:=compressed)"
        )
    channels, pixel_bytes, conversion = _PIXEL_ENCODINGS[encoding]
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    if height <= 0 or width <= 0:
        raise ImageDecodeError(f"image has zero size ({width}x{height}); nothing to process")
    row_bytes = width * pixel_bytes
    if step < row_bytes:
        raise ImageDecodeError(
            f"image step {step} is shorter than one row of {width} {encoding} pixels "
            f"({row_bytes} bytes); the publisher sets a wrong step"
        )
    data = np.asarray(msg.data, dtype=np.uint8).reshape(-1)
    if data.size != step * height:
        raise ImageDecodeError(
            f"image data has {data.size} bytes but step * height = {step} * {height} = "
            f"{step * height}; the message is truncated or its size fields are wrong"
        )
    if pixel_bytes == 2 and width % 2:
        raise ImageDecodeError(f"{encoding} images need an even width, got {width}")
    rows = data.reshape(height, step)[:, :row_bytes]
    pixels = rows.reshape(height, width, channels)
    if conversion is None:
        return pixels
    return cv2.cvtColor(np.ascontiguousarray(pixels), conversion)


def compression_format(format_field: str) -> str:
    """Return ``"jpeg"`` or ``"png"`` for a ``CompressedImage.format`` string.

    ``image_transport`` writes either the bare format or ``"<enc>; jpeg compressed <enc>"``.

    Raises:
        UnsupportedEncodingError: for other formats (for example ``compressedDepth``).

    """
    text = str(format_field).lower()
    if "compresseddepth" in text:
        kind = None
    elif "jpeg" in text or "jpg" in text:
        kind = "jpeg"
    elif "png" in text:
        kind = "png"
    else:
        kind = None
    if kind is None:
        raise UnsupportedEncodingError(
            f"compressed image format {format_field!r} is not supported; use jpeg or png"
        )
    return kind


def decode_compressed_image(msg: Any) -> np.ndarray:
    """Return the pixels of a jpeg or png ``sensor_msgs/CompressedImage`` as RGB uint8.

    Raises:
        UnsupportedEncodingError: for formats other than jpeg and png.
        ImageDecodeError: for empty or corrupt data.

    """
    compression_format(msg.format)
    data = np.asarray(msg.data, dtype=np.uint8).reshape(-1)
    if data.size == 0:
        raise ImageDecodeError("compressed image has no data")
    bgr = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if bgr is None or bgr.size == 0:
        raise ImageDecodeError(
            f"compressed image ({msg.format!r}, {data.size} bytes) could not be decoded; the "
            "data is corrupt or not in the announced format"
        )
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def encode_image(
    rgb: np.ndarray, header: Any, encoding: str = "rgb8", store: Any | None = None
) -> Any:
    """Build a ``sensor_msgs/Image`` from an ``(H, W, 3)`` uint8 RGB array.

    Args:
        rgb: the pixels.
        header: the message header (stamp and camera optical frame).
        encoding: ``rgb8``, ``bgr8`` or ``mono8``.
        store: typestore (the package one when omitted).

    """
    image = _check_rgb(rgb)
    if encoding == "rgb8":
        pixels = image
    elif encoding == "bgr8":
        pixels = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    elif encoding == "mono8":
        pixels = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    else:
        raise ValueError(f"encode_image writes rgb8, bgr8 or mono8, not {encoding!r}")
    pixels = np.ascontiguousarray(pixels)
    height, width = pixels.shape[:2]
    channels = 1 if pixels.ndim == 2 else pixels.shape[2]
    return messages.new_message(
        IMAGE,
        store,
        header=header,
        height=height,
        width=width,
        encoding=encoding,
        is_bigendian=0,
        step=width * channels,
        data=pixels.reshape(-1),
    )


def encode_compressed_image(
    rgb: np.ndarray, header: Any, fmt: str = "jpeg", quality: int = 90, store: Any | None = None
) -> Any:
    """Build a jpeg or png ``sensor_msgs/CompressedImage`` from RGB uint8 pixels."""
    image = _check_rgb(rgb)
    bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    if fmt == "jpeg":
        ok, buffer = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    elif fmt == "png":
        ok, buffer = cv2.imencode(".png", bgr)
    else:
        raise ValueError(f"compressed format must be 'jpeg' or 'png', not {fmt!r}")
    if not ok:
        raise RuntimeError(f"OpenCV could not encode a {image.shape} image as {fmt}")
    return messages.new_message(
        COMPRESSED_IMAGE,
        store,
        header=header,
        format=f"rgb8; {fmt} compressed bgr8",
        data=buffer.reshape(-1),
    )


def _check_rgb(rgb: np.ndarray) -> np.ndarray:
    image = np.asarray(rgb)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(
            f"expected an (H, W, 3) uint8 RGB image, got dtype {image.dtype} shape {image.shape}"
        )
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"image has zero size: {image.shape}")
    return image
