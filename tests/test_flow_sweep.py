"""`edgeprune sweep`: three budgets run in parallel processes (local executor) after one shared
training, and the sweep report draws the Pareto front."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from edgeprune.flow.report import pareto_front
from edgeprune.flow.sweep import parse_budget_axis
from flow_helpers import needs_fashion, run_edgeprune

RECIPE = """
name = "sweep-tiny"
[model]
name = "lenet5"
[data]
dataset = "fashion-mnist"
n_train = 1000
[[targets]]
name = "stm32l4r5-m4"
[[targets]]
name = "pynq-z2"
[train]
epochs = 1
max_steps_per_epoch = 8
[prune]
budgets = ["latency_ms=30"]
target = "stm32l4r5-m4"
epochs = 1
max_steps_per_epoch = 8
"""


def test_pareto_front_keeps_only_undominated_points():
    pts = [(10, 80.0), (5, 70.0), (20, 79.0), (7, 75.0), (30, 90.0), (7, 60.0)]
    assert pareto_front(pts) == [(5, 70.0), (7, 75.0), (10, 80.0), (30, 90.0)]


@pytest.mark.parametrize("spec, message", [
    ("latency_ms", "expected METRIC=V1,V2"), ("latency=1,2", "unknown budget metric"),
    ("latency_ms=1,-2", "not a number > 0"), ("latency_ms=2,2", "repeated values")])
def test_budget_axis_errors(spec, message):
    from edgeprune.errors import EdgepruneError
    with pytest.raises(EdgepruneError, match=message):
        parse_budget_axis(spec)


def test_ray_executor_without_ray_is_one_line(tmp_path):
    try:
        import ray  # noqa: F401
        pytest.skip("ray is installed: the error path is not reachable")
    except ImportError:
        pass
    r = tmp_path / "r.toml"
    r.write_text(RECIPE)
    p = run_edgeprune(["sweep", str(r), "--budget", "latency_ms=40,50", "--executor", "ray",
                       "-o", str(tmp_path / "o")], timeout=300)
    assert p.returncode == 2
    assert p.stderr.strip().splitlines() == [
        "edgeprune: error: --executor ray needs Ray: pip install ray (or use --executor local)"]


@needs_fashion
def test_three_budget_sweep_runs_in_parallel_and_draws_the_front(tmp_path):
    r = tmp_path / "r.toml"
    r.write_text(RECIPE)
    out = tmp_path / "sweep"
    p = run_edgeprune(["sweep", str(r), "--budget", "latency_ms=40,50,60", "--jobs", "3",
                       "-o", str(out)], timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    s = json.loads((out / "sweep.json").read_text())
    pts = s["points"]
    assert [x["label"] for x in pts] == ["latency_ms=40", "latency_ms=50", "latency_ms=60"]
    assert all(x["status"] == "done" for x in pts), [x.get("error") for x in pts]
    # Parallel: three worker processes, and their runs overlap in time.
    assert len({x["pid"] for x in pts}) == 3 and os.getpid() not in {x["pid"] for x in pts}
    assert max(x["start"] for x in pts) < min(x["end"] for x in pts)
    # Trained once: each run loads base/train/model.pt instead of training.
    assert (out / "base" / "train" / "model.pt").is_file()
    for x in pts:
        st = json.loads((Path(x["out"]) / ".flow" / "state.json").read_text())["stages"]
        assert st["train"]["result"]["trained"] is False
        lat = x["costs"]["stm32l4r5-m4"]["latency_ms"]
        assert lat <= float(x["label"].split("=")[1])
        assert (Path(x["out"]) / "report.html").is_file()
    # A looser budget never costs more latency.
    lats = [x["costs"]["stm32l4r5-m4"]["latency_ms"] for x in pts]
    assert lats[0] <= lats[2]
    png = (out / "figures" / "pareto.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 1
    for x in pts:
        assert f'href="runs/{x["label"]}/report.html"' in html
    assert "pynq-z2: LUT" in html and "stm32l4r5-m4: cycles" in html


@needs_fashion
def test_ray_executor_smoke(tmp_path):
    """Only where Ray is installed (pip install 'edgeprune[ray]'); not part of requirements.txt."""
    pytest.importorskip("ray")
    r = tmp_path / "r.toml"
    r.write_text(RECIPE)
    out = tmp_path / "sweep"
    p = run_edgeprune(["sweep", str(r), "--budget", "latency_ms=40,60", "--executor", "ray",
                       "-o", str(out)], timeout=900)
    assert p.returncode == 0, p.stderr[-3000:]
    s = json.loads((out / "sweep.json").read_text())
    assert s["executor"] == "ray" and all(x["status"] == "done" for x in s["points"])
    assert (out / "figures" / "pareto.png").is_file()
