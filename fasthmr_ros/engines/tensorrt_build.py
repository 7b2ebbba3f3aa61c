"""Building a TensorRT engine from the exported ONNX network (TensorRT 8.6, 10.x and 11.x).

:func:`build_serialized_engine` parses the ONNX file, applies a :class:`BuildPlan` (network and
builder flags chosen per TensorRT version, see :mod:`.tensorrt_versions`), one optimisation
profile over the batch axis (:class:`BatchProfile`), a workspace limit and a persistent timing
cache, and returns the serialized engine (``build_serialized_network``). Progress shows as a
tqdm bar fed by ``IProgressMonitor`` on TensorRT 10+, or as an elapsed-time spinner before.

``tensorrt`` is imported only by :func:`import_tensorrt`, so this module (and everything that
decides *how* to build) loads and is tested without it.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import types
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from fasthmr_ros.engines.base import NETWORK_FOREGROUND, NETWORK_INPUT, EngineError
from fasthmr_ros.engines.engine_cache import write_atomically
from fasthmr_ros.engines.tensorrt_versions import (
    BuildPlan,
    UnsupportedTensorRTError,
    check_supported,
    parse_tensorrt_version,
)
from fasthmr_ros.models.constants import CROP_SIZE

LOGGER = logging.getLogger(__name__)

#: Shape of one network input sample (channels, height, width).
SAMPLE_SHAPE: tuple[int, int, int] = (3, CROP_SIZE, CROP_SIZE)
#: Default builder workspace (scratch memory for layer tactics), in GiB.
DEFAULT_WORKSPACE_GIB = 2.0
#: Python logging level of each TensorRT logger severity. TensorRT's INFO is chatty (memory
#: reports for every build step), so it goes to DEBUG; VERBOSE goes below DEBUG.
TENSORRT_LOG_LEVELS: dict[str, int] = {
    "INTERNAL_ERROR": logging.CRITICAL,
    "ERROR": logging.ERROR,
    "WARNING": logging.WARNING,
    "INFO": logging.DEBUG,
    "VERBOSE": logging.DEBUG - 5,
}
_INSTALL_HINT = (
    "On a Jetson install JetPack's bindings ('sudo apt install python3-libnvinfer', system "
    "Python 3.10); elsewhere 'pip install tensorrt' (NVIDIA GPU and driver required). Or use "
    "engine='onnxruntime' / engine='torch'."
)


class TensorRTUnavailableError(EngineError):
    """``tensorrt`` cannot be imported (or is too old)."""


class EngineBuildError(EngineError):
    """TensorRT could not parse the ONNX file or build the engine."""


def import_tensorrt() -> types.ModuleType:
    """Import ``tensorrt`` and check its version; raise :class:`TensorRTUnavailableError`."""
    try:
        import tensorrt
    except ImportError as exc:
        raise TensorRTUnavailableError(
            f"the TensorRT engine needs the 'tensorrt' Python package, which cannot be imported "
            f"({exc}). {_INSTALL_HINT}"
        ) from None
    try:
        check_supported(parse_tensorrt_version(tensorrt.__version__))
    except (ValueError, UnsupportedTensorRTError) as exc:
        raise TensorRTUnavailableError(str(exc)) from None
    return tensorrt


@dataclass(frozen=True)
class BatchProfile:
    """The optimisation profile over the batch axis: batches 1..``max_batch``, tuned at ``opt``.

    TensorRT picks each layer's kernels for the ``opt`` shape and runs every batch in range
    with them. The default ``opt_batch=4`` favours batched throughput, where the tighter GPU
    target lies (eight crops in 6 ms, 0.75 ms per crop, against 4 ms for one) and where kernels
    tuned for the shape pay most: batches of 2 to 8 are compute-bound, while one crop of the
    ViT-H teacher (about 250 GFLOP over 1.3 GB of fp16 weights, about 190 FLOP per weight
    byte) sits near the ridge point of Jetson Orin (about 150 to 210 FLOP per byte of memory
    bandwidth, Orin Nano to AGX Orin), so its time is bounded by weight traffic and launch
    latency as much as by kernel choice. Deployments that only ever run one crop can build
    with ``opt_batch=1``; ``fasthmr bench`` measures the difference. Batches above
    ``max_batch`` run in chunks.
    """

    opt_batch: int = 4
    max_batch: int = 8
    min_batch: int = 1

    def __post_init__(self) -> None:
        values = (self.min_batch, self.opt_batch, self.max_batch)
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            raise ValueError(f"batch sizes must be integers, got min/opt/max {values}")
        if not 1 <= self.min_batch <= self.opt_batch <= self.max_batch:
            raise ValueError(
                f"batch profile needs 1 <= min <= opt <= max, got min {self.min_batch}, opt "
                f"{self.opt_batch}, max {self.max_batch}; e.g. opt_batch=4, max_batch=8."
            )

    def shapes(
        self, sample_shape: tuple[int, ...] = SAMPLE_SHAPE
    ) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
        """(min, opt, max) input shapes for ``IOptimizationProfile.set_shape``."""
        return (
            (self.min_batch, *sample_shape),
            (self.opt_batch, *sample_shape),
            (self.max_batch, *sample_shape),
        )

    def chunks(self, batch: int) -> list[tuple[int, int]]:
        """(start, stop) slices that cover ``batch`` items in runs of at most ``max_batch``."""
        if batch < self.min_batch:
            raise ValueError(f"batch {batch} is below the profile's minimum {self.min_batch}")
        return [(start, min(start + self.max_batch, batch))
                for start in range(0, batch, self.max_batch)]


class BuildProgress:
    """Turns TensorRT's build phases (``IProgressMonitor`` callbacks) into tqdm bars.

    Every top-level phase gets a bar counting its steps; the innermost active phase shows as
    the bar's postfix. Callbacks come from TensorRT's builder threads: state is guarded by a
    lock, and no exception ever leaves a callback (it would abort the build).
    """

    def __init__(self, description: str = "TensorRT build", disable: bool | None = None) -> None:
        self.description = description
        self.disable = disable
        self._lock = threading.Lock()
        self._bars: dict[str, Any] = {}
        self._parents: dict[str, str | None] = {}
        self._active: list[str] = []
        self.phases_seen: list[str] = []

    def _top(self, phase: str) -> str:
        while self._parents.get(phase) is not None:
            phase = self._parents[phase]  # type: ignore[assignment]
        return phase

    def phase_start(self, phase_name: str, parent_phase: str | None, num_steps: int) -> None:
        """A phase with ``num_steps`` steps started (inside ``parent_phase`` if given)."""
        try:
            with self._lock:
                self._parents[phase_name] = parent_phase or None
                self._active.append(phase_name)
                self.phases_seen.append(phase_name)
                if parent_phase is None:
                    self._bars[phase_name] = tqdm(
                        total=max(int(num_steps), 1), desc=f"{self.description}: {phase_name}",
                        unit="step", leave=False, disable=self.disable,
                    )
                else:
                    bar = self._bars.get(self._top(phase_name))
                    if bar is not None:
                        bar.set_postfix_str(f"{phase_name} 0/{num_steps}", refresh=True)
        except Exception:  # noqa: BLE001 - never let a display problem abort the build
            LOGGER.debug("progress display failed", exc_info=True)

    def step_complete(self, phase_name: str, step: int) -> bool:
        """A step of ``phase_name`` finished; returns True to let the build continue."""
        try:
            with self._lock:
                if phase_name in self._bars:
                    self._bars[phase_name].update(1)
                else:
                    bar = self._bars.get(self._top(phase_name))
                    if bar is not None:
                        bar.set_postfix_str(f"{phase_name} {step + 1}", refresh=False)
        except Exception:  # noqa: BLE001
            LOGGER.debug("progress display failed", exc_info=True)
        return True

    def phase_finish(self, phase_name: str) -> None:
        """``phase_name`` ended (possibly before all its steps were reported)."""
        try:
            with self._lock:
                if phase_name in self._active:
                    self._active.remove(phase_name)
                bar = self._bars.pop(phase_name, None)
                if bar is not None:
                    bar.close()
        except Exception:  # noqa: BLE001
            LOGGER.debug("progress display failed", exc_info=True)

    @property
    def active_phases(self) -> tuple[str, ...]:
        """Phases started and not yet finished, oldest first."""
        with self._lock:
            return tuple(self._active)

    def close(self) -> None:
        """Close any bar left open (a failed build may not finish its phases)."""
        with self._lock:
            for bar in self._bars.values():
                bar.close()
            self._bars.clear()
            self._active.clear()


@contextlib.contextmanager
def elapsed_spinner(description: str, disable: bool | None = None,
                    interval_s: float = 0.5) -> Iterator[Any]:
    """Show ``description`` with the elapsed time until the block ends (no step counts known).

    Used on TensorRT 8.6, which has no ``IProgressMonitor``.
    """
    bar = tqdm(total=None, desc=description, bar_format="{desc}: {elapsed}", leave=False,
               disable=disable)
    stop = threading.Event()

    def refresh() -> None:
        while not stop.wait(interval_s):
            bar.refresh()

    thread = threading.Thread(target=refresh, name="tensorrt-build-spinner", daemon=True)
    thread.start()
    try:
        yield bar
    finally:
        stop.set()
        thread.join()
        bar.close()


def make_tensorrt_logger(trt: types.ModuleType) -> Any:
    """A ``tensorrt.ILogger`` that forwards TensorRT's messages to Python logging."""

    class _LoggingBridge(trt.ILogger):  # type: ignore[name-defined, misc]
        def __init__(self) -> None:
            trt.ILogger.__init__(self)

        def log(self, severity: Any, msg: str) -> None:
            name = getattr(severity, "name", str(severity).rsplit(".", 1)[-1])
            level = TENSORRT_LOG_LEVELS.get(name, logging.INFO)
            if LOGGER.isEnabledFor(level):
                LOGGER.log(level, "TensorRT: %s", msg)

    return _LoggingBridge()


