"""Random pruning at initialisation: the baseline that importance criteria must beat.

Before the first step, units are drawn at random (uniform scores from the seed; the orientation
still decides how much each layer loses) and removed with hard masks; training then runs with
that fixed sparse structure. With budgets, the smallest amount that meets them is found before
training (no accuracy feedback exists at initialisation).
"""
from __future__ import annotations

from .base import PruneMethod
from ..budgets import BudgetError, check_budgets, describe


class RandomInit(PruneMethod):
    name = "random_init"
    soft = False
    criteria = ("random",)

    def on_train_begin(self, trainer) -> None:
        super().on_train_begin(trainer)
        if self.done:       # resumed
            return
        before = self.last_figures
        if self.spec.budgets:
            self.apply_amount(0, self.goal_amount())
            fig = self.figures()
            if not check_budgets(self.spec.budgets, fig):
                raise BudgetError("budgets not met by random pruning at initialisation: "
                                  + describe(self.spec.budgets, fig, self.dense_figures))
            fig = self._bisect(0, 0.0, self.goal_amount(), fig)
            self.masks.harden()
            self.met = True
        else:
            self.apply_amount(0, self.goal_amount())
        self._record(0, 0, before, self.figures(), "random pruning at initialisation")
        self.done = True
