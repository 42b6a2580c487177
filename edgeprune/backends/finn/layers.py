"""FINN-style dataflow lowering of a layer graph and the per-layer analytic cost forms.

A `LayerGraph` is lowered the way FINN's streamlining + ``convert_to_hw_layers`` +
``specialize_layers`` (HLS backend) would turn a quantized network into a dataflow pipeline:

===========================  =====================================================================
graph op                      FINN hardware layers (in stream order)
===========================  =====================================================================
conv2d (groups 1)             [FMPadding] -> ConvolutionInputGenerator -> MVAU
                              (1x1 stride 1: MVAU only; 1x1 stride > 1: DownSampler -> MVAU)
dwconv2d                      [FMPadding] -> ConvolutionInputGenerator(depthwise) -> VVAU
linear                        MVAU (one input vector)
batchnorm + activation        folded into the producing MVAU/VVAU as MultiThreshold thresholds
maxpool2d (stride = kernel,   StreamingMaxPool
  size divisible)
maxpool2d (other)             ConvolutionInputGenerator(depthwise) -> Pool
avgpool2d, gap                [FMPadding] -> ConvolutionInputGenerator(depthwise) -> VVAU: the
                              export sums the window with an all-ones depthwise conv and
                              requantizes (thresholds); the 1/N is in the next layer's weights
add                           [Thresholding on an input not straight from a conv/linear: the
                              shared quantizer] -> AddStreams (+ Thresholding when an activation
                              follows)
a tensor read by two layers   DuplicateStreams
pad (ZeroPad2d)               FMPadding
concat                        StreamingConcat
flatten, dropout, identity,   no hardware (streamlining removes them; softmax is left to the host)
  softmax
===========================  =====================================================================

Every cost form below names the FINN source it re-implements (Xilinx/finn, ``src/finn/custom_op/
fpgadataflow/...``). They are FINN's *analytic estimates* (what FINN writes to
``report/estimate_layer_resources.json``), not post-synthesis figures.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

from ...errors import EdgepruneError
from ...layergraph import LayerGraph, LayerNode, OpKind
from ..support import Support, fused, native, noop

# Activation ops that a MultiThreshold can implement (any monotonic function of the accumulator).
_ACTIVATIONS = (OpKind.RELU, OpKind.RELU6, OpKind.SIGMOID, OpKind.TANH)
# Ops that produce no hardware in a FINN dataflow build.
_NO_HW = (OpKind.BATCHNORM, OpKind.DROPOUT, OpKind.IDENTITY, OpKind.FLATTEN,
          OpKind.SOFTMAX) + _ACTIVATIONS

# What each op kind becomes in the FINN dataflow (the table `lower` dispatches on).
SUPPORT: Dict[OpKind, Support] = {
    OpKind.INPUT: native("input stream (uint8 pixels)"),
    OpKind.OUTPUT: native("output stream"),
    OpKind.CONV2D: native("[FMPadding] -> ConvolutionInputGenerator -> MVAU; groups > 1 refused"),
    OpKind.DWCONV2D: native("[FMPadding] -> ConvolutionInputGenerator(depthwise) -> VVAU"),
    OpKind.LINEAR: native("MVAU"),
    OpKind.BATCHNORM: fused("absorbed into the producer's MultiThreshold"),
    OpKind.RELU: fused("the producer's MultiThreshold"),
    OpKind.RELU6: fused("the producer's MultiThreshold"),
    OpKind.SIGMOID: fused("the producer's MultiThreshold (monotonic)"),
    OpKind.TANH: fused("the producer's MultiThreshold (monotonic)"),
    OpKind.MAXPOOL2D: native("StreamingMaxPool, or ConvolutionInputGenerator -> Pool"),
    OpKind.AVGPOOL2D: native("ConvolutionInputGenerator(depthwise) -> VVAU: all-ones window "
                             "sum + requantizing thresholds (what the FPGA export builds)"),
    OpKind.GAP: native("ConvolutionInputGenerator(depthwise) -> VVAU over the whole map: "
                       "all-ones sum + requantizing thresholds (what the FPGA export builds)"),
    OpKind.PAD: native("FMPadding"),
    OpKind.DROPOUT: noop(),
    OpKind.IDENTITY: noop(),
    OpKind.SOFTMAX: noop("left to the host (FINN maps no softmax; argmax is unchanged)"),
    OpKind.FLATTEN: noop("a stream needs no reshape"),
    OpKind.ADD: native("AddStreams (+ Thresholding), DuplicateStreams at the fork"),
    OpKind.CONCAT: native("StreamingConcat"),
}

# FINN's HWCustomOp default resource estimate is 0 for ops that do not override lut_estimation /
# bram_estimation (src/finn/custom_op/fpgadataflow/hwcustomop.py). These ops therefore have no
# published estimate and we report 0 for them, saying so in the notes.
NO_ESTIMATE_OPS = ("StreamingMaxPool_hls", "Pool_hls", "GlobalAccPool_hls", "AddStreams_hls",
                   "DuplicateStreams_hls", "FMPadding_hls", "DownSampler_hls",
                   "StreamingConcat_hls")

# Accumulator width cap: FINN's default accDataType is INT32 (matrixvectoractivation.py
# get_nodeattr_types "accDataType": INT32) before MinimizeAccumulatorWidth narrows it.
ACC_BITS_MAX = 32

# LUT-estimate constants of the FINN-R paper (Blott et al., "FINN-R", ACM TRETS 2018), as used
# in FINN hls/matrixvectoractivation_hls.py and hls/vectorvectoractivation_hls.py lut_estimation:
# c0 = 300 LUTs of control logic per layer, c1 = 1.1 LUTs per counted LUT of datapath.
LUT_C0 = 300
LUT_C1 = 1.1
# LUTRAM: one 6-LUT stores 64 bits x 1 (FINN lut_estimation c2 term: ceil(WMEM / 64)).
LUTRAM_DEPTH = 64
# DSP48 multiplier input width used by FINN's dsp_estimation: ceil((W + A) / 48) DSPs per product.
DSP_WIDTH = 48
# Weight memories up to 128 words deep are assumed to be LUTRAM by FINN
# (vectorvectoractivation.py bram_estimation: "assuming memories up to 128 deep get implemented
# in LUTs"); we use the same cut as the default memory style for every weight memory.
LUTRAM_MAX_DEPTH = 128
# HLS MVAU synthesis requires SIMD >= MW / 1024 (hls/matrixvectoractivation_hls.py defines()).
MVAU_HLS_MAX_SF = 1024


class FoldingError(EdgepruneError, ValueError):
    """A folding that breaks FINN's divisibility rules, or an unmeetable throughput target."""


