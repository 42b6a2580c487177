"""Run the shipped recipes (`edgeprune run recipes/NAME.toml`) and record what the terminal showed,
the wall time, and the report's figures: the README's output excerpts come from here.

    python benchmarks/flow_recipes.py estimate mcu fpga demo [--out-root runs/flow-bench]
    python benchmarks/flow_recipes.py --sweep mcu latency_ms=10,15,20

Writes benchmarks/results/flow_recipes.json (one row per recipe or sweep: command, seconds,
cores, terminal output, accuracy rows, per-target totals, verification status) and
benchmarks/results/flow_recipes.md (the terminal output of each, as the README quotes it).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, command_line, upsert_rows  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def _run(argv, out: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_WAIT_POLICY": "PASSIVE"}
    t0 = time.time()
    p = subprocess.run([sys.executable, "-m", "edgeprune", *argv], capture_output=True, text=True,
                       env=env, cwd=ROOT)
    return {"returncode": p.returncode, "seconds": round(time.time() - t0, 1),
            "terminal": p.stdout + (p.stderr if p.returncode else ""), "out": str(out)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("recipes", nargs="*", help="names in recipes/ (estimate, mcu, fpga, demo)")
    ap.add_argument("--sweep", nargs=2, metavar=("RECIPE", "BUDGET"))
    ap.add_argument("--out-root", default="runs/flow-bench")
    ap.add_argument("--md-only", action="store_true", help="rewrite flow_recipes.md from the JSON")
    args = ap.parse_args()
    if args.md_only:           # re-read the runs' report.json (e.g. after they were resumed)
        table = json.loads((RESULTS / "flow_recipes.json").read_text())
        for row in table:
            _read_results(row, Path(row["out"]) if Path(row["out"]).is_absolute()
                          else ROOT / row["out"])
        (RESULTS / "flow_recipes.json").write_text(json.dumps(table, indent=2) + "\n")
        write_md()
        return
    root = ROOT / args.out_root
    rows = []
    rel = Path(args.out_root)
    jobs = [(n, ["run", f"recipes/{n}.toml", "-o", str(rel / n)], root / n) for n in args.recipes]
    if args.sweep:
        n, budget = args.sweep
        jobs.append((f"sweep:{n}:{budget}", ["sweep", f"recipes/{n}.toml", "--budget", budget,
                                             "-o", str(rel / f"{n}-sweep")], root / f"{n}-sweep"))
    for name, argv, out in jobs:
        if out.exists():
            argv = argv + ["--resume"]
        res = _run(argv, out)
        row = {"recipe": name, "edgeprune_command": "edgeprune " + " ".join(argv),
               "benchmark_command": command_line(), "cores": os.cpu_count(), **res}
        _read_results(row, out)
        rows.append(row)
        print(f"{name}: exit {res['returncode']}, {res['seconds']:.0f} s", flush=True)
        upsert_rows("flow_recipes.json", [row], key=("recipe",))
    write_md()


def _read_results(row: dict, out: Path) -> None:
    """The figures of a finished run, read from its report.json / sweep.json."""
    name = row["recipe"]
    rep = out / ("sweep.json" if name.startswith("sweep:") else "report.json")
    if rep.is_file():
        data = json.loads(rep.read_text())
        if name.startswith("sweep:"):
            row["points"] = [{k: p.get(k) for k in ("label", "status", "accuracy", "costs")}
                             for p in data["points"]]
        else:
            row["accuracy"] = data.get("accuracy")
            row["totals"] = {t: {"dense": c["before"]["totals"],
                                 "pruned": (c["after"] or {}).get("totals")}
                             for t, c in data.get("costs", {}).items()}
            row["verification"] = {k: v["status"] for k, v in data.get("verification", {}).items()}
            # when the run was resumed, these are the durations of the run that did the work
            row["stage_seconds"] = {k: v.get("seconds") for k, v in data.get("stages", {}).items()}
            row["headlines"] = {k: (v.get("result") or {}).get("headline")
                                for k, v in data.get("stages", {}).items()}


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:,.2f}"
    if isinstance(v, int):
        return f"{v:,}"
    return "-" if v is None else str(v)


def write_md() -> None:
    table = json.loads((RESULTS / "flow_recipes.json").read_text())
    md = ["# `edgeprune run` on the shipped recipes", "",
          "Produced by `benchmarks/flow_recipes.py` (command per section); the tables are read "
          "from each run's report.json.", ""]
    for r in table:
        md += [f"## {r['recipe']}", "", f"`{r['benchmark_command']}` ran `{r['edgeprune_command']}`: "
               f"exit {r['returncode']}, {r['seconds']:.0f} s wall on {r['cores']} cores (shared "
               f"machine).", "", "```", r["terminal"].rstrip(), "```", ""]
        for t, c in (r.get("totals") or {}).items():
            keys = [k for k in ("latency_ms", "flash_bytes", "ram_bytes", "fps", "lut", "bram18",
                                "dsp") if k in c["dense"]]
            md += [f"{t} (cost model) | " + " | ".join(keys), "|".join(["---"] * (len(keys) + 1))]
            for name, tot in (("dense", c["dense"]), ("pruned", c["pruned"])):
                if tot:
                    md.append(f"{name} | " + " | ".join(_fmt(tot.get(k)) for k in keys))
            md.append("")
        if r.get("accuracy"):
            md += ["model stage | test accuracy | images", "---|---|---"]
            md += [f"{a['model_stage']} | {100 * a['accuracy']:.2f} % | {a['images']:,}"
                   for a in r["accuracy"]]
            md.append("")
        if r.get("stage_seconds"):
            total = sum(v or 0 for v in r["stage_seconds"].values())
            md += [f"stage durations (s) of the run that did the work, {total / 60:.1f} min in all: "
                   + ", ".join(f"{k} {v}" for k, v in r["stage_seconds"].items()), ""]
        if r.get("verification"):
            md += ["verification: " + ", ".join(f"{k} {v}" for k, v in r["verification"].items()), ""]
        for p in r.get("points") or []:
            acc = f"{100 * p['accuracy']:.2f} %" if p.get("accuracy") is not None else "-"
            md.append(f"- {p['label']}: {p['status']}, accuracy {acc}, " + "; ".join(
                f"{t}: " + ", ".join(f"{k} {_fmt(v)}" for k, v in c.items())
                for t, c in (p.get("costs") or {}).items()))
        md.append("")
    (RESULTS / "flow_recipes.md").write_text("\n".join(md))


if __name__ == "__main__":
    main()
