"""The RTL dataflow plan: which hardware unit implements each layer, its folding, its exact
cycles per frame, and the choice between a folded and a fully unrolled MVU.

Units (one per layer, connected by valid/ready streams, one pixel of all channels per beat):

==========  ================================================================================
swg         sliding-window unit of a convolution: a line buffer of K-1 rows (one RAM, depth
            IW) and a K x K window register; emits one window (K*K*C elements) per output
            position. Cycles per frame: IH * IW (one input pixel per cycle).
mvu         matrix-vector unit, FINN's MVAU: MW inputs, MH outputs, PE x SIMD multipliers.
            folded:   weights in a ROM of NF*SF words (NF = MH/PE, SF = MW/SIMD), a pipeline
                      register after the multipliers, PE accumulators; cycles per frame
                      NF * SF * vectors (FINN's get_exp_cycles of the MVAU).
            unrolled: PE = MH, SIMD = MW, weights are constants written into the adders as
                      shift-adds (canonical signed digits), so a zero weight costs nothing;
                      cycles per frame = vectors.
            Either ends in the requantization unit (round half to even, clamp) unless it is the
            last layer, which streams its accumulators.
maxpool     non-overlapping max pooling (kernel = stride) on a row of partial maxima; cycles
            per frame IH * IW.
==========  ================================================================================

The network's initiation interval is the slowest unit's cycles per frame (every unit runs
concurrently and a unit never waits on a faster neighbour in steady state); the Verilator
testbench measures it and checks it equals `Plan.ii_cycles`. The folding of each MVU (PE, SIMD)
comes from the FINN-style folding the FPGA cost model computes (`backends.finn.folding`), so
the estimate and the RTL describe the same design. Torch-free.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import numpy as np

from ...layergraph import OpKind
from ..support import Support, fused, native, noop, unsupported
from .ir import IntNet, MatLayer, MaxPool, Requant, RtlError

# What the RTL backend does with each op kind (the support matrix's "rtl-export" column).
SUPPORT: Dict[OpKind, Support] = {
    OpKind.INPUT: native("uint8 pixel stream, one pixel (all channels) per beat"),
    OpKind.OUTPUT: native("accumulator stream of the last layer"),
    OpKind.CONV2D: native("swg -> mvu (folded or unrolled); padding 0, groups 1, dilation 1"),
    OpKind.DWCONV2D: unsupported("no vector-vector unit in the RTL backend yet"),
    OpKind.LINEAR: native("mvu (folded or unrolled)"),
    OpKind.BATCHNORM: fused("folded into the conv/linear before it (Brevitas twin)"),
    OpKind.RELU: fused("the producer's requantization unit (unsigned clamp)"),
    OpKind.RELU6: fused("the producer's requantization unit (unsigned clamp)"),
    OpKind.SIGMOID: unsupported("not converted by the Brevitas twin"),
    OpKind.TANH: unsupported("not converted by the Brevitas twin"),
    OpKind.MAXPOOL2D: native("maxpool unit (kernel = stride, no padding)"),
    OpKind.AVGPOOL2D: unsupported("no average-pool unit in the RTL backend yet"),
    OpKind.GAP: unsupported("no global-pool unit in the RTL backend yet"),
    OpKind.PAD: unsupported("no padding unit in the RTL backend yet"),
    OpKind.DROPOUT: noop(),
    OpKind.IDENTITY: noop(),
    OpKind.SOFTMAX: noop("left to the host (argmax unchanged)"),
    OpKind.FLATTEN: noop("the linear layer's weight columns are permuted to stream order"),
    OpKind.ADD: unsupported("branching graphs are not supported by the FPGA export path"),
    OpKind.CONCAT: unsupported("branching graphs are not supported by the FPGA export path"),
}

STYLES = ("folded", "unrolled")


@dataclass
class Unit:
    """One hardware unit of the dataflow."""

    kind: str                       # 'swg' | 'mvu' | 'maxpool'
    name: str                       # Verilog module suffix, from the layer name
    layer: str                      # the IntNet layer it implements
    in_elems: int                   # elements per input beat
    in_bits: int
    in_signed: bool
    out_elems: int
    out_bits: int
    out_signed: bool
    cycles: int                     # cycles per frame (exact, see the module docstring)
    p: Dict[str, object] = field(default_factory=dict)   # unit parameters

    def summary(self) -> Dict[str, object]:
        keep = {k: v for k, v in self.p.items() if not isinstance(v, np.ndarray)
                and k not in ("requant",)}
        if self.p.get("requant") is not None:
            rq = self.p["requant"]
            keep["requant"] = {"shift": rq.shift, "bits": rq.bits, "signed": rq.signed}
        return {"kind": self.kind, "name": self.name, "layer": self.layer,
                "in_elems": self.in_elems, "in_bits": self.in_bits, "out_elems": self.out_elems,
                "out_bits": self.out_bits, "cycles": self.cycles, **keep}


@dataclass
class Plan:
    units: List[Unit]
    input_shape: Tuple[int, int, int]
    input_bits: int
    notes: List[str] = field(default_factory=list)

    @property
    def ii_cycles(self) -> int:
        """Initiation interval: the slowest unit's cycles per frame."""
        return max(u.cycles for u in self.units)

    @property
    def latency_bound_cycles(self) -> int:
        """Upper bound of one frame's latency: the sum of the units' cycles per frame (the
        critical path of the FINN-style cost model); the stream overlap makes the real one
        smaller, the testbench measures it."""
        return sum(u.cycles for u in self.units)

    @property
    def output(self) -> Unit:
        return self.units[-1]

    def mvus(self) -> List[Unit]:
        return [u for u in self.units if u.kind == "mvu"]


