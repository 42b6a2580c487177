"""The canonical TFLite flatbuffer: how the exporter serialises a converted model, and how the
flash model serialises a plan with placeholder weights, byte for byte the same way.

- ``canonicalize(model_bytes)``: tensors named ``t<i>`` in the plan's order, no signature defs
  or converter metadata, empty buffers pruned, buffers 16-byte aligned by TFLM's own
  ``tflite_flatbuffer_align`` tool; deterministic.
- ``plan_model_t(plan)``: a schema ModelT of a ``TflPlan`` with placeholder constant data of the
  right sizes (the flash estimate serialises it, so it is the size of the file, not a formula).

Imports tflite_micro's schema lazily (``edgeprune estimate`` imports this module).
"""
from __future__ import annotations

import os
import tempfile
from typing import Dict, List, Optional

from .plan import TflOp, TflPlan, TflTensor

# Operator versions the TF 2.21 converter writes for int8 per-channel models (measured:
# benchmarks/tflm_memory.py --calibrate prints them). A version of 1 is the schema default
# and is not stored, so these matter for a few bytes only.
OP_VERSIONS = {"CONV_2D": 3, "DEPTHWISE_CONV_2D": 3, "FULLY_CONNECTED": 4, "MAX_POOL_2D": 2,
               "AVERAGE_POOL_2D": 2, "RESHAPE": 1, "SOFTMAX": 2, "ADD": 2, "CONCATENATION": 2,
               "PAD": 2, "LOGISTIC": 2, "TANH": 2, "RELU": 2, "RELU6": 2, "TRANSPOSE": 2}
DESCRIPTION = b"edgeprune tflm export"


def _fb():
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as fb
    return fb


def pack_aligned(model_t) -> bytes:
    """Serialise a schema ModelT, then re-pack it with TFLM's flatbuffer alignment tool (the
    step tflite-micro's compressor ends with): buffers get their 16-byte force_align."""
    import flatbuffers
    from tflite_micro.tensorflow.lite.micro.tools import tflite_flatbuffer_align_wrapper as align
    builder = flatbuffers.Builder(1024)
    builder.Finish(model_t.Pack(builder), file_identifier=b"TFL3")
    raw = bytes(builder.Output())
    with tempfile.TemporaryDirectory(prefix="edgeprune-fb-") as d:
        src, dst = os.path.join(d, "in.tflite"), os.path.join(d, "out.tflite")
        with open(src, "wb") as f:
            f.write(raw)
        align.align_tflite_model(src, dst)
        with open(dst, "rb") as f:
            return f.read()


def canonicalize(model_bytes: bytes) -> bytes:
    """The exporter's final form of a converted model: tensors named t<i>, no signature defs
    or converter metadata, empty quantization tables dropped, buffers of non-constant tensors
    pruned, TFLM-aligned. Deterministic: the same content gives the same bytes."""
    fb = _fb()
    m = fb.ModelT.InitFromPackedBuf(bytearray(model_bytes), 0)
    m.description = DESCRIPTION
    m.signatureDefs = None
    m.metadata = None
    m.metadataBuffer = None
    for sg in m.subgraphs:
        _canonical_tensor_order(sg)
        for i, t in enumerate(sg.tensors):
            t.name = f"t{i}".encode()
            t.shapeSignature = None
            t.hasRank = True
            q = t.quantization
            if q is not None and (q.scale is None or len(q.scale) == 0):
                t.quantization = None
    # Keep buffer 0 (the empty sentinel) and the buffers constant tensors use, in first-use order.
    used: Dict[int, int] = {}
    new_buffers = [fb.BufferT()]
    for sg in m.subgraphs:
        for t in sg.tensors:
            b = m.buffers[t.buffer] if t.buffer < len(m.buffers) else None
            if b is None or b.data is None or len(b.data) == 0:
                t.buffer = 0
                continue
            if t.buffer not in used:
                used[t.buffer] = len(new_buffers)
                new_buffers.append(b)
            t.buffer = used[t.buffer]
    m.buffers = new_buffers
    return pack_aligned(m)


def _canonical_tensor_order(sg) -> None:
    """Renumber tensors: subgraph inputs, then per operator its not-yet-numbered inputs in
    input order followed by its outputs; leftovers last. The converter's own order (constants
    in reverse) would make buffer padding and the arena planner's tie-breaks depend on it; this
    order is the one ``lower`` creates tensors in."""
    import numpy as np
    order: List[int] = []
    seen = set()

    def take(i):
        if i >= 0 and i not in seen:
            seen.add(i)
            order.append(i)
    for i in sg.inputs:
        take(int(i))
    for op in sg.operators:
        for i in op.inputs:
            take(int(i))
        for i in op.outputs:
            take(int(i))
    for i in range(len(sg.tensors)):
        take(i)
    new_index = {old: new for new, old in enumerate(order)}

    def remap(arr):
        if arr is None:
            return None
        return np.array([new_index[int(i)] if int(i) >= 0 else int(i) for i in arr], dtype=np.int32)
    sg.tensors = [sg.tensors[i] for i in order]
    sg.inputs, sg.outputs = remap(sg.inputs), remap(sg.outputs)
    for op in sg.operators:
        op.inputs, op.outputs = remap(op.inputs), remap(op.outputs)
        if op.intermediates is not None and len(op.intermediates):
            op.intermediates = remap(op.intermediates)


