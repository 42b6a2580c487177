"""Peers in the same run conditions as benchmarks/prune_lenet5.py (LeNet-5, same data, seed,
epochs, optimiser, schedule window and dense baseline):

* ``torch_prune_agp``: ``torch.nn.utils.prune.global_unstructured`` (L1, all conv/linear
  weights ranked together) stepped along the AGP cubic schedule;
* ``torch_pruning``: Torch-Pruning (``torch_pruning==1.6.1``) magnitude channel pruning
  (``MagnitudePruner``, L1 importance, output layer ignored), stepped at the same decision
  points with ``iterative_steps``; the model shrinks physically.

    benchmarks/prune_peers.py --dataset mnist-10k --epochs 15 torch_prune_agp --sparsity 50x 100x
    benchmarks/prune_peers.py --dataset mnist-10k --epochs 15 torch_pruning --ratio 0.5 0.75
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402

from benchmarks.common import command_line, upsert_rows  # noqa: E402
from benchmarks.prune_lenet5 import KEY, dense_baseline  # noqa: E402


def _window(trainer, epochs: int):
    """The decision window edgeprune's methods use (base.PruneMethod.derive_schedule)."""
    spe = trainer._steps_per_epoch()
    total = spe * epochs
    start = spe if epochs >= 4 else int(round(0.1 * total))
    end = int(round(0.75 * total))
    return start, end


def train_peer(model_name: str, dataset: str, epochs: int, seed: int, lr: float, batch: int,
               lr_schedule: str, peer: str, level: str, progress: bool = False) -> dict:
    """Train `model_name` from the seed's initialisation with a peer pruning hook; the figures
    of the result (the same accounting as edgeprune's summary)."""
    from edgeprune.data import load_dataset
    from edgeprune.graph import extract
    from edgeprune.models import build
    from edgeprune.prune.masks import count_nonzero_params, effective_macs
    from edgeprune.prune.runner import parse_sparsity
    from edgeprune.train import TrainConfig, TrainHook, Trainer, seed_everything
    import torch.nn.utils.prune as tprune

    ds = load_dataset(dataset)
    seed_everything(seed)
    model = build(model_name, num_classes=ds.num_classes)
    dense_graph = extract(model)

    class TorchPruneAGP(TrainHook):
        """Global L1 unstructured pruning, cumulative amount on the cubic schedule."""

        def __init__(self, final: float):
            self.final = final
            self.params = [(m, "weight") for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
            self.total = sum(m.weight.numel() for m, _ in self.params)
            self.done = 0

        def on_train_begin(self, trainer):
            self.start, self.end = _window(trainer, epochs)
            self.interval = max(1, (self.end - self.start) // 100)

        def after_step(self, trainer):
            s = trainer.step
            if s < max(self.start, 1) or s > self.end or ((s - self.start) % self.interval and s != self.end):
                return
            p = min(max((s - self.start) / max(self.end - self.start, 1), 0), 1)
            goal = int(round(self.final * (1 - (1 - p) ** 3) * self.total))
            if goal > self.done:
                tprune.global_unstructured(self.params, pruning_method=tprune.L1Unstructured,
                                           amount=goal - self.done)
                self.done = goal

    class TorchPruningChannels(TrainHook):
        def __init__(self, ratio: float, steps: int = 10):
            import torch_pruning as tp
            self.ratio, self.steps, self.k = ratio, steps, 0
            classifier = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
            self.pruner = tp.pruner.MagnitudePruner(
                model, torch.zeros(1, *model.input_shape), importance=tp.importance.MagnitudeImportance(p=1),
                iterative_steps=steps, pruning_ratio=ratio, ignored_layers=[classifier])

        def on_train_begin(self, trainer):
            self.start, self.end = _window(trainer, epochs)
            self.points = {self.start + round(i * (self.end - self.start) / (self.steps - 1))
                           for i in range(self.steps)}

        def after_step(self, trainer):
            if trainer.step in self.points and self.k < self.steps:
                self.pruner.step()
                self.k += 1
                trainer.replace_model(model)     # parameters changed shape: rebuild the optimizer

    if peer == "torch_prune_agp":
        hook = TorchPruneAGP(parse_sparsity(level))
        gran, crit = "weight", "l1"
    else:
        hook = TorchPruningChannels(float(level))
        gran, crit = "channel", "l1"
    t0, w0 = time.process_time(), time.time()
    # torch.nn.utils.prune flattens weights with .view(-1): NCHW (contiguous) weights only
    trainer = Trainer(model, ds, TrainConfig(epochs=epochs, lr=lr, batch_size=batch, seed=seed,
                                             lr_schedule=lr_schedule, progress=progress,
                                             channels_last=peer != "torch_prune_agp"), [hook])
    trainer.fit()
    acc = trainer.evaluate()
    for m in trainer.model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)) and tprune.is_pruned(m):
            tprune.remove(m, "weight")
    final_graph = extract(trainer.model)
    nz = count_nonzero_params(trainer.model)
    macs = effective_macs(trainer.model, final_graph)
    return {"granularity": gran, "criterion": crit,
            "orientation": "global" if gran == "weight" else "uniform", "acc_pruned": acc,
            "params_compression": dense_graph.total_params / nz,
            "macs_reduction": sum(n.macs for n in dense_graph.compute_nodes()) / macs,
            "params_nonzero": nz, "macs_effective": macs,
            "cpu_s": round(time.process_time() - t0, 1), "wall_s": round(time.time() - w0, 1)}


def run_peer(args, peer: str, level: str, acc_dense: float) -> dict:
    r = train_peer("lenet5", args.dataset, args.epochs, args.seed, args.lr, args.batch,
                   args.lr_schedule, peer, level, args.progress)
    row = {"experiment": "peers", "dataset": args.dataset, "model": "lenet5", "method": peer,
           "granularity": r["granularity"], "criterion": r["criterion"],
           "orientation": r["orientation"], "sparsity": str(level),
           "params_compression": round(r["params_compression"], 2),
           "macs_reduction": round(r["macs_reduction"], 2),
           "acc_dense": acc_dense, "acc_pruned": r["acc_pruned"],
           "acc_loss_pt": round(100 * (acc_dense - r["acc_pruned"]), 2),
           "params_nonzero": r["params_nonzero"], "macs_effective": r["macs_effective"],
           "epochs": args.epochs, "seed": args.seed, "lr_schedule": args.lr_schedule,
           "cpu_s": r["cpu_s"], "command": command_line()}
    upsert_rows("pruning.json", [row], key=KEY)
    print(json.dumps({k: row[k] for k in ("method", "sparsity", "params_compression",
                                          "macs_reduction", "acc_dense", "acc_pruned")}), flush=True)
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="mnist-10k")
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--lr-schedule", default="constant", choices=("constant", "cosine"))
    p.add_argument("--progress", action="store_true")
    p.add_argument("peer", choices=("torch_prune_agp", "torch_pruning"))
    p.add_argument("--sparsity", nargs="+", default=["50x", "100x"],
                   help="torch_prune_agp: fraction of all weights removed (0.98, 98%%, 50x)")
    p.add_argument("--ratio", nargs="+", default=["0.5", "0.75"],
                   help="torch_pruning: channel pruning ratio per layer")
    args = p.parse_args()
    torch.set_num_threads(1)
    acc_dense = dense_baseline(args.dataset, args.epochs, args.seed, args.lr, args.batch,
                               args.lr_schedule)
    for level in (args.sparsity if args.peer == "torch_prune_agp" else args.ratio):
        run_peer(args, args.peer, level, acc_dense)


if __name__ == "__main__":
    main()
