"""Pruning engine: masks at four granularities, importance criteria, five methods plugged into the
training loop, memory / workload / target-cost orientation with budgets, a decision log, and
physical shrinking (shrink.py). See docs/pruning.md.

Python API::

    from edgeprune.prune import PruneConfig, run_prune
    result = run_prune(PruneConfig(model="lenet5", data="mnist-10k", method="statistical",
                                   granularity="weight", orientation="memory", sparsity=0.99,
                                   epochs=10), out_dir="out/lenet5")
"""
from .masks import (GRANULARITIES, Granularity, PruneError, PruningMasks, parse_granularity,
                    baked_state_dict, count_nonzero_params, effective_macs, dead_channels,
                    plain_copy)
from .criteria import CRITERIA, make_criterion
from .budgets import Budget, BudgetError, parse_budgets
from .orientation import ORIENTATIONS, select
from .decision_log import DecisionLog

__all__ = ["GRANULARITIES", "Granularity", "PruneError", "PruningMasks", "parse_granularity",
           "baked_state_dict", "count_nonzero_params", "effective_macs", "dead_channels",
           "plain_copy", "CRITERIA", "make_criterion", "ORIENTATIONS", "Budget", "BudgetError",
           "parse_budgets", "select", "DecisionLog", "PruneConfig", "PruneResult", "run_prune",
           "METHODS"]


def __getattr__(name):
    # the runner and methods pull in the training loop; import them on first use
    if name in ("PruneConfig", "PruneResult", "run_prune"):
        from . import runner
        return getattr(runner, name)
    if name == "METHODS":
        from .methods import METHODS
        return METHODS
    raise AttributeError(name)
