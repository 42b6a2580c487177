"""LeNet-5 pruning benchmarks: compression at <= 0.5 pt accuracy loss, granularity study, overhead.

Every run uses the same data, seed, epochs and optimiser as its dense baseline (trained once per
dataset/epochs/seed from the same initialisation). Rows go to benchmarks/results/pruning.json.

    # params compression, memory orientation (statistical, weight granularity), several goals
    benchmarks/prune_lenet5.py --dataset mnist-10k --epochs 15 memory --sparsity 100x 200x 300x
    # MACs reduction, workload orientation
    benchmarks/prune_lenet5.py --dataset mnist-10k --epochs 15 workload --sparsity 8x 12x
    # weight / kernel / channel x l1 / taylor / random at matched amount and epochs (AGP schedule)
    benchmarks/prune_lenet5.py --dataset mnist-10k --epochs 15 granularity --sparsity 0.9
    # CPU time per epoch of pruning vs dense training
    benchmarks/prune_lenet5.py --dataset mnist-10k --epochs 2 overhead
    # the same, like for like: dense and pruning runs in lock-step in one process
    benchmarks/prune_lenet5.py --dataset mnist-10k --epochs 15 overhead-interleaved

Run from the repo root with OMP_NUM_THREADS=1 (one core per run keeps timings comparable).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from benchmarks.common import RESULTS, command_line, upsert_rows  # noqa: E402

KEY = ("experiment", "dataset", "model", "method", "granularity", "criterion", "orientation",
       "sparsity", "epochs", "seed", "lr_schedule")


def dense_baseline(dataset: str, epochs: int, seed: int, lr: float, batch: int,
                   lr_schedule: str = "constant") -> float:
    """Test accuracy of LeNet-5 trained densely (cached in results/pruning_dense.json)."""
    cache = RESULTS / "pruning_dense.json"
    rows = json.loads(cache.read_text()) if cache.exists() else []
    for r in rows:
        if (r["dataset"], r["epochs"], r["seed"], r["lr"], r["batch"],
                r.get("lr_schedule", "constant")) == (dataset, epochs, seed, lr, batch, lr_schedule):
            return r["acc_dense"]
    from edgeprune.data import load_dataset
    from edgeprune.models import build
    from edgeprune.train import TrainConfig, Trainer, seed_everything
    ds = load_dataset(dataset)
    seed_everything(seed)                       # the init run_prune builds from the same seed
    model = build("lenet5", num_classes=ds.num_classes)
    res = Trainer(model, ds, TrainConfig(epochs=epochs, lr=lr, batch_size=batch, seed=seed,
                                         lr_schedule=lr_schedule)).fit()
    upsert_rows("pruning_dense.json", [{"dataset": dataset, "epochs": epochs, "seed": seed,
                                        "lr": lr, "batch": batch, "lr_schedule": lr_schedule,
                                        "acc_dense": res.test_accuracy, "command": command_line()}],
                key=("dataset", "epochs", "seed", "lr", "batch", "lr_schedule"))
    return res.test_accuracy


def prune_row(args, experiment, method, granularity, orientation, sparsity, criterion=None,
              acc_dense=None):
    from edgeprune.prune.runner import PruneConfig, parse_sparsity, run_prune
    cfg = PruneConfig(model="lenet5", data=args.dataset, method=method, granularity=granularity,
                      orientation=orientation, criterion=criterion, sparsity=parse_sparsity(sparsity),
                      epochs=args.epochs, seed=args.seed, lr=args.lr, batch_size=args.batch,
                      lr_schedule=args.lr_schedule, baseline=False, progress=args.progress)
    t0 = time.process_time()
    s = run_prune(cfg).summary
    row = {"experiment": experiment, "dataset": args.dataset, "model": "lenet5", "method": method,
           "granularity": s["granularity"], "criterion": s["criterion"], "orientation": orientation,
           "sparsity": str(sparsity), "params_compression": round(s["params_compression"], 2),
           "macs_reduction": round(s["macs_reduction"], 2), "acc_dense": acc_dense,
           "acc_pruned": s["acc_pruned"],
           "acc_loss_pt": None if acc_dense is None else round(100 * (acc_dense - s["acc_pruned"]), 2),
           "params_nonzero": s["params_nonzero"], "macs_effective": s["macs_effective"],
           "shrunk_params": s["shrunk"]["params"], "layers": s["layers"],
           "epochs": args.epochs, "seed": args.seed, "lr_schedule": args.lr_schedule,
           "cpu_s": round(time.process_time() - t0, 1), "command": command_line()}
    upsert_rows("pruning.json", [row], key=KEY)
    print(json.dumps({k: row[k] for k in ("method", "granularity", "criterion", "orientation",
                                          "sparsity", "params_compression", "macs_reduction",
                                          "acc_dense", "acc_pruned")}), flush=True)
    return row


def overhead(args) -> None:
    """CPU seconds per epoch: dense vs each method with decisions spread over every epoch."""
    from edgeprune.data import load_dataset
    from edgeprune.graph import extract
    from edgeprune.models import build
    from edgeprune.prune.masks import parse_granularity
    from edgeprune.prune.methods import METHODS, PruneSpec
    from edgeprune.train import TrainConfig, TrainHook, Trainer, seed_everything

    class EpochClock(TrainHook):
        def __init__(self):
            self.times = []

        def on_train_begin(self, trainer):
            self.t = time.process_time()

        def on_epoch_end(self, trainer, metrics):
            now = time.process_time()
            self.times.append(now - self.t)
            self.t = now

    ds = load_dataset(args.dataset)
    cfg = TrainConfig(epochs=args.epochs, lr=args.lr, batch_size=args.batch, seed=args.seed,
                      lr_schedule=args.lr_schedule, progress=args.progress)
    # "statistical+distill": the default since issue 14, distilling from the dense run's model;
    # the teacher's logits (one forward pass over the training set, in the Trainer's
    # constructor) are charged to the epochs too.
    runs = [("dense", None, None), ("statistical", "weight", "l1"),
            ("statistical+distill", "weight", "l1"), ("agp", "weight", "l1"),
            ("agp", "channel", "l1")]
    base = None
    dense_model = None
    for method, gran, crit in runs:
        seed_everything(args.seed)
        model = build("lenet5")
        clock = EpochClock()
        hooks = [clock]
        if method != "dense":
            # decisions over the whole run (start 0, end 1): the worst case for overhead
            spec = PruneSpec(granularity=parse_granularity(gran), criterion=crit, amount=0.9,
                             start=0.0, end=1.0)
            hooks.insert(0, METHODS[method.split("+")[0]](model, extract(model), spec))
        t0 = time.process_time()
        trainer = Trainer(model, ds, cfg, hooks,
                          teacher=dense_model if method.endswith("+distill") else None)
        setup = time.process_time() - t0 if method.endswith("+distill") else 0.0
        trainer.fit()
        if method == "dense":
            dense_model = model
        per_epoch = (sum(clock.times) + setup) / len(clock.times)
        if base is None:
            base = per_epoch
        row = {"experiment": "overhead", "dataset": args.dataset, "model": "lenet5",
               "method": method, "granularity": gran, "criterion": crit, "orientation": "memory",
               "sparsity": "0.9" if gran else None, "epochs": args.epochs, "seed": args.seed,
               "cpu_s_per_epoch": round(per_epoch, 2),
               "overhead_pct": round(100 * (per_epoch / base - 1), 1),
               "params_compression": None, "macs_reduction": None, "acc_dense": None,
               "acc_pruned": None, "command": command_line()}
        upsert_rows("pruning.json", [row], key=KEY)
        print(json.dumps({k: row[k] for k in ("method", "granularity", "cpu_s_per_epoch",
                                              "overhead_pct")}), flush=True)


def overhead_interleaved(args) -> None:
    """Pruning overhead like for like: the dense run and the pruning run train in the same process
    in lock-step, one optimiser step each in turn (never both at once), so whatever else loads
    the machine hits both alike. Each run's time is the CPU time of its own thread
    (time.thread_time; torch runs single-threaded, in the calling thread), its evaluation at
    every epoch's end included; overhead = pruning / dense - 1 over the whole run. The method
    decides over its default window (first epoch dense, last quarter fine-tune) - what a user
    pays per epoch on average. The load average is recorded at start and end."""
    import os
    import threading
    from edgeprune.data import load_dataset
    from edgeprune.graph import extract
    from edgeprune.models import build
    from edgeprune.prune.masks import parse_granularity
    from edgeprune.prune.methods import METHODS, PruneSpec
    from edgeprune.train import TrainConfig, TrainHook, Trainer, seed_everything

    ds = load_dataset(args.dataset)
    cfg = TrainConfig(epochs=args.epochs, lr=args.lr, batch_size=args.batch, seed=args.seed,
                      lr_schedule=args.lr_schedule, progress=False)
    turn = threading.Condition()
    state = {"turn": 0, "done": [False, False]}

    class Baton(TrainHook):
        """Waits for this run's turn before each step, hands it over after the step."""

        def __init__(self, me: int):
            self.me = me

        def _wait(self):
            with turn:
                turn.wait_for(lambda: state["turn"] == self.me or state["done"][1 - self.me])

        def _pass(self):
            with turn:
                state["turn"] = 1 - self.me
                turn.notify_all()

        def on_train_begin(self, trainer):
            self._wait()

        def after_step(self, trainer):
            self._pass()
            self._wait()

        def on_train_end(self, trainer):
            with turn:
                state["done"][self.me] = True
                state["turn"] = 1 - self.me
                turn.notify_all()

    for method in args.methods:
        state.update(turn=0, done=[False, False])
        cpu = [0.0, 0.0]
        acc = [None, None]
        load0 = os.getloadavg()[0]

        def job(me: int):
            seed_everything(args.seed)
            model = build("lenet5", num_classes=ds.num_classes)
            hooks = []
            if me == 1:
                spec = PruneSpec(granularity=parse_granularity("weight"), criterion="l1",
                                 amount=0.9)
                hooks.append(METHODS[method](model, extract(model), spec))
            hooks.append(Baton(me))          # last: the method's decision is part of its step
            torch.set_num_threads(1)
            t0 = time.thread_time()
            res = Trainer(model, ds, cfg, hooks).fit()
            cpu[me] = time.thread_time() - t0
            acc[me] = res.test_accuracy

        threads = [threading.Thread(target=job, args=(i,)) for i in (0, 1)]
        w0 = time.time()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        row = {"experiment": "overhead_interleaved", "dataset": args.dataset, "model": "lenet5",
               "method": method, "granularity": "weight", "criterion": "l1",
               "orientation": "memory", "sparsity": "0.9", "epochs": args.epochs,
               "seed": args.seed, "lr_schedule": args.lr_schedule,
               "cpu_s_per_epoch_dense": round(cpu[0] / args.epochs, 3),
               "cpu_s_per_epoch": round(cpu[1] / args.epochs, 3),
               "overhead_pct": round(100 * (cpu[1] / cpu[0] - 1), 1),
               "wall_s_both": round(time.time() - w0, 1),
               "loadavg_start": round(load0, 2), "loadavg_end": round(os.getloadavg()[0], 2),
               "params_compression": None, "macs_reduction": None, "acc_dense": acc[0],
               "acc_pruned": acc[1], "command": command_line()}
        upsert_rows("pruning.json", [row], key=KEY)
        print(json.dumps({k: row[k] for k in ("dataset", "method", "cpu_s_per_epoch_dense",
                                              "cpu_s_per_epoch", "overhead_pct", "loadavg_start",
                                              "loadavg_end")}), flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="mnist-10k")
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--lr-schedule", default="constant", choices=("constant", "cosine"))
    p.add_argument("--progress", action="store_true")
    p.add_argument("experiment", choices=("memory", "workload", "granularity", "overhead",
                                          "overhead-interleaved"))
    p.add_argument("--methods", nargs="+", default=["statistical"],
                   help="overhead-interleaved: the methods timed against dense, one pair each")
    p.add_argument("--sparsity", nargs="+", default=None)
    p.add_argument("--method", default="statistical")
    p.add_argument("--granularities", nargs="+", default=["weight", "kernel", "channel"])
    p.add_argument("--criteria", nargs="+", default=["l1", "taylor", "random"])
    args = p.parse_args()
    torch.set_num_threads(1)
    if args.experiment == "overhead":
        overhead(args)
        return
    if args.experiment == "overhead-interleaved":
        overhead_interleaved(args)
        return
    acc_dense = dense_baseline(args.dataset, args.epochs, args.seed, args.lr, args.batch,
                               args.lr_schedule)
    print(f"dense baseline: {100 * acc_dense:.2f}%", flush=True)
    if args.experiment in ("memory", "workload"):
        for s in args.sparsity or (["100x", "300x"] if args.experiment == "memory" else ["8x"]):
            prune_row(args, args.experiment, args.method, "weight", args.experiment, s,
                      acc_dense=acc_dense)
    else:
        for gran in args.granularities:
            for crit in args.criteria:
                prune_row(args, "granularity", "agp", gran, "memory", (args.sparsity or ["0.9"])[0],
                          criterion=crit, acc_dense=acc_dense)


if __name__ == "__main__":
    main()
