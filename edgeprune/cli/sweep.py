"""`edgeprune sweep RECIPE.toml --budget latency_ms=2,4,8 -o OUT`: one run per budget, in parallel,
and the Pareto front."""
from __future__ import annotations

from .common import positive_int


def register(sub) -> None:
    p = sub.add_parser(
        "sweep", help="run a recipe once per budget value, in parallel, and plot the Pareto front",
        description="Train once (OUT/base), then run the recipe once per value of --budget "
                    "(OUT/runs/METRIC=V), in parallel processes, and write OUT/report.html with "
                    "the Pareto front of accuracy vs cycles, flash and LUT. Executors: local "
                    "(processes on this machine) or ray (pip install ray).")
    p.add_argument("recipe", metavar="RECIPE.toml")
    p.add_argument("--budget", required=True, metavar="METRIC=V1,V2,...",
                   help="the budget to vary, e.g. latency_ms=2,4,8 (replaces the recipe's budget on that "
                        "metric; its budgets on other metrics stay)")
    p.add_argument("-o", "--out", default=None, help="output directory [runs/<recipe name>-sweep]")
    p.add_argument("--jobs", "-j", type=positive_int, default=None,
                   help="runs at a time [CPU count, at most one per budget value]")
    p.add_argument("--executor", default="local", choices=("local", "ray"),
                   help="where the runs execute [local]")
    p.add_argument("--ray-address", default=None,
                   help="--executor ray: cluster address ('auto' joins a running one) [start a "
                        "local Ray]")
    p.add_argument("--resume", action="store_true",
                   help="continue the sweep in OUT (finished stages of every run are reused)")
    p.set_defaults(func=run)


def run(args) -> int:
    from pathlib import Path

    from ..flow.recipe import load_recipe
    from ..flow.sweep import sweep
    recipe = load_recipe(args.recipe)
    out = Path(args.out) if args.out else Path("runs") / f"{recipe.name}-sweep"
    opts = {"address": args.ray_address} if args.executor == "ray" else {}
    if args.ray_address and args.executor != "ray":
        from ..flow.runner import FlowError
        raise FlowError("--ray-address needs --executor ray")
    res = sweep(recipe, out, args.budget, executor=args.executor, jobs=args.jobs,
                resume=args.resume, executor_options=opts)
    print(f"report: {res['report']}")
    return 0
