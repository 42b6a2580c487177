"""The decision log: what every pruning step removed and what it saved on the target.

Entries (JSON-ready dicts, in order):

* ``{"kind": "decision", "step", "epoch", "amount", "layers": {node: sparsity},
  "channels": {group id: kept}, "before": {metric: value}, "after": {metric: value},
  "saved": {metric: before - after}, "note"}``. ``before``/``after`` always hold ``params``
  (non-zero parameters) and ``macs`` (effective MACs) and, with a target, the cost model's figures
  (latency_ms, flash_kb, ram_kb, cycles / lut, dsp, bram18, fps, ...).
* ``{"kind": "epoch", "epoch", "step", "test_acc", "loss", "figures"}`` once per epoch.

``save_json`` and ``save_png`` write atomically (temp file, then rename).
"""
from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any, Dict, List, Optional

from ..artifacts import write_bytes, write_json


def _plain(v: Any) -> Any:
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if isinstance(v, float):
        return round(v, 6)
    if hasattr(v, "item"):
        return _plain(v.item())
    return v


class DecisionLog:
    def __init__(self, meta: Optional[Dict[str, Any]] = None):
        self.meta: Dict[str, Any] = dict(meta or {})
        self.dense: Dict[str, float] = {}
        self.entries: List[Dict[str, Any]] = []

    def decision(self, step: int, epoch: int, amount: float, layers: Dict[str, float],
                 channels: Dict[int, int], before: Dict[str, float], after: Dict[str, float],
                 note: str = "") -> Dict[str, Any]:
        saved = {k: before[k] - after[k] for k in after if k in before
                 and isinstance(before[k], (int, float)) and isinstance(after[k], (int, float))}
        e = {"kind": "decision", "step": int(step), "epoch": int(epoch), "amount": float(amount),
             "layers": dict(layers), "channels": {str(k): int(v) for k, v in channels.items()},
             "before": dict(before), "after": dict(after), "saved": saved}
        if note:
            e["note"] = note
        self.entries.append(_plain(e))
        return e

    def epoch(self, epoch: int, step: int, metrics: Dict[str, float], figures: Dict[str, float]) -> None:
        self.entries.append(_plain({"kind": "epoch", "epoch": int(epoch), "step": int(step),
                                    "test_acc": metrics.get("test_acc"), "loss": metrics.get("loss"),
                                    "figures": dict(figures)}))

    def note(self, step: int, text: str) -> None:
        self.entries.append({"kind": "note", "step": int(step), "text": text})

    def decisions(self) -> List[Dict[str, Any]]:
        return [e for e in self.entries if e["kind"] == "decision"]

    def to_dict(self) -> Dict[str, Any]:
        return {"meta": _plain(self.meta), "dense": _plain(self.dense), "entries": self.entries}

    # checkpointing (plain data only: read back with weights_only=True)
    def state_dict(self) -> Dict[str, Any]:
        return {"json": json.dumps(self.to_dict())}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        d = json.loads(state["json"])
        self.meta, self.dense, self.entries = d["meta"], d["dense"], d["entries"]

    def save_json(self, path: os.PathLike) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json(path, self.to_dict(), indent=1)
        return path

    def save_png(self, path: os.PathLike) -> Path:
        """Cost (relative to dense, log scale) per decision and test accuracy per epoch."""
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        path = Path(path)
        fig, (ax_cost, ax_acc) = plt.subplots(2, 1, figsize=(7, 6), sharex=True)
        dec = self.decisions()
        metrics = [m for m in ("params", "macs", "latency_ms", "flash_kb", "ram_kb", "lut", "dsp",
                               "bram18", "cycles") if m in self.dense and self.dense[m]]
        xs = [e["step"] for e in dec]
        for m in metrics:
            ys = [e["after"].get(m) for e in dec]
            pts = [(x, y / self.dense[m]) for x, y in zip(xs, ys) if y is not None]
            if pts:
                ax_cost.plot([0] + [p[0] for p in pts], [1.0] + [p[1] for p in pts],
                             label=m, drawstyle="steps-post")
        ax_cost.set_yscale("log")
        ax_cost.set_ylabel("cost / dense")
        ax_cost.grid(True, which="both", alpha=0.3)
        if metrics:
            ax_cost.legend(fontsize=8, loc="lower left")
        ep = [e for e in self.entries if e["kind"] == "epoch"]
        if ep:
            ax_acc.plot([e["step"] for e in ep], [100 * (e["test_acc"] or 0) for e in ep], "o-",
                        label="pruned run")
        acc_dense = self.meta.get("acc_dense")
        if acc_dense is not None:
            ax_acc.axhline(100 * acc_dense, color="grey", ls="--", label="dense baseline")
        ax_acc.set_xlabel("training step")
        ax_acc.set_ylabel("test accuracy (%)")
        ax_acc.grid(True, alpha=0.3)
        ax_acc.legend(fontsize=8, loc="lower left")
        title = " / ".join(str(self.meta[k]) for k in ("model", "method", "granularity", "orientation")
                           if k in self.meta)
        fig.suptitle(title, fontsize=10)
        fig.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        buf = io.BytesIO()
        try:
            fig.savefig(buf, format="png", dpi=90, metadata={"Software": None})
        finally:
            plt.close(fig)
        return write_bytes(path, buf.getvalue())


__all__ = ["DecisionLog"]
