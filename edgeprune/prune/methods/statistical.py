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

* Decisions every ``interval`` steps: as often as DECISION_BUDGET (5 %) of the training time
  allows by a cost estimate of a decision (derive_schedule), at least 20 and at most about 200
  over the window; the statistics are recomputed each time over the *surviving* weights.
* c_k is derived from where the layer must be: its kept count follows the cubic trajectory of
  Zhu & Gupta 2017 from dense to its goal, n_keep(p) = n - (n - n*_k) (1 - (1 - p)^3) at
  progress p of the pruning window (fast early, slow at the end, when the survivors matter most).
  c_k is the value that puts t_k = mu_k + c_k sigma_k where the rule above, hysteresis included,
  leaves exactly n_keep(p) weights kept (a selection: t is the (n_keep + 1)-th largest of
  |w| / 0.9 over kept and |w| / 1.1 over pruned weights): c_k = (t_k - mu_k) / sigma_k. Weights that grew past 1.1 t_k are spliced back and as
  many weaker ones drop out. (A closed form from an exponential-tail model of the magnitudes,
  c_k = -1 + ln(d_k / d*_k) / n for a constant decay rate, stalls on real, lighter tails:
  measured on LeNet-5, sparsity stayed near 80 % until the window's end; aiming at the m-th
  smallest survivor without counting the hysteresis left the last decision a large catch-up.)
