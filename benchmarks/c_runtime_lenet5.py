#!/usr/bin/env python3
"""Trained LeNet-5 through edgeprune-c: accuracy of the C build on the whole test split, bit
exactness, weight bytes, flash / RAM and the estimated instructions of each kernel variant.

Steps (every model artefact through the user-facing CLI):
1. dense: LeNet-5 trained with edgeprune's Trainer (seed, epochs and optimiser of the pruning
   run), saved as a state_dict;
2. pruned: `edgeprune prune lenet5 --method statistical --granularity weight --orientation O
   --sparsity S --no-baseline` (weight-level sparsity); --orientation target prices each weight
   by what it costs in edgeprune-c on the M4 (`--target stm32l4r5-m4 --runtime edgeprune-c`:
   instructions and flash of the sparse kernels), memory by its parameter;
3. pruned + clustered: `edgeprune cluster PRUNED --bits B --epochs 1` (pruned weights stay 0);
3b. with --channel-sparsity: channel-pruned (`--granularity channel`, same orientation), the
   coarse-granularity row of benchmarks/c_runtime_qemu.py lenet5;
4. `edgeprune export c ... --eval-samples 0` of each model, per weight encoding, for the
   Cortex-M4 (stm32l4r5-m4) and the Cortex-M0+ (rp2040-m0plus): the C build runs the whole test
   split; its output bytes are compared with the tflite-micro runtime and LiteRT.

Instruction figures are the cost model's estimates (edgeprune/backends/c/costs.py: measured
inner loops, not yet calibrated outside them), not measurements: the emulated Cortex-M counts
come with the QEMU harness (issue 11).

Run from the repo root:
  .venv/bin/python benchmarks/c_runtime_lenet5.py --data ../shared/data/mnist-t10k --epochs 15 --sparsity 100x --bits 3
  .venv/bin/python benchmarks/c_runtime_lenet5.py --data ../shared/data/mnist-t10k --epochs 15 \
      --orientation target --sparsity 0.981 --channel-sparsity 0.5 --train-only
(--data: fashion-mnist, mnist-10k or an IDX directory; a lone MNIST t10k set is split 8k / 2k.)
Writes benchmarks/results/c_runtime_lenet5.json; models and exports under runs/c_runtime_lenet5/.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import command_line, upsert_rows  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


def edgeprune(*args) -> None:
    cmd = [sys.executable, "-m", "edgeprune", *map(str, args)]
    print("$", " ".join(cmd[2:]), flush=True)
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_WAIT_POLICY="PASSIVE")
    subprocess.run(cmd, check=True, cwd=REPO, env=env)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default="mnist-10k")
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--sparsity", default="100x")
    ap.add_argument("--bits", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="runs/c_runtime_lenet5")
    ap.add_argument("--orientation", default="memory", choices=("memory", "workload", "target"),
                    help="where the sparsity goes; target: edgeprune-c's cost on the M4")
    ap.add_argument("--lr-schedule", default="constant", choices=("constant", "cosine"),
                    help="of the dense training and the pruning runs (edgeprune.train)")
    ap.add_argument("--from-dense", action="store_true",
                    help="prune from the trained dense model (--weights dense.pt) and distil from it "
                         "(--distill), instead of pruning while training from the seed's init")
    ap.add_argument("--channel-sparsity", help="also a channel-pruned model (same orientation)")
    ap.add_argument("--train-only", action="store_true",
                    help="train, prune and cluster only (the QEMU table: benchmarks/c_runtime_qemu.py lenet5)")
    args = ap.parse_args()
    tag = ("" if args.orientation == "memory" else f"-{args.orientation}") + \
        ("" if args.lr_schedule == "constant" else f"-{args.lr_schedule}") + \
        ("-fromdense" if args.from_dense else "")
    sched = [] if args.lr_schedule == "constant" else ["--lr-schedule", args.lr_schedule]
    out = REPO / args.out / f"{Path(args.data).name}-{args.epochs}ep-{args.sparsity}{tag}-{args.bits}b"
    cost_args = (["--target", "stm32l4r5-m4", "--runtime", "edgeprune-c"]
                 if args.orientation == "target" else [])
    out.mkdir(parents=True, exist_ok=True)

    dense_sd = out / "dense.pt"
    if not dense_sd.exists():
        import torch
        torch.set_num_threads(1)
        from edgeprune.data import load_dataset
        from edgeprune.models import build
        from edgeprune.train import TrainConfig, Trainer, seed_everything
        ds = load_dataset(args.data)
        seed_everything(args.seed)
        model = build("lenet5", num_classes=ds.num_classes)
        Trainer(model, ds, TrainConfig(epochs=args.epochs, seed=args.seed, progress=False,
                                       lr_schedule=args.lr_schedule)).fit()
        torch.save(model.state_dict(), dense_sd)
    start = ["--weights", dense_sd, "--distill"] if args.from_dense else []
    pruned, clustered = out / "pruned", out / "clustered"
    if not (pruned / "model.pt").exists():
        edgeprune("prune", "lenet5", "--data", args.data, "--method", "statistical",
                  "--granularity", "weight", "--orientation", args.orientation, *cost_args, *sched,
                  "--sparsity", args.sparsity, *start,
                  "--epochs", args.epochs, "--seed", args.seed, "--no-baseline", "--quiet",
                  "-o", pruned)
    if not (clustered / "model.pt").exists():
        edgeprune("cluster", pruned, "--data", args.data, "--bits", args.bits, "--epochs", 1,
                  "--seed", args.seed, "-o", clustered)
    channel = out / "channel"
    if args.channel_sparsity and not (channel / "model.pt").exists():
        edgeprune("prune", "lenet5", "--data", args.data, "--method", "statistical",
                  "--granularity", "channel", "--orientation", args.orientation, *cost_args, *sched,
                  "--sparsity", args.channel_sparsity, *start, "--epochs", args.epochs, "--seed", args.seed,
                  "--no-baseline", "--quiet", "-o", channel)
    if args.train_only:
        print(f"models in {out}")
        return 0

    runs = [  # (stage, MODEL args, target, variant, objective)
        ("dense", ["lenet5", "--weights", dense_sd], "stm32l4r5-m4", "dense", "cycles"),
        ("pruned", [pruned], "stm32l4r5-m4", "dense", "cycles"),
        ("pruned", [pruned], "stm32l4r5-m4", "sparse", "cycles"),
        ("pruned", [pruned], "stm32l4r5-m4", "auto", "cycles"),
        ("pruned+clustered", [clustered], "stm32l4r5-m4", "dense", "cycles"),
        ("pruned+clustered", [clustered], "stm32l4r5-m4", "sparse", "cycles"),
        ("pruned+clustered", [clustered], "stm32l4r5-m4", "clustered", "cycles"),
        ("pruned+clustered", [clustered], "stm32l4r5-m4", "auto", "flash"),
        ("pruned", [pruned], "rp2040-m0plus", "sparse", "cycles"),
        ("pruned+clustered", [clustered], "rp2040-m0plus", "clustered", "cycles"),
    ]
    rows = []
    dense_instr = {}
    for stage, model_args, target, variant, objective in runs:
        dst = out / f"export-{stage.replace('+', '_')}-{target}-{variant}-{objective}"
        edgeprune("export", "c", *model_args, "--target", target, "--data", args.data,
                  "--eval-samples", 0, "--variant", variant, "--objective", objective, "-o", dst)
        r = json.loads((dst / "report.json").read_text())
        instr = sum(l["instructions_estimate"] for l in r["layers"])
        if variant == "dense":
            dense_instr[(stage, target)] = instr
        ver = r["verification"]
        row = {
            "stage": stage, "target": target, "core": r["core"], "variant": variant,
            "objective": objective, "data": args.data, "epochs": args.epochs,
            "sparsity": args.sparsity, "bits": args.bits, "seed": args.seed,
            "layers": {l["layer"]: l["variant"] for l in r["layers"]},
            "accuracy_float": r.get("accuracy_float"), "accuracy_int8_c": r.get("accuracy_int8_c"),
            "test_images": ver["samples"],
            "identical_vs_tflm": ver["identical_vs_tflm"],
            "identical_vs_litert_reference": ver["identical_vs_litert_reference"],
            "outputs_differing_vs_litert_reference": ver["outputs_differing_vs_litert_reference"],
            "weight_bytes": r["weight_bytes"],
            "weight_bytes_per_layer": {l["layer"]: l["weight_bytes"] for l in r["layers"]},
            "weights": sum(l["weights"] for l in r["layers"]),
            "nonzero_weights": sum(l["nonzero_weights"] for l in r["layers"]),
            "flash_bytes": (r.get("cross") or {}).get("flash_bytes"),
            "ram_bytes": (r.get("cross") or {}).get("ram_bytes"),
            "arena_bytes": r["arena_bytes"],
            "instructions_estimate": instr,
            "dense_instructions_estimate": dense_instr.get((stage, target)),
            "command": command_line(),
        }
        rows.append(row)
        print(f"{stage:17s} {target:14s} {variant:9s} acc C {100 * (row['accuracy_int8_c'] or 0):.2f} % "
              f"(float {100 * (row['accuracy_float'] or 0):.2f} %), TFLM-identical {row['identical_vs_tflm']}, "
              f"weights {row['weight_bytes']} B, flash {row['flash_bytes']} B, RAM {row['ram_bytes']} B, "
              f"~{instr / 1e6:.2f} M instructions", flush=True)
    upsert_rows("c_runtime_lenet5.json", rows,
                key=("stage", "target", "variant", "objective", "data", "epochs", "sparsity",
                     "bits", "seed"))
    return 0 if all(r["identical_vs_tflm"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