_TRT_LOGGER: Any = None


def tensorrt_logger(trt: types.ModuleType) -> Any:
    """The process-wide TensorRT logger (TensorRT keeps the first one it is given)."""
    global _TRT_LOGGER
    if _TRT_LOGGER is None:
        _TRT_LOGGER = make_tensorrt_logger(trt)
    return _TRT_LOGGER


def _progress_monitor(trt: types.ModuleType, progress: BuildProgress) -> Any:
    class _Monitor(trt.IProgressMonitor):  # type: ignore[name-defined, misc]
        def __init__(self) -> None:
            trt.IProgressMonitor.__init__(self)

        def phase_start(self, phase_name: str, parent_phase: str | None, num_steps: int) -> None:
            progress.phase_start(phase_name, parent_phase, num_steps)

        def step_complete(self, phase_name: str, step: int) -> bool:
            return progress.step_complete(phase_name, step)

        def phase_finish(self, phase_name: str) -> None:
            progress.phase_finish(phase_name)

    return _Monitor()


def network_flags(trt: types.ModuleType, plan: BuildPlan) -> int:
    """The ``create_network`` flags of ``plan`` for the imported ``tensorrt`` module."""
    creation = trt.NetworkDefinitionCreationFlag
    flags = 0
    if plan.explicit_batch_flag:
        flags |= 1 << int(creation.EXPLICIT_BATCH)
    if plan.strongly_typed_flag:
        if not hasattr(creation, "STRONGLY_TYPED"):
            raise UnsupportedTensorRTError(
                f"TensorRT {plan.version} has no strongly typed networks; build "
                f"{plan.precision} with BuilderFlag instead or upgrade TensorRT."
            )
        flags |= 1 << int(creation.STRONGLY_TYPED)
    return flags


