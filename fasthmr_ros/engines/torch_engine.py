"""PyTorch engine: the network in eval + inference mode, with the GPU speed-ups PyTorch offers.

* Precision: ``fp32`` everywhere; ``bf16`` by autocast on CPU and CUDA; ``fp16`` on CUDA only
  (CPU fp16 kernels are slow or missing: asking for it raises with the alternatives). With
  ``cast_weights=True`` a half-precision copy of backbone + head replaces autocast on CUDA
  (the regressor itself stays fp32, so MANO and exports are unaffected).
* ``channels_last`` memory format for CNN backbones (students); default on for them.
* CUDA graphs for bucketed batch sizes (default 1, 2, 4, 8) on CUDA: a batch is padded to the
  smallest bucket that holds it (larger batches run in chunks of the largest bucket), the
  bucket's graph is captured on first use (or up front with ``capture_all=True``) and replayed.
  Rows of the network are independent, so padding never changes the real rows' results.
* ``compile=True`` wraps the network in ``torch.compile`` (backend ``compile_backend``,
  inductor by default; with CUDA graphs, inductor's ``reduce-overhead`` mode replaces the
  hand-made graphs). Inductor compiles on the first call (a minute for ViT-H on a CPU).

Outputs are always float32.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from fasthmr_ros.engines.base import (
    PRECISION_DTYPES,
    EngineError,
    check_crops,
    parse_device,
    register_engine,
    reject_unknown_options,
)
from fasthmr_ros.engines.network import NetworkModule
from fasthmr_ros.models.constants import CROP_SIZE
from fasthmr_ros.models.regressor import MeshRegressor

#: Batch sizes that get a CUDA graph by default.
DEFAULT_BUCKETS: tuple[int, ...] = (1, 2, 4, 8)
#: Backbone kinds that are convolutional (channels-last helps them).
CNN_KINDS: tuple[str, ...] = ("timm",)
#: Warm-up iterations before a CUDA graph capture (lets cuDNN/cuBLAS pick and allocate).
CAPTURE_WARMUP = 3
#: Options :func:`create_torch_runner` accepts.
OPTIONS = ("input_scale", "cuda_graphs", "buckets", "capture_all", "compile", "compile_backend",
           "channels_last", "cast_weights")

NetworkFn = Callable[[torch.Tensor], dict[str, torch.Tensor]]


def check_buckets(buckets: Sequence[int]) -> tuple[int, ...]:
    """Sorted, de-duplicated positive bucket sizes; raise ``ValueError`` for bad ones."""
    if not buckets or any(int(b) != b or b < 1 for b in buckets):
        raise ValueError(f"buckets must be positive integers, got {list(buckets)}")
    return tuple(sorted({int(b) for b in buckets}))


def bucket_for(batch: int, buckets: Sequence[int]) -> int:
    """The smallest bucket holding ``batch`` rows (the largest one if none does)."""
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    for size in buckets:
        if size >= batch:
            return size
    return buckets[-1]


@dataclass(frozen=True)
class Chunk:
    """Rows ``start:stop`` of a batch, run padded to ``bucket`` rows."""

    start: int
    stop: int
    bucket: int


def plan_chunks(batch: int, buckets: Sequence[int]) -> list[Chunk]:
    """Split ``batch`` rows into chunks of at most the largest bucket, each with its bucket."""
    largest = buckets[-1]
    chunks = []
    for start in range(0, batch, largest):
        stop = min(batch, start + largest)
        chunks.append(Chunk(start, stop, bucket_for(stop - start, buckets)))
    return chunks


def pad_rows(crops: torch.Tensor, rows: int) -> torch.Tensor:
    """``crops`` with zero rows appended up to ``rows`` rows."""
    missing = rows - crops.shape[0]
    if missing < 0:
        raise ValueError(f"cannot pad {crops.shape[0]} rows down to {rows}")
    if missing == 0:
        return crops
    return torch.cat((crops, crops.new_zeros((missing, *crops.shape[1:]))))


def run_bucketed(
    crops: torch.Tensor, buckets: Sequence[int], run_bucket: Callable[[torch.Tensor], dict]
) -> dict[str, torch.Tensor]:
    """Run ``run_bucket`` on padded chunks of ``crops`` and join the real rows' outputs.

    ``run_bucket`` receives a tensor whose batch is exactly a bucket size and returns the
    network outputs for it (it may reuse its output buffers: rows are copied out).
    """
    parts: dict[str, list[torch.Tensor]] = {}
    for chunk in plan_chunks(crops.shape[0], buckets):
        rows = chunk.stop - chunk.start
        outputs = run_bucket(pad_rows(crops[chunk.start : chunk.stop], chunk.bucket))
        for key, value in outputs.items():
            parts.setdefault(key, []).append(value[:rows].to(torch.float32, copy=True))
    return {key: torch.cat(values) if len(values) > 1 else values[0]
            for key, values in parts.items()}


class CudaGraphBuckets:
    """One captured CUDA graph per bucket size, each with static input and output buffers."""

    def __init__(self, network: NetworkFn, device: torch.device, buckets: Sequence[int],
                 input_dtype: torch.dtype, memory_format: torch.memory_format,
                 context: Callable[[], contextlib.AbstractContextManager]) -> None:
        self.network = network
        self.device = device
        self.buckets = tuple(buckets)
        self.input_dtype = input_dtype
        self.memory_format = memory_format
        self.context = context
        self.pool: Any = None
        self.graphs: dict[int, tuple[Any, torch.Tensor, dict[str, torch.Tensor]]] = {}

    def capture(self, bucket: int) -> None:
        """Capture the graph of ``bucket`` (warm-up on a side stream first, per PyTorch docs).

        The runner's device is made current for the capture: ``torch.cuda.graph`` captures the
        current device's work only, so a runner on ``cuda:1`` would otherwise capture nothing.
        """
        with torch.inference_mode(), torch.cuda.device(self.device):
            self._capture(bucket)

    def _capture(self, bucket: int) -> None:
        static_in = torch.zeros(bucket, 3, CROP_SIZE, CROP_SIZE, device=self.device,
                                dtype=self.input_dtype).contiguous(
                                    memory_format=self.memory_format)
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side), self.context():
            for _ in range(CAPTURE_WARMUP):
                self.network(static_in)
        torch.cuda.current_stream(self.device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        if self.pool is None:
            self.pool = torch.cuda.graph_pool_handle()
        # The side stream captures too: torch.cuda.graph's default capture stream is created
        # once per process, on whichever device was current then.
        with torch.cuda.graph(graph, pool=self.pool, stream=side), self.context():
            static_out = self.network(static_in)
        self.graphs[bucket] = (graph, static_in, static_out)

    def __call__(self, padded: torch.Tensor) -> dict[str, torch.Tensor]:
        """Copy ``padded`` (a bucket-sized batch) into the bucket's graph and replay it."""
        bucket = padded.shape[0]
        if bucket not in self.graphs:
            self.capture(bucket)
        graph, static_in, static_out = self.graphs[bucket]
        static_in.copy_(padded)
        graph.replay()
        return static_out


