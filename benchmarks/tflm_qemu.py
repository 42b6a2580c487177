#!/usr/bin/env python3
"""TFLite-Micro + CMSIS-NN measured on an emulated Cortex-M (--core: M4 mps2-an386, M7 mps2-an500,
M33 mps2-an505, M55 mps3-an547, M0+ its Armv6-M build on the Cortex-M3 board mps2-an385, timed
with the M0+ TRM table; each built with its own -mcpu): the zoo's `export tflm` outputs
built from a TFLM tree (`edgeprune verify --tflm-root`), run under QEMU, against the MCU cost
model's tflm-cmsis-nn estimate and its arena estimate; and, from the same weights, the dense
edgeprune-c build's cycles (benchmarks/results/c_runtime.json, written by
benchmarks/c_runtime_qemu.py zoo): the TFLM / edgeprune-c cycle ratio of issue 11.

Models: seeded random weights with non-trivial BatchNorm statistics, quantized on real images
(Fashion-MNIST, resized for the non-28x28 models), exactly as benchmarks/c_runtime_qemu.py
does, exported with `compress off` (dense int8, as the edgeprune-c dense rows).
Cycles on both sides: exact instruction streams converted with the same TRM table
(edgeprune/verify/cpi.py). The zoo is the validation split (the MCU cost model's constants come
from benchmarks/mcu_kernel_icount.py's synthetic kernels).

Run from the repo root:
  .venv/bin/python benchmarks/tflm_qemu.py --tflm-root DIR [--core cortex-m7] [--models resnet8 dscnn ...]
  (a model that does not fit the core's target, targets/mcu flash / RAM, is skipped and said so)
  (DIR: where ../shared/third_party/tflm/tflm-90b983c.tar.xz was unpacked; the library is
  cached in --cache, default runs/tflm-cache)
Writes benchmarks/results/tflm_qemu.json ({"rows": [...]}, keyed by model, core, runtime) and
fills tflm_cmsis_nn_cycles in the dense rows of benchmarks/results/c_runtime.json.

  .venv/bin/python benchmarks/tflm_qemu.py --reestimate
recomputes the estimate columns of the existing rows (cycles_estimate, per operator
cycles_estimate, arena_estimate and their errors) from the current cost model, without QEMU,
and writes benchmarks/results/tflm_qemu.md (per model, and per op kind over the zoo). Both modes
write the markdown table.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
from common import command_line  # noqa: E402

OUT = HERE / "results" / "tflm_qemu.json"
MD = HERE / "results" / "tflm_qemu.md"
C_RUNTIME = HERE / "results" / "c_runtime.json"
KEY = ("model", "core", "runtime")
MODELS = ("resnet8", "dscnn", "mobilenetv1_025", "fc_autoencoder", "lenet5")
TARGET = {"cortex-m4": "stm32l4r5-m4", "cortex-m7": "stm32h7a3-m7", "cortex-m33": "stm32u585-m33",
          "cortex-m0plus": "rp2040-m0plus",
          "cortex-m55": "alif-e3-m55"}


def upsert(path: Path, rows, key) -> None:
    from c_runtime_qemu import upsert as locked_upsert
    locked_upsert(rows, path, key)


def misfit(name: str, core: str, runtime: str):
    """Why `name` does not fit `core`'s target (flash / RAM of targets/mcu), or None."""
    from edgeprune.cost import estimate
    from edgeprune.deploy import Deployment
    from edgeprune.graph import extract
    from edgeprune.models import build
    t = estimate(extract(build(name)), Deployment.for_target(TARGET[core], runtime=runtime)).totals
    if not t["fits_flash"] or not t["fits_ram"]:
        return (f"{t['flash_bytes']} B flash / {t['ram_bytes']} B arena > {TARGET[core]}'s "
                f"{t['flash_budget_bytes']} / {t['ram_budget_bytes']} B")
    return None


