"""Mixed-precision ONNX files (fp16 or bf16 inside, float32 at the edges) for strong typing.

TensorRT 11 removed the weak-typing builder flags (``BuilderFlag.FP16``): every network is
strongly typed, so an engine computes in fp16 only where the parsed ONNX tensors are fp16.
:func:`convert_onnx_precision` rewrites an exported float32 ONNX file that way, like NVIDIA
ModelOpt's AutoCast with ``keep_io_types=True``:

* float32 tensors become fp16 (or bf16); weights are converted once (clamped to the finite
  fp16 range), activations get ``Cast`` nodes where a tensor crosses a precision boundary;
* numerically sensitive operators stay float32 (:data:`FLOAT32_OPS`: normalisation, softmax,
  reductions, powers, exponentials), as do inputs whose type the ONNX schema fixes to float
  (``Resize`` scales) and operators whose schema does not allow the reduced type;
* the graph's inputs and outputs stay float32, so callers feed and read float32 tensors.

The rewrite follows each operator's schema (type variables tie inputs to outputs), so it
works on any graph of standard operators without control flow; the result passes the ONNX
checker and strict shape inference.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper
from onnx.external_data_helper import load_external_data_for_model

from fasthmr_ros.engines.onnx_export import save_onnx

LOGGER = logging.getLogger(__name__)

#: Bump when the conversion changes (it is part of engine cache keys).
CONVERSION_VERSION = 1
#: ONNX element type of each reduced precision.
LOW_PRECISION_TYPES: dict[str, int] = {
    "fp16": TensorProto.FLOAT16,
    "bf16": TensorProto.BFLOAT16,
}
#: Operators computed in float32 whatever the precision: their range or accumulation
#: overflows or loses too much in 16 bits.
FLOAT32_OPS: frozenset[str] = frozenset({
    "LayerNormalization", "GroupNormalization", "InstanceNormalization",
    "Softmax", "LogSoftmax",
    "ReduceMean", "ReduceSum", "ReduceSumSquare", "ReduceL1", "ReduceL2", "ReduceProd",
    "ReduceLogSum", "ReduceLogSumExp", "CumSum",
    "Pow", "Sqrt", "Exp", "Log", "Reciprocal",
})
#: Largest finite fp16 value (weights are clamped to it instead of becoming infinite).
FP16_MAX = float(np.finfo(np.float16).max)

_FLOAT = TensorProto.FLOAT


@dataclass(frozen=True)
class ConversionSummary:
    """What :func:`convert_model_precision` did: counts of nodes and inserted casts."""

    low_precision_nodes: int
    float32_nodes: int
    casts_inserted: int
    weights_converted: int


def _opset(model: onnx.ModelProto, domain: str) -> int:
    for entry in model.opset_import:
        if entry.domain in (domain, "ai.onnx" if domain == "" else domain):
            return entry.version
    raise ValueError(f"the model imports no opset for domain '{domain or 'ai.onnx'}'")


def _elem_types(model: onnx.ModelProto) -> dict[str, int]:
    """Element type of every tensor of the graph (ONNX shape inference, no weights needed)."""
    inferred = onnx.shape_inference.infer_shapes(model)
    types: dict[str, int] = {}
    graph = inferred.graph
    for info in [*graph.input, *graph.value_info, *graph.output]:
        if info.type.HasField("tensor_type"):
            types[info.name] = info.type.tensor_type.elem_type
    for tensor in model.graph.initializer:
        types[tensor.name] = tensor.data_type
    return types


def _convert_weight(tensor: TensorProto, low: int, name: str) -> TensorProto:
    """A copy of a float32 initializer in the reduced type (fp16 values clamped to finite)."""
    values = numpy_helper.to_array(tensor).astype(np.float32, copy=False)
    if low == TensorProto.FLOAT16:
        return numpy_helper.from_array(np.clip(values, -FP16_MAX, FP16_MAX).astype(np.float16),
                                       name)
    raw = torch.from_numpy(np.array(values, copy=True)).to(torch.bfloat16).view(torch.int16)
    converted = TensorProto(name=name, data_type=TensorProto.BFLOAT16, dims=list(values.shape))
    converted.raw_data = raw.numpy().tobytes()
    return converted


class _Rewriter:
    """One pass over a topologically sorted graph, deciding each node's precision."""

    def __init__(self, model: onnx.ModelProto, low: int, keep_float32: frozenset[str],
                 types: dict[str, int]) -> None:
        self.model = model
        self.graph = model.graph
        self.low = low
        self.keep_float32 = keep_float32
        self.opset = _opset(model, "")
        self.original = types
        self.current = dict(self.original)
        self.initializers = {tensor.name: tensor for tensor in self.graph.initializer}
        self.graph_inputs = {info.name for info in self.graph.input}
        self.names = {name for node in self.graph.node for name in [*node.input, *node.output]}
        self.names.update(self.initializers, self.graph_inputs)
        self.casts: dict[tuple[str, int], str] = {}
        self.new_weights: list[TensorProto] = []
        self.nodes: list[onnx.NodeProto] = []
        self.low_nodes = self.float32_nodes = self.cast_count = self.weight_count = 0

    def _fresh(self, base: str) -> str:
        name, index = base, 0
        while name in self.names:
            index += 1
            name = f"{base}_{index}"
        self.names.add(name)
        return name

    def _suffix(self, elem_type: int) -> str:
        return "fp32" if elem_type == _FLOAT else (
            "fp16" if elem_type == TensorProto.FLOAT16 else "bf16")

    def _as_type(self, name: str, elem_type: int) -> str:
        """Name of a tensor holding ``name``'s values in ``elem_type`` (converted once)."""
        if self.current.get(name) == elem_type:
            return name
        cached = self.casts.get((name, elem_type))
        if cached:
            return cached
        target = self._fresh(f"{name}_{self._suffix(elem_type)}")
        weight = self.initializers.get(name)
        if weight is not None and name not in self.graph_inputs and elem_type == self.low:
            self.new_weights.append(_convert_weight(weight, elem_type, target))
            self.weight_count += 1
        else:
            self.nodes.append(helper.make_node("Cast", [name], [target], to=elem_type,
                                               name=self._fresh(f"{target}_cast")))
            self.cast_count += 1
        self.current[target] = elem_type
        self.casts[(name, elem_type)] = target
        return target

    def _schema(self, node: onnx.NodeProto) -> onnx.defs.OpSchema | None:
        if node.domain not in ("", "ai.onnx"):
            return None
        try:
            return onnx.defs.get_schema(node.op_type, self.opset, "")
        except onnx.defs.SchemaError:
            return None

    def rewrite_node(self, node: onnx.NodeProto) -> None:
        if any(attr.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)
               for attr in node.attribute):
            raise ValueError(
                f"node '{node.name}' ({node.op_type}) holds a subgraph; precision conversion "
                "supports graphs without control flow (export the network with fixed shapes "
                "and no data-dependent branches)."
            )
        schema = self._schema(node)
        if schema is None:  # unknown operator: give it exactly the types it had
            for index, name in enumerate(node.input):
                if name and name in self.original:
                    node.input[index] = self._as_type(name, self.original[name])
            self.float32_nodes += 1
            self.nodes.append(node)
            return
        params = list(schema.inputs)
        variables = {c.type_param_str: set(c.allowed_type_strs) for c in schema.type_constraints}
        output_vars = {param.type_str for param in schema.outputs}

        def param_type(index: int) -> str:
            if index < len(params):
                return params[index].type_str
            return params[-1].type_str  # a variadic last parameter

        input_vars = [param_type(i) for i in range(len(node.input))]
        counts = {var: input_vars.count(var) for var in set(input_vars)}
        tied = {var for var in variables if var in output_vars or counts.get(var, 0) > 1}
        float_vars = {
            var for name, var in zip(node.input, input_vars)
            if name and var in tied and self.original.get(name) == _FLOAT
        }
        low_type = f"tensor({self._type_name(self.low)})"
        low_allowed = all(low_type in variables[var] for var in float_vars)
        low = bool(float_vars) and low_allowed and node.op_type not in self.keep_float32
        chosen = self.low if low else _FLOAT
        for index, (name, var) in enumerate(zip(node.input, input_vars)):
            if not name or self.original.get(name) != _FLOAT:
                continue
            if var in float_vars:
                node.input[index] = self._as_type(name, chosen)
            elif var in variables and var not in tied:
                if f"tensor({self._type_name(self.current[name])})" not in variables[var]:
                    node.input[index] = self._as_type(name, _FLOAT)
            else:  # a fixed type such as Resize's 'tensor(float)' scales
                node.input[index] = self._as_type(name, _FLOAT)
        for index, name in enumerate(node.output):
            if not name:
                continue
            var = schema.outputs[min(index, len(schema.outputs) - 1)].type_str
            if var in float_vars:
                self.current[name] = chosen
            elif name in self.original:
                self.current[name] = self.original[name]
        if low:
            self.low_nodes += 1
        else:
            self.float32_nodes += 1
        self.nodes.append(node)

    @staticmethod
    def _type_name(elem_type: int) -> str:
        return {
            TensorProto.FLOAT: "float", TensorProto.FLOAT16: "float16",
            TensorProto.BFLOAT16: "bfloat16", TensorProto.DOUBLE: "double",
        }.get(elem_type, "other")

    def restore_outputs(self) -> None:
        """Cast graph outputs that ended up in the reduced type back to float32."""
        renames: dict[str, str] = {}
        for output in self.graph.output:
            name = output.name
            if self.original.get(name) == _FLOAT and self.current.get(name) != _FLOAT:
                renames[name] = self._fresh(f"{name}_{self._suffix(self.current[name])}")
        for node in self.nodes:
            for index, name in enumerate(node.output):
                if name in renames:
                    node.output[index] = renames[name]
            for index, name in enumerate(node.input):
                if name in renames:
                    node.input[index] = renames[name]
        for name, inner in renames.items():
            self.nodes.append(helper.make_node("Cast", [inner], [name], to=_FLOAT,
                                               name=self._fresh(f"{name}_to_fp32")))
            self.cast_count += 1

    def finish(self) -> ConversionSummary:
        self.restore_outputs()
        del self.graph.node[:]
        self.graph.node.extend(self.nodes)
        used = {name for node in self.graph.node for name in node.input}
        used.update(output.name for output in self.graph.output)
        kept = [tensor for tensor in self.graph.initializer if tensor.name in used]
        kept.extend(tensor for tensor in self.new_weights if tensor.name in used)
        del self.graph.initializer[:]
        self.graph.initializer.extend(kept)
        del self.graph.value_info[:]  # stale types; shape inference recomputes them
        return ConversionSummary(self.low_nodes, self.float32_nodes, self.cast_count,
                                 self.weight_count)


