"""Instruction estimates of the C kernels, per layer and weight encoding: what ``variants.choose``
compares.

Source of the constants: the instruction counts of each kernel's innermost loop, compiled by
Debian's arm-none-eabi-gcc 12.2 at -O2 for cortex-m4 (DSP path) and cortex-m0plus (plain path),
read from the disassembly by ``benchmarks/c_kernel_loops.py`` (results in
``benchmarks/results/c_kernel_loops.json``). Loop bodies dominate and rank the variants of one
layer, which is all the choice needs. On the cores calibrated under QEMU (``cost_constants.py``, written by
``benchmarks/c_runtime_calibrate.py`` from synthetic single-layer models) ``estimate_step`` and
``estimate_program`` give instructions and TRM cycles of every kernel call instead, and
``estimate_instructions`` uses them; the inner-loop figures remain for the other cores.
"""
from __future__ import annotations

# Instructions per multiply-accumulate in the innermost loop, {DSP core: M4, plain core: M0+}
# (benchmarks/results/c_kernel_loops.json, arm-none-eabi-gcc 12.2.1 -O2):
CONV_DENSE_PER_MAC = {True: 0.953, False: 7.0}     # 2x2 blocks 122/128 (asm, 8 groups a pass); dot_s8 28/4
FC_DENSE_PER_MAC = {True: 1.344, False: 7.0}       # 4-row block 86/64 (inline asm); plain 28/4
SPARSE_PER_ENTRY = {True: 5.0, False: 7.0}         # 4 (position, value) entries: 20/4, 28/4
CLUSTERED_PER_WEIGHT = {True: 4.6, False: 9.4}     # 3-bit: 46/10 and 94/10 (4-bit: 4.5, 9.375)
DW_PER_MAC = {True: 4.0, False: 8.667}             # 4 channels x 1 tap 16/4; plain 26/3
DW3_PER_MAC = 1.389                                # 3x3 path, stride-1 pixel pairs: 25/18
# Not measured yet (rough, from the loop bodies; the QEMU calibration of issue 11 replaces
# them): im2col per window element (int8 copy, plus the 9-instruction / 4-element expansion to
# int16 pairs on the DSP path) and requantize + clamp + store per output.
IM2COL_PER_ELEMENT = {True: 2.5, False: 1.0}
PER_OUTPUT = 25.0


def estimate_instructions(step, enc, dsp: bool, core=None) -> float:
    """Estimated instructions of `step` (a lower.Step) run with encoding `enc`: the calibrated
    model when `core` was calibrated (estimate_step), else the inner-loop estimate below."""
    if core is not None:
        cal = estimate_step(step, enc, core)
        if cal is not None:
            return float(cal[0])
    outputs = 0
    if step.kind in ("conv", "dwconv"):
        g = step.params["g"]
        pixels = g["out_h"] * g["out_w"]
        outputs = pixels * g["out_c"]
        k = g["k_h"] * g["k_w"] * g["in_c"]
    else:
        p = step.params
        pixels = p["batches"]
        outputs = p["batches"] * p["out_n"]
        k = p["in_n"]
    fam = enc.family
    if step.kind == "dwconv":
        per = DW3_PER_MAC if dsp and dwconv_3x3(step.params["g"]) else DW_PER_MAC[dsp]
        body = step.macs * per
    elif fam == "dense":
        per = CONV_DENSE_PER_MAC[dsp] if step.kind == "conv" else FC_DENSE_PER_MAC[dsp]
        body = step.macs * per
        if step.kind == "conv":
            body += pixels * k * IM2COL_PER_ELEMENT[dsp]
    elif fam == "sparse" and "pool" in step.params:
        # fused with the max pooling (kernels/ep_conv_sparse_pool.c): the pooling windows'
        # pixels are computed, one output per window requantized and stored
        pg = step.params["pool"]["g"]
        pooled = pg["out_h"] * pg["out_w"]
        body = pooled * pg["k_h"] * pg["k_w"] * enc.scalars["entries"] * SPARSE_PER_ENTRY[dsp]
        outputs = pooled * g["out_c"]
    elif fam == "sparse":
        body = pixels * enc.scalars["entries"] * SPARSE_PER_ENTRY[dsp]
    elif fam == "clustered":
        body = step.macs * CLUSTERED_PER_WEIGHT[dsp]
        if step.kind == "conv":
            body += pixels * k * IM2COL_PER_ELEMENT[False]
    else:
        raise ValueError(enc.variant)
    return float(body + outputs * PER_OUTPUT)