def row_for(name: str, core: str, n_inputs: int, seed: int, tflm_root: Path, cache: Path,
            work: Path, runtime: str = "tflm-cmsis-nn") -> dict:
    import torch
    from c_runtime_zoo import datasets, randomize_bn
    from edgeprune.cost import estimate
    from edgeprune.deploy import Deployment
    from edgeprune.export.keras_mirror import to_nhwc
    from edgeprune.export.tflm import export_tflm, quantize_input, samples
    from edgeprune.graph import extract
    from edgeprune.models import build
    from edgeprune.verify.tflm_runtime import verify_tflm
    torch.manual_seed(seed)
    model = randomize_bn(build(name), seed)
    graph = extract(model)
    ds = datasets(name, graph.input_shape, n_inputs)[0]
    if graph.n_outputs < ds.num_classes:           # labels are not used (random weights)
        from edgeprune.data import Dataset
        ds = Dataset(ds.name, ds.x_train, ds.y_train % graph.n_outputs, ds.x_test,
                     ds.y_test % graph.n_outputs)
    dep = Deployment.for_target(TARGET[core], runtime=runtime)
    out = work / f"{name}-{runtime}"
    t0 = time.time()
    rep = export_tflm(model, dep, out, ds, n_eval=n_inputs, compress="off", seed=seed,
                      allow_overflow=True)
    t_export = time.time() - t0
    _, ev, _, _ = samples(model, graph, ds, 256, n_inputs, seed)
    io = rep["io"]
    x = quantize_input(to_nhwc(ev), io["input_scale"], io["input_zero_point"])
    res, _, _ = verify_tflm(out, core, x, tflm_root, cache,
                            kernels="cmsis_nn" if runtime == "tflm-cmsis-nn" else "reference")
    if not res["trace_instructions_equal_icount"]:
        raise SystemExit(f"{name} on {res['board']}: the execution trace and the -icount timer "
                         f"disagree on the instructions per invoke; the cycles would not be exact")
    est = estimate(graph, dep)
    c_rows = json.loads(C_RUNTIME.read_text())["rows"] if C_RUNTIME.exists() else []   # read just before the locked update below
    c_row = next((r for r in c_rows if r["model"] == name and r["core"] == core
                  and r["variant"] == "dense" and r.get("edgeprune_c_cycles")
                  and "fashion" in str(r.get("data"))), None) if runtime == "tflm-cmsis-nn" else None
    row = {"model": name, "core": core, "runtime": runtime, "split": "validation",
           "cycles_estimate": round(est.totals["cycles"]),
           "cycles_measured": res["cycles_trm"],
           "cycles_estimate_error": round(est.totals["cycles"] / res["cycles_trm"] - 1, 4),
           "instructions_measured": res["instructions_per_invoke"],
           "instructions_interpreter": res["instructions_interpreter"],
           "operators": res["operators"],
           "arena_estimate": rep.get("arena_bytes_estimate"),
           "arena_measured": res["arena_used_bytes"],
           "arena_host_64bit": rep.get("arena_bytes_measured"),
           "arena_estimate_error": (round(rep["arena_bytes_estimate"] / res["arena_used_bytes"] - 1, 4)
                                    if rep.get("arena_bytes_estimate") else None),
           "identical_vs_host_interpreter": res["outputs_vs_host"]["tflm_host"]["identical"],
           "inputs": res["inputs"]["count"], "board": res["board"],
           "flash_bytes": res["flash_bytes"], "ram_bytes": res["ram_bytes"],
           "export_seconds": round(t_export, 1),
           "edgeprune_c_cycles": c_row["edgeprune_c_cycles"] if c_row else None,
           "edgeprune_c_ram_bytes": c_row["ram_bytes"] if c_row else None,
           "tflm_over_edgeprune_c_cycles": (round(res["cycles_trm"] / c_row["edgeprune_c_cycles"], 3)
                                            if c_row else None),
           "command": command_line()}
    reestimate(row)
    if c_row:
        c_row["tflm_cmsis_nn_cycles"] = res["cycles_trm"]
        c_row["tflm_cmsis_nn_arena_measured"] = res["arena_used_bytes"]
        c_row["tflm_over_edgeprune_c_cycles"] = row["tflm_over_edgeprune_c_cycles"]
        c_row["tflm_command"] = command_line()
        upsert(C_RUNTIME, [c_row], ("model", "core", "variant", "data"))
    return row


