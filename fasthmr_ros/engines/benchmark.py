"""Per-stage latency of the hand and body paths over model x engine x precision x batch x scale.

Every variant processes the same synthetic 640x480 frame with ``batch`` hand boxes (person boxes
for body models) through the stages a node runs, each timed separately (with
``torch.cuda.synchronize`` on a GPU):

* ``decode``: JPEG bytes to an RGB frame (OpenCV), as for a compressed image topic;
* ``detect``: the hand detector on that frame, when one is given (its boxes are not used, so
  that every variant reconstructs the same ``batch`` hands);
* ``crop``: the pipeline's crops of every box into one ``(B, 3, 256, 256)`` batch, on the device
  (HaMeR's hand crops, HMR2.0's person crops);
* ``network``: the engine (backbone + head);
* ``mesh``: the mesh model in PyTorch (MANO for hands, SMPL with HMR2.0's 44 joints for bodies);
* ``post``: outputs to host arrays and to camera-frame :class:`HandResult` /
  :class:`BodyResult` objects;
* ``serialize``: the results to the bytes of an output message, when a serializer is given
  (the ROS layer passes ``HandMeshArray`` CDR encoding).

Stages without their part (no detector, no serializer) are left out of the results. Statistics are
median / p90 / p99 / mean over the timed iterations after a warm-up. Ratios (speed-ups) compare
variants of the same run only; ``output_change_mm`` and ``joints_change_mm`` are the largest
vertex and joint differences to the same model's eager torch fp32 full-resolution run on the
same crops (they measure numerical change, e.g. of fp16 / bf16 or an input scale, not accuracy:
with random weights they say nothing about accuracy).

``cuda_graphs`` (torch engine) makes CUDA graphs a variant dimension: ``True`` (label suffix
``/graphs``), ``False`` (``/eager``) or ``None`` (the engine's default: on for CUDA).

Model names: ``teacher`` (HaMeR's ViT-H with random weights built in memory, or a checkpoint
given with ``name=PATH``), ``small`` (the tiny test configuration), any timm name (a student
with HaMeR's head and random weights) or a checkpoint path. Body models: ``body`` (HMR2.0's
ViT-H with random weights and a synthetic SMPL), ``body-small`` (the tiny configuration), or an
HMR2.0 checkpoint as ``body=PATH`` (any name starting with ``body``).
"""

from __future__ import annotations

import contextlib
import gc
import json
import math
import os
import platform
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from fasthmr_ros.engines.base import EngineError, EngineRegressor, create_engine, parse_device
from fasthmr_ros.models.regressor import BodyMeshRegressor, MeshRegressor

#: Stages timed for every variant, in pipeline order.
STAGES: tuple[str, ...] = ("decode", "detect", "crop", "network", "mesh", "post", "serialize")
#: Size of the synthetic frame.
FRAME_SIZE: tuple[int, int] = (640, 480)
#: Models built in memory by name (besides timm student names and checkpoint paths).
BUILTIN_MODELS: tuple[str, ...] = ("teacher", "small", "body", "body-small")
#: Prefix of model names that are body (HMR2.0) models.
BODY_PREFIX = "body"
#: The ``--merge-plans`` entry for the model as trained.
NO_PLAN = "none"


def plan_label(plan: str) -> str:
    """How a merge plan appears in labels: the file's stem (``"none"`` for no plan)."""
    return NO_PLAN if plan == NO_PLAN else Path(plan).stem


@dataclass(frozen=True)
class Variant:
    """One benchmarked combination."""

    model: str
    engine: str
    precision: str
    batch: int
    input_scale: float = 1.0
    cuda_graphs: bool | None = None
    merge_plan: str = NO_PLAN

    @property
    def label(self) -> str:
        """Short human-readable name, e.g. ``teacher/onnxruntime/fp32/b1``."""
        scale = "" if self.input_scale == 1.0 else f"/s{self.input_scale:g}"
        graphs = {None: "", True: "/graphs", False: "/eager"}[self.cuda_graphs]
        plan = "" if self.merge_plan == NO_PLAN else f"/plan-{plan_label(self.merge_plan)}"
        return f"{self.model}/{self.engine}/{self.precision}/b{self.batch}{scale}{graphs}{plan}"

    @property
    def engine_key(self) -> tuple:
        """What an engine is built for; variants differing only in batch size share it."""
        return (self.model, self.merge_plan, self.engine, self.precision, self.input_scale,
                self.cuda_graphs)


