"""Cost models: what a model costs on a target, and what pruning would save there.

    estimate(graph, target, **opts)          -> CostReport (per layer + totals + notes)
    what_if(graph, target, fraction=0.1)     -> per compute layer: savings from removing `fraction`
                                                of its weights (scattered) or of its channels
    marginal_costs(graph, target)            -> per compute layer: saving per weight / per channel
    budget_value(report, metric)             -> one budget figure (latency_ms, flash_kb, ...) from
                                                a report's totals

The target kind picks the model: ``edgeprune.cost.mcu`` (TFLite-Micro on Cortex-M) or
``edgeprune.cost.fpga`` (FINN-style dataflow). Both are imported lazily so that importing this
package stays cheap.
"""
from __future__ import annotations

from typing import Any, Dict, List

from ..errors import EdgepruneError
from .report import CostReport

__all__ = ["CostReport", "CostError", "estimate", "what_if", "marginal_costs", "budget_value",
           "BUDGET_METRICS"]


class CostError(EdgepruneError, ValueError):
    """A cost question that cannot be answered (unknown metric, unknown target kind, ...)."""


def _kind(target) -> str:
    kind = getattr(target, "kind", None)
    if kind not in ("mcu", "fpga"):
        raise CostError(f"target {getattr(target, 'name', target)!r} has kind {kind!r}; "
                        f"expected 'mcu' or 'fpga'")
    return kind


def estimate(graph, target, **opts) -> CostReport:
    """Per-layer and total cost of `graph` on `target` (a `edgeprune.targets.Target`)."""
    if _kind(target) == "mcu":
        from .mcu import estimate_mcu
        return estimate_mcu(graph, target, **opts)
    from .fpga import estimate_fpga
    return estimate_fpga(graph, target, **opts)


def what_if(graph, target, fraction: float = 0.1, **opts) -> List[Dict[str, Any]]:
    """For every compute layer: what removing `fraction` of its weights (scattered zeros) or of
    its output channels (through its coupled channel group) saves on `target`.

    Each row has ``name, op, group, group_size, prunable, weights_removed, channels_removed``,
    ``weights`` and ``channels`` (dicts metric -> saving, positive = cheaper) and ``note``.
    """
    if not 0.0 < float(fraction) < 1.0:
        raise CostError(f"what-if fraction must be in (0, 1), got {fraction}")
    if _kind(target) == "mcu":
        from .mcu import what_if_mcu
        return what_if_mcu(graph, target, fraction, **opts)
    from .fpga import what_if_fpga
    return what_if_fpga(graph, target, fraction, **opts)


def marginal_costs(graph, target, fraction: float = 0.1, **opts) -> Dict[str, Dict[str, Dict[str, float]]]:
    """Saving per removed weight and per removed output channel, for each compute layer.

    ``{node_name: {'per_weight': {metric: saving}, 'per_channel': {metric: saving}}}``, derived
    from `what_if` (saving divided by the number of weights / channels it removed). A layer whose
    channel group cannot be pruned gets an empty 'per_channel'. MCU metrics: cycles, latency_ms,
    flash_bytes, ram_bytes; FPGA: whatever `what_if_fpga` reports (lut, dsp, bram18, cycles...).
    """
    out: Dict[str, Dict[str, Dict[str, float]]] = {}
    for row in what_if(graph, target, fraction, **opts):
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


# Budget metrics a user can name (e.g. `edgeprune prune --budget flash_kb=64`), and how each is
# read from a CostReport's totals: (totals key, divisor). KB are KiB (1024 bytes), as in the
# targets' flash_kb / ram_kb figures.
BUDGET_METRICS = {
    "latency_ms": ("latency_ms", 1.0),
    "flash_kb": ("flash_bytes", 1024.0),
    "ram_kb": ("ram_bytes", 1024.0),
    "macs": ("macs", 1.0),
    "params": ("params", 1.0),
    "cycles": ("cycles", 1.0),
    "fps": ("fps", 1.0),
    "lut": ("lut", 1.0),
    "dsp": ("dsp", 1.0),
    "bram18": ("bram18", 1.0),
}


def budget_value(report: CostReport, metric: str) -> float:
    """The value of budget `metric` in `report` (see BUDGET_METRICS).

    flash_kb / ram_kb are flash_bytes / ram_bytes divided by 1024; fps falls back to
    1000 / latency_ms when the report has no 'fps' total (MCU reports: one inference at a time).
    """
    if metric not in BUDGET_METRICS:
        raise CostError(f"unknown budget metric '{metric}'; known: {', '.join(BUDGET_METRICS)}")
    key, div = BUDGET_METRICS[metric]
    totals = report.totals
    if key in totals and totals[key] is not None:
        return float(totals[key]) / div
    if metric == "fps" and totals.get("latency_ms"):
        return 1000.0 / float(totals["latency_ms"])
    raise CostError(f"budget metric '{metric}' is not reported for {report.kind} target "
                    f"'{report.target}'")
