"""Training crops: labelled dataset samples, cached crops of unlabelled footage, plain tensors.

Every dataset here maps an item key ``(step, slot, index)`` to one training item, a dict of
numpy arrays: ``crops`` ``(3, 256, 256)`` float32 (ImageNet-normalised RGB, a right hand) and,
for labelled data, the labels in the layout of :func:`fasthmr_ros.training.losses.hand_targets`
with the masks ``has_joints`` and ``has_mano``. Augmentation draws its parameters from a
generator seeded with ``(seed, step, slot)``, and :class:`StepBatchSampler` orders the samples
from ``(seed, epoch)``: the batch of any step is a pure function of the step, so a resumed run
sees exactly the data an uninterrupted one would, with any number of loader workers.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.spatial.transform import Rotation
from torch.utils.data import Dataset, Sampler

from fasthmr_ros.models.constants import CROP_SIZE, IMAGE_MEAN, IMAGE_STD, NUM_JOINTS
from fasthmr_ros.pipeline.augmentation import (
    AugmentationConfig,
    AugmentationParams,
    augment_sample,
    crop_affine,
    sample_augmentation,
)
from fasthmr_ros.pipeline.box_sources import HandDetector, JsonBoxes
from fasthmr_ros.pipeline.crop import DEFAULT_RESCALE_FACTOR, crop_hand, normalize_crop
from fasthmr_ros.pipeline.datasets.media import VIDEO_SUFFIXES, MediaFrame
from fasthmr_ros.pipeline.datasets.sample import OPENGL_FRAME, HandSample, ManoParameters
from fasthmr_ros.pipeline.results import LEFT, HandBox

LOG = logging.getLogger(__name__)

ItemKey = tuple[int, int, int]
Item = dict[str, np.ndarray]

#: Converts OpenGL camera coordinates (y up, z backward) to the optical frame.
_OPENGL_TO_OPTICAL = np.diag([1.0, -1.0, -1.0])
_MEAN_255 = 255.0 * np.asarray(IMAGE_MEAN, dtype=np.float32)[:, None, None]
_STD_255 = 255.0 * np.asarray(IMAGE_STD, dtype=np.float32)[:, None, None]


def item_rng(seed: int, step: int, slot: int) -> np.random.Generator:
    """The generator of one item's augmentation."""
    return np.random.default_rng([seed, step, slot])


class StepBatchSampler(Sampler[list[ItemKey]]):
    """Batches of item keys for steps ``start_step .. total_steps - 1``.

    Samples are visited in a fresh permutation each epoch (seeded with ``(seed, epoch)``); the
    ``b``-th item of step ``s`` is position ``s * batch_size + b`` of that endless sequence.
    """

    def __init__(
        self, num_samples: int, batch_size: int, seed: int, start_step: int, total_steps: int
    ) -> None:
        if num_samples < 1:
            raise ValueError("the training set is empty")
        if batch_size < 1:
            raise ValueError(f"batch size must be >= 1, got {batch_size}")
        self.num_samples = num_samples
        self.batch_size = batch_size
        self.seed = seed
        self.start_step = start_step
        self.total_steps = total_steps
        self._epoch = -1
        self._order = np.arange(num_samples)

    def _index(self, position: int) -> int:
        epoch, offset = divmod(position, self.num_samples)
        if epoch != self._epoch:
            self._order = np.random.default_rng([self.seed, epoch]).permutation(self.num_samples)
            self._epoch = epoch
        return int(self._order[offset])

    def keys(self, step: int) -> list[ItemKey]:
        """The item keys of ``step``."""
        first = step * self.batch_size
        return [(step, slot, self._index(first + slot)) for slot in range(self.batch_size)]

    def __iter__(self) -> Iterator[list[ItemKey]]:
        for step in range(self.start_step, self.total_steps):
            yield self.keys(step)

    def __len__(self) -> int:
        return max(0, self.total_steps - self.start_step)


class CropDataset(Dataset):
    """Base of the training datasets: ``load(index, rng)`` builds an item.

    ``rng`` is ``None`` for an item without augmentation (validation, cached teacher targets).
    """

    def __init__(self, seed: int = 0, augment: bool = True) -> None:
        self.seed = seed
        self.augment = augment

    def __len__(self) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    def load(self, index: int, rng: np.random.Generator | None) -> Item:  # pragma: no cover
        """Build the item of sample ``index``; augment when ``rng`` is given."""
        raise NotImplementedError

    @property
    def labelled(self) -> bool:
        """Whether items carry ground-truth labels."""
        return False

    def __getitem__(self, key: ItemKey) -> Item:
        step, slot, index = key
        rng = item_rng(self.seed, step, slot) if self.augment else None
        return self.load(index, rng)


