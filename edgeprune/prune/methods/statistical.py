"""Statistical pruning: per-layer thresholds from the mean and standard deviation of |w|,
recomputed during normal training, with soft masks that let pruned weights grow back.

The threshold rule is the one of Dynamic Network Surgery (Guo, Yao & Chen, NIPS 2016, "Dynamic
Network Surgery for Efficient DNNs"; rule read from the authors' Caffe layer
``compress_conv_layer.cu``, kernels CCMomentCalc / CCMaskCalc):

    mu_k, sigma_k = mean and standard deviation of |w| over the non-zero (kept) weights and
                    biases of layer k
    t_k           = max(mu_k + c_k * sigma_k, 0)
    T(w) = 0      if T(w) = 1 and |w| <= 0.9 t_k          (prune)
    T(w) = 1      if T(w) = 0 and |w| >  1.1 t_k          (splice back)
    T(w)          unchanged otherwise                      (hysteresis band [0.9 t, 1.1 t])

The forward uses W * T; the gradient of the masked weights updates *every* dense weight
(straight-through), so a pruned weight keeps learning and is spliced back when it grows past
1.1 t_k.

What differs from DNS (where c_k, the mask-update probability (1 + gamma * iter)^-power and the
stop iteration are hand-tuned per layer) is that nothing is tuned here; the schedule is derived:

* Decisions every ``interval`` steps (about 200 over the pruning window, at most 4 per epoch;
  see base.py), the statistics recomputed each time over the *surviving* weights.
* c_k is derived from where the layer must be: its kept count follows the cubic trajectory of
  Zhu & Gupta 2017 from dense to its goal, n_keep(p) = n - (n - n*_k) (1 - (1 - p)^3) at
  progress p of the pruning window (fast early, slow at the end, when the survivors matter most).
  c_k is the value that puts t_k = mu_k + c_k sigma_k where the rule above, hysteresis included,
  leaves exactly n_keep(p) weights kept (found by bisection on t; the kept count falls as t
  grows): c_k = (t_k - mu_k) / sigma_k. Weights that grew past 1.1 t_k are spliced back and as
  many weaker ones drop out. (A closed form from an exponential-tail model of the magnitudes,
  c_k = -1 + ln(d_k / d*_k) / n for a constant decay rate, stalls on real, lighter tails:
  measured on LeNet-5, sparsity stayed near 80 % until the window's end; aiming at the m-th
  smallest survivor without counting the hysteresis left the last decision a large catch-up.)
* The goal density d*_k of each layer comes from the orientation (orientation.select at the
  run's amount: memory / workload / target), i.e. the one number every method shares.
* Guards: a decision never prunes a layer past its goal (it keeps the d*_k best instead), the
  last decision lands exactly on the goal, and a layer at its goal keeps its last threshold
  (weights can still swap in and out across the hysteresis band).
* After the window the masks are hardened; the last quarter of training fine-tunes.

Biases are pruned with their layer's threshold (as DNS does) at weight granularity; that is what
lets whole units die and fold away (params_compression counts biases).
"""
from __future__ import annotations

import math
from typing import Any, Dict, Mapping

import torch

from .base import PruneMethod
from ..orientation import protected, resource


