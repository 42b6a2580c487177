"""Pruning benchmark protocol v2 (issue 14): a grid of compression points, >= 3 seeds, a dense
baseline per seed with the identical budget, peers with the same budget, mean +- std and the
iso-accuracy compression at 0.5 pt.

Every (method, goal, seed) run is one row of benchmarks/results/pruning.json (``protocol: v2``),
upserted as soon as it ends, so a grid can be run in chunks: a rerun skips the rows already there
(``--force`` redoes them). The dense baseline of each seed is trained once from the same
initialisation, with the same epochs, optimiser and schedule (rows in pruning_dense.json; its
weights are cached, not committed, in benchmarks/.cache/ for the retraining-free benchmark).

    # ours (statistical, memory orientation) and the torch.nn.utils.prune global-AGP peer
    benchmarks/prune_protocol.py --dataset mnist-10k --epochs 15 --seeds 0,1,2 \\
        grid --methods statistical torch_prune_agp --points 50x 100x 200x 300x 400x
    # workload orientation (goal = MACs reduction)
    benchmarks/prune_protocol.py --dataset mnist-10k --epochs 15 --seeds 0,1,2 \\
        grid --methods statistical --orientation workload --points 8x 16x 32x
    # Torch-Pruning channels (goal = per-layer channel ratio)
    benchmarks/prune_protocol.py --dataset mnist-10k --epochs 15 --seeds 0,1,2 \\
        grid --methods torch_pruning --points 0.5 0.75 0.875
    # the default against the method with distillation (issue 14), same seeds and baselines
    benchmarks/prune_protocol.py --dataset mnist-10k --epochs 15 --lr-schedule constant \
        --seeds 0,1,2 grid --methods statistical --variant distill --points 200x 300x
    # workload orientation pruned from the seed's dense baseline, distilled from it (issue 14)
    benchmarks/prune_protocol.py --dataset mnist-10k --epochs 15 --seeds 0,1,2 \\
        grid --methods statistical --orientation workload --variant from-dense --points 16x 24x 32x
    # levers of the statistical method's schedule / allocation (issue 14), one seed first
    benchmarks/prune_protocol.py --dataset mnist-10k --epochs 15 --lr-schedule constant \
        --seeds 0 grid --methods statistical --variant ft-rewind --points 300x
    # Fashion-MNIST, sized to the shared cores (a 3-epoch run takes 4-7 min at load 10)
    benchmarks/prune_protocol.py --dataset fashion-mnist --epochs 3 --lr-schedule constant \
        --seeds 0,1,2 grid --methods statistical torch_prune_agp --points 15x 50x
    # tables (pruning_v2.md) and plots (pruning_v2_<dataset>.png) from every v2 row
    benchmarks/prune_protocol.py report

Run from the repo root with OMP_NUM_THREADS=1; one process at a time (timings are recorded).
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from benchmarks.common import RESULTS, command_line, upsert_rows  # noqa: E402

KEY = ("protocol", "experiment", "model", "dataset", "method", "granularity", "orientation",
       "goal", "epochs", "lr_schedule", "seed")
DENSE_KEY = ("model", "dataset", "epochs", "seed", "lr", "batch", "lr_schedule")
CACHE = Path(__file__).resolve().parent / ".cache" / "dense"
MAX_LOSS_PT = 0.5
PEERS = ("torch_prune_agp", "torch_pruning")
OURS = ("statistical", "agp", "activation_density", "filter_while_training", "random_init")


def _rows(table: str = "pruning.json"):
    path = RESULTS / table
    return json.loads(path.read_text()) if path.exists() else []


def dense_weights_path(model: str, dataset: str, epochs: int, seed: int, lr: float, batch: int,
                       lr_schedule: str) -> Path:
    return CACHE / f"{model}-{dataset}-e{epochs}-s{seed}-lr{lr:g}-b{batch}-{lr_schedule}.pt"


def dense_baseline(model: str, dataset: str, epochs: int, seed: int, lr: float, batch: int,
                   lr_schedule: str, progress: bool = False, need_weights: bool = False,
                   lr_shape: str = "") -> float:
    """Test accuracy of `model` trained densely from the seed's initialisation (the one every
    pruning run of that seed starts from); the row is cached in pruning_dense.json and the
    weights in benchmarks/.cache/dense/ (retrained when `need_weights` and they are missing).
    `lr_shape` "ft-rewind": the dense control of that variant, trained with the lr shape the
    variant gives its pruning run (edgeprune.prune.methods.base.FineTuneRewind)."""
    sched_name = lr_schedule + (f"+{lr_shape}" if lr_shape else "")
    want = {"model": model, "dataset": dataset, "epochs": epochs, "seed": seed, "lr": lr,
            "batch": batch, "lr_schedule": sched_name}
    path = dense_weights_path(model, dataset, epochs, seed, lr, batch, sched_name)
    for r in _rows("pruning_dense.json"):
        if all(r.get(k, "lenet5" if k == "model" else None) == v for k, v in want.items()) \
                and (path.exists() or not need_weights):
            return r["acc_dense"]
    from edgeprune.data import load_dataset
    from edgeprune.models import build
    from edgeprune.train import TrainConfig, Trainer, seed_everything
    ds = load_dataset(dataset)
    seed_everything(seed)                      # the init run_prune builds from the same seed
    m = build(model, num_classes=ds.num_classes)
    t0 = time.time()
    hooks = []
    if lr_shape == "ft-rewind":       # the pruning window's bounds as the method derives them
        from edgeprune.prune.methods.base import FineTuneRewind, PruneSpec
        hooks.append(FineTuneRewind(1.0 / epochs if epochs >= 4 else 0.1, PruneSpec().end))
    res = Trainer(m, ds, TrainConfig(epochs=epochs, lr=lr, batch_size=batch, seed=seed,
                                     lr_schedule=lr_schedule, progress=progress), hooks).fit()
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(m.state_dict(), path)
    upsert_rows("pruning_dense.json", [{**want, "acc_dense": res.test_accuracy,
                                        "wall_s": round(time.time() - t0, 1),
                                        "command": command_line()}], key=DENSE_KEY)
    return res.test_accuracy


def _done(row_key: dict) -> bool:
    return any(all(r.get(k) == v for k, v in row_key.items()) for r in _rows())


VARIANTS = {"distill": "also learn from the seed's dense baseline (edgeprune.train.distill_loss; "
                       "the default trains on the labels only)",
            "ft-rewind": "learning-rate rewinding in the fine-tune: after the pruning window the "
                         "lr restarts at its window-start value and anneals to 0 by a cosine "
                         "(edgeprune.prune.methods.base.rewound_lr); acc_dense is then a dense "
                         "control trained with the same lr shape",
            "end50": "a longer sparse fine-tune in the same epochs: the pruning window ends at "
                     "half the steps instead of 3/4",
            "end90": "a longer pruning window, shorter fine-tune: the window ends at 90 % of "
                     "the steps instead of 3/4",
            "from-dense": "pruning starts from the seed's dense baseline (which the run trains "
                          "anyway) and distils from it (`--weights DENSE --distill`, as "
                          "benchmarks/c_runtime_lenet5.py --from-dense): the pruned model has "
                          "the baseline's epochs plus its own",
            "obd-alloc": "workload / target orientation: the per-layer goals from OBD saliencies "
                         "(1/2 x mean squared gradient x w^2, one scale across layers) instead "
                         "of LAMP (edgeprune.prune.methods.statistical.Statistical."
                         "allocation_families)",
            "dead-path": "weights on dead paths (reading a channel every weight into which is "
                         "pruned, or writing a channel nobody reads) score 0, so the allocation "
                         "spends their share on live paths "
                         "(edgeprune.prune.methods.statistical.Statistical._dead_path_weights)"}


def run_point(args, method: str, goal: str, seed: int, acc_dense: float) -> None:
    orientation = args.orientation
    gran = "channel" if method == "torch_pruning" else args.granularity
    variant = getattr(args, "variant", None)
    if variant and method in PEERS:
        raise SystemExit(f"--variant {variant} applies to edgeprune methods, not {method}")
    label = f"{method} ({variant})" if variant else method
    key = {"protocol": "v2", "experiment": "grid", "model": args.model, "dataset": args.dataset,
           "method": label, "granularity": gran,
           "orientation": {"torch_prune_agp": "global", "torch_pruning": "uniform"}.get(method, orientation),
           "goal": goal, "epochs": args.epochs, "lr_schedule": args.lr_schedule, "seed": seed}
    if not args.force and _done(key):
        print(f"skip (done): {label} {goal} seed {seed}", flush=True)
        return
    distill = None
    if method in PEERS:
        from benchmarks.prune_peers import train_peer
        r = train_peer(args.model, args.dataset, args.epochs, seed, args.lr, args.batch,
                       args.lr_schedule, method, goal, args.progress)
        res = {k: r[k] for k in ("acc_pruned", "params_compression", "macs_reduction",
                                 "params_nonzero", "macs_effective", "cpu_s", "wall_s")}
        criterion = r["criterion"]
    else:
        from edgeprune.prune.runner import PruneConfig, parse_sparsity, run_prune
        distill = variant in ("distill", "from-dense")
        teacher = dense_weights_path(args.model, args.dataset, args.epochs, seed, args.lr,
                                     args.batch, args.lr_schedule)
        start = {"weights": str(teacher)} if variant == "from-dense" else {}
        if variant == "ft-rewind":    # the loss is taken against a dense run of the same lr shape
            acc_dense = dense_baseline(args.model, args.dataset, args.epochs, seed, args.lr,
                                       args.batch, args.lr_schedule, args.progress,
                                       lr_shape="ft-rewind")
        cfg = PruneConfig(distill=distill, variant=(variant,) if variant and not distill else (),
                          teacher_weights=str(teacher) if distill and not start else None, **start,
                          model=args.model, data=args.dataset, method=method, granularity=gran,
                          orientation=orientation, sparsity=parse_sparsity(goal),
                          epochs=args.epochs, seed=seed, lr=args.lr, batch_size=args.batch,
                          lr_schedule=args.lr_schedule, baseline=False, progress=args.progress)
        t0, w0 = time.process_time(), time.time()
        s = run_prune(cfg).summary
        res = {"acc_pruned": s["acc_pruned"], "params_compression": s["params_compression"],
               "macs_reduction": s["macs_reduction"], "params_nonzero": s["params_nonzero"],
               "macs_effective": s["macs_effective"], "cpu_s": round(time.process_time() - t0, 1),
               "wall_s": round(time.time() - w0, 1)}
        criterion = s["criterion"]
    row = {**key, "criterion": criterion, "distill": distill, "acc_dense": acc_dense, **res,
           "params_compression": round(res["params_compression"], 3),
           "macs_reduction": round(res["macs_reduction"], 3),
           "acc_loss_pt": round(100 * (acc_dense - res["acc_pruned"]), 2),
           "command": command_line()}
    upsert_rows("pruning.json", [row], key=KEY)
    print(json.dumps({k: row[k] for k in ("method", "orientation", "goal", "seed", "acc_dense",
                                          "acc_pruned", "params_compression", "macs_reduction",
                                          "wall_s")}), flush=True)


# ---------------------------------------------------------------------------------- report

def _mean_std(v):
    v = list(v)
    return (statistics.fmean(v), statistics.stdev(v) if len(v) > 1 else 0.0)


def aggregate(rows):
    """(method, orientation, goal) -> mean/std over seeds of compression, MACs, loss."""
    groups = {}
    for r in rows:
        groups.setdefault((r["method"], r["orientation"], r["goal"]), []).append(r)
    out = []
    for (method, orient, goal), rs in groups.items():
        pc = _mean_std(r["params_compression"] for r in rs)
        mr = _mean_std(r["macs_reduction"] for r in rs)
        loss = _mean_std(100 * (r["acc_dense"] - r["acc_pruned"]) for r in rs)
        acc = _mean_std(100 * r["acc_pruned"] for r in rs)
        dense = _mean_std(100 * r["acc_dense"] for r in rs)
        out.append({"method": method, "orientation": orient, "goal": goal, "n": len(rs),
                    "seeds": sorted(r["seed"] for r in rs), "params_x": pc, "macs_x": mr,
                    "loss_pt": loss, "acc": acc, "acc_dense": dense,
                    "wall_s": statistics.fmean(r.get("wall_s") or 0 for r in rs)})
    return out


def iso_compression(points, metric: str, max_loss: float = MAX_LOSS_PT):
    """The compression where the mean-loss curve crosses `max_loss`, by linear interpolation in
    log(compression) between the last point within it and the next; (value, how): how is 'interp',
    '>=' (every point within: the largest one is a lower bound) or '<' (none within)."""
    pts = sorted(((p[metric][0], p["loss_pt"][0]) for p in points), key=lambda t: t[0])
    if not pts:
        return None, None
    if pts[0][1] > max_loss:
        return pts[0][0], "<"
    for (x0, l0), (x1, l1) in zip(pts, pts[1:]):
        if l0 <= max_loss < l1:
            f = (max_loss - l0) / (l1 - l0)
            return math.exp(math.log(x0) + f * (math.log(x1) - math.log(x0))), "interp"
        if l1 <= max_loss:
            continue
    last_ok = max(x for x, l in pts if l <= max_loss)
    return last_ok, ">="


def _fmt_iso(v, how, digits: int = 1):
    if v is None:
        return "—"
    return {"interp": f"{v:.{digits}f}x", ">=": f">= {v:.{digits}f}x (every point within)",
            "<": f"< {v:.{digits}f}x (no point within)"}[how]


LABEL = {"statistical": "edgeprune statistical", "statistical (distill)":
         "edgeprune statistical + distillation", "agp": "edgeprune AGP",
         "torch_prune_agp": "torch.nn.utils.prune global AGP",
         "torch_pruning": "Torch-Pruning magnitude channels"}


def report() -> None:
    rows = [r for r in _rows() if r.get("protocol") == "v2" and r.get("experiment") == "grid"]
    configs = sorted({(r["model"], r["dataset"], r["epochs"], r["lr_schedule"]) for r in rows})
    lines = ["# Pruning benchmark, protocol v2", "",
             "Generated by `benchmarks/prune_protocol.py report` from the `protocol: v2` rows of "
             "`pruning.json` (each row holds the command that produced it). Every run has its "
             "own dense baseline (same seed, initialisation, epochs, optimiser and schedule); "
             "loss = acc_dense - acc_pruned of the same seed, in points; mean +- std over seeds. "
             f"Iso-accuracy compression: where the mean-loss curve crosses {MAX_LOSS_PT} pt, by "
             "linear interpolation in log(compression) between neighbouring grid points. "
             "`statistical (distill)` (`--variant distill`, same seeds and dense baselines) also "
             "learns from the seed's dense baseline while it prunes "
             "(`edgeprune.train.distill_loss`: T = 4, weight 0.9 on the soft targets, Hinton et "
             "al. 2015); `statistical` and the peers train on the labels only. Distillation was "
             "the default while its rows were run (their commands say `--methods statistical`, "
             "and `--ablation no-distill` for the label-only rows; each row's `note` says so). "
             "Other `statistical (NAME)` rows are levers of the method's schedule and "
             "allocation, same seeds and baselines (`--variant NAME`): "
             + "; ".join(f"`{k}` = {v}" for k, v in VARIANTS.items() if k != "distill")
             + ".", ""]
    for model, ds, ep, sched in configs:
        rs = [r for r in rows if (r["model"], r["dataset"], r["epochs"], r["lr_schedule"])
              == (model, ds, ep, sched)]
        agg = aggregate(rs)
        lines += [f"## {model} / {ds}, {ep} epochs, {sched} learning rate", "",
                  "| method | orientation | goal | seeds | params x | MACs x | acc dense | acc pruned | loss (pt) | wall s / run |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for a in sorted(agg, key=lambda a: (a["method"], a["orientation"], a["params_x"][0])):
            lines.append(
                f"| {a['method']} | {a['orientation']} | {a['goal']} | {a['n']} | "
                f"{a['params_x'][0]:.1f} ± {a['params_x'][1]:.1f} | {a['macs_x'][0]:.1f} ± {a['macs_x'][1]:.1f} | "
                f"{a['acc_dense'][0]:.2f} ± {a['acc_dense'][1]:.2f} | {a['acc'][0]:.2f} ± {a['acc'][1]:.2f} | "
                f"{a['loss_pt'][0]:.2f} ± {a['loss_pt'][1]:.2f} | {a['wall_s']:.0f} |")
        lines += ["", f"Iso-accuracy at {MAX_LOSS_PT} pt (mean curve):", ""]
        iso = {}
        levers = sorted({a["method"] for a in agg if a["method"].startswith("statistical (")
                         and a["method"] != "statistical (distill)"})
        for (method, orient), metric in ((("statistical", "memory"), "params_x"),
                                         (("statistical (distill)", "memory"), "params_x"),
                                         *(((m, "memory"), "params_x") for m in levers),
                                         (("agp", "memory"), "params_x"),
                                         (("torch_prune_agp", "global"), "params_x"),
                                         (("torch_pruning", "uniform"), "params_x"),
                                         (("statistical", "workload"), "macs_x"),
                                         (("statistical (distill)", "workload"), "macs_x"),
                                         *(((m, "workload"), "macs_x") for m in levers)):
            pts = [a for a in agg if a["method"] == method and a["orientation"] == orient
                   and a["n"] >= 1]
            if not pts:
                continue
            v, how = iso_compression(pts, metric)
            iso[(method, orient)] = (v, how)
            what = "params compression" if metric == "params_x" else "MACs reduction"
            seeds = sorted({sd for a in pts for sd in a["seeds"]})
            lines.append(f"- {LABEL.get(method, 'edgeprune ' + method)} ({orient}): {what} "
                         f"{_fmt_iso(v, how)}" + (f" (seed {seeds[0]} only)" if len(seeds) == 1 else ""))
        ours = iso.get(("statistical", "memory"))
        # a peer with no grid point within the loss has no iso value to compare against
        peers = [iso[k] for k in iso if k[0] in PEERS and iso[k][1] in ("interp", ">=")]
        if ours and ours[0] and peers:
            best = max(peers, key=lambda t: t[0])
            lines.append(f"- edgeprune / best peer at iso-accuracy: "
                         f"{_ratio_text(ours, best)} (goal >= 1.5x)")
            nd = iso.get(("statistical (distill)", "memory"))
            if nd and nd[0] and nd[1] in ("interp", ">="):
                lines.append(f"- edgeprune with distillation / best peer: {nd[0] / best[0]:.2f}x")
        paired = _paired_vs_default(rs)
        if paired:
            lines += ["", "Each lever against the default on the same seeds and goal (loss of the "
                      "lever - loss of `statistical`, pt; negative = the lever is better):", ""]
            lines += paired
        lines.append("")
        png = _plot(model, ds, ep, sched, agg)
        if png:                 # a group of workload rows only has no params curve to plot
            lines += [f"![accuracy vs compression]({png})", ""]
    lines += retraining_free_section()
    (RESULTS / "pruning_v2.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {RESULTS / 'pruning_v2.md'}")


def _ratio_text(ours, peer) -> str:
    """ours / peer where either iso value may be a bound: '>=' marks a lower bound of the true
    crossing, '<' an upper one; the ratio inherits the direction (or is undetermined)."""
    r = ours[0] / peer[0]
    d = {"interp": 0, ">=": 1, "<": -1}
    dirs = {x for x in (d[ours[1]], -d[peer[1]]) if x}
    if not dirs:
        return f"{r:.2f}x"
    if len(dirs) > 1:
        return f"undetermined (ours {_fmt_iso(*ours)}, peer {_fmt_iso(*peer)})"
    rel = ">=" if dirs == {1} else "<="
    return f"{rel} {r:.2f}x (a bound: ours {_fmt_iso(*ours)}, peer {_fmt_iso(*peer)})"


def _paired_vs_default(rows):
    """Per lever and goal: mean +- std over the common seeds of (its loss - the default's)."""
    base = {(r["orientation"], r["goal"], r["seed"]): r for r in rows
            if r["method"] == "statistical"}
    out = []
    for method in sorted({r["method"] for r in rows if r["method"].startswith("statistical (")}):
        for orient, goal in sorted({(r["orientation"], r["goal"]) for r in rows
                                    if r["method"] == method},
                                   key=lambda og: (og[0], float(og[1].rstrip("x")))):
            d = [100 * ((r["acc_dense"] - r["acc_pruned"]) - (b["acc_dense"] - b["acc_pruned"]))
                 for r in rows if r["method"] == method and (r["orientation"], r["goal"]) == (orient, goal)
                 for b in [base.get((orient, goal, r["seed"]))] if b is not None]
            if d:
                m, sd = _mean_std(d)
                what = "" if orient == "memory" else f" ({orient})"
                out.append(f"- {method} at {goal}{what}: {m:+.2f} ± {sd:.2f} pt over {len(d)} seed"
                           f"{'s' if len(d) > 1 else ''}")
    return out


def retraining_free_section():
    """Tables of benchmarks/prune_reconstruct.py rows: mean +- std per goal, reach at <= 1 pt."""
    rows = [r for r in _rows() if r.get("protocol") == "v2"
            and r.get("experiment") == "retraining_free"]
    if not rows:
        return []
    lines = ["## Retraining-free pruning (`--method reconstruct`) vs magnitude without retraining",
             "", "Rows of `benchmarks/prune_reconstruct.py`: the dense model of each seed (the "
             "protocol's baseline), pruned once with no training; reconstruct uses "
             "`calibration_images` unlabelled training images. Rows `reconstruct (NAME)` switch "
             "one lever of the default off or on, same seeds (`--ablation NAME`): `no-gcv` = "
             "the ridge at the SparseGPT floor (1 % of mean diag H) in every layer, no GCV (the "
             "method before GCV); `greedy` = channels ranked by greedy sequential OBS removal "
             "instead of one-shot OBS saliency.", ""]
    configs = sorted({(r["model"], r["dataset"], r["dense_epochs"], r["calibration_images"])
                      for r in rows})
    for model, ds, dep, ncal in configs:
        rs = [r for r in rows if (r["model"], r["dataset"], r["dense_epochs"],
                                  r["calibration_images"]) == (model, ds, dep, ncal)]
        lines += [f"### {model} / {ds}, dense {dep} epochs, {ncal} calibration images", "",
                  "| method | granularity / orientation | goal | seeds | params x | MACs x | acc dense | acc pruned | loss (pt) | prune s |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        reach = []
        for gran, orient, metric in (("weight", "memory", "params_x"),
                                     ("channel", "workload", "macs_x")):
            ablations = sorted({r["method"] for r in rs if r["method"].startswith("reconstruct (")})
            for method in ("magnitude_oneshot", "reconstruct", *ablations):
                sub = [r for r in rs if r["granularity"] == gran and r["method"] == method]
                agg = aggregate(sub)
                for a in sorted(agg, key=lambda a: a[metric][0]):
                    wall = statistics.fmean(r["prune_wall_s"] for r in sub if r["goal"] == a["goal"])
                    lines.append(
                        f"| {method} | {gran} / {orient} | {a['goal']} | {a['n']} | "
                        f"{a['params_x'][0]:.1f} ± {a['params_x'][1]:.1f} | {a['macs_x'][0]:.2f} ± {a['macs_x'][1]:.2f} | "
                        f"{a['acc_dense'][0]:.2f} ± {a['acc_dense'][1]:.2f} | {a['acc'][0]:.2f} ± {a['acc'][1]:.2f} | "
                        f"{a['loss_pt'][0]:.2f} ± {a['loss_pt'][1]:.2f} | {wall:.1f} |")
                if agg:
                    v, how = iso_compression(agg, metric, 1.0)
                    what = "params compression" if metric == "params_x" else "MACs reduction"
                    reach.append(f"- {method}, {gran}: {what} at <= 1 pt (mean curve) "
                                 f"{_fmt_iso(v, how, 2)}")
        lines += [""] + reach
        cli = [r for r in _rows() if r.get("experiment") == "retraining_free_cli"
               and (r["model"], r["dataset"], r["dense_epochs"]) == (model, ds, dep)]
        root = str(Path(__file__).resolve().parent.parent) + "/"
        for r in cli:
            lines.append(f"- whole command, seed {r['seed']}: `{r['cli'].replace(root, '')}` took {r['wall_s']} s "
                         f"wall ({r['params_compression']:.1f}x, {100 * r['acc_dense']:.2f} -> "
                         f"{100 * r['acc_pruned']:.2f} %)")
        lines.append("")
    return lines


def _plot(model, ds, ep, sched, agg):
    if all(a["orientation"] == "workload" for a in agg):
        return None             # nothing to plot (and the file is the other group's)
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for (method, orient) in sorted({(a["method"], a["orientation"]) for a in agg}):
        if orient == "workload":
            continue
        pts = sorted((a for a in agg if a["method"] == method and a["orientation"] == orient),
                     key=lambda a: a["params_x"][0])
        ax.errorbar([a["params_x"][0] for a in pts], [a["loss_pt"][0] for a in pts],
                    xerr=[a["params_x"][1] for a in pts], yerr=[a["loss_pt"][1] for a in pts],
                    fmt="o-", capsize=3, label=f"{LABEL.get(method, method)} ({orient})")
    ax.axhline(MAX_LOSS_PT, color="grey", ls="--", lw=1)
    ax.set_xscale("log")
    ax.set_xlabel("params compression (x)")
    ax.set_ylabel("accuracy loss vs dense (pt), mean ± std")
    ax.set_title(f"{model} / {ds} ({ep} epochs, {sched} lr)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    # LeNet-5 (the benchmark's model) keeps the plain name; the zoo checks get their own file
    png = f"pruning_v2_{ds}.png" if model == "lenet5" else f"pruning_v2_{model}_{ds}.png"
    fig.savefig(RESULTS / png, dpi=90, metadata={"Software": None})
    plt.close(fig)
    return png


def add_training_args(p: argparse.ArgumentParser, epochs: int) -> None:
    """The model, data and training budget every protocol-v2 run (and its dense baseline) shares;
    benchmarks/prune_methods.py takes the same options."""
    p.add_argument("--model", default="lenet5")
    p.add_argument("--dataset", default="mnist-10k")
    p.add_argument("--epochs", type=int, default=epochs)
    p.add_argument("--seeds", type=lambda t: [int(x) for x in t.split(",")], default=[0, 1, 2],
                   help="comma-separated, e.g. 0,1,2")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--lr-schedule", default="cosine", choices=("constant", "cosine"))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_training_args(p, epochs=15)
    p.add_argument("--progress", action="store_true")
    sub = p.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("grid")
    g.add_argument("--methods", nargs="+", default=["statistical", "torch_prune_agp"])
    g.add_argument("--points", nargs="+", required=True)
    g.add_argument("--orientation", default="memory")
    g.add_argument("--granularity", default="weight")
    g.add_argument("--force", action="store_true", help="redo rows that exist")
    g.add_argument("--variant", choices=sorted(VARIANTS), default=None,
                   help="a lever measured against edgeprune's default; rows are labelled "
                        "'METHOD (NAME)': " + "; ".join(f"{k}: {v}" for k, v in VARIANTS.items()))
    sub.add_parser("report")
    args = p.parse_args()
    if args.cmd == "report":
        report()
        return
    torch.set_num_threads(1)
    for seed in args.seeds:                       # seed-major: every seed's grid is complete early
        acc_dense = dense_baseline(args.model, args.dataset, args.epochs, seed, args.lr,
                                   args.batch, args.lr_schedule, args.progress,
                                   need_weights=getattr(args, "variant", None) in ("distill", "from-dense"))
        print(f"dense seed {seed}: {100 * acc_dense:.2f}%", flush=True)
        for goal in args.points:
            for method in args.methods:
                run_point(args, method, goal, seed, acc_dense)


if __name__ == "__main__":
    main()
