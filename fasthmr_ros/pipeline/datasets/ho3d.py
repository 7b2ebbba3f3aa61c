"""HO3D v2 / v3 reader (official layout, github.com/shreyashampali/ho3d).

Layout under the root::

    train.txt  evaluation.txt            # one "<sequence>/<frame id>" per line
    train/<seq>/rgb/<id>.png|jpg         # v2: png, v3: jpg
    train/<seq>/meta/<id>.pkl            # per-frame annotations (Python 2 pickles)
    evaluation/<seq>/rgb/..., evaluation/<seq>/meta/...

Meta keys used: ``camMat`` (3×3), ``handJoints3D`` (train: 21×3 metres in MANO order with the
five fingertips appended as 16–20; evaluation: the wrist only, shape 3), ``handPose`` (48,
axis-angle, ``flat_hand_mean=True``), ``handBeta`` (10), ``handTrans`` (3) and, in the
evaluation split, ``handBoundingBox`` (x1, y1, x2, y2). Coordinates are **OpenGL** (x right,
y up, z backward: the hand has negative z); we negate y and z to reach the optical frame and
re-order the joints to OpenPose order. Some frames lack annotations (``None`` values): their
samples have ``joints=None``. Every hand is a right hand. The pickles are loaded with a
restricted unpickler (numpy arrays and plain containers only).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fasthmr_ros.models.constants import MANO_TO_OPENPOSE, NUM_BETAS, NUM_JOINTS
from fasthmr_ros.pipeline.datasets.restricted_pickle import load_restricted_pickle
from fasthmr_ros.pipeline.datasets.sample import (
    OPENGL_FRAME,
    DatasetFormatError,
    HandSample,
    ManoParameters,
    labelled_geometry,
)
from fasthmr_ros.pipeline.results import RIGHT, CameraIntrinsics

HO3D_SPLITS: tuple[str, ...] = ("train", "evaluation")
#: Multiplies OpenGL coordinates (y up, z backward) into the optical frame (y down, z forward).
OPENGL_TO_OPTICAL: np.ndarray = np.array([1.0, -1.0, -1.0])
_IMAGE_SUFFIXES: tuple[str, ...] = (".jpg", ".png")


def opengl_to_optical(points: np.ndarray) -> np.ndarray:
    """Convert ``(..., 3)`` OpenGL camera coordinates to the optical frame (negate y and z)."""
    return np.asarray(points, dtype=np.float64) * OPENGL_TO_OPTICAL


class HO3D(Sequence[HandSample]):
    """HO3D v2 or v3 samples (the version is told by the image suffix: png v2, jpg v3).

    Args:
        root: the folder holding ``train.txt``, ``evaluation.txt``, ``train/``, ``evaluation/``.
        split: ``"train"`` or ``"evaluation"``.

    """

    def __init__(self, root: Path | str, split: str = "train") -> None:
        self.root = Path(root)
        if split not in HO3D_SPLITS:
            raise ValueError(f"HO3D split must be one of {HO3D_SPLITS}, got {split!r}")
        self.split = split
        if not self.root.is_dir():
            raise FileNotFoundError(f"HO3D root is not a folder: {self.root}")
        list_path = self.root / f"{split}.txt"
        if not list_path.is_file():
            raise FileNotFoundError(
                f"{list_path} not found: point the root at the unpacked HO3D folder (the one "
                f"holding {split}.txt and {split}/)"
            )
        self.frames: list[tuple[str, str]] = []
        for number, line in enumerate(list_path.read_text().splitlines(), start=1):
            line = line.strip()
            if not line:
                continue
            parts = line.split("/")
            if len(parts) != 2 or not all(parts):
                raise DatasetFormatError(
                    f"{list_path}:{number}: expected '<sequence>/<frame id>', got {line!r}"
                )
            self.frames.append((parts[0], parts[1]))
        if not self.frames:
            raise DatasetFormatError(f"{list_path} lists no frames")
        self.image_suffix = self._detect_suffix()
        self.version = "v3" if self.image_suffix == ".jpg" else "v2"

    def _detect_suffix(self) -> str:
        seq, frame = self.frames[0]
        rgb = self.root / self.split / seq / "rgb"
        for suffix in _IMAGE_SUFFIXES:
            if (rgb / f"{frame}{suffix}").is_file():
                return suffix
        raise FileNotFoundError(
            f"no image for the first listed frame: neither {rgb / (frame + '.jpg')} (v3) nor "
            f"{rgb / (frame + '.png')} (v2) exists"
        )

    def __len__(self) -> int:
        return len(self.frames)

    def meta_path(self, index: int) -> Path:
        """Annotation pickle of sample ``index``."""
        seq, frame = self.frames[index]
        return self.root / self.split / seq / "meta" / f"{frame}.pkl"

    def __getitem__(self, index: int) -> HandSample:  # type: ignore[override]
        """The sample at ``index``; reads its annotation pickle."""
        if not isinstance(index, (int, np.integer)) or isinstance(index, bool):
            raise TypeError(f"sample index must be an integer, got {type(index).__name__}")
        if not -len(self) <= index < len(self):
            raise IndexError(f"sample index {index} out of range for {len(self)} samples")
        seq, frame = self.frames[index]
        meta_path = self.meta_path(index)
        meta = load_restricted_pickle(meta_path)
        if not isinstance(meta, dict):
            raise DatasetFormatError(f"{meta_path} must hold a dict, got {type(meta).__name__}")
        sample = HandSample(
            dataset=f"ho3d_{self.version}",
            key=f"{self.split}/{seq}/{frame}",
            image_path=self.root / self.split / seq / "rgb" / f"{frame}{self.image_suffix}",
            side=RIGHT,
        )
        camera = _camera(meta.get("camMat"))
        sample.camera = camera
        joints = _array(meta.get("handJoints3D"))
        if joints is not None and joints.shape == (NUM_JOINTS, 3):
            if camera is None:
                raise DatasetFormatError(
                    f"{meta_path}: camMat is missing or not a camera matrix (3x3, finite, "
                    "positive focal lengths), so the 21 hand joints cannot be projected"
                )
            sample.joints = opengl_to_optical(joints[list(MANO_TO_OPENPOSE)])
            sample.keypoints_2d, sample.box = labelled_geometry(sample.joints, camera)
            sample.root_joint = sample.joints[0].copy()
        elif joints is not None and joints.shape in ((3,), (1, 3)):
            sample.root_joint = opengl_to_optical(joints.reshape(3))
        elif joints is not None:
            raise DatasetFormatError(
                f"{meta_path}: handJoints3D has shape {joints.shape}, expected (21, 3) or (3,)"
            )
        box = _array(meta.get("handBoundingBox"))
        if sample.box is None and box is not None and box.shape == (4,):
            sample.box = box
        sample.mano = _mano(meta)
        return sample


def _array(value: Any) -> np.ndarray | None:
    if value is None:
        return None
    array = np.asarray(value, dtype=np.float64)
    if not np.all(np.isfinite(array)):
        return None
    return array


def _camera(value: Any) -> CameraIntrinsics | None:
    matrix = _array(value)
    if matrix is None or matrix.shape != (3, 3) or matrix[0, 0] <= 0 or matrix[1, 1] <= 0:
        return None
    return CameraIntrinsics.from_matrix(matrix)


def _mano(meta: dict) -> ManoParameters | None:
    pose = _array(meta.get("handPose"))
    betas = _array(meta.get("handBeta"))
    if pose is None or betas is None or pose.size != 48 or betas.size != NUM_BETAS:
        return None
    trans = _array(meta.get("handTrans"))
    return ManoParameters(
        pose=pose.reshape(48),
        betas=betas.reshape(NUM_BETAS),
        translation=None if trans is None or trans.size != 3 else trans.reshape(3),
        flat_hand_mean=True,
        frame=OPENGL_FRAME,
    )