def _bits_signed(lo: int, hi: int) -> int:
    """Bits of a two's-complement number holding every value in [lo, hi]."""
    b = 1
    while not (-(1 << (b - 1)) <= lo and hi <= (1 << (b - 1)) - 1):
        b += 1
    return b


def acc_bits(w: np.ndarray, bias: np.ndarray, in_lo: int, in_hi: int) -> int:
    """Accumulator width that holds every partial and final sum of this layer: bounded by the
    actual integer weights (like FINN's MinimizeAccumulatorWidth), bias included."""
    w = w.astype(np.int64)
    pos = np.where(w > 0, w, 0)
    neg = np.where(w < 0, w, 0)
    hi = pos.sum(axis=1) * in_hi + neg.sum(axis=1) * in_lo
    lo = pos.sum(axis=1) * in_lo + neg.sum(axis=1) * in_hi
    b = bias.astype(np.int64)
    # partial sums start at the bias and add products of either sign
    top = int(max((hi + np.maximum(b, 0)).max(), b.max(), 0))
    bot = int(min((lo + np.minimum(b, 0)).min(), b.min(), 0))
    return _bits_signed(bot, top)


def csd_digits(v: int) -> List[Tuple[int, int]]:
    """Canonical signed-digit form of v: [(sign, shift)] with v = sum(sign << shift), the fewest
    non-zero digits (what a constant multiplier built from shift-adds needs)."""
    out = []
    k = 0
    while v != 0:
        if v & 1:
            d = 2 - (v & 3)          # +1 if v = 1 mod 4, -1 if v = 3 mod 4
            out.append((d, k))
            v -= d
        v >>= 1
        k += 1
    return out


def stream_weights(layer: MatLayer, in_shape: Tuple[int, ...]) -> np.ndarray:
    """The layer's weight matrix (MH x MW) with its columns in stream order: (ky, kx, c) for a
    convolution (the sliding window's element order), (h, w, c) for a linear layer after a
    feature map (pixels stream in raster order, all channels per beat)."""
    w = layer.weight.astype(np.int64)
    if layer.kind == "conv2d":
        return w.transpose(0, 2, 3, 1).reshape(w.shape[0], -1)
    if len(in_shape) == 3:
        c, h, wd = in_shape
        return w.reshape(w.shape[0], c, h, wd).transpose(0, 2, 3, 1).reshape(w.shape[0], -1)
    return w


def _divisor_at_most(n: int, cap: int) -> int:
    return max(d for d in range(1, n + 1) if n % d == 0 and d <= max(1, cap))


