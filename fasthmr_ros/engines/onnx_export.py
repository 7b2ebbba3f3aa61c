"""Export a regressor's network (backbone + head) to ONNX for ONNX Runtime and TensorRT.

The graph has one float32 input ``crops`` ``(batch, 3, 256, 256)`` with a dynamic batch axis
(plus ``foreground`` ``(batch, tokens)`` for a ViT with a masked merge plan) and the float32
outputs ``global_orient``, ``hand_pose``, ``betas``, ``cam`` (batch first). MANO is
not in the graph: it runs in PyTorch after the engine (cheap, and its blend-shape matmuls lose
precision in fp16).

Facts behind the choices (``research/anchors.md`` section 2.4):

* opset 17 by default: ``scaled_dot_product_attention`` is decomposed into MatMul/Softmax and
  LayerNorm stays one ``LayerNormalization`` op. TensorRT 8.6 parses opsets up to 17, and
  opset 23 would emit the ``Attention`` op that TensorRT 8.6/10.3 cannot parse. Opsets 17-20
  are accepted.
* Protobuf cannot serialise more than 2 GB: larger graphs (the fp32 ViT-H teacher is about
  2.5 GB) keep their weights in one external-data file ``<name>.onnx.data`` beside the graph.
  Consumers must load the graph by path (``InferenceSession(path)``,
  ``OnnxParser.parse_from_file``) so the external data resolves.
* The file is checked with ``onnx.checker`` (by path, which works past 2 GB).

Metadata stored in the graph (``metadata_props``): the regressor configuration (JSON), the
input scale, a fingerprint of the weights, whether the weights are test assets, and the merge
plan applied (``null`` for none). The configuration holds the plan too, so the fingerprint, the
cached graph's name and every engine cache key built on the graph's hash depend on it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import tempfile
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from fasthmr_ros.engines.base import (
    NETWORK_FOREGROUND,
    NETWORK_INPUT,
    EngineError,
    describe_layouts,
    layout_of_outputs,
)
from fasthmr_ros.engines.network import NetworkModule
from fasthmr_ros.models.cache_paths import package_cache_dir
from fasthmr_ros.models.constants import CROP_SIZE
from fasthmr_ros.models.regressor import MeshRegressor
from fasthmr_ros.models.weights_digest import update_with_tensors

log = logging.getLogger(__name__)

#: Opset used unless told otherwise (see the module docstring).
DEFAULT_OPSET = 17
#: Opsets whose export keeps attention decomposed and LayerNormalization fused.
SUPPORTED_OPSETS = range(17, 21)
#: Graphs whose weights exceed this many bytes store them as external data.
EXTERNAL_DATA_THRESHOLD = 2_000_000_000
#: Batch size of the example input used for tracing (not 1, so no axis is specialised to 1).
TRACE_BATCH = 2
#: Keys of ``metadata_props`` written by :func:`export_onnx`.
METADATA_KEYS = ("fasthmr_config", "fasthmr_input_scale", "fasthmr_fingerprint",
                 "fasthmr_test_asset", "fasthmr_merge_plan")


class _OutputTuple(nn.Module):
    """Return the network outputs as a tuple in ``network.output_names`` order (ONNX outputs)."""

    def __init__(self, network: NetworkModule) -> None:
        super().__init__()
        self.network = network

    def forward(
        self, crops: torch.Tensor, foreground: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, ...]:
        outputs = self.network(crops, foreground)
        return tuple(outputs[key] for key in self.network.output_names)


def fingerprint(regressor: MeshRegressor, input_scale: float = 1.0) -> str:
    """A hex digest of the network's configuration, weights and input scale (MANO excluded).

    Two regressors with the same fingerprint export to the same graph; engine caches key on it.
    """
    digest = hashlib.sha256()
    digest.update(json.dumps(regressor.config, sort_keys=True, default=str).encode())
    digest.update(f"input_scale={float(input_scale)!r}".encode())
    update_with_tensors(digest, NetworkModule(regressor, input_scale).state_dict())
    return digest.hexdigest()


@contextlib.contextmanager
def _quiet_tracer() -> Iterator[None]:
    """Silence the tracer's warnings that do not apply to a fixed 256x256 input."""
    with warnings.catch_warnings():
        # Python-level shape comparisons are constant for a fixed crop size; the TorchScript
        # exporter's deprecation notice is about its future, not this graph.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", message=".*dynamo.*")
        yield


def _weights_bytes(model: object) -> int:
    """Bytes of the initializers of an ``onnx.ModelProto`` (external ones included)."""
    from onnx.helper import tensor_dtype_to_np_dtype

    total = 0
    for tensor in model.graph.initializer:  # type: ignore[attr-defined]
        count = 1
        for dim in tensor.dims:
            count *= dim
        total += count * tensor_dtype_to_np_dtype(tensor.data_type).itemsize
    return total


