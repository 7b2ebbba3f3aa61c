"""The engine interface: one way to call the network, whatever runs it.

An *engine* runs the network part of a mesh regressor (backbone + decoder head, i.e.
:meth:`MeshRegressor.forward_network`) on normalised crops ``(B, 3, 256, 256)`` float32 and
returns the regressor's named network outputs (``regressor.network_outputs``) as float32 torch
tensors: for hands ``global_orient`` (B, 1, 3, 3), ``hand_pose`` (B, 15, 3, 3), ``betas``
(B, 10), ``cam`` (B, 3); for bodies ``body_pose`` (B, 23, 3, 3) instead of ``hand_pose``. The
mesh model (MANO or SMPL) then runs in PyTorch (fp32) on those outputs.

* :class:`NetworkRunner` is the protocol every engine implements (``name`` and ``run``).
* :class:`EngineRegressor` wraps a runner and the regressor it was made from into a callable
  with the regressor's own contract (``vertices`` and ``joints`` added, ``faces``,
  ``is_test_asset``), so the pipeline takes either interchangeably.
* :func:`create_engine` builds one by name (``torch``, ``onnxruntime``, ``tensorrt``) through a
  registry; engine modules plug in with :func:`register_engine`. Built-in names are imported
  lazily, so optional dependencies (onnxruntime, tensorrt) are needed only when used.

An engine factory is called as ``factory(regressor, precision=..., device=..., **options)`` and
must raise :class:`EngineError` for a combination it cannot run (for example fp16 on a CPU)
naming what to use instead.

Graph-based engines (ONNX Runtime, TensorRT) run the ONNX file written by
``fasthmr_ros.engines.onnx_export.export_onnx(regressor, path, input_scale=1.0)``: one float32
input named :data:`NETWORK_INPUT` (``crops``, shape ``(batch, 3, 256, 256)``, dynamic batch) and
float32 outputs named and shaped as one of the :data:`OUTPUT_LAYOUTS` (hands or bodies).

A ViT teacher with a masked token-merging plan (:mod:`fasthmr_ros.models.merge_plan`) takes a
second input, :data:`NETWORK_FOREGROUND` ``(batch, tokens)`` float32 (1: the token is foreground
and is never merged, 0: background); ``run(crops, foreground=None)`` passes it, and a missing one
means "no foreground" (plain ToMe). Every other network ignores it, so the crops-only path is
unchanged.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from torch import nn

from fasthmr_ros.models.constants import CROP_SIZE
from fasthmr_ros.models.decoder_head import BODY_LAYOUT, HAND_LAYOUT, OutputLayout
from fasthmr_ros.models.regressor import MeshRegressor

#: Engine names the package ships (the TensorRT one needs ``tensorrt`` and a GPU).
ENGINES: tuple[str, ...] = ("torch", "onnxruntime", "tensorrt")
#: Numeric precisions an engine may be asked for.
PRECISIONS: tuple[str, ...] = ("fp32", "fp16", "bf16")
#: Torch dtype of each precision.
PRECISION_DTYPES: dict[str, torch.dtype] = {
    "fp32": torch.float32,
    "fp16": torch.float16,
    "bf16": torch.bfloat16,
}
#: The output layouts a network graph may have: the hand network's and the body network's.
OUTPUT_LAYOUTS: tuple[OutputLayout, ...] = (HAND_LAYOUT, BODY_LAYOUT)
#: Shape of one output of the hand network, without the batch axis.
NETWORK_OUTPUT_SHAPES: dict[str, tuple[int, ...]] = HAND_LAYOUT.output_shapes
#: Name of the network's image input (ONNX graphs and TensorRT engines use it).
NETWORK_INPUT = "crops"
#: Name of the per-token foreground input of masked token-merging networks.
NETWORK_FOREGROUND = "foreground"

# Modules that register the built-in engines when imported.
_BUILTIN_MODULES: dict[str, str] = {
    "torch": "fasthmr_ros.engines.torch_engine",
    "onnxruntime": "fasthmr_ros.engines.onnxruntime_engine",
    "tensorrt": "fasthmr_ros.engines.tensorrt",
}
# What to install for each built-in engine's optional dependency.
_INSTALL_HINTS: dict[str, str] = {
    "onnxruntime": "install it with 'pip install onnx onnxruntime' (or onnxruntime-gpu) ",
    "tensorrt": "install TensorRT's Python bindings (python3-libnvinfer on JetPack, "
    "'pip install tensorrt' on x86) ",
}


class EngineError(ValueError):
    """An engine that cannot be built or run as asked, with what to do instead."""


def layout_of_outputs(names: Sequence[str]) -> OutputLayout | None:
    """The :data:`OUTPUT_LAYOUTS` entry whose outputs are ``names`` (any order), else ``None``."""
    return next((lay for lay in OUTPUT_LAYOUTS if sorted(lay.outputs) == sorted(names)), None)


def describe_layouts() -> str:
    """The accepted output signatures, for messages."""
    return " or ".join(str(list(layout.outputs)) for layout in OUTPUT_LAYOUTS)


@runtime_checkable
class NetworkRunner(Protocol):
    """Runs the network (backbone + head) of one mesh regressor.

    ``run(crops)`` takes normalised crops ``(B, 3, 256, 256)`` float32 on any device and returns
    a dict with every network output of the regressor as float32 tensors (on the runner's
    device).
    ``name`` describes the engine for logs and benchmarks (e.g. ``"onnxruntime-fp32-cpu"``).
    """

    name: str

    def run(
        self, crops: torch.Tensor, foreground: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """Run the network on a batch of crops (and per-token foreground flags, if used)."""
        ...


EngineFactory = Callable[..., NetworkRunner]
_FACTORIES: dict[str, EngineFactory] = {}


def register_engine(name: str, factory: EngineFactory) -> EngineFactory:
    """Register ``factory(regressor, precision=, device=, **options)`` under ``name``.

    Registering a name again replaces the previous factory. Returns ``factory`` so the call
    can be used as a decorator through ``functools.partial`` or directly.
    """
    if not name or not isinstance(name, str):
        raise ValueError(f"engine name must be a non-empty string, got {name!r}")
    _FACTORIES[name] = factory
    return factory


def available_engines() -> tuple[str, ...]:
    """Names :func:`create_engine` accepts (built-in names plus registered ones)."""
    return tuple(sorted(set(ENGINES) | set(_FACTORIES)))


def _factory(engine: str) -> EngineFactory:
    if engine not in _FACTORIES and engine in _BUILTIN_MODULES:
        module = _BUILTIN_MODULES[engine]
        try:
            importlib.import_module(module)
        except ImportError as exc:
            if getattr(exc, "name", None) == module:
                raise EngineError(
                    f"engine '{engine}' is not part of this installation ({module} is missing); "
                    "use engine='torch' or 'onnxruntime'."
                ) from None
            raise EngineError(
                f"engine '{engine}' needs the Python package '{getattr(exc, 'name', exc)}', "
                f"which is not installed ({exc}); {_INSTALL_HINTS.get(engine, '')}"
                "or use engine='torch'."
            ) from None
    if engine not in _FACTORIES:
        raise EngineError(
            f"unknown engine '{engine}'; choose one of {', '.join(available_engines())}."
        )
    return _FACTORIES[engine]


def check_precision(precision: str) -> str:
    """Return ``precision`` if it is one of :data:`PRECISIONS`, else raise :class:`EngineError`."""
    if precision not in PRECISIONS:
        raise EngineError(
            f"unknown precision '{precision}'; choose one of {', '.join(PRECISIONS)}."
        )
    return precision


def parse_device(device: str | torch.device) -> torch.device:
    """Parse a device string, with a clear error for unusable ones."""
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise EngineError(f"invalid device {device!r} ({exc}); use 'cpu' or 'cuda:N'.") from None
    if parsed.type not in ("cpu", "cuda"):
        raise EngineError(f"device {device!r} is not supported; use 'cpu' or 'cuda:N'.")
    if parsed.type == "cuda" and not torch.cuda.is_available():
        raise EngineError(
            f"device {device!r} asked for but CUDA is not available here; use device='cpu'."
        )
    return parsed


def check_crops(crops: torch.Tensor) -> torch.Tensor:
    """Validate a crop batch: a float32 tensor ``(B, 3, 256, 256)`` with ``B >= 1``."""
    if not isinstance(crops, torch.Tensor):
        raise TypeError(
            f"crops must be a torch.Tensor (B, 3, {CROP_SIZE}, {CROP_SIZE}), got "
            f"{type(crops).__name__}; convert numpy arrays with torch.from_numpy."
        )
    expected = (3, CROP_SIZE, CROP_SIZE)
    if crops.ndim != 4 or tuple(crops.shape[1:]) != expected or crops.shape[0] < 1:
        raise ValueError(
            f"crops must have shape (B, 3, {CROP_SIZE}, {CROP_SIZE}) with B >= 1, got "
            f"{tuple(crops.shape)}; add a batch axis with crops[None] for a single crop."
        )
    if crops.dtype != torch.float32:
        raise TypeError(
            f"crops must be float32 (ImageNet-normalised RGB), got {crops.dtype}; "
            "convert with crops.float()."
        )
    return crops


def check_foreground(foreground: torch.Tensor | None, batch: int) -> torch.Tensor | None:
    """Validate per-token foreground flags: ``None`` or a ``(batch, tokens)`` tensor.

    Returns them as float32 (1 foreground, 0 background).
    """
    if foreground is None:
        return None
    if not isinstance(foreground, torch.Tensor):
        raise TypeError(f"foreground must be a torch.Tensor (B, tokens), got "
                        f"{type(foreground).__name__}")
    if foreground.ndim != 2 or foreground.shape[0] != batch:
        raise ValueError(f"foreground must have shape ({batch}, tokens), one row per crop, got "
                         f"{tuple(foreground.shape)}")
    return foreground.to(torch.float32)


def check_network_outputs(
    outputs: Mapping[str, torch.Tensor],
    batch: int,
    source: str,
    shapes: Mapping[str, tuple[int, ...]] = NETWORK_OUTPUT_SHAPES,
) -> None:
    """Raise :class:`EngineError` unless ``outputs`` holds every output of ``shapes``."""
    missing = [k for k in shapes if k not in outputs]
    if missing:
        raise EngineError(f"{source} returned no {', '.join(missing)}; got {sorted(outputs)}.")
    for key, shape in shapes.items():
        got = tuple(outputs[key].shape)
        if got != (batch, *shape):
            raise EngineError(f"{source}: output '{key}' has shape {got}, "
                              f"expected {(batch, *shape)}.")


class EngineRegressor(nn.Module):
    """A mesh regressor whose network runs on an engine; the mesh model runs in PyTorch after.

    Calling it has the contract of the regressor (:class:`HandMeshRegressor` or
    :class:`BodyMeshRegressor`): normalised crops ``(B, 3, 256, 256)`` float32 in, a dict with
    ``vertices``, ``joints`` and the network outputs (float32, on the device of the regressor's
    mesh model) out. ``faces``, ``info``, ``is_test_asset`` and ``config`` are the regressor's.
    """

    def __init__(self, runner: NetworkRunner, regressor: MeshRegressor) -> None:
        super().__init__()
        if not callable(getattr(runner, "run", None)):
            raise TypeError(f"runner {runner!r} has no run(crops) method")
        self.runner = runner
        self.regressor = regressor

    @property
    def name(self) -> str:
        """The runner's name (engine, precision, device)."""
        return self.runner.name

    @property
    def faces(self) -> np.ndarray:
        """Triangles (F, 3) int64 of the mesh model."""
        return self.regressor.faces

    @property
    def info(self) -> Any:
        """The mesh model's structure (:class:`~fasthmr_ros.models.mesh_model.MeshModelInfo`)."""
        return self.regressor.info

    @property
    def network_outputs(self) -> tuple[str, ...]:
        """Names of the network outputs."""
        return self.regressor.network_outputs

    @property
    def is_test_asset(self) -> bool:
        """True when the weights are random test assets."""
        return bool(getattr(self.regressor, "is_test_asset", False))

    @property
    def config(self) -> dict:
        """The regressor's architecture configuration."""
        return self.regressor.config

    def _mesh_model_device(self) -> torch.device:
        buffer = next(self.regressor.mesh_model.buffers(), None)
        return buffer.device if buffer is not None else torch.device("cpu")

    @property
    def uses_foreground(self) -> bool:
        """Whether the network takes per-token foreground flags (a masked merge plan)."""
        from fasthmr_ros.models.merge_plan import needs_foreground

        return needs_foreground(self.regressor)

    def forward_network(
        self, crops: torch.Tensor, foreground: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """Run the engine: float32 network outputs on the mesh model's device."""
        check_crops(crops)
        foreground = check_foreground(foreground, crops.shape[0])
        outputs = (self.runner.run(crops) if foreground is None
                   else self.runner.run(crops, foreground=foreground))
        shapes = self.regressor.network_output_shapes
        check_network_outputs(outputs, crops.shape[0], self.runner.name, shapes)
        device = self._mesh_model_device()
        return {k: outputs[k].to(device=device, dtype=torch.float32) for k in shapes}

    def run_mesh_model(self, params: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Add ``vertices`` and ``joints`` to network outputs (the regressor's mesh model)."""
        return self.regressor.run_mesh_model(params)

    #: The hand name of :meth:`run_mesh_model`.
    run_mano = run_mesh_model

    def forward(
        self, crops: torch.Tensor, foreground: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """Run the engine then the mesh model on normalised crops."""
        with torch.inference_mode():
            return self.run_mesh_model(self.forward_network(crops, foreground))


def create_runner(
    regressor: MeshRegressor,
    engine: str = "torch",
    precision: str = "fp32",
    device: str | torch.device = "cpu",
    **options: Any,
) -> NetworkRunner:
    """Build the :class:`NetworkRunner` called ``engine`` for ``regressor``'s network.

    ``options`` go to the engine (see each engine module). Raises :class:`EngineError` for an
    unknown engine or precision, or a combination the engine cannot run.
    """
    check_precision(precision)
    factory = _factory(engine)
    return factory(regressor, precision=precision, device=device, **options)


def create_engine(
    regressor: MeshRegressor,
    engine: str = "torch",
    precision: str = "fp32",
    device: str | torch.device = "cpu",
    **options: Any,
) -> EngineRegressor:
    """Build an :class:`EngineRegressor`: ``regressor`` with its network run by ``engine``.

    Args:
        regressor: a loaded regressor (``fasthmr_ros.load_hand_regressor`` or
            ``load_body_regressor``).
        engine: ``"torch"``, ``"onnxruntime"``, ``"tensorrt"`` or a registered name.
        precision: ``"fp32"``, ``"fp16"`` or ``"bf16"``; not every engine runs every precision
            on every device (fp16 needs a GPU, for example): unsupported ones raise.
        device: ``"cpu"`` or ``"cuda:N"``. The regressor (and its mesh model) is moved there.
        **options: engine-specific options (e.g. ``input_scale``, ``cuda_graphs``,
            ``onnx_path``, ``providers``); unknown options raise :class:`EngineError`.

    """
    runner = create_runner(regressor, engine, precision, device, **options)
    regressor.to(parse_device(device))
    return EngineRegressor(runner, regressor)


def reject_unknown_options(
    engine: str, options: Mapping[str, Any], known: tuple[str, ...]
) -> None:
    """Raise :class:`EngineError` if ``options`` holds names ``engine`` does not understand."""
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise EngineError(
            f"engine '{engine}' has no option(s) {', '.join(unknown)}; "
            f"known options: {', '.join(known) or 'none'}."
        )
