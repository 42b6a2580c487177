"""Float (pruned, shrunk) model -> Brevitas quantized twin, walking the edgeprune layer graph.

Design decisions (see docs/fpga_export.md):

* **Raw-pixel input.** The quantized core takes uint8 pixels 0..255 (what a camera or a DMA
  buffer delivers), not pixels/255: its first op is an 8-bit unsigned ``QuantIdentity`` with a
  constant scale of exactly 1, and the 1/255 of the float model's input scaling is folded into the
  first compute layer's weights. `QuantNet.forward` still takes the Trainer's [0, 1] tensors and
  multiplies by 255 on the way in, so QAT uses the ordinary training loop.
  With ``input_bits=1`` (BNN-PYNQ's LFC) the host binarizes the pixels instead: the core takes
  bipolar +-1 pixels (+1 where pixel >= 128, i.e. 2x - 1 >= 0 on [0, 1] pixels, as BNN-PYNQ's
  training scripts do), its first op is the bipolar scale-1 QuantIdentity, and the first layer
  sees 1-bit inputs (an XNOR-popcount layer at 1-bit weights).
* **Power-of-two scales, zero points 0.** Weights are per-tensor, narrow-range, symmetric with a
  power-of-two scale (Brevitas ``*FixedPoint`` quantizers); activations likewise; biases are
  quantized to the accumulator's scale (``Int16Bias``: scale = input scale x weight scale). Every
  tensor is therefore an integer times a power of two, so hls4ml maps each quantizer to an
  ``ap_fixed`` type and the C-simulation is bit-exact (hls4ml's ``QuantToActivation`` /
  ``FuseQuantWithConstant`` handle exactly this case without float rescaling), and FINN's
  streamlining absorbs scales and biases into thresholds.
* **BatchNorm is folded into the preceding conv/linear before QAT.** Both back ends need it
  gone: hls4ml would otherwise keep a float BN between integer layers (not bit-exact), and for
  FINN a folded bias ends in the same MultiThreshold as a streamlined BN would.
* **Activation placement.** Every compute layer except the last gets an activation quantizer
  (``abits``): ``QuantReLU`` (unsigned) when a ReLU/ReLU6 follows it, possibly behind max-pool /
  flatten / dropout (monotonic ops commute with max-pool, so the ReLU moves up to the layer),
  else a signed ``QuantIdentity`` (LeNet-5 has no ReLU after its convolutions). This is FINN's
  MVAU-with-thresholds structure. The last compute layer streams its accumulator (FINN
  ``noActivation=1``), as edgeprune's FPGA cost model assumes.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import torch
import torch.nn as nn

from ..errors import EdgepruneError
from ..graph import LayerGraph, LayerNode, UnsupportedOpError, extract
from ..layergraph import OpKind
from .fpga_support import SUPPORT as FPGA_SUPPORT

# Ops the FPGA path converts (quant/fpga_support.py); others raise UnsupportedOpError naming
# node, op and reason.
SUPPORTED_OPS = tuple(k for k, s in FPGA_SUPPORT.items() if s.supported)
# Ops a ReLU may be moved across (they commute with a monotonic non-decreasing function).
_COMMUTE_WITH_RELU = ("maxpool2d", "flatten", "dropout", "identity")
# Ops a positive scalar (an average pool's 1/N) may be moved across to the next compute layer.
_FOLD_THROUGH = (OpKind.FLATTEN, OpKind.DROPOUT, OpKind.IDENTITY, OpKind.RELU, OpKind.RELU6,
                 OpKind.MAXPOOL2D, OpKind.PAD, OpKind.BATCHNORM)
COMPUTE_KINDS = (OpKind.CONV2D, OpKind.DWCONV2D, OpKind.LINEAR)
MIN_BITS, MAX_BITS = 1, 8
INPUT_BITS = 8          # uint8 pixels
# 1-bit input: pixel >= 128 -> +1, else -1 (sign(2x - 1) on [0, 1] pixels, as BNN-PYNQ's LFC
# training binarizes MNIST; github.com/Xilinx/BNN-PYNQ, bnn/src/training/mnist.py)
BINARIZE_AT = 127.5


def binarize_pixels(x_pixels):
    """uint8-valued pixels (numpy or torch) -> bipolar +-1 float32 (the 1-bit network input)."""
    import numpy as np
    return np.where(np.asarray(x_pixels, dtype=np.float32) >= BINARIZE_AT, 1.0,
                    -1.0).astype(np.float32)
BIPOLAR = 1             # a 1-bit width means bipolar {-1, +1} (QONNX BipolarQuant, FINN BIPOLAR)


class FpgaConversionError(EdgepruneError, ValueError):
    """A model or bit-width choice the FPGA path cannot convert."""


@dataclass
class LayerBits:
    """Bit widths of one compute layer: weights, and its output activation (None = accumulator)."""

    w: int
    a: Optional[int]


@dataclass
class QuantLayerInfo:
    """Where one graph compute node lives in the quantized core."""

    node: str                   # layer-graph node name (e.g. 'conv1')
    index: int                  # position of its QuantConv2d/QuantLinear in `core`
    kind: str                   # 'conv2d' | 'dwconv2d' | 'linear'
    bits: LayerBits
    act: str                    # 'relu' (unsigned) | 'identity' (signed) | 'none' (accumulator)
                                # | 'merge' (quantized by the add/concat's shared quantizer)
    weight_shape: Tuple[int, ...]


@dataclass
class SumPoolInfo:
    """An average pool in the quantized core: an all-ones depthwise convolution (the exact
    window sum) and its requantizer; the 1/N is in the next compute layer's weights."""

    node: str                   # layer-graph node name (e.g. 'pool')
    index: int                  # position of its summing QuantConv2d in `core`
    kernel: Tuple[int, int]
    abits: int                  # bits of the requantized sum
    signed: bool


