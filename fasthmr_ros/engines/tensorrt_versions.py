"""What each TensorRT version needs, decided from its version string (no ``tensorrt`` import).

The package supports TensorRT 8.6 (JetPack 6.0), 10.x (JetPack 6.1/6.2, 7.x) and 11.x (x86
``pip install tensorrt``, JetPack 7.2.2+). The API differences that matter here (checked in
the compiled bindings of 8.6.1, 10.3.0, 10.16.1 and 11.4.0; ``research/anchors.md`` section 2.2):

====================================  ==============  =====================  ==================
item                                  8.6             10.x                   11.x
====================================  ==============  =====================  ==================
``EXPLICIT_BATCH`` network flag       required        deprecated no-op       removed
``STRONGLY_TYPED`` network flag       absent          present                ignored (always on)
``BuilderFlag.FP16`` / ``BF16``       FP16 only       present (deprecated    removed
                                                      from 10.12)
``IProgressMonitor``                  absent          present                present
name-based I/O, ``execute_async_v3``  present         present                present
bindings API, ``execute_async_v2``    deprecated      removed                removed
``set_memory_pool_limit``             present         present                present
``max_workspace_size``                deprecated      removed                removed
====================================  ==============  =====================  ==================

So the engine code uses only the name-based I/O API, ``execute_async_v3`` and
``set_memory_pool_limit(WORKSPACE)`` (present in every supported version), and branches on:

* the explicit-batch flag (set on 8.x only, where implicit batch still exists);
* how reduced precision is asked for: by builder flag on 8.6 and 10.x (weak typing: TensorRT
  picks fp16 kernels where they are faster), by a strongly typed network parsed from an ONNX
  file whose tensors already carry fp16/bf16 on 11.x, where the builder flags are gone;
* the build progress report (``IProgressMonitor`` from 10.0; log lines before).

The version decides the plan; :func:`plan_build` also takes a predicate telling which
``BuilderFlag`` names the installed bindings really have, so a 10.x build that dropped a
deprecated flag falls back to strong typing instead of failing.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import torch

from fasthmr_ros.engines.base import EngineError

#: Oldest TensorRT the engine code supports (JetPack 6.0).
MIN_TENSORRT = (8, 6)
#: Precisions a TensorRT engine can be built for.
TENSORRT_PRECISIONS: tuple[str, ...] = ("fp32", "fp16", "bf16")
#: ``BuilderFlag`` name of each reduced precision (weak typing, TensorRT 8.6 / 10.x).
PRECISION_BUILDER_FLAGS: dict[str, str] = {"fp16": "FP16", "bf16": "BF16"}
#: Torch dtype of each TensorRT ``DataType`` member, by member name (``BF16`` and ``INT64``
#: exist from TensorRT 9/10 on; 8.6 has the others).
TORCH_DTYPES: dict[str, torch.dtype] = {
    "FLOAT": torch.float32,
    "HALF": torch.float16,
    "BF16": torch.bfloat16,
    "INT8": torch.int8,
    "UINT8": torch.uint8,
    "INT32": torch.int32,
    "INT64": torch.int64,
    "BOOL": torch.bool,
}

_VERSION_PATTERN = re.compile(
    r"^\s*(\d+)\.(\d+)(?:\.(\d+))?(?:\.(\d+))?(?:[.+\-]?[0-9A-Za-z][0-9A-Za-z.+\-]*)?\s*$"
)


class UnsupportedTensorRTError(EngineError):
    """The installed TensorRT (or the precision asked of it) is not supported."""


@dataclass(frozen=True, order=True)
class TensorRTVersion:
    """A TensorRT version: ``major.minor.patch.build``."""

    major: int
    minor: int
    patch: int = 0
    build: int = 0

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}.{self.patch}.{self.build}"


def parse_tensorrt_version(text: str) -> TensorRTVersion:
    """Parse ``tensorrt.__version__`` (``"8.6.1"``, ``"10.16.1.11"``, ``"10.3.0.post1"``).

    Raises ``ValueError`` for anything that does not start with ``MAJOR.MINOR``.
    """
    match = _VERSION_PATTERN.match(str(text))
    if not match:
        raise ValueError(
            f"cannot read a TensorRT version from {text!r}; expected 'MAJOR.MINOR[.PATCH[.BUILD]]'"
            " such as '10.3.0'."
        )
    parts = [int(group) if group is not None else 0 for group in match.groups()]
    return TensorRTVersion(*parts)


def check_supported(version: TensorRTVersion) -> TensorRTVersion:
    """Return ``version`` if the engine code supports it, else raise with what to install."""
    if (version.major, version.minor) < MIN_TENSORRT:
        raise UnsupportedTensorRTError(
            f"TensorRT {version} is too old: the engine code needs TensorRT >= "
            f"{MIN_TENSORRT[0]}.{MIN_TENSORRT[1]} (JetPack 6.0 or newer; name-based I/O and "
            "execute_async_v3). Upgrade TensorRT or use engine='onnxruntime'."
        )
    return version


@dataclass(frozen=True)
class BuildPlan:
    """How to build an engine of one precision with one TensorRT version.

    Attributes:
        version: the TensorRT version planned for.
        precision: ``"fp32"``, ``"fp16"`` or ``"bf16"``.
        explicit_batch_flag: pass ``1 << EXPLICIT_BATCH`` to ``create_network`` (8.x).
        strongly_typed_flag: pass ``1 << STRONGLY_TYPED`` to ``create_network`` (10.x with a
            reduced-precision ONNX; 11.x is always strongly typed and ignores the flag).
        builder_flags: ``BuilderFlag`` names to set on the builder config.
        onnx_precision: the precision the parsed ONNX file must carry: ``"fp32"`` (the
            exported file as is) or ``"fp16"``/``"bf16"`` (converted for strong typing).
        progress_monitor: report build progress through ``IProgressMonitor`` (10.0+).

    """

    version: TensorRTVersion
    precision: str
    explicit_batch_flag: bool
    strongly_typed_flag: bool
    builder_flags: tuple[str, ...]
    onnx_precision: str
    progress_monitor: bool

    @property
    def strongly_typed(self) -> bool:
        """True when tensor types in the ONNX file, not builder flags, set the precision."""
        return self.onnx_precision != "fp32"


def _documented_builder_flags(version: TensorRTVersion) -> frozenset[str]:
    """``BuilderFlag`` precision names each version's bindings have (anchors section 2.2)."""
    if version.major >= 11:
        return frozenset()
    if version.major >= 10:
        return frozenset({"FP16", "BF16"})
    return frozenset({"FP16"})


