"""Synthetic single-layer int8 graphs for calibrating the edgeprune-c cost model: built directly
as the C generator's graph (edgeprune/backends/c/ir.py), with seeded random int8 weights, int32
biases and per-channel scales, so that no TensorFlow conversion is needed. Zoo models are not
used here: they are the validation set."""
from __future__ import annotations

from typing import List, Tuple

import numpy as np

from edgeprune.backends.c.ir import Graph, Op, Tensor

IN_S, IN_ZP, OUT_S, OUT_ZP = 0.02, -3, 0.05, 2

# (H, W, Cin, Cout, k, stride, padding)
CONV = [(8, 8, 1, 8, 3, 1, "SAME"), (12, 12, 1, 6, 5, 1, "VALID"), (8, 8, 3, 16, 3, 1, "SAME"),
        (8, 8, 3, 8, 3, 2, "SAME"), (6, 6, 8, 8, 3, 1, "SAME"), (6, 6, 16, 16, 3, 1, "SAME"),
        (8, 8, 16, 8, 1, 1, "VALID"), (4, 4, 32, 32, 3, 1, "SAME"), (5, 5, 20, 12, 3, 1, "VALID"),
        (10, 10, 4, 6, 3, 2, "SAME"), (4, 4, 64, 16, 1, 1, "VALID"), (7, 7, 9, 10, 3, 1, "SAME"),
        (9, 5, 12, 24, 3, 1, "SAME"), (6, 6, 24, 7, 1, 1, "VALID")]
# (H, W, C, k, stride, padding)
DWCONV = [(8, 8, 8, 3, 1, "SAME"), (10, 10, 16, 3, 1, "SAME"), (8, 8, 12, 3, 2, "SAME"),
          (6, 6, 5, 3, 1, "VALID"), (12, 12, 4, 5, 1, "SAME"), (5, 5, 32, 3, 1, "SAME"),
          (9, 9, 6, 3, 2, "VALID"), (7, 7, 64, 3, 1, "SAME"), (6, 6, 24, 3, 1, "SAME"),
          (5, 9, 8, 3, 2, "SAME"), (4, 4, 48, 3, 1, "SAME"), (8, 8, 3, 3, 1, "SAME"),
          (7, 5, 7, 3, 1, "VALID"),
          # more 3x3 shapes for ep_dwconv_dsp's 3x3 path (narrow and wide, stride 1 and 2),
          # and 5x5 windows for its other path
          (16, 16, 8, 3, 1, "SAME"), (12, 4, 32, 3, 1, "SAME"), (16, 16, 16, 3, 2, "SAME"),
          (10, 10, 32, 3, 2, "SAME"), (3, 3, 64, 3, 1, "SAME"), (20, 6, 16, 3, 1, "SAME"),
          (14, 14, 8, 3, 2, "VALID"), (5, 5, 96, 3, 1, "SAME"), (8, 8, 8, 5, 1, "SAME"),
          (6, 6, 16, 5, 2, "SAME")]
# more dense convolutions for ep_conv_dense_dsp's im2col cases (calibration grid rows appended
# at the end, so the earlier models keep their seeds): window rows of k_w * in_c bytes a
# multiple of 4 (expanded from the input, padding rows filled, edge rows staged) at stride 1
# and 2, rows that are not (in_c 3, staged whole), and direct 1x1 columns with few channels
CONV_DSP = [(12, 12, 16, 16, 3, 1, "SAME"), (10, 10, 16, 32, 3, 2, "SAME"),
            (14, 14, 3, 8, 3, 2, "SAME"), (9, 9, 3, 16, 3, 1, "SAME"),
            (12, 12, 8, 16, 1, 1, "VALID"), (5, 5, 32, 64, 3, 1, "SAME"),
            (10, 6, 4, 12, 3, 1, "SAME")]
# a sparse convolution and the max pooling after it, fused (kernels/ep_conv_sparse_pool.c):
# (H, W, Cin, Cout, k, stride, padding, pooling window = stride, fused activation)
CONVPOOL = [(12, 12, 1, 8, 5, 1, "VALID", 2, "NONE"), (16, 16, 1, 6, 5, 1, "VALID", 2, "RELU"),
            (8, 8, 3, 8, 3, 1, "SAME", 2, "RELU"), (9, 9, 4, 6, 3, 1, "VALID", 2, "NONE"),
            (10, 10, 8, 16, 3, 1, "SAME", 2, "NONE"), (12, 12, 4, 8, 3, 2, "SAME", 2, "RELU"),
            (6, 6, 16, 12, 3, 1, "SAME", 3, "NONE"), (9, 9, 2, 8, 3, 1, "VALID", 3, "RELU"),
            (8, 8, 20, 24, 5, 1, "VALID", 2, "NONE"), (7, 7, 6, 10, 3, 1, "SAME", 2, "RELU"),
            (14, 10, 2, 5, 3, 1, "VALID", 2, "NONE")]