def parse_bits_map(spec: Optional[Mapping], graph: LayerGraph) -> Dict[str, Dict[str, int]]:
    """Validate a per-layer bit map ``{node: {"w": 4, "a": 4}}`` against the graph."""
    out: Dict[str, Dict[str, int]] = {}
    names = {n.name for n in graph.compute_nodes()}
    for name, v in dict(spec or {}).items():
        if name not in names:
            raise FpgaConversionError(
                f"per-layer bit map names '{name}', which is not a conv/linear layer of this model "
                f"(layers: {', '.join(sorted(names))})")
        if not isinstance(v, Mapping) or not set(v) <= {"w", "a"}:
            raise FpgaConversionError(f"per-layer bit map entry for '{name}' must be like "
                                      f'{{"w": 4, "a": 4}}, got {v!r}')
        out[name] = {k: _check_bits(b, f"{name}.{k}") for k, b in v.items()}
    return out


def _check_bits(b, what: str) -> int:
    if isinstance(b, bool) or not isinstance(b, int) or not MIN_BITS <= b <= MAX_BITS:
        raise FpgaConversionError(
            f"{what}: bit width must be an integer in {MIN_BITS}..{MAX_BITS} (1 = bipolar), "
            f"got {b!r}")
    return b


# --------------------------------------------------------------------------------------------
# Quantizers (Brevitas injectors, specialised by bit width)

def _quantizers():
    """Import Brevitas lazily (heavy) and build the quantizer families."""
    from brevitas.core.scaling import ScalingImplType
    from brevitas.quant import (Int8ActPerTensorFixedPoint, Int8WeightPerTensorFixedPoint,
                                Int16Bias, SignedBinaryActPerTensorConst,
                                SignedBinaryWeightPerTensorConst, Uint8ActPerTensorFixedPoint)

    # 1 bit = bipolar {-1, +1} with a constant scale of 1 (Brevitas' binary quantizers, exported
    # as QONNX BipolarQuant): x >= 0 -> +1, else -1. Scale 1 keeps every accumulator an integer
    # (hls4ml maps a scale-1 BipolarQuant to its binary types; FINN to BIPOLAR / XNOR layers).
    bin_w = type("EdgepruneWBipolar", (SignedBinaryWeightPerTensorConst,), {"scaling_const": 1.0})
    bin_a = type("EdgepruneABipolar", (SignedBinaryActPerTensorConst,), {"scaling_const": 1.0})

    def weight(bits: int):
        if bits == BIPOLAR:
            return bin_w
        return type(f"EdgepruneW{bits}", (Int8WeightPerTensorFixedPoint,), {"bit_width": bits})

    def act_signed(bits: int):
        if bits == BIPOLAR:
            return bin_a
        return type(f"EdgepruneA{bits}", (Int8ActPerTensorFixedPoint,), {"bit_width": bits})

    def act_unsigned(bits: int):
        # A 1-bit activation is bipolar even where a ReLU was (a BNN's sign activation): FINN's
        # XNOR-popcount layers need BIPOLAR inputs. The caller emits a QuantIdentity then.
        if bits == BIPOLAR:
            return bin_a
        return type(f"EdgepruneU{bits}", (Uint8ActPerTensorFixedPoint,), {"bit_width": bits})

    # Input: uint8 pixels with a constant scale of 255/255 = 1 -> identity on integers 0..255.
    pixel = type("EdgeprunePixelU8", (Uint8ActPerTensorFixedPoint,),
                 {"bit_width": INPUT_BITS, "scaling_impl_type": ScalingImplType.CONST,
                  "scaling_const": float(2 ** INPUT_BITS - 1),
                  "max_val": float(2 ** INPUT_BITS - 1)})
    return weight, act_signed, act_unsigned, pixel, Int16Bias


