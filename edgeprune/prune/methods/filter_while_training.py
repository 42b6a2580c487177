"""Filter pruning inside the training loop (no separate retrain phase).

Channels (filters, with every coupled member of their group) are ranked by the L1 norm of their
producer rows or by their mean post-ReLU activation, and removed with hard masks at a handful of
points of normal training: at the end of each epoch of the pruning window (at least 4 points
when there are few epochs), the amount following the cubic ramp. The remaining steps of training
repair the damage, so the pruned network costs no extra epochs. The masked channels are removed
physically at export (OUT/shrunk.pt2).
"""
from __future__ import annotations

from .base import PruneMethod


class FilterWhileTraining(PruneMethod):
    name = "filter_while_training"
    soft = False
    granularities = ("channel",)
    criteria = ("l1", "l2", "mean_act", "taylor", "density", "apoz")

    def derive_schedule(self, trainer):
        s = super().derive_schedule(trainer)
        points = max(4, trainer.config.epochs)
        spe = s["steps_per_epoch"]
        window = s["end"] - s["start"]
        if self.spec.interval is None:
            # epoch boundaries when there are enough epochs, else `points` evenly spaced steps
            s["interval"] = spe if window >= 4 * spe else max(1, window // points)
        return s