def align_ops(plan, opcodes):
    """Indices into `plan.ops` (DECODE left out) in the order the exported model runs them:
    the TFLite converter may order independent branches differently from the plan (resnet8's
    shortcut), so the plan's ops are put in an order that respects their data dependencies and
    gives the measured op sequence `opcodes` (ties in plan order); None if there is none."""
    ops = [i for i, op in enumerate(plan.ops) if op.opcode != "DECODE"]
    producer = {t: i for i in ops for t in plan.ops[i].outputs}
    deps = {i: {producer[t] for t in plan.ops[i].inputs if t in producer and producer[t] != i}
            for i in ops}

    def walk(done, order):
        if len(order) == len(ops):
            return order
        want = opcodes[len(order)]
        for i in ops:
            if i not in done and plan.ops[i].opcode == want and deps[i] <= done:
                r = walk(done | {i}, order + [i])
                if r is not None:
                    return r
        return None
    if len(opcodes) != len(ops):
        return None
    return walk(frozenset(), [])


def reestimate(row: dict) -> dict:
    """The row's estimate columns from the current cost model (no QEMU): cycles (total and per
    operator, matched in execution order) and the arena on the target."""
    from edgeprune.backends.tflm import plan as tflm_plan
    from edgeprune.cost import estimate
    from edgeprune.cost.mcu import plan_op_cycles
    from edgeprune.deploy import Deployment
    from edgeprune.graph import extract
    from edgeprune.models import build
    graph = extract(build(row["model"]))
    dep = Deployment.for_target(TARGET[row["core"]], runtime=row["runtime"])
    est = estimate(graph, dep)
    plan = tflm_plan.lower(graph)
    per_op = plan_op_cycles(plan, row["core"], row["runtime"])      # in plan order
    ops = row.get("operators") or []
    order = align_ops(plan, [o["op"] for o in ops])
    if order is None:
        raise SystemExit(f"{row['model']}: the cost model's ops {[p['op'] for p in per_op]} do not "
                         f"match the measured ones {[o['op'] for o in ops]}")
    index = [i for i, op in enumerate(plan.ops) if op.opcode != "DECODE"]
    by_plan = dict(zip(index, per_op))
    for o, i in zip(ops, order):
        p = by_plan[i]
        o["cycles_estimate"] = round(p["kernel_cycles"])      # the kernel's, as cycles_trm
        o["kernel"] = p["kernel"]
    row["cycles_estimate"] = round(est.totals["cycles"])
    row["cycles_estimate_error"] = round(est.totals["cycles"] / row["cycles_measured"] - 1, 4)
    row["arena_estimate"] = int(est.totals["ram_bytes"])
    row["arena_estimate_error"] = (round(row["arena_estimate"] / row["arena_measured"] - 1, 4)
                                   if row.get("arena_measured") else None)
    row["estimate_command"] = command_line()
    return row


def op_kind_errors(rows) -> dict:
    """Per TFLite op kind over the rows: summed estimated and measured cycles, and the worst
    single operator's error."""
    kinds: dict = {}
    for r in rows:
        for o in r.get("operators") or []:
            if "cycles_estimate" not in o:
                continue
            k = kinds.setdefault(o["op"], {"ops": 0, "estimate": 0, "measured": 0, "worst": 0.0})
            k["ops"] += 1
            k["estimate"] += o["cycles_estimate"]
            k["measured"] += o["cycles_trm"]
            e = o["cycles_estimate"] / o["cycles_trm"] - 1
            if abs(e) > abs(k["worst"]):
                k["worst"] = e
    for k in kinds.values():
        k["error"] = k["estimate"] / k["measured"] - 1
    return kinds


