"""The int8 model as the C generator sees it: tensors (shape, quantization, constant data) and
operators, read from a TFLite flatbuffer.

The C runtime takes its quantized parameters from the flatbuffer the TFLM exporter produces
(``edgeprune.export.tflm``), so the scales, zero points, int8 weights and int32 biases are the
very ones LiteRT and TFLM run: bit-exactness then only depends on the kernels' arithmetic.

Needs only numpy and the flatbuffer schema module shipped with ``tflite_micro`` (no torch, no
tensorflow).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ...errors import EdgepruneError


class CModelError(EdgepruneError):
    """The model cannot be expressed by the C runtime; the message names the op and layer."""


@dataclass
class Tensor:
    index: int
    shape: Tuple[int, ...]
    dtype: str                       # 'int8' | 'int32' | other TFLite type names, lower case
    scale: np.ndarray                # float32, one per channel (empty when not quantized)
    zero_point: np.ndarray           # int64
    qdim: int = 0
    data: Optional[np.ndarray] = None  # constant contents, shaped

    @property
    def size(self) -> int:
        return int(np.prod(self.shape)) if self.shape else 1

    @property
    def nbytes(self) -> int:
        return self.size * {"int8": 1, "uint8": 1, "int16": 2, "int32": 4}.get(self.dtype, 4)

    @property
    def const(self) -> bool:
        return self.data is not None

    @property
    def s(self) -> float:
        """Per-tensor scale (float32 value)."""
        return float(self.scale[0])

    @property
    def zp(self) -> int:
        return int(self.zero_point[0]) if len(self.zero_point) else 0


@dataclass
class Op:
    index: int
    opcode: str                      # TFLite BuiltinOperator name
    inputs: List[int]                # -1 = absent optional input
    outputs: List[int]
    options: Dict[str, Any] = field(default_factory=dict)
    layer: str = ""                  # the model layer it implements (for messages and comments)


@dataclass
class Graph:
    tensors: List[Tensor]
    ops: List[Op]
    inputs: List[int]
    outputs: List[int]

    def consumers(self, t: int) -> List[Op]:
        return [op for op in self.ops if t in op.inputs]


def _fb():
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as fb
    return fb


def _enum_names(cls) -> Dict[int, str]:
    return {v: k for k, v in vars(cls).items() if not k.startswith("_")}


_OPTION_FIELDS = {  # options object attribute -> our key
    "padding": "padding", "strideW": "stride_w", "strideH": "stride_h",
    "dilationWFactor": "dilation_w", "dilationHFactor": "dilation_h",
    "depthMultiplier": "depth_multiplier", "fusedActivationFunction": "activation",
    "filterWidth": "filter_w", "filterHeight": "filter_h", "axis": "axis", "beta": "beta",
    "keepNumDims": "keep_num_dims", "weightsFormat": "weights_format",
    "asymmetricQuantizeInputs": "asymmetric_quantize_inputs",
}


def read_tflite(model_bytes: bytes, layer_names: Optional[Sequence[str]] = None) -> Graph:
    """The graph of a one-subgraph TFLite model. layer_names[i] names operator i."""
    fb = _fb()
    m = fb.ModelT.InitFromPackedBuf(bytearray(model_bytes), 0)
    if not m.subgraphs or len(m.subgraphs) != 1:
        raise CModelError("the model must have exactly one subgraph")
    sg = m.subgraphs[0]
    types = {k: v.lower() for k, v in _enum_names(fb.TensorType).items()}
    ops_by_code = _enum_names(fb.BuiltinOperator)
    pads = _enum_names(fb.Padding)
    acts = _enum_names(fb.ActivationFunctionType)
    tensors: List[Tensor] = []
    for i, t in enumerate(sg.tensors):
        dtype = types.get(t.type, str(t.type))
        q = t.quantization
        scale = np.asarray(q.scale if q is not None and q.scale is not None else [], dtype=np.float32)
        zp = np.asarray(q.zeroPoint if q is not None and q.zeroPoint is not None else [], dtype=np.int64)
        qdim = int(q.quantizedDimension) if q is not None else 0
        shape = tuple(int(d) for d in (t.shape if t.shape is not None else []))
        data = None
        buf = m.buffers[t.buffer] if 0 < t.buffer < len(m.buffers) else None
        if buf is not None and buf.data is not None and len(buf.data):
            np_type = {"int8": np.int8, "int32": np.int32, "uint8": np.uint8, "int16": np.int16,
                       "int64": np.int64, "float32": np.float32}.get(dtype)
            if np_type is None:
                raise CModelError(f"tensor {i}: constant of type {dtype} is not supported")
            data = np.frombuffer(bytes(buf.data), dtype=np_type).reshape(shape)
        tensors.append(Tensor(i, shape, dtype, scale, zp, qdim, data))
    ops: List[Op] = []
    for i, op in enumerate(sg.operators):
        oc = m.operatorCodes[op.opcodeIndex]
        code = max(oc.builtinCode, oc.deprecatedBuiltinCode)
        name = ops_by_code.get(code, str(code))
        if name == "CUSTOM":
            name = "CUSTOM:" + (oc.customCode or b"?").decode(errors="replace")
        opts: Dict[str, Any] = {}
        if op.builtinOptions is not None:
            for attr, key in _OPTION_FIELDS.items():
                if hasattr(op.builtinOptions, attr):
                    opts[key] = getattr(op.builtinOptions, attr)
        if "padding" in opts:
            opts["padding"] = pads[opts["padding"]]
        opts["activation"] = acts[opts.get("activation", 0)]
        layer = layer_names[i] if layer_names is not None and i < len(layer_names) else f"op{i}"
        ops.append(Op(i, name, [int(x) for x in op.inputs], [int(x) for x in op.outputs],
                      opts, layer))
    return Graph(tensors, ops, [int(x) for x in sg.inputs], [int(x) for x in sg.outputs])