def save_onnx(model: Any, path: Path, external_data: bool | None = None) -> bool:
    """Save an ``onnx.ModelProto`` to ``path``; return whether its weights went to a data file.

    With ``external_data`` (``None``: when the weights exceed :data:`EXTERNAL_DATA_THRESHOLD`
    bytes) the weights go to one file ``<name>.onnx.data`` beside the graph. Stale files of an
    earlier save are removed first (ONNX appends to an existing data file).
    """
    import onnx

    if external_data is None:
        external_data = _weights_bytes(model) > EXTERNAL_DATA_THRESHOLD
    data_file = path.with_name(path.name + ".data")
    for stale in (path, data_file):
        stale.unlink(missing_ok=True)
    if external_data:
        onnx.save_model(model, str(path), save_as_external_data=True,
                        all_tensors_to_one_file=True, location=data_file.name,
                        size_threshold=1024)
    else:
        onnx.save_model(model, str(path))
    return external_data


def _check_opset(opset: int) -> None:
    if opset not in SUPPORTED_OPSETS:
        raise EngineError(
            f"opset {opset} is not supported; use {SUPPORTED_OPSETS.start}-"
            f"{SUPPORTED_OPSETS.stop - 1} (17 is what TensorRT 8.6 parses; opset 23 would emit "
            "the Attention op TensorRT 8.6/10.3 cannot read)."
        )


def export_onnx(
    regressor: MeshRegressor,
    path: str | Path,
    *,
    input_scale: float = 1.0,
    opset: int = DEFAULT_OPSET,
    external_data: bool | None = None,
    progress: bool = False,
    network_fingerprint: str | None = None,
) -> Path:
    """Export ``regressor``'s network to ``path`` and check it; return ``path``.

    Args:
        regressor: a hand or body regressor (teacher or student) with float32 weights.
        path: the ``.onnx`` file to write (its folder is created).
        input_scale: resolution of the backbone window relative to 256x192 (see
            :mod:`fasthmr_ros.engines.network`); baked into the graph.
        opset: ONNX opset, 17 (default) to 20.
        external_data: store weights in ``<name>.onnx.data``; ``None`` decides by size
            (above :data:`EXTERNAL_DATA_THRESHOLD` bytes).
        progress: show a progress bar (export of ViT-H takes a while).
        network_fingerprint: :func:`fingerprint` of ``regressor`` at ``input_scale`` when the
            caller has it already (it hashes every weight); computed otherwise.

    Raises:
        EngineError: bad opset, non-float32 weights, or a graph the ONNX checker rejects.

    """
    import onnx

    _check_opset(opset)
    path = Path(path)
    network = NetworkModule(regressor, input_scale).eval()
    first = next(network.parameters())
    if first.dtype != torch.float32:
        raise EngineError(
            f"export needs float32 weights, the regressor has {first.dtype}; export the loaded "
            "checkpoint before any half-precision conversion."
        )
    example: tuple[torch.Tensor, ...] = (
        torch.zeros(TRACE_BATCH, 3, CROP_SIZE, CROP_SIZE, device=first.device),)
    input_names = [NETWORK_INPUT]
    if network.uses_foreground:
        # A masked merge plan: per-token flags ride along (a static token count per crop).
        rows, cols = network.backbone.cfg.grid
        example = (*example, torch.zeros(TRACE_BATCH, rows * cols, device=first.device))
        input_names.append(NETWORK_FOREGROUND)
    dynamic_axes = {name: {0: "batch"} for name in (*input_names, *network.output_names)}
    path.parent.mkdir(parents=True, exist_ok=True)
    steps = tqdm(total=4, desc=f"export {path.name}", disable=not progress, unit="step")
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".export-") as scratch:
        raw = Path(scratch) / "raw.onnx"
        steps.set_postfix_str("tracing")
        with _quiet_tracer(), torch.no_grad():
            # The wrapper must be in eval mode: the exporter restores the exported module's
            # original mode afterwards, which would put the shared backbone into train mode.
            torch.onnx.export(
                _OutputTuple(network).eval(),
                example,
                str(raw),
                dynamo=False,
                opset_version=opset,
                input_names=input_names,
                output_names=list(network.output_names),
                dynamic_axes=dynamic_axes,
                do_constant_folding=True,
            )
        steps.update()
        steps.set_postfix_str("metadata")
        model = onnx.load(str(raw), load_external_data=True)
        metadata = {
            "fasthmr_config": json.dumps(regressor.config, sort_keys=True, default=str),
            "fasthmr_input_scale": repr(float(input_scale)),
            "fasthmr_fingerprint": network_fingerprint or fingerprint(regressor, input_scale),
            "fasthmr_test_asset": str(bool(getattr(regressor, "is_test_asset", False))),
            "fasthmr_merge_plan": json.dumps(regressor.config.get("merge_plan"), sort_keys=True),
        }
        for key, value in metadata.items():
            entry = model.metadata_props.add()
            entry.key, entry.value = key, value
        steps.update()
        steps.set_postfix_str("saving")
        external_data = save_onnx(model, path, external_data)
        del model
        steps.update()
    steps.set_postfix_str("checking")
    try:
        onnx.checker.check_model(str(path))
    except onnx.checker.ValidationError as exc:
        raise EngineError(f"the exported graph {path} fails the ONNX checker: {exc}") from None
    steps.update()
    steps.close()
    log.info("exported %s (opset %d%s)", path, opset,
             f", weights in {path.name}.data" if external_data else "")
    return path


