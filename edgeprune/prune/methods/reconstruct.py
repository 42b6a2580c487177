"""Retraining-free pruning: prune a trained model layer by layer and re-solve the kept weights so
each layer's outputs match the dense layer's on N unlabelled calibration images.

For users with a trained model and some data but no training pipeline: no labels, no gradient
steps, one pass over the layers (``edgeprune prune MODEL --weights W --method reconstruct``).

**The problem per layer.** A conv/linear layer computes ``y = W x`` (the bias is the weight of a
constant-1 input; a conv is a linear map of its im2col patches, per group). With ``X_d`` the
layer's inputs in the dense model and ``X_p`` its inputs in the model pruned so far (the
*cascade* form: the inputs come from the already-pruned, already-re-solved layers before it),
the kept weights ``W'`` (support ``S``) minimise

    || W X_d - W' X_p ||^2 + lambda || W' - W ||^2,        W' = 0 outside S.

With ``H = X_p X_p^T``, ``C = X_d X_p^T`` and ``H_l = H + lambda I`` this is, per output row,
the linear system ``W'_S H_l[S, S] = (W C + lambda W)_S``: exact least squares for a given support.
``lambda`` is at least 1 % of the mean diagonal of H (the dampening of SparseGPT, Frantar &
Alistarh 2023, and of OBC), which keeps the systems well posed; above that floor each layer takes
the lambda that minimises generalised cross-validation (Golub, Heath & Wahba 1979) of its own
least-squares problem, computed from H, C and D alone. With few calibration images a wide layer
(LeNet-5's fc1: 801 inputs, 1,000 images) otherwise fits the calibration set and loses on new
images; a conv (images x positions rows) keeps the floor. Putting the ridge around the dense
weights rather than 0 means that a layer whose inputs did not change and which loses nothing is
reproduced exactly, whatever lambda.

**Which weights go (weight granularity): OBS-style, iterative.** The saliency of removing weight
q from a row with support S is the Optimal Brain Surgeon increase of the squared error,
``w_q^2 / [H_l[S, S]^-1]_qq`` (Hassibi & Stork 1993; per output row as in OBC, Frantar & Alistarh
2022). OBC removes one weight at a time and updates the rest (O(d^3) per row: minutes for
LeNet-5's fc1 here); SparseGPT's single column sweep is fast but fixes the same sparsity in every
block of 128 inputs. This method takes the middle road: in rounds that each remove at most half
of the weights still kept (1 - 1/2^r), it removes the lowest-saliency weights of the layer (rows
compete, so rows keep different counts) and re-solves every row exactly on its new support, which
also gives the next round's ``[H_S^-1]_qq``. Why not Net-Trim's convex program (Aghasi et al.
2017): it yields a sparse W' by an L1-regularised solve whose sparsity is set only indirectly
through its error bound, so it cannot meet a per-layer allocation (or a budget) without a search
over that bound, each point a full convex solve; for a fixed support it gives the same exact
least-squares weights as above.

**Which channels go (channel granularity), ThiNet / CP style.** A channel of a group is scored by
the OBS increase of its consumers' output error when their input columns of that channel are
removed and the other columns compensate: ``sum_consumers trace(W_Q [H_l^-1]_QQ^-1 W_Q^T)``
(the group form of the saliency above; ThiNet scores by the consumers' reconstruction, CP by a
LASSO on the same least-squares problem). The channels are removed in the same halving rounds;
after each round every layer, in order, re-solves its kept weights (the consumers' kept input
columns, all kept rows) towards the dense outputs, so a removed channel's contribution is taken
over by the remaining ones and the model gets the real speed-up of a thinner layer with no
retraining.

**How much each layer keeps** comes from the orientation, as in every method (orientation.select
on the saliencies above, LAMP-normalised: memory / workload / target / uniform, budgets by
bisection on the amount). Biases are never pruned (they are re-solved with the weights).
"""
from __future__ import annotations

