"""The integer network the RTL backend builds: every tensor an integer, every op exact.

The quantized model (Brevitas, power-of-two scales, zero points 0; see quant/brevitas_model.py)
is, on integers: uint8 pixels in; per conv/linear layer acc = W_int . x_int + b_int (the bias is
quantized to the accumulator's scale); then either the layer's accumulator is the network output
(the last layer) or it is requantized: y = clamp(round_half_even(acc * 2^-shift), lo, hi), because
the accumulator scale / activation scale is a power of two; max pooling works on the integers.
`reference` runs exactly that with numpy int64: the quantized model's integer reference that the
RTL simulation must match bit for bit (quant/integer_net.py checks it against Brevitas).
Torch-free.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional, Tuple, Union

import numpy as np

from ...errors import EdgepruneError


class RtlError(EdgepruneError, ValueError):
    """A model or setting the RTL backend cannot build."""


@dataclass(frozen=True)
class Requant:
    """y = clamp(round_half_even(acc / 2^shift), lo, hi); shift < 0 multiplies by 2^-shift."""

    shift: int
    bits: int
    signed: bool

    @property
    def lo(self) -> int:
        return -(2 ** (self.bits - 1)) if self.signed else 0

    @property
    def hi(self) -> int:
        return 2 ** (self.bits - 1) - 1 if self.signed else 2 ** self.bits - 1

    def apply(self, acc: np.ndarray) -> np.ndarray:
        acc = np.asarray(acc, dtype=np.int64)
        if self.shift <= 0:
            q = acc << (-self.shift)
        else:
            q = acc >> self.shift                      # floor
            rem = acc - (q << self.shift)              # 0 .. 2^shift - 1
            half = 1 << (self.shift - 1)
            q = q + ((rem > half) | ((rem == half) & (q & 1 == 1))).astype(np.int64)
        return np.clip(q, self.lo, self.hi)


@dataclass
class MatLayer:
    """A conv2d (weight Cout x Cin x K x K) or linear (weight Out x In) layer on integers."""

    name: str
    kind: str                       # 'conv2d' | 'linear'
    weight: np.ndarray              # int64
    bias: np.ndarray                # int64, one per output channel (zeros without a bias)
    w_bits: int
    requant: Optional[Requant]      # None: the accumulator is the network output
    stride: int = 1

    @property
    def out_channels(self) -> int:
        return int(self.weight.shape[0])


@dataclass
class MaxPool:
    name: str
    kernel: int                     # kernel = stride (non-overlapping windows)


Layer = Union[MatLayer, MaxPool]


@dataclass
class IntNet:
    """Input (C, H, W) uint8 pixels, then `layers` in stream order; a linear layer after a
    conv/pool map reads it flattened in PyTorch's (C, H, W) order."""

    input_shape: Tuple[int, int, int]
    layers: List[Layer]
    input_bits: int = 8
    notes: List[str] = field(default_factory=list)

    def shapes(self) -> List[Tuple[int, ...]]:
        """The shape after each layer ((C, H, W) or (N,) after a linear layer)."""
        out = []
        shape: Tuple[int, ...] = tuple(self.input_shape)
        for l in self.layers:
            if isinstance(l, MaxPool):
                if len(shape) != 3:
                    raise RtlError(f"{l.name}: max pooling needs a (C, H, W) input")
                c, h, w = shape
                shape = (c, h // l.kernel, w // l.kernel)
            elif l.kind == "conv2d":
                if len(shape) != 3 or l.weight.shape[1] != shape[0]:
                    raise RtlError(f"{l.name}: conv weight {l.weight.shape} does not match "
                                   f"input {shape}")
                k = l.weight.shape[2]
                c, h, w = shape
                shape = (l.out_channels, (h - k) // l.stride + 1, (w - k) // l.stride + 1)
            else:
                n = int(np.prod(shape))
                if l.weight.shape[1] != n:
                    raise RtlError(f"{l.name}: linear weight {l.weight.shape} does not match "
                                   f"{n} inputs")
                shape = (l.out_channels,)
            out.append(shape)
        return out


def _conv(x: np.ndarray, w: np.ndarray, b: np.ndarray, stride: int) -> np.ndarray:
    """x (N, C, H, W), w (O, C, K, K) -> (N, O, OH, OW), int64."""
    n, c, h, wd = x.shape
    o, _, k, _ = w.shape
    oh, ow = (h - k) // stride + 1, (wd - k) // stride + 1
    cols = np.empty((n, c, k, k, oh, ow), dtype=np.int64)
    for ky in range(k):
        for kx in range(k):
            cols[:, :, ky, kx] = x[:, :, ky:ky + stride * oh:stride, kx:kx + stride * ow:stride]
    out = np.einsum("ncijyx,ocij->noyx", cols, w, optimize=True)
    return out + b.reshape(1, -1, 1, 1)


def reference(net: IntNet, x: np.ndarray) -> np.ndarray:
    """Integer outputs (N, outputs) of `net` on pixels `x` (N, C, H, W), values 0..255."""
    a = np.asarray(x).astype(np.int64).reshape((len(x),) + tuple(net.input_shape))
    for l in net.layers:
        if isinstance(l, MaxPool):
            k = l.kernel
            n, c, h, w = a.shape
            oh, ow = h // k, w // k
            a = a[:, :, :oh * k, :ow * k].reshape(n, c, oh, k, ow, k).max(axis=(3, 5))
            continue
        if l.kind == "conv2d":
            a = _conv(a, l.weight.astype(np.int64), l.bias.astype(np.int64), l.stride)
        else:
            a = a.reshape(len(a), -1) @ l.weight.astype(np.int64).T + l.bias.astype(np.int64)
        if l.requant is not None:
            a = l.requant.apply(a)
    return a.reshape(len(a), -1)