def read_metadata(path: str | Path) -> dict[str, str]:
    """Return the ``metadata_props`` of an ONNX file (without loading its weights)."""
    import onnx

    path = Path(path)
    if not path.is_file():
        raise EngineError(f"ONNX file {path} does not exist; write one with "
                          "'fasthmr export onnx'.")
    model = onnx.load(str(path), load_external_data=False)
    return {entry.key: entry.value for entry in model.metadata_props}


def check_graph_signature(path: str | Path) -> None:
    """Raise :class:`EngineError` unless the ONNX file has this package's network signature."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    inputs = [i.name for i in model.graph.input]
    outputs = [o.name for o in model.graph.output]
    layout = layout_of_outputs(outputs)
    if (inputs not in ([NETWORK_INPUT], [NETWORK_INPUT, NETWORK_FOREGROUND]) or layout is None
            or outputs != list(layout.outputs)):
        raise EngineError(
            f"{path} is not a fasthmr network graph: inputs {inputs}, outputs {outputs}; "
            f"expected [{NETWORK_INPUT}] -> {describe_layouts()} "
            "(write it with 'fasthmr export onnx')."
        )
    shapes = layout.output_shapes
    for output in model.graph.output:
        dims = [d.dim_value for d in output.type.tensor_type.shape.dim[1:]]
        if tuple(dims) != shapes[output.name]:
            raise EngineError(f"{path}: output {output.name} has shape (batch, {dims}), "
                              f"expected (batch, {shapes[output.name]}).")


def default_cache_dir() -> Path:
    """Folder for exported graphs: ``$FASTHMR_CACHE`` or ``~/.cache/fasthmr_ros``."""
    return package_cache_dir()


def cached_export(
    regressor: MeshRegressor,
    cache_dir: str | Path | None = None,
    *,
    input_scale: float = 1.0,
    opset: int = DEFAULT_OPSET,
    progress: bool = False,
) -> Path:
    """Export once per (weights, input scale, opset) into ``cache_dir/onnx``; reuse after.

    A cached file that cannot be read or whose fingerprint does not match is exported again.
    """
    _check_opset(opset)
    key = fingerprint(regressor, input_scale)
    path = Path(cache_dir or default_cache_dir()) / "onnx" / f"network-{key[:24]}-op{opset}.onnx"
    return export_unless_current(regressor, path, input_scale=input_scale, opset=opset,
                                 progress=progress, network_fingerprint=key)


def export_unless_current(
    regressor: MeshRegressor,
    path: str | Path,
    *,
    input_scale: float = 1.0,
    opset: int = DEFAULT_OPSET,
    progress: bool = False,
    network_fingerprint: str | None = None,
) -> Path:
    """``path`` if it already holds ``regressor``'s network at ``input_scale``, else export it.

    The file is compared by the :func:`fingerprint` in its metadata; one that cannot be read
    is exported again. Arguments as for :func:`export_onnx`.
    """
    path = Path(path)
    key = network_fingerprint or fingerprint(regressor, input_scale)
    if path.is_file():
        try:
            if read_metadata(path).get("fasthmr_fingerprint") == key:
                log.info("using ONNX graph %s (it holds this network)", path)
                return path
        except Exception as exc:  # any unreadable file is exported again
            log.warning("ONNX graph %s is unreadable (%s); exporting again", path, exc)
    return export_onnx(regressor, path, input_scale=input_scale, opset=opset, progress=progress,
                       network_fingerprint=key)


def graph_for_engine(regressor: MeshRegressor, options: Mapping[str, Any]) -> Path:
    """The ONNX graph an engine runs, from its factory ``options``.

    ``onnx_path`` names an exported graph, which must have this package's signature and, when
    ``input_scale`` is given too, have been exported at that scale. Without ``onnx_path`` the
    regressor is exported once into ``cache_dir`` (see :func:`cached_export`).
    """
    input_scale = float(options.get("input_scale", 1.0))
    onnx_path = options.get("onnx_path")
    if onnx_path is None:
        return cached_export(regressor, options.get("cache_dir"), input_scale=input_scale,
                             progress=bool(options.get("progress", False)))
    onnx_path = Path(onnx_path)
    check_graph_signature(onnx_path)
    stored = float(read_metadata(onnx_path).get("fasthmr_input_scale", "1.0"))
    if "input_scale" in options and stored != input_scale:
        raise EngineError(f"{onnx_path} was exported with input_scale {stored}, not "
                          f"{input_scale}; export it again with --input-scale.")
    return onnx_path
