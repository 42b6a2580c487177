"""Kernel fusion after the weight encodings are chosen: a sparse convolution and the max pooling
that reads its output become one call (kernels/ep_conv_sparse_pool.c).

Why it is exact: the pooled output is clamp_pool(max_i clamp_conv(zp + rq(acc_i))). When the
requantization rq is non-decreasing in the accumulator (per-channel multipliers >= 0 and no
left shift: with a left shift the reference's `x * (1 << shift)` wraps), so is the whole
output function, and the maximum of the outputs is the output of the maximum accumulator. The
fused kernel requantizes and stores one value per pooling window instead of k_h * k_w, skips the
pooling's reads, and the intermediate tensor leaves the arena.

Fused only where it holds and the kernel handles it: the convolution's output has the pooling
as its only reader and is not the model output; the pooling's windows tile (stride = window,
no padding), its input is the convolution's output exactly, and the two activation ranges
intersect.
"""
from __future__ import annotations

from typing import Callable, List, Optional

import numpy as np

from .lower import Program, Step


def _pool_of(prog: Program, st: Step) -> Optional[Step]:
    enc = st.params.get("encoding")
    if st.kind != "conv" or enc is None or enc.family != "sparse" or st.output == prog.output:
        return None
    readers = [s for s in prog.steps if st.output in s.inputs]
    if len(readers) != 1 or readers[0].kind != "maxpool" or readers[0].inputs != [st.output]:
        return None
    pool = readers[0]
    g, pg = st.params["g"], pool.params["g"]
    tiles = (pg["stride_h"] == pg["k_h"] and pg["stride_w"] == pg["k_w"]
             and pg["pad_top"] == 0 and pg["pad_left"] == 0
             and (pg["in_h"], pg["in_w"], pg["in_c"]) == (g["out_h"], g["out_w"], g["out_c"])
             and pg["out_h"] * pg["k_h"] <= g["out_h"] and pg["out_w"] * pg["k_w"] <= g["out_w"])
    wq = st.weighted
    monotone = bool(np.all(np.asarray(wq.mult) >= 0) and np.all(np.asarray(wq.shift) <= 0))
    # the two clamps in a row are one clamp to the intersection of the ranges when they meet
    ranges_meet = (max(wq.act_min, pool.params["act_min"]) <= min(wq.act_max, pool.params["act_max"]))
    return pool if tiles and monotone and ranges_meet else None


def fuse_sparse_maxpool(prog: Program, cost: Optional[Callable[[Step], float]] = None) -> List[str]:
    """Fuse every eligible (sparse convolution, max pooling) pair of `prog` in place: the
    convolution step takes the pooling's output and window (params['pool']), the pooling step
    and the intermediate buffer go, the steps are renumbered and the buffer lifetimes
    recomputed. cost(step): its estimated instructions; with it, a pair is fused only where
    the fused call is estimated cheaper than the two (padded borders and 3 x 3 windows run
    the fused kernel's pixel-by-pixel path). Returns the fused pooling layers' names."""
    fused: List[str] = []
    for st in list(prog.steps):
        pool = _pool_of(prog, st)
        if pool is None:
            continue
        before = cost(st) + cost(pool) if cost is not None else 0.0
        st.params["pool"] = {"g": pool.params["g"], "act_min": pool.params["act_min"],
                             "act_max": pool.params["act_max"]}
        if cost is not None and cost(st) >= before:
            del st.params["pool"]
            continue
        mid = st.output
        st.output = pool.output
        st.folded.append(pool.layer)
        prog.steps.remove(pool)
        del prog.buffers[mid]
        fused.append(pool.layer)
    if fused:
        _renumber(prog)
    return fused


def _renumber(prog: Program) -> None:
    """Step indices and buffer lifetimes after steps were removed (as lower.lower sets them)."""
    old = {}
    for i, st in enumerate(prog.steps):
        old[st.index] = i
        st.index = i
    for b in prog.buffers.values():
        if b.role == "scratch":
            b.first = b.last = old.get(b.first, b.first)
        elif b.role != "input":
            b.first = b.last = -1
    prog.buffers[prog.input].last = -1
    for st in prog.steps:
        b = prog.buffers[st.output]
        if b.first < 0 and b.role != "input":
            b.first = st.index
        for name in st.inputs:
            prog.buffers[name].last = max(prog.buffers[name].last, st.index)
    prog.buffers[prog.output].last = len(prog.steps)
    prog.buffers[prog.input].first = -1
    for b in prog.buffers.values():
        if b.last < 0:
            b.last = b.first
