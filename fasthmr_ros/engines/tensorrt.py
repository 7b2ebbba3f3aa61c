"""TensorRT engine: the exported network built into a cached engine and run on PyTorch tensors.

``create_engine(regressor, engine="tensorrt", precision="fp16", device="cuda:0")`` exports the
network to ONNX once (:func:`~fasthmr_ros.engines.onnx_export.cached_export`), builds an engine
from it with the TensorRT Python API on first use (minutes for ViT-H; progress is shown) and
keeps it in the engine cache (:mod:`.engine_cache`) under a key of the ONNX file's hash, the
TensorRT version, the GPU, the precision and the batch profile. Later runs load it in seconds.
``force_engine_rebuild=True`` rebuilds; a corrupt cache file is deleted and rebuilt.

Inference uses the name-based API present in TensorRT 8.6, 10.x and 11.x: ``set_input_shape``
per call, ``set_tensor_address`` on torch tensors (input and outputs, outputs allocated in the
engine's dtypes) and ``execute_async_v3`` on the caller's current CUDA stream, so the work is
ordered with the surrounding PyTorch code without a host synchronisation. On the legacy
default stream (handle 0), where TensorRT would add a synchronisation to every call, the
engine runs on its own stream ordered after and before the caller's.

Options (``create_engine(..., **options)``): ``onnx_path`` (build from this exported graph),
``input_scale`` (for the export), ``cache_dir`` (package cache root; engines go to
``<cache_dir>/engines``), ``force_engine_rebuild``, ``max_batch`` (default 8), ``opt_batch``
(default 4, see :class:`~.tensorrt_build.BatchProfile`), ``workspace_gib`` (default 2),
``progress`` (show build and export progress; default: when on a terminal).
"""

from __future__ import annotations

import logging
import tempfile
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from fasthmr_ros.engines.base import (
    NETWORK_FOREGROUND,
    NETWORK_INPUT,
    EngineError,
    check_crops,
    describe_layouts,
    layout_of_outputs,
    parse_device,
    register_engine,
    reject_unknown_options,
)
from fasthmr_ros.engines.engine_cache import (
    CachedEngine,
    EngineCache,
    EngineCacheKey,
    default_engine_dir,
    hash_onnx_model,
    make_build_options,
)
from fasthmr_ros.engines.tensorrt_build import (
    DEFAULT_WORKSPACE_GIB,
    BatchProfile,
    build_serialized_engine,
    import_tensorrt,
    tensorrt_logger,
)
from fasthmr_ros.engines.tensorrt_versions import (
    TENSORRT_PRECISIONS,
    BuildPlan,
    plan_build,
    torch_dtype,
)
from fasthmr_ros.models.regressor import MeshRegressor

LOGGER = logging.getLogger(__name__)

#: Options :func:`create_tensorrt_runner` accepts.
OPTIONS: tuple[str, ...] = (
    "onnx_path", "input_scale", "cache_dir", "force_engine_rebuild", "max_batch", "opt_batch",
    "workspace_gib", "progress",
)


@dataclass(frozen=True)
class TensorRTSettings:
    """What to build: precision, batch profile and builder workspace.

    fp32 engines may use TF32 tensor cores on Ampere and newer GPUs (TensorRT's default), so
    they match PyTorch to about 1e-3 relative, not bit for bit.
    """

    precision: str = "fp16"
    profile: BatchProfile = field(default_factory=BatchProfile)
    workspace_gib: float = DEFAULT_WORKSPACE_GIB

    def __post_init__(self) -> None:
        if self.precision not in TENSORRT_PRECISIONS:
            raise EngineError(
                f"TensorRT precision must be one of {', '.join(TENSORRT_PRECISIONS)}, got "
                f"'{self.precision}'."
            )
        if not self.workspace_gib > 0:
            raise EngineError(f"workspace_gib must be positive, got {self.workspace_gib}.")

    @property
    def workspace_bytes(self) -> int:
        """The workspace limit in bytes."""
        return int(self.workspace_gib * (1 << 30))