FC = [(64, 16), (256, 8), (128, 32), (500, 10), (16, 64), (100, 10), (30, 7), (75, 6), (640, 64),
      (33, 5), (800, 20)]
POOL = [(8, 8, 8, 2, 2), (9, 9, 4, 3, 3), (4, 4, 16, 2, 2), (6, 6, 8, 6, 6), (8, 8, 4, 3, 1),
        (12, 12, 6, 2, 2), (5, 5, 64, 5, 5)]
ELTWISE = [(8, 8, 8), (4, 4, 16), (10, 10, 3), (5, 5, 7), (16, 16, 16)]
SOFTMAX = [(1, 10), (1, 12), (1, 100), (4, 10), (1, 33)]
CONCAT = [((6, 6, 8), 8), ((4, 4, 3), 13), ((8, 8, 16), 16), ((5, 5, 1), 2)]


class _B:
    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)
        self.tensors: List[Tensor] = []

    def t(self, shape, dtype="int8", scale=(IN_S,), zp=(IN_ZP,), data=None, qdim=0) -> int:
        i = len(self.tensors)
        self.tensors.append(Tensor(i, tuple(shape), dtype, np.asarray(scale, np.float32),
                                   np.asarray(zp, np.int64), qdim, data))
        return i


def _weights(rng, shape, sparsity: float, levels: int) -> np.ndarray:
    w = rng.integers(-127, 128, size=shape).astype(np.int64)
    if levels:
        vals = np.linspace(-120, 120, levels).round().astype(np.int64)
        w = vals[rng.integers(0, levels, size=shape)]
    if sparsity:
        w = np.where(rng.random(shape) < sparsity, 0, w)
    return w.astype(np.int8)