class TensorCrops(CropDataset):
    """Already normalised crops ``(N, 3, 256, 256)`` (no augmentation)."""

    def __init__(self, crops: torch.Tensor | np.ndarray) -> None:
        super().__init__(augment=False)
        array = np.asarray(crops, dtype=np.float32)
        if array.ndim != 4 or array.shape[1:] != (3, CROP_SIZE, CROP_SIZE):
            raise ValueError(f"crops must have shape (N, 3, 256, 256), got {array.shape}")
        self.crops = array

    def __len__(self) -> int:
        return len(self.crops)

    def load(self, index: int, rng: np.random.Generator | None) -> Item:
        """The crop as it is."""
        return {"crops": self.crops[index], "index": np.int64(index)}


def denormalize_crop(crop: np.ndarray) -> np.ndarray:
    """Turn a normalised ``(3, H, W)`` crop back into ``H x W x 3`` uint8 RGB (rounded)."""
    rgb = np.asarray(crop, dtype=np.float32) * _STD_255 + _MEAN_255
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8).transpose(1, 2, 0)


def mano_rotations(
    mano: ManoParameters, hand_mean: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """A dataset's MANO pose as the network predicts it: absolute rotation matrices.

    Returns ``global_orient`` ``(1, 3, 3)`` in the optical frame and ``hand_pose``
    ``(15, 3, 3)``; poses stored relative to MANO's mean hand get ``hand_mean`` (45) added.
    """
    pose = np.asarray(mano.pose, dtype=np.float64).reshape(16, 3).copy()
    if not mano.flat_hand_mean:
        pose[1:] += np.asarray(hand_mean, dtype=np.float64).reshape(15, 3)
    rotations = Rotation.from_rotvec(pose).as_matrix()
    if mano.frame == OPENGL_FRAME:
        rotations[0] = _OPENGL_TO_OPTICAL @ rotations[0]
    return rotations[:1], rotations[1:]


def empty_labels() -> Item:
    """Label arrays of an item without labels (all masks 0)."""
    return {
        "keypoints_2d": np.zeros((NUM_JOINTS, 2), np.float32),
        "joints_rel": np.zeros((NUM_JOINTS, 3), np.float32),
        "global_orient": np.tile(np.eye(3, dtype=np.float32), (1, 1, 1)),
        "hand_pose": np.tile(np.eye(3, dtype=np.float32), (15, 1, 1)),
        "betas": np.zeros(10, np.float32),
        "has_joints": np.float32(0.0),
        "has_mano": np.float32(0.0),
    }


class LabelledCrops(CropDataset):
    """Augmented crops and labels from a dataset reader (FreiHAND, HO3D: ``HandSample`` items).

    Samples without a hand box (HO3D frames lacking annotations) are replaced by the next
    sample that has one. Left hands are mirrored into right ones (as at inference), so the
    network always sees a right hand.

    Args:
        samples: the reader.
        hand_mean: MANO's mean finger pose (45), added to poses stored relative to it
            (``regressor.mano.hand_mean``).
        augmentation: strengths; HaMeR's training values by default.
        seed: seeds the augmentation.
        augment: ``False`` for plain crops (validation).

    """

    def __init__(
        self,
        samples: Sequence[HandSample],
        hand_mean: np.ndarray,
        augmentation: AugmentationConfig | None = None,
        seed: int = 0,
        augment: bool = True,
    ) -> None:
        super().__init__(seed=seed, augment=augment)
        if len(samples) == 0:
            raise ValueError("the dataset holds no samples")
        self.samples = samples
        self.hand_mean = np.asarray(hand_mean, dtype=np.float64).reshape(45)
        self.augmentation = augmentation or AugmentationConfig()

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def labelled(self) -> bool:
        """Items carry labels."""
        return True

    def _sample_with_box(self, index: int) -> HandSample:
        for offset in range(len(self.samples)):
            sample = self.samples[(index + offset) % len(self.samples)]
            if sample.box is not None:
                return sample
        raise ValueError("no sample of the dataset has a hand box (joints and a camera)")

    def load(self, index: int, rng: np.random.Generator | None) -> Item:
        """Crop, augment (with ``rng``) and label sample ``index``."""
        sample = self._sample_with_box(index)
        params = sample_augmentation(self.augmentation, rng) if rng is not None else None
        params = replace(params or AugmentationParams(), flip=sample.side == LEFT)
        crop = augment_sample(sample.load_image(), sample, params, self.augmentation)
        item = {"crops": normalize_crop(crop.image), "index": np.int64(index), **empty_labels()}
        if crop.joints is not None and crop.keypoints_2d is not None:
            item["joints_rel"] = (crop.joints - crop.joints[:1]).astype(np.float32)
            item["keypoints_2d"] = (crop.keypoints_2d / self.augmentation.crop_size - 0.5).astype(
                np.float32
            )
            item["has_joints"] = np.float32(1.0)
        if crop.mano is not None:
            global_orient, hand_pose = mano_rotations(crop.mano, self.hand_mean)
            item["global_orient"] = global_orient.astype(np.float32)
            item["hand_pose"] = hand_pose.astype(np.float32)
            item["betas"] = np.asarray(crop.mano.betas, dtype=np.float32).reshape(10)
            item["has_mano"] = np.float32(1.0)
        return item


#: Where the hands of a frame are: ``boxes(frame) -> [HandBox, ...]``.
FrameBoxes = Callable[[MediaFrame], list[HandBox]]


def detector_boxes(detector: HandDetector) -> FrameBoxes:
    """Hands of each frame from any :class:`HandDetector` (e.g. MediaPipe, full-frame)."""
    if not callable(getattr(detector, "detect", None)):
        raise TypeError(f"{type(detector).__name__} has no detect(image_rgb) method")
    return lambda frame: detector.detect(frame.image)


def file_boxes(boxes: JsonBoxes) -> FrameBoxes:
    """Hands of each frame from a box file.

    Keys are looked up as :class:`JsonBoxes` does: an image's file name or stem, a video
    frame's name ``<video stem>_<frame:06d>`` (as ``fasthmr hands`` names it), or the running
    index of the frame over the whole input (from 0). Names identify a frame the same way in
    both commands; the running index counts the frames read here (after ``frame_step``, folders
    searched recursively), so it matches ``fasthmr hands`` only for the same flat input read
    frame by frame.
    """
    counter = iter(range(2**62))

    def lookup(frame: MediaFrame) -> list[HandBox]:
        index = next(counter)
        if frame.source.suffix.lower() in VIDEO_SUFFIXES:
            name = f"{frame.source.stem}_{frame.frame_index:06d}"
        else:
            name = frame.source.name
        return boxes.boxes_for(name, index)

    return lookup


_CROPS_FILE = "crops.u8"
_INDEX_FILE = "index.json"
_CROP_BYTES = CROP_SIZE * CROP_SIZE * 3


class CropCache:
    """Hand crops of unlabelled footage stored on disk as ``uint8`` RGB (right hands).

    ``DIR/crops.u8`` holds ``N x 256 x 256 x 3`` bytes; ``DIR/index.json`` the origin of each
    crop (``source``, ``frame``, ``side``, ``score``, ``box``) and the ``recipe`` it was made
    with (input, detector, box enlargement), so a cache is reused only for the same recipe.
    """

    def __init__(self, directory: Path | str) -> None:
        self.directory = Path(directory)
        index_path = self.directory / _INDEX_FILE
        if not index_path.is_file():
            raise FileNotFoundError(f"no crop cache in {self.directory} ({_INDEX_FILE} missing)")
        index = json.loads(index_path.read_text())
        self.recipe: dict[str, Any] = index["recipe"]
        self.entries: list[dict[str, Any]] = index["crops"]
        data_path = self.directory / _CROPS_FILE
        expected = len(self.entries) * _CROP_BYTES
        if not data_path.is_file() or data_path.stat().st_size != expected:
            raise ValueError(
                f"crop cache {self.directory} is incomplete ({_CROPS_FILE} should hold "
                f"{expected} bytes); delete the folder to rebuild it"
            )
        self._array: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.entries)

    def image(self, index: int) -> np.ndarray:
        """Crop ``index`` as ``256 x 256 x 3`` uint8 RGB."""
        if self._array is None:  # opened lazily: loader workers each map the file themselves
            self._array = np.memmap(
                self.directory / _CROPS_FILE, dtype=np.uint8, mode="r",
                shape=(len(self.entries), CROP_SIZE, CROP_SIZE, 3),
            )
        return np.asarray(self._array[index])

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_array"] = None
        return state

    @classmethod
    def build(
        cls,
        frames: Iterable[MediaFrame],
        boxes: FrameBoxes,
        directory: Path | str,
        recipe: dict[str, Any],
        rescale_factor: float = DEFAULT_RESCALE_FACTOR,
        min_score: float = 0.0,
        progress: Callable[[Iterable[MediaFrame]], Iterable[MediaFrame]] | None = None,
    ) -> CropCache:
        """Find the hands of ``frames`` with ``boxes``, crop them as HaMeR does, store the crops.

        Reuses an existing cache in ``directory`` when its recipe equals ``recipe`` (a plain
        dict describing the input and the box source).
        """
        directory = Path(directory)
        recipe = {**recipe, "rescale_factor": rescale_factor, "min_score": min_score}
        try:
            existing = cls(directory)
        except (FileNotFoundError, ValueError, KeyError, json.JSONDecodeError):
            existing = None
        if existing is not None and existing.recipe == recipe:
            LOG.info("re-using %d cached crops in %s", len(existing), directory)
            return existing
        directory.mkdir(parents=True, exist_ok=True)
        entries: list[dict[str, Any]] = []
        frames = progress(frames) if progress is not None else frames
        with open(directory / _CROPS_FILE, "wb") as stream:
            for frame in frames:
                for box in boxes(frame):
                    if box.score < min_score:
                        continue
                    crop = crop_hand(frame.image, box, rescale_factor)
                    stream.write(denormalize_crop(crop.image).tobytes())
                    entries.append({
                        "source": str(frame.source),
                        "frame": int(frame.frame_index),
                        "side": box.side,
                        "score": float(box.score),
                        "box": [float(v) for v in box.xyxy],
                    })
        if not entries:
            raise ValueError(
                "no hands were found in the footage: check the detector, the box file or the "
                "input folder"
            )
        (directory / _INDEX_FILE).write_text(json.dumps({"recipe": recipe, "crops": entries}))
        return cls(directory)


