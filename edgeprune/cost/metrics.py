"""The budget metrics a user can name, and how each is read from a cost report: one table.

``edgeprune prune --budget flash_kb=64`` names a `Metric`; the pruner's budget checks, its
target-oriented weighting and the run summaries all read figures through this table. KB are KiB
(1024 bytes), as in the targets' flash_kb / ram_kb.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, Optional, Tuple

from .report import CostError


class MetricError(CostError):
    pass


@dataclass(frozen=True)
class Metric:
    name: str                 # what the user writes: flash_kb
    total_key: str            # CostReport.totals key it is read from: flash_bytes
    scale: float              # value = totals[total_key] / scale
    unit: str
    kinds: Tuple[str, ...]    # target kinds that report it ('mcu', 'fpga'); () = no target needed
    minimum: bool = False     # a floor (fps), not a ceiling

    @property
    def needs_target(self) -> bool:
        return bool(self.kinds)


METRICS: Dict[str, Metric] = {m.name: m for m in (
    Metric("latency_ms", "latency_ms", 1.0, "ms", ("mcu", "fpga")),
    Metric("flash_kb", "flash_bytes", 1024.0, "KiB", ("mcu",)),
    Metric("ram_kb", "ram_bytes", 1024.0, "KiB", ("mcu",)),
    Metric("cycles", "cycles", 1.0, "cycles", ("mcu", "fpga")),
    Metric("fps", "fps", 1.0, "frames/s", ("mcu", "fpga"), minimum=True),
    Metric("lut", "lut", 1.0, "LUT", ("fpga",)),
    Metric("dsp", "dsp", 1.0, "DSP", ("fpga",)),
    Metric("bram18", "bram18", 1.0, "BRAM18", ("fpga",)),
    # Measured on the (masked) model itself: effective MACs and non-zero parameters.
    Metric("macs", "macs", 1.0, "MACs", ()),
    Metric("params", "params", 1.0, "parameters", ()),
)}
# Kept for callers that iterate over the names.
BUDGET_METRICS = tuple(METRICS)


def metric(name: str) -> Metric:
    try:
        return METRICS[name]
    except KeyError:
        raise MetricError(f"unknown budget metric '{name}'; known: {', '.join(METRICS)}") from None


def metric_for_total(total_key: str) -> Optional[Metric]:
    """The metric read from a totals key (flash_bytes -> flash_kb), if any."""
    for m in METRICS.values():
        if m.total_key == total_key:
            return m
    return None


def budget_value(report, name: str) -> float:
    """The value of metric `name` in a CostReport (flash_kb = flash_bytes / 1024, ...). fps falls
    back to 1000 / latency_ms when the report has no 'fps' total (MCU: one inference at a
    time)."""
    m = metric(name)
    totals = report.totals
    v = totals.get(m.total_key)
    if v is not None:
        return float(v) / m.scale
    if name == "fps" and totals.get("latency_ms"):
        return 1000.0 / float(totals["latency_ms"])
    raise MetricError(f"budget metric '{name}' is not reported for {report.kind} target "
                      f"'{report.target}'")


def figures(report, kind: str) -> Dict[str, float]:
    """Every target metric of `kind` read from `report` (finite values only)."""
    out = {}
    for m in METRICS.values():
        if kind in m.kinds:
            try:
                v = budget_value(report, m.name)
            except MetricError:
                continue
            if math.isfinite(v):
                out[m.name] = v
    return out