class Statistical(PruneMethod):
    name = "statistical"
    soft = True
    granularities = ("weight", "kernel", "channel")
    criteria = ("l1", "l2", "taylor", "density", "apoz", "mean_act")
    decisions_target = 200
    bisect = False

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.thresholds: Dict[str, float] = {}
        self.coef: Dict[str, float] = {}          # the c_k of the last threshold, for the log
        self._goal = None
        pb = self.spec.prune_bias
        self.prune_bias = (self.spec.granularity.kind == "weight") if pb is None else bool(pb)

    def _kept(self, fam) -> torch.Tensor:
        if fam.group is not None:
            return self.masks.channel_keep[fam.group.id].clone()
        wm = self.masks.weight_masks[fam.node]
        if len(fam.shape) == 2 and wm.dim() == 4:
            return wm[:, :, 0, 0].flatten().clone()
        return wm.flatten().clone()

    @staticmethod
    def _threshold_for(s: torch.Tensor, kept: torch.Tensor, want: int) -> float:
        """The threshold t at which the DNS rule (prune kept |w| <= 0.9 t, splice back pruned
        |w| > 1.1 t) leaves `want` weights kept (bisection: the count falls as t grows)."""
        sk, sp = s[kept], s[~kept]

        def n_kept(t: float) -> int:
            return int((sk > 0.9 * t).sum()) + int((sp > 1.1 * t).sum())
        lo, hi = 0.0, float(s.max()) / 0.9 + 1e-12
        for _ in range(40):
            mid = 0.5 * (lo + hi)
            if n_kept(mid) > want:
                lo = mid
            else:
                hi = mid
        return hi

    def update_masks(self, step: int, amount: float) -> None:
        fams = self.families()
        # the per-layer goals (the orientation's allocation at the run's amount) move slowly with
        # the weights: recompute them every 5th decision and at the last one
        self._n_updates = getattr(self, "_n_updates", 0) + 1
        if self._goal is None or self._n_updates % 5 == 1 or step >= self.sched["end"]:
            sel = self.select(fams, self.goal_amount())
            self._goal = {f.key: int(sel[f.key].sum()) for f in fams}
        goal = self._goal
        ramp = 1.0 - (1.0 - self.progress(step)) ** 3
        last = step >= self.sched["end"]
        pruned: Dict[str, torch.Tensor] = {}
        for f in fams:
            kept = self._kept(f)
            s = f.scores.double()
            target_keep = max(int(f.n - goal[f.key]), 1)
            d = int(kept.sum())
            if d > target_keep:
                ks = s[kept]
                mu = float(ks.mean())
                sd = float(ks.std(unbiased=False)) if ks.numel() > 1 else 0.0
                # where this layer should be now on the cubic trajectory to its goal
                want = max(target_keep, math.ceil(f.n - (f.n - target_keep) * ramp))
                if d > want and sd > 0:
                    t = self._threshold_for(s, kept, want)
                    c = (t - mu) / sd            # the c_k that puts mu + c sigma at t
                    self.coef[f.key] = c
                    self.thresholds[f.key] = max(mu + c * sd, 0.0)
            t = self.thresholds.get(f.key)
            if t is None:
                pruned[f.key] = ~kept
                continue
            new_kept = torch.where(kept, s > 0.9 * t, s > 1.1 * t)
            new_kept |= protected(f)
            nk = int(new_kept.sum())
            if nk < target_keep or (last and nk > target_keep):
                order = torch.argsort(s, descending=True, stable=True)
                new_kept = torch.zeros_like(new_kept)
                new_kept[order[:target_keep]] = True
            pruned[f.key] = ~new_kept
            if self.prune_bias and f.node is not None:
                b = getattr(self.masks.layers[f.node], "parametrizations", None)
                if b is not None and "bias" in b:
                    bias = self.masks.dense(self.masks.layers[f.node], "bias").detach().abs().double()
                    prev = self.masks.bias_masks.get(f.node, torch.ones_like(bias, dtype=torch.bool))
                    self.masks.bias_masks[f.node] = torch.where(prev, bias > 0.9 * t, bias > 1.1 * t)
        from ..orientation import apply_selection
        apply_selection(self.masks, fams, pruned, self.spec.granularity)
        tot = sum(float(resource(f, self.spec.orientation).sum()) for f in fams)
        rem = sum(float(resource(f, self.spec.orientation)[pruned[f.key]].sum()) for f in fams)
        self.amount = rem / tot if tot else 0.0

    def apply_amount(self, step: int, amount: float) -> None:
        self.update_masks(step, amount)   # soft: the dense weights are kept

    def _bisect(self, step, lo, hi, at_hi):
        return at_hi   # thresholds, not an amount, drive this method: stop where budgets are met

    def extra_state(self) -> Dict[str, Any]:
        return {"thresholds": dict(self.thresholds), "coef": dict(self.coef),
                "goal": dict(self._goal or {}), "n_updates": int(getattr(self, "_n_updates", 0))}

    def load_extra_state(self, state: Mapping[str, Any]) -> None:
        self.thresholds = {k: float(v) for k, v in state.get("thresholds", {}).items()}
        self.coef = {k: float(v) for k, v in state.get("coef", {}).items()}
        self._goal = {k: int(v) for k, v in state.get("goal", {}).items()} or None
        self._n_updates = int(state.get("n_updates", 0))