* The goal density d*_k of each layer comes from the orientation (orientation.select at the
  run's amount: memory / workload / target), i.e. the one number every method shares.
* Guards: a decision never prunes a layer past its goal, the last decision lands exactly on the
  goal, both by moving the fewest weights (the weakest of those the rule keeps are dropped, or
  the strongest of those kept before come back), and a layer at its goal keeps its last
  threshold (weights can still swap in and out across the hysteresis band).
* A weight spliced back restarts at 0 (as in RigL): its straight-through shadow value was moved
  by the optimiser while it did not act on the loss, and splicing it in at that value changed the
  function at once (see _splice_at_zero and benchmarks/diagnose_statistical.py).
* After the window the masks are hardened; the last quarter of training fine-tunes.

Biases are pruned with their layer's threshold (as DNS does) at weight granularity; that is what
lets whole units die and fold away (params_compression counts biases). A bias spliced back
restarts at 0 too.

Issue 14 (LeNet-300-100 / Fashion-MNIST collapsing at 40x-80x) traced the collapse to
regrowth, not to bias pruning alone: the fixes above (landing, splice at zero, cadence) are
measured one by one in benchmarks/results/diagnose_statistical.md.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Dict, List, Mapping

import torch

from .base import PruneMethod
from ..orientation import Family, protected, resource, select

# Cost of one decision in training steps ~= DECISION_COST x prunable weights / (batch x MACs of
# one sample): a decision is a few passes over every weight, a step about 3 x batch x MACs.
# Measured 661-885 on LeNet-5, LeNet-300-100, ResNet-8 and DS-CNN, median 761
# (benchmarks/train_throughput.py, variant "decision", column decision_cost_k; rows in
# benchmarks/results/train_throughput.json).
DECISION_COST = 760.0
# Share of the training time the decisions may take: the interval between two decisions is at
# least the decision's cost divided by this (the issue-14 goal is <= 10 % overhead per epoch,
# soft masks themselves take 1-5 % of a LeNet-5 step).
DECISION_BUDGET = 0.05
# The fewest decisions over a window, whatever they cost (a short run still ramps in small steps;
# v1 made 26-43 on the benchmarks' runs).
MIN_DECISIONS = 20


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
        self._goal_quarter = -1
        pb = self.spec.prune_bias
        self.prune_bias = (self.spec.granularity.kind == "weight") if pb is None else bool(pb)
        self._fisher: Dict[str, torch.Tensor] = {}   # sum of squared gradients since the last goal
        self._fisher_steps = 0

    # ------------------------------------------------------------------ loss-aware allocation
    def loss_aware_allocation(self) -> bool:
        """Whether the per-layer goals come from estimated loss increases (OBD) instead of LAMP."""
        return (self.spec.orientation in ("workload", "target")
                and self.spec.granularity.kind in ("weight", "kernel")
                and "obd-alloc" in self.spec.variant)

    def after_backward(self, trainer) -> None:
        super().after_backward(trainer)
        if self.done or not self.loss_aware_allocation():
            return
        with torch.no_grad():
            for node, mod in self.masks.layers.items():
                g = self.masks.dense(mod, "weight").grad
                if g is None:
                    continue
                acc = self._fisher.get(node)
                self._fisher[node] = g.square() if acc is None else acc.add_(g.square())
            self._fisher_steps += 1

    def allocation_families(self, fams: List[Family]) -> List[Family]:
        """The families the per-layer goals are selected from: with the loss-aware allocation,
        each weight scores its OBD saliency 1/2 F_ii w_i^2 (LeCun, Denker & Solla 1990, "Optimal
        Brain Damage", with the diagonal Hessian taken as the empirical Fisher: the mean squared
        mini-batch gradient since the last goal), an estimate of the loss increase its removal
        causes, on one scale across layers."""
        if not self.loss_aware_allocation() or not self._fisher_steps:
            return fams
        out = []
        for f in fams:
            fis = self._fisher.get(f.node)
            if fis is None:
                return fams
            w = self.masks.dense_weight(f.node).detach()
            sal = 0.5 * (fis / self._fisher_steps) * w.square()
            if len(f.shape) == 2 and sal.dim() == 4:     # kernel units: the kernel's sum
                sal = sal.sum((2, 3))
            out.append(dataclasses.replace(f, scores=sal.flatten().float()))
        self._fisher, self._fisher_steps = {}, 0
        return out

    def families(self):
        fams = super().families()
        if "dead-path" in self.spec.variant and self.spec.granularity.kind == "weight":
            dead = self._dead_path_weights()
            for f in fams:
                d = dead.get(f.node)
                if d is not None and bool(d.any()):
                    f.scores = f.scores.clone()
                    f.scores[d.flatten()] = 0.0
        return fams

    @torch.no_grad()
    def _dead_path_weights(self) -> Dict[str, torch.Tensor]:
        """Per layer, the kept weights that cannot change any output under the current masks:
        those reading a channel that carries nothing (every weight into it and its bias pruned)
        and those writing a channel nobody reads (every weight reading it pruned). A channel
        with f(0) != 0 on its way (sigmoid, tanh, BN) is left alone."""
        from ...layergraph import OpKind
        graph = self.masks.graph
        if any(n.op in (OpKind.SIGMOID, OpKind.TANH, OpKind.SOFTMAX) for n in graph.nodes):
            return {}
        wm, bm = self.masks.weight_masks, self.masks.bias_masks
        out: Dict[str, torch.Tensor] = {}
        for g in graph.prunable_groups():
            empty = torch.ones(g.size, dtype=torch.bool)
            unread = torch.ones(g.size, dtype=torch.bool)
            has_out = has_in = False
            for m in g.members:
                if m.node not in wm or m.role not in ("out", "in"):
                    empty[:] = False                  # BN, depthwise: not analysed
                    continue
                w = wm[m.node]
                if m.role == "out":
                    has_out = True
                    live = w.reshape(w.shape[0], -1).any(1)
                    b = getattr(self.masks.layers[m.node], "bias", None)
                    if b is not None:
                        live |= bm.get(m.node, torch.ones(w.shape[0], dtype=torch.bool))
                    empty &= ~live[:g.size] if live.numel() >= g.size else torch.zeros_like(empty)
                else:
                    has_in = True
                    cols = w.reshape(w.shape[0], w.shape[1], -1).any(2).any(0)
                    blk = cols[m.offset * m.repeat:(m.offset + g.size) * m.repeat]
                    unread &= ~blk.reshape(g.size, m.repeat).any(1)
            if not has_out:
                empty[:] = False
            if not has_in:
                unread[:] = False
            for m in g.members:
                if m.node not in wm or m.role not in ("out", "in"):
                    continue
                w = wm[m.node]
                d = out.setdefault(m.node, torch.zeros_like(w))
                if m.role == "out" and bool(unread.any()):
                    d[:g.size][unread] = True
                elif m.role == "in" and bool(empty.any()):
                    ch = empty.repeat_interleave(m.repeat)
                    sel = torch.zeros(w.shape[1], dtype=torch.bool)
                    sel[m.offset * m.repeat:(m.offset + g.size) * m.repeat] = ch
                    d[:, sel] = True
        return {k: v & wm[k] for k, v in out.items()}

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
        |w| > 1.1 t) leaves `want` weights kept. A weight stays/comes back iff its |w| / 0.9
        (kept) or |w| / 1.1 (pruned) exceeds t, so t is the (want + 1)-th largest of those
        values (one selection instead of a bisection; ties can leave fewer than `want`)."""
        v = torch.where(kept, s / 0.9, s / 1.1)
        if want >= v.numel():
            return 0.0
        if want <= 0:
            return float(v.max())
        return float(torch.kthvalue(v, v.numel() - want).values)

    @staticmethod
    def _land(s: torch.Tensor, kept: torch.Tensor, new_kept: torch.Tensor, target_keep: int,
              last: bool, prot: torch.Tensor) -> torch.Tensor:
        """Never below the goal; exactly on it at the last decision - by moving as few weights as
        possible: drop the weakest of those the rule keeps, or give back the strongest of those
        kept before this decision (then of the others). Re-selecting the top-k of all dense
        magnitudes instead spliced ~300 shadow weights into LeNet-300-100's fc1 at 80x in one
        step and cost 16-36 pt of training accuracy (benchmarks/diagnose_statistical.py)."""
        nk = int(new_kept.sum())
        if nk > target_keep and last:
            cand = (new_kept & ~prot).nonzero().flatten()
            order = cand[torch.argsort(s[cand], stable=True)]
            new_kept = new_kept.clone()
            new_kept[order[:nk - target_keep]] = False
        elif nk < target_keep:
            new_kept = new_kept.clone()
            for pool in (kept & ~new_kept, ~kept & ~new_kept):
                need = target_keep - int(new_kept.sum())
                if need <= 0:
                    break
                cand = pool.nonzero().flatten()
                order = cand[torch.argsort(s[cand], descending=True, stable=True)]
                new_kept[order[:need]] = True
        return new_kept

    def derive_schedule(self, trainer) -> Dict[str, int]:
        """Decisions as often as DECISION_BUDGET of the training time allows (about 200 at most),
        and at least MIN_DECISIONS over the window.

        Many small decisions beat few large ones: on LeNet-300-100 / Fashion-MNIST at 80x, 105
        decisions instead of 26 (one every 29 steps instead of 117) gave +0.7 pt
        (benchmarks/diagnose_statistical.py, variant v2-every29). A fixed cap per epoch (the base
        class: 4) under-decides on long epochs and over-spends on short ones (MNIST-10k's 63-step
        epochs take 1.7 s: 4 decisions were 20-50 % overhead); the cost estimate scales with the
        model instead."""
        sched = super().derive_schedule(trainer)
        if self.spec.interval is None:
            g = self.dense_graph
            macs = max(sum(n.macs for n in g.compute_nodes()), 1)
            n_w = sum(int(self.masks.dense_weight(n).numel()) for n in self.masks.layers)
            batch = max(int(getattr(trainer.config, "batch_size", 128)), 1)
            cost_steps = DECISION_COST * n_w / (batch * macs)
            window = sched["end"] - sched["start"]
            # never fewer than MIN_DECISIONS over the window (short runs, tiny models)
            sched["interval"] = max(1, window // self.decisions_target,
                                    min(math.ceil(cost_steps / DECISION_BUDGET),
                                        window // MIN_DECISIONS))
        return sched

    def _goal_due(self, step: int) -> bool:
        quarter = int(4 * self.progress(step))
        if self._goal is None or quarter > self._goal_quarter or step >= self.sched["end"]:
            self._goal_quarter = quarter
            return True
        return False

    def update_masks(self, step: int, amount: float) -> None:
        fams = self.families()
        # the per-layer goals (the orientation's allocation at the run's amount) move slowly with
        # the weights: recompute them at every quarter of the window and at the last decision (a
        # selection sorts every weight of the model: on LeNet-300-100 it cost more than all
        # other decisions' work together when it ran every 5th decision)
        self._n_updates = getattr(self, "_n_updates", 0) + 1
        if self._goal_due(step):
            alloc = self.allocation_families(fams)
            if alloc is fams:
                sel = self.select(fams, self.goal_amount())
            else:
                sel = select(alloc, self.spec.orientation, self.goal_amount(), comparable=True)
            self._goal = {f.key: int(sel[f.key].sum()) for f in fams}
        goal = self._goal
        ramp = 1.0 - (1.0 - self.progress(step)) ** 3
        last = step >= self.sched["end"]
        pruned: Dict[str, torch.Tensor] = {}
        for f in fams:
            kept = self._kept(f)
            s = f.scores
            target_keep = max(int(f.n - goal[f.key]), 1)
            d = int(kept.sum())
            if d > target_keep:
                # where this layer should be now on the cubic trajectory to its goal
                want = max(target_keep, math.ceil(f.n - (f.n - target_keep) * ramp))
                if d > want:
                    ks = s[kept].double()
                    mu = float(ks.mean())
                    sd = float(ks.std(unbiased=False)) if ks.numel() > 1 else 0.0
                    if sd > 0:
                        t = self._threshold_for(s, kept, want)
                        c = (t - mu) / sd            # the c_k that puts mu + c sigma at t
                        self.coef[f.key] = c
                        self.thresholds[f.key] = max(mu + c * sd, 0.0)
            t = self.thresholds.get(f.key)
            if t is None:
                pruned[f.key] = ~kept
                continue
            prot = protected(f)
            new_kept = torch.where(kept, s > 0.9 * t, s > 1.1 * t) | prot
            new_kept = self._land(s, kept, new_kept, target_keep, last, prot)
            pruned[f.key] = ~new_kept
            self._splice_at_zero(f, new_kept & ~kept)
            if self.prune_bias and f.node is not None:
                self._bias_rule(f.node, t)
        from ..orientation import apply_selection
        apply_selection(self.masks, fams, pruned, self.spec.granularity)
        tot = rem = 0.0
        for f in fams:
            r = resource(f, self.spec.orientation)
            tot += float(r.sum())
            rem += float(torch.dot(r.float(), pruned[f.key].float()))
        self.amount = rem / tot if tot else 0.0

    @torch.no_grad()
    def _bias_rule(self, node: str, t: float) -> None:
        """DNS prunes biases with the layer's threshold; a bias spliced back starts at 0."""
        mod = self.masks.layers[node]
        b = getattr(mod, "parametrizations", None)
        if b is None or "bias" not in b:
            return
        dense = self.masks.dense(mod, "bias")
        bias = dense.abs()
        prev = self.masks.bias_masks.get(node, torch.ones_like(bias, dtype=torch.bool))
        new = torch.where(prev, bias > 0.9 * t, bias > 1.1 * t)
        dense[new & ~prev] = 0.0
        self.masks.bias_masks[node] = new

    @torch.no_grad()
    def _splice_at_zero(self, fam, back: torch.Tensor) -> None:
        """A unit spliced back enters contributing nothing, then trains from there.

        Its straight-through shadow value is not a trained weight: the optimiser moved it while it
        did not act on the loss (with Adam by about lr per step whatever the gradient's size),
        and putting it back at that value changed LeNet-300-100's function at once: at 80x the
        splices of one decision cost up to 50 pt of training accuracy
        (benchmarks/diagnose_statistical.py, variant bias+regrow vs bias+zero). Which units come
        back is still decided by the rule above, i.e. by how far the gradient moved them; their
        value restarts at 0 (as in RigL, Evci et al. 2020). Weights and kernels: the weight is
        zeroed; channels: the consumers' input columns of the channel are zeroed (its own filter
        keeps its values, so the gradient reaches the columns at once)."""
        if not bool(back.any()):
            return
        if fam.group is None:
            w = self.masks.dense_weight(fam.node)
            b = back.reshape(fam.shape)
            if b.dim() == 2 and w.dim() == 4:          # kernel units of a conv
                b = b[:, :, None, None].expand_as(w)
            w[b] = 0.0
            return
        chans = back.nonzero().flatten().tolist()
        for m in fam.group.members:
            if m.role != "in":
                continue
            mod = self.masks.node_module.get(m.node)
            if mod is None:
                continue
            w = self.masks.dense(mod, "weight")
            for c in chans:
                lo = (m.offset + c) * m.repeat
                w[:, lo:lo + m.repeat] = 0.0

    def apply_amount(self, step: int, amount: float) -> None:
        self.update_masks(step, amount)   # soft: the dense weights are kept

    def _bisect(self, step, lo, hi, at_hi):
        return at_hi   # thresholds, not an amount, drive this method: stop where budgets are met

    def extra_state(self) -> Dict[str, Any]:
        return {"thresholds": dict(self.thresholds), "coef": dict(self.coef),
                "goal": dict(self._goal or {}), "n_updates": int(getattr(self, "_n_updates", 0)),
                "goal_quarter": int(getattr(self, "_goal_quarter", -1)),
                "fisher": {k: v.clone() for k, v in self._fisher.items()},
                "fisher_steps": int(self._fisher_steps)}

    def load_extra_state(self, state: Mapping[str, Any]) -> None:
        self.thresholds = {k: float(v) for k, v in state.get("thresholds", {}).items()}
        self.coef = {k: float(v) for k, v in state.get("coef", {}).items()}
        self._goal = {k: int(v) for k, v in state.get("goal", {}).items()} or None
        self._n_updates = int(state.get("n_updates", 0))
        self._goal_quarter = int(state.get("goal_quarter", -1))
        self._fisher = {k: v.clone() for k, v in state.get("fisher", {}).items()}
        self._fisher_steps = int(state.get("fisher_steps", 0))
