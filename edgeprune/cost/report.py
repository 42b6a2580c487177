"""The result every cost model returns: per-layer rows, totals and notes.

Kept free of heavy imports (no torch, no numpy) so that `edgeprune estimate` starts fast and any
cost model (MCU, FPGA) can import it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List

from ..errors import EdgepruneError


class CostError(EdgepruneError, ValueError):
    """A cost question that cannot be answered (unknown metric, bad fraction, ...)."""


@dataclass
class CostReport:
    """What a model costs on one target.

    target: the target's name; kind: 'mcu' | 'fpga'.
    layers: one dict per deployed layer (keys depend on the cost model; every row has at least
            'name' and 'op').
    totals: network-level figures (MCU: params, macs, cycles, latency_ms, flash_bytes, ram_bytes;
            FPGA: params, macs, cycles, fps, latency_ms, lut, bram18, dsp).
    notes:  human-readable caveats (does not fit, what the model ignores, ...).
    """

    target: str
    kind: str
    layers: List[Dict[str, Any]]
    totals: Dict[str, Any]
    notes: List[str] = field(default_factory=list)

    def to_dict(self) -> Dict[str, Any]:
        return {"target": self.target, "kind": self.kind,
                "layers": [dict(row) for row in self.layers],
                "totals": dict(self.totals), "notes": list(self.notes)}

    def layer(self, name: str) -> Dict[str, Any]:
        """The row of the layer called `name` (KeyError if absent)."""
        for row in self.layers:
            if row.get("name") == name:
                return row
        raise KeyError(name)
