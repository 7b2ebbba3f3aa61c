"""The distillation loop: a student regressor learns from a frozen teacher (and labels if any).

Generic over :class:`~fasthmr_ros.models.regressor.HandMeshRegressor` (teacher and student:
``forward_network`` then ``run_mano``; feature maps are read from ``model.backbone`` with a
forward hook). Fast-HaMeR's faults are corrected by construction:

* the teacher runs in eval mode (re-asserted every step) under ``torch.no_grad``: no
  drop-path or dropout noise in the targets, no gradients into it;
* the feature projection is in the optimiser, and trained;
* teacher and student are fed the very same crop tensor, and their feature grids are aligned
  by the crop columns each backbone saw (:mod:`fasthmr_ros.training.feature_alignment`);
* the student checkpoint holds the student only (``save_regressor``: configuration and the
  student's own ``state_dict``); the projection, optimiser, scheduler, scaler, step and RNG
  states go to a separate training-state file used for resuming.

Loss (Fast-HaMeR, ``hamer.md`` 1.4): ``L = w_gt L_gt + lambda_KD (L_out + s_feat L_feat)``, with
``L_out`` only for ``kd`` in {output, both}, ``L_feat`` only for {feature, both} and ``L_gt``
only for labelled batches. Mixed precision runs the networks under ``torch.autocast`` (float16
with a gradient scaler on CUDA, bfloat16 on CPU); MANO and the losses run in float32.
"""

from __future__ import annotations

import logging
import math
import os
import random
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from fasthmr_ros.models.registry import save_regressor
from fasthmr_ros.models.regressor import HandMeshRegressor
from fasthmr_ros.pipeline.metrics import evaluate_hands, teacher_agreement
from fasthmr_ros.training.data import CropDataset, StepBatchSampler, stack_items
from fasthmr_ros.training.feature_alignment import (
    BackboneTap,
    FeatureProjection,
    feature_distillation_loss,
)
from fasthmr_ros.training.losses import (
    TARGET_KEYS,
    TERM_MASKS,
    LossWeights,
    hand_targets,
    output_terms,
    weighted_sum,
)
from fasthmr_ros.training.scalar_log import ScalarLog
from fasthmr_ros.training.schedule import warmup_cosine_scheduler
from fasthmr_ros.training.teacher_targets import stored_teacher_outputs, teacher_fingerprint

LOG = logging.getLogger(__name__)

KD_MODES: tuple[str, ...] = ("output", "feature", "both")
STUDENT_FILE = "student.ckpt"
STATE_FILE = "train_state.pt"
TRAIN_STATE_FORMAT = "fasthmr_ros.distill_state/1"
#: Consecutive non-finite losses after which training stops.
MAX_BAD_STEPS = 20


class TrainingStateError(ValueError):
    """A training-state file that cannot resume this run (names what differs)."""


