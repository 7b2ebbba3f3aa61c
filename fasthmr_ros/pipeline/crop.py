"""Hand and body crops exactly as HaMeR's and HMR2.0's demos make them, without their cost.

HaMeR's demo (``ViTDetDataset``) turns a tight hand box into the network input like this:

1. centre = box centre, ``scale = rescale_factor * (w, h) / 200`` with rescale factor 2.0;
2. ``size = expand_to_aspect_ratio(scale * 200, (192, 256)).max()``: the side of a square
   region that keeps the hand inside the central 192 columns the ViT sees;
3. when the region is shrunk by more than 2.2x (``df = size / 256 / 2 > 1.1``) the frame is
   Gaussian-blurred with ``sigma = (df - 1) / 2`` (``skimage.filters.gaussian``: edge-nearest
   border, kernel truncated at 4 sigma);
4. left hands: the frame is mirrored and the centre becomes ``W - cx - 1``;
5. an affine warp (``cv2.getAffineTransform`` of centre / half-width / half-height points,
   bilinear, constant-zero border, no rotation) maps the square to 256x256;
6. ImageNet normalisation on 0-255 RGB, channels first.

HMR2.0's demo (4D-Humans' ``ViTDetDataset``) crops people the same way with a rescale factor
of 1.0 (the detector box itself, grown to 3:4) and never mirrors (:func:`crop_box` with
``rescale_factor=1, flip=False``; :data:`BODY_RESCALE_FACTOR`).

The demos blur and mirror the whole frame for every crop. Here only the window the warp reads
is blurred, with a margin of the kernel radius so every pixel the warp samples has the value
whole-frame blurring would give it, and only that window is mirrored.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import cv2
import numpy as np

from fasthmr_ros.models.constants import (
    CROP_HEIGHT,
    CROP_SIZE,
    CROP_WIDTH,
    IMAGE_MEAN,
    IMAGE_STD,
)
from fasthmr_ros.pipeline.results import HandBox

#: HaMeR's demo enlarges the tight hand box by this factor.
DEFAULT_RESCALE_FACTOR: float = 2.0
#: HMR2.0's demo crops the person box as it is (grown to the 3:4 aspect only).
BODY_RESCALE_FACTOR: float = 1.0
#: Aspect ratio ``(width, height)`` the square crop is fitted around (HaMeR's ``BBOX_SHAPE``).
BBOX_SHAPE: tuple[int, int] = (CROP_WIDTH, CROP_HEIGHT)
#: Blur only when the region is shrunk by more than ``2 * ANTIALIAS_THRESHOLD``.
ANTIALIAS_THRESHOLD: float = 1.1
#: skimage's default kernel extent, in standard deviations.
GAUSSIAN_TRUNCATE: float = 4.0
# Extra source pixels around the warp's footprint: bilinear reads one neighbour, plus rounding.
_WARP_MARGIN = 2

_MEAN_255 = (255.0 * np.asarray(IMAGE_MEAN, dtype=np.float64)).astype(np.float32)
_STD_255 = (255.0 * np.asarray(IMAGE_STD, dtype=np.float64)).astype(np.float32)


def expand_to_aspect_ratio(
    size_wh: np.ndarray | tuple[float, float], target_wh: tuple[float, float] = BBOX_SHAPE
) -> np.ndarray:
    """Grow ``(w, h)`` along one axis until it has the aspect ratio of ``target_wh``."""
    w, h = (float(v) for v in size_wh)
    w_t, h_t = target_wh
    if h / w < h_t / w_t:
        return np.array([w, max(w * h_t / w_t, h)])
    return np.array([max(h * w_t / h_t, w), h])


def crop_region(box: BoxLike, rescale_factor: float = DEFAULT_RESCALE_FACTOR) -> tuple[
    np.ndarray, float
]:
    """Return the centre ``(cx, cy)`` and square side of the region HaMeR crops for ``box``.

    Box values are rounded to float32 first, as HaMeR's demo stores them.
    """
    xyxy = box.xyxy.astype(np.float32)
    center = (xyxy[2:4] + xyxy[0:2]) / np.float32(2.0)
    scale = np.float32(rescale_factor) * (xyxy[2:4] - xyxy[0:2]) / np.float32(200.0)
    size = float(expand_to_aspect_ratio(scale * 200).max())
    return center.astype(np.float64), size


def antialias_sigma(region_size: float, crop_size: int = CROP_SIZE) -> float:
    """Return the blur sigma HaMeR applies before shrinking ``region_size`` px, or 0 for none."""
    df = region_size / crop_size / 2.0
    return (df - 1.0) / 2.0 if df > ANTIALIAS_THRESHOLD else 0.0


def gaussian_kernel(sigma: float, truncate: float = GAUSSIAN_TRUNCATE) -> np.ndarray:
    """Return the normalised 1D kernel of ``scipy.ndimage.gaussian_filter`` (and skimage)."""
    if not sigma > 0:
        raise ValueError(f"Gaussian sigma must be positive, got {sigma}")
    radius = int(truncate * sigma + 0.5)
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    kernel = np.exp(-0.5 * (x / sigma) ** 2)
    return kernel / kernel.sum()


@dataclass(frozen=True)
class CropTransform:
    """Where a crop came from: maps crop pixels to image pixels and back.

    ``center`` is the centre of the square region in the (unmirrored) image, ``size`` its side
    in image pixels. For a left hand (``flip``) the crop shows the mirrored image: crop column
    ``u`` grows towards smaller image ``x``.
    """

    center: tuple[float, float]
    size: float
    flip: bool
    image_width: int
    image_height: int
    crop_size: int = CROP_SIZE

    @property
    def warp_center_x(self) -> float:
        """Region centre x in the image the warp reads (mirrored for left hands)."""
        cx = self.center[0]
        return self.image_width - cx - 1.0 if self.flip else cx

    def warp_matrix(self) -> np.ndarray:
        """Return HaMeR's 2x3 affine from the (possibly mirrored) image to the crop.

        Built like HaMeR's ``gen_trans_from_patch_cv``: three float32 point pairs (centre,
        centre + half height down, centre + half width right) through
        ``cv2.getAffineTransform``.
        """
        cx, cy, half = self.warp_center_x, self.center[1], self.size * 0.5
        c = self.crop_size * 0.5
        src = np.array([[cx, cy], [cx, cy + half], [cx + half, cy]], dtype=np.float32)
        dst = np.array([[c, c], [c, 2 * c], [2 * c, c]], dtype=np.float32)
        return cv2.getAffineTransform(src, dst)

    def crop_to_image(self, points: np.ndarray) -> np.ndarray:
        """Map ``(..., 2)`` crop pixel coordinates to image pixel coordinates."""
        pts = np.asarray(points, dtype=np.float64)
        m = self.warp_matrix()
        x = (pts[..., 0] - m[0, 2]) / m[0, 0]
        y = (pts[..., 1] - m[1, 2]) / m[1, 1]
        if self.flip:
            x = self.image_width - 1.0 - x
        return np.stack([x, y], axis=-1)

    def image_to_crop(self, points: np.ndarray) -> np.ndarray:
        """Map ``(..., 2)`` image pixel coordinates to crop pixel coordinates."""
        pts = np.asarray(points, dtype=np.float64)
        m = self.warp_matrix()
        x = pts[..., 0]
        if self.flip:
            x = self.image_width - 1.0 - x
        return np.stack([m[0, 0] * x + m[0, 2], m[1, 1] * pts[..., 1] + m[1, 2]], axis=-1)


class BoxLike(Protocol):
    """Anything with an ``xyxy`` box in pixels (:class:`HandBox`, person boxes)."""

    @property
    def xyxy(self) -> np.ndarray:
        """``[x1, y1, x2, y2]``."""
        ...


@dataclass
class HandCrop:
    """A network input crop and the transform back to the image (hands and bodies alike)."""

    image: np.ndarray  # (3, 256, 256) float32, ImageNet-normalised RGB
    transform: CropTransform


def check_image(image_rgb: np.ndarray) -> None:
    """Raise ``ValueError`` unless ``image_rgb`` is an ``H x W x 3`` uint8 array."""
    if not isinstance(image_rgb, np.ndarray):
        raise ValueError(f"image must be a numpy array, got {type(image_rgb).__name__}")
    if image_rgb.ndim != 3 or image_rgb.shape[2] != 3 or min(image_rgb.shape[:2]) < 1:
        raise ValueError(
            f"image must be H x W x 3 (RGB), got shape {image_rgb.shape}; convert grayscale or "
            "RGBA images with cv2.cvtColor first"
        )
    if image_rgb.dtype != np.uint8:
        raise ValueError(
            f"image must be uint8, got {image_rgb.dtype}; scale to 0-255 and convert with "
            ".astype(np.uint8)"
        )


def normalize_crop(patch_rgb: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Turn an ``H x W x 3`` RGB patch (0-255) into ImageNet-normalised float32 ``3 x H x W``.

    ``out``, when given, is the float32 ``3 x H x W`` array written and returned (e.g. one slot
    of a batch, which saves allocating and copying every crop).
    """
    patch = np.asarray(patch_rgb)
    shape = (3, *patch.shape[:2])
    if out is None:
        out = np.empty(shape, dtype=np.float32)
    elif out.shape != shape or out.dtype != np.float32:
        raise ValueError(
            f"out must be a float32 array of shape {shape}, got {out.dtype} {out.shape}"
        )
    for c, channel in enumerate(cv2.split(patch)):  # contiguous planes: fast elementwise ops
        np.subtract(channel, _MEAN_255[c], out=out[c], dtype=np.float32)
        np.divide(out[c], _STD_255[c], out=out[c])
    return out


