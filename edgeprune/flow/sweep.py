"""`edgeprune sweep RECIPE --budget latency_ms=2,4,8 -o OUT`: one run of the recipe per budget, in
parallel, and the Pareto front of accuracy against cost.

    OUT/base/                the shared prefix, run once: estimate and train (or load weights)
    OUT/runs/latency_ms=2/   one full run per budget (its own report.html), starting from
                             base/train/model.pt
    OUT/report.html          the Pareto plot (accuracy of the shrunk model vs cycles, flash, LUT,
    OUT/figures/pareto.png   per target) and a table linking each run's report
    OUT/sweep.json

Sweep points are independent, so any executor that can call a function in another process will
do. ``EXECUTORS``:

- ``local`` (default): a process pool on this machine, ``--jobs`` processes (default: the CPU
  count, at most one per point); each process gets cpu_count / jobs torch threads.
- ``ray``: a Ray cluster (``pip install ray``; ``--ray-address auto`` joins a running cluster,
  none starts a local one). Each point is a task with one CPU; OUT must be on storage every node
  sees.

An executor is a class with ``__init__(jobs, **options)`` and ``map(fn, items, on_done)``
calling ``fn(item)`` for every item and ``on_done(index, result)`` as each finishes.
"""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from ..artifacts import write_bytes, write_json
from ..errors import EdgepruneError
from .recipe import Recipe, RecipeError, recipe_from_dict
from .runner import Flow, FlowError

SWEEP_STATE = "sweep.json"


def parse_budget_axis(spec: str) -> Tuple[str, List[str]]:
    """'latency_ms=2,4,8' -> ('latency_ms', ['2', '4', '8']), every value a number > 0."""
    from ..cost.metrics import metric
    if "=" not in spec:
        raise RecipeError(f"--budget {spec!r}: expected METRIC=V1,V2,... (e.g. latency_ms=2,4,8)")
    name, values = spec.split("=", 1)
    name = name.strip()
    metric(name)            # unknown metric: one-line error listing the known ones
    vals = [v.strip() for v in values.split(",") if v.strip()]
    if len(vals) < 1:
        raise RecipeError(f"--budget {spec!r}: no values")
    for v in vals:
        try:
            ok = float(v) > 0 and float(v) != float("inf")
        except ValueError:
            ok = False
        if not ok:
            raise RecipeError(f"--budget {name}: value {v!r} is not a number > 0")
    if len(set(float(v) for v in vals)) != len(vals):
        raise RecipeError(f"--budget {name}: repeated values")
    return name, vals


# --------------------------------------------------------------------------------------------
# Executors