@dataclass
class HWLayer:
    """One FINN dataflow layer.

    op_type: FINN's specialised op type (HLS backend), e.g. 'MVAU_hls'.
    node:    the layer-graph node it implements (several HW layers may share one node).
    inputs:  indices of the HW layers feeding it (-1 = the accelerator's input stream).
    shape:   the FINN node attributes that fix its size (MW, MH, numInputVectors, Channels, ...).
    in_bits / w_bits / out_bits: activation-in, weight and output bit widths.
    couple:  index of the layer whose PE this layer's SIMD must equal (depthwise SWG -> VVAU/Pool).
    """

    op_type: str
    node: str
    inputs: List[int]
    shape: Dict[str, object]
    in_bits: int
    w_bits: int = 0
    out_bits: int = 0
    couple: Optional[int] = None
    index: int = -1
    name: str = ""                  # FINN name after specialize_layers + GiveUniqueNodeNames
    generic_name: str = ""          # FINN name before specialize_layers (e.g. MVAU_0)

    @property
    def generic_op(self) -> str:
        return self.op_type.rsplit("_", 1)[0]


@dataclass
class Lowered:
    """The dataflow pipeline of one graph at given bit widths."""

    layers: List[HWLayer]
    notes: List[str] = field(default_factory=list)

    def for_node(self, node: str) -> List[HWLayer]:
        return [l for l in self.layers if l.node == node]


# --------------------------------------------------------------------------------------------
# Lowering

def _pair(v, default=1) -> Tuple[int, int]:
    if v is None:
        return (default, default)
    if isinstance(v, (tuple, list)):
        return (int(v[0]), int(v[1])) if len(v) > 1 else (int(v[0]), int(v[0]))
    return (int(v), int(v))


def _padding_from_shapes(in_hw, out_hw, k, s, d) -> Tuple[int, int]:
    """Total padding rows / columns that turn `in_hw` into `out_hw` (also for padding='same')."""
    return tuple(max(0, (o - 1) * st + dl * (kk - 1) + 1 - i)
                 for i, o, kk, st, dl in zip(in_hw, out_hw, k, s, d))


def _chw(shape) -> Tuple[int, int, int]:
    if len(shape) == 3:
        return tuple(int(x) for x in shape)
    if len(shape) == 1:
        return (int(shape[0]), 1, 1)
    raise EdgepruneError(f"FPGA cost model: unsupported tensor shape {tuple(shape)}")