def graph(kind: str, spec, seed: int = 0, sparsity: float = 0.0, levels: int = 0) -> Graph:
    """A one-op graph of `kind` with shape `spec` (see the tables above)."""
    b = _B(seed)
    rng = b.rng
    ops: List[Op] = []
    if kind == "convpool":
        h, w, ci, co, k, s, pad, pk, act = spec
        oh = -(-h // s) if pad == "SAME" else (h - k) // s + 1
        ow = -(-w // s) if pad == "SAME" else (w - k) // s + 1
        x = b.t((1, h, w, ci))
        ws = rng.uniform(0.002, 0.01, co).astype(np.float32)
        wt = b.t((co, k, k, ci), scale=ws, zp=np.zeros(co),
                 data=_weights(rng, (co, k, k, ci), sparsity, levels))
        bt = b.t((co,), "int32", scale=ws * IN_S, zp=np.zeros(co),
                 data=rng.integers(-2000, 2000, co).astype(np.int32))
        y = b.t((1, oh, ow, co), scale=(OUT_S,), zp=(OUT_ZP,))
        ops.append(Op(0, "CONV_2D", [x, wt, bt], [y], {"padding": pad, "stride_h": s, "stride_w": s,
                      "dilation_h": 1, "dilation_w": 1, "activation": act}, "conv"))
        z = b.t((1, oh // pk, ow // pk, co), scale=(OUT_S,), zp=(OUT_ZP,))
        ops.append(Op(1, "MAX_POOL_2D", [y], [z], {"padding": "VALID", "stride_h": pk, "stride_w": pk,
                      "filter_h": pk, "filter_w": pk, "activation": "NONE"}, "maxpool"))
    elif kind in ("conv", "dwconv"):
        if kind == "conv":
            h, w, ci, co, k, s, pad = spec
            wshape = (co, k, k, ci)
        else:
            h, w, ci, k, s, pad = spec
            co = ci
            wshape = (1, k, k, co)
        oh = -(-h // s) if pad == "SAME" else (h - k) // s + 1
        ow = -(-w // s) if pad == "SAME" else (w - k) // s + 1
        x = b.t((1, h, w, ci))
        ws = rng.uniform(0.002, 0.01, co).astype(np.float32)
        wt = b.t(wshape, scale=ws, zp=np.zeros(co), data=_weights(rng, wshape, sparsity, levels),
                 qdim=0 if kind == "conv" else 3)
        bias = rng.integers(-2000, 2000, co).astype(np.int32)
        bt = b.t((co,), "int32", scale=ws * IN_S, zp=np.zeros(co), data=bias)
        y = b.t((1, oh, ow, co), scale=(OUT_S,), zp=(OUT_ZP,))
        opts = {"padding": pad, "stride_h": s, "stride_w": s, "dilation_h": 1, "dilation_w": 1,
                "activation": "RELU"}
        if kind == "dwconv":
            opts["depth_multiplier"] = 1
        ops.append(Op(0, "CONV_2D" if kind == "conv" else "DEPTHWISE_CONV_2D", [x, wt, bt], [y], opts,
                      kind))
    elif kind == "fc":
        n_in, n_out = spec
        x = b.t((1, n_in))
        ws = rng.uniform(0.002, 0.01, n_out).astype(np.float32)
        wt = b.t((n_out, n_in), scale=ws, zp=np.zeros(n_out),
                 data=_weights(rng, (n_out, n_in), sparsity, levels))
        bt = b.t((n_out,), "int32", scale=ws * IN_S, zp=np.zeros(n_out),
                 data=rng.integers(-2000, 2000, n_out).astype(np.int32))
        y = b.t((1, n_out), scale=(OUT_S,), zp=(OUT_ZP,))
        ops.append(Op(0, "FULLY_CONNECTED", [x, wt, bt], [y],
                      {"activation": "NONE", "weights_format": 0, "keep_num_dims": False}, "fc"))
    elif kind in ("maxpool", "avgpool"):
        h, w, c, k, s = spec
        x = b.t((1, h, w, c))
        y = b.t((1, (h - k) // s + 1, (w - k) // s + 1, c))
        ops.append(Op(0, "MAX_POOL_2D" if kind == "maxpool" else "AVERAGE_POOL_2D", [x], [y],
                      {"padding": "VALID", "stride_h": s, "stride_w": s, "filter_h": k,
                       "filter_w": k, "activation": "NONE"}, kind))
    elif kind == "add":
        shape = (1,) + tuple(spec)
        x = b.t(shape)
        x2 = b.t(shape, scale=(0.03,), zp=(5,))
        y = b.t(shape, scale=(OUT_S,), zp=(OUT_ZP,))
        # the second operand is the output of a RELU so that the graph has one input
        ops.append(Op(0, "RELU", [x], [x2], {"activation": "NONE"}, "relu"))
        ops.append(Op(1, "ADD", [x, x2], [y], {"activation": "NONE"}, "add"))
    elif kind == "relu":
        shape = (1,) + tuple(spec)
        x = b.t(shape)
        y = b.t(shape, scale=(0.03,), zp=(-128,))
        ops.append(Op(0, "RELU", [x], [y], {"activation": "NONE"}, "relu"))
    elif kind == "softmax":
        rows, depth = spec
        x = b.t((rows, depth))
        y = b.t((rows, depth), scale=(1 / 256,), zp=(-128,))
        ops.append(Op(0, "SOFTMAX", [x], [y], {"beta": 1.0, "activation": "NONE"}, "softmax"))
    elif kind == "concat":
        (h, w, c1), c2 = spec
        x = b.t((1, h, w, c1))
        x2 = b.t((1, h, w, c2))
        wshape = (c2, 1, 1, c1)                  # a 1x1 conv makes the second input
        ws = np.full(c2, 0.004, np.float32)
        wt = b.t(wshape, scale=ws, zp=np.zeros(c2), data=_weights(rng, wshape, 0, 0))
        bt = b.t((c2,), "int32", scale=ws * IN_S, zp=np.zeros(c2), data=np.zeros(c2, np.int32))
        ops.append(Op(0, "CONV_2D", [x, wt, bt], [x2], {"padding": "VALID", "stride_h": 1,
                       "stride_w": 1, "dilation_h": 1, "dilation_w": 1, "activation": "NONE"}, "conv"))
        y = b.t((1, h, w, c1 + c2))
        ops.append(Op(1, "CONCATENATION", [x, x2], [y], {"axis": 3, "activation": "NONE"}, "concat"))
    else:
        raise ValueError(kind)
    return Graph(b.tensors, ops, [0], [ops[-1].outputs[0]])


def grid() -> List[Tuple[str, object, str, float, int]]:
    """(kind, spec, variant, sparsity, levels) of every calibration model."""
    rows = []
    for spec in CONV:
        rows.append(("conv", spec, "dense", 0.0, 0))
        rows.append(("conv", spec, "sparse", 0.7, 0))
        rows.append(("conv", spec, "clustered", 0.0, 8))
    for i, spec in enumerate(CONV[::2]):
        rows.append(("conv", spec, "sparse", 0.95, 0))
    for spec in DWCONV:
        rows.append(("dwconv", spec, "dense", 0.0, 0))
    for spec in FC:
        rows.append(("fc", spec, "dense", 0.0, 0))
        rows.append(("fc", spec, "sparse", 0.7, 0))
        rows.append(("fc", spec, "clustered", 0.0, 8))
    for spec in FC[::2]:
        rows.append(("fc", spec, "sparse", 0.95, 0))
        rows.append(("fc", spec, "clustered", 0.0, 16))
    for spec in POOL:
        rows.append(("maxpool", spec, "", 0.0, 0))
        rows.append(("avgpool", spec, "", 0.0, 0))
    for spec in ELTWISE:
        rows.append(("add", spec, "", 0.0, 0))
        rows.append(("relu", spec, "", 0.0, 0))
    for spec in SOFTMAX:
        rows.append(("softmax", spec, "", 0.0, 0))
    for spec in CONCAT:
        rows.append(("concat", spec, "", 0.0, 0))
    for spec in CONV_DSP:
        rows.append(("conv", spec, "dense", 0.0, 0))
    for spec in CONVPOOL:
        rows.append(("convpool", spec, "sparse", 0.7, 0))
        rows.append(("convpool", spec, "sparse", 0.95, 0))
    return rows
