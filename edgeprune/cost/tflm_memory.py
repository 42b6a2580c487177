"""TFLite-Micro flash and arena model of an int8 export, computed from the layer graph.

Import-light (no torch, no tensorflow): ``edgeprune estimate`` calls it.

How it works
------------
1. ``lower(graph)`` maps the float torch graph to the TFLite op list the exporter emits
   (``edgeprune.export.tflm`` builds its Keras mirror from the *same* plan, so the two cannot
   drift): BN folds into the conv/linear before it, dropout/identity vanish, ReLU/ReLU6 fuse
   into the conv/linear/add before them, ZeroPad2d folds into the next conv when the pair
   equals TFLite ``SAME`` padding (else a PAD op), flatten becomes RESHAPE (the Dense weights
   after it are permuted so no TRANSPOSE is needed), adaptive 1x1 pooling becomes
   AVERAGE_POOL_2D over the whole map, softmax becomes SOFTMAX.
2. Flash: the plan is serialised exactly as the exporter serialises a converted model
   (``canonical_flatbuffer``: tensors named ``t<index>``, no signature defs or converter
   metadata, empty buffers pruned, 16-byte aligned buffers by TFLM's own
   ``tflite_flatbuffer_align`` tool), with placeholder weight bytes of the right sizes. LUT
   compression is simulated by running tflite-micro's own compressor on placeholder weights
   with the requested number of values per channel. The figure is therefore the size of the
   file, not a formula fitted to it.
3. Arena: head = TFLM's GreedyMemoryPlanner re-implemented (micro/memory_planner/
   greedy_memory_planner.cc: buffers sorted by size, descending, stable; each placed at the
   first gap between buffers alive at the same time; lifetimes from micro_allocation_info.cc;
   sizes rounded up to 16 bytes), over activations, DECODE outputs and kernel scratch buffers.
   Tail = persistent structs, with per-struct sizes measured on the 64-bit host runtime
   (``benchmarks/tflm_memory.py --calibrate``; see ``PERSISTENT``).

The arena figures are for TFLM's Python runtime (64-bit host, reference kernels), the runtime
the exporter measures. On a 32-bit MCU the pointer-holding structs are smaller, so the tail is
an upper bound there; with ``runtime='tflm-cmsis-nn'`` the CMSIS-NN scratch buffers are added.
"""
from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

from ..errors import EdgepruneError
from ..layergraph import UnsupportedOpError

ALIGN = 16  # MicroArenaBufferAlignment() (micro/memory_helpers.h) and flatbuffer force_align


class TflmUnsupportedError(UnsupportedOpError):
    """A layer the TFLite-Micro export cannot express; the message names the op and the layer."""


# --------------------------------------------------------------------------------------------
# Lowering: LayerGraph -> TFLite op plan

@dataclass
class TflTensor:
    index: int
    shape: Tuple[int, ...]
    dtype: str                   # 'int8' | 'int32' | 'uint8'
    role: str                    # input | act | weights | bias | shape | paddings | output
    node: str                    # graph node the tensor belongs to
    quant_channels: int = 0      # number of (scale, zero point) pairs; 0 = no quantization
    quant_axis: int = 0

    @property
    def nbytes(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n * {"int8": 1, "uint8": 1, "int32": 4}[self.dtype]

    @property
    def const(self) -> bool:
        return self.role in ("weights", "bias", "shape", "paddings")


@dataclass
class TflOp:
    opcode: str                  # TFLite BuiltinOperator name
    node: str                    # the graph node this op implements
    inputs: List[int]
    outputs: List[int]
    options: Dict[str, object] = field(default_factory=dict)
    folded: List[str] = field(default_factory=list)   # graph nodes merged into this op
    attrs: Dict[str, object] = field(default_factory=dict)  # what the Keras mirror needs


@dataclass
class TflPlan:
    tensors: List[TflTensor]
    ops: List[TflOp]
    inputs: List[int]
    outputs: List[int]
    node_tensor: Dict[str, int]  # graph node -> tensor holding its value

    def op_for_node(self, node: str) -> Optional[TflOp]:
        for op in self.ops:
            if op.node == node or node in op.folded:
                return op
        return None

    @property
    def opcodes(self) -> List[str]:
        seen: List[str] = []
        for op in self.ops:
            if op.opcode not in seen:
                seen.append(op.opcode)
        return seen


# Ops TFLM (micro/kernels) has a kernel for, among those the lowering can produce.
TFLM_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "MAX_POOL_2D", "AVERAGE_POOL_2D",
            "RESHAPE", "SOFTMAX", "ADD", "CONCATENATION", "PAD", "LOGISTIC", "TANH", "RELU",
            "RELU6", "TRANSPOSE")


