"""Rows for the other pruning methods of the research, each against its paper's claim (issue 14,
Build item 3), under protocol v2: >= 3 seeds, the dense baseline of each seed trained from the
same initialisation with the same epochs, optimiser and schedule (prune_protocol.dense_baseline),
mean +- std, the command in every row.

Experiments (rows in benchmarks/results/pruning.json, ``protocol: v2``, ``experiment`` below):

* ``granularity_x_criterion``: AGP (hard masks, cubic ramp) at weight / kernel / channel
  granularity x l1 / taylor / random criterion at one amount of the memory resource, plus random
  pruning at initialisation (``--method random_init``) at each granularity as the baseline.
  Claim (Blalock et al. 2020 / the research's survey): intelligent criteria beat random clearly at
  weight granularity and barely at channel granularity.
* ``filter_while_training``: ``--method filter_while_training`` (channels, uniform orientation:
  every layer loses the same fraction of its filters/units). Claim: 80 % of the filters removed at
  < 1 % accuracy loss.
* ``activation_density``: ``--method activation_density`` (widths from the post-ReLU activation
  densities, model shrunk physically during training). Claim (Foldy-Porto & Panda 2020): up to
  200x fewer parameters, 60x fewer ops, 1.6-3.2x less training compute than dense training.
  Training compute is counted from the run's decision log: the forward MACs of the model as
  trained at every step (the model shrinks at each decision), summed over the steps, against the
  dense model's MACs times the same steps (backward ~ 2x forward for both, so the ratio holds);
  the measured CPU seconds of the run against the dense baseline's are recorded beside it.

    EDGEPRUNE_MNIST10K=../shared/data/mnist-t10k OMP_NUM_THREADS=1 \\
        benchmarks/prune_methods.py --epochs 4 --seeds 0,1,2 granularity --sparsity 0.9
    benchmarks/prune_methods.py --epochs 4 --seeds 0,1,2 filter --points 0.8 0.9
    benchmarks/prune_methods.py --epochs 4 --seeds 0,1,2 density
    benchmarks/prune_methods.py report      # -> benchmarks/results/pruning_methods.md

A rerun skips the rows already there (``--force`` redoes them).
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from benchmarks.common import RESULTS, command_line, upsert_rows  # noqa: E402
from benchmarks.prune_protocol import _rows, add_training_args, dense_baseline  # noqa: E402

KEY = ("protocol", "experiment", "model", "dataset", "method", "granularity", "criterion",
       "orientation", "goal", "epochs", "lr_schedule", "seed")
EXPERIMENTS = ("granularity_x_criterion", "filter_while_training", "activation_density")
# the papers' claims, quoted in the report beside the measured figures
CLAIM_FILTER_FRACTION, CLAIM_FILTER_LOSS_PT = 0.80, 1.0          # "80 % of filters at < 1 %"
CLAIM_AD = {"params_x": 200.0, "macs_x": 60.0, "train_compute_x": (1.6, 3.2)}


def _done(key: dict) -> bool:
    return any(all(r.get(k) == v for k, v in key.items()) for r in _rows())


def dense_cpu_s(args, seed: int):
    """CPU seconds of the seed's dense training, measured when it is trained here (a row of
    experiment 'dense_train'); None when the baseline came from the cache."""
    for r in _rows():
        if r.get("experiment") == "dense_train" and all(
                r.get(k) == v for k, v in (("model", args.model), ("dataset", args.dataset),
                                           ("epochs", args.epochs), ("seed", seed),
                                           ("lr_schedule", args.lr_schedule))):
            return r["cpu_s"]
    return None


def dense(args, seed: int) -> float:
    t0, w0 = time.process_time(), time.time()
    acc = dense_baseline(args.model, args.dataset, args.epochs, seed, args.lr, args.batch,
                         args.lr_schedule)
    cpu = time.process_time() - t0
    if cpu > 1.0 and dense_cpu_s(args, seed) is None:      # it trained now: record its cost
        upsert_rows("pruning.json", [{
            "protocol": "v2", "experiment": "dense_train", "model": args.model,
            "dataset": args.dataset, "method": "dense", "granularity": None, "criterion": None,
            "orientation": None, "goal": None, "epochs": args.epochs,
            "lr_schedule": args.lr_schedule, "seed": seed, "acc_dense": acc,
            "cpu_s": round(cpu, 1), "wall_s": round(time.time() - w0, 1),
            "command": command_line()}], key=KEY)
    print(f"dense {args.model} seed {seed}: {100 * acc:.2f}%", flush=True)
    return acc


def training_compute(log: dict) -> dict:
    """Forward MACs summed over the training steps, from a decision log: the dense model's MACs
    until the first decision, then each decision's 'after' figure until the next one."""
    sched = log["meta"]["schedule"]
    total, dense_macs = sched["total"], log["dense"]["macs"]
    cur, last, acc = dense_macs, 0, 0.0
    for e in log["entries"]:
        if e.get("kind") != "decision":
            continue
        acc += cur * (e["step"] - last)
        cur, last = e["after"]["macs"], e["step"]
    acc += cur * (total - last)
    return {"train_macs": acc, "train_macs_dense": dense_macs * total,
            "train_compute_x": dense_macs * total / max(acc, 1.0)}


