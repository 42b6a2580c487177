"""Lowering of an int8 TFLite graph to the C runtime's program: one kernel call per step, every
activation a buffer of the arena, every weighted layer's parameters (weights, folded bias,
requantization multipliers) ready for encoding.

What the lowering does beyond a one-to-one translation:
- RESHAPE is free: its output is the same buffer as its input.
- A PAD whose only consumer is a convolution or depthwise convolution is folded into that
  layer's padding (TFLite pads with the output zero point, which is what the kernels put in
  padded window positions): the padded tensor never exists.
- The input zero point is folded into the bias (bias - zp * sum(w)), so kernels multiply raw
  int8 inputs.
- For each step, how its output may overlay an input that dies there (``Overlap``), from the
  kernel's access order: the planner uses it to place outputs over inputs.

Anything without a kernel is refused, naming the op and the layer.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import numpy as np

from . import quant
from .ir import CModelError, Graph, Op, Tensor

SUPPORTED_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "MAX_POOL_2D",
                 "AVERAGE_POOL_2D", "ADD", "PAD", "CONCATENATION", "SOFTMAX", "RESHAPE",
                 "RELU", "RELU6")
ALIGN = 4


def align(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


@dataclass
class Buffer:
    name: str
    size: int                     # bytes
    role: str                     # input | output | act | scratch
    first: int = -1               # step that writes it (-1: alive before the first step)
    last: int = -1                # last step that reads it (n_steps: alive after the last)
    offset: int = -1              # arena offset, set by the planner


@dataclass
class Overlap:
    """The output of a step may overlay input buffer `input` (when that input dies at the step)
    if out_off - in_off <= limit ('forward' kernels) or >= limit ('backward' kernels)."""
    input: str
    direction: str
    limit: int


@dataclass
class Weighted:
    """A weighted layer's int8 parameters: w is [rows, K] (conv: OHWI flattened per output
    channel; fully connected: [out, in]; depthwise: [taps, out_c], rows = taps)."""
    w: np.ndarray
    bias: np.ndarray              # int64: bias - in_zp * sum(w) per output channel
    mult: np.ndarray              # int64
    shift: np.ndarray             # int64
    in_zp: int
    out_zp: int
    act_min: int
    act_max: int


@dataclass
class Step:
    index: int
    kind: str                     # conv | dwconv | fc | maxpool | avgpool | add | pad | concat | softmax | relu
    layer: str
    opcode: str
    inputs: List[str]
    output: str
    params: Dict[str, object] = field(default_factory=dict)
    weighted: Optional[Weighted] = None
    macs: int = 0
    overlaps: List[Overlap] = field(default_factory=list)
    scratch: Optional[str] = None
    folded: List[str] = field(default_factory=list)   # layers merged into this step


@dataclass
class Program:
    steps: List[Step]
    buffers: Dict[str, Buffer]
    input: str
    output: str
    input_shape: Tuple[int, ...]
    output_shape: Tuple[int, ...]
    input_scale: float
    input_zero_point: int
    output_scale: float
    output_zero_point: int
    rounding: str = "tflm"


def _where(op: Op) -> str:
    return f"op {op.opcode} (layer '{op.layer}')"


def check_supported(opcodes_and_layers) -> None:
    """Refuse early (before any conversion) an op the C runtime has no kernel for."""
    for opcode, layer in opcodes_and_layers:
        if opcode not in SUPPORTED_OPS:
            raise CModelError(f"op {opcode} (layer '{layer}') is not supported by the C runtime "
                              f"(supported: {', '.join(SUPPORTED_OPS)})")


def _compute_padding(stride: int, dilation: int, in_size: int, k: int, out_size: int) -> int:
    """tensorflow/lite/kernels/padding.h ComputePadding (C++ division truncates; clamped at 0)."""
    eff = (k - 1) * dilation + 1
    total = (out_size - 1) * stride + eff - in_size
    return max(int(total / 2) if total >= 0 else 0, 0)


def _nhwc(t: Tensor, op: Op) -> Tuple[int, int, int]:
    if len(t.shape) != 4 or t.shape[0] != 1:
        raise CModelError(f"{_where(op)}: expected a 1 x H x W x C tensor, got {list(t.shape)}")
    return t.shape[1], t.shape[2], t.shape[3]


def _act_range(op: Op, out: Tensor) -> Tuple[int, int]:
    act = op.options.get("activation", "NONE")
    if act not in ("NONE", "RELU", "RELU6", "RELU_N1_TO_1"):
        raise CModelError(f"{_where(op)}: fused activation {act} is not supported")
    return quant.activation_range(act, out.s, out.zp)


def _int8(t: Tensor, op: Op, what: str) -> None:
    if t.dtype != "int8":
        raise CModelError(f"{_where(op)}: {what} is {t.dtype}; the C runtime is int8 only")


def _window_reads(in_h, in_w, in_c, out_h, out_w, g) -> np.ndarray:
    """For each output pixel (raster order), the index of the first input byte its clipped
    window reads (clipped into the tensor when the window lies wholly in the padding, which
    only makes the bound stricter)."""
    oy = np.arange(out_h)[:, None]
    ox = np.arange(out_w)[None, :]
    y0 = oy * g["stride_h"] - g["pad_top"]
    x0 = ox * g["stride_w"] - g["pad_left"]
    dh, dw = g["dil_h"], g["dil_w"]
    ky0 = np.where(y0 < 0, (-y0 + dh - 1) // dh, 0)      # first tap inside the tensor
    kx0 = np.where(x0 < 0, (-x0 + dw - 1) // dw, 0)
    iy = np.clip(y0 + ky0 * dh, 0, in_h - 1)
    ix = np.clip(x0 + kx0 * dw, 0, in_w - 1)
    return ((iy * in_w + ix) * in_c).reshape(-1).astype(np.int64)


def _forward_limit_windowed(in_shape, out_shape, g) -> int:
    """Largest out_off - in_off for which a sliding-window kernel never overwrites input it
    still has to read. The kernels write output pixels in raster order, a pixel's out_c bytes
    after (or while) reading its window, and read nothing of earlier windows afterwards (the
    DSP convolution reads the windows of pixels p and p+1 before writing p). So for every p:
    out_off + (p + 1) * out_c <= in_off + min(first read of pixels p, p+1, ...)."""
    in_h, in_w, in_c = in_shape
    out_h, out_w, out_c = out_shape
    first = _window_reads(in_h, in_w, in_c, out_h, out_w, g)
    pending = np.minimum.accumulate(first[::-1])[::-1]
    ends = (np.arange(out_h * out_w, dtype=np.int64) + 1) * out_c
    return int(np.min(pending - ends))


def _backward_limit_pad(in_dims, before, out_dims) -> int:
    """Smallest out_off - in_off for ep_pad (writes output elements from last to first; the
    element written at o must not overwrite input still to be read by outputs below o)."""
    idx = np.indices(out_dims).reshape(4, -1)
    src = idx - np.array(before)[:, None]
    inside = np.all((src >= 0) & (src < np.array(in_dims)[:, None]), axis=0)
    flat_in = np.ravel_multi_index(np.where(inside, src, 0), in_dims)
    p = np.where(inside, flat_in, -1)
    # largest input index read by outputs strictly below o
    pmax_before = np.concatenate([[-1], np.maximum.accumulate(p)[:-1]])
    o = np.arange(len(p))
    return int(np.max(pmax_before - o)) + 1


def lower(graph: Graph, rounding: str = "tflm") -> Program:
    """rounding: the runtime whose requantization rounding to reproduce, 'tflm' (TFLM and
    CMSIS-NN) or 'litert' (quant.ROUNDINGS)."""
    if rounding not in quant.ROUNDINGS:
        raise CModelError(f"rounding must be one of {', '.join(quant.ROUNDINGS)}, not '{rounding}'")
    tensors = graph.tensors
    if len(graph.inputs) != 1 or len(graph.outputs) != 1:
        raise CModelError("the C runtime takes models with one input and one output")
    check_supported((op.opcode, op.layer) for op in graph.ops)
    tin, tout = tensors[graph.inputs[0]], tensors[graph.outputs[0]]
    for t, what in ((tin, "input"), (tout, "output")):
        if t.dtype != "int8":
            raise CModelError(f"the model {what} is {t.dtype}; the C runtime is int8 only")

    buffers: Dict[str, Buffer] = {}
    tensor_buf: Dict[int, str] = {}

    def buf_for(t: int, role: str = "act") -> str:
        if t not in tensor_buf:
            name = f"t{t}"
            buffers[name] = Buffer(name, tensors[t].nbytes, role)
            tensor_buf[t] = name
        return tensor_buf[t]

    buf_for(graph.inputs[0], "input")
    steps: List[Step] = []
    folded_pads: Dict[int, Tuple[int, Tuple[int, int, int, int], str]] = {}  # padded tensor -> (src, (top, bottom, left, right), layer)

    for op in graph.ops:
        ins = [tensors[i] if i >= 0 else None for i in op.inputs]
        out = tensors[op.outputs[0]]
        if op.opcode == "RESHAPE":
            src = op.inputs[0]
            if src in folded_pads:
                raise CModelError(f"{_where(op)}: RESHAPE of a padded tensor is not supported")
            tensor_buf[op.outputs[0]] = buf_for(src)
            continue
        if op.opcode == "PAD":
            pads = ins[1].data if ins[1] is not None else None
            if pads is None or pads.shape != (4, 2):
                raise CModelError(f"{_where(op)}: PAD needs constant 4 x 2 paddings")
            if len(op.inputs) > 2 and op.inputs[2] >= 0:
                raise CModelError(f"{_where(op)}: PAD with a constant value is not supported")
            _int8(ins[0], op, "the input")
            cons = graph.consumers(op.outputs[0])
            foldable = (len(cons) == 1 and cons[0].opcode in ("CONV_2D", "DEPTHWISE_CONV_2D")
                        and cons[0].inputs[0] == op.outputs[0]
                        and op.outputs[0] not in graph.outputs
                        and pads[0].tolist() == [0, 0] and pads[3].tolist() == [0, 0]
                        and (pads >= 0).all() and ins[0].zp == out.zp and ins[0].s == out.s)
            if foldable:
                folded_pads[op.outputs[0]] = (op.inputs[0], (int(pads[1][0]), int(pads[1][1]),
                                                             int(pads[2][0]), int(pads[2][1])), op.layer)
                continue
            if (pads < 0).any():
                raise CModelError(f"{_where(op)}: negative padding is not supported")
            if ins[0].zp != out.zp or ins[0].s != out.s:
                raise CModelError(f"{_where(op)}: PAD input and output quantization differ")
            in_dims = tuple(ins[0].shape) if len(ins[0].shape) == 4 else (1,) * (4 - len(ins[0].shape)) + tuple(ins[0].shape)
            pads4 = np.vstack([np.zeros((4 - len(pads), 2), dtype=np.int64), pads]) if len(pads) < 4 else pads
            before = tuple(int(x) for x in pads4[:, 0])
            out_dims = tuple(int(a + b + c) for a, (b, c) in zip(in_dims, pads4))
            st = Step(len(steps), "pad", op.layer, op.opcode, [buf_for(op.inputs[0])],
                      buf_for(op.outputs[0]),
                      {"in_dims": in_dims, "before": before, "out_dims": out_dims,
                       "value": out.zp})
            st.overlaps.append(Overlap(st.inputs[0], "backward",
                                       _backward_limit_pad(in_dims, before, out_dims)))
            steps.append(st)
            continue
        if op.opcode in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            steps.append(_lower_conv(op, graph, folded_pads, buf_for, len(steps)))
            continue
        if op.opcode == "FULLY_CONNECTED":
            steps.append(_lower_fc(op, graph, buf_for, len(steps)))
            continue
        if op.opcode in ("MAX_POOL_2D", "AVERAGE_POOL_2D"):
            x = ins[0]
            _int8(x, op, "the input")
            if x.zp != out.zp or x.s != out.s:
                raise CModelError(f"{_where(op)}: pooling input and output quantization differ")
            in_h, in_w, c = _nhwc(x, op)
            out_h, out_w, _ = _nhwc(out, op)
            kh, kw = op.options["filter_h"], op.options["filter_w"]
            sh, sw = op.options["stride_h"], op.options["stride_w"]
            if op.options["padding"] == "SAME":
                pt, pl = _compute_padding(sh, 1, in_h, kh, out_h), _compute_padding(sw, 1, in_w, kw, out_w)
            else:
                pt = pl = 0
            g = {"in_h": in_h, "in_w": in_w, "in_c": c, "out_h": out_h, "out_w": out_w, "out_c": c,
                 "k_h": kh, "k_w": kw, "stride_h": sh, "stride_w": sw, "dil_h": 1, "dil_w": 1,
                 "pad_top": pt, "pad_left": pl}
            lo, hi = _act_range(op, out)
            kind = "maxpool" if op.opcode == "MAX_POOL_2D" else "avgpool"
            st = Step(len(steps), kind, op.layer, op.opcode, [buf_for(op.inputs[0])],
                      buf_for(op.outputs[0]), {"g": g, "act_min": lo, "act_max": hi},
                      macs=out_h * out_w * c * kh * kw)
            st.overlaps.append(Overlap(st.inputs[0], "forward",
                                       _forward_limit_windowed((in_h, in_w, c), (out_h, out_w, c), g)))
            steps.append(st)
            continue
        if op.opcode == "ADD":
            a, b = ins
            for t, w in ((a, "input 1"), (b, "input 2"), (out, "the output")):
                _int8(t, op, w)
            if a.shape != b.shape or a.size != out.size:
                raise CModelError(f"{_where(op)}: ADD with broadcasting ({list(a.shape)} + "
                                  f"{list(b.shape)}) is not supported")
            p = quant.add_params(a.s, b.s, out.s)
            lo, hi = _act_range(op, out)
            params = {"in1_offset": -a.zp, "in2_offset": -b.zp, "left_shift": p["left_shift"],
                      "in1_mult": p["in1_mult"], "in1_shift": p["in1_shift"],
                      "in2_mult": p["in2_mult"], "in2_shift": p["in2_shift"],
                      "out_mult": p["out_mult"], "out_shift": p["out_shift"],
                      "out_zp": out.zp, "act_min": lo, "act_max": hi, "n": out.size}
            bufs = [buf_for(op.inputs[0]), buf_for(op.inputs[1])]
            st = Step(len(steps), "add", op.layer, op.opcode, bufs, buf_for(op.outputs[0]), params,
                      macs=out.size)
            st.overlaps = [Overlap(bn, "forward", 0) for bn in dict.fromkeys(bufs)]
            steps.append(st)
            continue
        if op.opcode == "CONCATENATION":
            if op.options.get("activation", "NONE") != "NONE":
                raise CModelError(f"{_where(op)}: CONCATENATION with a fused activation is not supported")
            rank = len(out.shape)
            axis = op.options.get("axis", 0)
            axis = axis + rank if axis < 0 else axis
            for t in ins:
                _int8(t, op, "an input")
                if t.zp != out.zp or t.s != out.s:
                    raise CModelError(f"{_where(op)}: concatenated inputs must share the output's "
                                      f"scale and zero point (TFLM requires it for int8)")
            outer = int(np.prod(out.shape[:axis])) if axis > 0 else 1
            inner = [int(np.prod(t.shape[axis:])) for t in ins]
            steps.append(Step(len(steps), "concat", op.layer, op.opcode,
                              [buf_for(i) for i in op.inputs], buf_for(op.outputs[0]),
                              {"outer": outer, "inner": inner}))
            continue
        if op.opcode == "SOFTMAX":
            x = ins[0]
            _int8(x, op, "the input")
            _int8(out, op, "the output")
            if out.zp != -128 or abs(out.s - 1.0 / 256) > 1e-9:
                raise CModelError(f"{_where(op)}: int8 SOFTMAX needs output scale 1/256 and zero "
                                  f"point -128 (got {out.s}, {out.zp})")
            p = quant.softmax_params(float(op.options.get("beta", 1.0)), x.s)
            depth = x.shape[-1]
            st = Step(len(steps), "softmax", op.layer, op.opcode, [buf_for(op.inputs[0])],
                      buf_for(op.outputs[0]), dict(p, rows=x.size // depth, depth=depth))
            st.overlaps.append(Overlap(st.inputs[0], "forward", 0))
            steps.append(st)
            continue
        if op.opcode in ("RELU", "RELU6"):
            x = ins[0]
            _int8(x, op, "the input")
            mult, shift = quant.relu_params(x.s, out.s)
            lo, hi = quant.activation_range(op.opcode, out.s, out.zp)
            st = Step(len(steps), "relu", op.layer, op.opcode, [buf_for(op.inputs[0])],
                      buf_for(op.outputs[0]),
                      {"in_zp": x.zp, "out_zp": out.zp, "mult": mult, "shift": shift,
                       "act_min": lo, "act_max": hi, "n": x.size})
            st.overlaps.append(Overlap(st.inputs[0], "forward", 0))
            steps.append(st)
            continue
        raise CModelError(f"{_where(op)} is not supported by the C runtime")  # pragma: no cover

    out_name = tensor_buf.get(graph.outputs[0])
    if out_name is None:
        raise CModelError("the model output is not computed by any op")
    if buffers[out_name].role == "input":
        raise CModelError("the model output is its input (no computation)")
    buffers[out_name].role = "output"
    # Lifetimes
    for st in steps:
        for b in [st.output]:
            if buffers[b].first < 0 and buffers[b].role != "input":
                buffers[b].first = st.index
        for b in st.inputs:
            buffers[b].last = max(buffers[b].last, st.index)
    buffers[out_name].last = len(steps)
    buffers[tensor_buf[graph.inputs[0]]].first = -1
    for b in buffers.values():
        if b.last < 0:
            b.last = b.first  # written, never read (cannot happen for a connected graph)
    return Program(steps, buffers, tensor_buf[graph.inputs[0]], out_name, tuple(tin.shape),
                   tuple(tout.shape), tin.s, tin.zp, tout.s, tout.zp, rounding)


def _conv_quant(op: Op, x: Tensor, w: Tensor, b: Optional[Tensor], out: Tensor, channels: int,
                sums: np.ndarray) -> Weighted:
    if len(w.zero_point) and np.any(w.zero_point != 0):
        raise CModelError(f"{_where(op)}: asymmetric (non-zero zero point) weights are not supported")
    if len(w.scale) not in (1, channels):
        raise CModelError(f"{_where(op)}: {len(w.scale)} weight scales for {channels} channels")
    scales = np.broadcast_to(w.scale, (channels,))
    mult, shift = quant.conv_multipliers(np.float32(x.s), scales, np.float32(out.s))
    bias = (b.data.astype(np.int64) if b is not None and b.data is not None
            else np.zeros(channels, dtype=np.int64))
    if b is not None and b.dtype != "int32":
        raise CModelError(f"{_where(op)}: {b.dtype} bias is not supported (int32 only)")
    lo, hi = _act_range(op, out)
    folded = bias - x.zp * sums
    if np.any(folded > 2**31 - 1) or np.any(folded < -2**31):
        raise CModelError(f"{_where(op)}: folded bias overflows int32")
    return Weighted(np.empty(0), folded, mult, shift, x.zp, out.zp, lo, hi)


def _lower_conv(op: Op, graph: Graph, folded_pads, buf_for, index: int) -> Step:
    tensors = graph.tensors
    x_t, w_t = tensors[op.inputs[0]], tensors[op.inputs[1]]
    b_t = tensors[op.inputs[2]] if len(op.inputs) > 2 and op.inputs[2] >= 0 else None
    out = tensors[op.outputs[0]]
    for t, what in ((x_t, "the input"), (w_t, "the weights"), (out, "the output")):
        _int8(t, op, what)
    if w_t.data is None:
        raise CModelError(f"{_where(op)}: non-constant weights are not supported")
    src = op.inputs[0]
    extra = (0, 0, 0, 0)
    folded: List[str] = []
    if src in folded_pads:
        src, extra, _ = folded_pads[src]
        folded.append("PAD")
    x = tensors[src]
    in_h, in_w, in_c = _nhwc(x, op)
    out_h, out_w, out_c = _nhwc(out, op)
    sh, sw = op.options["stride_h"], op.options["stride_w"]
    dh, dw = op.options.get("dilation_h", 1), op.options.get("dilation_w", 1)
    dw_conv = op.opcode == "DEPTHWISE_CONV_2D"
    if dw_conv:
        _, kh, kw, oc = w_t.shape
        if oc != out_c or out_c % in_c:
            raise CModelError(f"{_where(op)}: depthwise weights {list(w_t.shape)} do not match "
                              f"{in_c} -> {out_c} channels")
    else:
        oc, kh, kw, ic = w_t.shape
        if oc != out_c or ic != in_c:
            raise CModelError(f"{_where(op)}: weights {list(w_t.shape)} do not match "
                              f"{in_c} -> {out_c} channels (grouped convolution is not supported)")
    # Padding: the conv's own (SAME) plus a folded PAD's, which is in the coordinates of the
    # padded tensor the conv was declared on.
    ph_in = x_t.shape[1]
    pw_in = x_t.shape[2]
    if op.options["padding"] == "SAME":
        pt = _compute_padding(sh, dh, ph_in, kh, out_h)
        pl = _compute_padding(sw, dw, pw_in, kw, out_w)
    else:
        pt = pl = 0
    pt += extra[0]
    pl += extra[2]
    if pt > 255 or pl > 255 or max(kh, kw, sh, sw, dh, dw) > 255:
        raise CModelError(f"{_where(op)}: kernel, stride, dilation or padding over 255")
    g = {"in_h": in_h, "in_w": in_w, "in_c": in_c, "out_h": out_h, "out_w": out_w, "out_c": out_c,
         "k_h": kh, "k_w": kw, "stride_h": sh, "stride_w": sw, "dil_h": dh, "dil_w": dw,
         "pad_top": pt, "pad_left": pl}
    w8 = w_t.data.astype(np.int8)
    if dw_conv:
        w2 = w8.reshape(kh * kw, out_c)                   # [taps, out_c]
        sums = w2.astype(np.int64).sum(axis=0)
        macs = out_h * out_w * out_c * kh * kw
        kind = "dwconv"
    else:
        w2 = w8.reshape(out_c, kh * kw * in_c)            # [out_c, K] (OHWI)
        sums = w2.astype(np.int64).sum(axis=1)
        macs = out_h * out_w * out_c * kh * kw * in_c
        kind = "conv"
    wq = _conv_quant(op, x_t, w_t, b_t, out, out_c, sums)
    wq.w = w2
    st = Step(index, kind, op.layer, op.opcode, [buf_for(src)], buf_for(op.outputs[0]),
              {"g": g, "depth_multiplier": out_c // in_c}, wq, macs, folded=folded)
    st.overlaps.append(Overlap(st.inputs[0], "forward",
                               _forward_limit_windowed((in_h, in_w, in_c), (out_h, out_w, out_c), g)))
    return st


def _lower_fc(op: Op, graph: Graph, buf_for, index: int) -> Step:
    tensors = graph.tensors
    x, w_t = tensors[op.inputs[0]], tensors[op.inputs[1]]
    b_t = tensors[op.inputs[2]] if len(op.inputs) > 2 and op.inputs[2] >= 0 else None
    out = tensors[op.outputs[0]]
    for t, what in ((x, "the input"), (w_t, "the weights"), (out, "the output")):
        _int8(t, op, what)
    if w_t.data is None:
        raise CModelError(f"{_where(op)}: non-constant weights are not supported")
    if op.options.get("weights_format", 0) != 0:
        raise CModelError(f"{_where(op)}: shuffled FULLY_CONNECTED weights are not supported")
    out_n, in_n = w_t.shape
    if x.size % in_n:
        raise CModelError(f"{_where(op)}: input of {x.size} values is not a multiple of {in_n}")
    batches = x.size // in_n
    w2 = w_t.data.astype(np.int8).reshape(out_n, in_n)
    wq = _conv_quant(op, x, w_t, b_t, out, out_n, w2.astype(np.int64).sum(axis=1))
    wq.w = w2
    st = Step(index, "fc", op.layer, op.opcode, [buf_for(op.inputs[0])], buf_for(op.outputs[0]),
              {"batches": batches, "in_n": in_n, "out_n": out_n}, wq, batches * in_n * out_n)
    if batches > 1:
        b = np.arange(batches)
        st.overlaps.append(Overlap(st.inputs[0], "forward",
                                   int(np.min(b * in_n - (b + 1) * out_n))))
    return st
