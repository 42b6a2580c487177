#!/usr/bin/env python3
"""Wall time of `edgeprune estimate lenet5 --target stm32l4r5-m4 --json`, start-up included.

Runs the real console script (.venv/bin/edgeprune, as a user would) N times, checks its answer
(params 431080, MACs 2293000), and upserts the median / min / max into
benchmarks/results/estimate_startup.json together with the command line that produced them
and the machine's load average (the wall time depends on how busy the machine is), and, as the
floor, the median time of `python -c "import torch, torch.fx"` under the same load.

    .venv/bin/python benchmarks/estimate_startup.py [--runs 7] [--target stm32l4r5-m4]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import command_line, upsert_rows  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--model", default="lenet5")
    ap.add_argument("--target", default="stm32l4r5-m4")
    args = ap.parse_args()
    exe = REPO / ".venv" / "bin" / "edgeprune"
    if not exe.exists():
        exe = Path(shutil.which("edgeprune") or "edgeprune")
    cmd = [str(exe), "estimate", args.model, "--target", args.target, "--json"]
    times = []
    answer = None
    load_before = os.getloadavg()
    for _ in range(args.runs):
        t0 = time.perf_counter()
        out = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
        times.append(time.perf_counter() - t0)
        if out.returncode != 0:
            print(out.stderr, file=sys.stderr)
            return 1
        answer = json.loads(out.stdout)["totals"]
    # The floor: the same interpreter importing torch and nothing else (the estimate path needs
    # torch to build and trace the model), measured right after, under the same load.
    py = REPO / ".venv" / "bin" / "python"
    torch_times = []
    for _ in range(args.runs):
        t0 = time.perf_counter()
        subprocess.run([str(py if py.exists() else sys.executable), "-c", "import torch, torch.fx"],
                       check=True, cwd=REPO)
        torch_times.append(time.perf_counter() - t0)
    row = {
        "benchmark": "estimate_startup", "model": args.model, "target": args.target,
        "measured_command": " ".join([os.path.relpath(cmd[0], REPO)] + cmd[1:]),
        "runs": args.runs, "median_s": round(statistics.median(times), 3),
        "min_s": round(min(times), 3), "max_s": round(max(times), 3),
        "params": answer["params"], "macs": answer["macs"],
        "under_2s": statistics.median(times) < 2.0,
        "torch_import_median_s": round(statistics.median(torch_times), 3),
        "loadavg_1min_before": round(load_before[0], 2), "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "command": command_line(),
    }
    upsert_rows("estimate_startup.json", [row], key=("benchmark", "model", "target"))
    print(json.dumps(row, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