def lower(graph: LayerGraph, *, wbits: int = 8, abits: int = 8, input_bits: int = 8,
          weight_bits_per_layer: Optional[Dict[str, int]] = None,
          act_bits_per_layer: Optional[Dict[str, int]] = None) -> Lowered:
    """Lower `graph` to FINN's HLS dataflow layers, in stream order.

    Bit widths: every compute layer has `wbits`-bit weights and emits `abits`-bit activations
    through its thresholds, except where the per-layer maps (keyed by graph node name) say
    otherwise; the network input is `input_bits` wide (uint8 pixels). A compute layer whose
    output reaches the model output without another compute layer or add on the way has no
    thresholds (FINN noActivation=1) and streams its accumulator.
    """
    graph = graph.without_noops()
    wmap = dict(weight_bits_per_layer or {})
    amap = dict(act_bits_per_layer or {})
    for name in list(wmap) + list(amap):
        try:
            node = graph[name]
        except KeyError:
            raise EdgepruneError(f"per-layer bit width given for unknown layer '{name}'") from None
        if node.op not in (OpKind.CONV2D, OpKind.DWCONV2D, OpKind.LINEAR, OpKind.ADD):
            raise EdgepruneError(f"per-layer bit width given for '{name}', which is a {node.op}, "
                                 f"not a conv/linear layer")
    for b in [wbits, abits, input_bits] + list(wmap.values()) + list(amap.values()):
        if not isinstance(b, int) or not 1 <= b <= 32:
            raise EdgepruneError(f"bit widths must be integers in 1..32, got {b!r}")

    layers: List[HWLayer] = []
    notes: List[str] = []
    # For each graph tensor: (index of the HW layer producing it, its bit width, consumers so far).
    producer: Dict[str, int] = {}
    bits: Dict[str, int] = {}
    no_act = _accumulator_outputs(graph)
    n_readers, alias = _hw_reader_counts(graph)

    def add(layer: HWLayer) -> int:
        layer.index = len(layers)
        layers.append(layer)
        return layer.index

    def source(tensor: str) -> int:
        """The HW layer to read `tensor` from, inserting DuplicateStreams at a fork."""
        tensor = alias.get(tensor, tensor)
        src = producer.get(tensor, -1)
        if n_readers.get(tensor, 1) > 1:
            key = "__dup__" + tensor
            if key not in producer:
                c, h, w = _chw(graph[tensor].out_shape)
                producer[key] = add(HWLayer("DuplicateStreams_hls", tensor, [src],
                                            {"NumChannels": c, "numInputVectors": [h, w],
                                             "NumOutputStreams": n_readers[tensor]},
                                            bits.get(tensor, input_bits),
                                            out_bits=bits.get(tensor, input_bits)))
            return producer[key]
        return src

    skipped = set()
    for node in graph.nodes:
        op = node.op
        if not SUPPORT[op].supported:
            raise EdgepruneError(f"FPGA cost model: layer '{node.name}' ({op}) has no FINN "
                                 f"mapping ({SUPPORT[op].note})")
        if op == OpKind.INPUT:
            producer[node.name] = -1
            bits[node.name] = input_bits
            continue
        if op == OpKind.OUTPUT:
            continue
        src_name = node.inputs[0] if node.inputs else None
        a_in = bits.get(src_name, input_bits)

        if op in _NO_HW:
            producer[node.name] = producer.get(src_name, -1)
            # Thresholding after an add re-quantizes: handled at the add. Other pass-throughs keep
            # the stream (and its width) as is.
            bits[node.name] = a_in
            if op == OpKind.SOFTMAX and OpKind.SOFTMAX not in skipped:
                skipped.add("softmax")
                notes.append("softmax is not mapped to hardware (FINN leaves it to the host; "
                             "argmax/LabelSelect could replace it)")
            continue

        if op in (OpKind.CONV2D, OpKind.DWCONV2D, OpKind.LINEAR):
            w_b = wmap.get(node.name, wbits)
            out_b = None if node.name in no_act else amap.get(node.name, abits)
            idx = _lower_compute(graph, node, source(src_name), a_in, w_b, out_b, add)
            acc = layers[idx].shape["acc_bits"]
            producer[node.name] = idx
            bits[node.name] = out_b if out_b is not None else acc
            continue

        if op == OpKind.PAD:
            c, h, w = _chw(node.in_shape)
            _, oh, ow = _chw(node.out_shape)
            l, r, t, b = (list(node.attrs.get("padding", (0, 0, 0, 0))) + [0, 0, 0, 0])[:4]
            idx = add(HWLayer("FMPadding_hls", node.name, [source(src_name)],
                              {"ImgDim": [h, w], "Padding": [t, l, b, r], "NumChannels": c,
                               "OFMDim": [oh, ow]}, a_in, out_bits=a_in))
            producer[node.name] = idx
            bits[node.name] = a_in
            continue

        if op in (OpKind.AVGPOOL2D, OpKind.GAP):
            idx = _lower_sum_pool(node, source(src_name), a_in, abits, add)
            producer[node.name] = idx
            bits[node.name] = layers[idx].out_bits
            continue

        if op == OpKind.MAXPOOL2D:
            idx = _lower_pool(node, source(src_name), a_in, add)
            producer[node.name] = idx
            bits[node.name] = layers[idx].out_bits
            continue

        if op == OpKind.ADD:
            c, h, w = _chw(node.out_shape)
            ins = [source(i) for i in node.inputs]
            a_add = max(bits.get(i, input_bits) for i in node.inputs)
            # The export quantizes every add input with one shared quantizer (equal scale and
            # sign, quant/fpga_support.py); on an input that does not come straight from a
            # conv/linear accumulator it is a Thresholding layer of its own.
            share_b = amap.get(node.name, abits)
            for j, i in enumerate(node.inputs):
                if not _straight_from_compute(graph, i):
                    ins[j] = add(HWLayer("Thresholding_hls", node.name, [ins[j]],
                                         {"NumChannels": c, "numInputVectors": [h, w],
                                          "numSteps": 2 ** share_b - 1},
                                         bits.get(i, input_bits), out_bits=share_b))
            if any(not _straight_from_compute(graph, i) for i in node.inputs):
                a_add = share_b
            # AddStreams output grows by one bit (addstreams.py get_output_datatype: 2 * max).
            idx = add(HWLayer("AddStreams_hls", node.name, ins,
                              {"NumChannels": c, "numInputVectors": [h, w]}, a_add,
                              out_bits=a_add + 1))
            if node.name not in no_act:
                out_b = amap.get(node.name, abits)
                idx = add(HWLayer("Thresholding_hls", node.name, [idx],
                                  {"NumChannels": c, "numInputVectors": [h, w],
                                   "numSteps": 2 ** out_b - 1}, a_add + 1, out_bits=out_b))
            producer[node.name] = idx
            bits[node.name] = layers[idx].out_bits
            continue

        if op == OpKind.CONCAT:
            c, h, w = _chw(node.out_shape)
            ins = [source(i) for i in node.inputs]
            chans = [_chw(graph[i].out_shape)[0] for i in node.inputs]
            a_c = max(bits.get(i, input_bits) for i in node.inputs)
            idx = add(HWLayer("StreamingConcat_hls", node.name, ins,
                              {"ChannelsPerStream": chans, "numInputVectors": [h, w]}, a_c,
                              out_bits=a_c))
            producer[node.name] = idx
            bits[node.name] = a_c
            continue

        raise EdgepruneError(f"FPGA cost model: layer '{node.name}' ({op}) has no FINN mapping")

    _name_layers(layers)
    return Lowered(layers, notes)


def _accumulator_outputs(graph: LayerGraph) -> set:
    """Compute/add nodes whose output reaches the model output through pass-through ops only:
    these keep their accumulator (FINN noActivation=1) - there is no quantizer after them."""
    out = set()
    stop = (OpKind.CONV2D, OpKind.DWCONV2D, OpKind.LINEAR, OpKind.ADD, OpKind.CONCAT)
    for node in graph.nodes:
        if node.op not in (OpKind.CONV2D, OpKind.DWCONV2D, OpKind.LINEAR, OpKind.ADD):
            continue
        frontier, seen, reaches = [node.name], set(), False
        while frontier:
            cur = frontier.pop()
            for cons in graph.consumers(cur):
                if cons.op == OpKind.OUTPUT:
                    reaches = True
                elif cons.op not in stop and cons.name not in seen:
                    seen.add(cons.name)
                    frontier.append(cons.name)
        if reaches:
            out.add(node.name)
    return out


def _hw_reader_counts(graph: LayerGraph) -> Tuple[Dict[str, int], Dict[str, str]]:
    """How many hardware layers read each tensor (after looking through no-HW ops), and the
    tensor each no-HW node forwards."""
    # Resolve each node to the tensor whose stream it forwards.
    alias: Dict[str, str] = {}
    for node in graph.nodes:
        if node.op in _NO_HW and node.inputs:
            alias[node.name] = alias.get(node.inputs[0], node.inputs[0])
    counts: Dict[str, int] = {}
    for node in graph.nodes:
        if node.op in _NO_HW or node.op in (OpKind.INPUT, OpKind.OUTPUT):
            continue
        for i in set(node.inputs):
            t = alias.get(i, i)
            counts[t] = counts.get(t, 0) + 1
    return counts, alias