def settings_from_options(precision: str, options: Mapping[str, Any]) -> TensorRTSettings:
    """Settings from engine options ``max_batch``, ``opt_batch``, ``workspace_gib``.

    ``opt_batch`` defaults to 4, or to ``max_batch`` when that is smaller. Raises
    :class:`EngineError` naming the bad value.
    """
    try:
        max_batch = int(options.get("max_batch", 8))
        opt_batch = int(options.get("opt_batch", min(4, max_batch)))
        profile = BatchProfile(opt_batch=opt_batch, max_batch=max_batch)
    except (TypeError, ValueError) as exc:
        raise EngineError(f"invalid TensorRT batch options: {exc}") from None
    workspace = float(options.get("workspace_gib", DEFAULT_WORKSPACE_GIB))
    return TensorRTSettings(precision=precision, profile=profile, workspace_gib=workspace)


def engine_cache_key(
    model_sha256: str,
    tensorrt_version: str,
    gpu_name: str,
    compute_capability: str,
    settings: TensorRTSettings,
    plan: BuildPlan,
) -> EngineCacheKey:
    """The cache key of an engine built from a model with ``settings`` and ``plan``."""
    from fasthmr_ros.engines.onnx_precision import CONVERSION_VERSION

    options = make_build_options(
        input=NETWORK_INPUT,
        workspace_bytes=settings.workspace_bytes,
        builder_flags="+".join(plan.builder_flags) or "none",
        strongly_typed_flag=plan.strongly_typed_flag,
        onnx_precision=plan.onnx_precision,
        onnx_conversion=CONVERSION_VERSION if plan.strongly_typed else 0,
    )
    return EngineCacheKey(
        model_sha256=model_sha256,
        tensorrt_version=str(tensorrt_version),
        gpu_name=gpu_name,
        compute_capability=compute_capability,
        precision=settings.precision,
        input_shapes=settings.profile.shapes(),
        build_options=options,
    )


def gpu_identity(device: torch.device) -> tuple[str, str]:
    """(name, ``"major.minor"`` compute capability) of a CUDA device."""
    index = device.index if device.index is not None else torch.cuda.current_device()
    major, minor = torch.cuda.get_device_capability(index)
    return torch.cuda.get_device_name(index), f"{major}.{minor}"


def engine_dir(cache_dir: str | Path | None) -> Path:
    """Engine folder for a package cache root (``None``: the default root)."""
    return Path(cache_dir).expanduser() / "engines" if cache_dir else default_engine_dir()


@dataclass
class LoadedEngine:
    """A deserialized ``ICudaEngine`` and the ``IRuntime`` that must outlive it."""

    runtime: Any
    engine: Any


def cuda_device(device: str | torch.device) -> torch.device:
    """Parse ``device``; raise :class:`EngineError` unless it is a usable CUDA device."""
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise EngineError(f"invalid device {device!r} ({exc}); use 'cuda:N'.") from None
    if parsed.type != "cuda":
        raise EngineError(
            f"TensorRT runs on NVIDIA GPUs only, not on {device!r}; use device='cuda:0', or "
            "engine='onnxruntime' / engine='torch' on a CPU."
        )
    if not torch.cuda.is_available():
        raise EngineError(
            f"TensorRT needs a CUDA GPU, but CUDA is not available here (device {device!r}); "
            "use engine='onnxruntime' or engine='torch' with device='cpu'."
        )
    return parse_device(parsed)


