"""ONNX Runtime engine: the exported network on CPU, CUDA or TensorRT execution providers.

Providers are tried in a configurable order (``providers=["tensorrt", "cuda", "cpu"]``; short
names or ONNX Runtime's full names). A provider missing from the installed onnxruntime build, or
one that fails to initialise (TensorRT or CUDA libraries not found), is dropped with one
warning line naming it and the provider used instead.

Precision: the graph is fp32. ``fp16`` is available only through the TensorRT execution
provider (``trt_fp16_enable``); CPU and CUDA providers run fp32 and reject other precisions
with an error naming the alternatives.

On a CUDA device with the CUDA or TensorRT provider active, inputs and outputs are bound to
torch CUDA tensors with I/O binding (no host round trip); otherwise numpy arrays are used.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fasthmr_ros.engines.base import (
    NETWORK_FOREGROUND,
    NETWORK_INPUT,
    EngineError,
    check_crops,
    layout_of_outputs,
    parse_device,
    register_engine,
    reject_unknown_options,
)
from fasthmr_ros.models.regressor import MeshRegressor

log = logging.getLogger(__name__)

#: Short provider names and ONNX Runtime's names for them.
PROVIDER_NAMES: dict[str, str] = {
    "tensorrt": "TensorrtExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "cpu": "CPUExecutionProvider",
}
#: Default provider order per device type.
DEFAULT_PROVIDERS: dict[str, tuple[str, ...]] = {
    "cpu": ("cpu",),
    "cuda": ("tensorrt", "cuda", "cpu"),
}
#: Options :func:`create_onnxruntime_runner` accepts.
OPTIONS = ("onnx_path", "providers", "input_scale", "threads", "spinning", "cache_dir",
           "trt_cache_dir", "progress")


def provider_name(name: str) -> str:
    """ONNX Runtime's name for ``name`` (``"cuda"`` or ``"CUDAExecutionProvider"``)."""
    if name in PROVIDER_NAMES.values():
        return name
    if name.lower() in PROVIDER_NAMES:
        return PROVIDER_NAMES[name.lower()]
    raise EngineError(
        f"unknown ONNX Runtime provider '{name}'; use {', '.join(PROVIDER_NAMES)} "
        f"(or {', '.join(PROVIDER_NAMES.values())})."
    )


def resolve_providers(
    requested: Sequence[str], available: Sequence[str]
) -> list[str]:
    """Keep the requested providers the onnxruntime build has, in order; log each one dropped.

    Raises :class:`EngineError` when none is left.
    """
    wanted = [provider_name(p) for p in requested]
    if not wanted:
        raise EngineError("providers is empty; name at least one, e.g. ['cpu'].")
    kept = [p for p in wanted if p in available]
    for dropped in (p for p in wanted if p not in available):
        log.warning(
            "ONNX Runtime provider %s is not in this onnxruntime build (available: %s); "
            "falling back to %s",
            dropped, ", ".join(available), kept[0] if kept else "nothing",
        )
    if not kept:
        raise EngineError(
            f"none of the providers {wanted} is available in this onnxruntime build "
            f"(available: {list(available)}); add 'cpu' to the list."
        )
    return kept


def _provider_options(provider: str, precision: str, trt_cache_dir: str | None,
                      device_index: int) -> dict[str, Any]:
    if provider == PROVIDER_NAMES["tensorrt"]:
        options: dict[str, Any] = {"device_id": device_index,
                                   "trt_fp16_enable": precision == "fp16"}
        if trt_cache_dir:
            options.update(trt_engine_cache_enable=True, trt_engine_cache_path=trt_cache_dir,
                           trt_timing_cache_enable=True)
        return options
    if provider == PROVIDER_NAMES["cuda"]:
        return {"device_id": device_index}
    return {}


def check_precision_for(providers: Sequence[str], precision: str) -> None:
    """Raise :class:`EngineError` unless ``precision`` can run on the first provider."""
    if precision == "fp32":
        return
    first = providers[0]
    if precision == "fp16" and first == PROVIDER_NAMES["tensorrt"]:
        return
    raise EngineError(
        f"ONNX Runtime's {first} runs this fp32 graph in fp32 only, not {precision}; use "
        "precision='fp32', put 'tensorrt' first in providers on a GPU for fp16, or use "
        "engine='torch' / engine='tensorrt'."
    )