def _same_padding(in_size: int, k: int, s: int, d: int = 1) -> Tuple[int, int, int]:
    """TFLite/Keras SAME padding: (out, before, after) (tensorflow/lite/kernels/padding.h)."""
    eff = (k - 1) * d + 1
    out = -(-in_size // s)
    total = max((out - 1) * s + eff - in_size, 0)
    return out, total // 2, total - total // 2


def _conv_padding(in_hw, k, s, d, pads) -> str:
    """'same' or 'valid' if the explicit torch pads (top, bottom, left, right) equal one of
    them, else 'explicit'. Torch pads are symmetric per dim unless a ZeroPad2d was folded."""
    top, bottom, left, right = pads
    if top == bottom == left == right == 0:
        return "valid"
    same = True
    for size, kk, ss, dd, before, after in ((in_hw[0], k[0], s[0], d[0], top, bottom),
                                            (in_hw[1], k[1], s[1], d[1], left, right)):
        out, b, _ = _same_padding(size, kk, ss, dd)
        torch_out = (size + before + after - ((kk - 1) * dd + 1)) // ss + 1
        if b != before or out != torch_out:
            same = False
    return "same" if same else "explicit"


def lower(graph) -> TflPlan:
    """The TFLite op plan of `graph` (an edgeprune LayerGraph of the float model)."""
    tensors: List[TflTensor] = []
    ops: List[TflOp] = []
    node_tensor: Dict[str, int] = {}
    layout: Dict[str, str] = {}          # node -> 'nhwc' | 'flat'
    producer_op: Dict[int, TflOp] = {}   # tensor -> op that writes it
    pending_pad: Dict[str, Tuple[str, Tuple[int, int, int, int]]] = {}  # pad node -> (src, pads)
    flatten_src: Dict[str, Tuple[int, int, int]] = {}  # flatten node -> (C, H, W) before it

    def new_tensor(shape, dtype, role, node, qc=1, axis=0) -> int:
        tensors.append(TflTensor(len(tensors), tuple(int(d) for d in shape), dtype, role, node, qc, axis))
        return len(tensors) - 1

    shared: Dict[tuple, int] = {}

    def shared_const(key, shape, role, node) -> int:
        """int32 shape/paddings constants: the converter keeps one tensor per distinct value
        (resnet8's two PADs share one paddings tensor)."""
        if key not in shared:
            shared[key] = new_tensor(shape, "int32", role, node, qc=0)
        return shared[key]

    def act_shape(shape) -> Tuple[int, ...]:
        if len(shape) == 3:
            c, h, w = shape
            return (1, h, w, c)
        return (1,) + tuple(shape)

    def consumers(name):
        return graph.consumers(name)

    def fusable(tid: int) -> Optional[TflOp]:
        op = producer_op.get(tid)
        if op is None or op.opcode not in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "ADD",
                                           "MAX_POOL_2D", "AVERAGE_POOL_2D"):
            return None
        if op.options.get("fused_activation", "NONE") != "NONE":
            return None
        return op

    def emit(opcode, node, ins, out_shape, options=None, attrs=None) -> int:
        out = new_tensor(act_shape(out_shape) if len(out_shape) != 4 else out_shape, "int8", "act", node)
        op = TflOp(opcode, node, list(ins), [out], dict(options or {}), [], dict(attrs or {}))
        ops.append(op)
        producer_op[out] = op
        return out

    inputs: List[int] = []
    outputs: List[int] = []
    for n in graph.nodes:
        kind = n.op
        where = f"layer '{n.name}'" + (f" ({n.target})" if n.target else "")
        if kind == "input":
            t = new_tensor(act_shape(n.out_shape), "int8", "input", n.name)
            inputs.append(t)
            node_tensor[n.name] = t
            layout[n.name] = "nhwc" if len(n.out_shape) == 3 else "flat"
            continue
        if kind == "output":
            src = node_tensor[n.inputs[0]]
            outputs.append(src)
            tensors[src].role = "output" if tensors[src].role == "act" else tensors[src].role
            continue
        src_name = n.inputs[0] if n.inputs else None
        if kind in ("dropout", "identity"):
            node_tensor[n.name] = node_tensor[src_name]
            layout[n.name] = layout[src_name]
            if src_name in pending_pad:
                pending_pad[n.name] = pending_pad[src_name]
            continue
        if kind == "pad":
            pads = tuple(n.attrs.get("padding", (0, 0, 0, 0)))
            if len(pads) != 4 or layout[src_name] != "nhwc":
                raise TflmUnsupportedError(f"{where}: PAD of a non-image tensor is not supported")
            left, right, top, bottom = pads
            pending_pad[n.name] = (src_name, (top, bottom, left, right))
            # Whether it folds into the next conv is decided there; the value stays unpadded.
            node_tensor[n.name] = node_tensor[src_name]
            layout[n.name] = "nhwc"
            continue
        if kind in ("conv2d", "dwconv2d"):
            if n.attrs.get("groups", 1) != 1 and kind == "conv2d":
                raise TflmUnsupportedError(
                    f"{where}: grouped CONV_2D (groups={n.attrs['groups']}) has no TFLM kernel")
            if isinstance(n.attrs.get("padding"), str):
                raise TflmUnsupportedError(f"{where}: string padding '{n.attrs['padding']}' "
                                           f"is not supported; use explicit integers")
            k = tuple(n.attrs["kernel_size"])
            s = tuple(n.attrs["stride"])
            d = tuple(n.attrs.get("dilation", (1, 1)))
            ph, pw = n.attrs.get("padding", (0, 0))
            pads = [ph, ph, pw, pw]
            folded = []
            in_name = src_name
            if src_name in pending_pad and len(consumers(src_name)) == 1:
                psrc, pp = pending_pad[src_name]
                pads = [a + b for a, b in zip(pads, pp)]
                folded.append(src_name)
                in_name = psrc
            elif src_name in pending_pad:
                raise TflmUnsupportedError(f"{where}: a ZeroPad2d feeding several layers is "
                                           f"not supported")
            c_in, h, w = graph[in_name].out_shape if graph[in_name].op != "pad" else graph[src_name].out_shape
            mode = _conv_padding((h, w), k, s, d, pads)
            x = node_tensor[in_name]
            if mode == "explicit":
                pt = shared_const(("paddings", tuple(pads)), (4, 2), "paddings", n.name)
                padded = (c_in, h + pads[0] + pads[1], w + pads[2] + pads[3])
                x = emit("PAD", n.name, [x, pt], padded, attrs={"pads": tuple(pads)})
                mode = "valid"
            c_out = n.out_shape[0]
            if kind == "conv2d":
                wt = new_tensor((c_out, k[0], k[1], c_in), "int8", "weights", n.name, c_out, 0)
                opcode = "CONV_2D"
            else:
                wt = new_tensor((1, k[0], k[1], c_out), "int8", "weights", n.name, c_out, 3)
                opcode = "DEPTHWISE_CONV_2D"
            bt = new_tensor((c_out,), "int32", "bias", n.name, c_out, 0)
            out = emit(opcode, n.name, [x, wt, bt], n.out_shape,
                       {"padding": mode.upper(), "stride": s, "dilation": d,
                        "fused_activation": "NONE"},
                       {"pads": tuple(pads), "padding": mode})
            producer_op[out].folded = folded
            node_tensor[n.name] = out
            layout[n.name] = "nhwc"
            continue
        if kind == "linear":
            x = node_tensor[src_name]
            c_out, c_in = n.weight_shape
            attrs = {}
            if src_name in flatten_src:
                attrs["permute_from_chw"] = flatten_src[src_name]
            elif layout[src_name] != "flat":
                raise TflmUnsupportedError(f"{where}: Linear on a 4-D tensor is not supported")
            wt = new_tensor((c_out, c_in), "int8", "weights", n.name, c_out, 0)
            has_bias = (n.has_bias or _bn_after(graph, n.name)) and not _feeds_linear(graph, n.name)
            ins = [x, wt]
            if has_bias:
                ins.append(new_tensor((c_out,), "int32", "bias", n.name, c_out, 0))
            else:
                ins.append(-1)
            attrs["has_bias"] = has_bias
            out = emit("FULLY_CONNECTED", n.name, ins, n.out_shape, {"fused_activation": "NONE"}, attrs)
            node_tensor[n.name] = out
            layout[n.name] = "flat"
            continue
        if kind == "batchnorm":
            prod = graph[src_name]
            t = node_tensor[src_name]
            op = producer_op.get(t)
            if (prod.op not in ("conv2d", "dwconv2d", "linear") or len(consumers(src_name)) != 1
                    or op is None or op.node != src_name):
                raise TflmUnsupportedError(
                    f"{where}: BatchNorm must directly follow a conv or linear layer to be folded "
                    f"(TFLM has no standalone batch-norm op)")
            op.folded.append(n.name)
            op.attrs["bn"] = n.target
            node_tensor[n.name] = t
            layout[n.name] = layout[src_name]
            continue
        if kind in ("relu", "relu6"):
            t = node_tensor[src_name]
            op = fusable(t)
            if op is not None and len(consumers(src_name)) == 1 and src_name not in outputs_of(graph):
                op.options["fused_activation"] = kind.upper()
                op.folded.append(n.name)
                node_tensor[n.name] = t
            else:
                node_tensor[n.name] = emit(kind.upper(), n.name, [t], n.out_shape)
            layout[n.name] = layout[src_name]
            continue
        if kind in ("sigmoid", "tanh"):
            opcode = "LOGISTIC" if kind == "sigmoid" else "TANH"
            node_tensor[n.name] = emit(opcode, n.name, [node_tensor[src_name]], n.out_shape)
            layout[n.name] = layout[src_name]
            continue
        if kind in ("maxpool2d", "avgpool2d", "gap"):
            c, h, w = n.in_shape
            if kind == "gap":
                k, s = (h, w), (1, 1)
            else:
                k, s = tuple(n.attrs["kernel_size"]), tuple(n.attrs["stride"])
                if tuple(n.attrs.get("padding", (0, 0))) != (0, 0):
                    raise TflmUnsupportedError(
                        f"{where}: padded {kind} is not supported (only padding=0)")
            opcode = "MAX_POOL_2D" if kind == "maxpool2d" else "AVERAGE_POOL_2D"
            node_tensor[n.name] = emit(opcode, n.name, [node_tensor[src_name]], n.out_shape,
                                       {"filter": k, "stride": s, "padding": "VALID"})
            layout[n.name] = "nhwc"
            continue
        if kind == "flatten":
            if layout[src_name] == "flat":
                node_tensor[n.name] = node_tensor[src_name]
                layout[n.name] = "flat"
                continue
            c, h, w = graph[src_name].out_shape
            cons = consumers(n.name)
            if h * w == 1 and cons and all(x.op == "linear" for x in cons):
                # FULLY_CONNECTED flattens a 1x1xC input itself; the converter drops the
                # RESHAPE (measured on the zoo's GAP -> flatten -> Linear heads).
                node_tensor[n.name] = node_tensor[src_name]
                layout[n.name] = "flat"
                continue
            if c > 1 and h * w > 1 and not all(x.op == "linear" for x in cons):
                raise TflmUnsupportedError(
                    f"{where}: flatten of a {c}x{h}x{w} map feeds a non-Linear layer; the NHWC "
                    f"export would reorder its features (only flatten -> Linear is supported)")
            st = shared_const(("shape", tuple(n.out_shape)), (2,), "shape", n.name)
            node_tensor[n.name] = emit("RESHAPE", n.name, [node_tensor[src_name], st], n.out_shape)
            if c > 1 and h * w > 1:
                flatten_src[n.name] = (c, h, w)
            layout[n.name] = "flat"
            continue
        if kind == "softmax":
            if layout[src_name] != "flat":
                raise TflmUnsupportedError(f"{where}: softmax over an image tensor is not supported")
            node_tensor[n.name] = emit("SOFTMAX", n.name, [node_tensor[src_name]], n.out_shape,
                                       {"beta": 1.0})
            layout[n.name] = "flat"
            continue
        if kind == "add":
            a, b = (node_tensor[i] for i in n.inputs)
            node_tensor[n.name] = emit("ADD", n.name, [a, b], n.out_shape, {"fused_activation": "NONE"})
            layout[n.name] = layout[src_name]
            continue
        if kind == "concat":
            ins = [node_tensor[i] for i in n.inputs]
            node_tensor[n.name] = emit("CONCATENATION", n.name, ins, n.out_shape,
                                       {"axis": 3 if layout[src_name] == "nhwc" else 1})
            layout[n.name] = layout[src_name]
            continue
        raise TflmUnsupportedError(f"{where}: op '{kind}' has no TFLite-Micro kernel")
    for op in ops:
        if op.opcode not in TFLM_OPS:  # pragma: no cover - lowering only emits TFLM_OPS
            raise TflmUnsupportedError(f"layer '{op.node}': op {op.opcode} has no TFLM kernel")
    return TflPlan(tensors, ops, inputs, outputs, node_tensor)


