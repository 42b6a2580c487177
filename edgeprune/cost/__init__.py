"""Cost models: what a model costs in a deployment, and what pruning would save there.

    estimate(graph, deployment)              -> CostReport (per layer + totals + notes)
    what_if(graph, deployment, fraction=0.1) -> per compute layer: savings from removing `fraction`
                                                of its weights (scattered) or of its channels
    marginal_costs(graph, deployment)        -> per compute layer: saving per weight / per channel
    budget_value(report, metric)             -> one budget figure (latency_ms, flash_kb, ...)

`deployment` is an `edgeprune.deploy.Deployment` (target + runtime + bit widths + ...); a Target
or a target name is accepted too and gets the target's default deployment. The target kind picks
the model: ``edgeprune.cost.mcu`` (TFLite-Micro on Cortex-M) or ``edgeprune.cost.fpga``
(FINN-style dataflow). Both are imported lazily so that importing this package stays cheap.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional

from ..deploy import Deployment, as_deployment
from .metrics import BUDGET_METRICS, METRICS, Metric, budget_value
from .report import CostError, CostReport

__all__ = ["CostReport", "CostError", "Deployment", "estimate", "what_if", "marginal_costs",
           "budget_value", "BUDGET_METRICS", "METRICS", "Metric"]


def estimate(graph, deployment, *, weight_density: Optional[Dict[str, float]] = None,
             **opts) -> CostReport:
    """Per-layer and total cost of `graph` in `deployment`.

    weight_density: per-layer fraction of non-zero weights (layer name -> 0..1), for runtimes
    whose kernels exploit scattered zeros; TFLM's and FINN's dense kernels ignore it.
    opts: ``lut`` (MCU: {layer: index bits} of LUT-compressed weights), ``plan`` (MCU: a
    precomputed TFLite plan), ``folding`` (FPGA: evaluate this folding as is).
    """
    dep = as_deployment(deployment)
    if dep.kind == "mcu" and dep.runtime == "edgeprune-c":
        from .mcu_c import estimate_c
        return estimate_c(graph, dep, weight_density=weight_density, **opts)
    if dep.kind == "mcu":
        from .mcu import estimate_mcu
        return estimate_mcu(graph, dep, weight_density=weight_density, **opts)
    from .fpga import estimate_fpga
    return estimate_fpga(graph, dep, weight_density=weight_density, **opts)


def what_if(graph, deployment, fraction: float = 0.1, *, weight_density=None,
            lut=None) -> List[Dict[str, Any]]:
    """For every compute layer: what removing `fraction` of its weights (scattered zeros) or of
    its output channels (through its coupled channel group) saves in `deployment`.

    weight_density, lut: the model's structure as in `estimate` (used by the runtimes whose
    kernels exploit it: edgeprune-c).
    Each row has ``name, op, group, group_size, prunable, weights_removed, channels_removed``,
    ``weights`` and ``channels`` (dicts metric -> saving, positive = cheaper) and ``note``.
    """
    if not 0.0 < float(fraction) < 1.0:
        raise CostError(f"what-if fraction must be in (0, 1), got {fraction}")
    dep = as_deployment(deployment)
    if dep.kind == "mcu" and dep.runtime == "edgeprune-c":
        from .mcu_c import what_if_c
        return what_if_c(graph, dep, fraction, weight_density=weight_density, lut=lut)
    if dep.kind == "mcu":
        from .mcu import what_if_mcu
        return what_if_mcu(graph, dep, fraction)
    from .fpga import what_if_fpga
    return what_if_fpga(graph, dep, fraction)


def marginal_costs(graph, deployment, fraction: float = 0.1, *,
                   weight_density: Optional[Dict[str, float]] = None
                   ) -> Dict[str, Dict[str, Dict[str, float]]]:
    """Saving per removed weight and per removed output channel, for each compute layer.

    ``{node_name: {'per_weight': {metric: saving}, 'per_channel': {metric: saving}}}``, derived
    from `what_if` (saving divided by the number of weights / channels it removed). A layer whose
    channel group cannot be pruned gets an empty 'per_channel'. MCU metrics: cycles, latency_ms,
    flash_bytes, ram_bytes; FPGA: whatever `what_if_fpga` reports (lut, dsp, bram18, cycles...).
    weight_density: the operating point {layer: fraction of non-zero weights} for the runtimes
    whose kernels exploit scattered zeros (edgeprune-c); the others ignore it.
    """
    out: Dict[str, Dict[str, Dict[str, float]]] = {}
    for row in what_if(graph, deployment, fraction, weight_density=weight_density):
        per_weight: Dict[str, float] = {}
        per_channel: Dict[str, float] = {}
        nw = row.get("weights_removed") or 0
        nc = row.get("channels_removed") or 0
        if nw:
            per_weight = {m: v / nw for m, v in (row.get("weights") or {}).items()
                          if isinstance(v, (int, float))}
        if nc:
            per_channel = {m: v / nc for m, v in (row.get("channels") or {}).items()
                           if isinstance(v, (int, float))}
        out[row["name"]] = {"per_weight": per_weight, "per_channel": per_channel}
    return out

