#!/usr/bin/env python3
"""TFLite-Micro + CMSIS-NN measured on the emulated Cortex-M4: the zoo's `export tflm` outputs
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
  .venv/bin/python benchmarks/tflm_qemu.py --tflm-root DIR [--models resnet8 dscnn ...]
  (DIR: where ../shared/third_party/tflm/tflm-90b983c.tar.xz was unpacked; the library is
  cached in --cache, default runs/tflm-cache)
Writes benchmarks/results/tflm_qemu.json ({"rows": [...]}, keyed by model, core, runtime) and
fills tflm_cmsis_nn_cycles in the dense rows of benchmarks/results/c_runtime.json.
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
C_RUNTIME = HERE / "results" / "c_runtime.json"
KEY = ("model", "core", "runtime")
MODELS = ("resnet8", "dscnn", "mobilenetv1_025", "fc_autoencoder", "lenet5")
TARGET = {"cortex-m4": "stm32l4r5-m4"}


def upsert(path: Path, rows, key) -> None:
    from c_runtime_qemu import upsert as locked_upsert
    locked_upsert(rows, path, key)


def row_for(name: str, core: str, n_inputs: int, seed: int, tflm_root: Path, cache: Path,
            work: Path) -> dict:
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
    dep = Deployment.for_target(TARGET[core], runtime="tflm-cmsis-nn")
    out = work / name
    t0 = time.time()
    rep = export_tflm(model, dep, out, ds, n_eval=n_inputs, compress="off", seed=seed,
                      allow_overflow=True)
    t_export = time.time() - t0
    _, ev, _, _ = samples(model, graph, ds, 256, n_inputs, seed)
    io = rep["io"]
    x = quantize_input(to_nhwc(ev), io["input_scale"], io["input_zero_point"])
    res, _, _ = verify_tflm(out, core, x, tflm_root, cache)
    est = estimate(graph, dep)
    c_rows = json.loads(C_RUNTIME.read_text())["rows"] if C_RUNTIME.exists() else []   # read just before the locked update below
    c_row = next((r for r in c_rows if r["model"] == name and r["core"] == core
                  and r["variant"] == "dense" and r.get("edgeprune_c_cycles")
                  and "fashion" in str(r.get("data"))), None)
    row = {"model": name, "core": core, "runtime": "tflm-cmsis-nn", "split": "validation",
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
    if c_row:
        c_row["tflm_cmsis_nn_cycles"] = res["cycles_trm"]
        c_row["tflm_cmsis_nn_arena_measured"] = res["arena_used_bytes"]
        c_row["tflm_over_edgeprune_c_cycles"] = row["tflm_over_edgeprune_c_cycles"]
        c_row["tflm_command"] = command_line()
        upsert(C_RUNTIME, [c_row], ("model", "core", "variant", "data"))
    return row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tflm-root", type=Path, required=True)
    ap.add_argument("--cache", type=Path, default=REPO / "runs" / "tflm-cache")
    ap.add_argument("--models", nargs="*", default=list(MODELS))
    ap.add_argument("--core", default="cortex-m4", choices=list(TARGET))
    ap.add_argument("--inputs", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    import torch
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="tflm-qemu-") as d:
        for name in args.models:
            row = row_for(name, args.core, args.inputs, args.seed, args.tflm_root, args.cache, Path(d))
            upsert(OUT, [row], KEY)
            print(f"{name}: TFLM {row['cycles_measured']} cycles (estimate {row['cycles_estimate']}, "
                  f"{100 * row['cycles_estimate_error']:+.1f} %), arena {row['arena_measured']} B "
                  f"(estimate {row['arena_estimate']}), edgeprune-c {row['edgeprune_c_cycles']} "
                  f"cycles: ratio {row['tflm_over_edgeprune_c_cycles']}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
