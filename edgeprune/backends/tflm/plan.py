"""The TFLite op plan of a layer graph: what the TFLite-Micro export will contain, op by op.

``lower(graph)`` maps the float torch graph to the int8 TFLite op list the exporter emits
(``edgeprune.export.tflm`` builds its Keras mirror from the *same* plan, and the flash and arena
models in ``memory.py`` cost it, so the three cannot drift):

- BatchNorm folds into the conv/linear before it; dropout and identity vanish;
- ReLU/ReLU6 fuse into the conv/linear/add/pool before them (else a RELU/RELU6 op);
- ZeroPad2d folds into the next conv when the pair equals TFLite ``SAME`` padding, else a PAD op;
- flatten becomes RESHAPE (the Dense weights after it are permuted so no TRANSPOSE is needed);
- adaptive 1x1 pooling becomes AVERAGE_POOL_2D over the whole map; softmax becomes SOFTMAX.

One handler per op kind (``_Lowering.<kind>``); ``SUPPORT`` says what each kind becomes, and the
handler table is built from it, so ``edgeprune ops`` prints what the code does.
Import-light: no torch, no tensorflow.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

from ...layergraph import LayerGraph, LayerNode, OpKind, UnsupportedOpError
from ..support import Support, fused, native, noop


class TflmUnsupportedError(UnsupportedOpError):
    """A layer the TFLite-Micro export cannot express; the message names the op and the layer."""


@dataclass
class TflTensor:
    index: int
    shape: Tuple[int, ...]
    dtype: str                   # 'int8' | 'int32' | 'uint8' | 'int4' (packed weights)
    role: str                    # input | act | weights | bias | shape | paddings | output
    node: str                    # graph node the tensor belongs to
    quant_channels: int = 0      # number of (scale, zero point) pairs; 0 = no quantization
    quant_axis: int = 0

    @property
    def nbytes(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        if self.dtype == "int4":          # TFLite int4: two values per byte
            return -(-n // 2)
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
WEIGHTED_OPCODES = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")

# What each op kind becomes in the plan (the handler of kind K is `_Lowering.<k>`).
SUPPORT: Dict[OpKind, Support] = {
    OpKind.INPUT: native("int8 input tensor (NHWC)"),
    OpKind.OUTPUT: native("int8 output tensor"),
    OpKind.CONV2D: native("CONV_2D (+ PAD when the padding is not SAME/VALID); groups > 1 refused"),
    OpKind.DWCONV2D: native("DEPTHWISE_CONV_2D"),
    OpKind.LINEAR: native("FULLY_CONNECTED (weights permuted to NHWC after a flatten)"),
    OpKind.BATCHNORM: fused("folded into the conv/linear before it"),
    OpKind.RELU: fused("fused into the op before it, else RELU"),
    OpKind.RELU6: fused("fused into the op before it, else RELU6"),
    OpKind.SIGMOID: native("LOGISTIC"),
    OpKind.TANH: native("TANH"),
    OpKind.MAXPOOL2D: native("MAX_POOL_2D (padding 0 only)"),
    OpKind.AVGPOOL2D: native("AVERAGE_POOL_2D (padding 0 only)"),
    OpKind.GAP: native("AVERAGE_POOL_2D over the whole map"),
    OpKind.PAD: fused("folded into the next conv's SAME padding, else PAD"),
    OpKind.DROPOUT: noop(),
    OpKind.IDENTITY: noop(),
    OpKind.SOFTMAX: native("SOFTMAX (over features)"),
    OpKind.FLATTEN: native("RESHAPE, or nothing before a FULLY_CONNECTED on a 1x1 map"),
    OpKind.ADD: native("ADD"),
    OpKind.CONCAT: native("CONCATENATION"),
}


def same_padding(in_size: int, k: int, s: int, d: int = 1) -> Tuple[int, int, int]:
    """TFLite/Keras SAME padding: (out, before, after) (tensorflow/lite/kernels/padding.h)."""
    eff = (k - 1) * d + 1
    out = -(-in_size // s)
    total = max((out - 1) * s + eff - in_size, 0)
    return out, total // 2, total - total // 2


def conv_padding_mode(in_hw, k, s, d, pads) -> str:
    """'same' or 'valid' if the explicit torch pads (top, bottom, left, right) equal one of
    them, else 'explicit'. Torch pads are symmetric per dim unless a ZeroPad2d was folded."""
    top, bottom, left, right = pads
    if top == bottom == left == right == 0:
        return "valid"
    same = True
    for size, kk, ss, dd, before, after in ((in_hw[0], k[0], s[0], d[0], top, bottom),
                                            (in_hw[1], k[1], s[1], d[1], left, right)):
        out, b, _ = same_padding(size, kk, ss, dd)
        torch_out = (size + before + after - ((kk - 1) * dd + 1)) // ss + 1
        if b != before or out != torch_out:
            same = False
    return "same" if same else "explicit"


def act_shape(shape) -> Tuple[int, ...]:
    """NHWC shape (batch 1) of an activation of torch shape (C, H, W) or (F,)."""
    if len(shape) == 3:
        c, h, w = shape
        return (1, h, w, c)
    return (1,) + tuple(shape)


def outputs_of(graph: LayerGraph) -> List[str]:
    return list(graph.output_node.inputs)


def _feeds_linear(graph: LayerGraph, name: str) -> bool:
    """A Linear whose only consumer is another Linear (nothing non-linear between): the
    converter folds its bias into the next layer's (W2 (W1 x + b1) + b2), so it has none.
    Measured: benchmarks/tflm_memory.py --calibrate, case linear_linear."""
    cons = graph.consumers(name)
    while len(cons) == 1 and cons[0].op in (OpKind.DROPOUT, OpKind.IDENTITY):
        cons = graph.consumers(cons[0].name)
    return (len(cons) == 1 and cons[0].op == OpKind.LINEAR
            and name not in outputs_of(graph))


def _bn_after(graph: LayerGraph, name: str) -> bool:
    cons = graph.consumers(name)
    return len(cons) == 1 and cons[0].op == OpKind.BATCHNORM


# Ops whose fused_activation field can absorb a following ReLU/ReLU6.
_FUSES_ACTIVATION = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "ADD", "MAX_POOL_2D",
                     "AVERAGE_POOL_2D")


class _Lowering:
    """The state of one lowering: tensors and ops so far, and where each node's value lives."""

    def __init__(self, graph: LayerGraph):
        self.graph = graph
        self.tensors: List[TflTensor] = []
        self.ops: List[TflOp] = []
        self.node_tensor: Dict[str, int] = {}
        self.layout: Dict[str, str] = {}                 # node -> 'nhwc' | 'flat'
        self.producer_op: Dict[int, TflOp] = {}          # tensor -> op that writes it
        # pad node -> (its source node, pads (top, bottom, left, right)): a ZeroPad2d is folded
        # into the conv that reads it; its value stays unpadded until then.
        self.pending_pad: Dict[str, Tuple[str, Tuple[int, int, int, int]]] = {}
        self.flatten_src: Dict[str, Tuple[int, int, int]] = {}   # flatten node -> (C, H, W)
        self.shared: Dict[tuple, int] = {}
        self.inputs: List[int] = []
        self.outputs: List[int] = []

    # ---------------------------------------------------------------- building blocks
    def new_tensor(self, shape, dtype, role, node, qc=1, axis=0) -> int:
        self.tensors.append(TflTensor(len(self.tensors), tuple(int(d) for d in shape), dtype,
                                      role, node, qc, axis))
        return len(self.tensors) - 1

    def shared_const(self, key, shape, role, node) -> int:
        """int32 shape/paddings constants: the converter keeps one tensor per distinct value
        (resnet8's two PADs share one paddings tensor)."""
        if key not in self.shared:
            self.shared[key] = self.new_tensor(shape, "int32", role, node, qc=0)
        return self.shared[key]

    def emit(self, opcode, node, ins, out_shape, options=None, attrs=None) -> int:
        shape = act_shape(out_shape) if len(out_shape) != 4 else out_shape
        out = self.new_tensor(shape, "int8", "act", node)
        op = TflOp(opcode, node, list(ins), [out], dict(options or {}), [], dict(attrs or {}))
        self.ops.append(op)
        self.producer_op[out] = op
        return out

    def fusable(self, tid: int) -> Optional[TflOp]:
        op = self.producer_op.get(tid)
        if op is None or op.opcode not in _FUSES_ACTIVATION:
            return None
        if op.options.get("fused_activation", "NONE") != "NONE":
            return None
        return op

    def value(self, name: str) -> int:
        """The tensor holding node `name`'s value, materialising a pending (unfolded) pad."""
        if name in self.pending_pad:
            self.pending_pad.pop(name)
            self._emit_pad(name)
        return self.node_tensor[name]

    def _emit_pad(self, name: str) -> None:
        src, pads = self._pad_chain(name)
        c, h, w = self.graph[src].out_shape
        pt = self.shared_const(("paddings", tuple(pads)), (4, 2), "paddings", name)
        padded = (c, h + pads[0] + pads[1], w + pads[2] + pads[3])
        self.node_tensor[name] = self.emit("PAD", name, [self.node_tensor[src], pt], padded,
                                           attrs={"pads": tuple(pads)})

    def _pad_chain(self, name: str) -> Tuple[str, Tuple[int, int, int, int]]:
        n = self.graph[name]
        left, right, top, bottom = tuple(n.attrs.get("padding", (0, 0, 0, 0)))
        return n.inputs[0], (top, bottom, left, right)

    @staticmethod
    def where(n: LayerNode) -> str:
        return f"layer '{n.name}'" + (f" ({n.target})" if n.target else "")

    def alias(self, n: LayerNode, src: str) -> None:
        """`n` computes nothing: its value is `src`'s."""
        self.node_tensor[n.name] = self.node_tensor[src]
        self.layout[n.name] = self.layout[src]
        if src in self.pending_pad:
            self.pending_pad[n.name] = self.pending_pad[src]

    # ---------------------------------------------------------------- one handler per op kind
    def input(self, n: LayerNode) -> None:
        t = self.new_tensor(act_shape(n.out_shape), "int8", "input", n.name)
        self.inputs.append(t)
        self.node_tensor[n.name] = t
        self.layout[n.name] = "nhwc" if len(n.out_shape) == 3 else "flat"

    def output(self, n: LayerNode) -> None:
        src = self.value(n.inputs[0])
        self.outputs.append(src)
        t = self.tensors[src]
        t.role = "output" if t.role == "act" else t.role

    def dropout(self, n: LayerNode) -> None:
        self.alias(n, n.inputs[0])

    identity = dropout

    def pad(self, n: LayerNode) -> None:
        src = n.inputs[0]
        pads = tuple(n.attrs.get("padding", (0, 0, 0, 0)))
        if len(pads) != 4 or self.layout[src] != "nhwc":
            raise TflmUnsupportedError(f"{self.where(n)}: PAD of a non-image tensor is not "
                                       f"supported")
        self.value(src)      # a pad of a pad: the inner one is materialised
        left, right, top, bottom = pads
        self.pending_pad[n.name] = (src, (top, bottom, left, right))
        # Whether it folds into the next conv is decided there; the value stays unpadded.
        self.node_tensor[n.name] = self.node_tensor[src]
        self.layout[n.name] = "nhwc"

    def conv2d(self, n: LayerNode) -> None:
        g = self.graph
        kind = n.op
        src_name = n.inputs[0]
        if n.attrs.get("groups", 1) != 1 and kind == OpKind.CONV2D:
            raise TflmUnsupportedError(
                f"{self.where(n)}: grouped CONV_2D (groups={n.attrs['groups']}) has no TFLM kernel")
        if isinstance(n.attrs.get("padding"), str):
            raise TflmUnsupportedError(f"{self.where(n)}: string padding '{n.attrs['padding']}' "
                                       f"is not supported; use explicit integers")
        k = tuple(n.attrs["kernel_size"])
        s = tuple(n.attrs["stride"])
        d = tuple(n.attrs.get("dilation", (1, 1)))
        ph, pw = n.attrs.get("padding", (0, 0))
        pads = [ph, ph, pw, pw]
        folded = []
        in_name = src_name
        if src_name in self.pending_pad and len(g.consumers(src_name)) == 1:
            psrc, pp = self.pending_pad.pop(src_name)
            pads = [a + b for a, b in zip(pads, pp)]
            folded.append(src_name)
            in_name = psrc
        c_in, h, w = g[in_name].out_shape
        x = self.value(in_name)
        mode = conv_padding_mode((h, w), k, s, d, pads)
        if mode == "explicit":
            pt = self.shared_const(("paddings", tuple(pads)), (4, 2), "paddings", n.name)
            padded = (c_in, h + pads[0] + pads[1], w + pads[2] + pads[3])
            x = self.emit("PAD", n.name, [x, pt], padded, attrs={"pads": tuple(pads)})
            mode = "valid"
        c_out = n.out_shape[0]
        if kind == OpKind.CONV2D:
            wt = self.new_tensor((c_out, k[0], k[1], c_in), "int8", "weights", n.name, c_out, 0)
            opcode = "CONV_2D"
        else:
            wt = self.new_tensor((1, k[0], k[1], c_out), "int8", "weights", n.name, c_out, 3)
            opcode = "DEPTHWISE_CONV_2D"
        bt = self.new_tensor((c_out,), "int32", "bias", n.name, c_out, 0)
        out = self.emit(opcode, n.name, [x, wt, bt], n.out_shape,
                        {"padding": mode.upper(), "stride": s, "dilation": d,
                         "fused_activation": "NONE"},
                        {"pads": tuple(pads), "padding": mode})
        self.producer_op[out].folded = folded
        self.node_tensor[n.name] = out
        self.layout[n.name] = "nhwc"

    dwconv2d = conv2d

    def linear(self, n: LayerNode) -> None:
        src_name = n.inputs[0]
        x = self.value(src_name)
        c_out, c_in = n.weight_shape
        attrs: Dict[str, object] = {}
        if src_name in self.flatten_src:
            attrs["permute_from_chw"] = self.flatten_src[src_name]
        elif self.layout[src_name] != "flat":
            raise TflmUnsupportedError(f"{self.where(n)}: Linear on a 4-D tensor is not supported")
        wt = self.new_tensor((c_out, c_in), "int8", "weights", n.name, c_out, 0)
        has_bias = ((n.has_bias or _bn_after(self.graph, n.name))
                    and not _feeds_linear(self.graph, n.name))
        ins = [x, wt]
        if has_bias:
            ins.append(self.new_tensor((c_out,), "int32", "bias", n.name, c_out, 0))
        else:
            ins.append(-1)
        attrs["has_bias"] = has_bias
        out = self.emit("FULLY_CONNECTED", n.name, ins, n.out_shape, {"fused_activation": "NONE"},
                        attrs)
        self.node_tensor[n.name] = out
        self.layout[n.name] = "flat"

    def batchnorm(self, n: LayerNode) -> None:
        src_name = n.inputs[0]
        prod = self.graph[src_name]
        t = self.node_tensor[src_name]
        op = self.producer_op.get(t)
        if (not prod.op.is_compute or len(self.graph.consumers(src_name)) != 1
                or op is None or op.node != src_name):
            raise TflmUnsupportedError(
                f"{self.where(n)}: BatchNorm must directly follow a conv or linear layer to be "
                f"folded (TFLM has no standalone batch-norm op)")
        op.folded.append(n.name)
        op.attrs["bn"] = n.target
        self.node_tensor[n.name] = t
        self.layout[n.name] = self.layout[src_name]

    def relu(self, n: LayerNode) -> None:
        src_name = n.inputs[0]
        t = self.value(src_name)
        op = self.fusable(t)
        if (op is not None and len(self.graph.consumers(src_name)) == 1
                and src_name not in outputs_of(self.graph)):
            op.options["fused_activation"] = n.op.upper()
            op.folded.append(n.name)
            self.node_tensor[n.name] = t
        else:
            self.node_tensor[n.name] = self.emit(n.op.upper(), n.name, [t], n.out_shape)
        self.layout[n.name] = self.layout[src_name]

    relu6 = relu

    def sigmoid(self, n: LayerNode) -> None:
        opcode = "LOGISTIC" if n.op == OpKind.SIGMOID else "TANH"
        self.node_tensor[n.name] = self.emit(opcode, n.name, [self.value(n.inputs[0])],
                                             n.out_shape)
        self.layout[n.name] = self.layout[n.inputs[0]]

    tanh = sigmoid

    def maxpool2d(self, n: LayerNode) -> None:
        c, h, w = n.in_shape
        if n.op == OpKind.GAP:
            k, s = (h, w), (1, 1)
        else:
            k, s = tuple(n.attrs["kernel_size"]), tuple(n.attrs["stride"])
            if tuple(n.attrs.get("padding", (0, 0))) != (0, 0):
                raise TflmUnsupportedError(
                    f"{self.where(n)}: padded {n.op} is not supported (only padding=0)")
        opcode = "MAX_POOL_2D" if n.op == OpKind.MAXPOOL2D else "AVERAGE_POOL_2D"
        self.node_tensor[n.name] = self.emit(opcode, n.name, [self.value(n.inputs[0])],
                                             n.out_shape,
                                             {"filter": k, "stride": s, "padding": "VALID"})
        self.layout[n.name] = "nhwc"

    avgpool2d = gap = maxpool2d

    def flatten(self, n: LayerNode) -> None:
        src_name = n.inputs[0]
        if self.layout[src_name] == "flat":
            self.alias(n, src_name)
            return
        c, h, w = self.graph[src_name].out_shape
        cons = self.graph.consumers(n.name)
        if h * w == 1 and cons and all(x.op == OpKind.LINEAR for x in cons):
            # FULLY_CONNECTED flattens a 1x1xC input itself; the converter drops the
            # RESHAPE (measured on the zoo's GAP -> flatten -> Linear heads).
            self.node_tensor[n.name] = self.value(src_name)
            self.layout[n.name] = "flat"
            return
        if c > 1 and h * w > 1 and not all(x.op == OpKind.LINEAR for x in cons):
            raise TflmUnsupportedError(
                f"{self.where(n)}: flatten of a {c}x{h}x{w} map feeds a non-Linear layer; the "
                f"NHWC export would reorder its features (only flatten -> Linear is supported)")
        st = self.shared_const(("shape", tuple(n.out_shape)), (2,), "shape", n.name)
        self.node_tensor[n.name] = self.emit("RESHAPE", n.name, [self.value(src_name), st],
                                             n.out_shape)
        if c > 1 and h * w > 1:
            self.flatten_src[n.name] = (c, h, w)
        self.layout[n.name] = "flat"

    def softmax(self, n: LayerNode) -> None:
        src_name = n.inputs[0]
        if self.layout[src_name] != "flat":
            raise TflmUnsupportedError(f"{self.where(n)}: softmax over an image tensor is not "
                                       f"supported")
        self.node_tensor[n.name] = self.emit("SOFTMAX", n.name, [self.value(src_name)],
                                             n.out_shape, {"beta": 1.0})
        self.layout[n.name] = "flat"

    def add(self, n: LayerNode) -> None:
        a, b = (self.value(i) for i in n.inputs)
        self.node_tensor[n.name] = self.emit("ADD", n.name, [a, b], n.out_shape,
                                             {"fused_activation": "NONE"})
        self.layout[n.name] = self.layout[n.inputs[0]]

    def concat(self, n: LayerNode) -> None:
        ins = [self.value(i) for i in n.inputs]
        axis = 3 if self.layout[n.inputs[0]] == "nhwc" else 1
        self.node_tensor[n.name] = self.emit("CONCATENATION", n.name, ins, n.out_shape,
                                             {"axis": axis})
        self.layout[n.name] = self.layout[n.inputs[0]]


def lower(graph: LayerGraph) -> TflPlan:
    """The TFLite op plan of `graph` (an edgeprune LayerGraph of the float model)."""
    graph = graph.without_noops()
    lw = _Lowering(graph)
    for n in graph.nodes:
        if not SUPPORT[n.op].supported:
            raise TflmUnsupportedError(f"{_Lowering.where(n)}: op '{n.op}' has no TFLite-Micro "
                                       f"kernel ({SUPPORT[n.op].note})")
        getattr(lw, n.op.value)(n)
    for op in lw.ops:
        if op.opcode not in TFLM_OPS:  # pragma: no cover - lowering only emits TFLM_OPS
            raise TflmUnsupportedError(f"layer '{op.node}': op {op.opcode} has no TFLM kernel")
    return TflPlan(lw.tensors, lw.ops, lw.inputs, lw.outputs, lw.node_tensor)
