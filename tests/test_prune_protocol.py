"""benchmarks/prune_protocol.py report helpers: iso-accuracy bounds and paired lever deltas."""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.prune_protocol import _paired_vs_default, _ratio_text, iso_compression


def _pt(x, loss):
    return {"params_x": (x, 0.0), "loss_pt": (loss, 0.0)}


def test_iso_compression_interpolates_or_bounds():
    v, how = iso_compression([_pt(15, 0.1), _pt(50, 0.9)], "params_x")
    assert how == "interp" and 15 < v < 50
    assert iso_compression([_pt(15, 0.4)], "params_x") == (15, ">=")
    assert iso_compression([_pt(15, 0.6)], "params_x") == (15, "<")


def test_ratio_is_a_bound_when_either_side_is():
    assert _ratio_text((30.0, "interp"), (15.0, "interp")) == "2.00x"
    # the peer never lost 0.5 pt: its crossing is >= 15x, so ours / peer is at most 2x
    assert _ratio_text((30.0, "interp"), (15.0, ">=")).startswith("<= 2.00x")
    # ours never lost 0.5 pt: ours / peer is at least 2x
    assert _ratio_text((30.0, ">="), (15.0, "interp")).startswith(">= 2.00x")
    assert _ratio_text((30.0, ">="), (15.0, ">=")).startswith("undetermined")


def test_paired_delta_uses_the_same_seeds():
    def row(method, goal, seed, dense, pruned):
        return {"method": method, "orientation": "memory", "goal": goal, "seed": seed,
                "acc_dense": dense, "acc_pruned": pruned}
    rows = [row("statistical", "300x", 0, 0.99, 0.97), row("statistical", "300x", 1, 0.99, 0.98),
            row("statistical (x)", "300x", 0, 0.99, 0.975)]
    out = _paired_vs_default(rows)
    assert out == ["- statistical (x) at 300x: -0.50 ± 0.00 pt over 1 seed"]


def test_paired_delta_pairs_within_the_orientation():
    """A workload lever is paired with the default's workload row of the same goal and seed,
    never with a memory row that happens to share the goal."""
    def row(method, orient, goal, seed, pruned):
        return {"method": method, "orientation": orient, "goal": goal, "seed": seed,
                "acc_dense": 0.99, "acc_pruned": pruned}
    rows = [row("statistical", "memory", "16x", 0, 0.95),
            row("statistical", "workload", "16x", 0, 0.98),
            row("statistical (y)", "workload", "16x", 0, 0.985)]
    assert _paired_vs_default(rows) == ["- statistical (y) at 16x (workload): -0.50 ± 0.00 pt over 1 seed"]
