"""Ground-truth-free calibration of FastHMR layer merging on the user's own footage.

FastHMR chose its merged blocks with labelled test data (EMDB). Users have none, so here the
error of a merged model is its distance to the *original* model on the user's unlabelled crops:
the root-aligned MPJPE (mm, wrist subtracted) between the merged and the original model's
joints. :class:`MergeCalibrator` runs the original model once (its joints are cached in memory
and, with ``cache_dir``, on disk for the next run), then FastHMR's sliding-window search
(:func:`fasthmr_ros.models.layer_merging.sliding_window_search`) with that error and the budget
``tau_mm``. With labels (``labels``: joints per crop), PA-MPJPE against them is reported for the
original and the merged model as well.

Crops come from any frame source through a detector (:func:`collect_crops`), exactly as the
pipeline crops them (:func:`~fasthmr_ros.pipeline.crop.crop_hand`); their landmark foreground
flags (:mod:`fasthmr_ros.pipeline.foreground`) feed masked token plans.
"""

from __future__ import annotations

import hashlib
import logging
import statistics
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from fasthmr_ros.models.layer_merging import Range, blocks_folded, sliding_window_search
from fasthmr_ros.models.merge_plan import (
    MergePlan,
    TokenPlan,
    apply_merge_plan,
    backbone_sha256,
    find_vit,
)
from fasthmr_ros.models.weights_digest import tensors_sha256
from fasthmr_ros.pipeline.crop import BODY_RESCALE_FACTOR, crop_box, crop_hand
from fasthmr_ros.pipeline.foreground import hand_foreground_tokens, person_foreground_tokens
from fasthmr_ros.pipeline.metrics import procrustes_align, root_relative_mpjpe
from fasthmr_ros.pipeline.results import HandBox, PersonBox

log = logging.getLogger(__name__)


@dataclass
class CalibrationCrops:
    """Crops to calibrate on, with their foreground flags and optional labels.

    ``crops`` (N, 3, 256, 256), ``foreground`` (N, 192) flags from the landmarks, ``labels``
    (N, 21, 3) joints in metres (any frame: PA-MPJPE aligns them) or ``None``.
    """

    crops: np.ndarray
    foreground: np.ndarray
    labels: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.crops)


def hand_crop(rgb: np.ndarray, box: HandBox) -> tuple[np.ndarray, np.ndarray]:
    """HaMeR's crop of a hand and its landmark foreground flags ``(192,)``."""
    crop = crop_hand(rgb, box)
    return crop.image, hand_foreground_tokens([box], [crop.transform])[0]


def person_crop(rgb: np.ndarray, person: PersonBox) -> tuple[np.ndarray, np.ndarray]:
    """HMR2.0's crop of a person and the foreground flags ``(192,)`` of its mask."""
    crop = crop_box(rgb, person, BODY_RESCALE_FACTOR, flip=False)
    return crop.image, person_foreground_tokens([person], [crop.transform])[0]


def collect_crops(
    frames: Iterable[np.ndarray],
    detect: Callable[[np.ndarray], Sequence[Any]],
    max_crops: int,
    progress: bool = True,
    crop: Callable[[np.ndarray, Any], tuple[np.ndarray, np.ndarray]] = hand_crop,
    what: str = "hands",
) -> CalibrationCrops:
    """Crop up to ``max_crops`` boxes found by ``detect`` in RGB ``frames``.

    ``crop`` makes one crop and its foreground flags: :func:`hand_crop` (hands, the default)
    or :func:`person_crop` (HMR2.0 bodies); ``what`` names the boxes in messages.
    """
    crops, flags = [], []
    bar = tqdm(total=max_crops, desc="collect crops", unit="crop", disable=not progress)
    for rgb in frames:
        boxes = list(detect(rgb))
        for box in boxes[: max_crops - len(crops)]:
            image, foreground = crop(rgb, box)
            crops.append(image)
            flags.append(foreground)
            bar.update()
        if len(crops) >= max_crops:
            break
    bar.close()
    if not crops:
        raise ValueError(f"no {what} were found in the calibration data; give frames with "
                         f"visible {what}" + (" (or --full-frame for frames cropped to one "
                                              "hand)" if what == "hands" else ""))
    return CalibrationCrops(np.stack(crops), np.stack(flags))