def build_plan(net: IntNet, folding: Optional[Dict[str, Tuple[int, int]]] = None,
               styles: Optional[Dict[str, str]] = None) -> Plan:
    """Lower `net` to units. folding: {layer: (PE, SIMD)} of the folded MVUs (default: PE = 1,
    SIMD = the largest divisor of MW up to 8); styles: {layer: 'folded' | 'unrolled'}."""
    folding = dict(folding or {})
    styles = dict(styles or {})
    units: List[Unit] = []
    shape: Tuple[int, ...] = tuple(net.input_shape)
    shapes = net.shapes()
    bits, signed = net.input_bits, False
    lo, hi = 0, 2 ** net.input_bits - 1
    beat = shape[0]                                 # elements per beat of the current stream
    for layer, out_shape in zip(net.layers, shapes):
        if isinstance(layer, MaxPool):
            c, h, w = shape
            units.append(Unit("maxpool", layer.name, layer.name, c, bits, signed, c, bits, signed,
                              h * w, {"C": c, "IH": h, "IW": w, "P": layer.kernel}))
            shape = out_shape
            continue
        if layer.kind == "conv2d":
            c, h, w = shape
            k = int(layer.weight.shape[2])
            if layer.weight.shape[2] != layer.weight.shape[3]:
                raise RtlError(f"{layer.name}: only square kernels")
            if w < 2:
                raise RtlError(f"{layer.name}: input width {w} < 2")
            units.append(Unit("swg", layer.name + "_swg", layer.name, c, bits, signed,
                              k * k * c, bits, signed, h * w,
                              {"C": c, "IH": h, "IW": w, "K": k, "S": layer.stride}))
            beat = k * k * c
            nv = out_shape[1] * out_shape[2]
        else:
            nv = 1
        wm = stream_weights(layer, shape)
        mh, mw = wm.shape
        if mw % beat:
            raise RtlError(f"{layer.name}: {mw} inputs do not split into beats of {beat}")
        acc = acc_bits(wm, layer.bias, lo, hi)
        style = styles.get(layer.name, "folded")
        if style not in STYLES:
            raise RtlError(f"{layer.name}: style must be one of {', '.join(STYLES)}")
        if style == "unrolled":
            pe, simd = mh, mw
        else:
            pe, simd = folding.get(layer.name, (1, _divisor_at_most(mw, 8)))
            if mh % pe or mw % simd:
                raise RtlError(f"{layer.name}: PE={pe} must divide MH={mh} and SIMD={simd} "
                               f"MW={mw}")
        nf, sf = mh // pe, mw // simd
        rq = layer.requant
        if rq is not None:
            obits, osigned = rq.bits, rq.signed
            nlo, nhi = rq.lo, rq.hi
        else:
            obits, osigned = acc, True
            nlo, nhi = -(2 ** (acc - 1)), 2 ** (acc - 1) - 1
        cyc = nf * sf * nv
        units.append(Unit("mvu", layer.name, layer.name, beat, bits, signed, mh, obits, osigned,
                          cyc, {"style": style, "MW": mw, "MH": mh, "PE": pe, "SIMD": simd,
                                "NF": nf, "SF": sf, "vectors": nv, "W": layer.w_bits,
                                "ACC": acc, "weights": wm, "bias": layer.bias.astype(np.int64),
                                "requant": rq,
                                "nonzero_weights": int(np.count_nonzero(wm)),
                                "csd_digits": int(sum(len(csd_digits(int(v)))
                                                      for v in wm.ravel() if v != 0))}))
        bits, signed, lo, hi = obits, osigned, nlo, nhi
        beat = mh if layer.kind == "linear" else out_shape[0]
        shape = out_shape
    if not units or units[-1].kind != "mvu" or units[-1].p["requant"] is not None:
        raise RtlError("the RTL backend needs the network to end in a conv/linear layer that "
                       "streams its accumulators")
    return Plan(units, tuple(net.input_shape), net.input_bits, list(net.notes))


# --------------------------------------------------------------------------------------------
# Cycle model: the units' control logic (counters, valid/ready), no data