class LocalExecutor:
    """Processes on this machine (spawned: no state shared with the parent)."""

    name = "local"

    def __init__(self, jobs: int, **options):
        if options:
            raise FlowError(f"the local executor takes no options ({', '.join(options)})")
        self.jobs = jobs

    def map(self, fn: Callable, items: Sequence, on_done: Callable[[int, Any], None]) -> List[Any]:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor, as_completed
        results: List[Any] = [None] * len(items)
        with ProcessPoolExecutor(max_workers=self.jobs,
                                 mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = {pool.submit(fn, item): i for i, item in enumerate(items)}
            for f in as_completed(futures):
                i = futures[f]
                results[i] = f.result()
                on_done(i, results[i])
        return results


class RayExecutor:
    """Tasks on a Ray cluster (optional dependency: pip install ray)."""

    name = "ray"

    def __init__(self, jobs: int, address: Optional[str] = None, **options):
        if options:
            raise FlowError(f"the ray executor takes only address ({', '.join(options)})")
        try:
            import ray
        except ImportError:
            raise FlowError("--executor ray needs Ray: pip install ray (or use --executor local)"
                            ) from None
        self.ray = ray
        self.jobs = jobs
        if not ray.is_initialized():
            ray.init(address=address, num_cpus=None if address else jobs,
                     include_dashboard=False, log_to_driver=False)

    def map(self, fn: Callable, items: Sequence, on_done: Callable[[int, Any], None]) -> List[Any]:
        ray = self.ray
        remote = ray.remote(num_cpus=1)(fn)
        refs = {remote.remote(item): i for i, item in enumerate(items)}
        results: List[Any] = [None] * len(items)
        pending = list(refs)
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            for ref in done:
                i = refs[ref]
                results[i] = ray.get(ref)
                on_done(i, results[i])
        return results


EXECUTORS = {"local": LocalExecutor, "ray": RayExecutor}


# --------------------------------------------------------------------------------------------
# One point (runs in a worker process)

def run_point(job: Dict[str, Any]) -> Dict[str, Any]:
    """Run one sweep point; returns its summary (never raises for a user error: a budget out of
    reach is a failed point, not a failed sweep)."""
    from .. import logs
    from .runner import run_recipe
    logs.configure(False)
    threads = job.get("threads")
    if threads:
        import torch
        torch.set_num_threads(threads)
    t0 = time.time()
    out = Path(job["out"])
    base = {"label": job["label"], "out": str(out), "pid": os.getpid(), "start": t0}
    try:
        recipe = recipe_from_dict(job["recipe"], job["source"])
        res = run_recipe(recipe, out, resume=job["resume"], progress=False)["results"]
    except EdgepruneError as e:
        return {**base, "status": "failed", "error": str(e), "end": time.time()}
    return {**base, "status": "done", "end": time.time(), **point_summary(res)}


def point_summary(results: Dict[str, Any]) -> Dict[str, Any]:
    """What the Pareto plot reads from one run's stage results."""
    sh = results.get("shrink") or {}
    pr = results.get("prune") or {}
    costs: Dict[str, Dict[str, Any]] = {}
    for target, t in (sh.get("totals") or {}).items():
        costs[target] = {k: t.get(k) for k in ("cycles", "latency_ms", "flash_bytes", "ram_bytes",
                                               "lut", "bram18", "dsp", "fps") if k in t}
    return {"accuracy": sh.get("acc_shrunk"), "accuracy_stage": "shrunk (float)",
            "acc_dense": pr.get("acc_dense"), "budgets_met": pr.get("budgets_met"),
            "costs": costs, "verify_failed": (results.get("verify") or {}).get("failed") or []}


# --------------------------------------------------------------------------------------------
# The sweep

def sweep(recipe: Recipe, out: os.PathLike, budget: str, *, executor: str = "local",
          jobs: Optional[int] = None, resume: bool = False, progress: bool = True,
          executor_options: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    from .recipe import check_targets
    out = Path(out).absolute()
    if "prune" not in recipe.data:
        raise RecipeError(f"{recipe.source}: a sweep varies the pruning budget; the recipe has no "
                          f"[prune]")
    if executor not in EXECUTORS:
        raise FlowError(f"unknown executor '{executor}'; known: {', '.join(EXECUTORS)}")
    metric, values = parse_budget_axis(budget)
    check_targets(recipe)
    for v in values:          # every point's recipe must be valid before anything runs
        recipe.with_budgets([f"{metric}={v}"])
    if out.is_dir() and any(out.iterdir()):
        if not (out / SWEEP_STATE).is_file() and not (out / "base").is_dir():
            raise FlowError(f"{out}: directory is not empty and holds no edgeprune sweep; choose "
                            f"another -o")
        if not resume:
            raise FlowError(f"{out}: holds an earlier sweep; pass --resume to continue it or choose "
                            f"another -o")
    elif out.exists() and not out.is_dir():
        raise FlowError(f"{out}: exists and is not a directory")
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()

    # The shared prefix once: training is the same for every budget.
    point_recipe = recipe
    if "train" in recipe.data:
        Flow(recipe, out / "base", resume=resume or (out / "base").exists(), progress=progress,
             stop_after="train").run()
        point_recipe = recipe.with_model_weights(str(out / "base" / "train" / "model.pt"))
    n = len(values)
    cpus = os.cpu_count() or 1
    jobs = max(1, min(jobs or cpus, n))
    threads = max(1, cpus // jobs)
    items = []
    # The swept metric's budget is replaced; the recipe's budgets on other metrics are kept.
    others = [part.strip() for b in recipe.data["prune"]["budgets"] for part in b.split(",")
              if part.strip() and part.split("=")[0].strip() != metric]
    for v in values:
        label = f"{metric}={v}"
        r = point_recipe.with_budgets(others + [label])
        items.append({"label": label, "recipe": r.data, "source": recipe.source,
                      "out": str(out / "runs" / label), "threads": threads,
                      "resume": resume and (out / "runs" / label).exists()})
    ex = EXECUTORS[executor](jobs, **(executor_options or {}))
    if progress:
        print(f"sweep: {n} runs of {Path(recipe.source).name} ({metric} = {', '.join(values)}), "
              f"{jobs} in parallel ({ex.name} executor)", flush=True)
    bar = None
    if progress:
        from tqdm import tqdm
        import sys
        bar = tqdm(total=n, file=sys.stderr, unit="run", desc="sweep", leave=False,
                   disable=not sys.stderr.isatty())

    def on_done(i: int, res: Dict[str, Any]) -> None:
        if bar is not None:
            bar.update(1)
        if progress:
            msg = (f"accuracy {100 * res['accuracy']:.2f} %" if res.get("accuracy") is not None
                   else res.get("error", ""))
            text = f"  {res['label']:<24} {res['status']:<7} {res['end'] - res['start']:.0f} s  {msg}"
            if bar is not None and not bar.disable:
                bar.write(text)
            else:
                print(text, flush=True)

    try:
        points = ex.map(run_point, items, on_done)
    finally:
        if bar is not None:
            bar.close()
    summary = {"recipe": recipe.data, "source": recipe.source, "metric": metric, "values": values,
               "executor": ex.name, "jobs": jobs, "seconds": round(time.time() - t0, 2),
               "points": points}
    write_json(out / SWEEP_STATE, summary)
    page = write_sweep_report(out, summary, recipe)
    summary["report"] = str(page)
    if all(p["status"] != "done" for p in points):
        raise FlowError(f"every sweep point failed (first: {points[0].get('error')}); see {page}")
    return summary


def pareto_axes(points: List[Dict[str, Any]]) -> List[Tuple[str, str, str]]:
    """(target, cost key, axis label) for each cost the points report: cycles and flash on MCU
    targets, LUT on FPGA targets."""
    axes = []
    targets = []
    for p in points:
        for t in p.get("costs", {}):
            if t not in targets:
                targets.append(t)
    for t in targets:
        keys = {k for p in points for k in p.get("costs", {}).get(t, {})}
        for k, label in (("cycles", "cycles"), ("flash_bytes", "flash (B)"), ("lut", "LUT")):
            if k in keys:
                axes.append((t, k, f"{Path(t).stem}: {label}"))
    return axes


def write_sweep_report(out: Path, summary: Dict[str, Any], recipe: Recipe) -> Path:
    from .report import _esc, _img, _table, fig_pareto, html_page
    points = summary["points"]
    ok = [p for p in points if p["status"] == "done"]
    axes = pareto_axes(ok)
    flat = [{"label": p["label"].split("=", 1)[1], "accuracy": p["accuracy"],
             "costs": {f"{t}|{k}": p["costs"].get(t, {}).get(k) for t, k, _ in axes}} for p in ok]
    figs = {}
    parts = [f"<h1>Sweep: {_esc(recipe.name)}, {_esc(summary['metric'])} = "
             f"{_esc(', '.join(summary['values']))}</h1>",
             f'<p class="muted">{len(points)} runs, {summary["jobs"]} in parallel '
             f'({_esc(summary["executor"])} executor), {summary["seconds"]:.0f} s. Accuracy: the '
             f"shrunk float model on the full test set; costs: edgeprune's cost models.</p>"]
    if ok and axes:
        figs["pareto.png"] = fig_pareto(flat, [(f"{t}|{k}", lab) for t, k, lab in axes])
        parts.append(_img("pareto.png", figs["pareto.png"], "Pareto front"))
    rows = []
    for p in points:
        link = f'<a href="runs/{_esc(p["label"])}/report.html">report</a>' \
            if p["status"] == "done" else _esc(p.get("error", ""))
        cells = [_esc(p["label"]), _esc(p["status"]),
                 f"{100 * p['accuracy']:.2f} %" if p.get("accuracy") is not None else "-"]
        for t, k, _ in axes:
            v = (p.get("costs") or {}).get(t, {}).get(k)
            cells.append(f"{v:,.0f}" if isinstance(v, (int, float)) else "-")
        cells += [f"{p['end'] - p['start']:.0f}", link]
        rows.append(cells)
    parts.append(_table(["budget", "status", "accuracy"] + [lab for _, _, lab in axes]
                        + ["seconds", "run"], rows))
    (out / "figures").mkdir(exist_ok=True)
    for name, data in figs.items():
        write_bytes(out / "figures" / name, data)
    page = out / "report.html"
    write_bytes(page, html_page(f"edgeprune sweep: {recipe.name}", "\n".join(parts)).encode())
    return page


__all__ = ["EXECUTORS", "LocalExecutor", "RayExecutor", "sweep", "parse_budget_axis", "run_point"]
