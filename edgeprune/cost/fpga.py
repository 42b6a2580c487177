"""FINN-style FPGA cost model: dataflow lowering, auto-folding, per-layer cost, what-if.

Model (see docs/cost_model_fpga.md for every formula and its source):

* The network becomes a FINN dataflow pipeline (`backends.finn.layers.lower`): one hardware
  layer per op, all running concurrently and connected by streams.
* Each layer's cycles per frame and LUT / BRAM18 / URAM / DSP are FINN's own analytic estimates
  (``get_exp_cycles``, ``lut_estimation``, ``bram_estimation``, ``dsp_estimation``) for the HLS
  backends, re-implemented in `backends.finn.layers.evaluate`.
* Throughput: the slowest layer sets the rate, FPS = f_clk / max(layer cycles) (FINN
  ``dataflow_performance`` / ``estimate_network_performance``).
* Latency: the critical path, i.e. the largest sum of layer cycles along any input-to-output path,
  divided by f_clk (FINN ``dataflow_performance`` "critical_path_cycles"). This treats each layer
  as needing its full frame time - an upper bound for a fine-grained stream pipeline.
* Fit and folding: `edgeprune.backends.finn.folding` (auto-folding under FINN's utilisation
  ceilings); the exporters write the same `Folding`.
"""
from __future__ import annotations

import math
from typing import Any, Dict, List, Optional

from ..backends.finn.folding import (RESOURCES, Folding, FoldingError, LayerFolding, Part,
                                     apply_folding, critical_path, fits, fold_network,
                                     fold_units, part_of)
from ..backends.finn.layers import NO_ESTIMATE_OPS, Lowered, lower
from ..deploy import Deployment
from ..errors import EdgepruneError
from ..layergraph import LayerGraph, OpKind
from .report import CostReport

__all__ = ["estimate_fpga", "what_if_fpga"]

def _bit_options(dep: Deployment) -> Dict[str, Any]:
    return {"wbits": dep.wbits, "abits": dep.abits, "input_bits": dep.input_bits,
            "weight_bits_per_layer": dep.weight_bits_per_layer(),
            "act_bits_per_layer": dep.act_bits_per_layer()}


def estimate_fpga(graph: LayerGraph, deployment: Deployment, *, folding=None,
                  weight_density: Optional[Dict[str, float]] = None) -> CostReport:
    """FINN-style cost of `graph` in an FPGA `deployment` (its bits, per-layer bits and fps).

    folding: a Folding (or its to_dict()) to evaluate as is; None = `auto_fold` (deployment.fps
    given: least resources reaching it; else the highest FPS that fits).
    weight_density: per-layer fraction of non-zero weights; FINN's MVAU/VVAU stream their weights
    densely, so it changes nothing here (accepted for the common cost API).
    Totals: params, macs, cycles (= latency in cycles, critical path), ii_cycles (slowest layer),
    fps, latency_ms, lut, ff (None: not modelled), bram18, uram, dsp, utilisation_pct,
    util_limits_pct, fits, clock_mhz, part, finn_board, mode.
    Layers: one row per FINN layer with name, op, node, PE, SIMD, resType, ram_style, cycles,
    lut, bram18, uram, dsp, shape, bottleneck.
    """
    part = part_of(deployment.target)
    bits = _bit_options(deployment)
    wbits, abits, target_fps = deployment.wbits, deployment.abits, deployment.fps
    lw = lower(graph, **bits)
    if folding is not None:
        layers = apply_folding(lw, folding)
        ii = max(l.cycles for l in layers) if layers else 1
        use = {r: sum(l.cost[r] for l in layers) for r in RESOURCES}
        fold = Folding(part.name, part.part, part.finn_board, part.clock_mhz, wbits, abits,
                       "given", target_fps, ii, fits(use, part), layers, dict(part.limits),
                       list(lw.notes))
    else:
        units = fold_units(lw, part.capacity["dsp"] > 0)
        fold = fold_network(lw, units, part, wbits, abits, target_fps)
    return _report(graph, lw, fold, part)