class OnnxRuntimeRunner:
    """Runs an exported network graph with an ``onnxruntime.InferenceSession``."""

    def __init__(
        self,
        onnx_path: str | Path,
        *,
        precision: str = "fp32",
        device: str | torch.device = "cpu",
        providers: Sequence[str] | None = None,
        threads: int | None = None,
        spinning: bool = False,
        trt_cache_dir: str | Path | None = None,
    ) -> None:
        import onnxruntime as ort

        from fasthmr_ros.engines.onnx_export import check_graph_signature

        self.device = parse_device(device)
        self.onnx_path = Path(onnx_path)
        if not self.onnx_path.is_file():
            raise EngineError(f"ONNX file {self.onnx_path} does not exist; write it with "
                              "'fasthmr export onnx'.")
        check_graph_signature(self.onnx_path)
        requested = list(providers or DEFAULT_PROVIDERS[self.device.type])
        chosen = resolve_providers(requested, ort.get_available_providers())
        check_precision_for(chosen, precision)
        device_index = self.device.index or 0
        cache = str(trt_cache_dir) if trt_cache_dir else None
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            options.intra_op_num_threads = int(threads)
        # Idle worker threads spin by default, taking CPU from PyTorch (MANO, other models)
        # in the same process; off unless asked for.
        options.add_session_config_entry("session.intra_op.allow_spinning",
                                         "1" if spinning else "0")
        self.session = ort.InferenceSession(
            str(self.onnx_path),
            sess_options=options,
            providers=[(p, _provider_options(p, precision, cache, device_index)) for p in chosen],
        )
        active = self.session.get_providers()
        if active[0] != chosen[0]:
            log.warning("ONNX Runtime could not start %s (see its log above); falling back to %s",
                        chosen[0], active[0])
        self.providers = list(active)
        if precision != "fp32" and active[0] != PROVIDER_NAMES["tensorrt"]:
            log.warning("%s runs fp32 only: running fp32 instead of %s", active[0], precision)
            precision = "fp32"
        self.precision = precision
        self.name = f"onnxruntime-{precision}-{active[0].replace('ExecutionProvider', '')}"
        self._bind_cuda = self.device.type == "cuda" and active[0] != PROVIDER_NAMES["cpu"]
        inputs = {i.name: i for i in self.session.get_inputs()}
        self._foreground_tokens: int | None = (
            int(inputs[NETWORK_FOREGROUND].shape[1]) if NETWORK_FOREGROUND in inputs else None)
        # The graph's own outputs (checked against a known layout above): hands or bodies.
        layout = layout_of_outputs([o.name for o in self.session.get_outputs()])
        self.output_shapes: dict[str, tuple[int, ...]] = layout.output_shapes

    def _foreground_feed(self, crops: torch.Tensor,
                         foreground: torch.Tensor | None) -> torch.Tensor | None:
        """The foreground input of a masked graph (zeros, i.e. plain ToMe, when not given)."""
        if self._foreground_tokens is None:
            return None
        shape = (crops.shape[0], self._foreground_tokens)
        if foreground is None:
            return torch.zeros(shape, dtype=torch.float32, device=crops.device)
        if tuple(foreground.shape) != shape:
            raise EngineError(f"foreground has shape {tuple(foreground.shape)}, the graph "
                              f"{self.onnx_path.name} takes {shape}")
        return foreground.detach().to(device=crops.device, dtype=torch.float32).contiguous()

    def run(
        self, crops: torch.Tensor, foreground: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """Run the graph on ``crops``; float32 outputs on the runner's device.

        ``foreground`` (B, tokens) feeds graphs of masked merge plans; others ignore it.
        """
        check_crops(crops)
        flags = self._foreground_feed(crops, foreground)
        if self._bind_cuda:
            return self._run_bound(crops, flags)
        feed = {NETWORK_INPUT: crops.detach().to("cpu").contiguous().numpy()}
        if flags is not None:
            feed[NETWORK_FOREGROUND] = flags.cpu().numpy()
        values = self.session.run(list(self.output_shapes), feed)
        return {
            key: torch.from_numpy(np.ascontiguousarray(value)).to(self.device)
            for key, value in zip(self.output_shapes, values)
        }

    def _run_bound(self, crops: torch.Tensor,
                   flags: torch.Tensor | None) -> dict[str, torch.Tensor]:
        """I/O binding on torch CUDA tensors (no host copies)."""
        crops = crops.detach().to(self.device).contiguous()
        batch = crops.shape[0]
        index = self.device.index or 0
        binding = self.session.io_binding()
        binding.bind_input(NETWORK_INPUT, "cuda", index, np.float32, tuple(crops.shape),
                           crops.data_ptr())
        if flags is not None:
            flags = flags.to(self.device).contiguous()
            binding.bind_input(NETWORK_FOREGROUND, "cuda", index, np.float32,
                               tuple(flags.shape), flags.data_ptr())
        outputs = {
            key: torch.empty((batch, *shape), dtype=torch.float32, device=self.device)
            for key, shape in self.output_shapes.items()
        }
        for key, tensor in outputs.items():
            binding.bind_output(key, "cuda", index, np.float32, tuple(tensor.shape),
                                tensor.data_ptr())
        torch.cuda.current_stream(self.device).synchronize()
        self.session.run_with_iobinding(binding)
        return outputs


def create_onnxruntime_runner(
    regressor: MeshRegressor,
    precision: str = "fp32",
    device: str | torch.device = "cpu",
    **options: Any,
) -> OnnxRuntimeRunner:
    """Engine factory for ``engine="onnxruntime"``.

    Options: ``onnx_path`` (an exported graph; without it the regressor is exported once into
    ``cache_dir``, see :func:`~fasthmr_ros.engines.onnx_export.cached_export`), ``input_scale``
    (for that export), ``providers``, ``threads`` (intra-op threads), ``spinning`` (let idle
    worker threads spin: lower latency, but they take CPU from everything else in the process;
    default off), ``trt_cache_dir``
    (TensorRT provider engine cache), ``progress``.
    """
    reject_unknown_options("onnxruntime", options, OPTIONS)
    from fasthmr_ros.engines.onnx_export import graph_for_engine

    return OnnxRuntimeRunner(
        graph_for_engine(regressor, options),
        precision=precision,
        device=device,
        providers=options.get("providers"),
        threads=options.get("threads"),
        spinning=bool(options.get("spinning", False)),
        trt_cache_dir=options.get("trt_cache_dir"),
    )


register_engine("onnxruntime", create_onnxruntime_runner)