def write_markdown(rows, path: Path = MD) -> str:
    rows = sorted(rows, key=lambda r: (r["core"], r["runtime"], r["model"]))
    lines = ["# TFLite-Micro on the emulated core: estimate vs measured", "",
             "Written by `benchmarks/tflm_qemu.py` (measured: `" + "`, `".join(sorted({r["command"] for r in rows})) +
             "`; estimates refreshed by `" + "`, `".join(sorted({r.get("estimate_command", r["command"]) for r in rows})) +
             "`). Cycles: the exact instruction stream (QEMU -icount) through the core's TRM "
             "timings, both sides; the cost model's tflm constants come from synthetic networks "
             "only (`benchmarks/tflm_calibrate.py`), the zoo is the validation split.", "",
             "| model | core | runtime | cycles measured | cycles estimate | error | arena measured | arena estimate | error |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|"]

    def pct(v):
        return "n/a" if v is None else f"{100 * v:+.1f} %"
    for r in rows:
        lines.append(f"| {r['model']} | {r['core']} | {r['runtime']} | {r['cycles_measured']:,} | "
                     f"{r['cycles_estimate']:,} | {pct(r['cycles_estimate_error'])} | "
                     f"{r.get('arena_measured') or 'n/a'} | {r.get('arena_estimate') or 'n/a'} | "
                     f"{pct(r.get('arena_estimate_error'))} |")
    for (core, rt) in sorted({(r["core"], r["runtime"]) for r in rows}):
        sel = [r for r in rows if r["core"] == core and r["runtime"] == rt]
        kinds = op_kind_errors(sel)
        if not kinds:
            continue
        lines += ["", f"Per op kind on the zoo ({core}, {rt}): the kernels' cycles (the interpreter's "
                      f"own work between operators left out on both sides), summed over every "
                      f"operator of that kind in the {len(sel)} models; worst = the single operator "
                      f"furthest off.", "",
                  "| op kind | operators | cycles measured | cycles estimate | error | worst operator |",
                  "|---|---:|---:|---:|---:|---:|"]
        for name, k in sorted(kinds.items(), key=lambda kv: -kv[1]["measured"]):
            lines.append(f"| {name} | {k['ops']} | {k['measured']:,} | {k['estimate']:,} | "
                         f"{pct(k['error'])} | {pct(k['worst'])} |")
        errs = [r["cycles_estimate_error"] for r in sel]
        lines += ["", f"Per model: {pct(min(errs))} ... {pct(max(errs))}; per op kind: "
                      f"{pct(min(k['error'] for k in kinds.values()))} ... "
                      f"{pct(max(k['error'] for k in kinds.values()))}."]
    text = "\n".join(lines) + "\n"
    path.write_text(text)
    return text


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tflm-root", type=Path)
    ap.add_argument("--reestimate", action="store_true",
                    help="recompute the estimate columns of the existing rows (no QEMU)")
    ap.add_argument("--cache", type=Path, default=REPO / "runs" / "tflm-cache")
    ap.add_argument("--models", nargs="*", default=list(MODELS))
    ap.add_argument("--core", default="cortex-m4", choices=list(TARGET))
    ap.add_argument("--inputs", type=int, default=5)
    ap.add_argument("--runtime", default="tflm-cmsis-nn", choices=("tflm-cmsis-nn", "tflm-reference"))
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    import torch
    torch.set_num_threads(1)
    if args.reestimate:
        if not OUT.exists():
            print(f"error: {OUT} missing: nothing to re-estimate", file=sys.stderr)
            return 2
        rows = json.loads(OUT.read_text())["rows"]
        rows = [reestimate(r) for r in rows]
        upsert(OUT, rows, KEY)
        write_markdown(json.loads(OUT.read_text())["rows"])
        for r in rows:
            print(f"{r['model']}: estimate {r['cycles_estimate']} vs {r['cycles_measured']} cycles "
                  f"({100 * r['cycles_estimate_error']:+.1f} %), arena {r['arena_estimate']} vs "
                  f"{r['arena_measured']}", flush=True)
        print(f"wrote {MD.relative_to(REPO)}")
        return 0
    if args.tflm_root is None:
        print("error: --tflm-root is required (or --reestimate)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="tflm-qemu-") as d:
        for name in args.models:
            why = misfit(name, args.core, args.runtime)
            if why:
                print(f"{name}: skipped on {args.core}: {why}", flush=True)
                continue
            row = row_for(name, args.core, args.inputs, args.seed, args.tflm_root, args.cache, Path(d),
                          args.runtime)
            upsert(OUT, [row], KEY)
            print(f"{name}: TFLM {row['cycles_measured']} cycles (estimate {row['cycles_estimate']}, "
                  f"{100 * row['cycles_estimate_error']:+.1f} %), arena {row['arena_measured']} B "
                  f"(estimate {row['arena_estimate']}), edgeprune-c {row['edgeprune_c_cycles']} "
                  f"cycles: ratio {row['tflm_over_edgeprune_c_cycles']}", flush=True)
    write_markdown(json.loads(OUT.read_text())["rows"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