def _is_cnn(regressor: MeshRegressor) -> bool:
    return str(regressor.config.get("kind", "vit")) in CNN_KINDS


class TorchRunner:
    """Runs :class:`NetworkModule` of a regressor with PyTorch.

    Args:
        regressor: the hand or body regressor (moved to ``device``; its weights are shared, except
            with ``cast_weights``).
        precision: ``fp32``; ``bf16`` (autocast, CPU or CUDA); ``fp16`` (CUDA only).
        device: ``"cpu"`` or ``"cuda:N"``.
        input_scale: backbone resolution relative to 256x192 (:mod:`.network`).
        cuda_graphs: capture CUDA graphs per bucket (default: on for CUDA; error on CPU).
        buckets: batch sizes that get a graph; batches are padded up to one.
        capture_all: capture every bucket now instead of on first use.
        compile: wrap the network in ``torch.compile`` with ``compile_backend``.
        compile_backend: ``torch.compile`` backend (default inductor).
        channels_last: channels-last memory format (default: on for CNN backbones).
        cast_weights: run a half-precision copy of the weights instead of autocast (CUDA).

    """

    def __init__(
        self,
        regressor: MeshRegressor,
        *,
        precision: str = "fp32",
        device: str | torch.device = "cpu",
        input_scale: float = 1.0,
        cuda_graphs: bool | None = None,
        buckets: Sequence[int] = DEFAULT_BUCKETS,
        capture_all: bool = False,
        compile: bool = False,
        compile_backend: str = "inductor",
        channels_last: bool | None = None,
        cast_weights: bool = False,
    ) -> None:
        self.device = parse_device(device)
        on_cuda = self.device.type == "cuda"
        if precision == "fp16" and not on_cuda:
            raise EngineError(
                "the torch engine runs fp16 on CUDA only (CPU fp16 kernels are slow or "
                "missing); use precision='fp32' or 'bf16' on CPU, or device='cuda'."
            )
        if cuda_graphs and not on_cuda:
            raise EngineError("cuda_graphs=True needs device='cuda'; drop it on CPU.")
        if cast_weights and not on_cuda:
            raise EngineError("cast_weights=True needs device='cuda' (half weights on CPU are "
                              "slow); use autocast (the default) instead.")
        self.precision = precision
        self.buckets = check_buckets(buckets)
        self.dtype = PRECISION_DTYPES[precision]
        regressor.to(self.device).eval()
        network = NetworkModule(regressor, input_scale).eval()
        self.cast_weights = bool(cast_weights and precision != "fp32")
        if self.cast_weights:
            network = copy.deepcopy(network).to(self.dtype)
        self.channels_last = _is_cnn(regressor) if channels_last is None else channels_last
        self.memory_format = (torch.channels_last if self.channels_last
                              else torch.contiguous_format)
        if self.channels_last:
            network = network.to(memory_format=torch.channels_last)
        self.network = network
        self.use_graphs = on_cuda if cuda_graphs is None else bool(cuda_graphs)
        if network.uses_foreground:
            if cuda_graphs:
                raise EngineError("cuda_graphs=True cannot run a masked merge plan (its "
                                  "foreground input is not captured); use cuda_graphs=False, "
                                  "or a plan with tokens.mask 'none'.")
            self.use_graphs = False
        self.compiled = bool(compile)
        function: NetworkFn = network
        if self.compiled:
            # Modes are inductor's; other backends (e.g. "eager", for tests) take none.
            mode = "reduce-overhead" if self.use_graphs and compile_backend == "inductor" else None
            function = torch.compile(network, backend=compile_backend, mode=mode, dynamic=False)
        self.function = function
        self.graphs: CudaGraphBuckets | None = None
        if self.use_graphs and not self.compiled:
            self.graphs = CudaGraphBuckets(function, self.device, self.buckets,
                                           self._input_dtype(), self.memory_format,
                                           self._precision_context)
            if capture_all:
                for bucket in self.buckets:
                    self.graphs.capture(bucket)
        features = [f for f, on in (("graphs", self.graphs is not None),
                                    ("compile", self.compiled),
                                    ("cl", self.channels_last)) if on]
        self.name = "-".join(["torch", precision, self.device.type, *features])

    def _input_dtype(self) -> torch.dtype:
        return self.dtype if self.cast_weights else torch.float32

    def _precision_context(self) -> contextlib.AbstractContextManager:
        if self.precision == "fp32" or self.cast_weights:
            return contextlib.nullcontext()
        # The autocast cache must be off while CUDA graphs are captured (PyTorch docs).
        return torch.autocast(self.device.type, dtype=self.dtype,
                              cache_enabled=not self.use_graphs)

    @contextlib.contextmanager
    def _inference(self) -> Iterator[None]:
        with torch.inference_mode(), self._precision_context():
            yield

    def _prepare(self, crops: torch.Tensor) -> torch.Tensor:
        crops = crops.to(self.device, dtype=self._input_dtype(), non_blocking=True)
        return crops.contiguous(memory_format=self.memory_format)

    def run(
        self, crops: torch.Tensor, foreground: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """Run the network; float32 outputs on the runner's device.

        ``foreground`` (B, tokens) is used by masked merge plans and ignored otherwise.
        """
        check_crops(crops)
        with torch.inference_mode():
            prepared = self._prepare(crops)
            if self.graphs is not None:
                return run_bucketed(prepared, self.buckets, self.graphs)
            with self._precision_context():
                if foreground is not None and self.network.uses_foreground:
                    outputs = self.function(prepared, foreground.to(self.device))
                else:
                    outputs = self.function(prepared)
            return {key: outputs[key].float() for key in self.network.output_names}


def create_torch_runner(
    regressor: MeshRegressor,
    precision: str = "fp32",
    device: str | torch.device = "cpu",
    **options: Any,
) -> TorchRunner:
    """Engine factory for ``engine="torch"`` (options: see :class:`TorchRunner`)."""
    reject_unknown_options("torch", options, OPTIONS)
    return TorchRunner(regressor, precision=precision, device=device, **options)


register_engine("torch", create_torch_runner)
