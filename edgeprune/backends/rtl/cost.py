"""Resource estimate of each RTL unit: LUT (a linear model per unit kind and FPGA family, its
coefficients fitted to yosys cell counts of synthetic layers by benchmarks/rtl_yosys.py, which
writes calibration.json next to this file), FF (a line through the register bits the unit's
Verilog declares, fitted on the same runs), block RAM and DSP by rule (which memories and
multipliers yosys maps to EBR / RAMB18 / DSP48E1, read off the same runs).

On iCE40 a logic cell (ICESTORM_LC) holds one LUT4 and one DFF; nextpnr packs a DFF with the
LUT that drives it, so LUT + FF is an upper bound of the placed logic cells and what the
``ice40`` budget (``--budget lut=...`` on an ice40 target) is checked on: the UP5K has 5,280
cells for LUTs and flip-flops together. `graph_units` builds the units from a layer graph and
the FPGA cost model's folding (no trained weights: accumulators at FINN's data-type bound,
inputs unsigned as after a ReLU), so pruning can use the estimate before any export.
Torch-free.
"""
from __future__ import annotations

import json
import math
from functools import lru_cache
from pathlib import Path
from typing import Dict, List

import numpy as np

from .plan import Plan, Unit

CALIBRATION = Path(__file__).with_name("calibration.json")


def features(u: Unit, family: str) -> List[float]:
    """The quantities a unit's LUT count grows with, one per structure in its Verilog
    (backends/rtl/verilog.py); the coefficients are fitted on synthetic units only."""
    p, a = u.p, u.in_bits
    if u.kind == "swg":
        k, c, ih, iw = p["K"], p["C"], p["IH"], p["IW"]
        # the window and line-buffer data move through DFFs and block RAM: the LUTs are the
        # row / column counters and their compares (one term per counter bit), plus the line
        # buffer where it stays out of block RAM (7-series: distributed RAM, LUT_BITS deep)
        lbw = (k - 1) * c * a
        lb = 0 if k == 1 or _in_bram("line_buffer", iw, family) else \
            lbw * math.ceil(iw / LUT_BITS[family])
        return [1.0, _clog2(ih) + _clog2(iw), lb]
    if u.kind == "maxpool":
        c, ow = p["C"], p["IW"] // p["P"]
        return [1.0, c * a, ow * c * a]
    ae = a + (0 if u.in_signed else 1)
    if p["style"] == "unrolled":
        # one ACC-bit adder per CSD digit, each used input sign-extended to ACC bits, and the
        # requantizer per output
        return [1.0, p["csd_digits"] * p["ACC"], p["MH"] * u.out_bits,
                _used_inputs(u) * p["ACC"]]
    pe, simd, sf, w = p["PE"], p["SIMD"], p["SF"], p["W"]
    depth = p["NF"] * sf
    # a weight ROM in logic: each output bit is a depth-input function, one LUT per LUT_BITS
    # entries (LUT4: 16 on iCE40, LUT6: 64 on 7-series) plus the mux tree between them
    rom_in_logic = 0 if _in_bram("rom", depth, family) else \
        pe * simd * w * math.ceil(depth / LUT_BITS[family])
    return [1.0, pe * simd * w * ae,                    # multipliers
            pe * (simd * (ae + w) + p["ACC"]),          # adder tree + accumulator
            pe * p["ACC"],                              # requantizer / output per PE
            rom_in_logic,
            select_luts(simd * a, sf, family),          # the input selection (its own model)
            # the output staging register, written one neuron fold at a time through the
            # indexed part-select `stage[s2_nf * PE*OB +: PE*OB]`: yosys builds a select per
            # staged bit, so it grows with (NF - 1) x PE x output bits, not with PE x SIMD
            # (rtl_yosys.py fold_calibration: 64..240 folds; dense LeNet-5's fc1 has 500)
            (p["NF"] - 1) * pe * u.out_bits]


def select_features(k: int, sf: int) -> List[float]:
    """What the input selection of a folded MVU (K = SIMD * a bits out of SF slices,
    verilog.input_select) costs with: an SF:1 mux per bit, K * (SF - 1) two-input muxes (the
    Verilog writes it as a mux for every K: a part-select `cbuf[sf * K +: K]` with a K that is
    not a power of two became a shifter in yosys; benchmarks/rtl_yosys.py synthesizes such
    selections on their own: SELECTS)."""
    if sf <= 1:
        return [0.0]
    return [float(k * (sf - 1))]


# benchmarks/rtl_yosys.py sets this while it fits (the selection model comes before the MVU's)
_select_override = None