def _report(graph: LayerGraph, lw: Lowered, fold: Folding, part: Part) -> CostReport:
    f_hz = part.clock_mhz * 1e6
    cycles = [l.cycles for l in fold.layers]
    latency_cycles = critical_path(lw, cycles)
    use = {r: sum(l.cost[r] for l in fold.layers) for r in RESOURCES}
    util = {r: (100.0 * use[r] / part.capacity[r] if part.capacity[r] else
                (0.0 if use[r] == 0 else math.inf)) for r in RESOURCES}
    rows = []
    for l in fold.layers:
        rows.append({"name": l.name, "op": l.op_type, "node": l.node,
                     "PE": l.attrs.get("PE"), "SIMD": l.attrs.get("SIMD"),
                     "resType": l.attrs.get("resType"), "ram_style": l.attrs.get("ram_style"),
                     "cycles": l.cycles, **l.cost,
                     "shape": _shape_text(l), "bottleneck": l.cycles == fold.ii_cycles})
    totals = {"params": graph.total_params, "macs": graph.total_macs,
              "cycles": latency_cycles, "ii_cycles": fold.ii_cycles,
              "fps": f_hz / fold.ii_cycles, "latency_ms": latency_cycles / f_hz * 1e3,
              "lut": use["lut"], "ff": None, "bram18": use["bram18"], "uram": use["uram"],
              "dsp": use["dsp"],
              "utilisation_pct": {r: round(util[r], 2) for r in RESOURCES},
              "util_limits_pct": {r: 100.0 * part.limits[r] for r in RESOURCES},
              "capacity": dict(part.capacity), "fits": fold.fits,
              "clock_mhz": part.clock_mhz, "part": part.part, "finn_board": part.finn_board,
              "mode": fold.mode, "target_fps": fold.target_fps,
              "wbits": fold.wbits, "abits": fold.abits}
    notes = list(fold.notes)
    if not fold.fits:
        over = [f"{r} {util[r]:.0f}% > {100 * part.limits[r]:.0f}%" for r in RESOURCES
                if use[r] > part.budget[r]]
        notes.append(f"does not fit {part.name} within the utilisation ceilings: {', '.join(over)}")
    notes += [
        "FINN-style analytic estimate (HLS backends, FINN's get_exp_cycles / lut_estimation / "
        "bram_estimation / dsp_estimation forms), not post-synthesis figures.",
        f"fps = f_clk / slowest layer ({fold.ii_cycles} cycles); latency = critical path "
        f"({latency_cycles} cycles) / f_clk, an upper bound for the overlapping stream pipeline.",
        "not counted: inter-layer FIFOs, data-width converters, IODMA/AXI shell and the PS; FF is "
        "not modelled (FINN publishes no FF estimate).",
    ]
    thr = sum(l.cost.get("lut_thresholds", 0) for l in fold.layers)
    if use["lut"] and thr > 0.4 * use["lut"]:
        notes.append(f"{100 * thr / use['lut']:.0f}% of the LUTs are MultiThreshold storage and "
                     f"comparators (2^abits - 1 thresholds per channel, FINN lut_estimation); "
                     f"fewer activation bits shrink them exponentially")
    zero_ops = sorted({l.op_type for l in fold.layers if l.op_type in NO_ESTIMATE_OPS})
    if zero_ops:
        notes.append("no FINN resource estimate exists for " + ", ".join(zero_ops) +
                     " (reported as 0)")
    return CostReport(part.name, "fpga", rows, totals, notes)


def _shape_text(l: LayerFolding) -> str:
    s = l.shape
    if l.op_type == "MVAU_hls":
        nv = "x".join(str(v) for v in s["numInputVectors"])
        return f"MW={s['MW']} MH={s['MH']} vec={nv}"
    if l.op_type == "VVAU_hls":
        return f"Ch={s['Channels']} K={s['Kernel'][0]}x{s['Kernel'][1]} Dim={s['Dim'][0]}x{s['Dim'][1]}"
    if l.op_type == "ConvolutionInputGenerator_hls":
        return (f"Ch={s['IFMChannels']} IFM={s['IFMDim'][0]}x{s['IFMDim'][1]} "
                f"K={s['ConvKernelDim'][0]}x{s['ConvKernelDim'][1]} s={s['Stride'][0]}"
                + (" dw" if s.get("depthwise") else ""))
    keys = [k for k in ("NumChannels", "Channels", "ImgDim", "numInputVectors", "PoolDim",
                        "KernelSize", "ChannelsPerStream") if k in s]
    return " ".join(f"{k}={s[k]}" for k in keys)


# --------------------------------------------------------------------------------------------
# What-if

_FINN_SCATTERED_NOTE = (
    "FINN (MVAU/VVAU): no saving. Weights stream densely from the weight memory; a zero occupies "
    "the same memory word and the same PE x SIMD multiplier slot, so cycles, LUT, DSP and BRAM18 "
    "are unchanged. (Only FINN's MinimizeAccumulatorWidth, which bounds the accumulator by the "
    "actual weight values, might drop an accumulator bit - not modelled.)")


def _hls4ml_note(removed: int, total: int) -> str:
    return (f"hls4ml export (io_stream, Latency strategy, ReuseFactor 1, weights as constants): "
            f"HLS drops multipliers whose constant weight is 0, so up to {removed} of this "
            f"layer's {total} multipliers (DSP or LUT) disappear; cycles unchanged. With "
            f"ReuseFactor > 1 (Resource strategy) weights sit in memories and zeros save nothing.")