# --------------------------------------------------------------------------------------------
# The calibrated model: instructions and cycles per kernel call, from the QEMU measurements of
# synthetic single-layer models (benchmarks/c_runtime_calibrate.py writes cost_constants.py).

def _window_counts(g: dict):
    """(inside pixels, im2col copy calls, window rows whose check runs) of a sliding window:
    exactly the branches of ep_im2col_s8 and of the sparse kernel's interior test."""
    import numpy as np
    oy = np.arange(g["out_h"])[:, None]
    ox = np.arange(g["out_w"])[None, :]
    y0 = oy * g["stride_h"] - g["pad_top"]
    x0 = ox * g["stride_w"] - g["pad_left"]
    span_h, span_w = (g["k_h"] - 1) * g["dil_h"], (g["k_w"] - 1) * g["dil_w"]
    inside = (y0 >= 0) & (y0 + span_h < g["in_h"]) & (x0 >= 0) & (x0 + span_w < g["in_w"])
    row_inside = (x0 >= 0) & (x0 + span_w < g["in_w"]) & (g["dil_w"] == 1)
    calls = np.zeros((g["out_h"], g["out_w"]), dtype=np.int64)
    for ky in range(g["k_h"]):
        iy = y0 + ky * g["dil_h"]
        out_row = (iy < 0) | (iy >= g["in_h"])
        calls = calls + np.where(out_row, 1, np.where(row_inside, 1, g["k_w"]))
    return int(inside.sum()), int(calls.sum())


def dwconv_3x3(g: dict) -> bool:
    """Whether ep_dwconv_dsp runs its 3x3 path on window `g` (kernels/ep_kernels.h: EP_DW3)."""
    return (g["k_h"] == 3 and g["k_w"] == 3 and g["dil_h"] == 1 and g["dil_w"] == 1
            and g["out_c"] == g["in_c"])


def dwconv_plane(g: dict):
    """(rows, columns) of the 3x3 path's padded input plane, and the (rows, columns) of it
    gathered from the input (kernels/ep_dwconv.c: dwconv_3x3)."""
    ph = (g["out_h"] - 1) * g["stride_h"] + 3
    pw = (g["out_w"] - 1) * g["stride_w"] + 3
    rows = min(g["pad_top"] + g["in_h"], ph) - g["pad_top"]
    cols = min(g["pad_left"] + g["in_w"], pw) - g["pad_left"]
    return ph, pw, max(rows, 0), max(cols, 0)