import math
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from .base import PruneMethod
from ..criteria import Criterion
from ..masks import PruneError, plain_copy
from ..budgets import BudgetError, check_budgets, describe
from ..orientation import apply_selection

# SparseGPT / OBC dampening: lambda = DAMP x mean(diag(H)) (Frantar & Alistarh 2022, 2023).
DAMP = 0.01
# Ridge candidates above the floor DAMP: lambda = DAMP x mean(diag H) x 2^k, k = 0..GCV_STEPS
# (0: the floor alone); the grid's top, 2^12 x 1 % = 41 x mean(diag H), pulls a layer almost
# onto its dense weights.
GCV_STEPS = 12
# Channel ranking: one-shot single-channel OBS (False, the default) or greedy sequential OBS
# removal (True). The greedy ranking fixes redundant pairs (tests), but its scores, LAMP-
# normalised, shift the allocation towards fc1 and lost accuracy on LeNet-5 / Fashion-MNIST at
# 3x MACs (benchmarks/results/pruning_v2.md, "Levers tried").
GREEDY = False
# Calibration images per forward batch (memory: LeNet-5's conv1 im2col of 100 images is 23 MB).
BATCH = 100


class _Stop(Exception):
    """Raised by the capture hook: the forward pass is not needed past the layer."""


class CalibrationSaliency(Criterion):
    """OBS saliencies from calibration statistics; magnitude until they are computed (the
    feasibility check of budgets runs before calibration)."""

    name = "obs"

    def __init__(self, masks, seed: int = 0):
        super().__init__(masks, seed)
        self.weights: Dict[str, torch.Tensor] = {}
        self.channels: Dict[int, torch.Tensor] = {}

    def weight_scores(self, node: str) -> torch.Tensor:
        if node in self.weights:
            return self.weights[node]
        return self.masks.dense_weight(node).detach().abs()

    def channel_scores(self, group) -> torch.Tensor:
        if group.id in self.channels:
            return self.channels[group.id]
        return super().channel_scores(group)


