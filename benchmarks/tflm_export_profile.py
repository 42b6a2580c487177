#!/usr/bin/env python3
"""Where `edgeprune export tflm` spends its time: CPU and wall seconds per phase (issue 10).

Runs the export in this process, as the CLI does (model from the zoo with --seed 0, target
stm32h7a3-m7, random inputs unless --data), with the exporter's helpers wrapped by timers.
CPU = user + sys of this process and of its waited-for children (the TFLM children count in
`TflmRun.result`, where they are waited for). The phases are the exporter's main steps;
the second `quiet_tf` call is inside `convert_int8` (TensorFlow is loaded by then).

    .venv/bin/python benchmarks/tflm_export_profile.py [--models resnet8,mobilenetv1_025]
        [--data fashion-mnist] [--no-write]

Upserts benchmarks/results/tflm_export_profile.json and rewrites tflm_export_profile.md.
"""
from __future__ import annotations

import argparse
import functools
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))   # this checkout's edgeprune
from common import command_line, upsert_rows  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
TARGET = "stm32h7a3-m7"


def cpu_s() -> float:
    a, b = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return a.ru_utime + a.ru_stime + b.ru_utime + b.ru_stime


def profile(model_name: str, data, gc_on: bool = False) -> dict:
    t0_cpu, t0_wall = cpu_s(), time.perf_counter()
    from edgeprune.backends.tflm import flatbuffer, memory
    from edgeprune.export import keras_mirror
    from edgeprune.export import tflm
    from edgeprune.models.loading import load_model
    phases: dict = {}
    if gc_on:                                  # the export as before gc_paused (for comparison)
        import contextlib
        tflm.gc_paused = contextlib.nullcontext

    def wrap(owner, name, label=None):
        f = getattr(owner, name)

        @functools.wraps(f)
        def timed(*a, **k):
            c, w = cpu_s(), time.perf_counter()
            try:
                return f(*a, **k)
            finally:
                p = phases.setdefault(label or name, {"cpu_s": 0.0, "wall_s": 0.0, "calls": 0})
                p["cpu_s"] += cpu_s() - c
                p["wall_s"] += time.perf_counter() - w
                p["calls"] += 1
        setattr(owner, name, timed)

    for name in ("samples", "quiet_tf", "convert_int8", "quantize_input", "run_litert",
                 "run_tflm", "tflm_min_arena", "_write_outputs", "weight_value_counts"):
        wrap(tflm, name)
    wrap(tflm.TflmRun, "__init__", "TflmRun.__init__ (start the TFLM children)")
    wrap(tflm.TflmRun, "result", "TflmRun.result (TFLM children: 1,000 inputs + arena search)")
    wrap(keras_mirror, "build_keras_mirror")
    wrap(keras_mirror, "check_mirror")
    wrap(flatbuffer, "canonicalize")
    wrap(memory, "estimate_flash")
    wrap(memory, "estimate_arena")
    with tflm.gc_paused():                     # as the CLI loads the model
        c, w = cpu_s(), time.perf_counter()
        model = load_model(model_name, weights=None, trust_pickle=False, seed=0)
        phases["load_model"] = {"cpu_s": cpu_s() - c, "wall_s": time.perf_counter() - w,
                                               "calls": 1}
        with tempfile.TemporaryDirectory(prefix="edgeprune-export-profile-") as d:
            c, w = cpu_s(), time.perf_counter()
            report = tflm.export_tflm(model, TARGET, Path(d) / "out", data)
            total = {"cpu_s": cpu_s() - c, "wall_s": time.perf_counter() - w}
    return {"model": model_name, "target": TARGET, "data": data or "random inputs",
            "eval_samples": report["eval_samples"],
            "process_cpu_s": round(cpu_s() - t0_cpu, 2),
            "process_wall_s": round(time.perf_counter() - t0_wall, 2),
            "export_cpu_s": round(total["cpu_s"], 2), "export_wall_s": round(total["wall_s"], 2),
            "load_1min": round(os.getloadavg()[0], 2), "gc_paused": not gc_on,
            "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
            "phases": {k: {"cpu_s": round(v["cpu_s"], 2),
                           "wall_s": None if v["wall_s"] is None else round(v["wall_s"], 2),
                           "calls": v["calls"]} for k, v in phases.items()},
            "command": command_line()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="resnet8,mobilenetv1_025")
    ap.add_argument("--data", default=None)
    ap.add_argument("--gc-on", action="store_true",
                    help="keep Python's garbage collector running (the export before gc_paused)")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    names = [m for m in args.models.split(",") if m]
    if len(names) > 1:       # one fresh process per model: imports count for each
        import json
        import subprocess
        rows = []
        for m in names:
            cmd = [sys.executable, __file__, "--models", m, "--no-write"] + \
                (["--data", args.data] if args.data else []) + (["--gc-on"] if args.gc_on else [])
            p = subprocess.run(cmd, capture_output=True, text=True)
            if p.returncode != 0:
                raise SystemExit(f"{m}: {p.stderr.strip()[-400:]}")
            row = json.loads(p.stdout.strip().splitlines()[-1])
            row["command"] = command_line()
            rows.append(row)
    else:
        import json
        rows = [profile(names[0], args.data, args.gc_on)]
        print(json.dumps(rows[0]), flush=True)
        if args.no_write:
            return 0
    if args.no_write:
        return 0
    all_rows = upsert_rows("tflm_export_profile.json", rows, ("model", "target", "data", "gc_paused"))
    lines = ["# `edgeprune export tflm`: CPU seconds per phase", "",
             f"Target {TARGET}, 1,000 verification inputs, one fresh process per model. CPU = user + "
             "sys of the process and its TFLM children; wall depends on the load of the 2 shared "
             "cores (1-minute load average given). The phases are the exporter's main steps "
             "(they do not add up to the total: the rest is the export's own code, Python's start-up "
             "and edgeprune's imports).", ""]
    for r in all_rows:
        lines += [f"## {r['model']} ({r['data']}, garbage collector "
                  f"{'paused' if r['gc_paused'] else 'running'}): {r['process_cpu_s']} CPU s for the "
                  f"whole process, {r['process_wall_s']} s wall at load {r['load_1min']}, peak "
                  f"{r['max_rss_mb']} MB", "",
                  "| phase | CPU s | wall s | calls |", "|---|---:|---:|---:|"]
        for k, v in sorted(r["phases"].items(), key=lambda kv: -kv[1]["cpu_s"]):
            wall = "-" if v["wall_s"] is None else v["wall_s"]
            lines.append(f"| {k} | {v['cpu_s']} | {wall} | {v['calls'] or '-'} |")
        lines += ["", f"Command: `{r['command']}`", ""]
    (RESULTS / "tflm_export_profile.md").write_text("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
