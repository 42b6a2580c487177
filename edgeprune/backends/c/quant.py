"""TFLite's int8 requantization parameters, computed exactly as its kernels compute them.

Sources (tflite-micro 90b983c, ``tensorflow/lite/kernels/internal/quantization_util.cc`` and
``micro/kernels/*_common.cc``): ``QuantizeMultiplier`` (frexp, round half away from zero,
2^31 -> 2^30 with shift+1, shift < -31 flushes to zero), the per-channel conv / fully-connected
multiplier ``(double)input_scale * (double)filter_scale / (double)output_scale``, ADD's
``left_shift = 20`` scheme, ``PreprocessSoftmaxScaling`` and ``CalculateInputRadius``, and
``CalculateActivationRangeQuantized``. ``TFLITE_SINGLE_ROUNDING`` is not defined by TFLM or
LiteRT builds, so the double-rounding ``MultiplyByQuantizedMultiplier`` is the one to match (the
C kernels implement it in ``kernels/ep_common.h``).

LiteRT's int8 fully-connected layers round once (x * m + 2^(30 - shift)) >> (31 - shift), even
with its reference op resolver (measured: ``tests/test_export_c.py``), while TFLM rounds twice;
the two runtimes then differ by one LSB on some outputs. ``ROUNDINGS`` says which ops round
once in each runtime; the multipliers themselves are the same.

Pure Python + numpy: no torch, no tensorflow.
"""
from __future__ import annotations

import math
from typing import Tuple

import numpy as np


def tflite_round(x: float) -> float:
    """std::round: halves away from zero (Python's round() rounds halves to even)."""
    return math.copysign(math.floor(abs(x) + 0.5), x)


# runtime to match -> the ops (C kernel families) whose requantization rounds once
ROUNDINGS = {"tflm": (), "litert": ("fc",)}


def quantize_multiplier(m: float) -> Tuple[int, int]:
    """(quantized_multiplier, shift) of QuantizeMultiplier(double)."""
    if m == 0.0:
        return 0, 0
    q, shift = math.frexp(m)
    q_fixed = int(tflite_round(q * (1 << 31)))
    assert q_fixed <= (1 << 31)
    if q_fixed == (1 << 31):
        q_fixed //= 2
        shift += 1
    if shift < -31:
        shift, q_fixed = 0, 0
    return q_fixed, shift


def conv_multipliers(input_scale: np.float32, filter_scales: np.ndarray,
                     output_scale: np.float32) -> Tuple[np.ndarray, np.ndarray]:
    """Per-channel (multiplier, shift) of a conv / depthwise / fully-connected layer: float32
    scales widened to double, (in * filter) / out (PopulateConvolutionQuantizationParams)."""
    mult, shift = [], []
    for fs in np.asarray(filter_scales, dtype=np.float32):
        eff = float(np.float32(input_scale)) * float(fs) / float(np.float32(output_scale))
        m, s = quantize_multiplier(eff)
        mult.append(m)
        shift.append(s)
    return np.array(mult, dtype=np.int64), np.array(shift, dtype=np.int64)


def activation_range(act: str, scale: float, zero_point: int) -> Tuple[int, int]:
    """CalculateActivationRangeQuantized for int8: RELU / RELU6 / RELU_N1_TO_1 / NONE. The
    bound is zero_point + round(f / scale) with f / scale computed in float32."""
    qmin, qmax = -128, 127
    scale = np.float32(scale)

    def q(f: float) -> int:
        return zero_point + int(tflite_round(float(np.float32(np.float32(f) / scale))))
    if act == "RELU":
        return max(qmin, q(0.0)), qmax
    if act == "RELU6":
        return max(qmin, q(0.0)), min(qmax, q(6.0))
    if act == "RELU_N1_TO_1":
        return max(qmin, q(-1.0)), min(qmax, q(1.0))
    if act == "NONE":
        return qmin, qmax
    raise ValueError(f"fused activation {act}")


ADD_LEFT_SHIFT = 20  # int8 ADD (micro/kernels/add_common.cc: 20 for int8, 15 for int16)


def add_params(s1: float, s2: float, s_out: float) -> dict:
    """ADD's input/output multipliers (add_common.cc CalculateOpDataAdd)."""
    s1, s2, so = float(np.float32(s1)), float(np.float32(s2)), float(np.float32(s_out))
    twice_max = 2.0 * max(s1, s2)
    m1, sh1 = quantize_multiplier(s1 / twice_max)        # QuantizeMultiplierSmallerThanOneExp
    m2, sh2 = quantize_multiplier(s2 / twice_max)
    mo, sho = quantize_multiplier(twice_max / ((1 << ADD_LEFT_SHIFT) * so))
    return {"left_shift": ADD_LEFT_SHIFT, "in1_mult": m1, "in1_shift": sh1,
            "in2_mult": m2, "in2_shift": sh2, "out_mult": mo, "out_shift": sho}