def load_or_build_engine(
    onnx_path: str | Path,
    settings: TensorRTSettings | None = None,
    device: str | torch.device = "cuda:0",
    cache_dir: str | Path | None = None,
    force_rebuild: bool = False,
    progress: bool | None = None,
) -> CachedEngine[LoadedEngine]:
    """Load the engine for ``onnx_path`` from the cache, building it on a miss.

    Args:
        onnx_path: the exported network (float32; converted here when the TensorRT version
            needs a strongly typed reduced-precision graph).
        settings: precision, batch profile, workspace (default fp16, batch 1..8, opt 4).
        device: the CUDA device to build for and run on.
        cache_dir: package cache root (engines in ``<cache_dir>/engines``); None: default.
        force_rebuild: rebuild even when a cached engine exists.
        progress: show the build progress (None: when on a terminal).

    Raises:
        EngineError: TensorRT missing, no CUDA, unsupported precision, or a failed build.

    """
    settings = settings or TensorRTSettings()
    trt = import_tensorrt()
    device = cuda_device(device)
    onnx_path = Path(onnx_path)
    plan = plan_build(trt.__version__, settings.precision,
                      has_builder_flag=lambda name: hasattr(trt.BuilderFlag, name))
    gpu_name, capability = gpu_identity(device)
    try:
        model_sha256 = hash_onnx_model(onnx_path)
    except (OSError, ValueError) as exc:
        raise EngineError(str(exc)) from None
    key = engine_cache_key(model_sha256, trt.__version__, gpu_name, capability, settings, plan)
    cache = EngineCache(engine_dir(cache_dir))
    timing_cache = cache.timing_cache_path(trt.__version__, gpu_name, capability)

    def build() -> Any:
        with torch.cuda.device(device):
            if not plan.strongly_typed:
                return build_serialized_engine(
                    trt, onnx_path, plan, settings.profile, settings.workspace_bytes,
                    timing_cache, show_progress=progress)
            from fasthmr_ros.engines.onnx_precision import convert_onnx_precision

            with tempfile.TemporaryDirectory(dir=cache.directory, prefix=".convert-") as tmp:
                converted = Path(tmp) / f"{onnx_path.stem}-{plan.onnx_precision}.onnx"
                convert_onnx_precision(onnx_path, converted, plan.onnx_precision)
                return build_serialized_engine(
                    trt, converted, plan, settings.profile, settings.workspace_bytes,
                    timing_cache, show_progress=progress)

    def deserialize(data: bytes) -> LoadedEngine | None:
        with torch.cuda.device(device):
            runtime = trt.Runtime(tensorrt_logger(trt))
            engine = runtime.deserialize_cuda_engine(data)
        return None if engine is None else LoadedEngine(runtime, engine)

    return cache.load_or_build(key, build, deserialize, force_rebuild=force_rebuild,
                               source=str(onnx_path))


def check_engine_io(inputs: Sequence[str], outputs: Sequence[str]) -> None:
    """Raise :class:`EngineError` unless an engine has this package's network signature."""
    known_inputs = ([NETWORK_INPUT], [NETWORK_INPUT, NETWORK_FOREGROUND])
    if list(inputs) not in known_inputs or layout_of_outputs(outputs) is None:
        raise EngineError(
            f"the TensorRT engine has inputs {list(inputs)} and outputs {list(outputs)}; "
            f"expected [{NETWORK_INPUT}] (plus {NETWORK_FOREGROUND} for a masked merge plan) "
            f"-> {describe_layouts()}. Rebuild it from a graph "
            "written by 'fasthmr export onnx' (force_engine_rebuild=True)."
        )