@dataclass
class CalibrationResult:
    """What a calibration found and measured."""

    plan: MergePlan
    layer_error_mm: float
    plan_error_mm: float
    original_ms: float
    merged_ms: float
    crops: int
    trials: list[tuple[Range, float, bool]] = field(default_factory=list)
    original_pa_mpjpe_mm: float | None = None
    merged_pa_mpjpe_mm: float | None = None

    @property
    def speedup(self) -> float:
        """Original per-crop latency over the merged model's, measured in the same run."""
        return self.original_ms / self.merged_ms

    def summary(self) -> str:
        """Human-readable lines for the command's output."""
        removed = self.plan.blocks_removed
        lines = [
            f"calibrated on {self.crops} crops: {self.plan.describe()}",
            f"blocks removed: {removed}",
            f"layer merges alone: {self.layer_error_mm:.3f} mm root-aligned MPJPE to the "
            "original model",
            f"whole plan: {self.plan_error_mm:.3f} mm root-aligned MPJPE to the original model",
            f"network latency per crop: {self.original_ms:.1f} ms -> {self.merged_ms:.1f} ms "
            f"({self.speedup:.2f}x, same run)",
        ]
        if self.original_pa_mpjpe_mm is not None:
            lines.append(f"PA-MPJPE against the labels: {self.original_pa_mpjpe_mm:.2f} mm "
                         f"(original) -> {self.merged_pa_mpjpe_mm:.2f} mm (merged)")
        return "\n".join(lines)


def pa_mpjpe_mm(labels: np.ndarray, joints: np.ndarray) -> float:
    """Mean joint error (mm) after Procrustes alignment of each prediction to its label."""
    aligned = procrustes_align(labels, joints)
    return float(np.linalg.norm(aligned - labels, axis=-1).mean() * 1e3)


