"""FreiHAND reader (official layout of ``FreiHAND_pub_v2``, github.com/lmb-freiburg/freihand).

Layout under the root::

    training_K.json  training_xyz.json  training_mano.json  [training_verts.json]
    training/rgb/%08d.jpg   training/mask/%08d.jpg
    evaluation_K.json  [evaluation_xyz.json  evaluation_verts.json  evaluation_mano.json]
    evaluation/rgb/%08d.jpg

Annotations are lists with one entry per *unique* sample (32,560 training, 3,960 evaluation):
``K`` 3×3, ``xyz`` 21×3 metres in the camera frame (already x right, y down, z forward, and
already in OpenPose hand order), ``verts`` 778×3 metres, ``mano`` 1×61 (48 pose, 10 shape, then
2 root pixel coordinates and 1 scale; pose relative to MANO's mean hand, i.e.
``flat_hand_mean=False``). Each training sample exists in four appearance versions stored one
after another: image id = ``index + n_unique * v`` with ``v`` in ``gs`` (green screen), ``hom``,
``sample``, ``auto`` order (the toolbox's ``sample_version.map_id``). Masks exist once per unique
sample. The evaluation split has only the ``gs`` version. All hands are right hands.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from fasthmr_ros.models.constants import NUM_BETAS, NUM_JOINTS, NUM_VERTICES
from fasthmr_ros.pipeline.datasets.sample import (
    OPENCV_FRAME,
    DatasetFormatError,
    HandSample,
    ManoParameters,
    labelled_geometry,
)
from fasthmr_ros.pipeline.results import RIGHT, CameraIntrinsics

#: Appearance versions of each training sample, in the order their images are stored.
FREIHAND_VERSIONS: tuple[str, ...] = ("gs", "hom", "sample", "auto")
FREIHAND_SPLITS: tuple[str, ...] = ("training", "evaluation")
_MANO_VALUES = 61


def _read_json(path: Path) -> object:
    try:
        with path.open("r", encoding="utf-8") as handle:
            return json.load(handle)
    except json.JSONDecodeError as exc:
        raise DatasetFormatError(f"{path} is not valid JSON: {exc}") from exc


def load_annotation_array(path: Path | str, tail: tuple[int, ...], what: str) -> np.ndarray:
    """Read a FreiHAND-style JSON list as a ``(N, *tail)`` float64 array, checking its shape."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"missing {what} file: {path}")
    data = _read_json(path)
    if not isinstance(data, list):
        raise DatasetFormatError(f"{path} must hold a JSON list with one entry per sample")
    try:
        array = np.asarray(data, dtype=np.float64)
    except (ValueError, TypeError) as exc:
        raise DatasetFormatError(
            f"{path}: entries are not all numeric arrays of shape {tail} ({exc})"
        ) from exc
    if array.shape[1:] != tail and not (len(data) == 0 and array.ndim == 1):
        raise DatasetFormatError(
            f"{path}: expected {what} entries of shape {tail}, got array shape {array.shape}"
        )
    if not np.all(np.isfinite(array)):
        raise DatasetFormatError(f"{path} contains NaN or infinite values")
    return array.reshape((len(data),) + tail)