def convert_model_precision(
    model: onnx.ModelProto,
    precision: str = "fp16",
    keep_float32_ops: frozenset[str] = FLOAT32_OPS,
    elem_types: dict[str, int] | None = None,
) -> ConversionSummary:
    """Rewrite ``model`` in place to compute in ``precision`` with float32 inputs and outputs.

    ``model`` must hold its weights in memory (load it with external data). ``elem_types``
    (tensor name to ONNX element type) defaults to ONNX shape inference on ``model``; pass it
    for models over 2 GB, inferred on the model loaded without its external data. Returns what
    was converted. Raises ``ValueError`` for an unknown precision or a graph with control flow.
    """
    if precision not in LOW_PRECISION_TYPES:
        raise ValueError(
            f"precision must be one of {', '.join(LOW_PRECISION_TYPES)}, got '{precision}'"
        )
    types = dict(elem_types) if elem_types is not None else _elem_types(model)
    rewriter = _Rewriter(model, LOW_PRECISION_TYPES[precision], frozenset(keep_float32_ops),
                         types)
    for node in list(model.graph.node):
        rewriter.rewrite_node(node)
    return rewriter.finish()


def convert_onnx_precision(
    source: str | os.PathLike,
    target: str | os.PathLike,
    precision: str = "fp16",
) -> ConversionSummary:
    """Write a ``precision`` (fp16/bf16) copy of the float32 ONNX file ``source`` to ``target``.

    Weights over ``onnx_export.EXTERNAL_DATA_THRESHOLD`` bytes go to ``<target>.data`` beside
    it.
    The result is checked with the ONNX checker. Returns what was converted.
    """
    source, target = Path(source), Path(target)
    model = onnx.load(str(source), load_external_data=False)
    types = _elem_types(model)  # weights are not needed (and may exceed protobuf's 2 GB)
    load_external_data_for_model(model, str(source.parent))
    summary = convert_model_precision(model, precision, elem_types=types)
    target.parent.mkdir(parents=True, exist_ok=True)
    save_onnx(model, target)
    onnx.checker.check_model(str(target), full_check=True)
    LOGGER.info(
        "wrote %s ONNX %s: %d nodes in %s, %d kept float32, %d casts, %d weights converted",
        precision, target, summary.low_precision_nodes, precision, summary.float32_nodes,
        summary.casts_inserted, summary.weights_converted,
    )
    return summary