class TensorRTRunner:
    """Runs a deserialized TensorRT engine on torch CUDA tensors (a ``NetworkRunner``).

    Args:
        loaded: the engine and its runtime (:func:`load_or_build_engine`).
        device: the CUDA device the engine was built for.
        profile: the batch profile it was built with (larger batches run in chunks).
        precision: for the runner's name.
        path: the engine file, for messages.

    """

    def __init__(self, loaded: LoadedEngine, device: str | torch.device,
                 profile: BatchProfile, precision: str, path: Path | None = None) -> None:
        trt = import_tensorrt()
        self.device = parse_device(device)
        self.profile = profile
        self.precision = precision
        self.path = path
        self.name = f"tensorrt-{precision}-{self.device}"
        self._loaded = loaded
        engine = loaded.engine
        with torch.cuda.device(self.device):
            self._context = engine.create_execution_context()
        if self._context is None:
            raise EngineError(f"TensorRT could not create an execution context for {path} "
                              "(out of GPU memory?).")
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if n not in inputs]
        check_engine_io(inputs, outputs)
        self.output_names: tuple[str, ...] = tuple(outputs)
        self._input_dtype = torch_dtype(engine.get_tensor_dtype(NETWORK_INPUT))
        #: Tokens per crop of a masked merge plan's foreground input (None: crops only).
        self._foreground: tuple[int, torch.dtype] | None = None
        if NETWORK_FOREGROUND in inputs:
            tokens = int(tuple(engine.get_tensor_shape(NETWORK_FOREGROUND))[1])
            self._foreground = (tokens,
                                torch_dtype(engine.get_tensor_dtype(NETWORK_FOREGROUND)))
        self._output_dtypes = {n: torch_dtype(engine.get_tensor_dtype(n)) for n in outputs}
        self._lock = threading.Lock()  # one execution context: one call at a time
        self._own_stream: torch.cuda.Stream | None = None

    def _streams(self) -> tuple[torch.cuda.Stream, torch.cuda.Stream | None]:
        """(stream to enqueue on, caller stream to order with or None when they are one)."""
        current = torch.cuda.current_stream(self.device)
        if current.cuda_stream != 0:
            return current, None
        if self._own_stream is None:
            self._own_stream = torch.cuda.Stream(self.device)
        return self._own_stream, current

    def _foreground_input(self, crops: torch.Tensor,
                          foreground: torch.Tensor | None) -> torch.Tensor | None:
        """The foreground flags the engine takes (zeros, i.e. plain ToMe, when not given)."""
        if self._foreground is None:
            return None
        tokens, dtype = self._foreground
        shape = (crops.shape[0], tokens)
        if foreground is None:
            return torch.zeros(shape, dtype=dtype, device=self.device)
        if tuple(foreground.shape) != shape:
            raise EngineError(f"foreground has shape {tuple(foreground.shape)}, the engine "
                              f"takes {shape}")
        return foreground.detach().to(self.device, dtype).contiguous()

    def _run_chunk(self, crops: torch.Tensor,
                   flags: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        context = self._context
        if not context.set_input_shape(NETWORK_INPUT, tuple(crops.shape)):
            raise EngineError(f"TensorRT rejected input shape {tuple(crops.shape)} (profile "
                              f"{self.profile.shapes()[0]}..{self.profile.shapes()[2]}).")
        context.set_tensor_address(NETWORK_INPUT, crops.data_ptr())
        if flags is not None:
            if not context.set_input_shape(NETWORK_FOREGROUND, tuple(flags.shape)):
                raise EngineError(f"TensorRT rejected foreground shape {tuple(flags.shape)}.")
            context.set_tensor_address(NETWORK_FOREGROUND, flags.data_ptr())
        outputs: dict[str, torch.Tensor] = {}
        for name in self.output_names:
            shape = tuple(context.get_tensor_shape(name))
            if any(dim < 0 for dim in shape):
                raise EngineError(f"TensorRT could not resolve the shape of output {name}: "
                                  f"{shape}.")
            outputs[name] = torch.empty(shape, dtype=self._output_dtypes[name],
                                        device=self.device)
            context.set_tensor_address(name, outputs[name].data_ptr())
        stream, caller = self._streams()
        if caller is not None:
            stream.wait_stream(caller)
        if not context.execute_async_v3(stream.cuda_stream):
            raise EngineError(f"TensorRT failed to enqueue the engine {self.path}; see the "
                              "TensorRT errors logged above.")
        if caller is not None:
            caller.wait_stream(stream)
        return {k: v if v.dtype == torch.float32 else v.float() for k, v in outputs.items()}

    def run(
        self, crops: torch.Tensor, foreground: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """Run the engine on normalised crops ``(B, 3, 256, 256)``; float32 CUDA outputs.

        ``foreground`` (B, tokens) feeds engines of masked merge plans; others ignore it.
        """
        check_crops(crops)
        with self._lock, torch.cuda.device(self.device):
            crops = crops.detach().to(self.device, self._input_dtype).contiguous()
            flags = self._foreground_input(crops, foreground)
            parts = [self._run_chunk(crops[start:stop],
                                     None if flags is None else flags[start:stop])
                     for start, stop in self.profile.chunks(crops.shape[0])]
        if len(parts) == 1:
            return parts[0]
        return {key: torch.cat([part[key] for part in parts]) for key in self.output_names}


def create_tensorrt_runner(
    regressor: MeshRegressor,
    precision: str = "fp16",
    device: str | torch.device = "cuda:0",
    **options: Any,
) -> TensorRTRunner:
    """Engine factory for ``engine="tensorrt"`` (options: see the module docstring)."""
    reject_unknown_options("tensorrt", options, OPTIONS)
    settings = settings_from_options(precision, options)
    cuda_device(device)
    import_tensorrt()
    from fasthmr_ros.engines.onnx_export import graph_for_engine

    onnx_path = graph_for_engine(regressor, options)
    cached = load_or_build_engine(
        onnx_path, settings, device, cache_dir=options.get("cache_dir"),
        force_rebuild=bool(options.get("force_engine_rebuild", False)),
        progress=options.get("progress"),
    )
    return TensorRTRunner(cached.engine, device, settings.profile, precision, cached.path)


register_engine("tensorrt", create_tensorrt_runner)
