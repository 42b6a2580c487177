#!/usr/bin/env python3
"""edgeprune-c measured on emulated Cortex-M cores: instructions, TRM cycles, flash, RAM and
bit-exactness of the zoo models (dense) and of trained LeNet-5 variants, against the
calibrated cost model.

Zoo rows (seeded random weights, non-trivial BatchNorm statistics, as
benchmarks/c_runtime_zoo.py; real images: Fashion-MNIST, resized for the non-28x28 models):
quantize as `edgeprune export c` does, generate the dense C for the core, run it with
`edgeprune verify`'s harness on the core's QEMU board (-icount: exact instructions per invoke
and per layer; execution trace: cycles through the TRM timings), compare its output bytes with
the tflite-micro runtime, and estimate it with the calibrated model
(edgeprune/backends/c/costs.py, fitted on synthetic layers by benchmarks/c_runtime_calibrate.py:
the zoo is the validation set).

LeNet-5 rows (--lenet-dir: the models benchmarks/c_runtime_lenet5.py trains, prunes at weight
level and clusters): `edgeprune export c` of each variant, then `edgeprune verify` on the whole
test split on QEMU (accuracy of the emulated build).

Run from the repo root:
  .venv/bin/python benchmarks/c_runtime_qemu.py zoo [--models resnet8 ...] [--core cortex-m4]
  .venv/bin/python benchmarks/c_runtime_qemu.py reestimate     (estimates of the stored zoo rows
      from the current cost_constants.py, after a new calibration)
  .venv/bin/python benchmarks/c_runtime_qemu.py lenet5 --lenet-dir runs/c_runtime_lenet5/mnist-t10k-15ep-100x-3b --data /work/shared/data/mnist-t10k
Writes benchmarks/results/c_runtime.json ({"rows": [...]}, keyed by model, core, variant).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
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

OUT = HERE / "results" / "c_runtime.json"
KEY = ("model", "core", "variant", "data")
ZOO = ("lenet5", "lenet300100", "vgg_small", "resnet8", "dscnn", "mobilenetv1_025", "fc_autoencoder")
CORE_TARGET = {"cortex-m4": "stm32l4r5-m4", "cortex-m7": "stm32h7a3-m7",
               "cortex-m33": "stm32u585-m33", "cortex-m55": "alif-e3-m55"}


def upsert(rows, path: Path = OUT, key=KEY) -> None:
    """Replace rows with the same key (else append), under a lock: benchmarks/tflm_qemu.py
    fills columns of these rows and may run at the same time."""
    import fcntl
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        table = json.loads(path.read_text()) if path.exists() else {"rows": []}
        for row in rows:
            k = tuple(row.get(f) for f in key)
            table["rows"] = [r for r in table["rows"] if tuple(r.get(f) for f in key) != k] + [row]
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(table, indent=1) + "\n")
        tmp.replace(path)


def layer_summary(res) -> list:
    return [{k: l.get(k) for k in ("index", "layer", "kernel", "variant", "macs", "instructions",
                                    "instructions_per_mac", "cycles_trm")} for l in res.get("layers", [])]


def zoo_row(name: str, core: str, n_inputs: int, seed: int, work: Path) -> dict:
    import torch
    from c_runtime_zoo import datasets, randomize_bn
    from edgeprune.backends.c import costs
    from edgeprune.backends.c.codegen import generate
    from edgeprune.backends.c.ir import read_tflite
    from edgeprune.backends.tflm import plan as tflm_plan
    from edgeprune.export.c import quantize
    from edgeprune.export.keras_mirror import to_nhwc
    from edgeprune.export.tflm import io_quant, match_ops, quantize_input, samples
    from edgeprune.graph import extract
    from edgeprune.models import build
    from edgeprune.verify.c_runtime import verify_c
    torch.manual_seed(seed)
    model = randomize_bn(build(name), seed)
    graph = extract(model)
    plan = tflm_plan.lower(graph)
    ds = datasets(name, graph.input_shape, n_inputs)[0]
    if graph.n_outputs < ds.num_classes:           # labels are not used (random weights)
        from edgeprune.data import Dataset
        ds = Dataset(ds.name, ds.x_train, ds.y_train % graph.n_outputs, ds.x_test,
                     ds.y_test % graph.n_outputs)
    cal, ev, _, note = samples(model, graph, ds, 256, n_inputs, seed)
    plain, _ = quantize(model, graph, plan, cal, seed, ev[:16])
    names = [n for n, _ in sorted(match_ops(plain, plan), key=lambda p: p[1])]
    gen = generate(read_tflite(plain, names), core, force="dense", rounding="tflm", model_name=name)
    q = io_quant(plain)
    x = quantize_input(to_nhwc(ev), q["input_scale"], q["input_zero_point"])
    d = work / name
    d.mkdir(parents=True)
    for k, v in gen.files.items():
        (d / k).write_text(v)
    (d / "model.tflite").write_bytes(plain)
    (d / "report.json").write_text(json.dumps({
        "io": q, "rounding": "tflm", "core": core, "model": name,
        "layers": [{k: v for k, v in vars(l).items() if k != "alternatives"} for l in gen.layers]},
        default=str))
    res, _, _ = verify_c(d, core, x)
    terms = [costs.step_terms(st, st.params.get("encoding")) for st in gen.program.steps]
    est = costs.estimate_program(gen.program, core)
    row = {"model": name, "core": core, "variant": "dense", "data": ds.name,
           "instructions": res["instructions_per_invoke"],
           "edgeprune_c_cycles": res.get("cycles_trm"),
           "cycles_estimate": round(est["cycles"]) if est else None,
           "instructions_estimate": round(est["instructions"]) if est else None,
           "cycles_estimate_error": (round(est["cycles"] / res["cycles_trm"] - 1, 4)
                                     if est and res.get("cycles_trm") else None),
           "instructions_estimate_error": (round(est["instructions"] / res["instructions_per_invoke"] - 1, 4)
                                           if est else None),
           "tflm_cmsis_nn_cycles": None,
           "flash_bytes": res["flash_bytes"], "ram_bytes": res["ram_bytes"],
           "stack_bytes": res["stack_bytes_measured"], "arena_bytes": gen.arena_bytes,
           "macs": int(sum(st.macs for st in gen.program.steps if st.weighted is not None)),
           "accuracy": None, "accuracy_note": "random weights: bit-exactness only",
           "identical_vs_tflm": res["outputs_vs_host"]["tflm"]["identical"],
           "inputs": res["inputs"]["count"], "board": res["board"],
           "trace_instructions_equal_icount": res.get("trace_instructions_equal_icount"),
           "layers": layer_summary(res), "command": command_line(),
           "output_bytes": int(np.prod(gen.program.output_shape))}
    for l, (key, t) in zip(row["layers"], terms):
        l["cost_key"], l["cost_terms"] = key, t
    reestimate(row)
    tflm_columns(row)
    row["cycles_per_mac"] = round(row["edgeprune_c_cycles"] / row["macs"], 3) if row["edgeprune_c_cycles"] else None
    return row


def tflm_columns(row: dict) -> None:
    """TFLM + CMSIS-NN's measured cycles of the same model (same seed) on the same core, from
    benchmarks/results/tflm_qemu.json (benchmarks/tflm_qemu.py; TFLM's count does not depend on
    edgeprune-c's kernels, so a new edgeprune-c run reuses it)."""
    path = HERE / "results" / "tflm_qemu.json"
    if not path.exists():
        return
    for t in json.loads(path.read_text())["rows"]:
        if (t["model"], t["core"], t.get("runtime")) == (row["model"], row["core"], "tflm-cmsis-nn"):
            row["tflm_cmsis_nn_cycles"] = t["cycles_measured"]
            row["tflm_cmsis_nn_instructions"] = t.get("instructions_measured")
            row["tflm_cmsis_nn_flash_bytes"] = t.get("flash_bytes")
            row["tflm_cmsis_nn_ram_bytes"] = t.get("ram_bytes")
            row["tflm_cmsis_nn_arena_measured"] = t.get("arena_measured")
            row["tflm_command"] = t["command"]
            if row.get("edgeprune_c_cycles"):
                row["tflm_over_edgeprune_c_cycles"] = round(t["cycles_measured"] / row["edgeprune_c_cycles"], 3)


def reestimate(row: dict) -> None:
    """Fill the estimate columns of a zoo row from its stored per-layer cost terms with the
    current calibrated constants (edgeprune/backends/c/cost_constants.py)."""
    from edgeprune.backends.c import costs
    c = costs._constants()
    core = row["core"]
    if c is None or core not in c.STEP_INSTRUCTIONS:
        return
    ti = tc = 0.0
    if any(l["cost_key"] not in c.STEP_INSTRUCTIONS[core] for l in row["layers"]):
        return                           # a kernel the constants do not cover yet
    for l in row["layers"]:
        ci, cc = c.STEP_INSTRUCTIONS[core][l["cost_key"]], c.STEP_CYCLES[core][l["cost_key"]]
        ei = sum(ci.get(t, 0.0) * v for t, v in l["cost_terms"].items())
        ec = sum(cc.get(t, 0.0) * v for t, v in l["cost_terms"].items())
        l["instructions_estimate"], l["cycles_estimate"] = round(ei), round(ec)
        ti, tc = ti + ei, tc + ec
    inv_i, inv_c = c.INVOKE_INSTRUCTIONS[core], c.INVOKE_CYCLES[core]
    ti += inv_i["call"] + inv_i["output_bytes"] * row["output_bytes"]
    tc += inv_c["call"] + inv_c["output_bytes"] * row["output_bytes"]
    row["instructions_estimate"], row["cycles_estimate"] = round(ti), round(tc)
    row["instructions_estimate_error"] = round(ti / row["instructions"] - 1, 4)
    row["cycles_estimate_error"] = (round(tc / row["edgeprune_c_cycles"] - 1, 4)
                                    if row.get("edgeprune_c_cycles") else None)
    row["estimate_constants"] = "edgeprune/backends/c/cost_constants.py (benchmarks/c_runtime_calibrate.py)"


def edgeprune(*args) -> None:
    cmd = [sys.executable, "-m", "edgeprune", *map(str, args)]
    print("$", " ".join(cmd[2:]), flush=True)
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_WAIT_POLICY="PASSIVE")
    subprocess.run(cmd, check=True, cwd=REPO, env=env)


