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


def features(u: Unit) -> List[float]:
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
    return [1.0, pe * simd * w * ae, pe * p["ACC"], simd * a * (sf - 1) + pe * simd * w * math.ceil(
        p["NF"] * sf / 16)]


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
    f = features(u)
    lut = int(round(sum(c * x for c, x in zip(coef, f)))) if coef else 0
    return {"lut": max(lut, 0), "bram": bram_rule(u, family), "dsp": dsp_rule(u, family)}


def _ebr(depth: int, width: int) -> int:
    """SB_RAM40_4K blocks of a depth x width memory (256x16, 512x8, 1024x4, 2048x2 modes;
    Lattice TN1250 iCE40 memory usage guide)."""
    return min(math.ceil(width / w) * math.ceil(depth / d)
               for d, w in ((256, 16), (512, 8), (1024, 4), (2048, 2)))


def bram_rule(u: Unit, family: str) -> int:
    """Block RAMs yosys infers: the SWG line buffer (synchronous read) and the folded MVU's
    weight ROM, when deep enough for yosys's memory mapping to prefer a block RAM."""
    mems = []
    if u.kind == "swg" and u.p["K"] > 1:
        mems.append((u.p["IW"], (u.p["K"] - 1) * u.p["C"] * u.in_bits))
    if u.kind == "mvu" and u.p["style"] == "folded":
        mems.append((u.p["NF"] * u.p["SF"], u.p["PE"] * u.p["SIMD"] * u.p["W"]))
    rule = (_coefficients_rules().get(family) or {})
    min_depth = rule.get("bram_min_depth", 1 << 30)
    total = 0
    for depth, width in mems:
        if depth >= min_depth:
            total += _ebr(depth, width) if family == "ice40" else \
                math.ceil(width / 36) * math.ceil(depth / 512) if depth <= 512 else \
                math.ceil(width / 18) * math.ceil(depth / 1024)
    return total


@lru_cache(maxsize=1)
def _rules_cache() -> Dict[str, Dict[str, int]]:
    if not CALIBRATION.is_file():
        return {}
    return json.loads(CALIBRATION.read_text()).get("rules", {})


def _coefficients_rules() -> Dict[str, Dict[str, int]]:
    return _rules_cache()


def dsp_rule(u: Unit, family: str) -> int:
    """DSP slices yosys maps multipliers to: none on ice40 (synth_ice40 without -dsp); on xc7
    synth_xilinx maps a variable x variable product to a DSP48E1 when both operands are at least
    `dsp_min_width` bits wide (read off the calibration runs); constant products (unrolled)
    become adders."""
    if family != "xc7" or u.kind != "mvu" or u.p["style"] != "folded":
        return 0
    mw = (_coefficients_rules().get("xc7") or {}).get("dsp_min_width", 1 << 30)
    ae = u.in_bits + (0 if u.in_signed else 1)
    return u.p["PE"] * u.p["SIMD"] if min(ae, u.p["W"]) >= mw else 0


def plan_resources(plan: Plan, family: str) -> Dict[str, int]:
    tot = {"lut": 0, "bram": 0, "dsp": 0}
    for u in plan.units:
        for k, v in unit_resources(u, family).items():
            tot[k] += v
    return tot
