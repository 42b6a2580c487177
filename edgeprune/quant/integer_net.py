"""The Brevitas twin (`QuantNet`) as an integer network (`backends.rtl.ir.IntNet`): what the RTL
backend builds, checked bit for bit against Brevitas on real images.

Every quantizer of the twin has a power-of-two scale and zero point 0
(quant/brevitas_model.py), so per compute layer: weights = integer x s_w, the bias is quantized
to the accumulator scale s_in x s_w (Brevitas ``Int16Bias``: 16-bit, round half to even), and the
activation quantizer (scale s_a, round half to even: Brevitas ``RoundSte`` = ``torch.round``)
becomes y = clamp(round_half_even(acc / 2^shift)) with 2^shift = s_a / (s_in x s_w).
"""
from __future__ import annotations

import math
from typing import List, Optional

import numpy as np
import torch
import torch.nn as nn

from ..backends.rtl.ir import IntNet, MatLayer, MaxPool, Requant, RtlError, reference
from .brevitas_model import QuantNet, integer_weights
from .qonnx_io import brevitas_execute

BIAS_BITS = 16      # brevitas.quant.Int16Bias


def _log2_exact(v: float, what: str) -> int:
    k = round(math.log2(v))
    if not math.isclose(2.0 ** k, v, rel_tol=1e-6):
        raise RtlError(f"{what}: scale ratio {v} is not a power of two")
    return k


@torch.no_grad()
def to_integer_net(qnet: QuantNet) -> IntNet:
    """The integer network of `qnet` (eval mode)."""
    import brevitas.nn as qnn

    qnet.eval()
    core = qnet.core
    ints = integer_weights(qnet)
    info_at = {l.index: l for l in qnet.layers}
    x = torch.zeros((1,) + tuple(qnet.input_shape))
    scales: List[Optional[float]] = []
    signed: List[Optional[bool]] = []
    bits: List[Optional[int]] = []
    for m in core:                       # each module's output scale / sign / width
        x = m(x)
        has = hasattr(x, "scale") and x.scale is not None
        scales.append(float(x.scale.reshape(-1)[0]) if has else None)
        signed.append(bool(x.signed) if has else None)
        bits.append(int(x.bit_width) if has else None)
    layers = []
    for i, m in enumerate(core):
        if i == 0:
            continue                     # the uint8 scale-1 input quantizer
        if isinstance(m, (qnn.QuantConv2d, qnn.QuantLinear)):
            info = info_at[i]
            s_in = scales[i - 1]
            s_w = float(m.quant_weight().scale.reshape(-1)[0])
            s_acc = s_in * s_w
            w = ints[info.node].numpy().astype(np.int64)
            if m.bias is not None:
                lim = 2 ** (BIAS_BITS - 1)
                b = torch.clamp(torch.round(m.bias.detach() / s_acc), -lim, lim - 1)
                b = b.numpy().astype(np.int64)
            else:
                b = np.zeros(w.shape[0], dtype=np.int64)
            rq = None
            if info.bits.a is not None:
                act = core[i + 1]
                shift = _log2_exact(scales[i + 1] / s_acc, info.node)
                rq = Requant(shift, bits[i + 1], signed[i + 1])
            stride = 1
            if isinstance(m, qnn.QuantConv2d):
                if tuple(m.padding) != (0, 0):
                    raise RtlError(f"{info.node}: padded convolutions are not supported by the "
                                   f"RTL backend yet")
                if m.stride[0] != m.stride[1]:
                    raise RtlError(f"{info.node}: only equal strides")
                stride = int(m.stride[0])
            layers.append(MatLayer(info.node, "conv2d" if info.kind == "conv2d" else "linear",
                                   w, b, info.bits.w, rq, stride))
        elif isinstance(m, nn.MaxPool2d):
            k, s, p = m.kernel_size, m.stride, m.padding
            k = k if isinstance(k, int) else k[0]
            s = s if isinstance(s, int) else s[0]
            p = p if isinstance(p, int) else p[0]
            if k != s or p != 0:
                raise RtlError(f"max pooling with kernel {k}, stride {s}, padding {p}: the RTL "
                               f"backend needs kernel = stride and no padding")
            layers.append(MaxPool(f"pool{sum(isinstance(l, MaxPool) for l in layers) + 1}", k))
        elif isinstance(m, (nn.Flatten, qnn.QuantIdentity, qnn.QuantReLU)):
            continue                     # flatten: stream order; activations: in the requant
        else:
            raise RtlError(f"module {type(m).__name__} has no RTL unit")
    return IntNet(tuple(qnet.input_shape), layers)


def check_integer_net(qnet: QuantNet, net: IntNet, x_pixels: np.ndarray) -> dict:
    """Compare the integer reference with Brevitas (outputs / output scale) on `x_pixels`."""
    ref = np.round(brevitas_execute(qnet, x_pixels) / qnet.output_scale()).astype(np.int64)
    got = reference(net, x_pixels)
    same = np.all(ref.reshape(got.shape) == got, axis=1)
    return {"images": int(len(x_pixels)), "exact_images": int(same.sum()),
            "bit_exact": bool(same.all())}