# --------------------------------------------------------------------------------------------
# The quantized network

class QuantNet(nn.Module):
    """The Brevitas twin. ``core`` takes raw pixels (0..255; +-1 with ``input_bits=1``) and is
    what gets exported; ``forward`` takes the Trainer's [0, 1] pixels so QAT reuses edgeprune's
    training loop."""

    def __init__(self, core: nn.Module, input_shape: Sequence[int],
                 layers: List[QuantLayerInfo], wbits: int, abits: int, source_graph: LayerGraph,
                 sum_pools: Sequence[SumPoolInfo] = (), input_bits: int = INPUT_BITS):
        super().__init__()
        self.input_bits = input_bits
        self.sum_pools = list(sum_pools)
        self.core = core
        self.input_shape = tuple(int(d) for d in input_shape)
        self.layers = layers
        self.wbits = wbits
        self.abits = abits
        self.source_graph = source_graph

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Trainer inputs are k/255 in float32; *255 and the scale-1 input quantizer's rounding
        # give back exactly k. 1-bit input: the host's binarization (see binarize_pixels).
        if self.input_bits == BIPOLAR:
            return self.core(torch.where(x * 255.0 >= BINARIZE_AT, 1.0, -1.0))
        return self.core(x * 255.0)

    def bits_map(self) -> Dict[str, Dict[str, Optional[int]]]:
        return {l.node: {"w": l.bits.w, "a": l.bits.a} for l in self.layers}

    @torch.no_grad()
    def output_scale(self) -> float:
        """Scale of the last layer's accumulator (input scale x weight scale, a power of two):
        core(x) / output_scale() is an integer tensor."""
        idx = self.layers[-1].index
        return float(self.core[idx].quant_weight().scale) * _input_scale_of(self.core, idx)


@torch.no_grad()
def _input_scale_of(core: nn.Module, index: int) -> float:
    """Scale of the QuantTensor that module `index` of the core receives."""
    seen = []
    h = core[index].register_forward_pre_hook(lambda m, args: seen.append(args[0]))
    was_training = core.training
    core.eval()
    try:
        core(torch.zeros((1,) + tuple(core._edgeprune_input_shape)))
    finally:
        h.remove()
        core.train(was_training)
    return float(seen[0].scale)


def _fold_bn(w: torch.Tensor, b: Optional[torch.Tensor], bn: nn.Module) -> Tuple[torch.Tensor, torch.Tensor]:
    """Fold an eval-mode BatchNorm into the producing layer's weight and bias."""
    std = torch.sqrt(bn.running_var + bn.eps)
    gamma = bn.weight if bn.weight is not None else torch.ones_like(std)
    beta = bn.bias if bn.bias is not None else torch.zeros_like(std)
    scale = gamma / std
    shape = (-1,) + (1,) * (w.dim() - 1)
    w2 = w * scale.reshape(shape)
    b0 = b if b is not None else torch.zeros_like(bn.running_mean)
    b2 = (b0 - bn.running_mean) * scale + beta
    return w2, b2


class QuantGraph(nn.Module):
    """The quantized core as a dataflow graph: ``mods`` in graph (= ONNX export) order and the
    wiring ``steps``: (output tensor, index into ``mods``, input tensors). A module that appears
    in several steps is *shared* (one quantizer, one scale: the residual-add / concat rule).
    ``core[i]`` and ``iter(core)`` reach the modules as a Sequential would."""

    def __init__(self, mods: List[nn.Module], steps: List[Tuple[str, int, Tuple[str, ...]]],
                 output: str, input_shape: Sequence[int]):
        super().__init__()
        self.mods = nn.ModuleList(mods)
        self.steps = [(o, int(i), tuple(ins)) for o, i, ins in steps]
        self.output = output
        self._edgeprune_input_shape = tuple(input_shape)

    def __getitem__(self, i: int) -> nn.Module:
        return self.mods[i]

    def __len__(self) -> int:
        return len(self.mods)

    def __iter__(self):
        return iter(self.mods)

    def forward(self, x):
        env = {INPUT_TENSOR: x}
        for out, idx, ins in self.steps:
            env[out] = self.mods[idx](*[env[i] for i in ins])
        return env[self.output]


INPUT_TENSOR = "__input__"


class _Add(nn.Module):
    """Element-wise sum of two quantized tensors that share one quantizer (equal scales)."""

    def forward(self, a, b):
        return a + b


class _Concat(nn.Module):
    """Channel concatenation of quantized tensors that share one quantizer."""

    def forward(self, *xs):
        return torch.cat(list(xs), dim=1)