def _window(lo: float, hi: float, margin: int, limit: int) -> tuple[int, int]:
    """Integer pixel range ``[start, stop)`` covering ``[lo, hi]`` plus ``margin``, clipped."""
    start = max(0, math.floor(lo) - margin)
    stop = min(limit, math.ceil(hi) + margin + 1)
    return start, max(start, stop)


def crop_hand(
    image_rgb: np.ndarray,
    box: HandBox,
    rescale_factor: float = DEFAULT_RESCALE_FACTOR,
    out: np.ndarray | None = None,
) -> HandCrop:
    """Cut the network input for one hand out of an RGB uint8 frame, exactly as HaMeR's demo.

    Args:
        image_rgb: ``H x W x 3`` uint8 RGB frame.
        box: tight hand box; ``box.side`` decides whether the crop is mirrored.
        rescale_factor: box enlargement (HaMeR's demo uses 2.0).
        out: float32 ``(3, 256, 256)`` array to write the crop into (a batch slot); a new
            one when omitted.

    Returns:
        The normalised ``(3, 256, 256)`` float32 crop and its :class:`CropTransform`.

    """
    return crop_box(image_rgb, box, rescale_factor, flip=not box.is_right, out=out)


def crop_box(
    image_rgb: np.ndarray,
    box: BoxLike,
    rescale_factor: float,
    flip: bool = False,
    out: np.ndarray | None = None,
) -> HandCrop:
    """Cut the network input for ``box`` (square region of the grown box, blur, warp, normalise).

    :func:`crop_hand` for hands; for people (HMR2.0) ``rescale_factor`` is
    :data:`BODY_RESCALE_FACTOR` and ``flip`` false.
    """
    check_image(image_rgb)
    height, width = image_rgb.shape[:2]
    center, size = crop_region(box, rescale_factor)
    transform = CropTransform(
        center=(float(center[0]), float(center[1])),
        size=size,
        flip=bool(flip),
        image_width=width,
        image_height=height,
    )
    sigma = antialias_sigma(size)
    kernel = gaussian_kernel(sigma) if sigma > 0 else None
    blur_margin = (len(kernel) // 2) if kernel is not None else 0

    # Footprint of the warp in the image it reads (mirrored for left hands).
    half = size * 0.5
    wx0, wx1 = transform.warp_center_x - half, transform.warp_center_x + half
    if transform.flip:  # the same columns in the unmirrored image
        wx0, wx1 = width - 1.0 - wx1, width - 1.0 - wx0
    y0, y1 = _window(center[1] - half, center[1] + half, _WARP_MARGIN, height)
    x0, x1 = _window(wx0, wx1, _WARP_MARGIN, width)

    m = transform.warp_matrix()
    if x1 <= x0 or y1 <= y0:  # the region misses the frame: the demo's crop is all zeros
        patch = np.zeros((CROP_SIZE, CROP_SIZE, 3), dtype=np.float32)
        return HandCrop(image=normalize_crop(patch, out), transform=transform)

    if kernel is None and not transform.flip:
        # The demo's own warp: the whole frame, no copy (and exact under every OpenCV).
        source, origin = image_rgb, (0, 0)
    else:
        # Read a window grown by the blur radius (inside the frame). Blurring it with a
        # replicated border equals whole-frame blurring with skimage's mode='nearest' on
        # [x0, x1) x [y0, y1), the only pixels the warp reads; nearer the cut edges it
        # differs, but is never read.
        gx0, gx1 = max(0, x0 - blur_margin), min(width, x1 + blur_margin)
        gy0, gy1 = max(0, y0 - blur_margin), min(height, y1 + blur_margin)
        source = image_rgb[gy0:gy1, gx0:gx1]
        if source.strides[1:] != (3 * source.itemsize, source.itemsize):
            source = np.ascontiguousarray(source)  # OpenCV needs contiguous pixels in a row
        if transform.flip:  # mirror only the window (the kernel is symmetric: order is free)
            source = cv2.flip(source, 1)
            origin = (width - gx1, gy0)  # first window column in the mirrored image
        else:
            origin = (gx0, gy0)
        if kernel is not None:
            # Blur in float32 (5x faster than float64, within 1e-4 grey levels), then warp in
            # float64 as the demo does (skimage returns float64): OpenCV 4 warps every dtype,
            # and OpenCV 5 float64, with 1/32-pixel coordinates, while OpenCV 5 warps float32
            # exactly, up to ~6 grey levels apart from the demo.
            source = cv2.sepFilter2D(
                source, cv2.CV_32F, kernel, kernel, borderType=cv2.BORDER_REPLICATE
            ).astype(np.float64)
    shifted = m.copy()
    shifted[:, 2] += m[:, :2] @ np.array(origin, dtype=np.float64)
    patch = cv2.warpAffine(
        source,
        shifted,
        (CROP_SIZE, CROP_SIZE),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=0,
    )
    return HandCrop(image=normalize_crop(patch, out), transform=transform)
