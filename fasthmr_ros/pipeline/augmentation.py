"""HaMeR-style training augmentation: box scale and shift, in-plane rotation, colour, flip.

Random parameters follow HaMeR's ``do_augmentation`` (4D-Humans ``datasets/utils.py``):
``scale = 1 + clip(N(0,1), -1, 1) * scale_factor``, a rotation
``clip(N(0,1), -2, 2) * rotation_factor`` degrees applied with probability ``rotation_rate``,
a box shift ``clip(N(0,1), -1, 1) * translation_factor`` box sizes per axis applied with
probability ``translation_rate``, per-channel colour gains ``U(1 - c, 1 + c)``, and a
horizontal flip with probability ``flip_rate``. Defaults are HaMeR's training values (scale 0.3,
rotation 30° at rate 0.6, shift 0.02 at rate 0.5, colour 0.2, no flip: the pipeline mirrors
left hands into right ones anyway, so flips only matter for models fed both sides).

The crop is cut around the tight hand box where the inference crop
(:func:`~fasthmr_ros.pipeline.crop.crop_hand`) cuts it: the box is first grown to HaMeR's 3:4
(width:height) crop shape, so an un-augmented training crop is the crop the network sees at
inference. One affine map takes the image to the square crop; 2D keypoints go through that same
map and 3D labels are rotated about the camera's optical axis by the same angle (and mirrored
in x for a flip), so images and labels always agree. A flip turns a right hand into a left one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import cv2
import numpy as np

from fasthmr_ros.models.constants import CROP_SIZE
from fasthmr_ros.pipeline.crop import expand_to_aspect_ratio
from fasthmr_ros.pipeline.datasets.sample import (
    OPENCV_FRAME,
    OPENGL_FRAME,
    HandSample,
    ManoParameters,
)
from fasthmr_ros.pipeline.results import LEFT, RIGHT

_MIRROR_X = np.diag([-1.0, 1.0, 1.0])
_OPENGL_FLIP = np.diag([1.0, -1.0, -1.0])


@dataclass(frozen=True)
class AugmentationConfig:
    """Strength of each augmentation (HaMeR's training defaults) and the crop geometry.

    ``box_rescale`` enlarges the tight hand box to the square crop side (HaMeR's demo uses 2.0).
    """

    scale_factor: float = 0.3
    rotation_factor_deg: float = 30.0
    rotation_rate: float = 0.6
    translation_factor: float = 0.02
    translation_rate: float = 0.5
    color_factor: float = 0.2
    flip_rate: float = 0.0
    box_rescale: float = 2.0
    crop_size: int = CROP_SIZE

    def __post_init__(self) -> None:
        for name in ("rotation_rate", "translation_rate", "flip_rate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} is a probability in [0, 1], got {value}")
        if not 0.0 <= self.scale_factor < 1.0:
            raise ValueError(f"scale_factor must be in [0, 1), got {self.scale_factor}")
        if not 0.0 <= self.color_factor < 1.0:
            raise ValueError(f"color_factor must be in [0, 1), got {self.color_factor}")
        if self.box_rescale <= 0 or self.crop_size <= 0:
            raise ValueError("box_rescale and crop_size must be positive")


@dataclass(frozen=True)
class AugmentationParams:
    """One draw of augmentation parameters.

    ``rotation_deg`` turns the crop content by that angle in image coordinates (x right,
    y down: positive is clockwise on screen); ``shift`` moves the crop centre by that fraction
    of the box size; ``color_scale`` multiplies the R, G, B channels.
    """

    scale: float = 1.0
    rotation_deg: float = 0.0
    shift: tuple[float, float] = (0.0, 0.0)
    flip: bool = False
    color_scale: tuple[float, float, float] = (1.0, 1.0, 1.0)


def sample_augmentation(
    config: AugmentationConfig, rng: np.random.Generator
) -> AugmentationParams:
    """Draw parameters the way HaMeR's ``do_augmentation`` does."""
    if rng.random() < config.translation_rate:
        shift = tuple(
            float(np.clip(rng.standard_normal(), -1.0, 1.0) * config.translation_factor)
            for _ in range(2)
        )
    else:
        shift = (0.0, 0.0)
    scale = float(1.0 + np.clip(rng.standard_normal(), -1.0, 1.0) * config.scale_factor)
    rotation = 0.0
    if rng.random() < config.rotation_rate:
        rotation = float(np.clip(rng.standard_normal(), -2.0, 2.0) * config.rotation_factor_deg)
    flip = bool(rng.random() < config.flip_rate)
    low, high = 1.0 - config.color_factor, 1.0 + config.color_factor
    color = tuple(float(v) for v in rng.uniform(low, high, size=3))
    return AugmentationParams(
        scale=scale,
        rotation_deg=rotation,
        shift=shift,
        flip=flip,
        color_scale=color,  # type: ignore[arg-type]
    )


def rotation_about_optical_axis(rotation_deg: float) -> np.ndarray:
    """3x3 rotation about the camera z axis matching an image rotation of ``rotation_deg``."""
    angle = math.radians(rotation_deg)
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def crop_affine(
    box: np.ndarray, params: AugmentationParams, config: AugmentationConfig
) -> np.ndarray:
    """The 2x3 affine map from image pixels to crop pixels for a tight ``box`` (x1, y1, x2, y2).

    The crop is a square of side ``box_rescale * max(w, h) * scale`` around the (shifted) box
    centre, rotated by ``rotation_deg`` and mirrored for a flip; the centre lands on
    ``crop_size / 2``.
    """
    x1, y1, x2, y2 = (float(v) for v in np.asarray(box, dtype=np.float64).reshape(4))
    width, height = x2 - x1, y2 - y1
    if not (width > 0 or height > 0):
        raise ValueError(f"hand box is empty: {box}")
    size = max(width, height)
    centre = np.array([(x1 + x2) / 2.0, (y1 + y2) / 2.0]) + np.asarray(params.shift) * size
    side = config.box_rescale * size * params.scale
    zoom = config.crop_size / side
    linear = zoom * rotation_about_optical_axis(params.rotation_deg)[:2, :2]
    if params.flip:
        linear = np.diag([-1.0, 1.0]) @ linear
    offset = np.full(2, config.crop_size / 2.0) - linear @ centre
    return np.hstack([linear, offset[:, None]])


def fit_box_to_crop_shape(box: np.ndarray) -> np.ndarray:
    """Grow a tight ``(x1, y1, x2, y2)`` box about its centre to HaMeR's 3:4 crop shape.

    The larger side of the result is the side (before enlargement) of the square the
    inference crop cuts around the box (:func:`~fasthmr_ros.pipeline.crop.crop_region`).
    Boxes without area are returned unchanged (:func:`crop_affine` judges them).
    """
    x1, y1, x2, y2 = (float(v) for v in np.asarray(box, dtype=np.float64).reshape(4))
    if not (x2 > x1 and y2 > y1):
        return np.array([x1, y1, x2, y2])
    half = 0.5 * expand_to_aspect_ratio((x2 - x1, y2 - y1))
    centre = np.array([(x1 + x2) / 2.0, (y1 + y2) / 2.0])
    return np.concatenate([centre - half, centre + half])


def apply_affine(points: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """Map ``(K, 2)`` pixel points through a 2x3 affine map."""
    points = np.asarray(points, dtype=np.float64)
    return points @ affine[:, :2].T + affine[:, 2]


def _transform_mano(mano: ManoParameters, rotation: np.ndarray, flip: bool) -> ManoParameters:
    if mano.frame == OPENGL_FRAME:
        rotation = _OPENGL_FLIP @ rotation @ _OPENGL_FLIP
    elif mano.frame != OPENCV_FRAME:
        raise ValueError(f"unknown MANO frame {mano.frame!r}")
    pose = mano.pose.reshape(16, 3).copy()
    global_rot = rotation @ cv2.Rodrigues(pose[0])[0]
    if flip:
        global_rot = _MIRROR_X @ global_rot @ _MIRROR_X
        pose[1:] *= np.array([1.0, -1.0, -1.0])  # mirrored axis-angle: (x, -y, -z)
    pose[0] = cv2.Rodrigues(global_rot)[0].reshape(3)
    unchanged = flip is False and np.allclose(rotation, np.eye(3))
    return replace(
        mano,
        pose=pose.reshape(48),
        # A rotation about the camera moves MANO's translation by an amount that depends on the
        # rest-pose wrist (a function of the shape): it is dropped rather than guessed.
        translation=mano.translation if unchanged else None,
    )


@dataclass
class AugmentedCrop:
    """A training crop and its labels after augmentation.

    ``keypoints_2d`` are crop pixels; ``joints``/``vertices`` are camera-frame metres rotated
    about the optical axis (and x-mirrored for a flip); train on them root-relative.
    """

    image: np.ndarray
    affine: np.ndarray
    side: str
    params: AugmentationParams
    keypoints_2d: np.ndarray | None = None
    joints: np.ndarray | None = None
    vertices: np.ndarray | None = None
    mano: ManoParameters | None = None


def augment_sample(
    image: np.ndarray,
    sample: HandSample,
    params: AugmentationParams,
    config: AugmentationConfig | None = None,
) -> AugmentedCrop:
    """Cut the augmented crop of ``sample`` out of its RGB ``image`` and transform its labels."""
    config = config or AugmentationConfig()
    if sample.box is None:
        raise ValueError(
            f"sample {sample.key} has no hand box: it needs joints and a camera (or a dataset "
            "box) to be cropped"
        )
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be RGB uint8 (H, W, 3), got {image.dtype} {image.shape}")
    affine = crop_affine(fit_box_to_crop_shape(sample.box), params, config)
    crop = cv2.warpAffine(
        image,
        affine,
        (config.crop_size, config.crop_size),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=(0, 0, 0),
    )
    gains = np.asarray(params.color_scale, dtype=np.float32)
    if not np.allclose(gains, 1.0):
        crop = np.clip(crop.astype(np.float32) * gains, 0.0, 255.0).astype(np.uint8)

    rotation = rotation_about_optical_axis(params.rotation_deg)
    points_map = _MIRROR_X @ rotation if params.flip else rotation
    result = AugmentedCrop(
        image=crop,
        affine=affine,
        side=({RIGHT: LEFT, LEFT: RIGHT}[sample.side] if params.flip else sample.side),
        params=params,
    )
    if sample.keypoints_2d is not None:
        result.keypoints_2d = apply_affine(sample.keypoints_2d, affine)
    if sample.joints is not None:
        result.joints = np.asarray(sample.joints, dtype=np.float64) @ points_map.T
    if sample.vertices is not None:
        result.vertices = np.asarray(sample.vertices, dtype=np.float64) @ points_map.T
    if sample.mano is not None:
        result.mano = _transform_mano(sample.mano, rotation, params.flip)
    return result