def _parse_onnx(trt: types.ModuleType, network: Any, onnx_path: Path, logger: Any) -> Any:
    parser = trt.OnnxParser(network, logger)
    # parse_from_file resolves external-data weight files next to the .onnx file.
    if not parser.parse_from_file(str(onnx_path)):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        raise EngineBuildError(
            f"TensorRT cannot parse {onnx_path}:\n  " + "\n  ".join(errors or ["unknown error"])
            + "\nExport it with 'fasthmr export onnx' (opset 17): TensorRT 8.6 parses opsets "
            "up to 17."
        )
    names = [network.get_input(i).name for i in range(network.num_inputs)]
    if names not in ([NETWORK_INPUT], [NETWORK_INPUT, NETWORK_FOREGROUND]):
        raise EngineBuildError(
            f"{onnx_path} has inputs {names}; expected '{NETWORK_INPUT}' (and "
            f"'{NETWORK_FOREGROUND}' for a masked merge plan) as written by 'fasthmr export "
            "onnx'."
        )
    return parser


def set_timing_cache(config: Any, path: Path | None) -> None:
    """Load the timing cache at ``path`` into ``config`` (an unreadable one starts afresh).

    ``config.set_timing_cache`` keeps the cache object alive as long as the config.
    """
    blob = path.read_bytes() if path is not None and path.is_file() else b""
    cache, reason = None, "TensorRT returned no cache"
    try:
        cache = config.create_timing_cache(blob)
    except Exception as exc:  # noqa: BLE001 - a corrupt cache must not stop the build
        reason = str(exc)
    if cache is None and blob:
        LOGGER.warning("timing cache %s is unreadable (%s): starting a new one", path, reason)
        cache = config.create_timing_cache(b"")
    if cache is None:
        raise EngineBuildError(f"TensorRT could not create a timing cache ({reason})")
    if not config.set_timing_cache(cache, ignore_mismatch=False):
        LOGGER.warning("timing cache %s was made for another GPU or TensorRT: not used", path)
        config.set_timing_cache(config.create_timing_cache(b""), ignore_mismatch=False)