def what_if_fpga(graph: LayerGraph, deployment: Deployment,
                 fraction: float = 0.1) -> List[Dict[str, Any]]:
    """Per compute layer: what removing `fraction` of its weights (scattered) vs of its output
    channels saves on the FPGA, at the same throughput target.

    The baseline is the deployment's folding; its cycles per frame become the target
    of every re-fold, so the comparison is "least resources at the same FPS". Channel removal
    shrinks the layer's coupled channel group (`graph.with_group_sizes`) - the consumers' input
    widths shrink with it - and the whole network is re-folded.

    Each row (the `edgeprune.cost.what_if` contract): name, op, group, group_size, prunable,
    weights_removed, channels_removed, channels_after, finn_layers, and
      weights:  {lut, bram18, dsp, uram, cycles, fps}  savings of scattered zeros (FINN export)
      channels: {lut, bram18, dsp, uram, cycles, fps}  savings of channel removal ({} if the group
                                                       cannot be pruned)
      weights_note / channels_note / note: which export each statement applies to.
    Savings are baseline - after (positive = cheaper); `cycles` is the latency (critical path) in
    cycles; `fps` is the FPS gained (after - baseline, positive = faster).
    """
    if not 0 < fraction < 1:
        raise EdgepruneError(f"what-if fraction must be in (0, 1), got {fraction}")
    part = part_of(deployment.target)
    bit_opts = _bit_options(deployment)
    wbits, abits = deployment.wbits, deployment.abits
    cache: dict = {}
    has_dsp = part.capacity["dsp"] > 0
    lw = lower(graph, **bit_opts)
    units = fold_units(lw, has_dsp, cache)
    base_fold = fold_network(lw, units, part, wbits, abits, deployment.fps)
    T = base_fold.ii_cycles
    base = _summary(lw, base_fold, part)

    rows = []
    metrics = ("lut", "bram18", "dsp", "uram", "cycles")
    for node in graph.compute_nodes():
        n_w = node.weight_count
        removed_w = int(round(n_w * fraction))
        weights = {m: 0 for m in metrics}
        weights["fps"] = 0.0
        w_note = _FINN_SCATTERED_NOTE + " " + _hls4ml_note(removed_w, n_w)
        role = "dw" if node.op == OpKind.DWCONV2D else "out"
        grp = graph.group_of_node(node.name, role)
        prunable = bool(grp is not None and grp.prunable)
        channels: Dict[str, float] = {}
        removed_c, after_c = 0, None
        if not prunable:
            why = grp.reason if grp is not None else "no channel group"
            c_note = f"channels not removable: {why}"
        else:
            removed_c = max(1, int(round(grp.size * fraction)))
            after_c = max(1, grp.size - removed_c)
            removed_c = grp.size - after_c
            g2 = graph.with_group_sizes({grp.id: after_c})
            lw2 = lower(g2, **bit_opts)
            try:
                fold2 = fold_network(lw2, fold_units(lw2, has_dsp, cache), part, wbits, abits, None,
                              target_cycles=T)
                after = _summary(lw2, fold2, part)
                channels = {m: base[m] - after[m] for m in metrics}
                channels["fps"] = after["fps"] - base["fps"]
                c_note = (f"{grp.size}->{after_c} channels of group {grp.id} (members: "
                          f"{', '.join(sorted(set(grp.nodes())))}); whole network re-folded for "
                          f"the same {part.clock_mhz * 1e6 / T:,.1f} FPS target. Applies to both "
                          f"FINN and hls4ml exports (the layers themselves shrink).")
            except FoldingError as e:
                c_note = f"re-fold failed: {e}"
        rows.append({"name": node.name, "op": node.op,
                     "group": grp.id if grp is not None else None,
                     "group_size": grp.size if grp is not None else None,
                     "prunable": prunable, "weights_removed": removed_w,
                     "channels_removed": removed_c, "channels_after": after_c,
                     "weights": weights, "channels": channels,
                     "finn_layers": [l.name for l in lw.for_node(node.name)],
                     "weights_note": w_note, "channels_note": c_note,
                     "note": (f"FINN: scattered zeros save nothing; hls4ml (RF 1, Latency): up "
                              f"to {removed_w} multipliers dropped; "
                              + (f"channels {grp.size}->{after_c}" if prunable and channels
                                 else c_note)
                              + " (details: weights_note, channels_note)")})
    return rows


def _summary(lw: Lowered, fold: Folding, part: Part) -> Dict[str, float]:
    cyc = [l.cycles for l in fold.layers]
    s = {r: sum(l.cost[r] for l in fold.layers) for r in RESOURCES}
    s["cycles"] = critical_path(lw, cyc)
    s["fps"] = part.clock_mhz * 1e6 / fold.ii_cycles
    return s