@lru_cache(maxsize=1)
def _select_cache() -> Dict[str, List[float]]:
    if not CALIBRATION.is_file():
        return {}
    return json.loads(CALIBRATION.read_text()).get("select_coefficients", {})


def select_luts(k: int, sf: int, family: str) -> float:
    """LUTs of the input selection of a folded MVU (select_features x the fitted coefficients)."""
    c = (_select_override if _select_override is not None else _select_cache()).get(family, [])
    return float(sum(a * x for a, x in zip(c, select_features(k, sf))))


def _used_inputs(u: Unit) -> int:
    """Inputs of an unrolled MVU with at least one non-zero weight (the x_i wires)."""
    if "used_inputs" in u.p:
        return int(u.p["used_inputs"])
    wm = u.p.get("weights")
    return int(np.count_nonzero(np.any(np.asarray(wm) != 0, axis=0))) if wm is not None \
        else u.p["MW"]


# Bits of one LUT: iCE40 LUT4 (Lattice FPGA-DS-02008), 7-series LUT6 (Xilinx UG474).
LUT_BITS = {"ice40": 16, "xc7": 64}


def _clog2(n: int) -> int:
    return max(1, (int(n) - 1).bit_length())


def register_bits(u: Unit, family: str) -> int:
    """Flip-flop bits the unit's Verilog (backends/rtl/verilog.py) declares as registers,
    memories that yosys keeps in block RAM (or, for the MVU ROM, in LUTs) excluded."""
    p, a = u.p, u.in_bits
    if u.kind == "swg":
        k, c, ih, iw = p["K"], p["C"], p["IH"], p["IW"]
        bits = _clog2(ih) + _clog2(iw) + k * k * c * a + 1
        if k > 1:
            lbw = (k - 1) * c * a
            bits += lbw + (0 if _in_bram("line_buffer", iw, family) else iw * lbw)
        return bits
    if u.kind == "maxpool":
        c, ih, iw, pk = p["C"], p["IH"], p["IW"], p["P"]
        ow = iw // pk
        bits = _clog2(ih) + _clog2(iw) + 2 * _clog2(pk) + _clog2(ow) + 2 * c * a + 1
        return bits + (0 if _in_bram("pool_row", ow, family) else ow * c * a)
    mw, mh, ob, acc = p["MW"], p["MH"], u.out_bits, p["ACC"]
    bits = mw * a + 2 + mh * ob + 1                       # cbuf, cvalid, obuf, ovalid
    if u.in_elems != mw:
        bits += mw * a + _clog2(mw // u.in_elems + 1)     # lbuf, lcnt
    if p["style"] == "unrolled":
        return bits + 1 + mh * acc                        # s1_v, s1_acc
    pe, simd, nf, sf, w = p["PE"], p["SIMD"], p["NF"], p["SF"], p["W"]
    ae = a + (0 if u.in_signed else 1)
    return (bits + 3 * _clog2(nf) + _clog2(sf) + 8 + pe * simd * w + simd * a
            + pe * simd * (ae + w) + pe * acc + (nf - 1) * pe * ob)


def kind_key(u: Unit) -> str:
    return u.kind if u.kind != "mvu" else f"mvu_{u.p['style']}"


@lru_cache(maxsize=1)
def _coefficients() -> Dict[str, Dict[str, List[float]]]:
    if not CALIBRATION.is_file():
        return {}
    return json.loads(CALIBRATION.read_text())["lut_coefficients"]


@lru_cache(maxsize=1)
def _ff_coefficients() -> Dict[str, Dict[str, List[float]]]:
    if not CALIBRATION.is_file():
        return {}
    return json.loads(CALIBRATION.read_text()).get("ff_coefficients", {})


@lru_cache(maxsize=1)
def _uart_coefficients() -> Dict[str, List[float]]:
    if not CALIBRATION.is_file():
        return {}
    return json.loads(CALIBRATION.read_text()).get("uart_coefficients", {})


def uart_features(chans: int, outs: int, out_bits: int) -> List[float]:
    """What the UART wrapper (synth.uart_wrapper) grows with: the pixel register (8 bits per
    channel) and the output byte buffer (each output element in whole bytes)."""
    return [1.0, 8.0 * chans, 8.0 * outs * ((out_bits + 7) // 8)]


def uart_resources(chans: int, outs: int, out_bits: int) -> Dict[str, int]:
    """{lut, ff, cells} of the iCE40 board wrapper (fitted by benchmarks/rtl_yosys.py)."""
    c = _uart_coefficients()
    f = uart_features(chans, outs, out_bits)
    lut = max(int(round(sum(a * x for a, x in zip(c.get("lut", []), f)))), 0)
    ff = max(int(round(sum(a * x for a, x in zip(c.get("ff", []), f)))), 0)
    return {"lut": lut, "ff": ff, "cells": lut + ff}


def unit_resources(u: Unit, family: str) -> Dict[str, int]:
    """{lut, ff, cells, bram, dsp} estimate of one unit (bram: SB_RAM40_4K on ice40, RAMB18 on
    xc7; cells = lut + ff, the logic-cell bound on iCE40)."""
    coef = _coefficients().get(family, {}).get(kind_key(u))
    f = features(u, family)
    lut = max(int(round(sum(c * x for c, x in zip(coef, f)))) if coef else 0, 0)
    fc = _ff_coefficients().get(family, {}).get(kind_key(u))
    ff = max(int(round(fc[0] + fc[1] * register_bits(u, family))), 0) if fc else 0
    return {"lut": lut, "ff": ff, "cells": lut + ff, "bram": bram_rule(u, family),
            "dsp": dsp_rule(u, family)}


def _ebr(depth: int, width: int) -> int:
    """SB_RAM40_4K blocks of a depth x width memory (256x16, 512x8, 1024x4, 2048x2 modes;
    Lattice TN1250 iCE40 memory usage guide)."""
    return min(math.ceil(width / w) * math.ceil(depth / d)
               for d, w in ((256, 16), (512, 8), (1024, 4), (2048, 2)))


def memories(u: Unit) -> List[tuple]:
    """(memory kind, depth, width) of the unit's memories that yosys may map to block RAM."""
    p = u.p
    if u.kind == "swg" and p["K"] > 1:
        return [("line_buffer", p["IW"], (p["K"] - 1) * p["C"] * u.in_bits)]
    if u.kind == "maxpool":
        return [("pool_row", p["IW"] // p["P"], p["C"] * u.in_bits)]
    if u.kind == "mvu" and p["style"] == "folded":
        return [("rom", p["NF"] * p["SF"], p["PE"] * p["SIMD"] * p["W"])]
    return []


def _in_bram(kind: str, depth: int, family: str) -> bool:
    rule = _coefficients_rules().get(family) or {}
    return depth >= rule.get(f"bram_min_depth_{kind}", 1 << 30)


def bram_rule(u: Unit, family: str) -> int:
    """Block RAMs yosys infers: a memory (SWG line buffer, max-pool row, MVU weight ROM) at least
    as deep as the shallowest one of its kind yosys mapped to block RAM in the calibration runs;
    counted in SB_RAM40_4K (ice40) or RAMB18 (xc7, 512x36 / 1024x18 ... aspect ratios)."""
    total = 0
    for kind, depth, width in memories(u):
        if _in_bram(kind, depth, family):
            total += _ebr(depth, width) if family == "ice40" else _ramb18(depth, width)
    return total


# RAMB18E1 aspect ratios (depth, width): 16Kx1, 8Kx2, 4Kx4, 2Kx9, 1Kx18, and 512x36 in simple
# dual-port mode (Xilinx UG473, 7 Series FPGAs Memory Resources, RAMB18E1 port widths).
RAMB18_SHAPES = ((16384, 1), (8192, 2), (4096, 4), (2048, 9), (1024, 18), (512, 36))


def _ramb18(depth: int, width: int) -> int:
    """RAMB18s for a depth x width memory: the cheapest tiling by one aspect ratio (a deep,
    narrow ROM such as dense LeNet-5's fc2, 5,000 x 4 bits, takes 2 as 4Kx4 where the 1Kx18 tiling
    counted 5; yosys synth_xilinx maps it to 2)."""
    return min(math.ceil(width / w) * math.ceil(depth / d) for d, w in RAMB18_SHAPES)


@lru_cache(maxsize=1)
def _rules_cache() -> Dict[str, Dict[str, int]]:
    if not CALIBRATION.is_file():
        return {}
    return json.loads(CALIBRATION.read_text()).get("rules", {})


# benchmarks/rtl_yosys.py sets this while it fits (the rules come before the LUT features)
_rules_override = None


def _coefficients_rules() -> Dict[str, Dict[str, int]]:
    return _rules_override if _rules_override is not None else _rules_cache()


def dsp_rule(u: Unit, family: str) -> int:
    """DSP slices yosys maps multipliers to: none on ice40 (synth_ice40 without -dsp); on xc7
    synth_xilinx puts a variable x variable product on a DSP48E1 when its wider operand has at
    least `dsp_min_width` bits (read off the calibration runs: 9 x 4 went to DSPs, 4 x 4 stayed
    in LUTs); constant products (unrolled) become adders."""
    if family != "xc7" or u.kind != "mvu" or u.p["style"] != "folded":
        return 0
    mw = (_coefficients_rules().get("xc7") or {}).get("dsp_min_width", 1 << 30)
    ae = u.in_bits + (0 if u.in_signed else 1)
    return u.p["PE"] * u.p["SIMD"] if max(ae, u.p["W"]) >= mw else 0


def plan_resources(plan: Plan, family: str, wrapper: bool = False) -> Dict[str, int]:
    return units_resources(plan.units, family, wrapper)


def units_resources(units, family: str, wrapper: bool = False) -> Dict[str, int]:
    """Totals of `units`; with `wrapper` (iCE40 bitstreams) the UART board wrapper included."""
    tot = {"lut": 0, "ff": 0, "cells": 0, "bram": 0, "dsp": 0}
    for u in units:
        for k, v in unit_resources(u, family).items():
            tot[k] += v
    if wrapper and units:
        for k, v in uart_resources(units[0].in_elems, units[-1].out_elems,
                                   units[-1].out_bits).items():
            tot[k] += v
    return tot


def graph_units(graph, deployment, folding_rows) -> List[Unit]:
    """The RTL units of `graph` as `edgeprune export rtl --style folded` builds them, without
    trained weights: the FINN-style lowering at the deployment's bits and the PE / SIMD of the
    cost model's folding (`folding_rows`: the layer rows of the FPGA cost report,
    `edgeprune.cost.estimate(graph, deployment).layers`). Accumulators take FINN's data-type
    bound (the export's, fitted to the actual weights, is at most that wide); activations are
    unsigned (after a ReLU), the input is the deployment's input bits. A layer without an RTL
    unit is an RtlError (the export could not build it either)."""
    from ...backends.finn.layers import lower
    from .ir import RtlError
    fold = {r["node"]: (int(r.get("PE") or 1), int(r.get("SIMD") or 1)) for r in folding_rows
            if r.get("op") == "MVAU_hls"}
    lw = lower(graph, wbits=deployment.wbits, abits=deployment.abits,
               input_bits=deployment.input_bits,
               weight_bits_per_layer=deployment.weight_bits_per_layer(),
               act_bits_per_layer=deployment.act_bits_per_layer())
    units: List[Unit] = []
    beat = None
    for l in lw.layers:
        sh, a = l.shape, l.in_bits
        if l.op_type == "ConvolutionInputGenerator_hls":
            c, (ih, iw), (k, _), (s, _) = (sh["IFMChannels"], sh["IFMDim"], sh["ConvKernelDim"],
                                           sh["Stride"])
            units.append(Unit("swg", l.node + "_swg", l.node, c, a, False, k * k * c, a, False,
                              ih * iw, {"C": c, "IH": ih, "IW": iw, "K": k, "S": s}))
            beat = k * k * c
        elif l.op_type == "StreamingMaxPool_hls":
            c, (ih, iw), (pk, _) = sh["NumChannels"], sh["ImgDim"], sh["PoolDim"]
            units.append(Unit("maxpool", l.node, l.node, c, a, False, c, a, False, ih * iw,
                              {"C": c, "IH": ih, "IW": iw, "P": pk}))
            beat = c
        elif l.op_type == "MVAU_hls":
            mw, mh, acc = int(sh["MW"]), int(sh["MH"]), int(sh["acc_bits"])
            pe, simd = fold.get(l.node, (1, 1))
            nv = int(np.prod(sh["numInputVectors"]))
            in_elems = mw if beat is None or mw % beat else beat
            ob = acc if sh["noActivation"] else int(l.out_bits)
            units.append(Unit("mvu", l.node, l.node, in_elems, a, False, mh, ob,
                              bool(sh["noActivation"]), (mh // pe) * (mw // simd) * nv,
                              {"style": "folded", "MW": mw, "MH": mh, "PE": pe, "SIMD": simd,
                               "NF": mh // pe, "SF": mw // simd, "vectors": nv, "W": l.w_bits,
                               "ACC": acc}))
            beat = mh
        else:
            raise RtlError(f"layer '{l.node}': {l.op_type} has no RTL unit")
    return units


def graph_resources(graph, deployment, folding_rows) -> Dict[str, int]:
    """{lut, ff, cells, bram, dsp} of `graph` as folded RTL on the deployment's FPGA family
    (iCE40: with the UART wrapper of the bitstream)."""
    t = deployment.target
    fam = t.get("family") or ("xc7" if str(t.part).lower().startswith("xc7") else None)
    if fam not in ("ice40", "xc7"):
        from .ir import RtlError
        raise RtlError(f"target '{t.name}' ({t.part}) is neither an iCE40 nor a 7-series part")
    return units_resources(graph_units(graph, deployment, folding_rows), fam,
                           wrapper=fam == "ice40")