def build_serialized_engine(
    trt: types.ModuleType,
    onnx_path: str | Path,
    plan: BuildPlan,
    profile: BatchProfile,
    workspace_bytes: int = int(DEFAULT_WORKSPACE_GIB * (1 << 30)),
    timing_cache_path: str | Path | None = None,
    show_progress: bool | None = None,
) -> Any:
    """Build an engine from ``onnx_path`` and return its serialized form (``IHostMemory``).

    Args:
        trt: the imported ``tensorrt`` module (:func:`import_tensorrt`).
        onnx_path: the network as ONNX; for a strongly typed ``plan`` it must already carry
            the reduced precision (see :mod:`.onnx_precision`).
        plan: flags for this TensorRT version and precision (:func:`plan_build`).
        profile: the batch range of the optimisation profile.
        workspace_bytes: builder scratch memory limit (``MemoryPoolType.WORKSPACE``).
        timing_cache_path: read before and written after the build (kernel timings reused by
            later builds with the same TensorRT and GPU); None to skip.
        show_progress: False hides the progress display; None lets tqdm decide (TTY only).

    Raises:
        EngineBuildError: when parsing or building fails (TensorRT's log says why).

    """
    onnx_path = Path(onnx_path)
    logger = tensorrt_logger(trt)
    builder = trt.Builder(logger)
    network = builder.create_network(network_flags(trt, plan))
    parser = _parse_onnx(trt, network, onnx_path, logger)
    config = builder.create_builder_config()
    # set_memory_pool_limit exists in 8.6, 10.x and 11.x (max_workspace_size left in 10.0).
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_bytes))
    for flag in plan.builder_flags:
        config.set_flag(getattr(trt.BuilderFlag, flag))
    optimisation = builder.create_optimization_profile()
    optimisation.set_shape(NETWORK_INPUT, *profile.shapes())
    if network.num_inputs > 1:  # a masked merge plan's per-token flags: same batch range
        tokens = tuple(network.get_input(1).shape)[1:]
        optimisation.set_shape(NETWORK_FOREGROUND, *profile.shapes(tokens))
    if config.add_optimization_profile(optimisation) < 0:
        raise EngineBuildError(f"invalid optimisation profile {profile.shapes()}")
    cache_path = Path(timing_cache_path) if timing_cache_path is not None else None
    set_timing_cache(config, cache_path)
    disable = None if show_progress is None else not show_progress
    description = f"building TensorRT {plan.precision} engine"
    LOGGER.info("%s from %s (batch %d..%d, opt %d); this takes minutes for large models",
                description, onnx_path, profile.min_batch, profile.max_batch, profile.opt_batch)
    if plan.progress_monitor and hasattr(trt, "IProgressMonitor"):
        progress = BuildProgress(description, disable=disable)
        monitor = _progress_monitor(trt, progress)  # must outlive the build
        config.progress_monitor = monitor
        try:
            serialized = builder.build_serialized_network(network, config)
        finally:
            progress.close()
    else:
        with elapsed_spinner(description, disable=disable):
            serialized = builder.build_serialized_network(network, config)
    del parser
    if serialized is None:
        raise EngineBuildError(
            f"TensorRT failed to build an engine from {onnx_path}; see the TensorRT errors "
            "logged above (often: workspace too small or out of GPU memory)."
        )
    if cache_path is not None:
        write_atomically(cache_path, memoryview(config.get_timing_cache().serialize()))
        LOGGER.debug("saved timing cache %s", cache_path)
    return serialized
