"""FINN-style folding: PE/SIMD/resType/ram_style per hardware layer, searched for a frame rate.

Auto-folding (`auto_fold`): each layer's legal configurations (PE, SIMD, multiplier style
``resType`` lut|dsp, memory style ``ram_style`` distributed|block) are enumerated; for a
cycles-per-frame target T every layer independently takes the cheapest configuration with cycles
<= T, cost = sum over resources of usage / (ceiling x capacity). Because layers run in parallel
and resources add up, that per-layer choice is the exact minimum of the summed cost for T. If the
cheapest design breaks a ceiling, the weights of the over-used resources are raised and the
choice repeated (a Lagrangian-style heuristic, up to `_REWEIGHT_ROUNDS` rounds). The highest FPS
that fits is found by bisection over the achievable T values.

Fit: LUT, BRAM18, URAM and DSP each within a utilisation ceiling of the part: FINN's
``DEFAULT_RES_LIMITS`` (src/finn/util/platforms.py, "recommended resource limits from Xilinx for
timing closure"): LUT 70 %, BRAM18 80 %, URAM 80 %, DSP 80 % (FF 50 % is not checked: FINN
publishes no FF estimate, so neither do we). A target TOML can override them with a
``[util_limits]`` table.

The result, `Folding`, is what the FPGA cost model reports and what the FINN and hls4ml exporters
write (FINN's folding_config.json / specialize_layers_config.json, hls4ml's ReuseFactor).
Torch-free.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

from ...errors import EdgepruneError
from ...layergraph import LayerGraph
from ...targets import FpgaTarget
from .layers import (FoldingError, HWLayer, LayerConfig, Lowered, check_config, evaluate,
                     layer_options, lower)

RESOURCES = ("lut", "bram18", "uram", "dsp")
# FINN src/finn/util/platforms.py DEFAULT_RES_LIMITS (order LUT, FF, BRAM_18K, URAM, DSP =
# 0.7, 0.5, 0.8, 0.8, 0.8): "recommended resource limits from Xilinx for timing closure".
DEFAULT_UTIL_LIMITS = {"lut": 0.7, "ff": 0.5, "bram18": 0.8, "uram": 0.8, "dsp": 0.8}
# Rounds of re-weighting when the cheapest design breaks a ceiling (search heuristic, no physics).
_REWEIGHT_ROUNDS = 12

__all__ = ["Folding", "LayerFolding", "FoldingError", "FoldUnit", "Part", "auto_fold",
           "fold_network", "fold_units", "apply_folding", "critical_path", "fits", "part_of",
           "RESOURCES", "DEFAULT_UTIL_LIMITS"]


# --------------------------------------------------------------------------------------------
# Target

@dataclass
class Part:
    name: str
    part: str
    finn_board: str
    clock_mhz: float
    capacity: Dict[str, int]
    limits: Dict[str, float]

    @property
    def budget(self) -> Dict[str, float]:
        """Usable amount of each resource: capacity x utilisation ceiling."""
        return {r: self.capacity[r] * self.limits[r] for r in RESOURCES}


def part_of(target: FpgaTarget) -> Part:
    """The FPGA part of `target` (its fields were checked when the target was loaded)."""
    if not isinstance(target, FpgaTarget):
        raise EdgepruneError(f"target '{getattr(target, 'name', target)}' is not an FPGA target")
    limits = {**DEFAULT_UTIL_LIMITS, **target.util_limits}
    cap = {r: int(getattr(target, r)) for r in RESOURCES}
    return Part(target.name, target.part, target.finn_board, float(target.clock_mhz), cap, limits)


# --------------------------------------------------------------------------------------------
# Folding (the result of auto_fold, consumed by the FINN and hls4ml exporters)

@dataclass
class LayerFolding:
    """Folding of one FINN layer.

    name:         FINN node name after ``specialize_layers`` + ``GiveUniqueNodeNames``
                  ('MVAU_hls_0'); the key of FINN's folding_config.json.
    generic_name: the name before ``specialize_layers`` ('MVAU_0'), the key of FINN's
                  specialize_layers_config.json.
    op_type:      FINN op type of the HLS backend ('MVAU_hls', 'VVAU_hls',
                  'ConvolutionInputGenerator_hls', 'StreamingMaxPool_hls', 'Pool_hls',
                  'FMPadding_hls', 'DownSampler_hls', 'AddStreams_hls', 'DuplicateStreams_hls',
                  'Thresholding_hls', 'GlobalAccPool_hls', 'StreamingConcat_hls').
    node:         the layer-graph node it implements.
    order:        position in the dataflow pipeline (stream order).
    attrs:        FINN node attributes to set: PE / SIMD (as applicable), resType ('lut'|'dsp'),
                  ram_style ('distributed'|'block'), plus mem_mode='internal_decoupled' and
                  ram_style_thresholds='distributed' for MVAU/VVAU (what the estimate assumes).
    shape:        the sizes the folding divides (MW, MH, numInputVectors, Channels, Kernel, ...).
    cycles:       expected cycles per frame; cost: LUT/BRAM18/URAM/DSP of this layer.
    """

    name: str
    generic_name: str
    op_type: str
    node: str
    order: int
    attrs: Dict[str, Any]
    shape: Dict[str, Any]
    cycles: int
    cost: Dict[str, int]
    in_bits: int
    w_bits: int
    out_bits: int

    @property
    def pe(self) -> Optional[int]:
        return self.attrs.get("PE")

    @property
    def simd(self) -> Optional[int]:
        return self.attrs.get("SIMD")

    @property
    def hls4ml_reuse_factor(self) -> Optional[int]:
        """hls4ml ReuseFactor with the same multiplier count: products per output vector /
        parallel multipliers = MW*MH/(PE*SIMD) (MVAU) or K*K*Ch/(PE*SIMD) (VVAU). Equals FINN's
        weight-memory depth WMEM."""
        s = self.shape
        if self.op_type == "MVAU_hls":
            return s["MW"] * s["MH"] // (self.pe * self.simd)
        if self.op_type == "VVAU_hls":
            return s["Kernel"][0] * s["Kernel"][1] * s["Channels"] // (self.pe * self.simd)
        return None

    def to_dict(self) -> Dict[str, Any]:
        d = {"name": self.name, "generic_name": self.generic_name, "op_type": self.op_type,
             "node": self.node, "order": self.order, "attrs": dict(self.attrs),
             "shape": dict(self.shape), "cycles": self.cycles, "cost": dict(self.cost),
             "in_bits": self.in_bits, "w_bits": self.w_bits, "out_bits": self.out_bits}
        if self.hls4ml_reuse_factor is not None:
            d["hls4ml_reuse_factor"] = self.hls4ml_reuse_factor
        return d


@dataclass
class Folding:
    """Per-layer parallelism of a FINN dataflow design, in pipeline order.

    `layers` lists every FINN layer (LayerFolding) in stream order; `for_node(name)` gives the
    layers implementing one graph node (e.g. ConvolutionInputGenerator + MVAU of a conv).
    `finn_folding_config()` is the dict FINN's ``folding_config_file`` expects
    (``{"Defaults": {}, "<node name>": {attr: value}}``); `specialize_layers_config()` pins the
    HLS backends the estimate assumes. `to_dict()` is JSON-ready.
    """

    target: str
    part: str
    finn_board: str
    clock_mhz: float
    wbits: int
    abits: int
    mode: str                       # 'target_fps' | 'max_fps_fit' | 'given'
    target_fps: Optional[float]
    ii_cycles: int                  # max layer cycles = cycles between frames
    fits: bool
    layers: List[LayerFolding]
    util_limits: Dict[str, float] = field(default_factory=dict)
    notes: List[str] = field(default_factory=list)

    @property
    def fps(self) -> float:
        return self.clock_mhz * 1e6 / self.ii_cycles

    def for_node(self, node: str) -> List[LayerFolding]:
        return [l for l in self.layers if l.node == node]

    def layer(self, name: str) -> LayerFolding:
        for l in self.layers:
            if l.name == name:
                return l
        raise KeyError(name)

    def finn_folding_config(self) -> Dict[str, Dict[str, Any]]:
        cfg: Dict[str, Dict[str, Any]] = {"Defaults": {}}
        for l in self.layers:
            if l.attrs:
                cfg[l.name] = dict(l.attrs)
        return cfg

    def specialize_layers_config(self) -> Dict[str, Dict[str, Any]]:
        cfg: Dict[str, Dict[str, Any]] = {"Defaults": {}}
        for l in self.layers:
            cfg[l.generic_name] = {"preferred_impl_style": "hls"}
        return cfg

    def to_dict(self) -> Dict[str, Any]:
        return {"target": self.target, "part": self.part, "finn_board": self.finn_board,
                "clock_mhz": self.clock_mhz, "wbits": self.wbits, "abits": self.abits,
                "mode": self.mode, "target_fps": self.target_fps, "fps": self.fps,
                "ii_cycles": self.ii_cycles, "fits": self.fits,
                "util_limits": dict(self.util_limits), "notes": list(self.notes),
                "layers": [l.to_dict() for l in self.layers]}


# --------------------------------------------------------------------------------------------
# Search space: units of jointly folded layers

@dataclass
class FoldUnit:
    layers: List[int]                       # HW layer indices folded together
    configs: List[Tuple[LayerConfig, ...]]  # one config per layer, per option
    cycles: List[Tuple[int, ...]]           # per option, per layer
    costs: List[Tuple[float, float, float, float]]   # per option: lut, bram18, uram, dsp
    max_cycles: List[int]                   # per option


def fold_units(lw: Lowered, has_dsp: bool, cache: Optional[dict] = None) -> List[FoldUnit]:
    coupled = {l.couple: l.index for l in lw.layers if l.couple is not None}  # consumer -> SWG
    units: List[FoldUnit] = []
    for l in lw.layers:
        if l.couple is not None:
            continue  # folded with its consumer
        members = [l] if l.index not in coupled else [lw.layers[coupled[l.index]], l]
        key = tuple((m.op_type, repr(sorted(m.shape.items())), m.in_bits, m.w_bits, m.out_bits)
                    for m in members) + (has_dsp,)
        if cache is not None and key in cache:
            proto = cache[key]
            units.append(FoldUnit([m.index for m in members], proto.configs, proto.cycles,
                               proto.costs, proto.max_cycles))
            continue
        opts: List[Tuple[LayerConfig, ...]] = []
        for cfg in layer_options(l, has_dsp):
            if len(members) == 1:
                opts.append((cfg,))
            else:  # depthwise SWG: SIMD = consumer PE; its line buffer style is free
                for style in ("distributed", "block"):
                    opts.append((LayerConfig(SIMD=cfg.PE, ram_style=style), cfg))
        rows = []
        for cfgs in opts:
            lc = [evaluate(m, c) for m, c in zip(members, cfgs)]
            cost = tuple(float(sum(getattr(x, r) for x in lc)) for r in RESOURCES)
            cyc = tuple(x.cycles for x in lc)
            rows.append((max(cyc), _cfg_key(cfgs), cfgs, cyc, cost))
        rows.sort(key=lambda r: (r[0], r[1]))   # deterministic: fastest first, then by config
        unit = FoldUnit([m.index for m in members], [r[2] for r in rows], [r[3] for r in rows],
                     [r[4] for r in rows], [r[0] for r in rows])
        if cache is not None:
            cache[key] = unit
        units.append(unit)
    return units


def _cfg_key(cfgs: Sequence[LayerConfig]) -> tuple:
    return tuple((c.PE or 0, c.SIMD or 0, c.resType or "", c.ram_style or "") for c in cfgs)


def _weights(part: Part) -> List[float]:
    b = part.budget
    return [1.0 / b[r] if b[r] > 0 else 0.0 for r in RESOURCES]


def _select(units: List[FoldUnit], T: int, w: Sequence[float]) -> Optional[List[int]]:
    """Cheapest option per unit with cycles <= T (first of equal cost = fastest); None if some
    unit cannot reach T."""
    choice = []
    for u in units:
        best, best_cost = -1, math.inf
        for i, (mc, c) in enumerate(zip(u.max_cycles, u.costs)):
            if mc > T:
                break  # options are sorted by cycles
            cost = c[0] * w[0] + c[1] * w[1] + c[2] * w[2] + c[3] * w[3]
            if cost < best_cost:
                best, best_cost = i, cost
        if best < 0:
            return None
        choice.append(best)
    return choice


def _usage(units: List[FoldUnit], choice: List[int]) -> Dict[str, float]:
    tot = [0.0, 0.0, 0.0, 0.0]
    for u, i in zip(units, choice):
        for k in range(4):
            tot[k] += u.costs[i][k]
    return dict(zip(RESOURCES, tot))


def fits(usage: Dict[str, float], part: Part) -> bool:
    b = part.budget
    return all(usage[r] <= b[r] for r in RESOURCES)


def _solve_at(units: List[FoldUnit], T: int, part: Part) -> Tuple[Optional[List[int]], bool]:
    """Least-resource choice reaching T; if it breaks a ceiling, re-weight towards fitting."""
    w = _weights(part)
    first = _select(units, T, w)
    if first is None:
        return None, False
    choice = first
    b = part.budget
    for _ in range(_REWEIGHT_ROUNDS):
        use = _usage(units, choice)
        if fits(use, part):
            return choice, True
        over = False
        for k, r in enumerate(RESOURCES):
            if b[r] <= 0:
                continue
            ratio = use[r] / b[r]
            if ratio > 1:
                w[k] *= 2 * ratio
                over = True
        if not over:  # over on a resource the part lacks (cannot happen: options never use it)
            break
        choice = _select(units, T, w)
    return first, False


def _lower_bound(units: List[FoldUnit]) -> int:
    return max(min(u.max_cycles) for u in units) if units else 1


def _best_fitting_T(units: List[FoldUnit], part: Part) -> Optional[int]:
    """Smallest achievable cycles-per-frame whose least-resource design fits (bisection over the
    sorted achievable values; assumes fitting is monotone in T, true for the summed-cost
    optimum up to the re-weighting heuristic)."""
    lb = _lower_bound(units)
    cands = sorted({c for u in units for c in u.max_cycles if c >= lb})
    if not cands:
        return None
    _, ok = _solve_at(units, cands[-1], part)
    if not ok:
        return None
    lo, hi = 0, len(cands) - 1
    while lo < hi:
        mid = (lo + hi) // 2
        _, ok = _solve_at(units, cands[mid], part)
        if ok:
            hi = mid
        else:
            lo = mid + 1
    return cands[lo]


# --------------------------------------------------------------------------------------------
# Public API

def auto_fold(graph: LayerGraph, target: FpgaTarget, *, wbits: int, abits: int,
              target_fps: Optional[float] = None, input_bits: int = 8,
              weight_bits_per_layer: Optional[Dict[str, int]] = None,
              act_bits_per_layer: Optional[Dict[str, int]] = None) -> Folding:
    """Choose PE/SIMD/resType/ram_style for every FINN layer of `graph` on `target`.

    target_fps given: the least resources (summed utilisation of LUT, BRAM18, URAM, DSP against
    the ceilings) whose slowest layer reaches `target_fps`; if that design does not fit, the
    nearest fitting one at the same FPS. Raises FoldingError (an EdgepruneError) naming the best
    reachable FPS when no fitting design reaches it.
    target_fps None: the highest FPS whose design fits the part under the utilisation ceilings
    (least resources at that FPS). If even the smallest design does not fit, returns it with
    ``fits=False`` and a note.

    Rules enforced: MVAU MH % PE == 0, MW % SIMD == 0, SIMD >= MW/1024 (HLS); VVAU Ch % PE == 0,
    K*K % SIMD == 0 and SIMD > 1 only with PE == Ch (HLS depthwise SWG); depthwise SWG SIMD =
    consumer PE; every other op's PE/SIMD divides its channels.
    """
    part = part_of(target)
    lw = lower(graph, wbits=wbits, abits=abits, input_bits=input_bits,
               weight_bits_per_layer=weight_bits_per_layer, act_bits_per_layer=act_bits_per_layer)
    units = fold_units(lw, part.capacity["dsp"] > 0)
    return fold_network(lw, units, part, wbits, abits, target_fps)


def fold_network(lw: Lowered, units: List[FoldUnit], part: Part, wbits: int, abits: int,
          target_fps: Optional[float], target_cycles: Optional[int] = None) -> Folding:
    f_hz = part.clock_mhz * 1e6
    notes = list(lw.notes)
    if target_cycles is None and target_fps is not None:
        if not target_fps > 0:
            raise EdgepruneError(f"target FPS must be positive, got {target_fps}")
        target_cycles = int(math.floor(f_hz / target_fps))
    if target_cycles is not None:
        lb = _lower_bound(units)
        choice, ok = (None, False) if target_cycles < lb else _solve_at(units, target_cycles, part)
        if choice is None or not ok:
            best = _best_fitting_T(units, part)
            fit_txt = (f"the best that fits {part.name} is {f_hz / best:,.1f} FPS"
                       if best is not None else f"no folding fits {part.name} at all")
            want = f"{target_fps:,.1f} FPS" if target_fps else f"{target_cycles} cycles/frame"
            raise FoldingError(
                f"{want} is not reachable on {part.name} at {part.clock_mhz:g} MHz: {fit_txt} "
                f"(fully unfolded, ignoring capacity: {f_hz / lb:,.1f} FPS)")
        mode = "target_fps"
        fits = True
    else:
        best = _best_fitting_T(units, part)
        mode = "max_fps_fit"
        if best is None:
            T = max(max(u.max_cycles) for u in units)
            choice = _select(units, T, _weights(part))
            fits = False
            notes.append(f"does not fit {part.name} even fully folded (one PE, one SIMD lane per "
                         f"layer); shown: the smallest design")
        else:
            choice, fits = _solve_at(units, best, part)
    layers = _folding_layers(lw, units, choice)
    ii = max(l.cycles for l in layers) if layers else 1
    return Folding(part.name, part.part, part.finn_board, part.clock_mhz, wbits, abits, mode,
                   target_fps, ii, fits, layers, dict(part.limits), notes)


def _folding_layers(lw: Lowered, units: List[FoldUnit], choice: List[int]) -> List[LayerFolding]:
    cfg_of: Dict[int, LayerConfig] = {}
    for u, i in zip(units, choice):
        for idx, cfg in zip(u.layers, u.configs[i]):
            cfg_of[idx] = cfg
    return [_layer_folding(l, cfg_of[l.index]) for l in lw.layers]


def _layer_folding(l: HWLayer, cfg: LayerConfig) -> LayerFolding:
    check_config(l, cfg)
    c = evaluate(l, cfg)
    attrs = cfg.attrs()
    if l.op_type in ("MVAU_hls", "VVAU_hls"):
        attrs["mem_mode"] = "internal_decoupled"
        if not l.shape["noActivation"]:
            attrs["ram_style_thresholds"] = "distributed"
    shape = {k: v for k, v in l.shape.items() if k != "acc_bits"}
    return LayerFolding(l.name, l.generic_name, l.op_type, l.node, l.index, attrs, shape,
                        c.cycles, dict({r: getattr(c, r) for r in RESOURCES},
                                       lut_thresholds=c.lut_thresholds), l.in_bits, l.w_bits,
                        l.out_bits)


def apply_folding(lw: Lowered, folding) -> List[LayerFolding]:
    """Evaluate an explicit folding (Folding or its to_dict()) on this graph's layers."""
    data = folding.to_dict() if isinstance(folding, Folding) else folding
    try:
        given = {d["name"]: d.get("attrs", {}) for d in data["layers"]}
    except (KeyError, TypeError) as e:
        raise EdgepruneError(f"folding is not a Folding or Folding.to_dict() ({e})") from None
    names = [l.name for l in lw.layers]
    missing = [n for n in names if n not in given]
    extra = [n for n in given if n not in names]
    if missing or extra:
        raise FoldingError(f"folding does not match this model's layers (missing: "
                           f"{', '.join(missing) or '-'}; unknown: {', '.join(extra) or '-'})")
    out = []
    for l in lw.layers:
        a = given[l.name]
        cfg = LayerConfig(a.get("PE"), a.get("SIMD"), a.get("resType"), a.get("ram_style"))
        if l.op_type in ("MVAU_hls", "VVAU_hls", "ConvolutionInputGenerator_hls"):
            if cfg.ram_style not in ("distributed", "block"):
                raise FoldingError(f"{l.name}: ram_style must be 'distributed' or 'block'")
        if l.op_type in ("MVAU_hls", "VVAU_hls") and cfg.resType not in ("lut", "dsp"):
            raise FoldingError(f"{l.name}: resType must be 'lut' or 'dsp'")
        if l.couple is not None:
            pe = given[lw.layers[l.couple].name].get("PE")
            if cfg.SIMD != pe:
                raise FoldingError(f"{l.name}: depthwise SWG SIMD={cfg.SIMD} must equal the PE "
                                   f"of {lw.layers[l.couple].name} ({pe})")
        out.append(_layer_folding(l, cfg))
    return out


def critical_path(lw: Lowered, cycles: List[int]) -> int:
    """Largest sum of layer cycles along any path (layers are in topological order)."""
    best = [0] * len(lw.layers)
    for l in lw.layers:
        prev = max((best[i] for i in l.inputs if i >= 0), default=0)
        best[l.index] = prev + cycles[l.index]
    return max(best) if best else 0


