"""Activation-density pruning in training (Foldy-Porto & Panda 2020, "Activation Density driven
Energy-Efficient Pruning in Training", arXiv:2002.02949).

The activation density of a layer is the fraction of its post-ReLU activations that are non-zero,
measured on the training batches with forward hooks. A layer whose outputs are mostly zero uses
only part of its width, so at each decision point (the end of every epoch of the pruning window;
4 evenly spaced points when there are fewer than 4 epochs) every channel group followed by a ReLU
is resized to

    new_width = max(1, ceil(density * width))

keeping the channels with the highest own density (or mean activation with ``--criterion
mean_act``). The model is shrunk *physically* (``Trainer.shrink_channels``: smaller tensors, a
rebuilt optimizer), so every following step is cheaper. Groups without a ReLU after them (the
convolutions of Caffe's LeNet-5) have no meaningful density and keep their width.

The widths come from the densities, not from a schedule. The run's amount (``--sparsity``), when
given, caps the total removed (the densities' proposal is scaled back to the cap); budgets stop
the shrinking as soon as they are met, like every method.
"""
from __future__ import annotations

import math
from typing import Dict

import torch

from .base import MAX_AMOUNT, PruneMethod
from ..budgets import check_budgets, describe


class ActivationDensity(PruneMethod):
    name = "activation_density"
    soft = False
    granularities = ("channel",)
    criteria = ("density", "apoz", "mean_act")

    def derive_schedule(self, trainer):
        s = super().derive_schedule(trainer)
        spe = s["steps_per_epoch"]
        window = s["end"] - s["start"]
        if self.spec.interval is None:
            s["interval"] = spe if window >= 4 * spe else max(1, window // 4)
        return s

    def goal_amount(self) -> float:
        return self.spec.amount if self.spec.amount is not None else MAX_AMOUNT

    def _removed_fraction(self, sizes: Dict[int, int]) -> float:
        """Fraction of the orientation's resource (vs the dense model) gone at these sizes."""
        g = self.graph.with_group_sizes(sizes) if sizes else self.graph
        if self.spec.orientation == "workload":
            now, dense = sum(n.macs for n in g.compute_nodes()), \
                sum(n.macs for n in self.dense_graph.compute_nodes())
        else:
            now, dense = g.total_params, self.dense_graph.total_params
        return 1.0 - now / max(dense, 1)

    def proposal(self) -> Dict[int, torch.Tensor]:
        keep: Dict[int, torch.Tensor] = {}
        for g in self.graph.prunable_groups():
            dens = self.criterion.density(g)
            if dens is None or g.size < 2:
                continue
            new = max(1, math.ceil(float(dens.mean()) * g.size))
            if new >= g.size:
                continue
            order = torch.argsort(self.criterion.channel_scores(g).double(), descending=True,
                                  stable=True)
            k = torch.zeros(g.size, dtype=torch.bool)
            k[order[:new]] = True
            keep[g.id] = k
        return keep

    def _scaled(self, keep: Dict[int, torch.Tensor], alpha: float) -> Dict[int, torch.Tensor]:
        """Remove only `alpha` of each proposed reduction (channels in the proposal's order)."""
        out = {}
        for gid, k in keep.items():
            g = self.graph.groups[gid]
            drop = g.size - int(k.sum())
            n_keep = g.size - int(math.floor(alpha * drop))
            if n_keep >= g.size:
                continue
            order = torch.argsort(self.criterion.channel_scores(g).double(), descending=True,
                                  stable=True)
            kk = torch.zeros(g.size, dtype=torch.bool)
            kk[order[:n_keep]] = True
            out[gid] = kk
        return out

    def decide(self, trainer, step: int) -> None:
        if self.spec.budgets:
            self._check_collapse(trainer)
        keep = self.proposal()
        self.criterion.reset()
        if not keep:
            return
        cap = self.goal_amount()
        sizes = lambda kp: {gid: int(k.sum()) for gid, k in kp.items()}  # noqa: E731
        if self._removed_fraction(sizes(keep)) > cap:
            lo, hi = 0.0, 1.0
            for _ in range(12):
                mid = 0.5 * (lo + hi)
                if self._removed_fraction(sizes(self._scaled(keep, mid))) > cap:
                    hi = mid
                else:
                    lo = mid
            keep = self._scaled(keep, lo)
            if not keep:
                self.done = True
                return
        before = self.last_figures
        # bake and drop the masks in place first: the shrink deep-copies the model, and a copy
        # of a parametrized module shares its class with the original
        self.criterion.close()
        self.masks.remove()
        trainer.shrink_channels(keep, graph=self.graph)     # -> on_model_replaced rebuilds masks
        after = self.figures()
        self.amount = self._removed_fraction({})
        note = "shrunk " + ", ".join(f"group {gid}: {int(k.numel())}->{int(k.sum())}"
                                     for gid, k in sorted(keep.items()))
        if self.spec.budgets and check_budgets(self.spec.budgets, after):
            self.met = self.done = True
            note += "; budgets met: " + describe(self.spec.budgets, after, self.dense_figures)
        self._record(step, trainer.epoch, before, after, note)

    def _feasibility(self) -> None:
        return  # sizes come from the densities; unmet budgets are reported at the end
