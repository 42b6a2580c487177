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

from typing import Dict, Optional


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


# --------------------------------------------------------------------------------------------
# The real TFLite-Micro kernels (benchmarks/tflm_calibrate.py): an op's shape as TFLM sees it,
# and the kernel variant and work terms CMSIS-NN's dispatch and loops give it.

def _same_pad(size: int, out: int, k: int, s: int, d: int = 1) -> int:
    """TFLite's SAME padding before the data (TFLM's ComputePaddingHeightWidth)."""
    eff = (k - 1) * d + 1
    return max((out - 1) * s + eff - size, 0) // 2


def tflm_op_shape(plan, op) -> Dict[str, object]:
    """The shapes and parameters of one TFLite op of a ``backends.tflm.plan.TflPlan`` that the
    TFLM kernels' work depends on (JSON-able; NHWC, batch 1)."""
    t = plan.tensors

    def hwc(shape):
        s = tuple(int(v) for v in shape)
        if len(s) == 4:
            return list(s[1:])
        n = 1
        for v in s[1:] if len(s) > 1 else s:
            n *= v
        return [1, 1, n]
    x = t[op.inputs[0]].shape
    y = t[op.outputs[0]].shape
    d = {"op": op.opcode, "in": hwc(x), "out": hwc(y)}
    code = op.opcode
    if code in ("CONV_2D", "DEPTHWISE_CONV_2D"):
        w = t[op.inputs[1]].shape
        kh, kw = int(w[1]), int(w[2])
        sh, sw = (int(v) for v in op.options.get("stride", (1, 1)))
        dil = tuple(int(v) for v in op.options.get("dilation", (1, 1)))
        ih, iw = d["in"][0], d["in"][1]
        oh, ow = d["out"][0], d["out"][1]
        same = str(op.options.get("padding", "VALID")).upper() == "SAME"
        d.update(k=[kh, kw], stride=[sh, sw], dilation=list(dil),
                 pad=[_same_pad(ih, oh, kh, sh, dil[0]) if same else 0,
                      _same_pad(iw, ow, kw, sw, dil[1]) if same else 0])
    elif code == "FULLY_CONNECTED":
        w = t[op.inputs[1]].shape
        d.update(depth=int(w[1]), units=int(w[0]))
    elif code in ("MAX_POOL_2D", "AVERAGE_POOL_2D"):
        d.update(k=[int(v) for v in op.options.get("filter", (1, 1))],
                 stride=[int(v) for v in op.options.get("stride", (1, 1))])
    elif code == "PAD" and "pads" in op.attrs:
        d.update(pads=[int(v) for v in op.attrs["pads"]])        # top, bottom, left, right
    return d


def _valid_taps(out: int, size: int, k: int, s: int, pad: int) -> int:
    """Filter positions inside the input along one axis, summed over the outputs."""
    n = 0
    for o in range(out):
        start = o * s - pad
        n += max(0, min(size, start + k) - max(0, start))
    return n


def _window_taps(d: dict) -> int:
    """(output pixel, filter position) pairs inside the input of a conv / depthwise record:
    the multiply-accumulates per channel pair that padding does not skip."""
    (ih, iw, _), (oh, ow, _) = d["in"], d["out"]
    (kh, kw), (sh, sw), (ph, pw) = d["k"], d["stride"], d["pad"]
    return _valid_taps(oh, ih, kh, sh, ph) * _valid_taps(ow, iw, kw, sw, pw)


