"""Deployments: one set of settings for cost, prune and export, with the same defaults
everywhere; the budget `prune` checks is what `export finn` builds."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from edgeprune import cost
from edgeprune.deploy import FPGA_DEFAULT_BITS, Deployment, DeploymentError
from edgeprune.errors import EdgepruneError
from edgeprune.zoo_graphs import cached_graph

REPO = Path(__file__).resolve().parent.parent


def test_defaults_are_the_same_everywhere():
    g = cached_graph("lenet5")
    fpga = Deployment.for_target("pynq-z2")
    assert (fpga.wbits, fpga.abits) == (FPGA_DEFAULT_BITS, FPGA_DEFAULT_BITS)
    # the cost model given a bare target uses the same deployment as the exporters
    r = cost.estimate(g, "pynq-z2")
    assert (r.totals["wbits"], r.totals["abits"]) == (FPGA_DEFAULT_BITS, FPGA_DEFAULT_BITS)
    assert r.totals["lut"] == cost.estimate(g, fpga).totals["lut"]
    assert cost.estimate(g, fpga.with_(wbits=8, abits=8)).totals["lut"] > r.totals["lut"]
    mcu = Deployment.for_target("stm32l4r5-m4")
    assert (mcu.runtime, mcu.wbits, mcu.compression) == ("tflm-cmsis-nn", 8, "auto")
    ref = Deployment.for_target("stm32l4r5-m4", runtime="tflm-reference")
    assert cost.estimate(g, ref).totals["cycles"] > cost.estimate(g, mcu).totals["cycles"]


@pytest.mark.parametrize("target,settings,fragment", [
    ("stm32l4r5-m4", {"wbits": 4}, "int8"),
    ("stm32l4r5-m4", {"fps": 100}, "FPGA targets"),
    ("stm32l4r5-m4", {"runtime": "onnx"}, "unknown MCU runtime"),
    ("pynq-z2", {"wbits": 9}, "1..8"),
    ("pynq-z2", {"abits": 0}, "1..8"),
    ("pynq-z2", {"fps": -5}, "positive"),
    ("pynq-z2", {"compression": "flash"}, "MCU targets"),
    ("pynq-z2", {"bits_per_layer": {"conv1": {"w": 12}}}, "conv1"),
    ("pynq-z2", {"bits_per_layer": {"conv1": 4}}, "conv1"),
])
def test_bad_settings_are_refused(target, settings, fragment):
    with pytest.raises(DeploymentError, match=fragment):
        Deployment.for_target(target, **settings)
    assert issubclass(DeploymentError, EdgepruneError)


def test_deployment_round_trips_to_dict():
    d = Deployment.for_target("pynq-z2", wbits=3, abits=2, fps=1000,
                              bits_per_layer={"fc2": {"w": 8, "a": None}})
    dd = d.to_dict()
    assert dd == {"target": "pynq-z2", "kind": "fpga", "runtime": "finn", "wbits": 3,
                  "abits": 2, "input_bits": 8, "fps": 1000.0,
                  "bits_per_layer": {"fc2": {"w": 8, "a": None}}}
    again = Deployment.for_target(dd["target"], wbits=dd["wbits"], abits=dd["abits"],
                                  fps=dd["fps"], bits_per_layer=dd["bits_per_layer"])
    assert again == d


def _cli(*argv, timeout=900):
    p = subprocess.run([sys.executable, "-m", "edgeprune", *argv], capture_output=True, text=True,
                       cwd=REPO, timeout=timeout)
    assert p.returncode == 0, p.stderr[-2000:]
    return p


@pytest.mark.slow
def test_prune_budget_is_what_export_finn_builds(tmp_path):
    """prune checks its LUT budget at W3A3 on pynq-z2; export finn of the result, given no bit
    widths, builds W3A3 (read from the prune output) and its estimate equals the pruned figure."""
    pytest.importorskip("brevitas")
    p, f = tmp_path / "p", tmp_path / "f"
    _cli("prune", "lenet5", "--data", "fashion-mnist", "--method", "agp", "--granularity",
         "channel", "--orientation", "target", "--target", "pynq-z2", "--wbits", "3",
         "--abits", "3", "--budget", "lut=9000", "--epochs", "1", "--n-train", "512",
         "--n-test", "128", "--no-baseline", "--max-acc-drop", "1.0", "--quiet", "-o", str(p))
    s = json.loads((p / "summary.json").read_text())
    assert s["budgets_met"] is True
    assert (s["deployment"]["wbits"], s["deployment"]["abits"]) == (3, 3)
    assert s["cost_pruned"]["lut"] <= 9000 < s["cost_dense"]["lut"]
    _cli("export", "finn", str(p), "--target", "pynq-z2", "--data", "fashion-mnist",
         "--epochs", "0", "--verify-images", "16", "-o", str(f))
    r = json.loads((f / "report.json").read_text())
    assert (r["deployment"]["wbits"], r["deployment"]["abits"]) == (3, 3)
    assert (r["quantization"]["wbits"], r["quantization"]["abits"]) == (3, 3)
    assert r["estimate"]["totals"]["lut"] == s["cost_pruned"]["lut"]
    assert r["estimate"]["totals"]["fps"] == pytest.approx(s["cost_pruned"]["fps"])
