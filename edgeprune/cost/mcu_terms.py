"""The work terms the MCU cycle model multiplies by its per-term constants.

Shared by the cost model (edgeprune/cost/mcu.py) and by the measurement that sources the
constants (benchmarks/mcu_kernel_icount.py), so both count work the same way. Pure Python, no
imports: `edgeprune estimate` must start fast.

    macs        multiply-accumulates
    macs_tail4  MACs a 4-wide SIMD loop leaves to its scalar tail (K % 4 per output; for
                depthwise, C % 4 channels per filter tap)
    vec16       16-lane vector steps (MVE int8 dot products: ceil(K / 16) per output)
    vec4        4-lane vector steps (MVE depthwise: ceil(C / 4) per output pixel and tap)
    taps        filter positions visited (outputs * kh * kw; the reference conv bounds-checks each)
    im2col      input bytes copied into the im2col buffer (output pixels * kh * kw * in_c)
    ptaps       filter positions per output pixel (output pixels * kh * kw: one im2col copy each)
    window      pooling window elements read
    outputs     output elements written (each requantised, clamped and stored)
    call        1 per kernel invocation
"""
from __future__ import annotations

from typing import Dict


def _ceil(a: int, b: int) -> int:
    return -(-a // b)


def conv_terms(out_h: int, out_w: int, out_c: int, k_h: int, k_w: int, in_c: int) -> Dict[str, int]:
    pixels = out_h * out_w
    k = k_h * k_w * in_c
    outputs = pixels * out_c
    return {"macs": outputs * k, "macs_tail4": outputs * (k % 4), "vec16": outputs * _ceil(k, 16),
            "taps": outputs * k_h * k_w, "im2col": pixels * k, "ptaps": pixels * k_h * k_w,
            "outputs": outputs, "call": 1}


def dwconv_terms(out_h: int, out_w: int, c: int, k_h: int, k_w: int) -> Dict[str, int]:
    pixels = out_h * out_w
    taps = k_h * k_w
    return {"macs": pixels * c * taps, "macs_tail4": pixels * taps * (c % 4),
            "vec4": pixels * taps * _ceil(c, 4), "taps": pixels * c * taps,
            "outputs": pixels * c, "call": 1}


def fc_terms(depth: int, units: int) -> Dict[str, int]:
    return {"macs": depth * units, "macs_tail4": units * (depth % 4),
            "vec16": units * _ceil(depth, 16), "outputs": units, "call": 1}


def pool_terms(out_h: int, out_w: int, c: int, k_h: int, k_w: int) -> Dict[str, int]:
    outputs = out_h * out_w * c
    return {"window": outputs * k_h * k_w, "outputs": outputs, "call": 1}


def eltwise_terms(n: int) -> Dict[str, int]:
    return {"outputs": n, "call": 1}


# Which terms each measured kernel is fitted on, by instruction-set family:
# 'v6m' (Cortex-M0+, no DSP), 'dsp' (M4/M7/M33: Armv7E-M / Armv8-M DSP), 'mve' (M55).
KERNEL_TERMS = {
    "ref_conv": ("macs", "taps", "outputs", "call"),
    "ref_dwconv": ("macs", "outputs", "call"),
    "ref_fc": ("macs", "outputs", "call"),
    "cm_conv": ("macs", "macs_tail4", "im2col", "ptaps", "outputs", "call"),
    "cm_dwconv": ("macs", "macs_tail4", "outputs", "call"),
    "cm_fc": ("macs", "macs_tail4", "outputs", "call"),
    "ref_maxpool": ("window", "outputs", "call"),
    "ref_avgpool": ("window", "outputs", "call"),
    "ref_add": ("outputs", "call"),
    "ref_relu": ("outputs", "call"),
    "ref_pad": ("outputs", "call"),
    "ref_copy": ("outputs", "call"),
}
KERNEL_TERMS_MVE = {
    **KERNEL_TERMS,
    "cm_conv": ("vec16", "im2col", "ptaps", "outputs", "call"),
    "cm_dwconv": ("vec4", "outputs", "call"),
    "cm_fc": ("vec16", "outputs", "call"),
}


def kernel_terms(kernel: str, isa: str):
    return (KERNEL_TERMS_MVE if isa == "mve" else KERNEL_TERMS)[kernel]