def plan_build(
    version: TensorRTVersion | str,
    precision: str,
    has_builder_flag: Callable[[str], bool] | None = None,
) -> BuildPlan:
    """Decide network flags, builder flags and ONNX precision for ``precision``.

    Args:
        version: the TensorRT version (a :class:`TensorRTVersion` or a version string).
        precision: ``"fp32"``, ``"fp16"`` or ``"bf16"``.
        has_builder_flag: tells whether ``tensorrt.BuilderFlag`` has a member of the given
            name in the installed bindings; by default the documented set of ``version``.

    Raises:
        UnsupportedTensorRTError: for TensorRT older than 8.6, or bf16 where the version has
            no bf16 support at all (8.x).
        ValueError: for an unknown precision.

    """
    if isinstance(version, str):
        version = parse_tensorrt_version(version)
    check_supported(version)
    if precision not in TENSORRT_PRECISIONS:
        raise ValueError(
            f"unknown precision '{precision}' for TensorRT; choose one of "
            f"{', '.join(TENSORRT_PRECISIONS)}."
        )
    if has_builder_flag is None:
        documented = _documented_builder_flags(version)
        has_builder_flag = documented.__contains__
    builder_flags: tuple[str, ...] = ()
    onnx_precision = "fp32"
    if precision != "fp32":
        flag = PRECISION_BUILDER_FLAGS[precision]
        if version.major < 11 and has_builder_flag(flag):
            builder_flags = (flag,)
        elif version.major >= 10:
            onnx_precision = precision
        else:
            raise UnsupportedTensorRTError(
                f"TensorRT {version} cannot build {precision} engines (no BuilderFlag.{flag} "
                "and no strongly typed networks before 10.0); use precision='fp16' or upgrade "
                "to TensorRT >= 10."
            )
    return BuildPlan(
        version=version,
        precision=precision,
        explicit_batch_flag=version.major < 10,
        strongly_typed_flag=onnx_precision != "fp32" and version.major == 10,
        builder_flags=builder_flags,
        onnx_precision=onnx_precision,
        progress_monitor=version.major >= 10,
    )


def torch_dtype(trt_dtype: object) -> torch.dtype:
    """Torch dtype of a ``tensorrt.DataType`` member (matched by its ``name``)."""
    name = getattr(trt_dtype, "name", str(trt_dtype).rsplit(".", 1)[-1])
    try:
        return TORCH_DTYPES[name]
    except KeyError:
        raise TypeError(
            f"TensorRT data type {name} has no torch equivalent here; the network's inputs "
            "and outputs must be float32, float16 or bfloat16."
        ) from None
