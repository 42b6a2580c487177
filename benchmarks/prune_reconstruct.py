"""Retraining-free pruning (``--method reconstruct``) against magnitude pruning without retraining.

From the dense LeNet-5 of each seed (benchmarks/prune_protocol.py's baseline: same seed, epochs
and schedule; trained here if not cached) and 1,000 unlabelled training images:

* ``reconstruct``: edgeprune's layer-wise reconstruction (edgeprune/prune/methods/reconstruct.py);
* ``magnitude_oneshot``: the same orientation and allocation machinery with |w| scores (weights:
  LAMP-normalised global magnitude; channels: L1 of the filter), masks applied once, no
  retraining and no re-solve - what a user without a training pipeline gets otherwise.

Weight granularity with memory orientation (goal = params compression) and channel granularity
with workload orientation (goal = MACs reduction). Rows go to benchmarks/results/pruning.json
(``protocol: v2, experiment: retraining_free``); ``--cli-time`` also times the whole command
``edgeprune prune ... --method reconstruct`` (start-up, calibration, pruning, evaluation, export).

    benchmarks/prune_reconstruct.py --dataset fashion-mnist --epochs 10 --seeds 0,1,2 \\
        --weight-points 5x 10x 15x 20x 30x --channel-points 2x 3x 4x 6x --cli-time

Levers, each against the default with the same seeds (``--ablation NAME``: rows
"reconstruct (NAME)"):

    benchmarks/prune_reconstruct.py --dataset fashion-mnist --epochs 10 --lr-schedule constant \\
        --seeds 0,1,2 --weight-points --channel-points 3x --ablation no-gcv

The report is part of `benchmarks/prune_protocol.py report` (pruning_v2.md).
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from benchmarks.common import command_line, upsert_rows  # noqa: E402
from benchmarks.prune_protocol import KEY, dense_baseline, dense_weights_path  # noqa: E402

RF_KEY = KEY + ("dense_epochs", "calibration_images")

# Levers measured against the default, each by switching one module constant of
# edgeprune/prune/methods/reconstruct.py; rows are named "reconstruct (NAME)".
ABLATIONS = {
    "no-gcv": {"GCV_STEPS": 0},      # the ridge at the SparseGPT floor only (the method before GCV)
    "greedy": {"GREEDY": True},      # greedy sequential OBS channel ranking
}

ROOT = Path(__file__).resolve().parent.parent


def one_point(args, model_name, dense, x_calib, x_test, y_test, method, gran, orientation, goal,
              seed, acc_dense, graph_fn):
    from edgeprune.prune.masks import parse_granularity
    from edgeprune.prune.methods import METHODS, PruneSpec
    from edgeprune.prune.runner import parse_sparsity
    from edgeprune.train import evaluate
    amount = parse_sparsity(goal)
    m = copy.deepcopy(dense)
    t0 = time.time()
    if method.startswith("reconstruct"):
        spec = PruneSpec(granularity=parse_granularity(gran), criterion="obs", amount=amount,
                         orientation=orientation, seed=seed, pretrained=True)
        h = METHODS["reconstruct"](m, graph_fn(m), spec)
        import edgeprune.prune.methods.reconstruct as rec
        saved = {k: getattr(rec, k) for k in ABLATIONS.get(args.ablation, {})}
        try:
            for k, v in ABLATIONS.get(args.ablation, {}).items():
                setattr(rec, k, v)
            h.prune_once(x_calib)
        finally:
            for k, v in saved.items():
                setattr(rec, k, v)
    else:
        spec = PruneSpec(granularity=parse_granularity(gran), criterion="l1", amount=amount,
                         orientation=orientation, seed=seed, pretrained=True)
        h = METHODS["agp"](m, graph_fn(m), spec)
        h.apply_amount(0, amount)
        h.masks.harden()
    wall = time.time() - t0
    acc = evaluate(m, x_test, y_test)
    fig, dense_fig = h.figures(), h.dense_figures
    row = {"protocol": "v2", "experiment": "retraining_free", "model": model_name,
           "dataset": args.dataset, "method": method, "granularity": gran,
           "orientation": orientation, "goal": goal, "epochs": 0, "dense_epochs": args.epochs,
           "lr_schedule": args.lr_schedule, "seed": seed, "calibration_images": len(x_calib),
           "acc_dense": acc_dense, "acc_pruned": acc,
           "acc_loss_pt": round(100 * (acc_dense - acc), 2),
           "params_compression": round(dense_fig["params"] / fig["params"], 3),
           "macs_reduction": round(dense_fig["macs"] / fig["macs"], 3),
           "params_nonzero": int(fig["params"]), "macs_effective": int(fig["macs"]),
           "prune_wall_s": round(wall, 2),
           "layer_rel_error": getattr(h, "errors", None) or None, "command": command_line()}
    upsert_rows("pruning.json", [row], key=RF_KEY)
    print(json.dumps({k: row[k] for k in ("method", "granularity", "goal", "seed", "acc_dense",
                                          "acc_pruned", "params_compression", "macs_reduction",
                                          "prune_wall_s")}), flush=True)


def cli_time(args, seed: int, weights: Path) -> None:
    """Wall time of the whole `edgeprune prune --method reconstruct` command, as a user runs it."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "edgeprune", "prune", args.model, "--weights", str(weights),
               "--data", args.dataset, "--method", "reconstruct", "--sparsity", "10x",
               "--seed", str(seed), "--quiet", "-o", str(Path(tmp) / "out")]
        env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
        t0 = time.time()
        subprocess.run(cmd, check=True, env=env, cwd=ROOT)
        wall = time.time() - t0
        s = json.loads((Path(tmp) / "out" / "summary.json").read_text())
    row = {"protocol": "v2", "experiment": "retraining_free_cli", "model": args.model,
           "dataset": args.dataset, "method": "reconstruct", "granularity": "weight",
           "orientation": "memory", "goal": "10x", "epochs": 0, "dense_epochs": args.epochs,
           "lr_schedule": args.lr_schedule, "seed": seed, "calibration_images": 1000,
           "cli": " ".join(["edgeprune"] + cmd[3:-1] + ["OUT"]).replace(str(ROOT) + "/", ""),
           "wall_s": round(wall, 1),
           "acc_dense": s["acc_dense"], "acc_pruned": s["acc_pruned"],
           "params_compression": round(s["params_compression"], 3), "command": command_line()}
    upsert_rows("pruning.json", [row], key=RF_KEY)
    print(f"CLI wall time {wall:.1f} s: {row['cli']}", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="lenet5")
    p.add_argument("--dataset", default="fashion-mnist")
    p.add_argument("--epochs", type=int, default=10, help="epochs of the dense model")
    p.add_argument("--seeds", type=lambda t: [int(x) for x in t.split(",")], default=[0, 1, 2])
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--lr-schedule", default="cosine", choices=("constant", "cosine"))
    p.add_argument("--calibration", type=int, default=1000)
    p.add_argument("--weight-points", nargs="*", default=["5x", "10x", "15x", "20x", "30x"])
    p.add_argument("--channel-points", nargs="*", default=["2x", "3x", "4x", "6x"])
    p.add_argument("--cli-time", action="store_true")
    p.add_argument("--ablation", choices=sorted(ABLATIONS),
                   help="reconstruct with one lever switched (rows 'reconstruct (NAME)'); "
                        "magnitude rows are skipped")
    args = p.parse_args()
    torch.set_num_threads(1)
    from edgeprune.data import load_dataset
    from edgeprune.graph import extract
    from edgeprune.models import build
    from edgeprune.prune.methods.reconstruct import calibration_images
    from edgeprune.train import dataset_tensors
    ds = load_dataset(args.dataset)
    for seed in args.seeds:
        acc_dense = dense_baseline(args.model, args.dataset, args.epochs, seed, args.lr,
                                   args.batch, args.lr_schedule)
        wpath = dense_weights_path(args.model, args.dataset, args.epochs, seed, args.lr,
                                   args.batch, args.lr_schedule)
        dense = build(args.model, num_classes=ds.num_classes)
        dense.load_state_dict(torch.load(wpath, weights_only=True))
        dense.eval()
        xtr, _, xte, yte = dataset_tensors(ds, dense.input_shape)
        xc = calibration_images(xtr, args.calibration, seed)
        print(f"dense seed {seed}: {100 * acc_dense:.2f}%", flush=True)
        methods = ((f"reconstruct ({args.ablation})",) if args.ablation
                   else ("magnitude_oneshot", "reconstruct"))
        for goal in args.weight_points:
            for method in methods:
                one_point(args, args.model, dense, xc, xte, yte, method, "weight", "memory", goal,
                          seed, acc_dense, extract)
        for goal in args.channel_points:
            for method in methods:
                one_point(args, args.model, dense, xc, xte, yte, method, "channel", "workload",
                          goal, seed, acc_dense, extract)
        if args.cli_time and not args.ablation:
            cli_time(args, seed, wpath)


if __name__ == "__main__":
    main()
