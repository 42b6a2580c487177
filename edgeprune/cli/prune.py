"""`edgeprune prune MODEL --data D --method M --granularity G --orientation O -o OUT`."""
from __future__ import annotations

import argparse

from .common import bits, non_negative_int, positive_float, positive_int, unit_fraction

METHOD_NAMES = ("statistical", "activation_density", "filter_while_training", "agp", "random_init",
                "reconstruct")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "prune", help="prune a model while training it, oriented by memory, workload or a target's cost",
        description="Prune MODEL during training and write OUT/model.pt, OUT/shrunk.pt2, "
                    "OUT/log.json, OUT/log.png and OUT/summary.json. See docs/pruning.md.")
    p.add_argument("model", metavar="MODEL", help="zoo name, .pt2 program or edgeprune output dir")
    p.add_argument("--data", required=True, help="fashion-mnist | mnist-10k | PATH")
    p.add_argument("--method", default="statistical", choices=METHOD_NAMES)
    p.add_argument("--granularity", default="weight",
                   help="weight | kernel | channel | N:M (e.g. 2:4)  [weight]")
    p.add_argument("--orientation", default="memory",
                   choices=("memory", "workload", "target", "uniform"))
    p.add_argument("--criterion", default=None,
                   help="l1 | l2 | taylor | density | apoz | mean_act | random  [method's default]")
    p.add_argument("--sparsity", default=None,
                   help="fraction of the orientation's resource to remove: 0.95, 95%% or 300x "
                        "[0.9; with --budget: as much as the budgets need]")
    p.add_argument("--target", "-t", default=None, help="target name or .toml (for --orientation target "
                                                  "and target budgets)")
    g = p.add_argument_group("deployment (with --target)")
    g.add_argument("--runtime", default=None,
                   help="MCU targets: tflm-cmsis-nn | tflm-reference [the target's]")
    g.add_argument("--wbits", type=bits, default=None,
                   help="FPGA targets: weight bits the budgets are checked at [4, as export]")
    g.add_argument("--abits", type=bits, default=None,
                   help="FPGA targets: activation bits the budgets are checked at [4, as export]")
    g.add_argument("--fps", type=positive_float, default=None,
                   help="FPGA targets: the frame rate the folding is chosen for [max that fits]")
    p.add_argument("--budget", action="append", default=[], metavar="METRIC=VALUE[,...]",
                   help="latency_ms=5, flash_kb=32,ram_kb=16, macs=300k, params=2k, fps=20000, "
                        "lut=20000 ... (repeatable); pruning stops once all are met")
    p.add_argument("--calibration", type=positive_int, default=1000, metavar="N",
                   help="--method reconstruct: unlabelled training images it reconstructs on [1000]")
    p.add_argument("--epochs", type=positive_int, default=10)
    p.add_argument("--seed", type=non_negative_int, default=0)
    p.add_argument("--lr", type=positive_float, default=1e-3)
    p.add_argument("--batch-size", type=positive_int, default=128)
    p.add_argument("--lr-schedule", default="constant", choices=("constant", "cosine"))
    p.add_argument("--weights", default=None,
                   help="dense state_dict to start from (acc_dense is its accuracy)")
    p.add_argument("--trust-pickle", action="store_true", help="allow loading a pickled module")
    p.add_argument("--no-baseline", action="store_true",
                   help="skip the dense baseline run (acc_dense = null)")
    p.add_argument("--distill", action="store_true",
                   help="also learn from the dense baseline or the --weights model while pruning "
                        "(soft targets, T=4, weight 0.9; off by default, see docs/pruning.md)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run into OUT")
    p.add_argument("--max-acc-drop", type=unit_fraction, default=0.10,
                   help="budget runs stop as unmeetable when training accuracy drops this much")
    p.add_argument("--max-steps-per-epoch", type=positive_int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--n-train", type=positive_int, default=None, help="use the first N training samples")
    p.add_argument("--n-test", type=positive_int, default=None, help="use the first N test samples")
    p.add_argument("--quiet", action="store_true")
    p.add_argument("-o", "--out", required=True, help="output directory")
    p.add_argument("--overwrite", action="store_true",
                   help="write into a non-empty OUT (files edgeprune did not write are kept)")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..prune.runner import PruneConfig, parse_sparsity, run_prune
    cfg = PruneConfig(
        model=args.model, data=args.data, method=args.method, granularity=args.granularity,
        orientation=args.orientation, criterion=args.criterion,
        sparsity=parse_sparsity(args.sparsity) if args.sparsity is not None else None,
        target=args.target, runtime=args.runtime, wbits=args.wbits, abits=args.abits,
        fps=args.fps, budgets=args.budget, epochs=args.epochs, seed=args.seed, lr=args.lr,
        batch_size=args.batch_size, lr_schedule=args.lr_schedule, weights=args.weights, trust_pickle=args.trust_pickle,
        resume=args.resume, overwrite=args.overwrite, baseline=not args.no_baseline,
        max_steps_per_epoch=args.max_steps_per_epoch, progress=not args.quiet,
        max_acc_drop=args.max_acc_drop, n_train=args.n_train, n_test=args.n_test,
        calibration=args.calibration, distill=args.distill)
    res = run_prune(cfg, args.out)
    s = res.summary
    if res.out_dir is not None:
        acc_d = "n/a" if s["acc_dense"] is None else f"{100 * s['acc_dense']:.2f}%"
        print(f"acc dense {acc_d}  pruned {100 * s['acc_pruned']:.2f}%  "
              f"params {s['params_dense']} -> {s['params_nonzero']} ({s['params_compression']:.1f}x)  "
              f"MACs {s['macs_dense']} -> {s['macs_effective']} ({s['macs_reduction']:.1f}x)")
        print(f"wrote {res.out_dir}/model.pt, shrunk.pt2, log.json, log.png, summary.json")
    return 0