class CachedCrops(CropDataset):
    """Crops of a :class:`CropCache`, optionally re-augmented (scale, rotation, shift, colour).

    Augmentation re-warps the stored crop about its centre with parameters drawn as for
    labelled data (flips excluded: the crop must stay a right hand). It is only coherent when
    the teacher sees the same augmented crop, i.e. with teacher targets computed on the fly.
    """

    def __init__(
        self,
        cache: CropCache,
        augmentation: AugmentationConfig | None = None,
        seed: int = 0,
        augment: bool = True,
    ) -> None:
        super().__init__(seed=seed, augment=augment)
        self.cache = cache
        self.augmentation = replace(
            augmentation or AugmentationConfig(), flip_rate=0.0, box_rescale=1.0
        )

    def __len__(self) -> int:
        return len(self.cache)

    def load(self, index: int, rng: np.random.Generator | None) -> Item:
        """The stored crop, augmented when ``rng`` is given."""
        import cv2

        image = self.cache.image(index)
        if rng is not None:
            params = sample_augmentation(self.augmentation, rng)
            affine = crop_affine(
                np.array([0.0, 0.0, CROP_SIZE, CROP_SIZE]), params, self.augmentation
            )
            image = cv2.warpAffine(
                image, affine, (CROP_SIZE, CROP_SIZE), flags=cv2.INTER_LINEAR,
                borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0),
            )
            gains = np.asarray(params.color_scale, dtype=np.float32)
            image = np.clip(image.astype(np.float32) * gains, 0.0, 255.0).astype(np.uint8)
        return {"crops": normalize_crop(image), "index": np.int64(index)}


