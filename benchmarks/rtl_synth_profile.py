#!/usr/bin/env python
"""Where yosys spends its time on a whole folded LeNet-5-class design (issue 12).

Builds the folded RTL of MODEL for TARGET (the export's folding and plan) with calibrated random
weights, no QAT: the structure (units, ROM shapes, folding) is the export's, only the weight
values differ, so this profiles synthesis without the 1,000-image Verilator run of
benchmarks/rtl_lenet5.py. Then yosys synth_xilinx of the whole top (as `export rtl` runs it),
with yosys's own CPU time and pass-time summary, against the RTL cost model's estimate of the
same plan. Optional --units: each unit on its own too; --estimate-only: no yosys, the estimate
of the stored row again from today's calibration (after a refit of the RTL cost model).

    python benchmarks/rtl_synth_profile.py --model lenet5 --target pynq-z2 --out-dir runs/prof/x
-> benchmarks/results/rtl_synth_profile.json (key: model, target)
"""
from __future__ import annotations

import argparse
import hashlib
import json
import re
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import RESULTS, command_line, upsert_rows  # noqa: E402


def build(spec: str, target: str, out: Path, seed: int):
    import torch

    from edgeprune.backends.finn.folding import auto_fold
    from edgeprune.backends.rtl.cost import plan_resources, unit_resources
    from edgeprune.backends.rtl.plan import build_plan, choose_styles
    from edgeprune.backends.rtl.verilog import generate, verilog_sources
    from edgeprune.deploy import Deployment
    from edgeprune.export.rtl import family_of, mvu_folding
    from edgeprune.graph import extract
    from edgeprune.models.loading import load_model
    from edgeprune.quant.brevitas_model import calibrate, to_brevitas
    from edgeprune.quant.integer_net import to_integer_net
    from edgeprune.targets import load_target

    torch.manual_seed(seed)
    m = load_model(spec, seed=seed).eval()
    dep = Deployment.for_target(load_target(target))
    g = extract(m)
    q = to_brevitas(m, wbits=dep.wbits, abits=dep.abits)
    calibrate(q, torch.rand(64, *g.input_shape), batch_size=64, batches=1)
    fam = family_of(dep.target)
    fold = mvu_folding(auto_fold(g, dep.target, wbits=dep.wbits, abits=dep.abits,
                                 target_fps=dep.fps, input_bits=8))
    net = to_integer_net(q)
    plan = build_plan(net, fold, choose_styles(net, fold, "folded", fam))
    out.mkdir(parents=True, exist_ok=True)
    files = generate(plan)
    for name, text in files.items():
        (out / name).write_text(text)
    est = plan_resources(plan, fam, wrapper=False)
    units = [{"unit": u.name, **{k: v for k, v in u.p.items() if isinstance(v, (int, str))},
              "estimate": unit_resources(u, fam)} for u in plan.units]
    sha = hashlib.sha256()
    for name in sorted(files):
        sha.update(name.encode() + b"\0" + files[name].encode())
    return plan, verilog_sources(files), est, units, fam, sha.hexdigest()


def yosys(out: Path, files, top: str, log: str, timeout: int):
    from edgeprune.backends.rtl.synth import _cells, summarize_cells
    script = "; ".join([f"read_verilog {f}" for f in files] +
                       [f"synth_xilinx -family xc7 -top {top}", "tee -q -o stat.txt stat"])
    t0 = time.time()
    subprocess.run(["yosys", "-q", "-l", log, "-p", script], cwd=out, check=True,
                   timeout=timeout, capture_output=True)
    wall = time.time() - t0
    text = (out / log).read_text()
    cpu = re.search(r"CPU: user ([\d.]+)s", text)
    spent = re.search(r"Time spent: (.*)", text)
    cells = _cells((out / "stat.txt").read_text())
    return {**summarize_cells(cells, "xc7"), "wall_s": round(wall, 1),
            "cpu_user_s": float(cpu.group(1)) if cpu else None,
            "time_spent": spent.group(1).strip() if spent else None}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="lenet5")
    ap.add_argument("--target", default="pynq-z2")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out-dir", required=True)
    ap.add_argument("--units", action="store_true", help="also synthesize each unit on its own")
    ap.add_argument("--timeout", type=int, default=7200)
    ap.add_argument("--estimate-only", action="store_true",
                    help="no yosys: the RTL estimate of the same plan from today's "
                         "calibration.json written into the stored row (model, target), next "
                         "to its yosys counts (after a refit of the cost model); refused when "
                         "the row's Verilog sha256 differs from the plan's")
    args = ap.parse_args(argv)
    from edgeprune.backends.rtl.verilog import TOP
    out = Path(args.out_dir)
    plan, files, est, units, fam, sha = build(args.model, args.target, out, args.seed)
    if fam != "xc7":
        sys.exit(f"error: {args.target} is not a 7-series target (synth_xilinx)")
    if args.estimate_only:
        path = RESULTS / "rtl_synth_profile.json"
        rows = json.loads(path.read_text()) if path.is_file() else []
        row = next((r for r in rows if (r["model"], r["target"]) == (args.model, args.target)),
                   None)
        if row is None or "yosys_top" not in row:
            sys.exit(f"error: no yosys row for {args.model} on {args.target} in {path.name}")
        if row.get("verilog_sha256", sha) != sha:
            sys.exit("error: the plan's Verilog differs from the synthesized one (sha256); "
                     "run without --estimate-only")
        # the estimate of the yosys run stays, under its own key, the first time it is replaced
        row.setdefault("estimate_at_synthesis", row["estimate"])
        row.update({"estimate": est, "estimate_verilog_sha256": sha,
                    "estimate_command": command_line(),
                    "units": [{**u, "yosys": row.get("yosys_units", {}).get(u["unit"])}
                              for u in units]})
        print(json.dumps({"estimate": est, "yosys_top": row["yosys_top"]}))
        upsert_rows("rtl_synth_profile.json", [row], ("model", "target"))
        return
    row = {"model": args.model, "target": args.target, "weights": "calibrated random (no QAT)",
           "estimate": est, "units": units, "verilog_sha256": sha, "command": command_line()}
    row["yosys_top"] = yosys(out, files, TOP, "yosys_top.log", args.timeout)
    if args.units:
        row["yosys_units"] = {
            f[3:-2]: yosys(out, [f], f[:-2], f"yosys_{f[:-2]}.log", args.timeout)
            for f in files if f != f"{TOP}.v"}
    print(json.dumps(row))
    upsert_rows("rtl_synth_profile.json", [row], ("model", "target"))


if __name__ == "__main__":
    main()