SOFTMAX_SCALED_DIFF_INTEGER_BITS = 5


def softmax_params(beta: float, input_scale: float) -> dict:
    """PreprocessSoftmaxScaling + CalculateInputRadius for int8 -> int8 softmax."""
    max_real = float((1 << 31) - 1)
    real = min(float(beta) * float(np.float32(input_scale))
               * (1 << (31 - SOFTMAX_SCALED_DIFF_INTEGER_BITS)), max_real)
    mult, left_shift = quantize_multiplier(real)
    assert left_shift >= 0
    total_bits = 31
    radius = math.floor(1.0 * ((1 << SOFTMAX_SCALED_DIFF_INTEGER_BITS) - 1)
                        * (1 << (total_bits - SOFTMAX_SCALED_DIFF_INTEGER_BITS))
                        / (1 << left_shift))
    return {"input_multiplier": mult, "input_left_shift": left_shift,
            "diff_min": -int(radius)}


def relu_params(input_scale: float, output_scale: float) -> Tuple[int, int]:
    """RELU/RELU6 int8 requantization (activations_common.cc CalculateReluOpData): the scale
    ratio is a float32 division, widened to double afterwards."""
    return quantize_multiplier(float(np.float32(input_scale) / np.float32(output_scale)))


def _wrap32(v: int) -> int:
    return (v + (1 << 31)) % (1 << 32) - (1 << 31)


def requantize(x: int, mult: int, shift: int, single: bool) -> int:
    """MultiplyByQuantizedMultiplier(x, mult, shift) in TFLite's double rounding (gemmlowp) or,
    single=True, its TFLITE_SINGLE_ROUNDING form: the arithmetic of ep_requantize
    (kernels/ep_common.h), on Python ints."""
    x, mult, shift = int(x), int(mult), int(shift)
    if single:
        total = 31 - shift
        return (x * mult + (1 << (total - 1))) >> total
    if shift > 0:
        x = _wrap32(x << shift)
    if x == mult == -(1 << 31):
        return (1 << 31) - 1
    ab = x * mult
    nudge = (1 << 30) if ab >= 0 else 1 - (1 << 30)
    num = ab + nudge
    y = (abs(num) >> 31) * (1 if num >= 0 else -1)     # C's truncating division
    if shift >= 0:
        return y
    e = -shift
    mask = (1 << e) - 1
    rem = y & mask
    thr = (mask >> 1) + (1 if y < 0 else 0)
    return (y >> e) + (1 if rem > thr else 0)


RQ_ACC_LIMIT = 1 << 30   # ep_rq_apply's accumulator range (kernels/ep_common.h)


def rq_records(mult: np.ndarray, shift: np.ndarray, single: bool) -> np.ndarray:
    """ep_rq records ([n, 3] int32: mult, round, shift word) of per-channel multipliers with
    shifts <= 0 (kernels/ep_common.h describes the encoding)."""
    mult = np.asarray(mult, dtype=np.int64).reshape(-1)
    shift = np.asarray(shift, dtype=np.int64).reshape(-1)
    if np.any(shift > 0):
        raise ValueError("ep_rq records need shifts <= 0")
    e = -shift
    rnd = np.where(e > 0, np.left_shift(1, np.maximum(e - 1, 0)), 0)
    if single:
        word = e | np.where(e == 0, 0x40000000, 0)
    else:
        word = e | np.where(e > 0, 0xFFFF0000, 0)
    word = (word + (1 << 31)) % (1 << 32) - (1 << 31)
    return np.stack([mult, rnd, word], axis=1).astype(np.int32)


def add_tables(p: dict, single: bool) -> Tuple[np.ndarray, np.ndarray]:
    """ADD's per-input rescaling of every int8 value v (index v + 128):
    requantize((v + offset) << left_shift, mult, shift), as ep_add computed it per element."""
    v = np.arange(-128, 128)
    t = []
    for k in ("1", "2"):
        off, m, s = int(p[f"in{k}_offset"]), int(p[f"in{k}_mult"]), int(p[f"in{k}_shift"])
        t.append(np.array([requantize(_wrap32((int(x) + off) << int(p["left_shift"])), m, s, single)
                           for x in v], dtype=np.int32))
    return t[0], t[1]