class _Ctl:
    """Control state of one unit, mirroring its Verilog module cycle for cycle."""

    def __init__(self, u: Unit):
        self.u = u
        self.kind = u.kind
        p = u.p
        self.ovalid = False
        self.row = self.col = 0
        if u.kind == "swg":
            k, s = p["K"], p["S"]
            self.rows = [r >= k - 1 and (r - k + 1) % s == 0 for r in range(p["IH"])]
            self.cols = [x >= k - 1 and (x - k + 1) % s == 0 for x in range(p["IW"])]
        elif u.kind == "maxpool":
            self.cx = self.ry = 0
        else:
            self.unrolled = p["style"] == "unrolled"
            self.nf = self.sf = 0
            self.cvalid = False
            self.s1_v = self.s1_vlast = self.s2_v = self.s2_vlast = False
            self.nb = p["MW"] // u.in_elems
            self.lcnt = 0

    # combinational part: in_ready given the downstream's ready
    def ready(self, out_ready: bool) -> bool:
        u, p = self.u, self.u.p
        if self.kind == "swg":
            return (not self.ovalid) or out_ready
        if self.kind == "maxpool":
            self.emit = self._inwin() and self.cx == p["P"] - 1 and self.ry == p["P"] - 1
            return not (self.emit and self.ovalid and not out_ready)
        if self.unrolled:
            self.en = not (self.s1_v and self.ovalid and not out_ready)
            self.last_fold = True
        else:
            self.en = not (self.s2_v and self.s2_vlast and self.ovalid and not out_ready)
            self.last_fold = self.nf == p["NF"] - 1 and self.sf == p["SF"] - 1
        free = self.en and ((not self.cvalid) or self.last_fold)
        if self.nb == 1:
            return free
        self.xfer = self.lcnt == self.nb and free
        return self.lcnt != self.nb or self.xfer

    def _inwin(self) -> bool:
        p = self.u.p
        k = p["P"]
        return self.row < (p["IH"] // k) * k and self.col < (p["IW"] // k) * k

    def _advance(self) -> None:
        p = self.u.p
        if self.col == p["IW"] - 1:
            self.col = 0
            self.row = 0 if self.row == p["IH"] - 1 else self.row + 1
        else:
            self.col += 1

    # sequential part: one clock edge
    def clock(self, take: bool, out_ready: bool) -> None:
        p = self.u.p
        if self.kind == "swg":
            if out_ready:
                self.ovalid = False
            if take:
                self.ovalid = self.rows[self.row] and self.cols[self.col]
                self._advance()
            return
        if self.kind == "maxpool":
            if out_ready:
                self.ovalid = False
            if take:
                if self.emit:
                    self.ovalid = True
                k = p["P"]
                if self.col == p["IW"] - 1:
                    self.ry = 0 if (self.row == p["IH"] - 1 or self.ry == k - 1) else self.ry + 1
                    self.cx = 0
                else:
                    self.cx = 0 if self.cx == k - 1 else self.cx + 1
                self._advance()
            return
        load = take if self.nb == 1 else self.xfer
        if self.nb > 1:
            if take:
                self.lcnt = 1 if self.xfer else self.lcnt + 1
            elif self.xfer:
                self.lcnt = 0
        issue = self.cvalid and self.en
        if self.unrolled:
            if self.en and self.s1_v:
                self.ovalid = True
            elif out_ready:
                self.ovalid = False
            if self.en:
                self.s1_v = issue
            self.cvalid = True if load else (False if issue else self.cvalid)
            return
        out_now = self.en and self.s2_v and self.s2_vlast
        if out_now:
            self.ovalid = True
        elif out_ready:
            self.ovalid = False
        if self.en:
            self.s2_v, self.s2_vlast = self.s1_v, self.s1_vlast
            self.s1_v, self.s1_vlast = issue, self.last_fold
        if load:
            self.cvalid, self.nf, self.sf = True, 0, 0
        elif issue:
            if self.last_fold:
                self.cvalid = False
            if self.sf == p["SF"] - 1:
                self.sf = 0
                self.nf = 0 if self.nf == p["NF"] - 1 else self.nf + 1
            else:
                self.sf += 1


@dataclass
class Timing:
    """What the cycle model predicts for frames streamed back to back at full input rate."""

    ii_cycles: int                  # steady-state cycles between outputs
    latency_cycles: int             # first frame: first pixel accepted -> output beat
    out_cycles: List[int]
    frames: int


def cycle_model(plan: Plan, frames: int = 4, max_frames: int = 12) -> Timing:
    """Cycle-accurate model of the design's control (the testbench's setting: input valid while
    pixels remain, output always ready): exact II and latency, checked against Verilator.
    Runs until two consecutive frame intervals agree (at least `frames` frames)."""
    c, h, w = plan.input_shape
    beats = h * w
    n = frames
    while True:
        ctl = [_Ctl(u) for u in plan.units]
        total = n * beats
        beat = 0
        starts: List[int] = []
        outs: List[int] = []
        cyc = 0
        limit = (n + 2) * (4 * plan.latency_bound_cycles + 1000)
        while len(outs) < n and cyc < limit:
            # readies, from the output back to the input (no ready depends on a valid)
            readies = [False] * len(ctl)
            down = True
            for i in range(len(ctl) - 1, -1, -1):
                readies[i] = ctl[i].ready(down)
                down = readies[i]
            valids = [x.ovalid for x in ctl]
            in_fire = beat < total and readies[0]
            if in_fire and beat % beats == 0:
                starts.append(cyc)
            if valids[-1]:
                outs.append(cyc)
            takes = [in_fire] + [valids[i] and readies[i + 1] for i in range(len(ctl) - 1)]
            for i, x in enumerate(ctl):
                x.clock(takes[i], readies[i + 1] if i + 1 < len(ctl) else True)
            if in_fire:
                beat += 1
            cyc += 1
        if len(outs) < n:
            raise RtlError("cycle model: the design does not finish (deadlock)")
        gaps = [b - a for a, b in zip(outs, outs[1:])]
        if len(gaps) >= 2 and gaps[-1] == gaps[-2] or n >= max_frames:
            return Timing(gaps[-1] if gaps else outs[0] - starts[0], outs[0] - starts[0], outs, n)
        n += 2


def choose_styles(net: IntNet, folding: Dict[str, Tuple[int, int]], style: str,
                  family: str) -> Dict[str, str]:
    """Per MVU layer: 'folded' or 'unrolled'. style 'folded' / 'unrolled' forces every layer;
    'auto' takes, per layer, the variant with fewer estimated LUTs (backends/rtl/cost.py) — the
    unrolled one only pays for its non-zero weights."""
    names = [l.name for l in net.layers if isinstance(l, MatLayer)]
    if style in STYLES:
        return {n: style for n in names}
    from .cost import unit_resources
    out = {}
    for n in names:
        est = {}
        for s in STYLES:
            p = build_plan(net, folding, {n: s})
            u = next(x for x in p.units if x.kind == "mvu" and x.layer == n)
            est[s] = unit_resources(u, family)["lut"]
        out[n] = min(STYLES, key=lambda s: (est[s], s))
    return out


def check_graph(graph, attributes: bool = False) -> None:
    """Refuse, naming the layer, a graph with an op kind the RTL backend has no unit for; with
    `attributes`, also convolutions it cannot build (padding, groups, dilation) and pooling with
    kernel != stride - before any quantization-aware training is spent on them."""
    for n in graph.nodes:
        s = SUPPORT[n.op]
        if not s.supported:
            raise RtlError(f"layer '{n.name}' ({n.op}): not supported by the RTL export: {s.note}")
        if not attributes:
            continue
        if n.op == OpKind.CONV2D:
            pad = n.attrs.get("padding", (0, 0))
            pad = tuple(pad) if isinstance(pad, (list, tuple)) else (pad, pad)
            if any(int(p) for p in pad) or int(n.attrs.get("groups", 1)) != 1:
                raise RtlError(f"layer '{n.name}': the RTL export builds convolutions without "
                               f"padding and groups only (padding {pad})")
        if n.op == OpKind.MAXPOOL2D:
            k, s_ = n.attrs.get("kernel_size"), n.attrs.get("stride")
            k = k[0] if isinstance(k, (list, tuple)) else k
            s_ = s_[0] if isinstance(s_, (list, tuple)) else s_
            if s_ is not None and k != s_:
                raise RtlError(f"layer '{n.name}': the RTL max-pool unit needs kernel = stride "
                               f"(got {k}, {s_})")