def lenet_rows(lenet_dir: Path, data: str, core: str, samples: int, work: Path,
               variants=None, extra=(), export_samples: int = 0) -> list:
    """Each LeNet-5 variant exported with `edgeprune export c`, verified on QEMU. extra:
    (label, model dir) of other pruned models, exported with the per-layer choice."""
    from edgeprune.backends.c import costs  # noqa: F401  (calibrated model used by the export)
    target = CORE_TARGET[core]
    runs = [  # (variant label, MODEL args, --variant)
        ("dense", ["lenet5", "--weights", lenet_dir / "dense.pt"], "dense"),
        ("sparse", [lenet_dir / "pruned"], "sparse"),
        ("clustered", [lenet_dir / "clustered"], "clustered"),
        ("sparse+clustered", [lenet_dir / "clustered"], "sparse"),
        # the per-layer choice of the cost model (cycles objective) on the weight-pruned model
        ("sparse, per-layer choice", [lenet_dir / "pruned"], "auto"),
        # the clustered model stored dense: the reference of the clustered encoding's flash
        ("dense, clustered model", [lenet_dir / "clustered"], "dense"),
    ]
    if (lenet_dir / "channel").is_dir():
        runs.append(("channel", [lenet_dir / "channel"], "dense"))
    for label, d in extra:
        runs.append((label, [Path(d)], "auto"))
    rows = []
    dense_instr = None
    if variants:
        stored = ([r for r in json.loads(OUT.read_text())["rows"]
                   if (r["model"], r["core"], r["variant"], r["data"]) == ("lenet5", core, "dense", data)
                   and f"--lenet-dir {lenet_dir} " in r.get("command", "") + " "] if OUT.exists() else [])
        if stored and "dense" not in variants:   # the reference row of this --lenet-dir, stored
            dense_instr, dense_wbytes = stored[0]["instructions"], stored[0]["weight_bytes"]
            runs = [r for r in runs if r[0] in variants]
        else:
            runs = [r for r in runs if r[0] in variants or r[0] == "dense"]
    for label, margs, variant in runs:
        slug = "".join(ch if ch.isalnum() else "_" for ch in label)
        exp = work / f"export-{slug}"
        edgeprune("export", "c", *margs, "--target", target, "--data", data, "--eval-samples",
                  export_samples, "--variant", variant, "--allow-overflow", "-o", exp)
        vout = work / f"verify-{slug}"
        edgeprune("verify", exp, "--qemu", core, "--data", data, "--samples", samples, "-o", vout)
        rep = json.loads((exp / "report.json").read_text())
        res = json.loads((vout / "verify.json").read_text())
        if label == "dense":
            dense_instr = res["instructions_per_invoke"]
            dense_wbytes = rep["weight_bytes"]
        summary = Path(margs[0]) / "summary.json"
        summary = json.loads(summary.read_text()) if summary.is_file() else {}
        rows.append({
            "model": "lenet5", "core": core, "variant": label, "data": data,
            "instructions": res["instructions_per_invoke"],
            "edgeprune_c_cycles": res.get("cycles_trm"),
            "cycles_estimate": rep.get("cycles_estimate"),
            "instructions_estimate": rep.get("instructions_estimate"),
            "cycles_estimate_error": (round(rep["cycles_estimate"] / res["cycles_trm"] - 1, 4)
                                      if rep.get("cycles_estimate") and res.get("cycles_trm") else None),
            "dense_instructions": dense_instr,
            "instructions_vs_dense": round(dense_instr / res["instructions_per_invoke"], 2) if dense_instr else None,
            "flash_bytes": res["flash_bytes"], "ram_bytes": res["ram_bytes"],
            "flash_bytes_export_estimate": (rep.get("cross") or {}).get("flash_bytes"),
            "ram_bytes_export_estimate": (rep.get("cross") or {}).get("ram_bytes"),
            "weight_bytes": rep["weight_bytes"],
            "weight_bytes_vs_dense": round(dense_wbytes / rep["weight_bytes"], 2),
            "params_compression": (round(summary["params_compression"], 1)
                                   if "params_compression" in summary else None),
            "pruning": ({k: summary.get(k) for k in ("granularity", "orientation", "amount",
                                                      "target", "acc_pruned")}
                        if summary else None),
            "model_dir": str(margs[-1]),
            "nonzero_weights": sum(l["nonzero_weights"] for l in rep["layers"]),
            "weights": sum(l["weights"] for l in rep["layers"]),
            "accuracy": res.get("accuracy_int8_emulated"), "accuracy_float": rep.get("accuracy_float"),
            "accuracy_float_inputs": (rep.get("verification") or {}).get("samples"),
            "accuracy_note": f"emulated {core} build on the first {res['inputs']['count']} test images",
            "identical_vs_tflm": res["outputs_vs_host"].get("tflm", {}).get("identical"),
            "inputs": res["inputs"]["count"], "board": res["board"],
            "layers": layer_summary(res), "command": command_line()})
        if label == "dense":
            tflm_columns(rows[-1])      # TFLM + CMSIS-NN on the same core: dense kernels, so its
            #                             count does not depend on the weights' values
        print(f"lenet5 {label}: {res['instructions_per_invoke']} instructions, flash "
              f"{res['flash_bytes']} B, RAM {res['ram_bytes']} B, accuracy "
              f"{res.get('accuracy_int8_emulated')}", flush=True)
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=("zoo", "lenet5", "reestimate"))
    ap.add_argument("--models", nargs="*", default=list(ZOO))
    ap.add_argument("--core", default="cortex-m4")
    ap.add_argument("--inputs", type=int, default=5, help="images per zoo model")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--lenet-dir", type=Path)
    ap.add_argument("--data", default="/work/shared/data/mnist-t10k")
    ap.add_argument("--samples", type=int, default=0, help="LeNet-5 test images on QEMU (0 = all)")
    ap.add_argument("--variants", nargs="*", help="LeNet-5 variants to run (dense runs too, the "
                    "reference of the others, unless the table holds this --lenet-dir's dense row)")
    ap.add_argument("--extra", nargs="*", default=[], metavar="LABEL=DIR",
                    help="other pruned LeNet-5 models (rows exported with the per-layer choice)")
    ap.add_argument("--export-samples", type=int, default=0,
                    help="test images of `export c`'s own host check (0 = all; QEMU runs --samples)")
    args = ap.parse_args()
    if args.what == "reestimate":        # zoo rows: estimates from the current constants
        table = json.loads(OUT.read_text())
        for row in table["rows"]:
            if row.get("layers") and "cost_key" in row["layers"][0]:
                reestimate(row)
        upsert(table["rows"])
        return 0
    import torch
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="c-qemu-") as d:
        work = Path(d)
        if args.what == "zoo":
            for name in args.models:
                t0 = time.time()
                row = zoo_row(name, args.core, args.inputs, args.seed, work)
                upsert([row])
                print(f"{name}: {row['instructions']} instructions, {row['edgeprune_c_cycles']} cycles "
                      f"(estimate {row['cycles_estimate']}, error {row['cycles_estimate_error']}), "
                      f"flash {row['flash_bytes']} B, RAM {row['ram_bytes']} B, identical "
                      f"{row['identical_vs_tflm']} ({time.time() - t0:.0f} s)", flush=True)
        else:
            if args.lenet_dir is None or not (args.lenet_dir / "dense.pt").is_file():
                print("--lenet-dir must hold dense.pt, pruned/ and clustered/ (run "
                      "benchmarks/c_runtime_lenet5.py first)", file=sys.stderr)
                return 2
            extra = [tuple(e.split("=", 1)) for e in args.extra]
            if any(len(e) != 2 for e in extra):
                print("--extra takes LABEL=DIR", file=sys.stderr)
                return 2
            upsert(lenet_rows(args.lenet_dir, args.data, args.core, args.samples, work,
                              args.variants + [e[0] for e in extra] if args.variants else None,
                              extra, args.export_samples))
    return 0


if __name__ == "__main__":
    sys.exit(main())