def _conv_kernel(d: dict) -> tuple:
    """CMSIS-NN's arm_convolve_wrapper_s8 dispatch (Armv7E-M DSP path, as built by GCC)."""
    ih, iw, ic = d["in"]
    oh, ow, oc = d["out"]
    kh, kw = d["k"]
    sh, sw = d["stride"]
    ph, pw = d["pad"]
    pixels = oh * ow
    k = kh * kw * ic
    if (ph, pw) == (0, 0) and (kh, kw) == (1, 1) and tuple(d.get("dilation", (1, 1))) == (1, 1):
        # 1x1: arm_nn_mat_mult_nt_t_s8 over all pixels (stride 1: arm_convolve_1x1_s8_fast)
        # or once per output row (arm_convolve_1x1_s8); per pair of output channels a column
        # sum of the weights (the input offset), per 2x2 block of (pixel, channel) a 16- then
        # 4-wide SMLAD loop and a scalar tail; an odd pixel and an odd channel run alone
        calls, rows = (1, pixels) if (sh, sw) == (1, 1) else (oh, ow)
        odd_px = calls * (rows % 2)
        even_oc = oc - oc % 2
        return "cm_conv_1x1", {
            "macs": (pixels - odd_px) * even_oc * ic, "macs_tail4": pixels * oc * (ic % 4),
            "macs_odd": odd_px * even_oc * ic, "macs_oddc": (oc % 2) * pixels * ic,
            "weights": calls * even_oc * ic, "outputs": pixels * oc, "rows": calls, "call": 1}
    # arm_convolve_s8: im2col of each output pixel (one memcpy or memset per filter position,
    # then an s8 -> s16 copy of the column), arm_nn_mat_mult_kernel_s8_s16 on pairs of pixels
    # x pairs of channels (4-wide SMLAD loop + tail); an odd last pixel runs alone
    odd = pixels % 2
    taps = _window_taps(d)
    return "cm_conv", {
        "macs": (pixels - odd) * oc * k, "macs_tail4": (pixels - odd) * oc * (k % 4),
        "macs_odd": odd * oc * k, "ptaps": pixels * kh * kw, "ptaps_pad": pixels * kh * kw - taps,
        "im2col": pixels * k, "outputs": pixels * oc, "call": 1}