@dataclass
class StageStats:
    """Latency statistics of one stage in milliseconds."""

    median_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    samples: int

    @classmethod
    def from_samples(cls, samples_ms: Sequence[float]) -> StageStats:
        """Summarise raw samples (at least one)."""
        values = np.asarray(samples_ms, dtype=np.float64)
        if values.size == 0:
            raise ValueError("no samples to summarise")
        return cls(
            median_ms=float(np.median(values)),
            p90_ms=float(np.percentile(values, 90)),
            p99_ms=float(np.percentile(values, 99)),
            mean_ms=float(values.mean()),
            samples=int(values.size),
        )


@dataclass
class VariantResult:
    """Measurements of one variant (or why it was skipped)."""

    variant: Variant
    engine_name: str = ""
    stages: dict[str, StageStats] = field(default_factory=dict)
    setup_s: float = 0.0
    output_change_mm: float | None = None
    joints_change_mm: float | None = None
    macs_g: float | None = None
    macs_without_attention_g: float | None = None
    skipped: str | None = None
    speedup_network: float | None = None
    speedup_total: float | None = None

    @property
    def total_ms(self) -> float:
        """Sum of the stage medians (one frame with ``batch`` hands)."""
        return sum(s.median_ms for s in self.stages.values())

    @property
    def network_per_crop_ms(self) -> float:
        """Median network latency divided by the batch size."""
        return self.stages["network"].median_ms / self.variant.batch

    @property
    def total_per_crop_ms(self) -> float:
        """Median frame latency divided by the batch size."""
        return self.total_ms / self.variant.batch

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        out = {
            "label": self.variant.label,
            **asdict(self.variant),
            "engine_name": self.engine_name,
            "setup_s": self.setup_s,
            "skipped": self.skipped,
            "output_change_mm": self.output_change_mm,
            "joints_change_mm": self.joints_change_mm,
            "macs_g": self.macs_g,
            "macs_without_attention_g": self.macs_without_attention_g,
            "speedup_network": self.speedup_network,
            "speedup_total": self.speedup_total,
            "stages": {k: asdict(v) for k, v in self.stages.items()},
        }
        if self.stages:
            out["total_ms"] = self.total_ms
            out["network_per_crop_ms"] = self.network_per_crop_ms
            out["total_per_crop_ms"] = self.total_per_crop_ms
        return out


@dataclass
class BenchReport:
    """A whole benchmark run: settings, environment, results and the ratio baseline."""

    settings: dict[str, Any]
    environment: dict[str, Any]
    results: list[VariantResult]
    baseline: str | None = None

    def measured(self) -> list[VariantResult]:
        """Results that ran (not skipped)."""
        return [r for r in self.results if r.skipped is None]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {
            "settings": self.settings,
            "environment": self.environment,
            "baseline": self.baseline,
            "stages": list(STAGES),
            "results": [r.to_dict() for r in self.results],
        }


def environment() -> dict[str, Any]:
    """What the numbers were measured on."""
    info: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        # TF32 makes CUDA "fp32" matrix products / convolutions lower precision.
        "tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
        "tf32_cudnn": torch.backends.cudnn.allow_tf32,
    }
    with contextlib.suppress(OSError, AttributeError):
        info["load_average"] = [round(v, 2) for v in os.getloadavg()]
    with contextlib.suppress(ImportError):
        import onnxruntime

        info["onnxruntime"] = onnxruntime.__version__
    return info


# --------------------------------------------------------------------------------------------
# models


def _synthetic_mano() -> Any:
    from fasthmr_ros.models.mano import ManoLayer
    from fasthmr_ros.models.mano_files import load_mano_file, write_synthetic_mano

    with tempfile.TemporaryDirectory() as folder:
        return ManoLayer(load_mano_file(write_synthetic_mano(folder)))


def model_label(spec: str) -> str:
    """The name a model spec appears under in results: ``NAME`` of ``NAME=PATH``, else itself."""
    name, sep, _ = spec.partition("=")
    return name if sep and name else spec