def _lower_compute(graph: LayerGraph, node: LayerNode, src: int, a_in: int, w_b: int,
                   out_b: Optional[int], add) -> int:
    if node.op == OpKind.LINEAR:
        mw = int(node.weight_shape[1])
        mh = int(node.weight_shape[0])
        return add(_mvau(node, [src], mw, mh, [1], a_in, w_b, out_b))
    cin, ih, iw = _chw(node.in_shape)
    cout, oh, ow = _chw(node.out_shape)
    kh, kw = int(node.weight_shape[2]), int(node.weight_shape[3])
    sh, sw = _pair(node.attrs.get("stride"))
    dh, dw = _pair(node.attrs.get("dilation"))
    groups = int(node.attrs.get("groups", 1))
    if node.op == OpKind.CONV2D and groups != 1:
        raise EdgepruneError(f"FPGA cost model: layer '{node.name}' is a grouped convolution "
                             f"(groups={groups}); FINN supports only dense and depthwise convs")
    pad_attr = node.attrs.get("padding")
    if isinstance(pad_attr, (tuple, list)) and all(isinstance(p, int) for p in pad_attr):
        # PyTorch pads symmetrically; a stride can leave the last padded row unused.
        top, left = _pair(pad_attr, default=0)
        ph, pw = 2 * top, 2 * left
    else:  # padding='same'/'valid': derive the total from the shapes
        ph, pw = _padding_from_shapes((ih, iw), (oh, ow), (kh, kw), (sh, sw), (dh, dw))
        top, left = ph // 2, pw // 2
    cur = src
    if ph or pw:
        cur = add(HWLayer("FMPadding_hls", node.name, [cur],
                          {"ImgDim": [ih, iw], "Padding": [top, left, ph - top, pw - left],
                           "NumChannels": cin, "OFMDim": [ih + ph, iw + pw]}, a_in, out_bits=a_in))
        ih, iw = ih + ph, iw + pw
    if node.op == OpKind.DWCONV2D:
        swg = add(HWLayer("ConvolutionInputGenerator_hls", node.name, [cur],
                          _swg_shape(cin, (ih, iw), (oh, ow), (kh, kw), (sh, sw), (dh, dw), True),
                          a_in, out_bits=a_in))
        return add(_vvau(node, [swg], cin, (kh, kw), (oh, ow), a_in, w_b, out_b))
    if kh == 1 and kw == 1 and dh == 1 and dw == 1:
        if sh != 1 or sw != 1:
            cur = add(HWLayer("DownSampler_hls", node.name, [cur],
                              {"ImgDim": [ih, iw], "NumChannels": cin, "Stride": [sh, sw],
                               "OFMDim": [oh, ow]}, a_in, out_bits=a_in))
        return add(_mvau(node, [cur], cin, cout, [oh, ow], a_in, w_b, out_b))
    swg = add(HWLayer("ConvolutionInputGenerator_hls", node.name, [cur],
                      _swg_shape(cin, (ih, iw), (oh, ow), (kh, kw), (sh, sw), (dh, dw), False),
                      a_in, out_bits=a_in))
    return add(_mvau(node, [swg], cin * kh * kw, cout, [oh, ow], a_in, w_b, out_b))


def _swg_shape(c, ifm, ofm, k, s, d, depthwise) -> Dict[str, object]:
    return {"IFMChannels": c, "IFMDim": list(ifm), "OFMDim": list(ofm), "ConvKernelDim": list(k),
            "Stride": list(s), "Dilation": list(d), "depthwise": int(depthwise)}


def _acc_bits(inner: int, w: int, a: int, a_signed: bool = False) -> int:
    """Accumulator width bound used by FINN's lut_estimation (MVAU_hls / VVAU_hls): the data-type
    bound of Colbert et al. 2023 (arXiv:2301.13376), alpha = log2(K) + W + A - 1 - signed(A),
    P = ceil(alpha + log2(1 + 2^-alpha) + 1), capped at the INT32 default."""
    alpha = math.log2(inner) + w + a - 1 - int(a_signed)
    return int(min(ACC_BITS_MAX, math.ceil(alpha + math.log2(1 + 2 ** -alpha) + 1)))


def _mvau(node, inputs, mw, mh, vecs, a_in, w_b, out_b) -> HWLayer:
    acc = _acc_bits(mw, w_b, a_in)
    return HWLayer("MVAU_hls", node.name, inputs,
                   {"MW": mw, "MH": mh, "numInputVectors": list(vecs),
                    "noActivation": int(out_b is None), "acc_bits": acc,
                    "binaryXnorMode": int(w_b == 1 and a_in == 1)},
                   a_in, w_b, out_b if out_b is not None else acc)


def _vvau(node, inputs, ch, k, dim, a_in, w_b, out_b) -> HWLayer:
    acc = _acc_bits(k[0] * k[1], w_b, a_in)
    return HWLayer("VVAU_hls", node.name, inputs,
                   {"Channels": ch, "Kernel": list(k), "Dim": list(dim),
                    "noActivation": int(out_b is None), "acc_bits": acc,
                    "binaryXnorMode": int(w_b == 1 and a_in == 1)},
                   a_in, w_b, out_b if out_b is not None else acc)