def _dw_kernel(d: dict) -> tuple:
    """CMSIS-NN's arm_depthwise_conv_wrapper_s8 dispatch (DSP, channel multiplier 1)."""
    ih, iw, c = d["in"]
    oh, ow, _ = d["out"]
    kh, kw = d["k"]
    sh, sw = d["stride"]
    ph, pw = d["pad"]
    pixels = oh * ow
    taps = _window_taps(d)
    if (kh, kw) == (3, 3) and ph <= 1 and pw <= 1:
        # arm_depthwise_conv_3x3_s8: per output pixel, per 4 channels, the filter positions
        # inside the input (4 SMLAxx each); the C % 4 last channels one at a time
        return "cm_dwconv_3x3", {"vtaps4": taps * (c // 4), "taps_tail": taps * (c % 4),
                                 "outputs": pixels * c, "pixels": pixels, "call": 1}
    # arm_depthwise_conv_s8_opt: per output pixel an s16 im2col of the window (all channels),
    # then per 4 channels a loop over the filter positions
    return "cm_dwconv", {"macs": pixels * kh * kw * c, "macs_tail4": pixels * kh * kw * (c % 4),
                         "ptaps": pixels * kh * kw, "outputs": pixels * c, "call": 1}


def _reference_kernel(d: dict) -> tuple:
    """TFLM's reference int8 kernels (reference_integer_ops / reference_ops): plain loops."""
    code = d["op"]
    oh, ow, oc = d["out"]
    n = oh * ow * oc
    pixels = oh * ow
    if code in ("CONV_2D", "DEPTHWISE_CONV_2D"):
        ic = d["in"][2]
        kh, kw = d["k"]
        taps = _window_taps(d)
        if code == "CONV_2D":
            # ConvPerChannel: out_y, out_x, out_c, filter_y, filter_x (bounds check), in_c
            return "ref_conv", {"macs": taps * oc * ic, "taps": pixels * kh * kw * oc,
                                "outputs": n, "call": 1}
        # DepthwiseConvPerChannel: out_y, out_x, in_c, (multiplier), filter_y, filter_x
        return "ref_dwconv", {"macs": taps * oc, "taps": pixels * kh * kw * oc, "outputs": n,
                              "call": 1}
    if code == "FULLY_CONNECTED":
        return "ref_fc", {"macs": d["depth"] * d["units"], "outputs": d["units"], "call": 1}
    if code in ("MAX_POOL_2D", "AVERAGE_POOL_2D"):
        kh, kw = d["k"]
        kern = "ref_maxpool" if code == "MAX_POOL_2D" else "ref_avgpool"
        return kern, {"window": n * kh * kw, "outputs": n, "call": 1}
    if code == "PAD":
        return "ref_pad", {"outputs": n, "call": 1}
    if code == "ADD":
        return "ref_add", {"outputs": n, "call": 1}
    if code == "SOFTMAX":
        return "ref_softmax", {"outputs": n, "call": 1}
    if code in ("RESHAPE", "CONCATENATION"):
        return "copy", {"outputs": n, "call": 1}
    return "other", {"outputs": n, "call": 1}


# CMSIS-NN's MVE paths (ARM_MATH_MVEI): int8 vectors of 16 lanes; the depthwise kernel works
# on blocks of CH_IN_BLOCK_MVE channels (Include/arm_nnsupportfunctions.h)
MVE_LANES = 16
CH_IN_BLOCK_MVE = 124


def _mat_mult_nt_t_mve(t: dict, rows: int, oc: int, cols: int, calls: int = 1) -> None:
    """Adds to `t` the work of `calls` arm_nn_mat_mult_nt_t_s8 calls (MVE) of `rows` lhs rows
    each: per group of 4 rows, per output channel a 16-lane vmladava loop over the columns
    (q_iters) and a vector requantisation (q_ch); the rows % 4 left run one at a time (s_iters,
    s_ch), their requantisation 4 channels at a time, the oc % 4 last channels scalar (s_tail)."""
    kv = _ceil(cols, MVE_LANES)
    q, r = calls * (rows // 4), calls * (rows % 4)
    for k, v in (("q_iters", q * oc * kv), ("q_ch", q * oc), ("s_iters", r * oc * kv),
                 ("s_ch", r * oc), ("s_tail", r * (oc % 4))):
        t[k] = t.get(k, 0) + v


def _mve_kernel(d: dict) -> tuple:
    """CMSIS-NN's kernels on a core with MVE (Helium, the Cortex-M55), as TFLM dispatches to
    them; each term counts one trip of a loop of the MVE source (see _mat_mult_nt_t_mve)."""
    code = d["op"]
    oh, ow, oc = d["out"]
    n = oh * ow * oc
    pixels = oh * ow
    if code in ("CONV_2D", "DEPTHWISE_CONV_2D"):
        ih, iw, ic = d["in"]
        kh, kw = d["k"]
        sh, sw = d["stride"]
        ph, pw = d["pad"]
        taps = _window_taps(d)
        ptaps = pixels * kh * kw
    if code == "CONV_2D":
        t: Dict[str, int] = {}
        if (ph, pw) == (0, 0) and (kh, kw) == (1, 1) and tuple(d.get("dilation", (1, 1))) == (1, 1):
            # arm_convolve_1x1_s8_fast: one call over all pixels (stride 1); arm_convolve_1x1_s8:
            # one call per output row
            calls, rows = (1, pixels) if (sh, sw) == (1, 1) else (oh, ow)
            _mat_mult_nt_t_mve(t, rows, oc, ic, calls)
            t.update(rows=calls, call=1)
            return "mve_conv_1x1", t
        # arm_convolve_s8: per output pixel an int8 im2col (one arm_memcpy_s8 or arm_memset_s8
        # of in_c bytes, 16 per trip, per filter position), every 4 pixels an
        # arm_nn_mat_mult_nt_t_s8 call, the pixels % 4 left in a last one
        _mat_mult_nt_t_mve(t, 4, oc, kh * kw * ic, pixels // 4)
        _mat_mult_nt_t_mve(t, pixels % 4, oc, kh * kw * ic, 1)
        t.update(ptaps=ptaps, ptap_vec=ptaps * _ceil(ic, MVE_LANES), ptaps_pad=ptaps - taps,
                 pixels=pixels, call=1)
        return "mve_conv", t
    if code == "DEPTHWISE_CONV_2D":
        # arm_depthwise_conv_s8_opt (MVE; the 3x3 kernel is DSP-only): per block of 124
        # channels, per output pixel an int8 im2col of the window (arm_memcpy_s8 / memset per
        # filter position), every 4 pixels arm_nn_depthwise_conv_nt_t_s8 (per 4 channels a loop
        # over the filter positions, then 4 requantisations), the pixels % 4 left one by one
        blocks = [min(CH_IN_BLOCK_MVE, oc - b) for b in range(0, oc, CH_IN_BLOCK_MVE)]
        grp = sum(_ceil(a, 4) for a in blocks)
        q, r = pixels // 4, pixels % 4
        return "mve_dwconv", {
            "q_taps": q * grp * kh * kw, "q_grp": q * grp, "s_taps": r * grp * kh * kw,
            "s_grp": r * grp, "ptaps": ptaps * len(blocks),
            "ptap_vec": ptaps * sum(_ceil(a, MVE_LANES) for a in blocks),
            "ptaps_pad": (ptaps - taps) * len(blocks), "quads": q * len(blocks), "call": 1}
    if code == "FULLY_CONNECTED":
        # arm_nn_vec_mat_mult_t_s8 (MVE): 4 weight rows at a time over 16-lane column trips,
        # the units % 4 left one at a time (kernel sums precomputed in Prepare)
        depth, units = d["depth"], d["units"]
        kv = _ceil(depth, MVE_LANES)
        return "mve_fc", {"q_iters": (units // 4) * kv, "q_ch": units // 4,
                          "s_iters": (units % 4) * kv, "s_ch": units % 4, "call": 1}
    if code in ("MAX_POOL_2D", "AVERAGE_POOL_2D"):
        # arm_max_pool_s8: per output pixel, per window position a 16-lane compare (or copy)
        # pass over the channels, then a clamp pass; arm_avgpool_s8: per pixel, per 16
        # channels, a loop over the window positions, then 16 divisions
        kh, kw = d["k"]
        cv = _ceil(oc, MVE_LANES)
        kern = "mve_maxpool" if code == "MAX_POOL_2D" else "mve_avgpool"
        return kern, {"wvec": pixels * kh * kw * cv, "wpos": pixels * kh * kw,
                      "pvec": pixels * cv, "pixels": pixels, "call": 1}
    if code == "ADD":
        # arm_elementwise_add_s8 (MVE): 4 elements (int32 lanes) per trip, tail predicated
        return "mve_add", {"vec4": _ceil(n, 4), "call": 1}
    if code == "PAD":
        # arm_pad_s8: per input row an arm_memset_s8 / arm_memcpy_s8 (16 bytes per trip)
        return "mve_pad", {"outputs": n, "rows": d["in"][0], "call": 1}
    if code == "SOFTMAX":
        return "mve_softmax", {"outputs": n, "call": 1}
    if code in ("RESHAPE", "CONCATENATION"):
        return "copy", {"outputs": n, "call": 1}
    return "other", {"outputs": n, "call": 1}


def _memcpy_v6m(n: int, aligned: bool) -> tuple:
    """(bytes moved by the byte loop, bytes moved by the word loops) of newlib-nano's memcpy for
    Armv6-M (arm-none-eabi libc_nano.a, thumb/v6-m: objdump of memcpy): 16- then 4-byte word
    loops and a byte tail when both pointers are word-aligned and n >= 16, else one byte loop
    (the M0+ cannot load unaligned words)."""
    if aligned and n >= 16:
        return n % 4, n - n % 4
    return n, 0


def _v6m_kernel(d: dict) -> Optional[tuple]:
    """The CMSIS-NN kernels whose plain-C path (no ARM_MATH_DSP: the Armv6-M Cortex-M0+) has
    another loop structure or cost than the DSP path: conv (im2col copies by newlib's memcpy,
    whose speed depends on alignment), PAD (the same), depthwise other than 3x3, fully
    connected, average pool; None for the others (1x1 conv, 3x3 depthwise, max pool, ADD,
    softmax: the same loops with scalar bodies, so the DSP variants' terms, fitted on the M0+'s
    own measurements)."""
    code = d["op"]
    oh, ow, oc = d["out"]
    if code == "CONV_2D":
        v, t = _conv_kernel(d)
        if v != "cm_conv":
            return None
        # arm_convolve_s8's im2col copies in_c bytes per filter position inside the input
        # (arm_memcpy_s8 = memcpy without MVE): word loops only when in_c is a multiple of 4
        # (the tensor, the column buffer and every position then word-aligned: the arena
        # aligns buffers to 16) and at least 16; the padded positions are memsets
        ic = d["in"][2]
        copied = (t["ptaps"] - t["ptaps_pad"]) * ic
        nb, nw = _memcpy_v6m(ic, ic % 4 == 0)
        per = max(nb + nw, 1)
        del t["macs_tail4"]
        t.update(cp_bytes=copied * nb // per, cp_words=copied * nw // per)
        return "v6m_conv", t
    if code == "PAD":
        # arm_pad_s8 (arm_memset_s8 / arm_memcpy_s8 = memset / memcpy without MVE): per input
        # row a memcpy of in_w * c bytes, word-aligned when both row offsets are (the arena
        # aligns tensors to 16); the padding as memsets (about a word per 4 bytes)
        (ih, iw, c) = d["in"]
        pads = d.get("pads") or [(oh - ih) // 2, oh - ih - (oh - ih) // 2,
                                 (ow - iw) // 2, ow - iw - (ow - iw) // 2]
        top, left = pads[0], pads[2]
        row = iw * c
        nb = nw = 0
        for y in range(ih):
            b, w = _memcpy_v6m(row, (y * row) % 4 == 0 and (((y + top) * ow + left) * c) % 4 == 0)
            nb, nw = nb + b, nw + w
        return "v6m_pad", {"cp_bytes": nb, "cp_words": nw, "set_bytes": oh * ow * c - ih * row,
                           "rows": ih, "call": 1}
    if code == "DEPTHWISE_CONV_2D":
        (ih, iw, c), (kh, kw) = d["in"], d["k"]
        (sh, sw), (ph, pw) = d["stride"], d["pad"]
        if (kh, kw) == (3, 3) and ph <= 1 and pw <= 1:
            return None
        # arm_depthwise_conv_s8_opt without DSP calls arm_depthwise_conv_s8, whose
        # depthwise_conv_s8_generic (channel multiplier 1) runs per output pixel and channel
        # the filter rows inside the input, and in each the filter columns inside it (one MAC)
        rows = _valid_taps(oh, ih, kh, sh, ph) * ow
        return "v6m_dwconv", {"macs": _window_taps(d) * c, "krows": rows * c,
                              "outputs": oh * ow * c, "call": 1}
    if code == "FULLY_CONNECTED":
        # arm_nn_vec_mat_mult_t_s8, plain C: the weight rows 3 at a time (one pass over the
        # input for 3 accumulators), the units % 3 left one at a time
        depth, units = d["depth"], d["units"]
        return "v6m_fc", {"trips3": (units // 3) * depth, "trips1": (units % 3) * depth,
                          "groups3": units // 3, "outputs": units, "call": 1}
    if code == "AVERAGE_POOL_2D":
        # arm_avgpool_s8, plain C: per output element the whole window (bounds checked per
        # position), one division (a libgcc call: the M0+ has no divide instruction)
        kh, kw = d["k"]
        n = oh * ow * oc
        return "v6m_avgpool", {"window": n * kh * kw, "wrows": n * kh, "outputs": n, "call": 1}
    return None


def tflm_kernel(d: dict, runtime: str = "tflm-cmsis-nn", isa: str = "dsp") -> tuple:
    """(kernel variant, work terms) of one op shape (``tflm_op_shape``) on `runtime`; for
    tflm-cmsis-nn the variants follow the kernel TFLM + CMSIS-NN dispatches to on an Armv7E-M
    core (`isa` 'dsp'), on an Armv6-M core (`isa` 'v6m', the Cortex-M0+: CMSIS-NN's plain-C
    paths, ``_v6m_kernel``), or on an MVE core (`isa` 'mve', the Cortex-M55); for
    tflm-reference TFLM's reference kernels."""
    if runtime == "tflm-reference":
        return _reference_kernel(d)
    if isa == "mve":
        return _mve_kernel(d)
    if isa == "v6m":
        v = _v6m_kernel(d)
        if v is not None:
            return v
    code = d["op"]
    oh, ow, oc = d["out"]
    n = oh * ow * oc
    if code == "CONV_2D":
        return _conv_kernel(d)
    if code == "DEPTHWISE_CONV_2D":
        return _dw_kernel(d)
    if code == "FULLY_CONNECTED":
        # arm_nn_vec_mat_mult_t_s8: pairs of weight rows (4-wide SMLAD loop + tail), an odd
        # last row alone
        depth, units = d["depth"], d["units"]
        even = units - units % 2
        return "cm_fc", {"macs": even * depth, "macs_tail4": units * (depth % 4),
                         "macs_odd": (units % 2) * depth, "outputs": units, "call": 1}
    if code in ("MAX_POOL_2D", "AVERAGE_POOL_2D"):
        # arm_max_pool_s8 / arm_avgpool_s8: per output pixel, per window position a pass over
        # the channels (4-wide), then the clamp / division per channel
        kh, kw = d["k"]
        pixels = oh * ow
        kern = "cm_maxpool" if code == "MAX_POOL_2D" else "cm_avgpool"
        return kern, {"window": n * kh * kw, "wpos": pixels * kh * kw, "outputs": n,
                      "pixels": pixels, "call": 1}
    if code == "ADD":
        # arm_elementwise_add_s8: 4 elements per step, then the tail
        return "cm_add", {"outputs": n, "tail4": n % 4, "call": 1}
    if code == "PAD":
        # arm_pad_s8: per input row a memset, a memcpy and a memset; memsets above and below
        ih = d["in"][0]
        return "cm_pad", {"outputs": n, "rows": ih, "call": 1}
    if code == "SOFTMAX":
        return "cm_softmax", {"outputs": n, "call": 1}
    if code in ("RESHAPE", "CONCATENATION"):
        return "copy", {"outputs": n, "call": 1}
    return "other", {"outputs": n, "call": 1}


TFLM_KERNEL_TERMS = {
    "cm_conv_1x1": ("macs", "macs_tail4", "macs_odd", "macs_oddc", "weights", "outputs", "rows", "call"),
    "cm_conv": ("macs", "macs_tail4", "macs_odd", "ptaps", "ptaps_pad", "im2col", "outputs", "call"),
    "cm_dwconv_3x3": ("vtaps4", "taps_tail", "outputs", "pixels", "call"),
    "cm_dwconv": ("macs", "macs_tail4", "ptaps", "outputs", "call"),
    "cm_fc": ("macs", "macs_tail4", "macs_odd", "outputs", "call"),
    "cm_maxpool": ("window", "wpos", "outputs", "pixels", "call"),
    "cm_avgpool": ("window", "wpos", "outputs", "pixels", "call"),
    "cm_add": ("outputs", "tail4", "call"),
    "cm_pad": ("outputs", "rows", "call"),
    "cm_softmax": ("outputs", "call"),
    "v6m_conv": ("macs", "macs_odd", "ptaps", "ptaps_pad", "im2col", "cp_bytes", "cp_words",
                 "outputs", "call"),
    "v6m_pad": ("cp_bytes", "cp_words", "set_bytes", "rows", "call"),
    "v6m_dwconv": ("macs", "krows", "outputs", "call"),
    "v6m_fc": ("trips3", "trips1", "groups3", "outputs", "call"),
    "v6m_avgpool": ("window", "wrows", "outputs", "call"),
    "mve_conv_1x1": ("q_iters", "q_ch", "s_iters", "s_ch", "s_tail", "rows", "call"),
    "mve_conv": ("q_iters", "q_ch", "s_iters", "s_ch", "s_tail", "ptaps", "ptap_vec", "ptaps_pad",
                 "pixels", "call"),
    "mve_dwconv": ("q_taps", "q_grp", "s_taps", "s_grp", "ptaps", "ptap_vec", "ptaps_pad",
                   "quads", "call"),
    "mve_fc": ("q_iters", "q_ch", "s_iters", "s_ch", "call"),
    "mve_maxpool": ("wvec", "wpos", "pvec", "pixels", "call"),
    "mve_avgpool": ("wvec", "wpos", "pvec", "pixels", "call"),
    "mve_add": ("vec4", "call"),
    "mve_pad": ("outputs", "rows", "call"),
    "mve_softmax": ("outputs", "call"),
    "ref_conv": ("macs", "taps", "outputs", "call"),
    "ref_dwconv": ("macs", "taps", "outputs", "call"),
    "ref_fc": ("macs", "outputs", "call"),
    "ref_maxpool": ("window", "outputs", "call"),
    "ref_avgpool": ("window", "outputs", "call"),
    "ref_pad": ("outputs", "call"),
    "ref_add": ("outputs", "call"),
    "ref_softmax": ("outputs", "call"),
    "copy": ("outputs", "call"),
    "other": ("outputs", "call"),
}