def _synthetic_body(config: Any) -> BodyMeshRegressor:
    from fasthmr_ros.models.smpl import SmplLayer
    from fasthmr_ros.models.smpl_files import make_synthetic_smpl
    from fasthmr_ros.models.test_assets import random_body_regressor

    arrays = make_synthetic_smpl(0)
    mean = {"pose": arrays["mean_pose"].astype(np.float32),
            "shape": arrays["mean_shape"].astype(np.float32),
            "cam": arrays["mean_cam"].astype(np.float32)}
    return random_body_regressor(config, SmplLayer(arrays, arrays["joint_regressor_extra"]), mean)


def is_body_model(spec: str) -> bool:
    """Whether ``spec`` names a body (HMR2.0) model: its name starts with ``body``."""
    return model_label(spec).startswith(BODY_PREFIX)


def build_model(
    spec: str, mano_dir: str | None = None, smpl_dir: str | None = None
) -> MeshRegressor:
    """Build or load the regressor named ``spec`` (see the module docstring) in eval mode."""
    from fasthmr_ros.models.regressor import SMALL_CONFIG, RegressorConfig
    from fasthmr_ros.models.test_assets import init_near_mean_hand, random_hand_regressor

    name, _, path = spec.partition("=")
    if is_body_model(spec):
        if path:
            from fasthmr_ros import load_body_regressor

            return load_body_regressor(path, smpl_dir=smpl_dir)
        if name in ("body", "body-small"):
            return _synthetic_body(SMALL_CONFIG if name == "body-small" else RegressorConfig())
        raise EngineError(f"body model '{spec}': use body, body-small or body=CHECKPOINT")
    if path or Path(spec).exists():
        from fasthmr_ros import load_hand_regressor

        return load_hand_regressor(path or spec, mano_dir=mano_dir)
    if name == "teacher":
        return random_hand_regressor(RegressorConfig(), _synthetic_mano())
    if name == "small":
        return random_hand_regressor(SMALL_CONFIG, _synthetic_mano())
    from fasthmr_ros.models.students import build_student

    torch.manual_seed(0)
    try:
        return init_near_mean_hand(build_student(name, _synthetic_mano()))
    except ValueError as exc:
        raise EngineError(
            f"model '{spec}' is neither {' nor '.join(BUILTIN_MODELS)}, a checkpoint path, nor "
            f"a timm backbone: {exc}"
        ) from None


# --------------------------------------------------------------------------------------------
# the frame and the stages


@dataclass(frozen=True)
class SyntheticPerson:
    """A person box of the synthetic frame (pixels)."""

    xyxy: np.ndarray
    score: float = 1.0


def synthetic_people(batch: int, seed: int = 0) -> list[SyntheticPerson]:
    """``batch`` standing-person boxes (about 1:2.5) on the synthetic frame."""
    width, height = FRAME_SIZE
    rng = np.random.default_rng(seed)
    people = []
    for _ in range(batch):
        h = rng.uniform(200, height)
        w = h / rng.uniform(2.0, 3.0)
        x1, y1 = rng.uniform(0, width - w), rng.uniform(0, height - h)
        people.append(SyntheticPerson(np.array([x1, y1, x1 + w, y1 + h])))
    return people


def synthetic_frame(batch: int, seed: int = 0) -> tuple[bytes, list[Any]]:
    """A JPEG-encoded drawn 640x480 frame and ``batch`` hand boxes on it (alternating sides)."""
    import cv2

    from fasthmr_ros.pipeline.results import LEFT, RIGHT, HandBox
    from fasthmr_ros.pipeline.sample_image import draw_sample_hand

    width, height = FRAME_SIZE
    ok, encoded = cv2.imencode(".jpg", draw_sample_hand(width, height))
    if not ok:  # pragma: no cover - OpenCV always encodes a valid uint8 image
        raise RuntimeError("OpenCV could not encode the synthetic frame")
    rng = np.random.default_rng(seed)
    boxes = []
    for index in range(batch):
        size = rng.uniform(60, 200)
        x1 = rng.uniform(0, width - size)
        y1 = rng.uniform(0, height - size)
        boxes.append(HandBox(x1, y1, x1 + size, y1 + size,
                             side=RIGHT if index % 2 == 0 else LEFT, score=1.0))
    return encoded.tobytes(), boxes


