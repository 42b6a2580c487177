"""benchmarks/prune_methods.py (issue 14, the research's other methods): the training-compute
count from a decision log, the paired criterion-vs-random gap, the filter fraction, and that the
committed rows of its experiments are consistent with their own fields. No training."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

pm = pytest.importorskip("benchmarks.prune_methods")
rep = pytest.importorskip("benchmarks.prune_methods_report")


def _log(total, dense_macs, decisions):
    return {"meta": {"schedule": {"total": total}}, "dense": {"macs": dense_macs},
            "entries": [{"kind": "epoch", "step": 5}]
            + [{"kind": "decision", "step": s, "after": {"macs": m}} for s, m in decisions]}


def test_training_compute_no_decision_is_dense():
    t = pm.training_compute(_log(100, 1000.0, []))
    assert t["train_macs"] == t["train_macs_dense"] == 100_000.0
    assert t["train_compute_x"] == 1.0


def test_training_compute_counts_each_width_for_its_steps():
    # 10 steps at 1000, 40 at 500, 50 at 250 -> 10000 + 20000 + 12500 = 42500 of 100000
    t = pm.training_compute(_log(100, 1000.0, [(10, 500.0), (50, 250.0)]))
    assert t["train_macs"] == 42_500.0
    assert t["train_compute_x"] == pytest.approx(100_000 / 42_500)


def test_paired_gap_uses_common_seeds_and_t():
    a = [{"seed": s, "acc_pruned": v} for s, v in ((0, 0.98), (1, 0.97), (2, 0.99), (3, 0.5))]
    b = [{"seed": s, "acc_pruned": v} for s, v in ((0, 0.97), (1, 0.965), (2, 0.975))]
    m, sd, n, t, tc = rep.paired_gap(a, b)
    assert n == 3
    assert m == pytest.approx((1.0 + 0.5 + 1.5) / 3)
    assert t == pytest.approx(m / (sd / 3 ** 0.5))
    assert tc == pytest.approx(2.92, abs=0.01)        # Student t, df 2, one-sided 95 %
    same = rep.paired_gap(b, b)
    assert same[0] == 0.0 and not same[3] > same[4]


def test_fraction_removed_counts_only_conv_groups():
    conv, hidden = rep._conv_groups("lenet5")
    assert conv == ["0", "1"] and hidden == ["0", "1", "2"]
    r = {"channels_dense": {"0": 20, "1": 50, "2": 500, "3": 10},
         "channels_kept": {"0": 4, "1": 10, "2": 500, "3": 10}}
    assert rep._fraction_removed(r, conv) == pytest.approx(0.8)
    assert rep._fraction_removed(r, hidden) == pytest.approx(56 / 570)


def test_committed_rows_are_consistent():
    path = REPO / "benchmarks" / "results" / "pruning.json"
    rows = [r for r in json.loads(path.read_text())
            if r.get("protocol") == "v2" and r.get("experiment") in pm.EXPERIMENTS]
    if not rows:
        pytest.skip("no prune_methods rows committed")
    for r in rows:
        assert r["command"].startswith("benchmarks/prune_methods.py")
        assert r["acc_loss_pt"] == pytest.approx(100 * (r["acc_dense"] - r["acc_pruned"]), abs=0.01)
        kept, dense = r["channels_kept"], r["channels_dense"]
        assert set(kept) == set(dense) and all(kept[k] <= dense[k] for k in dense)
        if r["experiment"] == "activation_density":
            assert r["train_compute_x"] == pytest.approx(
                r["train_macs_dense"] / r["train_macs"], rel=1e-3)
            assert r["train_compute_x"] >= 1.0


def test_crossing_interpolates_between_neighbours():
    assert rep.crossing([(80.0, 3.0), (50.0, 0.5)], 1.0) == pytest.approx(56.0)
    assert rep.crossing([(30.0, 0.1), (50.0, 0.5)], 1.0) is None
