"""Teacher outputs computed once and stored, for output-level distillation without the teacher.

Running a ViT-H teacher costs far more than a student's training step. When the crops do not
change between epochs (unlabelled footage without augmentation), the teacher's outputs can be
computed once, stored next to the crops, and served with each item under ``teacher_*`` keys.
Feature-level distillation needs the teacher's feature maps (hundreds of kilobytes per crop),
so it always runs the teacher on the fly.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import torch

from fasthmr_ros.models.regressor import HandMeshRegressor
from fasthmr_ros.training.data import CropDataset, Item, stack_items

LOG = logging.getLogger(__name__)

#: Stored teacher outputs (the inputs of :func:`fasthmr_ros.training.losses.hand_targets`).
STORED_OUTPUTS: tuple[str, ...] = ("joints", "cam", "global_orient", "hand_pose", "betas")
PREFIX = "teacher_"


def teacher_fingerprint(teacher: HandMeshRegressor) -> str:
    """A short identity of the teacher's weights (to refuse stale stored targets)."""
    digest = torch.zeros((), dtype=torch.float64)
    for index, (_, value) in enumerate(sorted(teacher.state_dict().items())):
        if value.is_floating_point() and value.numel():
            flat = value.detach().reshape(-1).double()
            digest = digest + (index + 1) * (flat[:64].sum() + flat[-64:].sum() + flat.sum())
    return f"{len(teacher.state_dict())}:{float(digest):.10e}"


@torch.no_grad()
def compute_teacher_outputs(
    teacher: HandMeshRegressor,
    dataset: CropDataset,
    batch_size: int,
    device: str | torch.device,
    autocast_dtype: torch.dtype | None = None,
    progress: Callable[[Iterable[int]], Iterable[int]] | None = None,
) -> dict[str, np.ndarray]:
    """Run the teacher (eval mode) on every un-augmented item of ``dataset``."""
    teacher.eval()
    device = torch.device(device)
    starts: Iterable[int] = range(0, len(dataset), batch_size)
    if progress is not None:
        starts = progress(starts)
    parts: dict[str, list[np.ndarray]] = {key: [] for key in STORED_OUTPUTS}
    for start in starts:
        indices = range(start, min(len(dataset), start + batch_size))
        crops = stack_items([dataset.load(i, None) for i in indices])["crops"].to(device)
        with torch.autocast(
            device.type, dtype=autocast_dtype or torch.float32, enabled=autocast_dtype is not None
        ):
            params = teacher.forward_network(crops)
        outputs = teacher.run_mano({k: v.float() for k, v in params.items()})
        for key in STORED_OUTPUTS:
            parts[key].append(outputs[key].float().cpu().numpy())
    return {key: np.concatenate(values) for key, values in parts.items()}


class TeacherTargets:
    """Teacher outputs for each item index, stored in one ``.npz`` with the teacher's identity."""

    def __init__(self, outputs: dict[str, np.ndarray], fingerprint: str) -> None:
        missing = [key for key in STORED_OUTPUTS if key not in outputs]
        if missing:
            raise ValueError(f"teacher targets lack {missing}")
        counts = {len(outputs[key]) for key in STORED_OUTPUTS}
        if len(counts) != 1:
            raise ValueError(f"teacher target arrays differ in length: {sorted(counts)}")
        self.outputs = {key: np.asarray(outputs[key], dtype=np.float32) for key in STORED_OUTPUTS}
        self.fingerprint = fingerprint

    def __len__(self) -> int:
        return len(self.outputs["joints"])

    def save(self, path: Path | str) -> Path:
        """Write the targets to ``path`` (``.npz``)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as stream:
            np.savez(stream, fingerprint=np.array(self.fingerprint), **self.outputs)
        return path

    @classmethod
    def load(cls, path: Path | str) -> TeacherTargets:
        """Read targets written by :meth:`save`."""
        with np.load(Path(path), allow_pickle=False) as data:
            return cls({key: data[key] for key in STORED_OUTPUTS}, str(data["fingerprint"]))

    @classmethod
    def for_dataset(
        cls,
        path: Path | str,
        teacher: HandMeshRegressor,
        dataset: CropDataset,
        batch_size: int,
        device: str | torch.device,
        autocast_dtype: torch.dtype | None = None,
        progress: Callable[[Iterable[int]], Iterable[int]] | None = None,
    ) -> TeacherTargets:
        """Load stored targets when they match the teacher and the data, else compute them."""
        path = Path(path)
        fingerprint = teacher_fingerprint(teacher)
        if path.is_file():
            try:
                stored = cls.load(path)
            except (OSError, ValueError, KeyError) as exc:
                LOG.warning("ignoring unreadable teacher targets %s: %s", path, exc)
            else:
                if stored.fingerprint == fingerprint and len(stored) == len(dataset):
                    LOG.info("re-using %d stored teacher targets from %s", len(stored), path)
                    return stored
        outputs = compute_teacher_outputs(
            teacher, dataset, batch_size, device, autocast_dtype, progress
        )
        targets = cls(outputs, fingerprint)
        targets.save(path)
        return targets

    def item(self, index: int) -> Item:
        """The stored outputs of item ``index`` under ``teacher_*`` keys."""
        return {PREFIX + key: self.outputs[key][index] for key in STORED_OUTPUTS}


class WithTeacherTargets(CropDataset):
    """Items of ``dataset`` (which must not augment) plus their stored teacher outputs."""

    def __init__(self, dataset: CropDataset, targets: TeacherTargets) -> None:
        if dataset.augment:
            raise ValueError(
                "stored teacher targets need un-augmented crops: the teacher saw each crop once, "
                "as it is; turn augmentation off or compute the targets on the fly"
            )
        if len(targets) != len(dataset):
            raise ValueError(
                f"{len(targets)} stored teacher targets for {len(dataset)} crops; recompute them"
            )
        super().__init__(seed=dataset.seed, augment=False)
        self.dataset = dataset
        self.targets = targets

    def __len__(self) -> int:
        return len(self.dataset)

    @property
    def labelled(self) -> bool:
        """As the underlying dataset."""
        return self.dataset.labelled

    def load(self, index: int, rng: np.random.Generator | None) -> Item:
        """The item with its teacher outputs."""
        return {**self.dataset.load(index, None), **self.targets.item(index)}


def stored_teacher_outputs(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor] | None:
    """The teacher outputs carried by a batch, or ``None`` when it carries none."""
    if PREFIX + STORED_OUTPUTS[0] not in batch:
        return None
    return {key: batch[PREFIX + key] for key in STORED_OUTPUTS}
