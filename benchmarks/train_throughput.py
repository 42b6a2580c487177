"""Training-step throughput of the zoo models on this machine: memory layout and mask overhead.

Times one optimiser step (forward, backward, Adam) at the Trainer's batch size, on one thread,
for each variant below, interleaved over `--repeats` rounds so machine noise hits every variant
alike; reports the median ms/step and the ratio to the NCHW dense step of the same run.

* ``nchw``: the model and the batch in the default (NCHW) layout;
* ``channels_last``: model and data in NHWC (what `edgeprune.train.Trainer` does since
  TrainConfig.channels_last);
* ``soft_masks``: channels_last plus the statistical method's soft (straight-through) masks on
  every conv/linear weight and bias - the per-step cost of pruning between decisions;
* ``decision``: one mask update of the statistical method (weight granularity, memory, 80x; the
  mean over a simulated window of 50 decisions, goals recomputed at every quarter as in a run),
  in ms and in training steps. ``decision_cost_k`` = steps x batch x MACs / prunable weights:
  the constant of the method's cost estimate (edgeprune/prune/methods/statistical.py,
  DECISION_COST), which sets how often it can afford to decide.

    benchmarks/train_throughput.py --models lenet5 lenet300100 --steps 20 --repeats 5

Rows go to benchmarks/results/train_throughput.json.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from benchmarks.common import command_line, upsert_rows  # noqa: E402

VARIANTS = ("nchw", "channels_last", "soft_masks")


def _setup(name: str, variant: str, batch: int):
    from edgeprune.graph import extract
    from edgeprune.models import build
    from edgeprune.prune.masks import PruningMasks
    torch.manual_seed(0)
    model = build(name)
    shape = tuple(model.input_shape)
    ncls = model(torch.zeros(1, *shape)).shape[1]
    x = torch.rand(batch * 8, *shape)
    y = torch.randint(0, ncls, (batch * 8,))
    if variant == "soft_masks":
        masks = PruningMasks(model, extract(model), soft=True)
        for k, m in masks.weight_masks.items():       # half the weights masked, like mid-run
            masks.weight_masks[k] = torch.rand(m.shape) > 0.5
        masks.refresh()
    if variant != "nchw" and x.dim() == 4:
        model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], 1e-3)
    return model, opt, x, y


def _time_steps(model, opt, x, y, batch: int, steps: int) -> float:
    loss_fn = torch.nn.CrossEntropyLoss()
    model.train()
    t = time.perf_counter()
    for s in range(steps):
        i = (s % 8) * batch
        opt.zero_grad(set_to_none=True)
        loss_fn(model(x[i:i + batch]), y[i:i + batch]).backward()
        opt.step()
    return (time.perf_counter() - t) / steps * 1000.0


def _decision_ms(name: str, decisions: int = 50) -> tuple:
    """Mean ms of Statistical.update_masks over a simulated pruning window; (ms, n_weights, macs)."""
    from edgeprune.graph import extract
    from edgeprune.models import build
    from edgeprune.prune.masks import parse_granularity
    from edgeprune.prune.methods import METHODS, PruneSpec
    torch.manual_seed(0)
    model = build(name)
    graph = extract(model)
    h = METHODS["statistical"](model, graph, PruneSpec(granularity=parse_granularity("weight"),
                                                       amount=1 - 1 / 80))
    h.sched = {"start": 0, "end": decisions, "interval": 1}
    t = time.perf_counter()
    for step in range(1, decisions + 1):
        h.update_masks(step, 0.0)
    ms = (time.perf_counter() - t) / decisions * 1000.0
    n_weights = sum(int(m.weight.numel()) for m in h.masks.layers.values())
    macs = sum(n.macs for n in graph.compute_nodes())
    return ms, n_weights, macs


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=["lenet5", "lenet300100"])
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()
    torch.set_num_threads(1)
    rows = []
    for name in args.models:
        setups = {v: _setup(name, v, args.batch) for v in VARIANTS}
        for v, (m, o, x, y) in setups.items():       # warm-up (oneDNN primitive caches)
            _time_steps(m, o, x, y, args.batch, 3)
        times = {v: [] for v in VARIANTS}
        for _ in range(args.repeats):
            for v, (m, o, x, y) in setups.items():
                times[v].append(_time_steps(m, o, x, y, args.batch, args.steps))
        base = statistics.median(times["nchw"])
        for v in VARIANTS:
            med = statistics.median(times[v])
            row = {"model": name, "variant": v, "batch": args.batch, "threads": 1,
                   "ms_per_step": round(med, 2), "ratio_to_nchw": round(med / base, 3),
                   "command": command_line()}
            rows.append(row)
            print(f"{name:14s} {v:14s} {med:8.2f} ms/step  x{med / base:.3f}", flush=True)
        step_ms = statistics.median(times["soft_masks"])
        dec = [_decision_ms(name) for _ in range(3)]
        dms = statistics.median(d[0] for d in dec)
        _, n_w, macs = dec[0]
        k = dms / step_ms * args.batch * macs / n_w
        rows.append({"model": name, "variant": "decision", "batch": args.batch, "threads": 1,
                     "ms_per_decision": round(dms, 2), "steps_per_decision": round(dms / step_ms, 3),
                     "prunable_weights": n_w, "macs": macs, "decision_cost_k": round(k, 1),
                     "command": command_line()})
        print(f"{name:14s} decision       {dms:8.2f} ms = {dms / step_ms:.2f} steps  k={k:.0f}",
              flush=True)
    upsert_rows("train_throughput.json", rows, key=("model", "variant", "batch", "threads"))


if __name__ == "__main__":
    main()