def outputs_of(graph) -> List[str]:
    return list(graph.output_node.inputs)


def _feeds_linear(graph, name: str) -> bool:
    """A Linear whose only consumer is another Linear (nothing non-linear between): the
    converter folds its bias into the next layer's (W2 (W1 x + b1) + b2), so it has none.
    Measured: benchmarks/tflm_memory.py --calibrate, case linear_linear."""
    cons = graph.consumers(name)
    while len(cons) == 1 and cons[0].op in ("dropout", "identity"):
        cons = graph.consumers(cons[0].name)
    return (len(cons) == 1 and cons[0].op == "linear"
            and name not in outputs_of(graph))


def _bn_after(graph, name: str) -> bool:
    cons = graph.consumers(name)
    return len(cons) == 1 and cons[0].op == "batchnorm"


# --------------------------------------------------------------------------------------------
# Flatbuffer: the canonical serialisation shared by estimator and exporter

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
                   "uint8": fb.TensorType.UINT8}[t.dtype]
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


# --------------------------------------------------------------------------------------------
# LUT compression rules (shared with the exporter)

LUT_MAX_BITS = 7        # DCM bitwidth field is 3 bits, 1..7 (compression/lut.py)
DCM_BYTES = 16          # DECODE common metadata header (compression/decode.py)


