"""Float (pruned, shrunk) model -> Brevitas quantized twin, walking the edgeprune layer graph.

Design decisions (see docs/fpga_export.md):

* **Raw-pixel input.** The quantized core takes uint8 pixels 0..255 (what a camera or a DMA
  buffer delivers), not pixels/255: its first op is an 8-bit unsigned ``QuantIdentity`` with a
  constant scale of exactly 1, and the 1/255 of the float model's input scaling is folded into the
  first compute layer's weights. `QuantNet.forward` still takes the Trainer's [0, 1] tensors and
  multiplies by 255 on the way in, so QAT uses the ordinary training loop.
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
MIN_BITS, MAX_BITS = 2, 8
INPUT_BITS = 8          # uint8 pixels


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
    kind: str                   # 'conv2d' | 'linear'
    bits: LayerBits
    act: str                    # 'relu' (unsigned) | 'identity' (signed) | 'none' (accumulator)
    weight_shape: Tuple[int, ...]


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
            f"{what}: bit width must be an integer in {MIN_BITS}..{MAX_BITS}, got {b!r} "
            f"(1-bit/bipolar layers are not supported by the bit-exact hls4ml path)")
    return b


# --------------------------------------------------------------------------------------------
# Quantizers (Brevitas injectors, specialised by bit width)

def _quantizers():
    """Import Brevitas lazily (heavy) and build the quantizer families."""
    from brevitas.core.scaling import ScalingImplType
    from brevitas.quant import (Int8ActPerTensorFixedPoint, Int8WeightPerTensorFixedPoint,
                                Int16Bias, Uint8ActPerTensorFixedPoint)

    def weight(bits: int):
        return type(f"EdgepruneW{bits}", (Int8WeightPerTensorFixedPoint,), {"bit_width": bits})

    def act_signed(bits: int):
        return type(f"EdgepruneA{bits}", (Int8ActPerTensorFixedPoint,), {"bit_width": bits})

    def act_unsigned(bits: int):
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
    """The Brevitas twin. ``core`` takes raw pixels (0..255) and is what gets exported;
    ``forward`` takes the Trainer's [0, 1] pixels so QAT reuses edgeprune's training loop."""

    def __init__(self, core: nn.Sequential, input_shape: Sequence[int],
                 layers: List[QuantLayerInfo], wbits: int, abits: int, source_graph: LayerGraph):
        super().__init__()
        self.core = core
        self.input_shape = tuple(int(d) for d in input_shape)
        self.layers = layers
        self.wbits = wbits
        self.abits = abits
        self.source_graph = source_graph

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Trainer inputs are k/255 in float32; *255 and the scale-1 input quantizer's rounding
        # give back exactly k.
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
def _input_scale_of(core: nn.Sequential, index: int) -> float:
    x = torch.zeros((1,) + tuple(core._edgeprune_input_shape))
    for i, m in enumerate(core):
        if i == index:
            return float(x.scale)
        x = m(x)
    raise IndexError(index)


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


def _chain(graph: LayerGraph) -> List[LayerNode]:
    """The graph's nodes as a single chain; raise naming the first fork or unsupported op."""
    for n in graph.nodes:
        if n.op not in SUPPORTED_OPS:
            raise UnsupportedOpError(
                f"node '{n.name}' ({n.op}): not supported by the FPGA export path: "
                f"{FPGA_SUPPORT[n.op].note} (supported: "
                f"{', '.join(o for o in SUPPORTED_OPS if o not in ('input', 'output'))})")
        if n.op == OpKind.CONV2D and int(n.attrs.get("groups", 1)) != 1:
            raise UnsupportedOpError(f"node '{n.name}': grouped convolution is not supported by "
                                     f"the FPGA export path")
        if n.op == OpKind.CONV2D and tuple(n.attrs.get("dilation", (1, 1))) != (1, 1):
            raise UnsupportedOpError(f"node '{n.name}': dilated convolution is not supported by "
                                     f"the FPGA export path")
        if len(n.inputs) > 1 or len(graph.consumers(n.name)) > 1:
            raise UnsupportedOpError(f"node '{n.name}': branching graphs (residual add, concat, "
                                     f"shared tensors) are not supported by the FPGA export path")
    return list(graph.nodes)


