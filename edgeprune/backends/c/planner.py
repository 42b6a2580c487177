"""The arena planner: one static arena holds every activation buffer (the model input and output
included) and every kernel scratch buffer; the plan gives each its offset.

Two buffers whose lifetimes overlap must not share bytes, with one exception that TFLM's
planner does not make: the output of a step may overlay an input that dies at that step when
the kernel's access order allows it (``lower.Overlap``: element-wise ops and softmax in place,
pooling and convolutions with the output starting below or partly over their input, PAD
backwards). The model input is an ordinary buffer: after its last reader its bytes are reused.

Placement: TFLM's greedy first fit (micro/memory_planner/greedy_memory_planner.cc: buffers by
size, descending; each at the lowest offset that fits) and a smallest-extent variant (any
offset, negative ones included, that keeps the plan smallest, so that a chain of outputs each
partly below its input can drift downwards), over the candidate offsets the constraints allow,
for a few buffer orders and seeded shuffles; the smallest arena wins. ``plan(...,
overlaps=False, orders=('size',))`` is TFLM's plan of the same buffers, for comparison.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

from .lower import ALIGN, Buffer, Program, align

ORDERS = ("size", "first", "span", "area")
RANDOM_ORDERS = 64          # extra seeded shuffles of the buffer order (deterministic)


def _alive_together(a: Buffer, b: Buffer) -> bool:
    return a.first <= b.last and b.first <= a.last


def _rules(prog: Program, overlaps: bool) -> Dict[Tuple[str, str], Tuple[str, int]]:
    """(output, input) -> (direction, limit) for outputs that may overlay a dying input."""
    rules: Dict[Tuple[str, str], Tuple[str, int]] = {}
    if not overlaps:
        return rules
    for st in prog.steps:
        for ov in st.overlaps:
            inp = prog.buffers[ov.input]
            if inp.last != st.index or ov.input == st.output:
                continue
            if ov.direction == "forward":
                limit = ov.limit // ALIGN * ALIGN
            else:
                limit = -(-ov.limit // ALIGN) * ALIGN
            rules[(st.output, ov.input)] = (ov.direction, limit)
    return rules


def _allowed(delta: int, size_out: int, size_in: int, rule: Optional[Tuple[str, int]]) -> bool:
    """Whether out_off - in_off = delta is allowed for an (output, input) pair."""
    if delta >= size_in or delta <= -size_out:
        return True                       # disjoint
    if rule is None:
        return False
    direction, limit = rule
    return delta <= limit if direction == "forward" else delta >= limit


def _valid(b: Buffer, c: int, size: int, conflicts, rules) -> bool:
    for p, off in conflicts:
        psize = align(p.size)
        if (b.name, p.name) in rules:
            ok = _allowed(c - off, size, psize, rules[(b.name, p.name)])
        elif (p.name, b.name) in rules:
            ok = _allowed(off - c, psize, size, rules[(p.name, b.name)])
        else:
            ok = c >= off + psize or c + size <= off
        if not ok:
            return False
    return True


def _place(order: Sequence[Buffer], rules, mode: str = "first_fit") -> Dict[str, int]:
    """Offsets for the buffers in `order`. first_fit (TFLM's rule): the lowest valid offset
    >= 0. extent: any valid offset, negative ones included, that keeps the plan's extent
    smallest (lets a chain of outputs each placed partly below its input drift downwards);
    the plan is shifted to start at 0 at the end."""
    placed: List[Tuple[Buffer, int]] = []
    offsets: Dict[str, int] = {}
    lo, hi = 0, 0
    for b in order:
        size = align(b.size)
        conflicts = [(p, off) for p, off in placed if _alive_together(b, p)]
        cands = {0, lo, hi - size}
        for p, off in conflicts:
            psize = align(p.size)
            cands.add(off + psize)
            cands.add(off - size)
            r = rules.get((b.name, p.name))
            if r is not None:
                cands.add(off + r[1])
            r = rules.get((p.name, b.name))
            if r is not None:
                cands.add(off - r[1])
        if mode == "first_fit":
            ordered = sorted(x for x in cands if x >= 0)
        else:
            ordered = sorted(cands, key=lambda c: (max(hi, c + size) - min(lo, c), abs(c)))
        for c in ordered:
            if _valid(b, c, size, conflicts, rules):
                offsets[b.name] = c
                placed.append((b, c))
                lo, hi = min(lo, c), max(hi, c + size)
                break
        else:  # pragma: no cover - above every placed buffer is always valid
            raise AssertionError(f"no offset for {b.name}")
    base = min(offsets.values(), default=0)
    return {k: v - base for k, v in offsets.items()}


def _order(buffers: List[Buffer], how: str) -> List[Buffer]:
    if how == "size":
        return sorted(buffers, key=lambda b: -align(b.size))        # TFLM: size, descending, stable
    if how == "first":
        return sorted(buffers, key=lambda b: (b.first, -align(b.size)))
    if how == "span":
        return sorted(buffers, key=lambda b: (-(b.last - b.first), -align(b.size)))
    if how == "area":
        return sorted(buffers, key=lambda b: -align(b.size) * (b.last - b.first + 1))
    raise ValueError(how)


def plan(prog: Program, overlaps: bool = True, orders: Sequence[str] = ORDERS,
         apply: bool = True, random_orders: int = RANDOM_ORDERS) -> int:
    """Arena bytes of the best plan; with apply, buffer offsets are set on prog.buffers.
    Tries the named orders, then `random_orders` seeded shuffles (first fit depends on the
    order; with overlap rules the size order is often not the best)."""
    import random
    rules = _rules(prog, overlaps)
    bufs = list(prog.buffers.values())
    best: Optional[Tuple[int, Dict[str, int]]] = None
    candidates = [_order(bufs, how) for how in orders]
    rng = random.Random(0)
    for _ in range(random_orders if len(orders) > 1 else 0):
        perm = list(bufs)
        rng.shuffle(perm)
        candidates.append(perm)
    modes = ("first_fit", "extent") if overlaps else ("first_fit",)
    for order in candidates:
        for mode in modes:
            offs = _place(order, rules, mode)
            size = max((offs[b.name] + align(b.size) for b in bufs), default=0)
            if best is None or size < best[0]:
                best = (size, offs)
    assert best is not None
    if apply:
        for b in bufs:
            b.offset = best[1][b.name]
    return best[0]


def verify(prog: Program) -> None:
    """Check the applied plan against every lifetime and overlap rule (a planner bug would
    corrupt activations silently, so the generator checks before writing code)."""
    rules = _rules(prog, True)
    bufs = list(prog.buffers.values())
    for i, a in enumerate(bufs):
        if a.offset < 0 or a.offset % ALIGN:
            raise AssertionError(f"buffer {a.name} has offset {a.offset}")
        for b in bufs[i + 1:]:
            if not _alive_together(a, b):
                continue
            sa, sb = align(a.size), align(b.size)
            if (a.name, b.name) in rules:
                ok = _allowed(a.offset - b.offset, sa, sb, rules[(a.name, b.name)])
            elif (b.name, a.name) in rules:
                ok = _allowed(b.offset - a.offset, sb, sa, rules[(b.name, a.name)])
            else:
                ok = a.offset >= b.offset + sb or b.offset >= a.offset + sa
            if not ok:
                raise AssertionError(f"buffers {a.name} and {b.name} overlap illegally")