_OPT = {  # opcode -> (BuiltinOptions name, options class name)
    "CONV_2D": ("Conv2DOptions", "Conv2DOptionsT"),
    "DEPTHWISE_CONV_2D": ("DepthwiseConv2DOptions", "DepthwiseConv2DOptionsT"),
    "FULLY_CONNECTED": ("FullyConnectedOptions", "FullyConnectedOptionsT"),
    "MAX_POOL_2D": ("Pool2DOptions", "Pool2DOptionsT"),
    "AVERAGE_POOL_2D": ("Pool2DOptions", "Pool2DOptionsT"),
    "SOFTMAX": ("SoftmaxOptions", "SoftmaxOptionsT"),
    "ADD": ("AddOptions", "AddOptionsT"),
    "CONCATENATION": ("ConcatenationOptions", "ConcatenationOptionsT"),
    "PAD": ("PadOptions", "PadOptionsT"),
    "TRANSPOSE": ("TransposeOptions", "TransposeOptionsT"),
}


def _options(fb, op: TflOp):
    if op.opcode not in _OPT:
        return 0, None
    union, cls = _OPT[op.opcode]
    o = getattr(fb, cls)()
    act = getattr(fb.ActivationFunctionType, op.options.get("fused_activation", "NONE"))
    if op.opcode in ("CONV_2D", "DEPTHWISE_CONV_2D"):
        o.padding = getattr(fb.Padding, op.options["padding"])
        o.strideH, o.strideW = op.options["stride"]
        o.dilationHFactor, o.dilationWFactor = op.options["dilation"]
        o.fusedActivationFunction = act
        if op.opcode == "DEPTHWISE_CONV_2D":
            o.depthMultiplier = 1
    elif op.opcode == "FULLY_CONNECTED":
        o.fusedActivationFunction = act
    elif op.opcode in ("MAX_POOL_2D", "AVERAGE_POOL_2D"):
        o.padding = fb.Padding.VALID
        o.fusedActivationFunction = act
        o.filterHeight, o.filterWidth = op.options["filter"]
        o.strideH, o.strideW = op.options["stride"]
    elif op.opcode == "SOFTMAX":
        o.beta = 1.0
    elif op.opcode == "ADD":
        o.fusedActivationFunction = act
    elif op.opcode == "CONCATENATION":
        o.axis = op.options["axis"]
    return getattr(fb.BuiltinOptions, union), o


def _placeholder_data(t: TflTensor, n_values: Optional[int] = None):
    """Bytes standing in for a constant tensor; with n_values, int8 weights that take n_values
    distinct values in every output channel (the LUT compressor needs that many)."""
    import numpy as np
    if t.role == "weights" and n_values:
        ch = t.shape[t.quant_axis]
        per = t.nbytes // ch
        row = (np.arange(per) % n_values - n_values // 2).astype(np.int8)
        arr = np.broadcast_to(row, (ch, per)).copy()
        if t.quant_axis != 0:   # depthwise: channels last
            arr = arr.T.copy()
        return arr.reshape(-1).view(np.uint8)
    # Distinct bytes per tensor so the flatbuffer deduplication cannot merge them.
    arr = np.full(t.nbytes, (t.index * 7 + 1) % 251, dtype=np.uint8)
    arr[: min(4, t.nbytes)] = np.frombuffer(t.index.to_bytes(4, "little"), np.uint8)[: min(4, t.nbytes)]
    return arr


def plan_model_t(plan: TflPlan, lut_values: Optional[Dict[int, int]] = None):
    """A schema ModelT for the plan, with placeholder constant data."""
    import numpy as np
    fb = _fb()
    lut_values = lut_values or {}
    m = fb.ModelT()
    m.version = 3
    m.description = DESCRIPTION
    codes = plan.opcodes
    m.operatorCodes = []
    for c in codes:
        oc = fb.OperatorCodeT()
        code = getattr(fb.BuiltinOperator, c)
        oc.builtinCode = code
        oc.deprecatedBuiltinCode = min(code, 127)
        oc.version = OP_VERSIONS.get(c, 1)
        m.operatorCodes.append(oc)
    m.buffers = [fb.BufferT()]
    sg = fb.SubGraphT()
    sg.name = b"main"
    sg.tensors = []
    for t in plan.tensors:
        tt = fb.TensorT()
        tt.shape = np.array(t.shape, dtype=np.int32)
        tt.type = {"int8": fb.TensorType.INT8, "int32": fb.TensorType.INT32,
                   "uint8": fb.TensorType.UINT8, "int4": fb.TensorType.INT4}[t.dtype]
        tt.name = f"t{t.index}".encode()
        tt.hasRank = True
        if t.quant_channels:
            q = fb.QuantizationParametersT()
            q.scale = np.full(t.quant_channels, 0.01, dtype=np.float32)
            q.zeroPoint = np.zeros(t.quant_channels, dtype=np.int64)
            q.quantizedDimension = t.quant_axis if t.quant_channels > 1 else 0
            tt.quantization = q
        if t.const:
            b = fb.BufferT()
            b.data = _placeholder_data(t, lut_values.get(t.index))
            m.buffers.append(b)
            tt.buffer = len(m.buffers) - 1
        else:
            tt.buffer = 0
        sg.tensors.append(tt)
    sg.inputs = np.array(plan.inputs, dtype=np.int32)
    sg.outputs = np.array(plan.outputs, dtype=np.int32)
    sg.operators = []
    for op in plan.ops:
        o = fb.OperatorT()
        o.opcodeIndex = codes.index(op.opcode)
        o.inputs = np.array(op.inputs, dtype=np.int32)
        o.outputs = np.array(op.outputs, dtype=np.int32)
        o.builtinOptionsType, o.builtinOptions = _options(fb, op)
        sg.operators.append(o)
    m.subgraphs = [sg]
    return m