def load_freihand_ground_truth(
    root: Path | str, set_name: str = "evaluation"
) -> tuple[np.ndarray, np.ndarray]:
    """Read what FreiHAND's evaluation script reads: ``<set>_xyz.json`` and ``<set>_verts.json``.

    Returns:
        ``(joints (N, 21, 3), vertices (N, 778, 3))`` in metres.

    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"FreiHAND root is not a folder: {root}")
    joints = load_annotation_array(root / f"{set_name}_xyz.json", (NUM_JOINTS, 3), "joint")
    vertices = load_annotation_array(root / f"{set_name}_verts.json", (NUM_VERTICES, 3), "vertex")
    if len(joints) != len(vertices):
        raise DatasetFormatError(
            f"{set_name}_xyz.json has {len(joints)} samples but {set_name}_verts.json has "
            f"{len(vertices)}"
        )
    return joints, vertices


class FreiHAND(Sequence[HandSample]):
    """FreiHAND samples with camera, joints, box and MANO parameters.

    Args:
        root: the folder holding ``training/``, ``evaluation/`` and the ``*_K.json`` files.
        split: ``"training"`` or ``"evaluation"``.
        versions: appearance versions to include (training only); default all four, giving
            ``4 * n_unique`` samples ordered like the image ids.
        load_vertices: also read ``<split>_verts.json`` (about 0.6 GB as JSON for training).

    """

    def __init__(
        self,
        root: Path | str,
        split: str = "training",
        versions: Sequence[str] | None = None,
        load_vertices: bool = False,
    ) -> None:
        self.root = Path(root)
        if split not in FREIHAND_SPLITS:
            raise ValueError(f"FreiHAND split must be one of {FREIHAND_SPLITS}, got {split!r}")
        self.split = split
        if not self.root.is_dir():
            raise FileNotFoundError(f"FreiHAND root is not a folder: {self.root}")
        k_path = self.root / f"{split}_K.json"
        if not k_path.is_file():
            raise FileNotFoundError(
                f"{k_path} not found: point the root at the unpacked FreiHAND folder (the one "
                f"holding {split}/ and {split}_K.json)"
            )
        if versions is None:
            versions = FREIHAND_VERSIONS if split == "training" else ("gs",)
        unknown = [v for v in versions if v not in FREIHAND_VERSIONS]
        if unknown or not versions:
            raise ValueError(
                f"FreiHAND versions must be a non-empty subset of {FREIHAND_VERSIONS}, "
                f"got {list(versions)}"
            )
        if split == "evaluation" and tuple(versions) != ("gs",):
            raise ValueError("the FreiHAND evaluation split only has the 'gs' version")
        self.versions = tuple(versions)

        self._K = load_annotation_array(k_path, (3, 3), "camera matrix")
        self.num_unique = len(self._K)
        self._xyz = self._optional(f"{split}_xyz.json", (NUM_JOINTS, 3), "joint", split)
        self._mano = self._optional(f"{split}_mano.json", (1, _MANO_VALUES), "MANO", None)
        self._verts = (
            self._optional(f"{split}_verts.json", (NUM_VERTICES, 3), "vertex", split)
            if load_vertices
            else None
        )

    def _optional(
        self, name: str, tail: tuple[int, ...], what: str, required_for: str | None
    ) -> np.ndarray | None:
        path = self.root / name
        if not path.is_file():
            if required_for == "training":
                raise FileNotFoundError(f"missing {what} file {path} (needed for training)")
            return None
        if what == "MANO":
            array = self._load_mano(path)
        else:
            array = load_annotation_array(path, tail, what)
        if len(array) != self.num_unique:
            raise DatasetFormatError(
                f"{path} has {len(array)} entries but {self.split}_K.json has {self.num_unique}"
            )
        return array

    @staticmethod
    def _load_mano(path: Path) -> np.ndarray:
        data = _read_json(path)
        try:
            array = np.asarray(data, dtype=np.float64)
        except (ValueError, TypeError) as exc:
            raise DatasetFormatError(f"{path}: MANO entries are not numeric ({exc})") from exc
        if array.ndim == 2:  # tolerate flat (N, 61)
            array = array[:, None, :]
        if array.ndim != 3 or array.shape[1:] != (1, _MANO_VALUES):
            raise DatasetFormatError(
                f"{path}: expected MANO entries of shape (1, {_MANO_VALUES}), got {array.shape}"
            )
        return array

    def __len__(self) -> int:
        return self.num_unique * len(self.versions)

    def image_path(self, index: int) -> Path:
        """Image file of sample ``index`` (0 <= index < len)."""
        version_slot, unique = divmod(self._check_index(index), self.num_unique)
        version_index = FREIHAND_VERSIONS.index(self.versions[version_slot])
        image_id = unique + self.num_unique * version_index
        return self.root / self.split / "rgb" / f"{image_id:08d}.jpg"

    def _check_index(self, index: int) -> int:
        if not isinstance(index, (int, np.integer)) or isinstance(index, bool):
            raise TypeError(f"sample index must be an integer, got {type(index).__name__}")
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"sample index {index} out of range for {len(self)} samples")
        return int(index)

    def __getitem__(self, index: int) -> HandSample:  # type: ignore[override]
        """The sample at ``index``; its image is read on demand by ``load_image``."""
        index = self._check_index(index)
        version_slot, unique = divmod(index, self.num_unique)
        camera = CameraIntrinsics.from_matrix(self._K[unique])
        sample = HandSample(
            dataset="freihand",
            key=f"{self.split}/{self.versions[version_slot]}/{unique:08d}",
            image_path=self.image_path(index),
            side=RIGHT,
            camera=camera,
        )
        if self.split == "training":
            sample.mask_path = self.root / "training" / "mask" / f"{unique:08d}.jpg"
        if self._xyz is not None:
            sample.joints = self._xyz[unique].copy()
            sample.keypoints_2d, sample.box = labelled_geometry(sample.joints, camera)
            sample.root_joint = sample.joints[0].copy()
        if self._verts is not None:
            sample.vertices = self._verts[unique].copy()
        if self._mano is not None:
            theta = self._mano[unique, 0]
            sample.mano = ManoParameters(
                pose=theta[:48].copy(),
                betas=theta[48 : 48 + NUM_BETAS].copy(),
                translation=None,
                flat_hand_mean=False,
                frame=OPENCV_FRAME,
            )
        return sample
