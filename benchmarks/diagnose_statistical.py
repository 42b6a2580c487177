"""Why does the statistical method collapse on LeNet-300-100 / Fashion-MNIST at 40x-80x?

Runs the method with its two suspects switched on and off, at the same allocation, seed, epochs
and schedule, and traces every decision:

* bias pruning: biases pruned with their layer's weight threshold (DNS), or never (``-nobias``);
* regrowth: soft masks with straight-through gradients, so pruned weights keep training and are
  spliced back (DNS), or hard masks (``-hard``: a pruned weight is zeroed and stays pruned: the
  same thresholds, no regrowth);
* ``v1`` is the method before issue 14; ``v2`` the method now, whose three fixes can be undone
  one by one (``v2-undo-landing``, ``v2-undo-zero``, ``v2-undo-cadence``, combinable):
  landing (the last decision drops the weakest kept weights instead of re-selecting the top-k of
  all dense magnitudes), zero (spliced-back weights restart at 0 instead of their shadow value),
  cadence (decisions as often as the cost estimate allows instead of at most 4 per epoch);
* suffix ``-everyN``: a decision every N steps whatever it costs (PruneSpec.interval);
* ``agp``: the AGP method (hard masks, magnitude, same allocation), the reference that does not
  collapse.

Per decision it records the training-batch loss, the accuracy on 2,048 training images, weights
spliced back / newly pruned, kept biases, and the units that are *dead*: a hidden unit whose
incoming weights are all pruned and whose bias is pruned or negative outputs relu(b) = 0 for every
input.

    benchmarks/diagnose_statistical.py --model lenet300100 --dataset fashion-mnist --epochs 10 \\
        --sparsity 40x 80x --variants v1 v1-nobias v1-hard v2 agp

Rows go to benchmarks/results/diagnose_statistical.json (one per variant and sparsity, with the
trace); `--report` renders benchmarks/results/diagnose_statistical.md from them.
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

TABLE = "diagnose_statistical.json"
KEY = ("model", "dataset", "epochs", "seed", "lr_schedule", "sparsity", "variant", "method_rev")


def _dead_units(masks) -> dict:
    """Hidden units of each linear/conv layer whose output is identically zero after the ReLU:
    every incoming weight pruned and the bias pruned (or <= 0)."""
    out = {}
    for node, mod in masks.layers.items():
        w = masks.dense(mod, "weight")
        keep_w = masks.effective_mask(mod, "weight").reshape(w.shape[0], -1).any(1)
        if getattr(mod, "bias", None) is None:
            b_live = torch.zeros(w.shape[0], dtype=torch.bool)
        else:
            b = (masks.dense(mod, "bias") * masks.effective_mask(mod, "bias")).detach()
            b_live = b > 0
        out[node] = int((~keep_w & ~b_live).sum())
    return out


def make_variant(variant: str, methods):
    """The method class of a variant name: 'agp', or the statistical method with one of its three
    fixes undone ('v1' = all three undone = the method before issue 14) and suffixes
    '-nobias' (biases never pruned) and '-hard' (hard masks: no regrowth)."""
    from edgeprune.prune.methods.base import PruneMethod
    if variant == "agp":
        return methods["agp"]
    base = methods["statistical"]
    undo = set()
    name = "-".join(t for t in variant.split("-") if t not in ("nobias", "hard")
                    and not t.startswith("every"))
    if name == "v1":
        undo = {"landing", "zero", "cadence"}
    elif name.startswith("v2"):
        undo = set(x for x in name.split("-undo-")[1:]) if "-undo-" in name else set()
    else:
        raise SystemExit(f"unknown variant {variant}")
    attrs = {}
    if "-hard" in variant:
        attrs["soft"] = False
    if "landing" in undo:
        # v1: the last decision re-selected the top-k of all dense magnitudes, and a layer that
        # fell under its goal did too (splicing shadow weights back in)
        def _land(s, kept, new_kept, target_keep, last, prot):
            nk = int(new_kept.sum())
            if nk < target_keep or (last and nk > target_keep):
                order = torch.argsort(s, descending=True, stable=True)
                new_kept = torch.zeros_like(new_kept)
                new_kept[order[:target_keep]] = True
            return new_kept
        attrs["_land"] = staticmethod(_land)
    if "zero" in undo:
        # v1: a spliced-back weight or bias came back with its straight-through shadow value
        attrs["_splice_at_zero"] = lambda self, fam, back: None
        orig_bias_rule = base._bias_rule

        def _bias_rule(self, node, t):
            mod = self.masks.layers[node]
            if "bias" not in getattr(mod, "parametrizations", {}):
                return
            dense = self.masks.dense(mod, "bias")
            before = dense.detach().clone()
            orig_bias_rule(self, node, t)
            with torch.no_grad():
                dense.copy_(before)
        attrs["_bias_rule"] = _bias_rule
    if name == "v1":
        # v1 recomputed the per-layer goals every 5th decision
        def _goal_due(self, step):
            return self._goal is None or self._n_updates % 5 == 1 or step >= self.sched["end"]
        attrs["_goal_due"] = _goal_due
    if "cadence" in undo:
        # v1: at most 4 decisions per epoch (the base class's cap)
        attrs["derive_schedule"] = PruneMethod.derive_schedule
    return type(f"Statistical_{variant}", (base,), attrs)


def run_variant(args, variant: str, sparsity: str, acc_dense: float) -> dict:
    from edgeprune.data import load_dataset
    from edgeprune.graph import extract
    from edgeprune.models import build
    from edgeprune.prune.masks import count_nonzero_params, parse_granularity
    from edgeprune.prune.methods import METHODS, PruneSpec
    from edgeprune.prune.runner import parse_sparsity
    from edgeprune.train import TrainConfig, TrainHook, Trainer, evaluate, seed_everything

    ds = load_dataset(args.dataset)
    seed_everything(args.seed)
    model = build(args.model, num_classes=ds.num_classes)
    graph = extract(model)
    amount = parse_sparsity(sparsity)
    every = [int(t[5:]) for t in variant.split("-") if t.startswith("every")]
    spec = PruneSpec(granularity=parse_granularity("weight"), amount=amount, seed=args.seed,
                     prune_bias="nobias" not in variant, interval=every[0] if every else None)
    hook = make_variant(variant, METHODS)(model, graph, spec)

    class Before(TrainHook):
        """Runs before the method in after_step: the accuracy the decision starts from."""
        acc = None

        def after_step(self, trainer):
            if not hook.done and hook.is_decision_step(trainer.step):
                self.acc = evaluate(trainer.model, trainer.x_train[:2048], trainer.y_train[:2048])

    before = Before()

    class Trace(TrainHook):
        def __init__(self):
            self.rows, self.n_dec, self.prev, self.mask_before = [], 0, None, None

        def after_step(self, trainer):
            n = sum(1 for e in hook.log.entries if e.get("kind") == "decision")
            if n == self.n_dec:
                return
            self.n_dec = n
            now = {k: v.clone() for k, v in hook.masks.weight_masks.items()}
            regrown = pruned = 0
            if self.prev is not None:
                for k in now:
                    regrown += int((now[k] & ~self.prev[k]).sum())
                    pruned += int((~now[k] & self.prev[k]).sum())
            self.mask_before, self.prev = self.prev, now
            if n % args.every and trainer.step < hook.sched["end"]:
                return
            # magnitudes of the weights that came back vs those kept all along (dense values)
            if self.mask_before is not None:
                back, stay = [], []
                for k in now:
                    w = hook.masks.dense_weight(k).detach().abs()
                    back.append(w[now[k] & ~self.mask_before[k]])
                    stay.append(w[now[k] & self.mask_before[k]])
                back, stay = torch.cat(back), torch.cat(stay)
                mag = {"regrown_mean_abs": round(float(back.mean()), 4) if back.numel() else None,
                       "kept_mean_abs": round(float(stay.mean()), 4) if stay.numel() else None}
            else:
                mag = {}
            m = hook.masks
            bias_kept = {k: int(v.sum()) for k, v in m.bias_masks.items()}
            self.rows.append({
                "step": trainer.step, "epoch": trainer.epoch, "loss": round(trainer.last_loss, 4),
                "train_acc_before": round(before.acc, 4),
                "train_acc": round(evaluate(trainer.model, trainer.x_train[:2048],
                                            trainer.y_train[:2048]), 4),
                "kept": {k: int(v.sum()) for k, v in now.items()},
                "bias_kept": bias_kept, "dead_units": _dead_units(m),
                "regrown": regrown, "pruned": pruned, **mag})

        def on_epoch_end(self, trainer, metrics):
            self.rows.append({"epoch_end": trainer.epoch, "test_acc": round(metrics["test_acc"], 4),
                              "loss": round(metrics["loss"], 4)})

    trace = Trace()
    t0 = time.process_time()
    trainer = Trainer(model, ds, TrainConfig(epochs=args.epochs, lr=args.lr, batch_size=args.batch,
                                             seed=args.seed, lr_schedule=args.lr_schedule,
                                             progress=False), [before, hook, trace])
    res = trainer.fit()
    acc = res.test_accuracy
    dense_params = graph.total_params
    nz = count_nonzero_params(trainer.model)
    final = [r for r in trace.rows if "dead_units" in r][-1]
    row = {"model": args.model, "dataset": args.dataset, "epochs": args.epochs, "seed": args.seed,
           "lr_schedule": args.lr_schedule, "sparsity": sparsity, "variant": variant,
           "method_rev": args.method_rev,
           "acc_dense": acc_dense, "acc_pruned": acc, "loss_pt": round(100 * (acc_dense - acc), 2),
           "params_compression": round(dense_params / max(nz, 1), 2),
           "min_test_acc": min(r["test_acc"] for r in trace.rows if "test_acc" in r),
           "dead_units_final": final["dead_units"], "bias_kept_final": final["bias_kept"],
           "regrown_total": sum(r.get("regrown", 0) for r in trace.rows),
           "cpu_s": round(time.process_time() - t0, 1), "trace": trace.rows,
           "command": command_line()}
    upsert_rows(TABLE, [row], key=KEY)
    print(json.dumps({k: row[k] for k in ("variant", "sparsity", "acc_dense", "acc_pruned", "loss_pt",
                                          "params_compression", "min_test_acc", "dead_units_final",
                                          "regrown_total")}), flush=True)
    return row


def dense_accuracy(args) -> float:
    from edgeprune.data import load_dataset
    from edgeprune.models import build
    from edgeprune.train import TrainConfig, Trainer, seed_everything
    ds = load_dataset(args.dataset)
    seed_everything(args.seed)
    model = build(args.model, num_classes=ds.num_classes)
    return Trainer(model, ds, TrainConfig(epochs=args.epochs, lr=args.lr, batch_size=args.batch,
                                          seed=args.seed, lr_schedule=args.lr_schedule,
                                          progress=False)).fit().test_accuracy


def report() -> None:
    rows = json.loads((RESULTS / TABLE).read_text())
    lines = ["# Statistical pruning: collapse diagnosis", "",
             "Generated by `benchmarks/diagnose_statistical.py --report` from "
             "`diagnose_statistical.json` (each row there holds its command and the per-decision "
             "trace). loss = dense - pruned test accuracy (pt); min acc = lowest end-of-epoch test "
             "accuracy of the run; dead = hidden units with every incoming weight pruned and no "
             "positive bias; regrown = weights spliced back over the run.", "",
             "| model | dataset | ep | lr | seed | goal | variant | params x | acc dense | acc pruned | loss (pt) | min acc | dead units (final) | biases kept | regrown |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: (r["model"], r["dataset"], r["lr_schedule"], r["sparsity"], r["variant"])):
        lines.append(
            f"| {r['model']} | {r['dataset']} | {r['epochs']} | {r['lr_schedule']} | {r['seed']} | {r['sparsity']} | "
            f"{r['variant']} | {r['params_compression']:.1f} | {100 * r['acc_dense']:.2f} | "
            f"{100 * r['acc_pruned']:.2f} | {r['loss_pt']:.2f} | {100 * r['min_test_acc']:.2f} | "
            f"{json.dumps(r['dead_units_final'])} | {json.dumps(r['bias_kept_final']) or '-'} | "
            f"{r['regrown_total']} |")
    (RESULTS / "diagnose_statistical.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {RESULTS / 'diagnose_statistical.md'}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="lenet300100")
    p.add_argument("--dataset", default="fashion-mnist")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--lr-schedule", default="cosine", choices=("constant", "cosine"))
    p.add_argument("--sparsity", nargs="+", default=["40x", "80x"])
    p.add_argument("--variants", nargs="+",
                   default=["v1", "v1-nobias", "v1-hard", "v1-nobias-hard", "v2-undo-zero-undo-cadence",
                            "v2-undo-cadence", "v2", "v2-nobias", "v2-hard", "agp"])
    p.add_argument("--every", type=int, default=10, help="trace every n-th decision")
    p.add_argument("--method-rev", default="issue14", help="label of the code version under test")
    p.add_argument("--report", action="store_true")
    args = p.parse_args()
    if args.report:
        report()
        return
    torch.set_num_threads(1)
    acc_dense = dense_accuracy(args)
    print(f"dense: {100 * acc_dense:.2f}%", flush=True)
    for s in args.sparsity:
        for v in args.variants:
            run_variant(args, v, s, acc_dense)
    report()


if __name__ == "__main__":
    main()
