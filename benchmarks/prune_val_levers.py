#!/usr/bin/env python3
"""Levers of LeNet-5's workload / cost-aware pruning chosen on a validation split, never on the
test images (issues 11 and 14).

The 8,000 MNIST-10k training images (the first 8,000 of the t10k set) are split into the first
6,400 for training and the last 1,600 for validation; the 2,000 test images are not read. Each
run is `edgeprune.prune.run_prune` on that split (statistical, weight granularity, 15 epochs)
with one lever switched on (`PruneSpec.variant`) or, with --from-dense, started from a dense
LeNet-5 trained on the same 6,400 images (same seed, 15 epochs) and distilled from it
(`--weights DENSE --distill`, as `benchmarks/c_runtime_lenet5.py --from-dense`). Rows go to
benchmarks/results/prune_val_levers.json (validation accuracy, compression, per-layer
sparsity, the command); one seed per row, so only differences well above the validation
split's standard error (about 0.45 pt at 96 % on 1,600 images) mean anything.

    benchmarks/prune_val_levers.py --data ../shared/data/mnist-t10k --orientation target --goal 0.981
    benchmarks/prune_val_levers.py --data ../shared/data/mnist-t10k --orientation target --goal 0.981 --variant obd-alloc
    benchmarks/prune_val_levers.py --data ../shared/data/mnist-t10k --orientation target --goal 0.981 --from-dense
    benchmarks/prune_val_levers.py --data ../shared/data/mnist-t10k --orientation workload --goal 16x --lr-schedule cosine

Run from the repo root with OMP_NUM_THREADS=1; one process at a time.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from benchmarks.common import command_line, upsert_rows  # noqa: E402

CACHE = Path(__file__).resolve().parent / ".cache"
N_FIT = 6400          # of the 8,000 training images; the other 1,600 validate
KEY = ("orientation", "goal", "lr_schedule", "variant", "from_dense", "epochs", "seed")


def validation_split(data: str) -> Path:
    """A directory holding the split as one npz (train = the first N_FIT training images,
    test = the rest of the training images), written once."""
    from edgeprune.data import load_dataset
    d = CACHE / "mnist-val"
    f = d / "split.npz"
    if not f.exists():
        ds = load_dataset(data)
        if len(ds.x_train) <= N_FIT:
            raise SystemExit(f"{data}: {len(ds.x_train)} training images, need more than {N_FIT}")
        d.mkdir(parents=True, exist_ok=True)
        tmp = d / "split.tmp.npz"
        np.savez(tmp, x_train=ds.x_train[:N_FIT], y_train=ds.y_train[:N_FIT],
                 x_test=ds.x_train[N_FIT:], y_test=ds.y_train[N_FIT:])
        tmp.replace(f)
    return d


def dense_weights(val: Path, epochs: int, seed: int, lr_schedule: str) -> tuple:
    """A dense LeNet-5 trained on the split's 6,400 images (cached) and its validation accuracy."""
    path = CACHE / "mnist-val" / f"dense-e{epochs}-s{seed}-{lr_schedule}.pt"
    acc_path = path.with_suffix(".json")
    if not path.exists():
        from edgeprune.data import load_dataset
        from edgeprune.models import build
        from edgeprune.train import TrainConfig, Trainer, seed_everything
        ds = load_dataset(str(val))
        seed_everything(seed)
        m = build("lenet5", num_classes=ds.num_classes)
        r = Trainer(m, ds, TrainConfig(epochs=epochs, seed=seed, lr_schedule=lr_schedule,
                                       progress=False)).fit()
        torch.save(m.state_dict(), path)
        acc_path.write_text(json.dumps({"val_acc": r.test_accuracy}))
    return path, json.loads(acc_path.read_text())["val_acc"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default="../shared/data/mnist-t10k")
    ap.add_argument("--orientation", default="target", choices=("workload", "target"))
    ap.add_argument("--goal", default="0.981", help="amount (0.981) or ratio (16x)")
    ap.add_argument("--lr-schedule", default="constant", choices=("constant", "cosine"))
    ap.add_argument("--variant", default="", help="comma-separated PruneSpec.variant levers")
    ap.add_argument("--from-dense", action="store_true")
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(1)
    from edgeprune.prune.runner import PruneConfig, parse_sparsity, run_prune
    val = validation_split(args.data)
    dense, dense_acc = dense_weights(val, args.epochs, args.seed, args.lr_schedule)
    cost = (dict(target="stm32l4r5-m4", runtime="edgeprune-c") if args.orientation == "target"
            else {})
    start = dict(weights=str(dense), distill=True) if args.from_dense else {}
    variant = tuple(v for v in args.variant.split(",") if v)
    cfg = PruneConfig(model="lenet5", data=str(val), method="statistical", granularity="weight",
                      orientation=args.orientation, sparsity=parse_sparsity(args.goal),
                      epochs=args.epochs, seed=args.seed, lr_schedule=args.lr_schedule,
                      baseline=False, progress=False, variant=variant, **cost, **start)
    t0 = time.time()
    s = run_prune(cfg).summary
    row = {"orientation": args.orientation, "goal": args.goal, "lr_schedule": args.lr_schedule,
           "variant": ",".join(variant) or "default", "from_dense": args.from_dense,
           "epochs": args.epochs, "seed": args.seed, "val_images": 8000 - N_FIT,
           "val_acc_dense": dense_acc, "val_acc_pruned": s["acc_pruned"],
           "val_loss_pt": round(100 * (dense_acc - s["acc_pruned"]), 2),
           "params_compression": round(s["params_compression"], 2),
           "macs_reduction": round(s["macs_reduction"], 2),
           "layers": {k: round(v, 4) for k, v in s["layers"].items()},
           "wall_s": round(time.time() - t0, 1), "command": command_line()}
    upsert_rows("prune_val_levers.json", [row], key=KEY)
    print(json.dumps({k: row[k] for k in ("orientation", "goal", "variant", "from_dense",
                                          "val_acc_dense", "val_acc_pruned", "params_compression",
                                          "macs_reduction", "layers")}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
