"""What every pruning method shares: masks, criterion, schedule, orientation, budgets, log.

A method is a `edgeprune.train.TrainHook`. The base class

* builds `PruningMasks` on the model (hard or soft) and the criterion;
* derives the schedule from the run: first decision after a dense warm-up (the first epoch when
  there are at least 4, else 10 % of the steps; step 0 when starting from dense weights), last
  decision at 75 % of the steps (the last quarter trains with the final masks), about 100
  decisions in between;
* at each decision step computes the amount (``amount_at``), selects the units to remove
  (orientation.select) and records the decision with the figures before and after;
* with budgets: stops pruning (and hardens the masks) at the first decision where every budget is
  met, after shrinking the amount to the smallest one that meets them (bisection); raises
  `BudgetError` when the budgets are out of reach even with everything prunable removed, when
  accuracy collapses on the way, or when the schedule ends without meeting them.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Dict, Mapping, Optional, Sequence

import torch.nn as nn

from ...graph import LayerGraph, extract
from ...train import TrainHook, evaluate
from ..criteria import ACTIVATION_CRITERIA, make_criterion
from ..decision_log import DecisionLog
from ..masks import Granularity, PruneError, PruningMasks, plain_copy
from ..budgets import Budget, BudgetError, check_budgets, describe, measure, needs_target
from ..orientation import (apply_selection, attach_target_savings, build_families,
                           channel_removed_fn, nm_masks, select)

# edgeprune-c's marginal costs (cost-aware orientation) are taken with every layer at density
# 1 - goal amount, clipped to this range: below 1/2 the sparse kernels win on LeNet-5-sized
# layers (benchmarks/results/c_runtime.json, layers' kernel choice), below 1/50 a 10 % what-if
# removes less than one weight of a small layer.
SPARSE_OPERATING_DENSITY = (0.02, 0.5)

# The largest fraction of the orientation's resource a budget run may remove before it declares
# the budget out of reach (every family keeps its most important unit anyway).
MAX_AMOUNT = 0.999
# Training samples used to watch for an accuracy collapse in budget runs.
COLLAPSE_SAMPLES = 2048


@dataclass
class PruneSpec:
    granularity: Granularity = field(default_factory=lambda: Granularity("weight"))
    criterion: str = "l1"
    orientation: str = "memory"
    amount: Optional[float] = 0.9       # fraction of the orientation's resource to remove
    budgets: Sequence[Budget] = ()
    deployment: Any = None              # edgeprune.deploy.Deployment (target + runtime + bits)
    seed: int = 0
    prune_bias: Optional[bool] = None   # None: the method decides
    start: Optional[float] = None       # fraction of the steps before the first decision
    end: float = 0.75                   # fraction of the steps at the last decision
    interval: Optional[int] = None      # steps between decisions
    pretrained: bool = False            # the model holds trained dense weights
    max_acc_drop: float = 0.10          # budget runs: collapse = train-subset accuracy drop
    exclude: Sequence[str] = ()
    # levers measured against the default by benchmarks/prune_protocol.py --variant (no CLI flag):
    # "ft-rewind" = the fine-tune rewinds the lr to its value at the window's start and anneals
    # it to 0 (FineTuneRewind); "endNN" = the window ends at NN % of the steps, not 75 %;
    # "dead-path" (statistical) = weights on dead paths score 0. None beat the default on
    # LeNet-5 / MNIST-10k at 300x (seed 0: +0.35, +0.90 (end50), +0.60 (end90), +0.40 pt of
    # loss; benchmarks/results/pruning_v2.md), so none is a default. "obd-alloc" (statistical,
    # workload / target orientation) = per-layer goals from OBD saliencies instead of LAMP:
    # lost 0.9-1.4 pt on a validation split (benchmarks/results/prune_val_levers.json).
    variant: Sequence[str] = ()

    def __post_init__(self):
        # A misspelt lever would otherwise run the default silently and be committed as a lever row.
        unknown = [v for v in self.variant if not _is_known_variant(v)]
        if unknown:
            raise PruneError(f"unknown pruning variant {', '.join(map(repr, unknown))}; "
                             f"known: {', '.join(KNOWN_VARIANTS)}, endNN (NN = 01..99)")
        # obd-alloc replaces the allocation of the workload / target orientations at weight or
        # kernel granularity; elsewhere it would change nothing and run the default silently.
        if "obd-alloc" in self.variant and not (
                self.orientation in ("workload", "target")
                and self.granularity.kind in ("weight", "kernel")):
            raise PruneError("variant 'obd-alloc' needs --orientation workload or target at "
                             f"weight or kernel granularity, not {self.orientation} / "
                             f"{self.granularity.kind}")


KNOWN_VARIANTS = ("ft-rewind", "dead-path", "obd-alloc")


def _is_known_variant(v: str) -> bool:
    return v in KNOWN_VARIANTS or (len(v) == 5 and v.startswith("end") and v[3:].isdigit()
                                   and 0 < int(v[3:]) < 100)


def rewound_lr(trainer, start: int, end: int) -> Optional[float]:
    """Learning-rate rewinding inside the run's budget (after Renda, Frankle & Carbin 2020,
    "Comparing rewinding and fine-tuning in neural network pruning"): from step `end` on, the lr
    restarts at the schedule's value at step `start` (the pruning window's start) and follows a
    cosine to 0 over the remaining steps. None before `end`."""
    s, c = trainer.step, trainer.config
    total = max(c.epochs * trainer._steps_per_epoch(), 1)
    if s < end or end >= total:
        return None
    lr0 = trainer._lr_at(start) if c.lr_schedule == "cosine" else c.lr
    return lr0 * 0.5 * (1.0 + math.cos(math.pi * (s - end) / (total - end)))


class FineTuneRewind(TrainHook):
    """`rewound_lr` from `end_frac` of the steps on, for a dense control run with the same lr shape
    as a pruning run with the "ft-rewind" variant (benchmarks/prune_protocol.py)."""

    def __init__(self, start_frac: float, end_frac: float):
        self.start_frac, self.end_frac = start_frac, end_frac

    def before_optimizer_step(self, trainer) -> None:
        total = trainer.config.epochs * trainer._steps_per_epoch()
        lr = rewound_lr(trainer, int(round(self.start_frac * total)),
                        int(round(self.end_frac * total)))
        if lr is not None:
            for g in trainer.optimizer.param_groups:
                g["lr"] = lr


class PruneMethod(TrainHook):
    name = "base"
    soft = False
    granularities = ("weight", "kernel", "channel", "nm")
    criteria = ("l1", "l2", "taylor", "density", "apoz", "mean_act", "random")
    decisions_target = 100
    max_decisions_per_epoch = 4

    def __init__(self, model: nn.Module, graph: LayerGraph, spec: PruneSpec,
                 log: Optional[DecisionLog] = None):
        self.spec = spec
        g = spec.granularity
        if g.kind not in self.granularities:
            raise PruneError(f"method '{self.name}' supports granularity "
                             f"{', '.join(self.granularities)}; got '{g}'")
        if spec.criterion not in self.criteria:
            raise PruneError(f"method '{self.name}' supports criteria {', '.join(self.criteria)}; "
                             f"got '{spec.criterion}'")
        if spec.criterion in ACTIVATION_CRITERIA and g.kind != "channel":
            raise PruneError(f"criterion '{spec.criterion}' scores channels; use --granularity channel")
        if spec.orientation == "target" and spec.deployment is None:
            raise PruneError("--orientation target needs --target")
        missing = needs_target(spec.budgets)
        if missing and spec.deployment is None:
            raise BudgetError(f"budget {', '.join(missing)} needs --target (only macs and params "
                              f"are measured without one)")
        if spec.amount is not None and not 0.0 <= spec.amount < 1.0:
            raise PruneError(f"pruning amount must be in [0, 1), got {spec.amount}")
        self.log = log if log is not None else DecisionLog()
        self.graph = graph
        self.dense_graph = graph
        self._build(model, graph)
        self.dense_figures = self.figures()
        self.log.dense = dict(self.dense_figures)
        self.last_figures = dict(self.dense_figures)
        self.amount = 0.0
        self.done = False
        self.met = False
        self.sched = None
        self._collapse_ref: Optional[float] = None

    # ------------------------------------------------------------------ construction
    def _build(self, model: nn.Module, graph: LayerGraph) -> None:
        self.model = model
        self.graph = graph
        self.masks = PruningMasks(model, graph, soft=self.soft, exclude=self.spec.exclude)
        self.criterion = make_criterion(self.spec.criterion, self.masks, self.spec.seed)
        self._marginal = None

    def on_model_replaced(self, trainer, old_model: nn.Module) -> None:
        """A structural change (physical shrink) happened: rebuild masks on the new model."""
        self.criterion.close()
        new = trainer.model
        self._build(new, extract(plain_copy(new), getattr(new, "input_shape", None)
                                 or self.graph.input_shape))

    # ------------------------------------------------------------------ figures
    def figures(self) -> Dict[str, float]:
        return measure(self.masks, self.spec.deployment)

    # ------------------------------------------------------------------ schedule
    def steps_per_epoch(self, trainer) -> int:
        f = getattr(trainer, "_steps_per_epoch", None)
        if f is not None:
            return max(int(f()), 1)
        c = trainer.config
        n = (len(trainer.x_train) + c.batch_size - 1) // c.batch_size
        return max(min(n, c.max_steps_per_epoch or n), 1)

    def derive_schedule(self, trainer) -> Dict[str, int]:
        spe = self.steps_per_epoch(trainer)
        total = spe * trainer.config.epochs
        if self.spec.start is not None:
            start = int(round(self.spec.start * total))
        elif self.spec.pretrained:
            start = 0
        else:
            start = spe if trainer.config.epochs >= 4 else int(round(0.1 * total))
        end_frac = next((int(v[3:]) / 100 for v in self.spec.variant
                         if v.startswith("end") and v[3:].isdigit()), self.spec.end)
        end = max(start + 1, int(round(end_frac * total)))
        end = min(end, total)
        start = min(start, end - 1) if end > 0 else 0
        # about `decisions_target` decisions, but at most 4 per epoch: a decision costs about as
        # much as one or two training steps of LeNet-5 (measured: benchmarks/prune_lenet5.py
        # overhead), so this keeps the pruning overhead per epoch within a few per cent
        interval = self.spec.interval or max(1, (end - start) // self.decisions_target,
                                             spe // self.max_decisions_per_epoch)
        return {"steps_per_epoch": spe, "total": total, "start": start, "end": end,
                "interval": interval}

    def is_decision_step(self, step: int) -> bool:
        s = self.sched
        if step < max(s["start"], 1) or step > s["end"]:
            return False
        return (step - s["start"]) % s["interval"] == 0 or step == s["end"]

    def progress(self, step: int) -> float:
        s = self.sched
        return min(max((step - s["start"]) / max(s["end"] - s["start"], 1), 0.0), 1.0)

    def goal_amount(self) -> float:
        if self.spec.budgets:
            return self.spec.amount if self.spec.amount else MAX_AMOUNT
        return self.spec.amount if self.spec.amount is not None else 0.9

    def amount_at(self, step: int) -> float:
        """Cubic ramp (Zhu & Gupta 2017): A * (1 - (1 - progress)^3)."""
        return self.goal_amount() * (1.0 - (1.0 - self.progress(step)) ** 3)

    # ------------------------------------------------------------------ decisions
    def families(self):
        fams = build_families(self.masks, self.criterion, self.spec.granularity)
        if self.spec.orientation == "target":
            attach_target_savings(fams, self.graph, self.marginal(), self.metric_scales())
        return fams

    def marginal(self):
        if self._marginal is None:
            from ... import cost
            self._marginal = cost.marginal_costs(self.graph, self.spec.deployment,
                                                 weight_density=self.operating_density())
        return self._marginal

    def operating_density(self) -> Optional[Dict[str, float]]:
        """Where the marginal costs are taken, for a runtime whose kernels exploit scattered
        zeros (edgeprune-c) and a finer-than-channel granularity: every prunable layer at density 1 - goal amount, clipped to
        [SPARSE_OPERATING_DENSITY]. At the dense point removing a few weights saves nothing
        there (a dense layer keeps its dense kernel until the sparse one wins), so dense-point
        savings would price every weight alike; at the run's goal the layers run the sparse
        kernels, whose cost grows per non-zero weight and output position. Other runtimes:
        None (their kernels are dense)."""
        dep = self.spec.deployment
        if (dep is None or getattr(dep, "runtime", None) != "edgeprune-c"
                or self.spec.granularity.kind == "channel"):   # channels: dense kernels
            return None
        lo, hi = SPARSE_OPERATING_DENSITY
        d = min(max(1.0 - self.goal_amount(), lo), hi)
        return {n: d for n in self.masks.layers}

    def metric_scales(self) -> Dict[str, float]:
        """Budgeted metrics weigh by the distance to their budget, others by their dense total."""
        # Savings (what_if) are in the cost report's units (flash_bytes); figures and budgets are
        # in the metric's (flash_kb): the metric table converts.
        from ...cost.metrics import METRICS
        scales: Dict[str, float] = {}
        dense = self.dense_figures
        budgets = {b.metric: b for b in self.spec.budgets}
        if budgets:
            for m, b in budgets.items():
                if METRICS[m].minimum:
                    continue   # fps: a rise, not a saving: weighed through cycles below
                key, div = METRICS[m].total_key, METRICS[m].scale
                cur = self.last_figures.get(m, dense.get(m))
                if cur is None:
                    continue
                gap = abs(cur - b.limit) if not b.met(cur) else abs(cur)
                scales[key] = max(gap * div, 1e-12)
            if "fps" in budgets:   # fps rises as cycles fall
                cur = self.last_figures.get("cycles", dense.get("cycles"))
                if cur:
                    scales.setdefault("cycles", cur)
        else:
            for m, v in dense.items():
                if m not in METRICS or not METRICS[m].needs_target or METRICS[m].minimum or not v:
                    continue
                scales[METRICS[m].total_key] = abs(v) * METRICS[m].scale
        return scales

    def update_masks(self, step: int, amount: float) -> None:
        """Default: select by orientation at `amount` and apply (hard or soft per the method)."""
        g = self.spec.granularity
        if g.kind == "nm":
            self.masks.weight_masks.update(nm_masks(self.masks, self.criterion, g.n, g.m))
            self.masks.refresh()
            return
        fams = self.families()
        apply_selection(self.masks, fams, self.select(fams, amount), g)

    def select(self, fams, amount: float):
        removed_fn = None
        if self.spec.granularity.kind == "channel" and self.spec.orientation in ("memory", "workload"):
            removed_fn = channel_removed_fn(self.graph, fams, self.spec.orientation)
        return select(fams, self.spec.orientation, amount, removed_fn)

    def apply_amount(self, step: int, amount: float) -> None:
        self.update_masks(step, amount)
        self.amount = amount
        if not self.soft:
            self.masks.harden()

    def decide(self, trainer, step: int) -> None:
        if self.spec.budgets:
            self._check_collapse(trainer)
        before = self.last_figures
        amount = self.amount_at(step)
        # masks first, hardening last: the figures read the masked (effective) weights, and the
        # bisection below must still see the dense weights it may give back
        self.update_masks(step, amount)
        if not self.soft:
            self.amount = amount
        after = self.figures()
        note = ""
        if self.spec.budgets and check_budgets(self.spec.budgets, after):
            lo, hi = self._prev_amount, self.amount
            after = self._bisect(step, lo, hi, after)
            self.met = True
            self.done = True
            note = "budgets met: " + describe(self.spec.budgets, after, self.dense_figures)
        if not self.soft or self.done:
            self.masks.harden()
        self._record(step, trainer.epoch, before, after, note)
        self._prev_amount = self.amount
        self.criterion.reset()

    def _bisect(self, step: int, lo: float, hi: float, at_hi: Dict[str, float]) -> Dict[str, float]:
        """Smallest amount in (lo, hi] that meets every budget (6 halvings)."""
        best, best_fig = hi, at_hi
        for _ in range(6):
            if hi - lo < 1e-4:
                break
            mid = 0.5 * (lo + hi)
            self.update_masks(step, mid)
            fig = self.figures()
            if check_budgets(self.spec.budgets, fig):
                best, best_fig, hi = mid, fig, mid
            else:
                lo = mid
        self.update_masks(step, best)
        self.amount = best
        return best_fig

    def _record(self, step: int, epoch: int, before, after, note: str = "") -> None:
        stats = self.masks.layer_stats()
        self.log.decision(step, epoch, self.amount, {n: s["sparsity"] for n, s in stats.items()},
                          self.masks.kept_sizes(), before, after, note)
        self.last_figures = dict(after)

    def _subset_accuracy(self, trainer) -> float:
        n = min(COLLAPSE_SAMPLES, len(trainer.x_train))
        return evaluate(trainer.model, trainer.x_train[:n], trainer.y_train[:n])

    def _check_collapse(self, trainer) -> None:
        acc = self._subset_accuracy(trainer)
        if self._collapse_ref is None or acc > self._collapse_ref:
            self._collapse_ref = acc      # the best accuracy seen so far in this run
            return
        if acc < self._collapse_ref - self.spec.max_acc_drop:
            raise BudgetError(
                f"budgets {', '.join(map(str, self.spec.budgets))} not met before accuracy "
                f"collapsed (training-subset accuracy {100 * acc:.1f}% vs {100 * self._collapse_ref:.1f}% "
                f"at best, allowed drop {100 * self.spec.max_acc_drop:.0f} pt) at "
                f"{100 * self.amount:.1f}% of the {self.spec.orientation} resource removed; closest: "
                + describe(self.spec.budgets, self.last_figures, self.dense_figures))

    def _feasibility(self) -> None:
        """Budgets out of reach even at MAX_AMOUNT: fail before training."""
        if not self.spec.budgets:
            return
        saved = self.masks.state_dict()
        PruneMethod.update_masks(self, 0, MAX_AMOUNT)   # plain selection, whatever the method
        fig = self.figures()
        self.masks.load_state_dict(saved)
        if not check_budgets(self.spec.budgets, fig):
            raise BudgetError(
                f"budgets {', '.join(map(str, self.spec.budgets))} cannot be met with "
                f"{self.spec.granularity} pruning: even removing {100 * MAX_AMOUNT:.1f}% of the "
                f"{self.spec.orientation} resource gives " + describe(self.spec.budgets, fig,
                                                                      self.dense_figures))

    # ------------------------------------------------------------------ TrainHook
    def on_train_begin(self, trainer) -> None:
        self.sched = self.derive_schedule(trainer)
        self._prev_amount = self.amount
        self.log.meta.setdefault("schedule", dict(self.sched))
        if not getattr(self, "_feasible_checked", False):
            self._feasible_checked = True
            self._feasibility()

    def after_backward(self, trainer) -> None:
        if not self.done:
            self.criterion.after_backward()

    def before_optimizer_step(self, trainer) -> None:
        if "ft-rewind" in self.spec.variant and self.sched is not None:
            lr = rewound_lr(trainer, self.sched["start"], self.sched["end"])
            if lr is not None:
                for g in trainer.optimizer.param_groups:
                    g["lr"] = lr

    def after_step(self, trainer) -> None:
        if not self.done and self.is_decision_step(trainer.step):
            self.decide(trainer, trainer.step)
            if trainer.step >= self.sched["end"]:
                self.finish_pruning(trainer)

    def finish_pruning(self, trainer) -> None:
        """End of the pruning window: freeze the masks."""
        self.masks.harden()
        self.done = True
        if self.spec.budgets and not self.met:
            fig = self.figures()
            if not check_budgets(self.spec.budgets, fig):
                raise BudgetError(
                    f"budgets {', '.join(map(str, self.spec.budgets))} not met by the end of the "
                    f"pruning schedule ({100 * self.amount:.1f}% of the {self.spec.orientation} "
                    f"resource removed); closest: " + describe(self.spec.budgets, fig,
                                                               self.dense_figures))
            self.met = True

    def on_epoch_end(self, trainer, metrics: Dict[str, float]) -> None:
        self.log.epoch(metrics.get("epoch", trainer.epoch), trainer.step, metrics, self.last_figures)

    def on_train_end(self, trainer) -> None:
        if not self.done:
            self.finish_pruning(trainer)
        self.masks.harden()
        self.criterion.close()

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> Dict[str, Any]:
        return {"masks": self.masks.state_dict(), "criterion": self.criterion.state_dict(),
                "log": self.log.state_dict(), "amount": float(self.amount),
                "prev_amount": float(getattr(self, "_prev_amount", 0.0)),
                "done": bool(self.done), "met": bool(self.met),
                "collapse_ref": -1.0 if self._collapse_ref is None else float(self._collapse_ref),
                "last_figures": {k: float(v) for k, v in self.last_figures.items()},
                "extra": self.extra_state()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.masks.load_state_dict(state["masks"])
        self.criterion.load_state_dict(state["criterion"])
        self.log.load_state_dict(state["log"])
        self.amount = float(state["amount"])
        self._prev_amount = float(state.get("prev_amount", self.amount))
        self.done, self.met = bool(state["done"]), bool(state["met"])
        ref = float(state.get("collapse_ref", -1.0))
        self._collapse_ref = None if ref < 0 else ref
        self.last_figures = dict(state.get("last_figures", self.last_figures))
        self.load_extra_state(state.get("extra", {}))
        self._feasible_checked = True

    def extra_state(self) -> Dict[str, Any]:
        return {}

    def load_extra_state(self, state: Mapping[str, Any]) -> None: ...


__all__ = ["PruneSpec", "PruneMethod", "MAX_AMOUNT"]
