"""Budgets: when pruning may stop, and the figures they are checked on.

``--budget latency_ms=5 --budget flash_kb=32,ram_kb=16 --budget macs=300k fps=20000``: names
from the metric table ``edgeprune.cost.metrics.METRICS``; suffixes k (1e3), M (1e6), G (1e9).
``fps`` is a minimum, every other metric a maximum. ``macs`` and ``params`` are measured on the
masked model (effective MACs, non-zero parameters) and need no target; the others come from
``edgeprune.cost.estimate`` in the run's deployment on the graph with the kept channel counts
(``LayerGraph.with_group_sizes``). A budget on a metric the deployment's target kind does not
report (``lut`` on an MCU) is refused when it is parsed, not skipped.

On an iCE40 target (``family = "ice40"``, e.g. ice40-up5k) ``lut`` is the RTL backend's estimate
of the design `edgeprune export rtl` builds (backends/rtl/cost.py ``graph_resources``: LUT4 +
DFF, the logic cells the UP5K has 5,280 of, at the cost model's folding), not the FINN-style
6-LUT estimate: the open flow places RTL, and that estimate let a pruned LeNet-5 pass
``lut=5000`` that nextpnr could not place.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

from ..cost.metrics import METRICS, MetricError, figures, metric
from ..errors import EdgepruneError
from .masks import PruningMasks


class BudgetError(EdgepruneError, ValueError):
    """A budget cannot be met (or parsed); the message says how close pruning got."""


_SUFFIX = {"": 1.0, "k": 1e3, "K": 1e3, "m": 1e6, "M": 1e6, "g": 1e9, "G": 1e9}


@dataclass(frozen=True)
class Budget:
    metric: str
    limit: float

    @property
    def is_min(self) -> bool:
        return METRICS[self.metric].minimum

    def met(self, value: float) -> bool:
        return value >= self.limit if self.is_min else value <= self.limit

    def gap(self, value: float) -> float:
        """How far `value` is from the budget, as a fraction of the limit (0 when met)."""
        over = (self.limit - value) if self.is_min else (value - self.limit)
        return max(over, 0.0) / max(abs(self.limit), 1e-12)

    def __str__(self) -> str:
        return f"{self.metric}={_fmt(self.limit)}"


def _fmt(v: float) -> str:
    return f"{v:.4g}"


def parse_budgets(specs: Sequence[str], deployment=None) -> List[Budget]:
    """Parse ``['latency_ms=5', 'flash_kb=32,ram_kb=16', 'macs=300k fps=2e4']``. With a
    `deployment`, metrics its target kind does not report are refused (a budget is never
    silently skipped); without one only the syntax is checked (the pruning method refuses target
    metrics without a target)."""
    out: Dict[str, Budget] = {}
    for spec in specs or ():
        for item in re.split(r"[,\s]+", str(spec).strip()):
            if not item:
                continue
            mt = re.fullmatch(r"([A-Za-z0-9_]+)=([0-9]*\.?[0-9]+(?:[eE][+-]?\d+)?)([kKmMgG]?)", item)
            if not mt:
                raise BudgetError(f"budget '{item}': expected METRIC=VALUE (e.g. flash_kb=32, macs=300k)")
            name, num, suf = mt.groups()
            try:
                m = metric(name)
            except MetricError as e:
                raise BudgetError(f"budget '{item}': {e}") from None
            value = float(num) * _SUFFIX[suf]
            if value <= 0:
                raise BudgetError(f"budget '{item}': the limit must be positive")
            if m.needs_target and deployment is not None:
                if deployment.kind not in m.kinds:
                    have = [k for k, v in METRICS.items() if deployment.kind in v.kinds]
                    raise BudgetError(f"budget '{item}': {deployment.kind.upper()} target "
                                      f"'{deployment.target.name}' has no '{name}'; its metrics: "
                                      f"{', '.join(have)}")
            out[name] = Budget(name, value)
    return list(out.values())


def needs_target(budgets: Sequence[Budget]) -> List[str]:
    return [b.metric for b in budgets if METRICS[b.metric].needs_target]


def measure(masks: PruningMasks, deployment=None) -> Dict[str, float]:
    """Current figures of the masked model: params (non-zero), macs (effective) and, with a
    deployment, the cost model's figures for the kept channel counts and weight densities."""
    vals: Dict[str, float] = {"params": float(masks.nonzero_params()),
                              "macs": float(masks.effective_macs())}
    if deployment is not None:
        vals.update(target_figures(masks, deployment))
    return vals


def target_figures(masks: PruningMasks, deployment) -> Dict[str, float]:
    from .. import cost
    sizes = {gid: max(int(k.sum()), 1) for gid, k in masks.channel_keep.items()
             if int(k.sum()) < k.numel()}
    g = masks.graph.with_group_sizes(sizes) if sizes else masks.graph
    density = {n: 1.0 - s["sparsity"] for n, s in masks.layer_stats().items()}
    rep = cost.estimate(g, deployment, weight_density=density)
    out = figures(rep, deployment.kind)
    cells = rtl_cells(g, deployment, rep)
    if cells is not None:
        out["lut"] = float(cells)
    return out


def rtl_cells(graph, deployment, report=None):
    """Logic cells (LUT4 + DFF) of the folded RTL design on an iCE40 deployment; None on other
    targets (their ``lut`` stays the FPGA cost model's)."""
    if (deployment is None or deployment.kind != "fpga"
            or deployment.target.get("family") != "ice40"):
        return None
    from .. import cost
    from ..backends.rtl.cost import graph_resources
    if report is None:
        report = cost.estimate(graph, deployment)
    return graph_resources(graph, deployment, report.layers)["cells"]


def check_budgets(budgets: Sequence[Budget], values: Dict[str, float]) -> bool:
    """Whether every budget is met by `values` (a budget whose figure is missing is an error,
    never 'met')."""
    missing = [b.metric for b in budgets if b.metric not in values]
    if missing:
        raise BudgetError(f"no figure for budget {', '.join(missing)} (the cost model does not "
                          f"report it)")
    return all(b.met(values[b.metric]) for b in budgets)


def describe(budgets: Sequence[Budget], values: Dict[str, float],
             dense: Optional[Dict[str, float]]) -> str:
    parts = []
    dense = dense or {}
    for b in budgets:
        v = values.get(b.metric)
        d = dense.get(b.metric)
        if v is None:
            continue
        state = "met" if b.met(v) else "NOT met"
        parts.append(f"{b.metric} {_fmt(v)} (budget {_fmt(b.limit)}, dense "
                     f"{_fmt(d) if d is not None else '?'}, {state})")
    return "; ".join(parts)


__all__ = ["Budget", "BudgetError", "parse_budgets", "needs_target", "measure", "target_figures",
           "rtl_cells",
           "check_budgets", "describe"]