def _lower_pool(node: LayerNode, src: int, a_in: int, add) -> int:
    c, ih, iw = _chw(node.in_shape)
    _, oh, ow = _chw(node.out_shape)
    if node.op == OpKind.GAP or (node.op == OpKind.AVGPOOL2D and (oh, ow) == (1, 1)
                            and _pair(node.attrs.get("kernel_size")) == (ih, iw)):
        # GlobalAccPool sums H*W values: output grows by ceil(log2(H*W)) bits
        # (globalaccpool.py get_output_datatype: smallest type holding npixels * max).
        out_b = a_in + math.ceil(math.log2(max(1, ih * iw)))
        return add(HWLayer("GlobalAccPool_hls", node.name, [src],
                           {"NumChannels": c, "numInputVectors": [ih, iw]}, a_in, out_bits=out_b))
    k = _pair(node.attrs.get("kernel_size"))
    s = _pair(node.attrs.get("stride"), default=k[0])
    p = _pair(node.attrs.get("padding"), default=0)
    if (node.op == OpKind.MAXPOOL2D and k == s and p == (0, 0)
            and ih % k[0] == 0 and iw % k[1] == 0):
        return add(HWLayer("StreamingMaxPool_hls", node.name, [src],
                           {"ImgDim": [ih, iw], "PoolDim": list(k), "NumChannels": c},
                           a_in, out_bits=a_in))
    # General pooling: depthwise sliding window + Pool (FINN InferPool).
    ph, pw = 2 * p[0], 2 * p[1]
    cur = src
    if ph or pw:
        cur = add(HWLayer("FMPadding_hls", node.name, [cur],
                          {"ImgDim": [ih, iw], "Padding": [ph // 2, pw // 2, ph - ph // 2,
                                                           pw - pw // 2],
                           "NumChannels": c, "OFMDim": [ih + ph, iw + pw]}, a_in, out_bits=a_in))
        ih, iw = ih + ph, iw + pw
    swg = add(HWLayer("ConvolutionInputGenerator_hls", node.name, [cur],
                      _swg_shape(c, (ih, iw), (oh, ow), k, s, (1, 1), True), a_in, out_bits=a_in))
    # QuantAvgPool shifts the window sum back to the input width (pool.py execute_node).
    fn = "MaxPool" if node.op == OpKind.MAXPOOL2D else "QuantAvgPool"
    return add(HWLayer("Pool_hls", node.name, [swg],
                       {"Channels": c, "KernelSize": list(k), "OutImgDims": [oh, ow],
                        "Function": fn}, a_in, out_bits=a_in))


def _straight_from_compute(graph: LayerGraph, name: str) -> bool:
    """True when tensor `name` is a conv/linear output with no activation on the way (BN and
    no-ops only): its accumulator is what the add's shared quantizer quantizes."""
    node = graph[name]
    while node.op in _NO_HW:
        if node.op in _ACTIVATIONS or not node.inputs:
            return False
        node = graph[node.inputs[0]]
    return node.op in (OpKind.CONV2D, OpKind.DWCONV2D, OpKind.LINEAR)


def _lower_sum_pool(node: LayerNode, src: int, a_in: int, out_b: int, add) -> int:
    """Average / global average pooling as the export builds it: an all-ones depthwise
    convolution over the window (2-bit weights, exact integer sum) whose thresholds requantize
    the sum to `out_b` bits; the 1/N lives in the next compute layer's weights."""
    c, ih, iw = _chw(node.in_shape)
    _, oh, ow = _chw(node.out_shape)
    if node.op == OpKind.GAP:
        k, s, p = (ih, iw), (ih, iw), (0, 0)
    else:
        k = _pair(node.attrs.get("kernel_size"))
        s = _pair(node.attrs.get("stride"), default=k[0])
        p = _pair(node.attrs.get("padding"), default=0)
    cur = src
    if p != (0, 0):
        cur = add(HWLayer("FMPadding_hls", node.name, [cur],
                          {"ImgDim": [ih, iw], "Padding": [p[0], p[1], p[0], p[1]],
                           "NumChannels": c, "OFMDim": [ih + 2 * p[0], iw + 2 * p[1]]},
                          a_in, out_bits=a_in))
        ih, iw = ih + 2 * p[0], iw + 2 * p[1]
    swg = add(HWLayer("ConvolutionInputGenerator_hls", node.name, [cur],
                      _swg_shape(c, (ih, iw), (oh, ow), k, s, (1, 1), True), a_in, out_bits=a_in))
    return add(_vvau(node, [swg], c, k, (oh, ow), a_in, SUM_POOL_WEIGHT_BITS, out_b))


# The summing convolution's weight quantizer (quant/brevitas_model._ones_quant): 2-bit signed.
SUM_POOL_WEIGHT_BITS = 2


def _name_layers(layers: List[HWLayer]) -> None:
    """FINN names nodes '<op_type>_<n>' per op type in graph order (GiveUniqueNodeNames)."""
    count: Dict[str, int] = {}
    gcount: Dict[str, int] = {}
    for l in layers:
        n = count.get(l.op_type, 0)
        count[l.op_type] = n + 1
        l.name = f"{l.op_type}_{n}"
        g = l.generic_op
        m = gcount.get(g, 0)
        gcount[g] = m + 1
        l.generic_name = f"{g}_{m}"
    # Depthwise SWGs are folded together with their consumer (SIMD = consumer PE).
    for l in layers:
        if l.op_type == "ConvolutionInputGenerator_hls" and l.shape.get("depthwise"):
            cons = [m for m in layers if l.index in m.inputs]
            if cons and cons[0].op_type in ("VVAU_hls", "Pool_hls"):
                l.couple = cons[0].index


# --------------------------------------------------------------------------------------------
# Legal folding values

def divisors(n: int) -> List[int]:
    return [d for d in range(1, int(n) + 1) if n % d == 0]


@dataclass(frozen=True)
class LayerConfig:
    """The FINN node attributes a folding sets on one layer (None = attribute not applicable)."""

    PE: Optional[int] = None
    SIMD: Optional[int] = None
    resType: Optional[str] = None           # 'lut' | 'dsp' (MVAU/VVAU multipliers)
    ram_style: Optional[str] = None         # 'distributed' | 'block' (weight / line buffers)

    def attrs(self) -> Dict[str, object]:
        return {k: v for k, v in (("PE", self.PE), ("SIMD", self.SIMD), ("resType", self.resType),
                                  ("ram_style", self.ram_style)) if v is not None}


def channel_count(layer: HWLayer) -> int:
    s = layer.shape
    for key in ("NumChannels", "IFMChannels", "Channels"):
        if key in s:
            return int(s[key])
    if "ChannelsPerStream" in s:
        return math.gcd(*[int(c) for c in s["ChannelsPerStream"]])
    raise KeyError(layer.op_type)


def check_config(layer: HWLayer, cfg: LayerConfig) -> None:
    """Raise FoldingError unless `cfg` satisfies FINN's rules for `layer`."""
    s = layer.shape
    op = layer.op_type

    def need(cond: bool, why: str) -> None:
        if not cond:
            raise FoldingError(f"illegal folding for {layer.name} ({op}): {why}")

    if op == "MVAU_hls":
        mw, mh = s["MW"], s["MH"]
        need(cfg.PE is not None and cfg.SIMD is not None, "needs PE and SIMD")
        need(mh % cfg.PE == 0, f"MH={mh} % PE={cfg.PE} != 0")
        need(mw % cfg.SIMD == 0, f"MW={mw} % SIMD={cfg.SIMD} != 0")
        need(cfg.SIMD * MVAU_HLS_MAX_SF >= mw, f"HLS MVAU needs SIMD >= MW/1024 (MW={mw})")
    elif op == "VVAU_hls":
        ch, k2 = s["Channels"], s["Kernel"][0] * s["Kernel"][1]
        need(cfg.PE is not None and cfg.SIMD is not None, "needs PE and SIMD")
        need(ch % cfg.PE == 0, f"Channels={ch} % PE={cfg.PE} != 0")
        need(k2 % cfg.SIMD == 0, f"K*K={k2} % SIMD={cfg.SIMD} != 0")
        # The HLS depthwise SWG streams one window element per cycle, so SIMD > 1 needs PE fully
        # unfolded (set_folding.py SetFolding docstring: "PE to be fully unfolded before SIMD").
        need(cfg.SIMD == 1 or cfg.PE == ch, "SIMD > 1 requires PE = Channels (HLS dws SWG)")
    elif op == "ConvolutionInputGenerator_hls":
        need(cfg.SIMD is not None and s["IFMChannels"] % cfg.SIMD == 0,
             f"IFMChannels={s['IFMChannels']} % SIMD={cfg.SIMD} != 0")
    elif op == "StreamingMaxPool_hls":
        need(cfg.PE is None and cfg.SIMD is None, "2D StreamingMaxPool has no folding")
    else:
        p = cfg.PE if cfg.PE is not None else cfg.SIMD
        need(p is not None, "needs a PE/SIMD value")
        if op == "StreamingConcat_hls":
            for c in s["ChannelsPerStream"]:
                need(c % p == 0, f"SIMD={p} must divide every input's channels {c}")
        else:
            need(channel_count(layer) % p == 0, f"{channel_count(layer)} channels % {p} != 0")


# Which attribute carries the parallelism of the simple ops (FINN SetFolding pe_ops / simd_ops).
PE_OPS = ("AddStreams_hls", "DuplicateStreams_hls", "GlobalAccPool_hls", "Thresholding_hls",
          "Pool_hls")
SIMD_OPS = ("FMPadding_hls", "DownSampler_hls", "StreamingConcat_hls",
            "ConvolutionInputGenerator_hls")


def layer_options(layer: HWLayer, has_dsp: bool = True) -> List[LayerConfig]:
    """Every legal configuration of one layer (depthwise SWGs excepted: their SIMD follows)."""
    op, s = layer.op_type, layer.shape
    mems = ("distributed", "block")
    out: List[LayerConfig] = []
    if op == "MVAU_hls":
        res = ("lut", "dsp") if has_dsp and not is_xnor(layer) else ("lut",)
        for pe in divisors(s["MH"]):
            for simd in divisors(s["MW"]):
                if simd * MVAU_HLS_MAX_SF < s["MW"]:
                    continue
                for r in res:
                    for m in mems:
                        out.append(LayerConfig(pe, simd, r, m))
    elif op == "VVAU_hls":
        res = ("lut", "dsp") if has_dsp and not is_xnor(layer) else ("lut",)
        ch, k2 = s["Channels"], s["Kernel"][0] * s["Kernel"][1]
        for pe in divisors(ch):
            for simd in (divisors(k2) if pe == ch else [1]):
                for r in res:
                    for m in mems:
                        out.append(LayerConfig(pe, simd, r, m))
    elif op == "ConvolutionInputGenerator_hls":
        for simd in divisors(s["IFMChannels"]):
            for m in mems:
                out.append(LayerConfig(SIMD=simd, ram_style=m))
    elif op == "StreamingMaxPool_hls":
        out.append(LayerConfig())
    elif op in PE_OPS:
        out = [LayerConfig(PE=p) for p in divisors(channel_count(layer))]
    elif op in SIMD_OPS:
        out = [LayerConfig(SIMD=p) for p in divisors(channel_count(layer))]
    else:  # pragma: no cover - every op produced by lower() is listed above
        raise KeyError(op)
    return out


# --------------------------------------------------------------------------------------------
# Per-layer cycles and resources (FINN's analytic forms)

@dataclass
class LayerCost:
    cycles: int
    lut: int = 0
    bram18: int = 0
    uram: int = 0
    dsp: int = 0
    lut_thresholds: int = 0         # part of `lut` spent on MultiThreshold storage + comparators


def _ramb18_count(omega: float, width: int, port_widths: tuple[int, int, int, int]) -> int:
    """RAMB18 count of a weight memory `omega` words deep and `width` bits wide, with FINN's
    aspect-ratio table (RAMB18 simple-dual-port 16Kx1, 8Kx2, 4Kx4, 2Kx9, 1Kx18, 512x36, AMD UG473
    Table 1-10 / UG573). `port_widths` are the widths FINN divides by in the 4/9/18/36 rows."""
    w4, w9, w18, w36 = port_widths
    if width == 1:
        return math.ceil(omega / 16384)
    if width == 2:
        return math.ceil(omega / 8192)
    if width <= 4:
        return math.ceil(omega / 4096) * math.ceil(width / w4)
    if width <= 9:
        return math.ceil(omega / 2048) * math.ceil(width / w9)
    if width <= 18 or omega > 512:
        return math.ceil(omega / 1024) * math.ceil(width / w18)
    return math.ceil(omega / 512) * math.ceil(width / w36)


def _mvau_bram18(omega: float, width: int) -> int:
    """hls/.. matrixvectoractivation.py bram_estimation (FINN-R): the full RAMB18 widths."""
    return _ramb18_count(omega, width, (4, 9, 18, 36))


def _vvau_bram18(omega: float, width: int) -> int:
    """vectorvectoractivation.py bram_estimation: the HLS-memory widths 4/8/16/32 ("since this
    is HLS memory, not using the full width")."""
    return _ramb18_count(omega, width, (4, 8, 16, 32))


def _mult_luts(simd: int, w: int, a: int) -> int:
    # LUT multiplier of a (W x A)-bit product: (2*ceil((W+A)/6) - 1) * (W+A) LUTs (FINN-R, used in
    # hls/matrixvectoractivation_hls.py lut_estimation), SIMD of them per PE.
    return simd * (2 * math.ceil((w + a) / 6) - 1) * (w + a)


def is_xnor(layer: HWLayer) -> bool:
    """1-bit weights on 1-bit inputs: FINN's binaryXnorMode (BIPOLAR x BIPOLAR), where each
    product is an XNOR and the dot product a popcount (Umuroglu et al., "FINN", FPGA 2017, 4.1)."""
    return layer.op_type in ("MVAU_hls", "VVAU_hls") and layer.w_bits == 1 and layer.in_bits == 1


def _popcount_luts(simd: int) -> int:
    """LUTs of the XNOR-popcount datapath of one PE: one LUT per XNOR (a 2-input function), and
    a binary adder tree over the SIMD 1-bit products whose level l (1-based) has ceil(SIMD/2^l)
    adders of l bits, one LUT per adder bit (7-series carry chain: one LUT6 per bit, Xilinx UG474
    "CLB": CARRY4 with its four LUTs). edgeprune's derivation, replacing FINN-R's generic
    (W+A)-bit multiplier and (W+A)*(2*SIMD-1) adder-tree terms, which count 2 LUTs per XNOR and a
    2-bit-wide adder at every tree node."""
    tree, width, n = 0, 1, simd
    while n > 1:
        n = math.ceil(n / 2)
        tree += n * width
        width += 1
    return simd + tree


def evaluate(layer: HWLayer, cfg: LayerConfig) -> LayerCost:
    """Cycles per frame and resources of `layer` under `cfg` (assumed legal)."""
    s, op = layer.shape, layer.op_type
    a = layer.in_bits
    if op == "MVAU_hls":
        return _eval_mvau(layer, cfg)
    if op == "VVAU_hls":
        return _eval_vvau(layer, cfg)
    if op == "ConvolutionInputGenerator_hls":
        return _eval_swg(layer, cfg)
    if op == "StreamingMaxPool_hls":
        # streamingmaxpool.py get_exp_cycles (2D): ImgDim^2 * (1 + 1/k^2); FINN writes IFM_W^2
        # for square maps, we use IFM_H * IFM_W so non-square maps are counted right.
        ih, iw = s["ImgDim"]
        kh, kw = s["PoolDim"]
        return LayerCost(int(ih * iw * (1 + 1 / (kh * kw))))
    c = channel_count(layer)
    p = cfg.PE if cfg.PE is not None else cfg.SIMD
    if op == "Pool_hls":
        # pool.py get_exp_cycles: Channels * K^2 / PE * OutImgDim^2
        kh, kw = s["KernelSize"]
        oh, ow = s["OutImgDims"]
        return LayerCost(int(c * kh * kw / p * oh * ow))
    if op == "GlobalAccPool_hls":
        # globalaccpool.py get_exp_cycles: H*W*Ch/PE + Ch/PE
        h, w = s["numInputVectors"]
        return LayerCost(int(h * w * (c // p) + c // p))
    if op in ("AddStreams_hls", "DuplicateStreams_hls"):
        # addstreams.py / duplicatestreams.py get_exp_cycles: prod(folded output shape[:-1])
        h, w = s["numInputVectors"]
        return LayerCost(int(h * w * (c // p)))
    if op == "Thresholding_hls":
        # thresholding.py get_exp_cycles: prod(folded output shape[:-1]) = H*W*Ch/PE.
        # hls/thresholding_hls.py lut_estimation (ram_style 'distributed', the default):
        # comparators A*PE + LUTRAM PE*A*ceil(TMEM/64), TMEM = Ch/PE.
        h, w = s["numInputVectors"]
        tmem = c // p
        lut = a * p + (p * a * math.ceil(tmem / LUTRAM_DEPTH) if tmem > 1 else 0)
        return LayerCost(int(h * w * tmem), lut=int(lut))
    if op == "FMPadding_hls":
        # fmpadding.py get_exp_cycles: Ch/SIMD * OFM_H * OFM_W
        oh, ow = s["OFMDim"]
        return LayerCost(int(c / p * oh * ow))
    if op == "DownSampler_hls":
        # downsampler.py get_exp_cycles: Ch/SIMD * IFM_H * IFM_W
        ih, iw = s["ImgDim"]
        return LayerCost(int(c / p * ih * iw))
    if op == "StreamingConcat_hls":
        # concat.py get_exp_cycles: prod(folded output shape[:-1]) = H*W*sum(Ch)/SIMD
        h, w = s["numInputVectors"]
        return LayerCost(int(h * w * sum(s["ChannelsPerStream"]) / p))
    raise KeyError(op)  # pragma: no cover


def _eval_mvau(layer: HWLayer, cfg: LayerConfig) -> LayerCost:
    s = layer.shape
    mw, mh = s["MW"], s["MH"]
    pe, simd = cfg.PE, cfg.SIMD
    w, a = layer.w_bits, layer.in_bits
    nv = 1
    for v in s["numInputVectors"]:
        nv *= int(v)
    # matrixvectoractivation.py get_exp_cycles: (MH/PE) * (MW/SIMD) * prod(numInputVectors)
    cycles = (mh // pe) * (mw // simd) * nv
    wmem = mw * mh // (pe * simd)          # calc_wmem: weight memory depth
    tmem = 0 if s["noActivation"] else mh // pe   # calc_tmem: threshold memory depth
    acc = s["acc_bits"]
    mult = _mult_luts(simd, w, a) if cfg.resType == "lut" else 0
    adder = (w + a) * (2 * simd - 1)       # adder tree (FINN-R)
    if is_xnor(layer):                      # XNOR + popcount, no multipliers, no DSPs
        mult, adder = 0, _popcount_luts(simd)
    thr = comp = 0
    if not s["noActivation"]:
        # thresholds in LUTRAM (ram_style_thresholds='distributed'): 2^B-1 thresholds of acc bits
        # per channel, plus one comparator per threshold (lut_estimation thr_luts / comp_luts)
        nthr = 2 ** layer.out_bits - 1
        thr = nthr * acc * math.ceil(tmem / LUTRAM_DEPTH)
        comp = nthr * acc
    c2 = pe * simd * w * math.ceil(wmem / LUTRAM_DEPTH) if cfg.ram_style == "distributed" else 0
    lut = int(LUT_C0 + LUT_C1 * (pe * (mult + adder + acc + thr + comp)) + c2)
    bram = _mvau_bram18(wmem, pe * simd * w) if cfg.ram_style == "block" else 0
    # hls/matrixvectoractivation_hls.py dsp_estimation (resType 'dsp'): P * Q * ceil((W+A)/48)
    dsp = pe * simd * math.ceil((w + a) / DSP_WIDTH) if cfg.resType == "dsp" else 0
    return LayerCost(cycles, lut, bram, 0, dsp, int(LUT_C1 * pe * (thr + comp)))


def _eval_vvau(layer: HWLayer, cfg: LayerConfig) -> LayerCost:
    s = layer.shape
    ch = s["Channels"]
    kh, kw = s["Kernel"]
    oh, ow = s["Dim"]
    pe, simd = cfg.PE, cfg.SIMD
    w, a = layer.w_bits, layer.in_bits
    # vectorvectoractivation.py get_exp_cycles: (Ch * K_h * K_w) / PE / SIMD * H * W
    cycles = int((ch * kh * kw) / pe / simd * oh * ow)
    wmem = (kh * kw * ch // pe) // simd
    tmem = 0 if s["noActivation"] else ch // pe
    acc = s["acc_bits"]
    mult = _mult_luts(simd, w, a) if cfg.resType == "lut" else 0
    adder = (w + a) * (2 * simd - 1)
    if is_xnor(layer):
        mult, adder = 0, _popcount_luts(simd)
    thr = comp = 0
    if not s["noActivation"]:
        nthr = 2 ** layer.out_bits - 1
        # hls/vectorvectoractivation_hls.py lut_estimation: thr_luts = (2^B-1)*acc*TMEM/64
        thr = nthr * acc * tmem / LUTRAM_DEPTH
        comp = nthr * acc
    c2 = pe * simd * w * math.ceil(wmem / LUTRAM_DEPTH) if cfg.ram_style == "distributed" else 0
    lut = int(LUT_C0 + LUT_C1 * (pe * (mult + adder + acc + thr + comp)) + c2)
    bram = _vvau_bram18(wmem, pe * simd * w) if cfg.ram_style == "block" else 0
    # FINN's VVAU_hls.dsp_estimation gives PE * ceil((W+A)/48), leaving SIMD out; that is exact
    # only for SIMD = 1. SIMD unrolls the kernel window into SIMD parallel products, so we count
    # PE * SIMD multipliers, like the MVAU.
    dsp = pe * simd * math.ceil((w + a) / DSP_WIDTH) if cfg.resType == "dsp" else 0
    return LayerCost(cycles, lut, bram, 0, dsp, int(LUT_C1 * pe * (thr + comp)))


# RAMB18 (depth, width) aspect ratios picked by line-buffer depth, as in FINN's
# convolutioninputgenerator.py bram_estimation (UG473 Table 1-10 simple-dual-port widths).
_SWG_RAM_SHAPES = ((512, 36), (1024, 18), (2048, 9), (4096, 4), (8192, 2), (16384, 1))


def _eval_swg(layer: HWLayer, cfg: LayerConfig) -> LayerCost:
    s = layer.shape
    simd = cfg.SIMD
    ch = s["IFMChannels"]
    kh, kw = s["ConvKernelDim"]
    ih, iw = s["IFMDim"]
    oh, ow = s["OFMDim"]
    sh, sw = s["Stride"]
    dh, _ = s["Dilation"]
    a = layer.in_bits
    # convolutioninputgenerator.py get_exp_cycles (2D, mmv = 1), after finn-hlslib slidingwindow.h:
    # IFM_W*K_H*dil_H*Ch/SIMD + OFM_H * max(OFM_W*K_W*K_H*Ch/SIMD, stride_W*IFM_W*Ch/SIMD)
    write_block = ow * kw * kh * (ch / simd)
    read_block = sw * iw * (ch / simd)
    cycles = int(iw * kh * dh * (ch / simd) + oh * max(write_block, read_block))
    # Line buffer: (K_H + stride_H) rows of IFM_W*Ch/SIMD words of SIMD*A bits
    # (convolutioninputgenerator.py bram_estimation / lut_estimation).
    depth = iw * ch / simd
    rows = kh + sh
    lut = LUT_C0
    bram = 0
    if cfg.ram_style == "distributed":
        lut += int(rows * simd * a * math.ceil(depth / LUTRAM_DEPTH))
    else:
        d_cap, w_cap = next(((d, w) for d, w in _SWG_RAM_SHAPES if depth <= d),
                            _SWG_RAM_SHAPES[-1])
        bram = int(rows * math.ceil(simd * a / w_cap) * math.ceil(depth / d_cap))
    return LayerCost(cycles, int(lut), bram, 0, 0)