@dataclass(frozen=True)
class DistillConfig:
    """Hyper-parameters of a distillation run.

    Fast-HaMeR trains with AdamW (lr 1e-5 constant, weight decay 1e-4), batch 8, fp16, for up
    to 1M steps. Runs here are usually far shorter, so the default learning rate is higher and
    follows a warm-up then a cosine decay.
    """

    kd: str = "output"
    steps: int = 10_000
    batch_size: int = 8
    lr: float = 1e-4
    weight_decay: float = 1e-4
    warmup_steps: int = 500
    final_lr_factor: float = 0.01
    grad_clip: float = 1.0
    amp: bool = False
    seed: int = 0
    weights: LossWeights = field(default_factory=LossWeights)
    save_every: int = 1000
    log_every: int = 10
    eval_every: int = 500
    workers: int = 0

    #: Fields a resumed run must share with the saved one (others may change on resume).
    RESUME_FIXED = (
        "kd", "batch_size", "lr", "weight_decay", "warmup_steps", "final_lr_factor", "seed",
        "weights",
    )

    def __post_init__(self) -> None:
        if self.kd not in KD_MODES:
            raise ValueError(f"kd must be one of {KD_MODES}, got {self.kd!r}")
        for name in ("steps", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0 <= self.warmup_steps < self.steps:
            raise ValueError(
                f"warmup_steps must be in [0, steps), got {self.warmup_steps} for "
                f"{self.steps} steps"
            )
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"learning rate must be a positive number, got {self.lr}")
        if self.weight_decay < 0 or self.grad_clip < 0:
            raise ValueError("weight_decay and grad_clip must be >= 0 (grad_clip 0: no clipping)")
        for name in ("save_every", "log_every", "eval_every", "workers"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (for checkpoints)."""
        out = asdict(self)
        out["weights"] = self.weights.to_dict()
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DistillConfig:
        """Build from :meth:`to_dict` output."""
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values["weights"] = LossWeights(**dict(data.get("weights", {})))
        return cls(**values)


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and PyTorch's (CPU and CUDA) global generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def capture_rng_state() -> dict[str, Any]:
    """The global random generators' states, as plain data (loadable with weights_only)."""
    kind, keys, position, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": [kind, [int(k) for k in keys], int(position), int(has_gauss), float(cached)],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: Mapping[str, Any]) -> None:
    """Restore what :func:`capture_rng_state` captured."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, position, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), position, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _atomic_save(payload: Any, path: Path) -> None:
    temporary = path.with_name(path.name + ".tmp")
    torch.save(payload, temporary)
    os.replace(temporary, path)


def _labels(batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor] | None:
    if "has_joints" not in batch:
        return None
    return {key: batch[key] for key in TARGET_KEYS}


class Distiller:
    """Trains ``student`` to reproduce ``teacher`` (see the module docstring).

    Args:
        student: the model to train (its parameters are updated in place).
        teacher: the frozen teacher; never trained, never saved with the student.
        config: hyper-parameters.
        device: torch device for both models.
        teacher_source: where the teacher came from (recorded in checkpoints).

    """

    def __init__(
        self,
        student: HandMeshRegressor,
        teacher: HandMeshRegressor,
        config: DistillConfig,
        device: str | torch.device = "cpu",
        teacher_source: str = "",
    ) -> None:
        if student is teacher:
            raise ValueError("the student and the teacher must be two different models")
        shared = {id(p) for p in student.parameters()} & {id(p) for p in teacher.parameters()}
        if shared:
            raise ValueError(
                f"the student shares {len(shared)} parameter tensors with the teacher; build "
                "the student from its own configuration"
            )
        self.config = config
        self.device = torch.device(device)
        self.student = student.to(self.device)
        self.teacher = teacher.to(self.device)
        self.teacher.requires_grad_(False)
        self.teacher.eval()
        self.teacher_source = str(teacher_source)
        self.teacher_fingerprint = teacher_fingerprint(self.teacher)
        self.step = 0
        self._bad_steps = 0

        self.projection: FeatureProjection | None = None
        if config.kd in ("feature", "both"):
            self.projection = self._build_projection().to(self.device)
        self._parameters = [p for p in self.student.parameters() if p.requires_grad]
        if self.projection is not None:
            self._parameters += list(self.projection.parameters())
        if not self._parameters:
            raise ValueError("the student has no trainable parameters")
        self.optimizer = torch.optim.AdamW(
            self._parameters, lr=config.lr, weight_decay=config.weight_decay
        )
        self.scheduler = warmup_cosine_scheduler(
            self.optimizer, config.steps, config.warmup_steps, config.final_lr_factor
        )
        use_cuda_amp = config.amp and self.device.type == "cuda"
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=use_cuda_amp)
        self.autocast_dtype: torch.dtype | None = None
        if config.amp:
            self.autocast_dtype = torch.float16 if self.device.type == "cuda" else torch.bfloat16

    # -- set-up ---------------------------------------------------------------------------

    def _build_projection(self) -> FeatureProjection:
        """Probe both backbones once to learn their channels, grids and crop windows."""
        crops = torch.zeros(2, 3, 256, 256, device=self.device)
        was_training = self.student.training
        self.student.eval()
        with torch.no_grad(), BackboneTap(self.teacher) as teacher_tap, BackboneTap(
            self.student
        ) as student_tap:
            self.teacher.forward_network(crops)
            self.student.forward_network(crops)
        self.student.train(was_training)
        teacher_features, student_features = teacher_tap.features, student_tap.features
        assert teacher_features is not None and student_features is not None
        LOG.info(
            "feature distillation: teacher %s over crop columns %.0f-%.0f -> student %s over "
            "columns %.0f-%.0f",
            tuple(teacher_features.shape[1:]), teacher_tap.window.x0, teacher_tap.window.x1,
            tuple(student_features.shape[1:]), student_tap.window.x0, student_tap.window.x1,
        )
        return FeatureProjection(teacher_features.shape[1], student_features.shape[1])

    def _autocast(self) -> torch.autocast:
        return torch.autocast(
            self.device.type,
            dtype=self.autocast_dtype or torch.float32,
            enabled=self.autocast_dtype is not None,
        )

    @property
    def lr(self) -> float:
        """The learning rate of the next step."""
        return float(self.optimizer.param_groups[0]["lr"])

    # -- one step -------------------------------------------------------------------------

    def _run(self, model: HandMeshRegressor, crops: torch.Tensor, tap: BackboneTap | None) -> dict:
        with self._autocast():
            if tap is None:
                params = model.forward_network(crops)
            else:
                with tap:
                    params = model.forward_network(crops)
        with torch.autocast(self.device.type, enabled=False):
            return model.run_mano({key: value.float() for key, value in params.items()})

    def compute_losses(
        self, batch: Mapping[str, torch.Tensor]
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Forward both models on the batch's crops; return the total loss and its parts."""
        self.student.train()
        self.teacher.eval()
        crops = batch["crops"].to(self.device, non_blocking=True).float()
        weights = self.config.weights
        stored = stored_teacher_outputs(batch)
        teacher_tap = BackboneTap(self.teacher) if self.projection is not None else None
        if stored is not None:
            if teacher_tap is not None:
                raise ValueError(
                    "feature distillation needs the teacher's feature maps: stored teacher "
                    "targets only hold its outputs; compute the targets on the fly"
                )
            teacher_out = {key: value.to(self.device).float() for key, value in stored.items()}
        else:
            with torch.no_grad():
                teacher_out = self._run(self.teacher, crops, teacher_tap)
        student_tap = BackboneTap(self.student) if self.projection is not None else None
        student_out = self._run(self.student, crops, student_tap)
        student_targets = hand_targets(student_out)

        parts: dict[str, torch.Tensor] = {}
        total = crops.new_zeros(())
        if self.config.kd in ("output", "both"):
            terms = output_terms(student_targets, hand_targets(teacher_out))
            parts.update({f"kd/{key}": value for key, value in terms.items()})
            total = total + weights.kd * weighted_sum(terms, weights)
        if self.projection is not None:
            assert teacher_tap is not None and student_tap is not None
            student_features = student_tap.features
            assert student_features is not None and teacher_tap.features is not None
            projected, valid = self.projection(
                teacher_tap.features.float(),
                teacher_tap.window,
                student_tap.window,
                tuple(student_features.shape[-2:]),
            )
            feature = feature_distillation_loss(student_features, projected, valid)
            parts["kd/feature"] = feature
            total = total + weights.kd * weights.feature * feature
        labels = _labels(batch)
        if labels is not None:
            labels = {key: value.to(self.device).float() for key, value in labels.items()}
            masks = {
                name: batch[name].to(self.device).float() for name in set(TERM_MASKS.values())
            }
            terms = output_terms(student_targets, labels, masks)
            parts.update({f"gt/{key}": value for key, value in terms.items()})
            total = total + weights.ground_truth * weighted_sum(terms, weights)
        return total, parts

    def train_step(self, batch: Mapping[str, torch.Tensor]) -> dict[str, float]:
        """One optimiser step on ``batch``; returns the loss, its parts, lr and gradient norm."""
        lr = self.lr
        total, parts = self.compute_losses(batch)
        self.optimizer.zero_grad(set_to_none=True)
        metrics = {"loss": float(total.detach()), "lr": lr}
        metrics.update({key: float(value.detach()) for key, value in parts.items()})
        if not math.isfinite(metrics["loss"]):
            self._bad_steps += 1
            LOG.warning("step %d: non-finite loss, update skipped", self.step)
            if self._bad_steps >= MAX_BAD_STEPS:
                raise FloatingPointError(
                    f"{MAX_BAD_STEPS} consecutive non-finite losses at step {self.step}: lower "
                    "--lr, or train without --amp"
                )
        else:
            self._bad_steps = 0
            self.scaler.scale(total).backward()
            self.scaler.unscale_(self.optimizer)
            max_norm = self.config.grad_clip if self.config.grad_clip > 0 else math.inf
            grad_norm = torch.nn.utils.clip_grad_norm_(self._parameters, max_norm)
            metrics["grad_norm"] = float(grad_norm)
            self.scaler.step(self.optimizer)
            self.scaler.update()
        self.scheduler.step()
        self.step += 1
        return metrics

    # -- evaluation -----------------------------------------------------------------------

    @torch.no_grad()
    def evaluate(self, batch: Mapping[str, torch.Tensor]) -> dict[str, float]:
        """Student against teacher (and labels) on un-augmented crops, eval mode.

        Returns ``teacher_pa_mpjpe_mm`` and ``teacher_pa_mpvpe_mm`` (FreiHAND protocol with the
        teacher as reference) and, for labelled crops, ``gt_pa_mpjpe_mm`` of the student and
        of the teacher against the labels.
        """
        was_training = self.student.training
        self.student.eval()
        self.teacher.eval()
        crops = batch["crops"]
        outputs: dict[str, list[np.ndarray]] = {"s_j": [], "s_v": [], "t_j": [], "t_v": []}
        try:
            for start in range(0, len(crops), self.config.batch_size):
                chunk = crops[start : start + self.config.batch_size].to(self.device).float()
                student_out = self._run(self.student, chunk, None)
                teacher_out = self._run(self.teacher, chunk, None)
                for prefix, out in (("s", student_out), ("t", teacher_out)):
                    outputs[f"{prefix}_j"].append(out["joints"].cpu().double().numpy())
                    outputs[f"{prefix}_v"].append(out["vertices"].cpu().double().numpy())
        finally:
            self.student.train(was_training)
        arrays = {key: np.concatenate(values) for key, values in outputs.items()}
        agreement = teacher_agreement(arrays["s_j"], arrays["t_j"], arrays["s_v"], arrays["t_v"])
        result = {
            "teacher_pa_mpjpe_mm": agreement.pa_mpjpe_mm,
            "teacher_pa_mpvpe_mm": float(agreement.pa_mpvpe_mm or 0.0),
        }
        if "has_joints" in batch and bool(batch["has_joints"].bool().any()):
            keep = batch["has_joints"].bool().numpy()
            reference = batch["joints_rel"].double().numpy()[keep]
            for prefix, name in (("s", "gt_pa_mpjpe_mm"), ("t", "teacher_gt_pa_mpjpe_mm")):
                result[name] = evaluate_hands(reference, arrays[f"{prefix}_j"][keep]).pa_mpjpe_mm
        return result

    # -- checkpoints ----------------------------------------------------------------------

    def training_state(self) -> dict[str, Any]:
        """Everything needed to continue this run exactly (not the teacher)."""
        return {
            "format": TRAIN_STATE_FORMAT,
            "step": self.step,
            "config": self.config.to_dict(),
            "student_config": dict(self.student.config),
            "student": self.student.state_dict(),
            "projection": None if self.projection is None else self.projection.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": capture_rng_state(),
            "teacher": {"source": self.teacher_source, "fingerprint": self.teacher_fingerprint},
        }

    def save(self, out_dir: Path | str, test_asset: bool = False) -> tuple[Path, Path]:
        """Write ``student.ckpt`` (the student only) and ``train_state.pt`` (for resuming)."""
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        extra: dict[str, Any] = {
            "distillation": {
                "teacher": self.teacher_source,
                "kd": self.config.kd,
                "step": self.step,
                "steps": self.config.steps,
            }
        }
        if test_asset:
            extra["fasthmr_test_asset"] = True
        student_path = out_dir / STUDENT_FILE
        temporary = save_regressor(self.student, out_dir / (STUDENT_FILE + ".tmp"), extra=extra)
        os.replace(temporary, student_path)
        state_path = out_dir / STATE_FILE
        _atomic_save(self.training_state(), state_path)
        return student_path, state_path

    def resume(self, state: Mapping[str, Any] | Path | str) -> None:
        """Continue from a training state (a dict or a ``train_state.pt`` path)."""
        if not isinstance(state, Mapping):
            state = read_training_state(state)
        check_resumable(state, self.config, dict(self.student.config), self.teacher_fingerprint)
        self.student.load_state_dict(state["student"])
        if self.projection is not None:
            self.projection.load_state_dict(state["projection"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.step = int(state["step"])
        restore_rng_state(state["rng"])

    # -- the loop -------------------------------------------------------------------------

    def fit(
        self,
        dataset: CropDataset,
        validation: Mapping[str, torch.Tensor] | None = None,
        out_dir: Path | str | None = None,
        log: ScalarLog | None = None,
        progress: bool = True,
        test_asset: bool = False,
    ) -> dict[str, float]:
        """Train until ``config.steps``; save periodically, at the end and on Ctrl-C.

        Returns the last training metrics merged with the last validation results.
        """
        from tqdm import tqdm

        config = self.config
        sampler = StepBatchSampler(
            len(dataset), config.batch_size, config.seed, self.step, config.steps
        )
        loader = DataLoader(
            dataset,
            batch_sampler=sampler,
            num_workers=config.workers,
            collate_fn=stack_items,
            pin_memory=self.device.type == "cuda",
        )
        summary: dict[str, float] = {}
        bar = tqdm(
            total=config.steps, initial=self.step, unit="step", desc="distill",
            disable=not progress, dynamic_ncols=True,
        )
        try:
            for batch in loader:
                metrics = self.train_step(batch)
                summary.update(metrics)
                bar.update(1)
                bar.set_postfix(loss=f"{metrics['loss']:.4g}", lr=f"{metrics['lr']:.2e}",
                                refresh=False)
                last = self.step == config.steps
                if log is not None and (
                    last or (config.log_every and self.step % config.log_every == 0)
                ):
                    log.scalars(self.step, metrics, "train")
                if validation is not None and (
                    last or (config.eval_every and self.step % config.eval_every == 0)
                ):
                    results = self.evaluate(validation)
                    summary.update({f"val/{k}": v for k, v in results.items()})
                    if log is not None:
                        log.scalars(self.step, results, "val")
                    bar.write(
                        f"step {self.step}: "
                        + ", ".join(f"{k} {v:.2f}" for k, v in results.items())
                    )
                if out_dir is not None and config.save_every and not last and (
                    self.step % config.save_every == 0
                ):
                    self.save(out_dir, test_asset=test_asset)
        except KeyboardInterrupt:
            if out_dir is not None:
                self.save(out_dir, test_asset=test_asset)
                bar.write(f"interrupted: step {self.step} saved to {out_dir} (continue: --resume)")
            raise
        finally:
            bar.close()
            if log is not None:
                log.flush()
        if out_dir is not None:
            self.save(out_dir, test_asset=test_asset)
        return summary


def read_training_state(path: Path | str) -> dict[str, Any]:
    """Read a ``train_state.pt`` written by :meth:`Distiller.save` (nothing in it is executed)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no training state at {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - report any unreadable file the same way
        raise TrainingStateError(f"{path} cannot be read as a training state: {exc}") from None
    if not isinstance(state, dict) or state.get("format") != TRAIN_STATE_FORMAT:
        raise TrainingStateError(
            f"{path} is not a fasthmr distillation state (format {TRAIN_STATE_FORMAT})"
        )
    return state


def check_resumable(
    state: Mapping[str, Any],
    config: DistillConfig,
    student_config: Mapping[str, Any],
    teacher_fingerprint_now: str,
) -> None:
    """Raise :class:`TrainingStateError` naming what differs between ``state`` and this run."""
    saved = DistillConfig.from_dict(state["config"])
    differences = [
        f"{name}: saved {getattr(saved, name)!r}, now {getattr(config, name)!r}"
        for name in DistillConfig.RESUME_FIXED
        if getattr(saved, name) != getattr(config, name)
    ]
    if differences:
        raise TrainingStateError(
            "cannot resume with different settings (" + "; ".join(differences) + "); use the "
            "saved settings or start a new run in another folder"
        )
    if dict(state["student_config"]) != dict(student_config):
        raise TrainingStateError(
            "the saved run trained another student architecture; resume with the same --student"
        )
    if state["teacher"]["fingerprint"] != teacher_fingerprint_now:
        raise TrainingStateError(
            f"the saved run was distilled from another teacher ({state['teacher']['source']}); "
            "resume with the same --teacher"
        )
    if int(state["step"]) > config.steps:
        raise TrainingStateError(
            f"the saved run is at step {state['step']}, beyond --steps {config.steps}"
        )
    if saved.steps != config.steps:
        LOG.warning(
            "resuming with %d total steps instead of %d: the learning-rate schedule stretches",
            config.steps, saved.steps,
        )