class _SignBatchNorm(nn.Module):
    """A training-time BatchNorm in front of the sign of a 1-bit-weight, 1-bit-activation layer
    (a BNN layer: FINN's LFC/CNV train with BatchNorm there, and FINN turns BatchNorm + sign into
    a threshold). Without it the sign's straight-through estimator, which passes gradients only
    for |x| <= 1, sees accumulators of +-sqrt(fan-in) and passes almost none: the layer does not
    learn. `fold_sign_batchnorms` folds it into the layer's integer bias (and weight signs) after
    QAT and puts the bare sign quantizer back at this index, so the exported graph is the usual
    conv/linear -> BipolarQuant."""

    def __init__(self, channels: int, conv: bool, layer_index: int, quant: nn.Module):
        super().__init__()
        self.bn = nn.BatchNorm2d(channels) if conv else nn.BatchNorm1d(channels)
        self.quant = quant
        self.layer_index = layer_index

    def forward(self, x):
        return self.quant(self.bn(x.value if hasattr(x, "value") else x))


def _commutes_with_relu(n: LayerNode) -> bool:
    return n.op in _COMMUTE_WITH_RELU


def _single_consumer(graph: LayerGraph, name: str) -> Optional[LayerNode]:
    c = graph.consumers(name)
    return c[0] if len(c) == 1 else None


def _skip_noops(graph: LayerGraph, name: str) -> Optional[LayerNode]:
    """The single consumer of `name`, looking through dropout/identity."""
    c = _single_consumer(graph, name)
    while c is not None and c.op in (OpKind.DROPOUT, OpKind.IDENTITY):
        c = _single_consumer(graph, c.name)
    return c


def _check_node(n: LayerNode) -> None:
    if n.op not in SUPPORTED_OPS:
        raise UnsupportedOpError(
            f"node '{n.name}' ({n.op}): not supported by the FPGA export path: "
            f"{FPGA_SUPPORT[n.op].note} (supported: "
            f"{', '.join(o for o in SUPPORTED_OPS if o not in ('input', 'output'))})")
    if n.op in (OpKind.CONV2D, OpKind.DWCONV2D):
        if n.op == OpKind.CONV2D and int(n.attrs.get("groups", 1)) != 1:
            raise UnsupportedOpError(f"node '{n.name}': grouped convolution is not supported by "
                                     f"the FPGA export path (dense and depthwise only)")
        if tuple(n.attrs.get("dilation", (1, 1))) != (1, 1):
            raise UnsupportedOpError(f"node '{n.name}': dilated convolution is not supported by "
                                     f"the FPGA export path")
    if n.op == OpKind.CONCAT and int(n.attrs.get("dim", 1)) not in (1, -3):
        raise UnsupportedOpError(f"node '{n.name}': concatenation along an axis other than "
                                 f"channels is not supported by the FPGA export path")


def _pool_window(n: LayerNode) -> Tuple[Tuple[int, int], Tuple[int, int], Tuple[int, int]]:
    """(kernel, stride, padding) of an average pool; global pooling is a window over the map."""
    c, h, w = n.in_shape
    if n.op == OpKind.GAP:
        return (int(h), int(w)), (int(h), int(w)), (0, 0)

    def pair(v, default):
        v = default if v is None else v
        return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))
    k = pair(n.attrs.get("kernel_size"), 1)
    s = pair(n.attrs.get("stride"), k)
    p = pair(n.attrs.get("padding"), 0)
    if not n.attrs.get("count_include_pad", True) and p != (0, 0):
        raise UnsupportedOpError(f"node '{n.name}': average pooling with padding and "
                                 f"count_include_pad=False is not supported by the FPGA path")
    return k, s, p


def _pair(v) -> Tuple[int, int]:
    if isinstance(v, str):          # 'same' / 'valid'
        return (0, 0) if v == "valid" else (1, 1)
    return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))


def _ones_quant():
    """Weight quantizer of the summing convolution: 2-bit narrow signed, constant scale 1, so
    the all-ones kernel is integer 1 exactly (and stays 1: it is not trained). Brevitas'
    fixed-point signed quantizers divide the constant by 2^(bits-1) (not by the narrow range's
    maximum 1), so a scale of 1 needs the constant 2 (tests/test_fpga_zoo.py checks the scale)."""
    from brevitas.core.scaling import ScalingImplType
    from brevitas.quant import Int8WeightPerTensorFixedPoint
    return type("EdgepruneOnes", (Int8WeightPerTensorFixedPoint,),
                {"bit_width": 2, "scaling_impl_type": ScalingImplType.CONST,
                 "scaling_const": 2.0})