class _LayerStats:
    """Per conv group, over im2col rows (+ a ones column): H = X_p^T X_p, C = X_d^T X_p and
    D = X_d^T X_d (D gives the layer's reconstruction error without another pass)."""

    def __init__(self, mod: nn.Module):
        self.mod = mod
        self.groups = getattr(mod, "groups", 1)
        self.bias = getattr(mod, "bias", None) is not None
        self.H: Optional[torch.Tensor] = None      # (G, d, d) float64
        self.C: Optional[torch.Tensor] = None
        self.D: Optional[torch.Tensor] = None
        self.rows = 0
        self.lam: Optional[torch.Tensor] = None   # ridge per group, chosen once (GCV)

    def patches(self, x: torch.Tensor) -> torch.Tensor:
        """(G, rows, d) inputs of the layer's dot products, ones column last when biased."""
        m = self.mod
        if isinstance(m, nn.Conv2d):
            if isinstance(m.padding, str):
                raise PruneError(f"reconstruct: conv padding '{m.padding}' is not supported")
            cols = F.unfold(x.contiguous(), m.kernel_size, dilation=m.dilation,
                            padding=m.padding, stride=m.stride)       # (N, C*kh*kw, L)
            n, d, L = cols.shape
            cols = cols.transpose(1, 2).reshape(n * L, self.groups, d // self.groups)
        else:
            cols = x.reshape(-1, x.shape[-1])[:, None, :]
        if self.bias:
            cols = torch.cat([cols, torch.ones(cols.shape[0], cols.shape[1], 1,
                                               dtype=cols.dtype)], 2)
        return cols.transpose(0, 1)

    @staticmethod
    def _acc(total: Optional[torch.Tensor], a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        # float32 BLAS products per batch (LeNet-5's conv2: 6,400 rows x 501 columns per 100
        # images), summed in float64 over batches
        prod = (a.transpose(1, 2) @ b).double()
        return prod if total is None else total + prod

    def add(self, xd: torch.Tensor, xp: Optional[torch.Tensor]) -> None:
        """One batch; xp None: the pruned layer sees the dense inputs (H = C = D)."""
        pd = self.patches(xd)
        if xp is None:
            self.D = self._acc(self.D, pd, pd)
            self.H, self.C = self.D, self.D
        else:
            pp = self.patches(xp)
            self.H = self._acc(self.H, pp, pp)
            self.C = self._acc(self.C, pd, pp)
            self.D = self._acc(self.D, pd, pd)
        self.rows += pd.shape[1]

    def rel_error(self, W: torch.Tensor, Wn: torch.Tensor, rows: torch.Tensor) -> float:
        """||X_d W^T - X_p Wn^T|| / ||X_d W^T|| over the output rows `rows` (G, O/G) bool."""
        num = den = 0.0
        for g in range(W.shape[0]):
            w, wn = W[g][rows[g]], Wn[g][rows[g]]
            d = float(torch.einsum("oi,ij,oj->", w, self.D[g], w))
            num += d - 2 * float(torch.einsum("oi,ij,oj->", w, self.C[g], wn)) \
                + float(torch.einsum("oi,ij,oj->", wn, self.H[g], wn))
            den += d
        return math.sqrt(max(num, 0.0) / max(den, 1e-30))


def _weight_rows(mod: nn.Module, w: torch.Tensor, b: Optional[torch.Tensor]) -> torch.Tensor:
    """(G, O/G, d) rows of the layer's dot products, bias last."""
    g = getattr(mod, "groups", 1)
    o = w.shape[0]
    rows = w.reshape(g, o // g, -1).double()
    if b is not None:
        rows = torch.cat([rows, b.reshape(g, o // g, 1).double()], 2)
    return rows


class Reconstruct(PruneMethod):
    """One-shot: ``prune_once(x_calibration)``; no training hook is needed."""

    name = "reconstruct"
    soft = False
    retraining_free = True
    granularities = ("weight", "channel")
    criteria = ("obs",)

    def _build(self, model: nn.Module, graph) -> None:
        from ..masks import PruningMasks
        self.model = model
        self.graph = graph
        self.masks = PruningMasks(model, graph, soft=False, exclude=self.spec.exclude)
        self.criterion = CalibrationSaliency(self.masks, self.spec.seed)
        self._marginal = None
        self.errors: Dict[str, float] = {}

    # ------------------------------------------------------------------ calibration passes
    def _forward_grab(self, model: nn.Module, mods: Dict[str, nn.Module], xb: torch.Tensor,
                      stop_at: Optional[str]) -> Dict[str, torch.Tensor]:
        """Inputs of `mods` on one batch (the pass stops at `stop_at` when given)."""
        got: Dict[str, torch.Tensor] = {}
        hooks = []
        for key, mod in mods.items():
            def hook(_m, args, key=key):
                got[key] = args[0].detach()
                if key == stop_at:
                    raise _Stop
            hooks.append(mod.register_forward_pre_hook(hook))
        try:
            model(xb)
        except _Stop:
            pass
        finally:
            for h in hooks:
                h.remove()
        return got

    def _dense_stats(self, dense: nn.Module, x: torch.Tensor, nodes: List[str]) -> Dict[str, _LayerStats]:
        """Stats of every layer in `nodes` with the dense inputs (one pass over the data)."""
        by_target = dict(dense.named_modules())
        mods = {n: by_target[self.graph[n].target] for n in nodes}
        stats = {n: _LayerStats(self.masks.node_module[n]) for n in nodes}
        for i in range(0, len(x), BATCH):
            got = self._forward_grab(dense, mods, x[i:i + BATCH], None)
            for n in nodes:
                stats[n].add(got[n], None)
        return stats

    def _stats(self, dense: nn.Module, node: str, x: torch.Tensor) -> _LayerStats:
        """Stats of one layer: dense inputs vs the inputs the pruned model gives it now."""
        mod_d = dict(dense.named_modules())[self.graph[node].target]
        st = _LayerStats(self.masks.node_module[node])
        for i in range(0, len(x), BATCH):
            xb = x[i:i + BATCH]
            xd = self._forward_grab(dense, {node: mod_d}, xb, node)[node]
            xp = self._forward_grab(self.model, {node: self.masks.node_module[node]}, xb, node)[node]
            st.add(xd, xp)
        return st

    # ------------------------------------------------------------------ solving
    @staticmethod
    def _gcv_lambda(st: _LayerStats, rows: torch.Tensor) -> torch.Tensor:
        """Per group, the ridge lambda that minimises generalised cross-validation (Golub, Heath
        & Wahba 1979) of the layer's least-squares problem on the calibration rows:
        GCV = RSS(lambda) / (1 - tr A(lambda) / N)^2 with A the hat matrix, tr A =
        sum e_i / (e_i + lambda) over the eigenvalues of H on its live columns. Both come from
        H, C and D, so no extra pass. Candidates: DAMP x mean(diag H) (SparseGPT's dampening,
        the floor) times 2^k, k = 0..GCV_STEPS; the floor wins where the rows determine the
        weights well (convs: N = images x positions), more where they do not (LeNet-5's fc1:
        801 inputs, 1,000 images)."""
        lams = []
        for g in range(st.H.shape[0]):
            H, C, D, W = st.H[g], st.C[g], st.D[g], rows[g]
            diag = torch.diagonal(H)
            lam0 = DAMP * float(diag.mean().clamp_min(1e-12))
            S = (diag > 0).nonzero().flatten()
            if not GCV_STEPS or S.numel() == 0:
                lams.append(lam0)
                continue
            e, V = torch.linalg.eigh(H[S[:, None], S[None, :]])
            e = e.clamp_min(0)
            P = (W @ C[:, S]) @ V                   # (W C)_S in H's eigenbasis
            Q = W[:, S] @ V
            base = float(torch.einsum("oi,ij,oj->", W, D, W))
            best, best_lam = math.inf, lam0
            for k in range(GCV_STEPS + 1):
                lam = lam0 * 2.0 ** k
                Wv = (P + lam * Q) / (e + lam)      # the solution W'_S V
                rss = base - 2 * float((P * Wv).sum()) + float((Wv * Wv * e).sum())
                dof = 1.0 - float((e / (e + lam)).sum()) / st.rows
                gcv = max(rss, 0.0) / (dof * dof) if dof > 0 else math.inf
                if gcv < best * (1 - 1e-9):
                    best, best_lam = gcv, lam
            lams.append(best_lam)
        return torch.tensor(lams, dtype=st.H.dtype)

    def _damped(self, st: _LayerStats, rows: torch.Tensor):
        if st.lam is None:
            st.lam = self._gcv_lambda(st, rows)
        lam = st.lam
        return st.H + lam[:, None, None] * torch.eye(st.H.shape[-1], dtype=st.H.dtype), lam

    def _targets(self, st: _LayerStats, rows: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """(H_l, R): R = W C + lambda W, so the kept weights solve W'_S H_l[S,S] = R_S."""
        Hl, lam = self._damped(st, rows)
        R = torch.einsum("gok,gkj->goj", rows, st.C) + lam[:, None, None] * rows
        return Hl, R

    @staticmethod
    def _solve_rows(Hl: torch.Tensor, R: torch.Tensor, keep: torch.Tensor, want_diag: bool):
        """Exact least squares of every row on its own support. keep: (G, O, d) bool.
        Returns the new rows (zeros off-support) and diag(H_l[S,S]^-1) per entry (inf off).
        Rows of a group that share one support are solved together."""
        out = torch.zeros_like(R)
        dinv = torch.full_like(R, float("inf"))
        G, O, _ = R.shape
        for g in range(G):
            k = keep[g]
            if bool((k == k[0]).all()):
                blocks = [(torch.arange(O), k[0].nonzero().flatten())]
            else:
                blocks = [(torch.tensor([o]), k[o].nonzero().flatten()) for o in range(O)]
            for rows, s in blocks:
                if s.numel() == 0:
                    continue
                L = torch.linalg.cholesky(Hl[g][s[:, None], s[None, :]])
                sol = torch.cholesky_solve(R[g][rows[:, None], s[None, :]].T, L).T   # (rows, |S|)
                out[g, rows[:, None], s[None, :]] = sol
                if want_diag:
                    dinv[g, rows[:, None], s[None, :]] = torch.diagonal(torch.cholesky_inverse(L))
        return out, dinv

    def _write(self, node: str, rows: torch.Tensor, keep_w: Optional[torch.Tensor]) -> None:
        mod = self.masks.node_module[node]
        w = self.masks.dense(mod, "weight")
        nw = w[0].numel()
        with torch.no_grad():
            w.copy_(rows[:, :, :nw].reshape(w.shape).to(w.dtype))
            if getattr(mod, "bias", None) is not None:
                self.masks.dense(mod, "bias").copy_(rows[:, :, nw].reshape(-1).to(w.dtype))
        if keep_w is not None:
            self.masks.weight_masks[node] = keep_w[:, :, :nw].reshape(w.shape).clone()

    def _rows_of(self, node: str) -> torch.Tensor:
        """The dense layer's rows (the reconstruction target and the ridge's centre)."""
        mod = dict(self._dense.named_modules())[self.graph[node].target]
        b = mod.bias.detach() if getattr(mod, "bias", None) is not None else None
        return _weight_rows(mod, mod.weight.detach(), b)

    def _effective_keep(self, node: str) -> torch.Tensor:
        """(G, O/G, d) support allowed by the masks (channel masks included); bias column kept."""
        mod = self.masks.node_module[node]
        m = self.masks.effective_mask(mod, "weight")
        g = getattr(mod, "groups", 1)
        keep = m.reshape(g, m.shape[0] // g, -1)
        if getattr(mod, "bias", None) is not None:
            keep = torch.cat([keep, torch.ones(keep.shape[0], keep.shape[1], 1, dtype=torch.bool)], 2)
        return keep

    def _kept_rows(self, node: str) -> torch.Tensor:
        """(G, O/G) output rows not removed by a channel mask."""
        mod = self.masks.node_module[node]
        keep = torch.ones(mod.weight.shape[0], dtype=torch.bool)
        for g in self.graph.prunable_groups():
            for mem in g.members:
                if mem.node == node and mem.role in ("out", "dw"):
                    keep[mem.offset:mem.offset + g.size] &= self.masks.channel_keep[g.id]
        grp = getattr(mod, "groups", 1)
        return keep.reshape(grp, -1)

    # ------------------------------------------------------------------ the two granularities
    def _prune_layer_weights(self, node: str, st: _LayerStats, n_keep: int) -> None:
        """Iterative OBS on one layer: halve the kept weights per round, re-solve exactly."""
        mod = self.masks.node_module[node]
        nw = self.masks.dense(mod, "weight")[0].numel()
        rows = self._rows_of(node)
        Hl, R = self._targets(st, rows)
        keep = self._effective_keep(node)
        prunable = torch.zeros_like(keep)
        prunable[:, :, :nw] = keep[:, :, :nw]
        # round 0: the retargeted dense rows W* = R H_l^-1 (full support)
        cur, dinv = self._solve_rows(Hl, R, keep, want_diag=True)
        kept = int(prunable.sum())
        while kept > n_keep:
            nxt = max(n_keep, math.ceil(kept / 2))
            sal = torch.where(prunable, cur * cur / dinv, torch.full_like(cur, float("inf")))
            drop = torch.topk(sal.flatten(), kept - nxt, largest=False, sorted=False).indices
            flat = prunable.flatten().clone()
            flat[drop] = False
            prunable = flat.reshape(prunable.shape)
            keep = prunable.clone()
            if st.bias:
                keep[:, :, nw] = True
            kept = int(prunable.sum())
            cur, dinv = self._solve_rows(Hl, R, keep, want_diag=kept > n_keep)
        self._write(node, cur, keep)
        self.errors[node] = st.rel_error(rows, cur, self._kept_rows(node))

    def _resolve_layer(self, node: str, st: _LayerStats) -> None:
        """Re-solve the kept weights of a layer on its current support (shared by its rows)."""
        rows = self._rows_of(node)
        Hl, R = self._targets(st, rows)
        cur, _ = self._solve_rows(Hl, R, self._effective_keep(node), want_diag=False)
        self._write(node, cur, None)
        self.errors[node] = st.rel_error(rows, cur, self._kept_rows(node))

    def _weight_saliency(self, node: str, st: _LayerStats) -> torch.Tensor:
        """OBS saliency of every weight with the full support: W*^2 / [H_l^-1]_qq."""
        mod = self.masks.node_module[node]
        w = self.masks.dense(mod, "weight")
        rows = self._rows_of(node)
        Hl, R = self._targets(st, rows)
        Hinv = torch.linalg.inv(Hl)
        wstar = torch.einsum("gok,gkj->goj", R, Hinv)
        d = torch.diagonal(Hinv, dim1=-2, dim2=-1)[:, None, :]
        sal = (wstar * wstar / d)[:, :, :w[0].numel()]
        return sal.reshape(w.shape).float()

    def _channel_saliency(self, stats: Dict[str, _LayerStats]) -> Dict[int, torch.Tensor]:
        """Per group, the OBS increase of the consumers' output error when a channel's input
        columns are removed and the others compensate (summed over consumers), from each
        consumer's latest statistics."""
        out: Dict[int, torch.Tensor] = {}
        cache: Dict[str, Tuple[torch.Tensor, torch.Tensor]] = {}
        for grp in self.graph.prunable_groups():
            if grp.size < 2:
                continue
            score = torch.zeros(grp.size, dtype=torch.float64)
            for mem, mod in self._dense_consumers(grp, stats):
                if mem.node not in cache:
                    Hl, R = self._targets(stats[mem.node], self._rows_of(mem.node))
                    Hinv = torch.linalg.inv(Hl[0])
                    cache[mem.node] = (R[0] @ Hinv, Hinv)
                wstar, Hinv = cache[mem.node]
                per = mem.repeat * (mod.kernel_size[0] * mod.kernel_size[1]
                                    if isinstance(mod, nn.Conv2d) else 1)
                for c in range(grp.size):
                    q = slice((mem.offset + c) * per, (mem.offset + c + 1) * per)
                    wq = wstar[:, q]
                    score[c] += float(torch.einsum("oi,ij,oj->", wq, torch.linalg.inv(Hinv[q, q]), wq))
            out[grp.id] = score.float()
        return out

    def _dense_consumers(self, grp, stats):
        """(member, module) of the group's consumers (input side) that have statistics and are
        not grouped convolutions: the layers whose input columns a channel removal re-solves."""
        for mem in grp.members:
            if mem.role != "in" or mem.node not in stats:
                continue
            mod = self.masks.node_module[mem.node]
            if getattr(mod, "groups", 1) == 1:
                yield mem, mod

    def _channel_greedy(self, stats: Dict[str, _LayerStats]) -> Dict[int, torch.Tensor]:
        """Per group, channels ranked by greedy sequential removal (ThiNet's greedy selection,
        with CP's least-squares compensation): each step removes the channel whose input
        columns cost the consumers the least OBS error given the channels already removed,
        and updates every consumer's compensated weights and inverse Hessian (block OBS
        downdate), so two redundant channels are not both judged expendable. A channel's score
        is the running maximum of these step costs (ascending along the removal order, so the
        orientation's LAMP normalisation keeps the order); channels already removed score 0."""
        out: Dict[int, torch.Tensor] = {}
        for grp in self.graph.prunable_groups():
            if grp.size < 2:
                continue
            states = []
            alive = torch.ones(grp.size, dtype=torch.bool)
            for mem, mod in self._dense_consumers(grp, stats):
                Hl, R = self._targets(stats[mem.node], self._rows_of(mem.node))
                cols = self._effective_keep(mem.node)[0].any(0)          # kept input columns
                rows = self._kept_rows(mem.node)[0]
                S = cols.nonzero().flatten()
                pos = torch.full((cols.numel(),), -1, dtype=torch.long)
                pos[S] = torch.arange(S.numel())
                Hinv = torch.linalg.inv(Hl[0][S[:, None], S[None, :]])
                w = R[0][rows][:, S] @ Hinv
                per = mem.repeat * (mod.kernel_size[0] * mod.kernel_size[1]
                                    if isinstance(mod, nn.Conv2d) else 1)
                idx = pos[(mem.offset * per + torch.arange(grp.size * per)).reshape(grp.size, per)]
                alive &= (idx >= 0).all(1)
                states.append([w, Hinv, idx])
            if not states:
                continue
            score = torch.zeros(grp.size, dtype=torch.float64)
            run = 0.0
            live = alive.nonzero().flatten().tolist()
            # channels already removed leave the consumers' supports: nothing to downdate
            while live:
                cand = torch.tensor(live)
                cost = torch.zeros(len(live), dtype=torch.float64)
                for w, Hinv, idx in states:
                    q = idx[cand]                                      # (n, per)
                    Hb = Hinv[q[:, :, None], q[:, None, :]]
                    Wb = w[:, q].permute(1, 0, 2)                      # (n, O, per)
                    cost += torch.einsum("nop,npq,noq->n", Wb, torch.linalg.inv(Hb), Wb)
                j = int(torch.argmin(cost))
                c = live.pop(j)
                run = max(run, float(cost[j]), 1e-30)
                score[c] = run
                if not live:
                    score[c] = 2 * run + 1e-30                         # the last one ranks top
                    break
                for st in states:
                    w, Hinv, idx = st
                    q = idx[c]
                    A = torch.linalg.inv(Hinv[q[:, None], q[None, :]])
                    Hq = Hinv[q, :]
                    st[0] = w - (w[:, q] @ A) @ Hq
                    st[1] = Hinv - Hinv[:, q] @ A @ Hq
            out[grp.id] = score.float()
        return out

    # ------------------------------------------------------------------ the run
    def _compute_order(self) -> List[str]:
        return [n.name for n in self.graph.compute_nodes() if n.name in self.masks.layers]

    def _select_amount(self, amount: float) -> Dict[str, torch.Tensor]:
        """The orientation's selection at `amount` (self._fams: the families it ranked)."""
        self._fams = self.families()
        return self.select(self._fams, amount)

    def _amount_for_budgets(self) -> float:
        """Smallest amount (bisection on the selection alone) that meets every budget."""
        lo, hi = 0.0, self.goal_amount()
        saved = self.masks.state_dict()
        for _ in range(12):
            mid = 0.5 * (lo + hi)
            sel = self._select_amount(mid)
            apply_selection(self.masks, self._fams, sel, self.spec.granularity)
            if check_budgets(self.spec.budgets, self.figures()):
                hi = mid
            else:
                lo = mid
        self.masks.load_state_dict(saved)
        return hi

    @torch.no_grad()
    def prune_once(self, x: torch.Tensor) -> None:
        """Prune and reconstruct with calibration inputs `x` (model's input shape, no labels)."""
        self.model.eval()
        self._dense = dense = plain_copy(self.model).eval()
        if x.dim() == 4:   # NHWC: oneDNN's conv and pooling are 1.5x faster (train.py)
            x = x.contiguous(memory_format=torch.channels_last)
            dense.to(memory_format=torch.channels_last)
            self.model.to(memory_format=torch.channels_last)
        before = self.figures()
        order = self._compute_order()
        stats = self._dense_stats(dense, x, order)     # one pass: every layer, dense inputs
        if self.spec.granularity.kind == "weight":
            for node in order:   # saliencies for the allocation, on the dense model
                self.criterion.weights[node] = self._weight_saliency(node, stats[node])
            amount = self._amount_for_budgets() if self.spec.budgets else self.goal_amount()
            sel = self._select_amount(amount)
            n_keep = {f.node: int(f.n - int(sel[f.key].sum())) for f in self._fams}
            for i, node in enumerate(order):
                # cascade: inputs from the layers already pruned and re-solved (the first
                # layer reads the model input, unchanged)
                st = stats[node] if i == 0 else self._stats(dense, node, x)
                self._prune_layer_weights(node, st, n_keep[node])
                self.masks.refresh()
        else:
            goal = self.goal_amount()
            if self.spec.budgets:
                self.criterion.channels = self._channel_saliency(stats)
                goal = self._amount_for_budgets()
            kept_frac, amount = 1.0, 0.0
            for node in order:
                self.errors[node] = 0.0
            while amount < goal - 1e-9:
                # halving rounds: scores are re-estimated on the reconstructed model each time
                kept_frac = max(1.0 - goal, kept_frac / 2)
                amount = 1.0 - kept_frac
                self.criterion.channels = (self._channel_greedy(stats) if GREEDY
                                           else self._channel_saliency(stats))
                sel = self._select_amount(amount)
                prev = {gid: k.clone() for gid, k in self.masks.channel_keep.items()}
                apply_selection(self.masks, self._fams, sel, self.spec.granularity)
                for gid, k in prev.items():      # a round never brings a channel back
                    self.masks.channel_keep[gid] &= k
                self.masks.refresh()
                for i, node in enumerate(order):
                    if i > 0:
                        stats[node] = self._stats(dense, node, x)
                    self._resolve_layer(node, stats[node])
                    self.masks.refresh()
        if x.dim() == 4:
            self.model.to(memory_format=torch.contiguous_format)
        del self._dense
        self.masks.harden()
        self.amount = self._amount_reached()
        after = self.figures()
        if self.spec.budgets:
            self.met = check_budgets(self.spec.budgets, after)
            if not self.met:
                raise BudgetError(f"budgets {', '.join(map(str, self.spec.budgets))} not met: "
                                  + describe(self.spec.budgets, after, self.dense_figures))
        self.done = True
        self.log.meta["calibration_images"] = int(len(x))
        self.log.meta["reconstruction_rel_error"] = {k: round(v, 6) for k, v in self.errors.items()}
        self._record(0, 0, before, after, f"reconstructed on {len(x)} calibration images")

    def _amount_reached(self) -> float:
        from ..orientation import resource
        fams = self.families()
        tot = rem = 0.0
        for f in fams:
            r = resource(f, self.spec.orientation)
            if f.group is not None:
                gone = ~self.masks.channel_keep[f.group.id]
            else:
                gone = ~self.masks.weight_masks[f.node].flatten()
            tot += float(r.sum())
            rem += float(r[gone].sum())
        return rem / tot if tot else 0.0

    # ------------------------------------------------------------------ not a training hook
    def on_train_begin(self, trainer) -> None:
        raise PruneError("method 'reconstruct' prunes without training: call prune_once")


def calibration_images(x_train: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    """n training images drawn without replacement with the run's seed (labels unused)."""
    if n < 1:
        raise PruneError(f"--calibration must be >= 1, got {n}")
    g = torch.Generator().manual_seed(int(seed))
    idx = torch.randperm(len(x_train), generator=g)[:min(n, len(x_train))]
    return x_train[idx.sort().values]


__all__ = ["Reconstruct", "CalibrationSaliency", "calibration_images", "DAMP"]
