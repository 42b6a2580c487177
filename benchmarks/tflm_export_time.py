#!/usr/bin/env python3
"""Wall time of `edgeprune export tflm` on every zoo model, verification included (issue 10).

Runs the real CLI (`python -m edgeprune export tflm MODEL --target T -o TMP`) once per model,
as a user would: start-up, conversion, the TFLM + LiteRT verification on 1,000 inputs, the
arena measurement and the file writing all count. lenet5 and lenet300100 verify on
Fashion-MNIST test images (so the export also reports accuracy); the others on 1,000 random
inputs (no data set of their shape here). Records per model the wall seconds, the CPU
seconds of the whole process tree (user + sys, less sensitive to other load than the wall
time) and the machine's load average, which the wall time depends on.

--baseline DIR runs the same exports with another checkout's code (PYTHONPATH=DIR) right
after each model's run, under the same load, so that a change is judged by the ratio of the
two, not by seconds measured at different times.

    .venv/bin/python benchmarks/tflm_export_time.py [--models a,b] [--baseline DIR] [--no-write]
    .venv/bin/python benchmarks/tflm_export_time.py --models ''     (rewrites the table only)

Upserts benchmarks/results/tflm_export_time.json and rewrites tflm_export_time.md.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import command_line, upsert_rows  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results"
ZOO = ["lenet5", "lenet300100", "fc_autoencoder", "dscnn", "resnet8", "vgg_small", "mobilenetv1_025"]
DATA = {"lenet5": "fashion-mnist", "lenet300100": "fashion-mnist"}
TARGET = "stm32h7a3-m7"       # the largest MCU target: every zoo model fits it
GOAL_S = 20.0


def export_once(model: str, code_dir: Path, out: Path) -> dict:
    cmd = [sys.executable, "-m", "edgeprune", "export", "tflm", model, "--target", TARGET,
           "-o", str(out)] + (["--data", DATA[model]] if model in DATA else [])
    env = dict(os.environ, PYTHONPATH=str(code_dir), OMP_WAIT_POLICY="PASSIVE")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tempfile.gettempdir())
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if p.returncode != 0:
        raise SystemExit(f"{model}: export failed: {p.stderr.strip()[-400:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    rep = json.loads((out / "report.json").read_text())
    return {"wall_s": round(wall, 2), "cpu_s": round(cpu, 2), "load_1min": round(load, 2),
            "model_bytes": (out / "model.tflite").stat().st_size,
            "eval_samples": rep["eval_samples"]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=",".join(ZOO))
    ap.add_argument("--baseline", type=Path, help="another checkout: run its code too, same load")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    rows = []
    for model in [m for m in args.models.split(",") if m]:
        with tempfile.TemporaryDirectory(prefix="edgeprune-export-time-") as d:
            row = {"model": model, "target": TARGET, "data": DATA.get(model, "random inputs"),
                   **export_once(model, REPO, Path(d) / "new"), "command": command_line()}
            if args.baseline:
                base = export_once(model, args.baseline.resolve(), Path(d) / "base")
                new_files, base_files = (sorted(f.name for f in (Path(d) / k).iterdir())
                                         for k in ("new", "base"))
                same = (Path(d) / "new" / "model.tflite").read_bytes() == \
                    (Path(d) / "base" / "model.tflite").read_bytes()
                same_all = new_files == base_files and all(
                    (Path(d) / "new" / f).read_bytes() == (Path(d) / "base" / f).read_bytes()
                    for f in new_files)
                row.update({"baseline_wall_s": base["wall_s"], "baseline_cpu_s": base["cpu_s"],
                            "baseline_load_1min": base["load_1min"],
                            "wall_ratio_baseline_over_new": round(base["wall_s"] / row["wall_s"], 2),
                            "cpu_ratio_baseline_over_new": round(base["cpu_s"] / row["cpu_s"], 2),
                            "same_model_bytes_as_baseline": same,
                            "same_files_as_baseline": same_all})
        print(json.dumps(row), flush=True)
        rows.append(row)
    if args.no_write:
        return 0
    all_rows = upsert_rows("tflm_export_time.json", rows, ("model", "target"))
    lines = ["# `edgeprune export tflm`: wall time per zoo model, verification included", "",
             f"Target {TARGET}. Each export converts, verifies on {{eval}} inputs in the TFLM and LiteRT "
             "interpreters (Fashion-MNIST test images for lenet5 and lenet300100, random inputs "
             "for the rest), measures the arena and writes the files. CPU s = user + sys of the "
             "whole process tree. The wall time depends on the machine's load (1-minute load "
             f"average in the table; this machine has {os.cpu_count()} cores). Goal (issue 10): "
             f"under {GOAL_S:.0f} s for every zoo model.", "",
             "Baseline: the same exports by another checkout (`--baseline DIR`) run right after each "
             "model, under the same load; `same files`: every file the two wrote is identical, "
             "report.json included.", "",
             "| model | data | wall s | CPU s | load | baseline wall s | baseline CPU s | baseline load "
             "| baseline / new (CPU) | baseline / new (wall) | same bytes | same files | command |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---|"]
    for r in sorted(all_rows, key=lambda r: ZOO.index(r["model"]) if r["model"] in ZOO else 99):
        lines.append(f"| {r['model']} | {r['data']} | {r['wall_s']:.1f} | {r['cpu_s']:.1f} | "
                     f"{r['load_1min']:.1f} | {r.get('baseline_wall_s', '-')} | {r.get('baseline_cpu_s', '-')} | "
                     f"{r.get('baseline_load_1min', '-')} | {r.get('cpu_ratio_baseline_over_new', '-')} | "
                     f"{r.get('wall_ratio_baseline_over_new', '-')} | "
                     f"{r.get('same_model_bytes_as_baseline', '-')} | {r.get('same_files_as_baseline', '-')} | "
                     f"`{r['command']}` |")
    evals = sorted({r["eval_samples"] for r in all_rows})
    text = "\n".join(lines).replace("{eval}", "/".join(f"{e:,}" for e in evals)) + "\n"
    (RESULTS / "tflm_export_time.md").write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