def validation_split(count: int, requested: int) -> tuple[list[int], list[int]]:
    """Split ``range(count)`` into training and validation indices (validation at the end).

    At most a fifth of the data is held out, and nothing when fewer than 5 samples exist.
    """
    held_out = min(max(0, requested), count // 5)
    cut = count - held_out
    return list(range(cut)), list(range(cut, count))


class IndexSubset(CropDataset):
    """A view of ``dataset`` restricted to ``indices`` (its augmentation settings kept)."""

    def __init__(self, dataset: CropDataset, indices: Sequence[int]) -> None:
        super().__init__(seed=dataset.seed, augment=dataset.augment)
        if not indices:
            raise ValueError("empty subset")
        self.dataset = dataset
        self.indices = list(indices)

    def __len__(self) -> int:
        return len(self.indices)

    @property
    def labelled(self) -> bool:
        """As the underlying dataset."""
        return self.dataset.labelled

    def load(self, index: int, rng: np.random.Generator | None) -> Item:
        """Item ``indices[index]`` of the underlying dataset."""
        return self.dataset.load(self.indices[index], rng)


def stack_items(items: Sequence[Item]) -> dict[str, torch.Tensor]:
    """Collate items into a batch of tensors."""
    return {key: torch.from_numpy(np.stack([item[key] for item in items])) for key in items[0]}


def validation_batch(dataset: CropDataset, indices: Sequence[int]) -> dict[str, torch.Tensor]:
    """Un-augmented items ``indices`` of ``dataset`` as one batch."""
    return stack_items([dataset.load(i, None) for i in indices])
