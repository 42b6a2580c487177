#!/usr/bin/env python3
"""`edgeprune estimate --runtime edgeprune-c` (no export: edgeprune/cost/mcu_c.py) against the
measured zoo rows of benchmarks/results/c_runtime.json (benchmarks/c_runtime_qemu.py zoo: the
exported C run on the core's QEMU board). Cycles, RAM (arena) and flash (the estimate counts the
model's constant arrays only; the measured flash adds the kernel code).

Run from the repo root, after benchmarks/c_runtime_qemu.py zoo:
  .venv/bin/python benchmarks/c_runtime_estimate.py [--cores cortex-m4 ...]
Writes benchmarks/results/c_runtime_estimate.json.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
from common import command_line  # noqa: E402

CORE_TARGET = {"cortex-m4": "stm32l4r5-m4", "cortex-m7": "stm32h7a3-m7", "cortex-m33": "stm32u585-m33"}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cores", nargs="*", default=["cortex-m4"])
    args = ap.parse_args()
    from edgeprune import cost
    from edgeprune.deploy import Deployment
    from edgeprune.graph import extract
    from edgeprune.models import build
    from edgeprune.zoo_graphs import cached_graph
    measured = json.loads((HERE / "results" / "c_runtime.json").read_text())["rows"]
    out = []
    for core in args.cores:
        dep = Deployment.for_target(CORE_TARGET[core], runtime="edgeprune-c")
        for r in measured:
            if r["core"] != core or "fashion" not in str(r.get("data")) or not r.get("edgeprune_c_cycles"):
                continue
            g = cached_graph(r["model"]) or extract(build(r["model"]))
            t = cost.estimate(g, dep).totals
            row = {"model": r["model"], "core": core, "target": CORE_TARGET[core],
                   "cycles_estimate": t["cycles"], "cycles_measured": r["edgeprune_c_cycles"],
                   "cycles_error": round(t["cycles"] / r["edgeprune_c_cycles"] - 1, 4),
                   "instructions_estimate": t["instructions"], "instructions_measured": r["instructions"],
                   "ram_arena_estimate": t["ram_bytes"], "ram_arena_export": r["arena_bytes"],
                   "flash_estimate_arrays": t["flash_bytes"], "flash_measured": r["flash_bytes"],
                   "flash_error": round(t["flash_bytes"] / r["flash_bytes"] - 1, 4),
                   "measured_command": r["command"], "command": command_line()}
            out.append(row)
            print(f"{core} {r['model']:16s} cycles {t['cycles']:>11,} vs {r['edgeprune_c_cycles']:>11,} "
                  f"({100 * row['cycles_error']:+.2f} %), arena {t['ram_bytes']:,} vs {r['arena_bytes']:,}, "
                  f"flash {t['flash_bytes']:,} vs {r['flash_bytes']:,} ({100 * row['flash_error']:+.1f} %)")
    path = HERE / "results" / "c_runtime_estimate.json"
    path.write_text(json.dumps({"rows": out}, indent=1) + "\n")
    print(f"wrote {path.relative_to(HERE.parent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