class _Timer:
    """Collects per-stage wall-clock samples, synchronising the GPU around each stage."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.samples: dict[str, list[float]] = {stage: [] for stage in STAGES}
        self.recording = False

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        self._sync()
        start = time.perf_counter()
        yield
        self._sync()
        if self.recording:
            self.samples[name].append(1e3 * (time.perf_counter() - start))


@dataclass(frozen=True)
class OptionalStages:
    """Parts of the frame path that live outside the engines layer, passed in by the caller.

    ``detector(rgb) -> boxes`` and ``serializer(results) -> bytes`` for hands, and their body
    counterparts (``body_detector``: a person detector; ``body_serializer``: ``BodyMeshArray``
    encoding) for body models; ``None`` leaves the stage out.
    """

    detector: Callable[[np.ndarray], Any] | None = None
    serializer: Callable[[list[Any]], bytes] | None = None
    body_detector: Callable[[np.ndarray], Any] | None = None
    body_serializer: Callable[[list[Any]], bytes] | None = None

    def for_bodies(self) -> OptionalStages:
        """The stages a body variant runs (the body detector and serializer)."""
        return OptionalStages(detector=self.body_detector, serializer=self.body_serializer)


def _run_frame(engine: EngineRegressor, pipeline: Any, jpeg: bytes, boxes: list[Any],
               timer: _Timer, optional: OptionalStages) -> dict[str, torch.Tensor]:
    """One frame through every stage; returns the network + mesh model outputs."""
    from fasthmr_ros.pipeline.camera import default_intrinsics

    with timer.stage("decode"):
        rgb = decode_frame(jpeg)
    if optional.detector is not None:
        with timer.stage("detect"):
            optional.detector(rgb)
    with timer.stage("crop"):
        batch, transforms = pipeline.make_batch(rgb, boxes)
        crops = torch.from_numpy(batch).to(timer.device)
        # Masked merge plans only (the hand pipeline makes the flags from the landmarks).
        make_foreground = getattr(pipeline, "make_foreground", None)
        flags = None if make_foreground is None else make_foreground(boxes, transforms)
        foreground = None if flags is None else torch.from_numpy(flags).to(timer.device)
    with torch.inference_mode():
        with timer.stage("network"):
            params = engine.forward_network(crops, foreground)
        with timer.stage("mesh"):
            outputs = engine.run_mesh_model(params)
    with timer.stage("post"):
        arrays = {k: v.detach().float().cpu().numpy() for k, v in outputs.items()}
        results = pipeline.to_results(arrays, boxes, transforms,
                                      default_intrinsics(rgb.shape[1], rgb.shape[0]))
    if optional.serializer is not None:
        with timer.stage("serialize"):
            optional.serializer(results)
    return outputs


def decode_frame(jpeg: bytes) -> np.ndarray:
    """JPEG bytes to an RGB uint8 frame."""
    import cv2

    bgr = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


#: Outputs whose change against the fp32 reference is reported (result field of each, in mm).
CHANGE_OUTPUTS: dict[str, str] = {"vertices": "output_change_mm", "joints": "joints_change_mm"}


def torch_reference(
    regressor: MeshRegressor,
) -> Callable[[torch.Tensor], dict[str, torch.Tensor]]:
    """``crops -> {vertices, joints}`` of the eager fp32 regressor, once per batch size.

    The benchmark's frames depend only on the batch size, so results are reused across
    variants of a model.
    """
    cache: dict[int, dict[str, torch.Tensor]] = {}

    def outputs(crops: torch.Tensor) -> dict[str, torch.Tensor]:
        if crops.shape[0] not in cache:
            device = next(regressor.parameters()).device
            with torch.inference_mode():
                out = regressor(crops.to(device))
            cache[crops.shape[0]] = {k: out[k].float() for k in CHANGE_OUTPUTS}
        return cache[crops.shape[0]]

    return outputs


def output_changes_mm(
    outputs: dict[str, torch.Tensor], reference: dict[str, torch.Tensor]
) -> dict[str, float]:
    """Largest absolute difference (mm) of each of :data:`CHANGE_OUTPUTS`, by result field."""
    changes = {}
    for key, result_field in CHANGE_OUTPUTS.items():
        got = outputs[key].float()
        changes[result_field] = float((got - reference[key].to(got.device)).abs().max()) * 1e3
    return changes


@dataclass
class _Running:
    """A variant being measured: its engine, pipeline, frame and timer."""

    result: VariantResult
    engine: EngineRegressor
    pipeline: Any
    jpeg: bytes
    boxes: list[Any]
    timer: _Timer
    optional: OptionalStages
    outputs: dict[str, torch.Tensor] = field(default_factory=dict)

    def frame(self) -> None:
        self.outputs = _run_frame(self.engine, self.pipeline, self.jpeg, self.boxes, self.timer,
                                  self.optional)


def apply_ratios(results: Sequence[VariantResult], baseline: VariantResult) -> None:
    """Set speed-ups (baseline per-crop latency / variant per-crop latency) of measured results."""
    for result in results:
        if result.skipped is None:
            result.speedup_network = baseline.network_per_crop_ms / result.network_per_crop_ms
            result.speedup_total = baseline.total_per_crop_ms / result.total_per_crop_ms


def _build_engines(
    variants: Sequence[Variant],
    regressors: dict[str, MeshRegressor],
    device: str,
    engine_options: dict[str, dict[str, Any]],
    bar: Any,
) -> tuple[dict[tuple, EngineRegressor | str], dict[tuple, float]]:
    """One engine per :attr:`Variant.engine_key`; batches share it.

    Returns engines (or the reason they could not be built) and their setup times.
    """
    engines: dict[tuple, EngineRegressor | str] = {}
    setup: dict[tuple, float] = {}
    for v in variants:
        key = v.engine_key
        if key in engines:
            continue
        bar.set_postfix_str(f"building {v.model}/{v.engine}/{v.precision}")
        options = dict(engine_options.get(v.engine, {}))
        if v.input_scale != 1.0:
            options["input_scale"] = v.input_scale
        if v.cuda_graphs is not None:
            options["cuda_graphs"] = v.cuda_graphs
        start = time.perf_counter()
        try:
            engines[key] = create_engine(regressors[(v.model, v.merge_plan)], v.engine,
                                         v.precision, device, **options)
        except (EngineError, ValueError) as exc:
            engines[key] = str(exc)
        setup[key] = time.perf_counter() - start
    return engines, setup


def count_network_macs(regressor: MeshRegressor, foreground: bool = False,
                       attention: bool = True) -> float:
    """Multiply-accumulates of one crop through the network (backbone + head), counted.

    ``torch.utils.flop_counter.FlopCounterMode`` counts the matmuls, linear layers and
    convolutions of a real forward pass (MACs = FLOPs / 2); nothing is estimated. With
    ``attention``, attention runs on PyTorch's math kernel so that its two products are counted
    too; without it every batched matmul is left out (the attention products, and token
    merging's small assignment products), which is the convention of FastHMR's MAC figures
    (ViT-H 122.5 G). With ``foreground``, a
    centred foreground blob is passed, as a masked plan sees it; the count does not depend on
    it (token counts are static).
    """
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    from fasthmr_ros.engines.network import NetworkModule

    network = NetworkModule(regressor).eval()
    device = next(regressor.parameters()).device
    crops = torch.zeros(1, 3, 256, 256, device=device)
    flags = None
    if foreground and network.uses_foreground:
        rows, cols = network.backbone.cfg.grid
        grid = torch.zeros(1, rows, cols, device=device)
        grid[:, rows // 4 : rows - rows // 4, cols // 4 : cols - cols // 4] = 1
        flags = grid.reshape(1, -1)
    counter = FlopCounterMode(display=False)
    # The math kernel spells attention as batched matmuls (bmm), which the counter sees on
    # every device; linear layers and convolutions are mm/addmm/convolution.
    with torch.inference_mode(), sdpa_kernel(SDPBackend.MATH), counter:
        network(crops, flags)
    flops = counter.get_total_flops()
    if not attention:
        counts = counter.get_flop_counts().get("Global", {})
        flops -= sum(v for op, v in counts.items() if "bmm" in str(op))
    return flops / 2.0


def _plan_models(
    specs: dict[str, str], merge_plans: Sequence[str], mano_dir: str | None,
    smpl_dir: str | None, device: torch.device, bar: Any,
) -> dict[tuple[str, str], MeshRegressor]:
    """Every (model, plan) regressor: the model as loaded, and a merged copy per plan."""
    import copy

    from fasthmr_ros.models.merge_plan import apply_merge_plan, load_merge_plan

    plans = {plan: load_merge_plan(plan) for plan in merge_plans if plan != NO_PLAN}
    regressors: dict[tuple[str, str], MeshRegressor] = {}
    for name, spec in specs.items():
        bar.set_postfix_str(f"building model {name}")
        base = build_model(spec, mano_dir, smpl_dir).to(device)
        regressors[(name, NO_PLAN)] = base
        for plan_name, plan in plans.items():
            bar.set_postfix_str(f"merging {name} with {plan_label(plan_name)}")
            regressors[(name, plan_name)] = apply_merge_plan(copy.deepcopy(base), plan)
    return regressors


def run_benchmark(
    models: Sequence[str],
    engines: Sequence[str] = ("torch",),
    precisions: Sequence[str] = ("fp32",),
    batches: Sequence[int] = (1,),
    input_scales: Sequence[float] = (1.0,),
    device: str = "cpu",
    warmup: int = 3,
    iterations: int = 20,
    mano_dir: str | None = None,
    engine_options: dict[str, dict[str, Any]] | None = None,
    baseline: str | None = None,
    progress: bool = True,
    optional: OptionalStages = OptionalStages(),
    cuda_graphs: Sequence[bool | None] = (None,),
    merge_plans: Sequence[str] = (NO_PLAN,),
    smpl_dir: str | None = None,
) -> BenchReport:
    """Measure every combination; ratios relative to ``baseline`` (a label; default: first).

    ``merge_plans`` lists FastHMR merge plan files (``"none"``: the model as trained); each
    plan is applied to a copy of every model, its output change is measured against the
    unmerged model on the same crops, and its network MACs are counted
    (:func:`count_network_macs`).

    All models and engines are built first (one engine per model, engine, precision and input
    scale; batch sizes share it), then frames are timed in rounds, one frame of every variant
    per round, so that load from other processes affects all variants alike. Memory must hold
    every model and engine at once.

    ``engine_options`` maps an engine name to extra options for :func:`create_engine` (e.g.
    ``{"onnxruntime": {"cache_dir": "..."}}``). ``optional`` adds the detection and
    serialisation stages. ``cuda_graphs`` lists the CUDA-graph settings to compare (``None``:
    the engine's default; ``True`` / ``False`` are torch-engine options, other engines skip
    them with the reason).
    """
    from fasthmr_ros.pipeline.hand_pipeline import HandMeshPipeline
    from fasthmr_ros.pipeline.hmr2_estimator import Hmr2BodyEstimator

    if warmup < 0 or iterations < 1:
        raise ValueError(f"need warmup >= 0 and iterations >= 1, got {warmup}, {iterations}")
    if any(b < 1 for b in batches):
        raise ValueError(f"batch sizes must be >= 1, got {list(batches)}")
    torch_device = parse_device(device)
    settings = {
        "models": list(models), "engines": list(engines), "precisions": list(precisions),
        "batches": list(batches), "input_scales": list(input_scales), "device": device,
        "warmup": warmup, "iterations": iterations, "cuda_graphs": list(cuda_graphs),
        "merge_plans": list(merge_plans),
    }
    specs = {model_label(spec): spec for spec in models}
    variants = [
        Variant(m, e, p, b, s, cuda_graphs=g, merge_plan=plan)
        for m in specs for plan in merge_plans for e in engines for p in precisions
        for s in input_scales for g in cuda_graphs for b in batches
    ]
    if baseline is not None and baseline not in {v.label for v in variants}:
        raise ValueError(f"baseline '{baseline}' is not one of the variants: "
                         f"{', '.join(v.label for v in variants)}")
    bar = tqdm(total=(warmup + iterations) * len(variants), desc="bench", unit="frame",
               disable=not progress)
    regressors = _plan_models(specs, merge_plans, mano_dir, smpl_dir, torch_device, bar)
    # Output change is measured against the model as trained, merge plans included.
    references = {name: torch_reference(regressors[(name, NO_PLAN)]) for name in specs}
    macs = {key: (count_network_macs(model, foreground=True),
                  count_network_macs(model, foreground=True, attention=False))
            for key, model in regressors.items()}
    built, setup = _build_engines(variants, regressors, device, engine_options or {}, bar)
    frames = {b: synthetic_frame(b) for b in batches}
    people = {b: synthetic_people(b) for b in batches}
    results, running = [], []
    for v in variants:
        result = VariantResult(v)
        results.append(result)
        key = v.engine_key
        engine = built[key]
        if isinstance(engine, str):
            result.skipped = engine
            bar.update(warmup + iterations)
            continue
        result.engine_name, result.setup_s = engine.name, setup[key]
        counted = macs[(v.model, v.merge_plan)]
        result.macs_g, result.macs_without_attention_g = (c / 1e9 for c in counted)
        jpeg, boxes = frames[v.batch]
        if isinstance(regressors[(v.model, v.merge_plan)], BodyMeshRegressor):
            pipeline: Any = Hmr2BodyEstimator(engine, device=str(torch_device))
            boxes, stages = people[v.batch], optional.for_bodies()
        else:
            pipeline, stages = HandMeshPipeline(engine, device=str(torch_device)), optional
        running.append(_Running(result, engine, pipeline, jpeg, boxes, _Timer(torch_device),
                                stages))
    for index in range(warmup + iterations):
        for item in running:
            bar.set_postfix_str(item.result.variant.label)
            item.timer.recording = index >= warmup
            item.frame()
            bar.update()
    bar.close()
    for item in running:
        item.result.stages = {n: StageStats.from_samples(item.timer.samples[n])
                              for n in STAGES if item.timer.samples[n]}
        crops, _ = item.pipeline.make_batch(decode_frame(item.jpeg), item.boxes)
        expected = references[item.result.variant.model](torch.from_numpy(crops))
        for result_field, change in output_changes_mm(item.outputs, expected).items():
            setattr(item.result, result_field, change)
    del running, built, regressors, references
    gc.collect()

    report = BenchReport(settings=settings, environment=environment(), results=results)
    measured = report.measured()
    if measured:
        chosen = next((r for r in measured if r.variant.label == baseline), measured[0])
        report.baseline = chosen.variant.label
        apply_ratios(results, chosen)
    return report


# --------------------------------------------------------------------------------------------
# output


def _fmt(value: float | None, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}f}"


def markdown_table(report: BenchReport) -> str:
    """The results as a markdown table (medians; network also p90/p99) plus skipped variants."""
    header = (
        "| variant | engine | " + " | ".join(f"{s} ms" for s in STAGES if s != "network")
        + " | network ms (p50 / p90 / p99) | network / crop ms | total / crop ms | "
        "speed-up network | speed-up total | change vs fp32 mm (vertices / joints) | "
        "network GMACs (w/o attention) |"
    )
    columns = header.count("|") - 1
    lines = [header, "|" + "---|" * columns]
    for r in report.measured():
        net = r.stages["network"]
        other = " | ".join(_fmt(r.stages[s].median_ms if s in r.stages else None)
                           for s in STAGES if s != "network")
        lines.append(
            f"| {r.variant.label} | {r.engine_name} | {other} | {_fmt(net.median_ms)} / "
            f"{_fmt(net.p90_ms)} / {_fmt(net.p99_ms)} | {_fmt(r.network_per_crop_ms)} | "
            f"{_fmt(r.total_per_crop_ms)} | {_fmt(r.speedup_network)}x | "
            f"{_fmt(r.speedup_total)}x | {_fmt(r.output_change_mm, 4)} / "
            f"{_fmt(r.joints_change_mm, 4)} | "
            f"{_fmt(r.macs_g, 2)} ({_fmt(r.macs_without_attention_g, 2)}) |"
        )
    text = "\n".join(lines)
    text += (f"\n\nSpeed-ups: per-crop median latency of `{report.baseline}` divided by the "
             "variant's, same run. Change: largest vertex / joint difference (mm) to the same "
             "model as trained (no merge plan), eager torch fp32, same crops (numerical change, "
             "not accuracy). GMACs: one crop through backbone + head, counted by torch's "
             "FlopCounterMode; in brackets without batched matmuls (attention and token-merge "
             "products: FastHMR's convention).")
    env = report.environment
    text += (f"\nMeasured on {env.get('processor')} ({env.get('cpu_count')} CPUs, torch "
             f"{env.get('torch')}, {env.get('torch_threads')} threads"
             f"{', GPU ' + env['cuda'] if env.get('cuda') else ''}; load average "
             f"{env.get('load_average', '-')}); {report.settings['iterations']} timed "
             f"iterations after {report.settings['warmup']} warm-up.")
    comparison = body_hand_comparison(report)
    if comparison:
        text += "\n\n" + comparison
    reasons: dict[str, list[str]] = {}
    for r in report.results:
        if r.skipped:
            reasons.setdefault(r.skipped, []).append(r.variant.label)
    if reasons:
        text += "\n\nSkipped:\n" + "\n".join(
            f"- {', '.join(labels)}: {reason}" for reason, labels in reasons.items()
        )
    return text + "\n"


def body_hand_pairs(report: BenchReport) -> list[tuple[VariantResult, VariantResult]]:
    """Each measured body variant with each hand variant that differs from it only in model.

    Same engine, precision, batch (people against hands), input scale, CUDA graphs and merge
    plan, measured in the same run: what a stage costs on the body path against the hand path.
    """
    def setting(result: VariantResult) -> tuple:
        return replace(result.variant, model="").engine_key + (result.variant.batch,)

    measured = report.measured()
    hands = [r for r in measured if not is_body_model(r.variant.model)]
    return [(body, hand) for body in measured if is_body_model(body.variant.model)
            for hand in hands if setting(hand) == setting(body)]


def body_hand_comparison(report: BenchReport) -> str:
    """Markdown: every stage but the network, body path against hand path (empty if no pair)."""
    pairs = body_hand_pairs(report)
    if not pairs:
        return ""
    stages = [s for s in STAGES if s != "network"
              and any(s in body.stages and s in hand.stages for body, hand in pairs)]
    lines = ["| body variant vs hand variant | "
             + " | ".join(f"{s}: body / hand ms" for s in stages) + " |",
             "|" + "---|" * (len(stages) + 1)]
    for body, hand in pairs:
        cells = []
        for stage in stages:
            if stage in body.stages and stage in hand.stages:
                b, h = body.stages[stage].median_ms, hand.stages[stage].median_ms
                cells.append(f"{_fmt(b)} / {_fmt(h)} ({_fmt(b / h if h > 0 else None)}x)")
            else:
                cells.append("-")
        lines.append(f"| {body.variant.label} vs {hand.variant.label} | "
                     + " | ".join(cells) + " |")
    return ("Bodies against hands, stage by stage (medians of the same run; the body path's "
            "frame holds `batch` people, the hand path's `batch` hands):\n\n"
            + "\n".join(lines))


def write_json(report: BenchReport, path: str | Path) -> Path:
    """Write the report as JSON."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report.to_dict(), indent=2) + "\n", encoding="utf-8")
    return path


def write_plot(report: BenchReport, path: str | Path) -> Path:
    """Write a PNG: per-crop network latency (log scale) and the per-stage share of a frame."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    measured = report.measured()
    if not measured:
        raise ValueError("nothing was measured (every variant was skipped); no plot to draw")
    labels = [r.variant.label for r in measured]
    height = max(2.5, 0.45 * len(measured) + 1.2)
    figure, (left, right) = plt.subplots(1, 2, figsize=(13, height), sharey=True)
    positions = np.arange(len(measured))
    left.barh(positions, [r.network_per_crop_ms for r in measured], color="tab:blue")
    left.set_xscale("log")
    left.set_xlabel("network latency per crop, median (ms, log scale)")
    left.set_yticks(positions, labels)
    left.invert_yaxis()
    for pos, r in zip(positions, measured):
        left.annotate(f"{r.network_per_crop_ms:.3g}", (r.network_per_crop_ms, pos),
                      xytext=(3, 0), textcoords="offset points", va="center", fontsize=8)
    offsets = np.zeros(len(measured))
    for stage in STAGES:
        share = np.array([100 * r.stages[stage].median_ms / r.total_ms if stage in r.stages
                          else 0.0 for r in measured])
        right.barh(positions, share, left=offsets, label=stage)
        offsets += share
    right.set_xlabel("share of the frame's latency per stage (%)")
    right.set_xlim(0, 100)
    right.legend(loc="upper center", bbox_to_anchor=(0.5, -0.22 * 4 / height), ncol=4,
                 fontsize=8, frameon=False)
    left.margins(x=0.2)
    figure.suptitle(f"fasthmr bench ({report.settings['device']})")
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