def to_brevitas(model: nn.Module, *, wbits: int = 4, abits: int = 4,
                per_layer: Optional[Mapping] = None,
                input_shape: Optional[Sequence[int]] = None,
                input_bits: int = INPUT_BITS) -> QuantNet:
    """Convert a float model into its Brevitas quantized twin (weights copied, BN folded),
    walking its layer graph: chains, residual adds, concats, depthwise convolutions, average /
    global average pooling and padding.

    wbits/abits: default bit widths (1..8, 1 = bipolar); input_bits: 8 (uint8 pixels) or 1
    (bipolar pixels, binarized on the host: BNN-PYNQ's LFC); per_layer: ``{node: {"w": b, "a": b}}`` overrides,
    keyed by layer-graph node name. Raises UnsupportedOpError / FpgaConversionError (both
    EdgepruneError) naming the cause.

    Rules (see the module docstring and docs/fpga_export.md):
    * every conv/linear gets its BN folded and an activation quantizer: its ReLU (moved up
      across max-pool/flatten/dropout), else a signed QuantIdentity; none when its output
      feeds an add/concat (the merge's shared quantizer quantizes it) or when it is the last
      compute layer and reaches the output (accumulator out, FINN noActivation=1);
    * add / concat: one quantizer instance (signed, `abits`) applied to every input, so the
      inputs have equal scale and sign, as FINN's AddStreams / StreamingConcat need;
    * average pooling (windowed or global) is an exact window sum - a depthwise convolution
      with a constant all-ones kernel - followed by a requantizer; the 1/N of the average is
      folded into the next conv/linear layer's float weights (it must be reachable through
      flatten/dropout/ReLU/max-pool/pad only).
    """
    import brevitas.nn as qnn

    wbits = _check_bits(wbits, "--wbits")
    abits = _check_bits(abits, "--abits")
    if input_bits not in (INPUT_BITS, BIPOLAR):
        raise FpgaConversionError(f"input bits must be {INPUT_BITS} (uint8 pixels) or 1 "
                                  f"(binarized pixels), got {input_bits}")
    # A GraphModule (a loaded .pt2) does not keep instance attributes through deepcopy.
    input_shape = input_shape if input_shape is not None else getattr(model, "input_shape", None)
    model = copy.deepcopy(model).eval()
    graph = extract(model, input_shape)
    shape = graph.input_shape
    if len(shape) not in (1, 3):
        raise FpgaConversionError(f"the FPGA path needs an image (C, H, W) or a feature vector "
                                  f"(F,) input, got {shape}")
    bits_over = parse_bits_map(per_layer, graph)
    for n in graph.nodes:
        _check_node(n)
    modules = dict(graph.gm.named_modules())
    Wq, Aq, Uq, PixelQ, BiasQ = _quantizers()
    compute = [n for n in graph.nodes if n.op in COMPUTE_KINDS]
    if not compute:
        raise FpgaConversionError("the model has no conv/linear layer to put on the FPGA")
    last_compute = compute[-1].name

    # --- decide, per compute layer, which BN and ReLU it absorbs and what quantizes its output
    bn_of: Dict[str, LayerNode] = {}
    relu_of: Dict[str, LayerNode] = {}
    absorbed: set = set()
    for n in compute:
        tail = n
        c = _single_consumer(graph, n.name)
        if c is not None and c.op == OpKind.BATCHNORM:
            bn_of[n.name] = c
            absorbed.add(c.name)
            tail = c
        c = _single_consumer(graph, tail.name)
        while c is not None and _commutes_with_relu(c):
            c = _single_consumer(graph, c.name)
        if c is not None and c.op in (OpKind.RELU, OpKind.RELU6):
            relu_of[n.name] = c
            absorbed.add(c.name)
    for n in graph.nodes:
        if n.op == OpKind.BATCHNORM and n.name not in absorbed:
            raise UnsupportedOpError(f"node '{n.name}': BatchNorm not directly after a "
                                     f"conv/linear cannot be folded")

    # --- the 1/N of every average pool goes into the next compute layer's weights
    weight_gain: Dict[str, float] = {}
    for n in graph.nodes:
        if n.op not in (OpKind.AVGPOOL2D, OpKind.GAP):
            continue
        k, _, _ = _pool_window(n)
        c = _single_consumer(graph, n.name)
        while c is not None and c.op in _FOLD_THROUGH:
            c = _single_consumer(graph, c.name)
        if c is None or c.op not in COMPUTE_KINDS:
            raise UnsupportedOpError(
                f"node '{n.name}' ({n.op}): the FPGA path sums the pooling window and folds the "
                f"1/{k[0] * k[1]} into the next conv/linear layer, but '{n.name}' does not lead "
                f"to one through flatten/dropout/ReLU/max-pool/pad only")
        weight_gain[c.name] = weight_gain.get(c.name, 1.0) / float(k[0] * k[1])

    mods: List[nn.Module] = []
    steps: List[Tuple[str, int, Tuple[str, ...]]] = []
    infos: List[QuantLayerInfo] = []
    sums: List[SumPoolInfo] = []
    tensor: Dict[str, str] = {}     # graph node -> tensor name in the QuantGraph
    signed: Dict[str, bool] = {}    # graph node -> its quantized output is signed
    merge_quant: Dict[str, int] = {}  # add/concat node -> its shared quantizer's index
    bipolar: Dict[str, bool] = {}   # graph node -> its output is a bipolar (+-1) tensor

    def emit(out: str, mod: Optional[nn.Module], ins: Sequence[str], index: Optional[int] = None) -> int:
        if index is None:
            mods.append(mod)
            index = len(mods) - 1
        steps.append((out, index, tuple(ins)))
        return index

    def no_bipolar(node: LayerNode, b: int) -> int:
        if b == BIPOLAR:
            raise FpgaConversionError(
                f"node '{node.name}' ({node.op}): a 1-bit (bipolar) output is supported after "
                f"conv/linear layers only; give it >= 2 bits with --bits-map")
        return b

    def merge_quantizer(m: LayerNode) -> int:
        if m.name not in merge_quant:
            ov = bits_over.get(m.name, {})
            no_bipolar(m, ov.get("a", abits))
            mods.append(qnn.QuantIdentity(act_quant=Aq(ov.get("a", abits)),
                                          return_quant_tensor=True))
            merge_quant[m.name] = len(mods) - 1
        return merge_quant[m.name]

    in_bipolar = input_bits == BIPOLAR
    emit(INPUT_TENSOR + "q", qnn.QuantIdentity(act_quant=Aq(BIPOLAR) if in_bipolar else PixelQ,
                                               return_quant_tensor=True), [INPUT_TENSOR])
    first_compute_seen = False
    for n in graph.nodes:
        if n.op == OpKind.INPUT:
            tensor[n.name] = INPUT_TENSOR + "q"
            signed[n.name] = in_bipolar
            bipolar[n.name] = in_bipolar
            continue
        if n.op == OpKind.OUTPUT:
            continue
        src = n.inputs[0] if n.inputs else None
        if n.name in absorbed:                      # BN / ReLU folded into their producer
            tensor[n.name] = tensor[src]
            signed[n.name] = signed[src]
            bipolar[n.name] = bipolar.get(src, False)
            continue
        if bipolar.get(src) and (n.op == OpKind.PAD or (n.op in COMPUTE_KINDS and n.op != OpKind.LINEAR
                                 and any(int(p) for p in _pair(modules[n.target].padding)))):
            raise FpgaConversionError(
                f"node '{n.name}': zero padding of a 1-bit (bipolar +-1) tensor is not "
                f"representable (0 is not a bipolar value; FINN and hls4ml would pad with -1)")
        if bipolar.get(src) and n.op in (OpKind.ADD, OpKind.CONCAT, OpKind.AVGPOOL2D, OpKind.GAP):
            raise FpgaConversionError(
                f"node '{n.name}' ({n.op}): not supported on 1-bit (bipolar) activations by the "
                f"FPGA path; give it >= 2 bits with --bits-map")
        if n.op in COMPUTE_KINDS:
            mod = modules[n.target]
            w = mod.weight.detach().clone()
            b = mod.bias.detach().clone() if mod.bias is not None else None
            if n.name in bn_of:
                w, b = _fold_bn(w, b, modules[bn_of[n.name].target])
            if not first_compute_seen:
                if in_bipolar:
                    # +-1 in for x in [0, 1]: x ~ (b + 1) / 2, so w x = (w / 2) b + sum(w) / 2
                    half = w / 2
                    extra = half.reshape(half.shape[0], -1).sum(1)
                    b = extra if b is None else b + extra     # (a bias is added if none)
                    w = half
                else:
                    w = w / float(2 ** INPUT_BITS - 1)   # raw pixels in, same function out
                first_compute_seen = True
            if n.name in weight_gain:
                w = w * weight_gain[n.name]           # the average pool's 1/N
            ov = bits_over.get(n.name, {})
            relu = relu_of.get(n.name)
            tail = bn_of.get(n.name, n)
            nxt = _skip_noops(graph, tail.name)
            to_merge = relu is None and nxt is not None and nxt.op in (OpKind.ADD, OpKind.CONCAT)
            reaches_output = relu is None and not to_merge and n.name == last_compute
            if relu is not None:
                a_bits, act = ov.get("a", abits), "relu"
            elif to_merge or reaches_output:
                a_bits, act = None, ("merge" if to_merge else "none")
            else:
                a_bits, act = ov.get("a", abits), "identity"
            bits = LayerBits(ov.get("w", wbits), a_bits)
            quant_out = not reaches_output
            sign_bn = bits.w == BIPOLAR and a_bits == BIPOLAR and act in ("relu", "identity")
            if sign_bn and b is None:
                b = torch.zeros(w.shape[0])    # the folded BatchNorm's threshold lands here
            if n.op == OpKind.LINEAR:
                q = qnn.QuantLinear(mod.in_features, mod.out_features, bias=b is not None,
                                    weight_quant=Wq(bits.w), bias_quant=BiasQ,
                                    return_quant_tensor=quant_out)
            else:
                q = qnn.QuantConv2d(mod.in_channels, mod.out_channels, mod.kernel_size,
                                    stride=mod.stride, padding=mod.padding, groups=mod.groups,
                                    bias=b is not None, weight_quant=Wq(bits.w),
                                    bias_quant=BiasQ, return_quant_tensor=quant_out)
            with torch.no_grad():
                q.weight.copy_(w)
                if b is not None:
                    q.bias.copy_(b)
            idx = emit(n.name + ":acc", q, [tensor[src]])
            infos.append(QuantLayerInfo(n.name, idx, n.op, bits, act, tuple(w.shape)))
            out = n.name + ":acc"
            sign = None
            if a_bits == BIPOLAR and act in ("relu", "identity"):
                # sign activation (in place of ReLU + 1-bit quantizer, which would give +1
                # always), trained behind a BatchNorm when the weights are 1-bit too
                sign = qnn.QuantIdentity(act_quant=Aq(a_bits), return_quant_tensor=True)
                if sign_bn:
                    sign = _SignBatchNorm(int(w.shape[0]), n.op != OpKind.LINEAR, idx, sign)
            if sign is not None:
                emit(n.name, sign, [out])
                out = n.name
            elif relu is not None:
                emit(n.name, qnn.QuantReLU(act_quant=Uq(a_bits), return_quant_tensor=True), [out])
                out = n.name
            elif act == "identity":
                emit(n.name, qnn.QuantIdentity(act_quant=Aq(a_bits), return_quant_tensor=True),
                     [out])
                out = n.name
            tensor[n.name] = out
            signed[n.name] = relu is None or a_bits == BIPOLAR
            bipolar[n.name] = a_bits == BIPOLAR
            continue
        if n.op in (OpKind.RELU, OpKind.RELU6):
            # A ReLU no compute layer absorbed (after an add, or right after the input).
            emit(n.name, qnn.QuantReLU(act_quant=Uq(no_bipolar(n, bits_over.get(n.name, {}).get("a", abits))),
                                       return_quant_tensor=True), [tensor[src]])
            tensor[n.name], signed[n.name] = n.name, False
            continue
        if n.op in (OpKind.ADD, OpKind.CONCAT):
            qi = merge_quantizer(n)
            ins = []
            for i, name in enumerate(n.inputs):
                t = f"{n.name}:in{i}"
                emit(t, None, [tensor[name]], index=qi)
                ins.append(t)
            emit(n.name, _Add() if n.op == OpKind.ADD else _Concat(), ins)
            tensor[n.name], signed[n.name] = n.name, True
            continue
        if n.op in (OpKind.AVGPOOL2D, OpKind.GAP):
            c = int(n.in_shape[0])
            k, s, p = _pool_window(n)
            summ = qnn.QuantConv2d(c, c, k, stride=s, padding=p, groups=c, bias=False,
                                   weight_quant=_ones_quant(), return_quant_tensor=True)
            with torch.no_grad():
                summ.weight.fill_(1.0)
            summ.weight.requires_grad_(False)
            idx = emit(n.name + ":sum", summ, [tensor[src]])
            a_bits = no_bipolar(n, bits_over.get(n.name, {}).get("a", abits))
            req = (Aq if signed[src] else Uq)(a_bits)
            emit(n.name, qnn.QuantIdentity(act_quant=req, return_quant_tensor=True),
                 [n.name + ":sum"])
            sums.append(SumPoolInfo(n.name, idx, k, a_bits, signed[src]))
            tensor[n.name], signed[n.name] = n.name, signed[src]
            continue
        if n.op == OpKind.MAXPOOL2D:
            k, s, p = n.attrs["kernel_size"], n.attrs["stride"], n.attrs["padding"]
            emit(n.name, nn.MaxPool2d(k, s, p), [tensor[src]])
        elif n.op == OpKind.PAD:
            emit(n.name, nn.ZeroPad2d(tuple(int(v) for v in n.attrs["padding"])), [tensor[src]])
        elif n.op == OpKind.FLATTEN:
            emit(n.name, nn.Flatten(), [tensor[src]])
        elif n.op in (OpKind.DROPOUT, OpKind.IDENTITY):
            tensor[n.name], signed[n.name] = tensor[src], signed[src]
            bipolar[n.name] = bipolar.get(src, False)
            continue
        elif n.op == OpKind.SOFTMAX:
            if graph.consumers(n.name)[0].op != OpKind.OUTPUT:
                raise UnsupportedOpError(f"node '{n.name}': softmax inside the network is not "
                                         f"supported by the FPGA export path")
            tensor[n.name], signed[n.name] = tensor[src], signed[src]
            continue  # argmax-invariant; left to the host (FINN and hls4ml alike)
        else:
            raise UnsupportedOpError(f"node '{n.name}' ({n.op}): not supported by the FPGA path")
        tensor[n.name], signed[n.name] = n.name, signed[src]
        bipolar[n.name] = bipolar.get(src, False)
    out_node = graph.output_node
    final = tensor[out_node.inputs[0]]
    if final != last_compute + ":acc":
        raise FpgaConversionError(
            f"the model output must be the accumulator of its last conv/linear layer "
            f"('{last_compute}'); here it is '{out_node.inputs[0]}' (an activation, pool or add "
            f"after the last layer is not supported by the FPGA export path)")
    core = QuantGraph(mods, steps, final, shape)
    return QuantNet(core, shape, infos, wbits, abits, graph, sums, input_bits=input_bits)


