"""Instruction estimates of the C kernels, per layer and weight encoding: what ``variants.choose``
compares.

Source of the constants: the instruction counts of each kernel's innermost loop, compiled by
Debian's arm-none-eabi-gcc 12.2 at -O2 for cortex-m4 (DSP path) and cortex-m0plus (plain path),
read from the disassembly by ``benchmarks/c_kernel_loops.py`` (results in
``benchmarks/results/c_kernel_loops.json``). Loop bodies dominate and rank the variants of one
layer, which is all the choice needs. This is not a latency model yet: the work outside the
loops and the conversion to cycles are to be calibrated under QEMU (issue 11, part 3).
"""
from __future__ import annotations

# Instructions per multiply-accumulate in the innermost loop, {DSP core: M4, plain core: M0+}
# (benchmarks/results/c_kernel_loops.json, arm-none-eabi-gcc 12.2.1 -O2):
CONV_DENSE_PER_MAC = {True: 1.125, False: 7.0}     # block_2x2 36/32; dot_s8 28/4
FC_DENSE_PER_MAC = {True: 1.5, False: 7.0}         # 4-row SMLAD loop 24/16; plain 28/4
SPARSE_PER_ENTRY = {True: 5.0, False: 7.0}         # 4 (position, value) entries: 20/4, 28/4
CLUSTERED_PER_WEIGHT = {True: 4.6, False: 9.4}     # 3-bit: 46/10 and 94/10 (4-bit: 4.5, 9.375)
DW_PER_MAC = {True: 4.0, False: 8.667}             # 4 channels x 1 tap 16/4; plain 26/3
# Not measured yet (rough, from the loop bodies; the QEMU calibration of issue 11 replaces
# them): im2col per window element (int8 copy, plus the 9-instruction / 4-element expansion to
# int16 pairs on the DSP path) and requantize + clamp + store per output.
IM2COL_PER_ELEMENT = {True: 2.5, False: 1.0}
PER_OUTPUT = 25.0


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