class MergeCalibrator:
    """Measures merged variants of one ViT regressor against its original outputs.

    Args:
        regressor: a loaded ViT teacher without a merge plan (it is changed only inside
            trials and restored).
        data: the calibration crops.
        batch_size: crops per forward pass.
        cache_dir: where the original model's joints are stored between runs (``None``: in
            memory only).
        progress: show progress bars.
        root_joint: the joint both joint sets are aligned at for the error (0: the wrist of
            a hand; HMR2.0 bodies: ``BODY_PELVIS_INDEX``).

    """

    def __init__(self, regressor: torch.nn.Module, data: CalibrationCrops,
                 batch_size: int = 8, cache_dir: str | Path | None = None,
                 progress: bool = True, root_joint: int = 0) -> None:
        self.regressor = regressor.eval()
        self.root_joint = int(root_joint)
        self.vit = find_vit(regressor)
        self.data = data
        self.batch_size = int(batch_size)
        self.progress = progress
        self.checkpoint_sha256 = backbone_sha256(regressor)
        self.reference = self._original_joints(cache_dir)

    def _device(self) -> torch.device:
        return next(self.regressor.parameters()).device

    def joints(self, foreground: bool = False, desc: str = "") -> np.ndarray:
        """Joints (N, 21, 3) of the regressor as it is now, on every crop."""
        device = self._device()
        out = []
        starts = range(0, len(self.data), self.batch_size)
        for start in tqdm(starts, desc=desc, unit="batch", leave=False,
                          disable=not (self.progress and desc)):
            stop = start + self.batch_size
            crops = torch.from_numpy(self.data.crops[start:stop]).to(device)
            flags = (torch.from_numpy(self.data.foreground[start:stop]).to(device)
                     if foreground else None)
            with torch.inference_mode():
                out.append(self.regressor(crops, flags)["joints"].float().cpu().numpy())
        return np.concatenate(out)

    def _original_joints(self, cache_dir: str | Path | None) -> np.ndarray:
        path = None
        if cache_dir is not None:
            digest = hashlib.sha256(self.checkpoint_sha256.encode())
            digest.update(tensors_sha256(
                {k: v for k, v in self.regressor.state_dict().items()
                 if not k.startswith("backbone.")}).encode())
            digest.update(np.ascontiguousarray(self.data.crops).tobytes())
            path = Path(cache_dir) / f"original-joints-{digest.hexdigest()[:24]}.npy"
            if path.is_file():
                log.info("original model outputs from the cache %s", path)
                return np.load(path)
        joints = self.joints(desc="original model")
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            np.save(path, joints)
        return joints

    def error_mm(self, joints: np.ndarray) -> float:
        """Root-aligned MPJPE (mm) of ``joints`` against the original model's."""
        return root_relative_mpjpe(self.reference, joints, root=self.root_joint) * 1e3

    def layer_error_mm(self, runs: list[Range], rule: str) -> float:
        """Error of the original model with ``runs`` folded by ``rule``."""
        with blocks_folded(self.vit, runs, rule):
            return self.error_mm(self.joints())

    def search(self, tau_mm: float, rule: str = "sum") -> tuple[list[Range], list]:
        """FastHMR's Algorithm 1 with budget ``tau_mm``; the runs and every trial."""
        depth = len(self.vit.blocks)
        trials: list[tuple[Range, float, bool]] = []
        bar = tqdm(total=None, desc="search", unit="trial", disable=not self.progress)

        def on_trial(run: Range, error: float, passed: bool) -> None:
            trials.append((run, error, passed))
            bar.set_postfix_str(f"blocks {run[0]}-{run[1]}: {error:.3f} mm "
                                f"{'ok' if passed else 'over budget'}")
            bar.update()

        runs = sliding_window_search(depth, lambda r: self.layer_error_mm(r, rule), tau_mm,
                                     on_trial)
        bar.close()
        return sorted(runs, reverse=True), trials

    def latencies_ms(self, models: Sequence[tuple[torch.nn.Module, bool]],
                     repeats: int = 5) -> list[float]:
        """Median network latency of one crop for each ``(model, uses_foreground)``.

        Passes alternate between the models (one warm-up round first), so that load from other
        processes falls on all of them alike.
        """
        device = self._device()
        crops = torch.from_numpy(self.data.crops[:1]).to(device)
        flags = torch.from_numpy(self.data.foreground[:1]).to(device)
        samples: list[list[float]] = [[] for _ in models]
        with torch.inference_mode():
            for round_index in range(repeats + 1):
                for index, (model, foreground) in enumerate(models):
                    start = time.perf_counter()
                    model.forward_network(crops, flags if foreground else None)
                    if device.type == "cuda":
                        torch.cuda.synchronize(device)
                    if round_index:
                        samples[index].append(1e3 * (time.perf_counter() - start))
        return [statistics.median(values) for values in samples]

    def calibrate(self, tau_mm: float, rule: str = "sum", tokens: TokenPlan | None = None,
                  repeats: int = 5) -> CalibrationResult:
        """Search the layer merges, add ``tokens``, and measure the plan (error, speed)."""
        import copy

        if tau_mm <= 0:
            raise ValueError(f"tau_mm must be positive, got {tau_mm}")
        runs, trials = self.search(tau_mm, rule)
        layer_error = self.layer_error_mm(runs, rule) if runs else 0.0
        plan = MergePlan(merge=tuple(runs), rule=rule, tokens=tokens,
                         checkpoint_sha256=self.checkpoint_sha256)
        merged = apply_merge_plan(copy.deepcopy(self.regressor), plan)
        masked = plan.uses_mask
        saved, self.regressor = self.regressor, merged
        try:
            merged_joints = self.joints(foreground=masked, desc="merged model")
        finally:
            self.regressor = saved
        original_ms, merged_ms = self.latencies_ms(
            [(self.regressor, False), (merged, masked)], repeats=repeats)
        result = CalibrationResult(plan=plan, layer_error_mm=layer_error,
                                   plan_error_mm=self.error_mm(merged_joints),
                                   original_ms=original_ms, merged_ms=merged_ms,
                                   crops=len(self.data), trials=trials)
        if self.data.labels is not None:
            result.original_pa_mpjpe_mm = pa_mpjpe_mm(self.data.labels, self.reference)
            result.merged_pa_mpjpe_mm = pa_mpjpe_mm(self.data.labels, merged_joints)
        return result


def calibration_frames(inputs: Sequence[str]) -> Any:
    """RGB frames of image files, folders and videos (see :class:`FrameSource`)."""
    import cv2

    from fasthmr_ros.pipeline.video import FrameSource

    for frame in FrameSource(inputs):
        yield cv2.cvtColor(frame.image_bgr, cv2.COLOR_BGR2RGB)
