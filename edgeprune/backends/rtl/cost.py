"""Resource estimate of each RTL unit: LUT (a linear model per unit kind and FPGA family, its
coefficients fitted to yosys cell counts of synthetic layers by benchmarks/rtl_yosys.py, which
writes calibration.json next to this file), block RAM and DSP by rule (which memories and
multipliers yosys maps to EBR / RAMB18 / DSP48E1, read off the same runs). Torch-free.
"""
from __future__ import annotations

import json
import math
from functools import lru_cache
from pathlib import Path
from typing import Dict, List

from .plan import Plan, Unit

CALIBRATION = Path(__file__).with_name("calibration.json")


def features(u: Unit, family: str) -> List[float]:
    """The quantities a unit's LUT count grows with (see the module docstring)."""
    p, a = u.p, u.in_bits
    if u.kind == "swg":
        k, c, iw = p["K"], p["C"], p["IW"]
        return [1.0, k * k * c * a, (k - 1) * c * a]
    if u.kind == "maxpool":
        c, ow = p["C"], p["IW"] // p["P"]
        return [1.0, c * a, ow * c * a]
    ae = a + (0 if u.in_signed else 1)
    if p["style"] == "unrolled":
        return [1.0, p["csd_digits"] * p["ACC"], p["MH"] * u.out_bits]
    pe, simd, sf, w = p["PE"], p["SIMD"], p["SF"], p["W"]
    depth = p["NF"] * sf
    rom_in_logic = 0 if _in_bram("rom", depth, family) else pe * simd * w * depth
    return [1.0, pe * simd * w * ae, pe * (simd * (ae + w) + p["ACC"]), simd * a * (sf - 1),
            rom_in_logic / 16.0]


def kind_key(u: Unit) -> str:
    return u.kind if u.kind != "mvu" else f"mvu_{u.p['style']}"


@lru_cache(maxsize=1)
def _coefficients() -> Dict[str, Dict[str, List[float]]]:
    if not CALIBRATION.is_file():
        return {}
    return json.loads(CALIBRATION.read_text())["lut_coefficients"]


def unit_resources(u: Unit, family: str) -> Dict[str, int]:
    """{lut, bram, dsp} estimate of one unit (bram: SB_RAM40_4K on ice40, RAMB18 on xc7)."""
    coef = _coefficients().get(family, {}).get(kind_key(u))
    f = features(u, family)
    lut = int(round(sum(c * x for c, x in zip(coef, f)))) if coef else 0
    return {"lut": max(lut, 0), "bram": bram_rule(u, family), "dsp": dsp_rule(u, family)}


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
            total += _ebr(depth, width) if family == "ice40" else \
                math.ceil(width / 36) * math.ceil(depth / 512) if depth <= 512 else \
                math.ceil(width / 18) * math.ceil(depth / 1024)
    return total


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


def plan_resources(plan: Plan, family: str) -> Dict[str, int]:
    tot = {"lut": 0, "bram": 0, "dsp": 0}
    for u in plan.units:
        for k, v in unit_resources(u, family).items():
            tot[k] += v
    return tot