def to_brevitas(model: nn.Module, *, wbits: int = 4, abits: int = 4,
                per_layer: Optional[Mapping] = None,
                input_shape: Optional[Sequence[int]] = None) -> QuantNet:
    """Convert a float model into its Brevitas quantized twin (weights copied, BN folded).

    wbits/abits: default bit widths (2..8); per_layer: ``{node: {"w": b, "a": b}}`` overrides,
    keyed by layer-graph node name. Raises UnsupportedOpError / FpgaConversionError (both
    EdgepruneError) naming the cause.
    """
    import brevitas.nn as qnn

    wbits = _check_bits(wbits, "--wbits")
    abits = _check_bits(abits, "--abits")
    # A GraphModule (a loaded .pt2) does not keep instance attributes through deepcopy.
    input_shape = input_shape if input_shape is not None else getattr(model, "input_shape", None)
    model = copy.deepcopy(model).eval()
    graph = extract(model, input_shape)
    shape = graph.input_shape
    if len(shape) != 3:
        raise FpgaConversionError(f"the FPGA path needs an image input (C, H, W), got {shape}")
    bits_over = parse_bits_map(per_layer, graph)
    nodes = _chain(graph)
    modules = dict(graph.gm.named_modules())
    Wq, Aq, Uq, PixelQ, BiasQ = _quantizers()
    compute = [n for n in nodes if n.op in (OpKind.CONV2D, OpKind.LINEAR)]
    if not compute:
        raise FpgaConversionError("the model has no conv/linear layer to put on the FPGA")
    last_compute = compute[-1].name

    # Which ReLU belongs to which compute layer (moved up across max-pool/flatten/dropout).
    relu_of: Dict[str, LayerNode] = {}
    absorbed: set = set()
    bn_of: Dict[str, LayerNode] = {}
    for i, n in enumerate(nodes):
        if n.op not in (OpKind.CONV2D, OpKind.LINEAR):
            continue
        j = i + 1
        if j < len(nodes) and nodes[j].op == OpKind.BATCHNORM:
            bn_of[n.name] = nodes[j]
            absorbed.add(nodes[j].name)
            j += 1
        while j < len(nodes) and nodes[j].op in _COMMUTE_WITH_RELU:
            j += 1
        if j < len(nodes) and nodes[j].op in (OpKind.RELU, OpKind.RELU6):
            relu_of[n.name] = nodes[j]
            absorbed.add(nodes[j].name)

    layers: List[nn.Module] = [qnn.QuantIdentity(act_quant=PixelQ, return_quant_tensor=True)]
    infos: List[QuantLayerInfo] = []
    seen_compute = False
    for n in nodes:
        if n.op in (OpKind.INPUT, OpKind.OUTPUT) or n.name in absorbed:
            continue
        if n.op == OpKind.BATCHNORM:
            raise UnsupportedOpError(f"node '{n.name}': BatchNorm not directly after a conv/linear "
                                     f"cannot be folded")
        if n.op in (OpKind.CONV2D, OpKind.LINEAR):
            mod = modules[n.target]
            w = mod.weight.detach().clone()
            b = mod.bias.detach().clone() if mod.bias is not None else None
            if n.name in bn_of:
                w, b = _fold_bn(w, b, modules[bn_of[n.name].target])
            if not seen_compute:
                w = w / float(2 ** INPUT_BITS - 1)   # raw pixels in, same function out
                seen_compute = True
            ov = bits_over.get(n.name, {})
            is_last = n.name == last_compute
            relu = relu_of.get(n.name)
            a_bits = ov.get("a", abits) if (relu is not None or not is_last) else None
            bits = LayerBits(ov.get("w", wbits), a_bits)
            if n.op == OpKind.CONV2D:
                q = qnn.QuantConv2d(mod.in_channels, mod.out_channels, mod.kernel_size,
                                    stride=mod.stride, padding=mod.padding, bias=b is not None,
                                    weight_quant=Wq(bits.w), bias_quant=BiasQ,
                                    return_quant_tensor=not is_last or a_bits is not None)
            else:
                q = qnn.QuantLinear(mod.in_features, mod.out_features, bias=b is not None,
                                    weight_quant=Wq(bits.w), bias_quant=BiasQ,
                                    return_quant_tensor=not is_last or a_bits is not None)
            with torch.no_grad():
                q.weight.copy_(w)
                if b is not None:
                    q.bias.copy_(b)
            infos.append(QuantLayerInfo(n.name, len(layers), n.op, bits,
                                        "relu" if relu is not None else
                                        ("identity" if a_bits is not None else "none"),
                                        tuple(w.shape)))
            layers.append(q)
            if relu is not None:
                layers.append(qnn.QuantReLU(act_quant=Uq(a_bits), return_quant_tensor=True))
            elif a_bits is not None:
                layers.append(qnn.QuantIdentity(act_quant=Aq(a_bits), return_quant_tensor=True))
            continue
        if n.op in (OpKind.RELU, OpKind.RELU6):
            # A ReLU with no compute layer to attach to (e.g. right after the input).
            layers.append(qnn.QuantReLU(act_quant=Uq(abits), return_quant_tensor=True))
            continue
        if n.op == OpKind.MAXPOOL2D:
            k, s, p = n.attrs["kernel_size"], n.attrs["stride"], n.attrs["padding"]
            layers.append(nn.MaxPool2d(k, s, p))
            continue
        if n.op == OpKind.FLATTEN:
            layers.append(nn.Flatten())
            continue
        if n.op in (OpKind.DROPOUT, OpKind.IDENTITY):
            continue
        if n.op == OpKind.SOFTMAX:
            if graph.consumers(n.name)[0].op != OpKind.OUTPUT:
                raise UnsupportedOpError(f"node '{n.name}': softmax inside the network is not "
                                         f"supported by the FPGA export path")
            continue  # argmax-invariant; left to the host (FINN and hls4ml alike)
        raise UnsupportedOpError(f"node '{n.name}' ({n.op}): not supported by the FPGA path")
    if infos[-1].node != last_compute:
        raise FpgaConversionError("internal: last compute layer not last")
    core = nn.Sequential(*layers)
    core._edgeprune_input_shape = shape
    return QuantNet(core, shape, infos, wbits, abits, graph)


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