def run(args, experiment: str, method: str, gran: str, crit, orient: str, goal, seed: int,
        acc_dense: float) -> None:
    from edgeprune.prune.runner import PruneConfig, parse_sparsity, run_prune
    key = {"protocol": "v2", "experiment": experiment, "model": args.model,
           "dataset": args.dataset, "method": method, "granularity": gran, "criterion": crit,
           "orientation": orient, "goal": goal, "epochs": args.epochs,
           "lr_schedule": args.lr_schedule, "seed": seed}
    if not args.force and _done(key):
        print(f"skip (done): {experiment} {method} {gran} {crit} {goal} seed {seed}", flush=True)
        return
    cfg = PruneConfig(model=args.model, data=args.dataset, method=method, granularity=gran,
                      orientation=orient, criterion=crit,
                      sparsity=None if goal is None else parse_sparsity(goal),
                      epochs=args.epochs, seed=seed, lr=args.lr, batch_size=args.batch,
                      lr_schedule=args.lr_schedule, baseline=False, progress=False)
    with tempfile.TemporaryDirectory() as tmp:
        t0, w0 = time.process_time(), time.time()
        s = run_prune(cfg, Path(tmp) / "out").summary
        cpu, wall = time.process_time() - t0, time.time() - w0
        log = json.loads((Path(tmp) / "out" / "log.json").read_text())
    from edgeprune.graph import extract
    from edgeprune.models import build
    sizes = {str(g.id): g.size for g in extract(build(args.model)).groups}
    kept = s["shrunk"]["channels"]
    row = {**key, "acc_dense": acc_dense, "acc_pruned": s["acc_pruned"],
           "acc_loss_pt": round(100 * (acc_dense - s["acc_pruned"]), 2),
           "params_compression": round(s["params_compression"], 3),
           "macs_reduction": round(s["macs_reduction"], 3),
           "params_nonzero": s["params_nonzero"], "macs_effective": s["macs_effective"],
           "shrunk_params": s["shrunk"]["params"], "shrunk_macs": s["shrunk"]["macs"],
           "channels_dense": sizes, "channels_kept": kept, "layers": s["layers"],
           "cpu_s": round(cpu, 1), "wall_s": round(wall, 1), "command": command_line()}
    if experiment == "activation_density":
        row.update({k: (round(v, 4) if k == "train_compute_x" else v)
                    for k, v in training_compute(log).items()})
        row["dense_cpu_s"] = dense_cpu_s(args, seed)
    upsert_rows("pruning.json", [row], key=KEY)
    print(json.dumps({k: row[k] for k in ("experiment", "method", "granularity", "criterion",
                                          "goal", "seed", "acc_dense", "acc_pruned",
                                          "params_compression", "macs_reduction", "wall_s")}),
          flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_training_args(p, epochs=4)
    p.add_argument("--force", action="store_true", help="redo rows that exist")
    sub = p.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("granularity")
    g.add_argument("--sparsity", default="0.9")
    g.add_argument("--granularities", nargs="+", default=["weight", "kernel", "channel"])
    g.add_argument("--criteria", nargs="+", default=["l1", "taylor", "random"])
    f = sub.add_parser("filter")
    f.add_argument("--points", nargs="+", default=["0.8"])
    f.add_argument("--criterion", default="l1", help="the method's default [l1]")
    sub.add_parser("density")
    sub.add_parser("report")
    args = p.parse_args()
    if args.cmd == "report":
        from benchmarks.prune_methods_report import report
        report()
        return
    torch.set_num_threads(1)
    for seed in args.seeds:                  # seed-major: every seed's set is complete early
        acc_dense = dense(args, seed)
        if args.cmd == "granularity":
            for gran in args.granularities:
                for crit in args.criteria:
                    run(args, "granularity_x_criterion", "agp", gran, crit, "memory",
                        args.sparsity, seed, acc_dense)
                run(args, "granularity_x_criterion", "random_init", gran, "random", "memory",
                    args.sparsity, seed, acc_dense)
        elif args.cmd == "filter":
            for goal in args.points:
                run(args, "filter_while_training", "filter_while_training", "channel",
                    args.criterion, "uniform", goal, seed, acc_dense)
        elif args.cmd == "density":
            run(args, "activation_density", "activation_density", "channel", "density", "memory",
                None, seed, acc_dense)


if __name__ == "__main__":
    main()