def lut_sizes(t: TflTensor, bits: int, n_values: Optional[int] = None) -> Tuple[int, int]:
    """(encoded index bytes, ancillary bytes) of a per-channel LUT-compressed tensor
    (compression/lut.py: indices packed MSB-first, padded to a byte; ancillary = 16-byte DCM
    + one value table per channel, each as long as the largest)."""
    n = t.nbytes // (4 if t.dtype == "int32" else 1)
    ch = t.shape[t.quant_axis]
    stride = n_values if n_values else 2 ** bits
    item = 4 if t.dtype == "int32" else 1
    return -(-n * bits // 8), DCM_BYTES + ch * stride * item


def lut_pays(t: TflTensor, bits: int, n_values: Optional[int] = None) -> bool:
    """Compress only where the file shrinks, counting the DECODE op and its tensors' metadata
    (FLATBUFFER_PER_TENSOR_BYTES, measured) against the saving."""
    enc, anc = lut_sizes(t, bits, n_values)
    # The DECODE output tensor copies the weights' per-channel quantization (float32 scale +
    # int64 zero point per channel, compression/decode_insert.py _create_output_tensor).
    quant_copy = 12 * t.quant_channels
    return (enc + anc + quant_copy + 2 * FLATBUFFER_PER_TENSOR_BYTES + FLATBUFFER_PER_OP_BYTES
            < t.nbytes)


# Serialised size of one extra tensor table (name, shape vector, no quantization) and one
# extra operator table; measured by benchmarks/tflm_memory.py --calibrate (flatbuffer deltas).
FLATBUFFER_PER_TENSOR_BYTES = 64
FLATBUFFER_PER_OP_BYTES = 48


def _lut_choice(plan: TflPlan, compression) -> Dict[int, Tuple[int, Optional[int]]]:
    """tensor index -> (bits, values per channel) for the weight tensors `compression` names
    where per-channel LUT compression pays."""
    chosen: Dict[int, Tuple[int, Optional[int]]] = {}
    for node, spec in (compression or {}).items():
        if isinstance(spec, dict):
            bits, n_values = int(spec["bits"]), spec.get("values")
        else:
            bits, n_values = int(spec), None
        if not 1 <= bits <= LUT_MAX_BITS:
            raise EdgepruneError(f"compression of '{node}': index_bits must be 1..{LUT_MAX_BITS}, "
                                 f"got {bits}")
        op = plan.op_for_node(node)
        if op is None:
            raise EdgepruneError(f"compression names '{node}', which is not a layer of the model")
        wt = [i for i in op.inputs if i >= 0 and plan.tensors[i].role == "weights"]
        if not wt:
            raise EdgepruneError(f"compression names '{node}', which has no weights")
        t = plan.tensors[wt[0]]
        if lut_pays(t, bits, n_values):
            chosen[t.index] = (bits, n_values)
    return chosen


def compress_spec(tensor_bits: Dict[int, Tuple[int, int]]):
    """tflite-micro compression spec: per-channel LUT along the quantized axis (axis 0 for
    conv/FC weights, 3 for depthwise); per-tensor mode is never emitted (it decodes wrongly)."""
    from tflite_micro.tensorflow.lite.micro.compression import spec as cspec
    specs = []
    for idx, (bits, axis) in sorted(tensor_bits.items()):
        specs.append(cspec.Tensor(subgraph=0, tensor=idx, compression=[
            cspec.LookUpTableCompression(index_bitwidth=bits, mode=cspec.PerChannel(axis=axis))]))
    return specs


def compress_model(model_bytes: bytes, tensor_bits: Dict[int, Tuple[int, int]]) -> bytes:
    """Run tflite-micro's LUT compressor (per-channel only) and canonicalise the result."""
    import contextlib
    import io
    import warnings
    from tflite_micro.tensorflow.lite.micro.compression import compress
    with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        out = compress(model_bytes, compress_spec(tensor_bits))
    return canonicalize(bytes(out))


# --------------------------------------------------------------------------------------------
# Flash

def estimate_flash(graph, *, compression=None, plan: Optional[TflPlan] = None) -> dict:
    """Size of the exported .tflite: ``{total_bytes, layers: {node: bytes}, overhead_bytes,
    compressed: [node...]}``.

    ``compression``: {node_name: index_bits} or {node_name: {'bits': b, 'values': n}} (n = the
    largest number of distinct int8 values in one output channel; default 2**bits). Nodes
    where per-channel LUT compression would grow the file are left uncompressed.
    """
    plan = plan or lower(graph)
    chosen = _lut_choice(plan, compression)
    lut_values = {i: (nv or 2 ** b) for i, (b, nv) in chosen.items()}
    base = canonicalize(pack_aligned(plan_model_t(plan, lut_values)))
    if chosen:
        total = len(compress_model(base, {i: (b, plan.tensors[i].quant_axis)
                                          for i, (b, _) in chosen.items()}))
    else:
        total = len(base)
    layers: Dict[str, int] = {}
    for op in plan.ops:
        b = 0
        for i in op.inputs:
            if i < 0 or not plan.tensors[i].const:
                continue
            t = plan.tensors[i]
            if i in chosen:
                enc, anc = lut_sizes(t, *chosen[i])
                b += _align(enc) + _align(anc)
            else:
                b += _align(t.nbytes)
            b += t.quant_channels * (4 + 8)   # float32 scale + int64 zero point per channel
        layers[op.node] = layers.get(op.node, 0) + b
    return {"total_bytes": total, "layers": layers,
            "overhead_bytes": total - sum(layers.values()),
            "compressed": [plan.tensors[i].node for i in sorted(chosen)]}


def _align(n: int, a: int = ALIGN) -> int:
    return -(-n // a) * a


# --------------------------------------------------------------------------------------------
# Arena

# Persistent (tail) allocations of the TFLM Python runtime on a 64-bit host. All sizes were
# measured with benchmarks/tflm_memory.py --calibrate (RecordingMicroAllocator categories of
# synthetic single-op models; results in benchmarks/results/tflm_calibration.json); the struct
# names are those micro_allocator.cc / recording_micro_allocator.cc report.
PERSISTENT = {
    "eval_tensor": 24,            # TfLiteEvalTensor, one per tensor of the subgraph
    "node_and_registration": 64,  # NodeAndRegistration, one per operator
    "io_tensor": 64 + 32,         # persistent TfLiteTensor + its quantization, per model input/output
    "buffers_base": 16,           # the two persistent buffers every model had ('Persistent buffer data')
    "fixed": 488,                 # uncategorised tail: allocator objects, subgraph allocations
    "slack_base": 12,             # alignment padding between persistent buffers: base + per op
    "slack_per_op": 4,
}
# Per op: (kernel persistent buffer bytes independent of channels, bytes per output channel
# (int32 output multiplier + shift), builtin-data bytes (TfLite*Params, uncategorised tail)).
OP_PERSISTENT = {
    "CONV_2D": (80, 8, 28), "DEPTHWISE_CONV_2D": (80, 8, 28), "FULLY_CONNECTED": (72, 8, 32),
    "MAX_POOL_2D": (32, 0, 40), "AVERAGE_POOL_2D": (32, 0, 40), "RESHAPE": (0, 0, 40),
    "SOFTMAX": (80, 0, 4), "ADD": (60, 0, 8), "CONCATENATION": (80, 0, 8), "PAD": (56, 0, 0),
    "LOGISTIC": (16, 0, 0), "TANH": (16, 0, 0), "RELU": (16, 0, 0), "RELU6": (16, 0, 0),
    # DECODE: a DecodeStateLUT object (72 B) + 12 B alignment slack, measured on clustered
    # LeNet-5 exports (+8 B per decoded output for the DecodeState* array, decode.cc).
    "TRANSPOSE": (0, 0, 0), "DECODE": (84, 0, 0),
}


# Temporaries while the interpreter allocates (see estimate_arena). Struct sizes of the 64-bit
# host build; the two adjustments were fitted on synthetic MLPs (--calibrate cases mlp2, mlp8).
INIT_TEMP = {"tensor": 64, "quant": 24, "prepare_adjust": -48, "allocation_info": 32,
             "planner_per_buffer": 40, "planning_adjust": -16, "conv_extra": 304}


def _cmsis_scratch(plan: TflPlan, op: TflOp) -> int:
    """CMSIS-NN scratch (im2col) a kernel requests on a Cortex-M with DSP extension."""
    if op.opcode == "CONV_2D":
        w = plan.tensors[op.inputs[1]].shape
        k_h, k_w, c_in = w[1], w[2], w[3]
        if k_h == 1 and k_w == 1 and op.options["padding"] == "VALID":
            return 0   # arm_convolve_1x1_s8_fast needs no buffer
        # arm_convolve_s8_get_buffer_size (CMSIS-NN arm_convolve_s8.c, ARM_MATH_DSP branch of the
        # v4-v6 releases): 2 * ch_in * k_h * k_w * sizeof(int16). Newer releases size it
        # differently; not measured here (no Cortex-M TFLM build on this machine).
        return 2 * c_in * k_h * k_w * 2
    if op.opcode == "DEPTHWISE_CONV_2D":
        w = plan.tensors[op.inputs[1]].shape
        k_h, k_w, c = w[1], w[2], w[3]
        if k_h == 3 and k_w == 3:
            return 0   # arm_depthwise_conv_3x3_s8 needs no buffer
        # arm_depthwise_conv_s8_opt_get_buffer_size: ch * k_h * k_w * sizeof(int16)
        return c * k_h * k_w * 2
    return 0


def greedy_plan(buffers: Sequence[Tuple[int, int, int]]) -> Tuple[int, List[int]]:
    """TFLM GreedyMemoryPlanner over (size, first_used, last_used): (arena bytes, offsets)."""
    # CalculateOffsetsIfNeeded fills the online buffers from the tail of its sort array, then
    # bubble-sorts by size (stable): equal sizes end up in reverse index order.
    order = sorted(range(len(buffers)), key=lambda i: (-buffers[i][0], -i))
    placed: List[Tuple[int, int]] = []   # (offset, id) sorted by offset
    offsets = [0] * len(buffers)
    for bid in order:
        size, first, last = buffers[bid]
        cand = 0
        for off, other in placed:
            osz, ofirst, olast = buffers[other]
            if ofirst > last or first > olast:
                continue
            if off - cand >= size:
                break
            cand = max(cand, off + osz)
        offsets[bid] = cand
        placed.append((cand, bid))
        placed.sort(key=lambda p: p[0])
    total = max((offsets[i] + buffers[i][0] for i in range(len(buffers))), default=0)
    return total, offsets


def _compressed_plan(plan: TflPlan, chosen) -> List[TflOp]:
    """Op list with one DECODE op inserted before each consumer of compressed tensors
    (mirrors compression/decode_insert.py)."""
    ops: List[TflOp] = []
    for op in plan.ops:
        comp = [i for i in op.inputs if i in chosen]
        if comp:
            d = TflOp("DECODE", op.node, [], [], {}, [], {"decodes": comp})
            ops.append(d)
        ops.append(op)
    return ops


def estimate_arena(graph, *, compression=None, runtime: str = "tflm-reference",
                   alt_decompression: bool = False, plan: Optional[TflPlan] = None) -> dict:
    """Tensor arena the TFLM interpreter needs: ``{total_bytes, activations_bytes,
    scratch_bytes, persistent_bytes, decode_bytes, layers: {node: {...}}}``.

    ``runtime``: 'tflm-reference' (what the Python runtime runs; no scratch) or
    'tflm-cmsis-nn' (adds CMSIS-NN im2col scratch buffers). ``alt_decompression``: DECODE
    outputs go to a separate buffer (reported as decode_bytes, not in the arena).
    """
    plan = plan or lower(graph)
    chosen = _lut_choice(plan, compression)
    ops = _compressed_plan(plan, chosen)
    n_tensors = len(plan.tensors)
    # Buffers in TFLM's order: tensors by index (the canonical order: inputs, then each op's
    # outputs in op order, DECODE outputs included), then scratch requests in op order.
    # Lifetimes as micro_allocation_info.cc marks them: inputs from scope 0, op i at scope i+1,
    # outputs to the last scope.
    entries: List[list] = []           # [size, first, last, node, kind]
    by_tensor: Dict[int, list] = {}
    for t in plan.inputs:
        by_tensor[t] = [_align(plan.tensors[t].nbytes), 0, 0, plan.tensors[t].node, "act"]
        entries.append(by_tensor[t])
    scratch: List[list] = []
    step = 0
    for op in ops:
        step += 1
        if op.opcode == "DECODE":
            n_tensors += 2 * len(op.attrs["decodes"])   # ancillary + decoded output per input
            for i in op.attrs["decodes"]:
                # decoded copy, alive from this DECODE to its consumer, the next op
                entries.append([_align(plan.tensors[i].nbytes), step, step + 1, op.node, "decode"])
            continue
        for i in op.inputs:
            if i >= 0 and i in by_tensor:
                by_tensor[i][2] = step
        for o in op.outputs:
            by_tensor[o] = [_align(plan.tensors[o].nbytes), step, step, plan.tensors[o].node, "act"]
            entries.append(by_tensor[o])
        if runtime == "tflm-cmsis-nn":
            s = _cmsis_scratch(plan, op)
            if s:
                scratch.append([_align(s), step, step, op.node, "scratch"])
    for t in plan.outputs:
        by_tensor[t][2] = step
    decode_bytes = 0
    if alt_decompression:
        decode_bytes = max((e[0] for e in entries if e[4] == "decode"), default=0)
        entries = [e for e in entries if e[4] != "decode"]
    all_entries = entries + scratch
    buffers = [(e[0], e[1], e[2]) for e in all_entries]
    head, offsets = greedy_plan(buffers)
    head = _align(head)

    n_ops = len(ops)
    p = PERSISTENT
    n_io = len(set(plan.inputs + plan.outputs))
    persistent = (_align(p["eval_tensor"] * n_tensors, 8) + p["node_and_registration"] * n_ops
                  + p["io_tensor"] * n_io + p["buffers_base"] + p["fixed"] + p["slack_base"])
    layers: Dict[str, dict] = {}
    for op in ops:
        fixed, per_ch, builtin = OP_PERSISTENT.get(op.opcode, (0, 0, 0))
        pb = fixed + builtin
        if per_ch:
            ch = plan.tensors[op.inputs[1]].quant_channels
            pb += 2 * _align(per_ch // 2 * ch)     # two int32 arrays, each 16-byte aligned
        if fixed:
            pb += p["slack_per_op"]
        if op.opcode == "DECODE":
            pb += 8 * len(op.attrs["decodes"])    # DecodeState* per output (decode.cc)
        persistent += pb
        L = layers.setdefault(op.node, {"op": [], "activation_bytes": 0, "scratch_bytes": 0,
                                        "decode_bytes": 0, "persistent_bytes": 0})
        L["op"].append(op.opcode)
        L["persistent_bytes"] += pb
        if op.opcode != "DECODE":
            L["activation_bytes"] += sum(plan.tensors[o].nbytes for o in op.outputs)
    # Peak during AllocateTensors (measured minimum arenas exceed the final head + tail on
    # models with small activations and wide per-channel layers):
    # - each op's Prepare holds temp TfLiteTensors for its inputs/outputs (64 B each on a
    #   64-bit host, plus TfLiteAffineQuantization 24 B + int32 zero-point array 4 + 4C B)
    #   while the per-channel arrays of later ops are not yet allocated;
    # - planning holds an AllocationInfo (32 B) per tensor and 40 B of planner state per
    #   planned buffer (greedy_memory_planner.h per_buffer_size()).
    # Constants: benchmarks/tflm_memory.py --calibrate (cases mlp2, mlp8: minimum arena found
    # by bisection in child processes).
    later_arrays = [0] * (len(ops) + 1)
    for k in range(len(ops) - 1, -1, -1):
        op = ops[k]
        arr = 0
        if OP_PERSISTENT.get(op.opcode, (0, 0, 0))[1]:
            arr = 2 * _align(4 * plan.tensors[op.inputs[1]].quant_channels)
        later_arrays[k] = later_arrays[k + 1] + arr
    prepare_peak = 0
    for k, op in enumerate(ops):
        ids = op.attrs["decodes"] if op.opcode == "DECODE" else [i for i in op.inputs + op.outputs if i >= 0]
        temp = 0
        for i in ids:
            t = plan.tensors[i]
            temp += INIT_TEMP["tensor"] + (INIT_TEMP["quant"] + 4 + 4 * t.quant_channels
                                           if t.quant_channels else 0)
        if op.opcode in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            # conv Prepare holds more temporaries than its four tensors (fitted on the
            # conv_c*/dwconv_c* calibration cases: 304 B + 4 B per output channel)
            temp += INIT_TEMP["conv_extra"] + 4 * plan.tensors[op.inputs[1]].quant_channels
        prepare_peak = max(prepare_peak, persistent - later_arrays[k + 1] + temp
                           + INIT_TEMP["prepare_adjust"])
    n_planned = len(all_entries)
    planning_peak = (persistent + INIT_TEMP["allocation_info"] * n_tensors
                     + INIT_TEMP["planner_per_buffer"] * n_planned + INIT_TEMP["planning_adjust"])
    init_peak = _align(max(prepare_peak, planning_peak))
    for e in all_entries:
        if e[4] in ("scratch", "decode"):
            layers[e[3]][e[4] + "_bytes"] += e[0]
    # Peak bytes attributable to scratch and to decoded weights: re-plan without them.
    head_no_scratch = _align(greedy_plan([(e[0], e[1], e[2]) for e in entries])[0]) if scratch else head
    acts = [(e[0], e[1], e[2]) for e in entries if e[4] == "act"]
    head_no_decode = _align(greedy_plan(acts)[0]) if len(acts) != len(entries) else head_no_scratch
    return {"total_bytes": max(head + persistent, init_peak),
            "init_peak_bytes": init_peak,
            "activations_bytes": head_no_decode,
            "decode_bytes": (head_no_scratch - head_no_decode) if not alt_decompression else decode_bytes,
            "scratch_bytes": head - head_no_scratch,
            "persistent_bytes": persistent,
            "head_bytes": head,
            "runtime": runtime,
            "layers": layers}