@torch.no_grad()
def calibrate(qnet: QuantNet, x01: torch.Tensor, batch_size: int = 256, batches: int = 4) -> None:
    """Initialise activation scales from data (Brevitas calibration mode)."""
    from brevitas.graph.calibrate import calibration_mode

    qnet.eval()
    with calibration_mode(qnet):
        for i in range(batches):
            xb = x01[i * batch_size:(i + 1) * batch_size]
            if len(xb) == 0:
                break
            qnet(xb)


@torch.no_grad()
def fold_sign_batchnorms(qnet: QuantNet) -> int:
    """Fold each training-time `_SignBatchNorm` (eval statistics) into its layer and put the bare
    sign quantizer back; returns how many were folded. Exact: with y = the layer's output
    (s * an integer accumulator A, plus its quantized bias b) and the BatchNorm's gamma, beta,
    mean mu, std sd, sign(BN(y)) (x >= 0 -> +1) is A >= ceil((T - b) / s) for gamma > 0 and
    A <= floor((T - b) / s) for gamma < 0, T = mu - beta * sd / gamma. So the layer gets the
    integer bias -K * s (K that ceiling, or minus that floor with the row's weights negated),
    clamped to Int16Bias' range; gamma = 0 gives a constant sign."""
    core, folded = qnet.core, 0
    for j, m in enumerate(list(core.mods)):
        if not isinstance(m, _SignBatchNorm):
            continue
        layer, bn = core[m.layer_index], m.bn
        s = float(layer.quant_weight().scale.reshape(-1)[0]) * _input_scale_of(core, m.layer_index)
        lim = 2 ** 15 - 1
        b_q = torch.clamp(torch.round(layer.bias / s), -lim - 1, lim) * s
        sd = torch.sqrt(bn.running_var + bn.eps)
        g, beta, mu = bn.weight, bn.bias, bn.running_mean
        safe_g = torch.where(g == 0, torch.ones_like(g), g)
        u = (mu - beta * sd / safe_g - b_q) / s
        k = torch.where(g > 0, torch.ceil(u), -torch.floor(u))
        k = torch.where(g == 0, torch.where(beta >= 0, -float(lim), float(lim)), k)
        k = torch.clamp(k, -lim, lim)
        flip = (g < 0).reshape((-1,) + (1,) * (layer.weight.dim() - 1))
        w = layer.weight
        # a latent 0 is +1 (binary_sign: x >= 0 -> +1); negated it must become -1
        neg = torch.where(w == 0, torch.full_like(w, -1e-3), -w)
        layer.weight.copy_(torch.where(flip, neg, w))
        layer.bias.copy_(-k * s)
        core.mods[j] = m.quant
        folded += 1
    return folded


def zero_masks(qnet: QuantNet) -> Dict[int, torch.Tensor]:
    """Per compute layer (core index): True where the float weight is non-zero (not pruned)."""
    return {l.index: (qnet.core[l.index].weight.detach() != 0) for l in qnet.layers}


@torch.no_grad()
def integer_weights(qnet: QuantNet) -> Dict[str, torch.Tensor]:
    """Each compute layer's quantized weights as integers (weight / scale)."""
    out = {}
    for l in qnet.layers:
        m = qnet.core[l.index]
        qw = m.quant_weight()
        out[l.node] = torch.round(qw.value / qw.scale).to(torch.int32)
    return out