def dwconv_chunk(g: dict) -> int:
    """Output rows per pass of the 3x3 path (kernels/ep_kernels.h: EP_DW3_CHUNK)."""
    return 1 if g["out_w"] >= 512 else min(512 // g["out_w"], g["out_h"])


def dwconv_planes(g: dict) -> int:
    """Planes of the 3x3 path (kernels/ep_kernels.h: EP_DW3_PLANES): four channels are
    gathered per pass of the input when in_c >= 4."""
    return 4 if g["in_c"] >= 4 else 1


def dwconv_scratch(g: dict) -> int:
    """Scratch bytes of the 3x3 path: int32 accumulators of dwconv_chunk rows and the
    channels' planes (each + 4 bytes: the last pixel's word load reads past it, word-aligned;
    EP_DW3_PLANE_BYTES)."""
    ph, pw, _, _ = dwconv_plane(g)
    return 4 * g["out_w"] * dwconv_chunk(g) + dwconv_planes(g) * ((ph * pw + 4 + 3) // 4 * 4)


def conv_direct(g: dict) -> bool:
    """Whether the DSP convolution reads its im2col column straight from the input
    (kernels/ep_conv.c: EP_CONV_DIRECT): 1x1, stride 1, no padding, in_c a multiple of 4."""
    return (g["k_h"] == 1 and g["k_w"] == 1 and g["stride_h"] == 1 and g["stride_w"] == 1
            and g["pad_top"] == 0 and g["pad_left"] == 0 and g["in_c"] % 4 == 0)


def conv_win27(g: dict) -> bool:
    """Whether ep_conv_dense_dsp packs its interior windows straight from the input
    (kernels/ep_conv.c: EP_CONV_WIN27): 3 x 3 windows over 3 channels, dilation 1."""
    return (g["k_h"] == 3 and g["k_w"] == 3 and g["in_c"] == 3 and g["dil_h"] == 1
            and g["dil_w"] == 1)


def conv_dsp_im2col_counts(g: dict) -> dict:
    """Work of ep_conv_dense_dsp's im2col (kernels/ep_conv.c: im2col_pair), summed over the
    output pixels: groups of four window elements expanded to int16 pairs (`expand`), groups
    filled with the zero point's pairs (`fill`, padding rows), window rows handled one by one
    (`rows`), and bytes and pieces gathered through the staging buffer (`copy_bytes`,
    `copy_calls`: rows crossing the left or right edge, or every row when k_w * in_c is not a
    multiple of 4), and the interior 3 x 3 x 3 windows packed straight from the input
    (`win27`)."""
    import numpy as np
    pixels = g["out_h"] * g["out_w"]
    kk = g["k_h"] * g["k_w"] * g["in_c"]
    groups = (kk + 3) // 4
    if conv_direct(g):
        return {"expand": pixels * groups, "fill": 0, "rows": 0, "copy_bytes": 0, "copy_calls": 0,
                "win27": 0}
    oy = np.arange(g["out_h"])[:, None]
    ox = np.arange(g["out_w"])[None, :]
    y0 = oy * g["stride_h"] - g["pad_top"]
    x0 = ox * g["stride_w"] - g["pad_left"]
    span_w = (g["k_w"] - 1) * g["dil_w"]
    row_inside = (x0 >= 0) & (x0 + span_w < g["in_w"]) & (g["dil_w"] == 1)
    run = g["k_w"] * g["in_c"]
    out_rows = np.zeros((g["out_h"], g["out_w"]), dtype=np.int64)
    for ky in range(g["k_h"]):
        iy = y0 + ky * g["dil_h"]
        out_rows = out_rows + ((iy < 0) | (iy >= g["in_h"]))
    in_rows = g["k_h"] - out_rows
    edge = np.where(row_inside, 0, in_rows)          # rows gathered piece by piece
    if run % 4 == 0:
        n = run // 4
        return {"expand": int(in_rows.sum()) * n, "fill": int(out_rows.sum()) * n,
                "rows": pixels * g["k_h"], "copy_bytes": int(edge.sum()) * run,
                "copy_calls": int(edge.sum()) * g["k_w"], "win27": 0}
    pieces = out_rows + np.where(row_inside, in_rows, in_rows * g["k_w"])
    staged = np.ones_like(pieces, dtype=bool)
    if conv_win27(g):
        # interior 3 x 3 windows of 3 channels: packed straight from the input
        staged = ~(row_inside & (out_rows == 0))
    n = int(staged.sum())
    return {"expand": n * groups, "fill": 0, "rows": n * g["k_h"],
            "copy_bytes": n * kk, "copy_calls": int(pieces[staged].sum()), "win27": pixels - n}


def sparse_pool_counts(g: dict, pg: dict) -> dict:
    """Pixel counts of kernels/ep_conv_sparse_pool.c on convolution window `g` and pooling
    window `pg`, exactly as its loops run: pooled pixels of the 2 x 2 interior rectangle
    (`quad`), whether there is one (`runs`), and the convolution pixels computed one by one for
    the other pooled pixels, inside and across the border (`inside`, `border`)."""
    span_h, span_w = (g["k_h"] - 1) * g["dil_h"], (g["k_w"] - 1) * g["dil_w"]
    ox_lo = (g["pad_left"] + g["stride_w"] - 1) // g["stride_w"]
    oy_lo = (g["pad_top"] + g["stride_h"] - 1) // g["stride_h"]
    rx, ry = g["in_w"] - 1 - span_w + g["pad_left"], g["in_h"] - 1 - span_h + g["pad_top"]
    ox_hi = min(rx // g["stride_w"] + 1 if rx >= 0 else 0, g["out_w"])
    oy_hi = min(ry // g["stride_h"] + 1 if ry >= 0 else 0, g["out_h"])
    ph, pw, kh, kw = pg["out_h"], pg["out_w"], pg["k_h"], pg["k_w"]
    px_lo, py_lo = -(-ox_lo // kw), -(-oy_lo // kh)
    px_hi, py_hi = min(ox_hi // kw, pw), min(oy_hi // kh, ph)
    quad_ok = kh == 2 and kw == 2 and px_hi > px_lo and py_hi > py_lo
    inside = border = quad = 0
    runs = int(quad_ok)                  # one interior rectangle per channel
    for py in range(ph):
        row_in = py_lo <= py < py_hi
        if quad_ok and row_in:
            quad += px_hi - px_lo
        for px in range(pw):
            if quad_ok and row_in and px_lo <= px < px_hi:
                continue
            for i in range(kh):
                for j in range(kw):
                    oy, ox = py * kh + i, px * kw + j
                    if (row_in and px_lo <= px < px_hi) or (oy_lo <= oy < oy_hi and ox_lo <= ox < ox_hi):
                        inside += 1
                    else:
                        border += 1
    return {"quad": quad, "runs": runs, "inside": inside, "border": border}


def sparse_pool_terms(g: dict, pg: dict, enc) -> dict:
    """Work terms of one ep_conv_sparse_maxpool call (kernels/ep_conv_sparse_pool.c)."""
    n = sparse_pool_counts(g, pg)
    e = enc.scalars["entries"]
    cnt = enc.arrays["count"]
    live = int((cnt > 0).sum())
    oc = g["out_c"]
    pooled = pg["out_h"] * pg["out_w"]
    # the rectangle runs channels of 1 and 2 weights in loops of their own, the others in the
    # four-accumulator entry loop
    one, two = int((cnt == 1).sum()), int((cnt == 2).sum())
    e_long = int(cnt[cnt > 2].sum())
    return {"entries_quad": n["quad"] * e_long, "entries_inside": n["inside"] * e,
            "entries_border": n["border"] * e, "outputs_quad": n["quad"] * (live - one - two),
            "outputs_quad_1": n["quad"] * one, "outputs_quad_2": n["quad"] * two,
            "outputs_other": (pooled - n["quad"]) * live,
            "pixels_other": (n["inside"] + n["border"]) * live, "border_pixels": n["border"] * live,
            "outputs_const": pooled * (oc - live), "runs": n["runs"] * live,
            "rows": pg["out_h"] * live, "channels": oc, "call": 1}


def step_terms(step, enc=None):
    """(kernel key, {term: count}) of one kernel call: the work terms whose coefficients the
    calibration fits (per core, by non-negative least squares). The counts follow the kernels'
    loop structure (backends/c/kernels/): e.g. the DSP convolution's 2 x 2 blocks of output
    channels by pixels, the memcpy / memset calls of im2col, the sparse convolution's interior
    and border pixels."""
    k = step.kind
    p = step.params
    if k in ("conv", "dwconv"):
        g = p["g"]
        pixels = g["out_h"] * g["out_w"]
        outputs = pixels * g["out_c"]
        taps = g["k_h"] * g["k_w"]
        if k == "dwconv":
            dsp = enc is not None and enc.variant == "dense-dsp"
            if dsp and dwconv_3x3(g):
                c = g["in_c"]
                _, _, rows, cols = dwconv_plane(g)
                s1 = g["stride_w"] == 1
                return "dwconv-3x3", {
                    "pair_steps": c * g["out_h"] * (g["out_w"] // 2) if s1 else 0,
                    "single_steps": c * g["out_h"] * (g["out_w"] % 2 if s1 else g["out_w"]),
                    "outputs": outputs, "rows": c * g["out_h"],
                    "passes": c * -(-g["out_h"] // dwconv_chunk(g)),
                    # four channels per pass of the input (a word per pixel), the last c % 4
                    # byte by byte
                    "gather_words": c // 4 * rows * cols, "gather_word_rows": c // 4 * rows,
                    "gather": c % 4 * rows * cols, "gather_rows": c % 4 * rows,
                    "channels": c, "plane": dwconv_scratch(g), "call": 1}
            if dsp and g["out_c"] == g["in_c"] and g["in_c"] % 4 == 0 and taps <= 64:
                return "dwconv-dsp", {"macs": step.macs, "taps": pixels * taps,
                                      "outputs": outputs, "pixels": pixels, "call": 1}
            return "dwconv-plain", {"macs": step.macs, "outputs": outputs, "pixels": pixels,
                                    "call": 1}
        kk = taps * g["in_c"]
        inside, copies = _window_counts(g)
        fam = enc.family
        if fam == "sparse" and "pool" in p:
            return "conv-sparse-pool", sparse_pool_terms(g, p["pool"]["g"], enc)
        if fam == "sparse":
            # kernels/ep_conv_sparse.c: channel by channel; a channel without entries is a
            # constant stored at every pixel, the others run their interior pixels' entries,
            # then the border pixels' (taps checked) entries
            e = enc.scalars["entries"]
            cnt = enc.arrays["count"]
            live = int((cnt > 0).sum())
            oc = g["out_c"]
            # channels of 1 or 2 entries run unrolled loops (sp_run), the others the general one
            return "conv-sparse", {"entries_inside": inside * e, "entries_border": (pixels - inside) * e,
                                   "outputs_short": inside * int(((cnt == 1) | (cnt == 2)).sum()),
                                   "outputs_live": pixels * live,
                                   "outputs_const": pixels * (oc - live),
                                   "border_outputs": (pixels - inside) * live,
                                   "rows": g["out_h"] * live, "channels": oc, "call": 1}
        if fam == "dense" and enc.variant == "dense-dsp":
            pairs = (pixels + 1) // 2
            groups = (kk + 3) // 4
            oc = g["out_c"]
            return "conv-dense", {"block_steps": pairs * groups * (oc // 2),
                                  "tail_steps": pairs * groups * (oc % 2),
                                  "blocks": pairs * ((oc + 1) // 2), "outputs": outputs,
                                  **conv_dsp_im2col_counts(g), "pixels": pixels, "call": 1}
        return f"conv-{fam}", {"macs": step.macs, "copy_bytes": pixels * kk, "copy_calls": copies,
                               "outputs": outputs, "pixels": pixels, "call": 1}
    if k == "fc":
        b, n_in, n_out = p["batches"], p["in_n"], p["out_n"]
        fam = enc.family
        if fam == "sparse":
            return "fc-sparse", {"entries": b * enc.scalars["entries"], "outputs": b * n_out, "call": 1}
        if fam == "dense" and enc.variant == "dense-dsp":
            return "fc-dense", {"quad_macs": b * (n_out // 4) * 4 * n_in,
                                "tail_macs": b * (n_out % 4) * n_in, "inputs": b * n_in,
                                "outputs": b * n_out, "call": 1}
        return f"fc-{fam}", {"macs": step.macs, "inputs": b * n_in, "outputs": b * n_out, "call": 1}
    if k == "maxpool":
        # kernels/ep_pool.c maxpool_words: four channels per word over each window (a last
        # word ending at channel C - 1 when C >= 4 is not a multiple of 4), fewer than 4
        # channels byte by byte (the calibrated cores all have the DSP extension: every one
        # runs this path)
        g = p["g"]
        pixels, c = g["out_h"] * g["out_w"], g["out_c"]
        win = g["k_h"] * g["k_w"]
        groups = (c + 3) // 4 if c >= 4 else 0
        tail = 0 if c >= 4 else c
        return k, {"window_words": pixels * win * groups, "window_bytes": pixels * win * tail,
                   "words": pixels * groups, "tail_outputs": pixels * tail,
                   "pixels": pixels, "rows": g["out_h"], "call": 1}
    if k == "avgpool":
        g = p["g"]
        return k, {"window": step.macs, "outputs": g["out_h"] * g["out_w"] * g["out_c"],
                   "pixels": g["out_h"] * g["out_w"], "rows": g["out_h"], "call": 1}
    if k in ("add", "relu"):
        return k, {"elements": p["n"], "call": 1}
    if k == "softmax":
        return k, {"elements": p["rows"] * p["depth"], "rows": p["rows"], "call": 1}
    if k == "concat":
        return k, {"bytes": p["outer"] * sum(p["inner"]), "pieces": p["outer"] * len(p["inner"]),
                   "call": 1}
    if k == "pad":
        n = 1
        for d in p["out_dims"]:
            n *= d
        return k, {"elements": n, "call": 1}
    raise ValueError(k)


def _constants():
    try:
        from . import cost_constants
    except ImportError:                  # not calibrated yet
        return None
    return cost_constants


def calibrated(core: str) -> bool:
    c = _constants()
    return c is not None and core in c.STEP_INSTRUCTIONS


def estimate_step(step, enc, core: str):
    """(instructions, cycles) of one kernel call on `core` from the calibrated model, or None
    when the core or this kernel was not calibrated."""
    c = _constants()
    if c is None or core not in c.STEP_INSTRUCTIONS:
        return None
    key, terms = step_terms(step, enc)
    ci, cc = c.STEP_INSTRUCTIONS[core].get(key), c.STEP_CYCLES[core].get(key)
    if ci is None or cc is None:
        return None
    return (sum(ci.get(t, 0.0) * v for t, v in terms.items()),
            sum(cc.get(t, 0.0) * v for t, v in terms.items()))


def estimate_program(program, core: str):
    """{instructions, cycles, steps: [(instructions, cycles)]} of a whole edgeprune_invoke on
    `core` (the encodings chosen by codegen are in step.params['encoding']), or None when the
    core is not calibrated. The call and the output copy are the 'invoke' term."""
    c = _constants()
    if c is None or core not in c.STEP_INSTRUCTIONS:
        return None
    steps = []
    for st in program.steps:
        e = estimate_step(st, st.params.get("encoding"), core)
        if e is None:
            return None
        steps.append(e)
    out_bytes = 1
    for d in program.output_shape:
        out_bytes *= d
    inv_i, inv_c = c.INVOKE_INSTRUCTIONS[core], c.INVOKE_CYCLES[core]
    extra_i = inv_i["call"] + inv_i["output_bytes"] * out_bytes
    extra_c = inv_c["call"] + inv_c["output_bytes"] * out_bytes
    return {"instructions": sum(s[0] for s in steps) + extra_i,
            "cycles": sum(s[1] for s in steps) + extra_c, "steps": steps}
