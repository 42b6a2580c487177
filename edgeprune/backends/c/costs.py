"""Instruction estimates of the C kernels, per layer and weight encoding: what ``variants.choose``
compares.

Source of the constants: the instruction counts of each kernel's innermost loop, compiled by
Debian's arm-none-eabi-gcc 12.2 at -O2 for cortex-m4 (DSP path) and cortex-m0plus (plain path),
read from the disassembly by ``benchmarks/c_kernel_loops.py`` (results in
``benchmarks/results/c_kernel_loops.json``). Loop bodies only: they rank the variants of one
layer, which is all the choice needs. They are not a latency model: the per-layer constants
outside the loops and the conversion to cycles are calibrated under QEMU (issue 11, part 3).
"""
from __future__ import annotations

# instructions per unit of work in the innermost loop: (dsp core, plain core)
# conv dense: block_2x2 (20 instructions / 16 MACs); plain: dot_s8 (unrolled x4)
CONV_DENSE_PER_MAC = {True: 20 / 16, False: 28 / 4}
# fc dense: ep_fc_dense_dsp 4-row loop (24 / 16 MACs); plain (16 / 4 on M4, 28 / 4 on M0+)
FC_DENSE_PER_MAC = {True: 24 / 16, False: 28 / 4}
# sparse: one entry (delta, value): 7 instructions on M4, 10 on M0+
SPARSE_PER_ENTRY = {True: 7.0, False: 10.0}
# clustered: per weight, word-unrolled decode + lookup + multiply-accumulate
# (M4: 3-bit 36 / 10, 4-bit 30 / 8; M0+: about 5 per weight)
CLUSTERED_PER_WEIGHT = {True: 3.7, False: 5.5}
# im2col: per window element, int8 copy + expansion to int16 pairs (DSP) or copy only (plain)
IM2COL_PER_ELEMENT = {True: 2.5, False: 1.0}
# requantize + clamp + store one output
PER_OUTPUT = 25.0
# depthwise dense: 4 channels x 1 tap per 18-instruction iteration (DSP); plain 19 per MAC
DW_PER_MAC = {True: 18 / 4, False: 19.0}


def estimate_instructions(step, enc, dsp: bool) -> float:
    """Estimated instructions of `step` (a lower.Step) run with encoding `enc`."""
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
        body = step.macs * DW_PER_MAC[dsp]
    elif fam == "dense":
        per = CONV_DENSE_PER_MAC[dsp] if step.kind == "conv" else FC_DENSE_PER_MAC[dsp]
        body = step.macs * per
        if step.kind == "conv":
            body += pixels * k * IM2COL_PER_ELEMENT[dsp]
    elif fam == "sparse":
        body = pixels * enc.scalars["entries"] * SPARSE_PER_ENTRY[dsp]
    elif fam == "clustered":
        body = step.macs * CLUSTERED_PER_WEIGHT[dsp]
        if step.kind == "conv":
            body += pixels * k * IM2COL_PER_ELEMENT[False]
    else:
        raise ValueError(enc.variant)
    return float(body + outputs * PER_OUTPUT)
