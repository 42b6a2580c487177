"""The whole RTL flow for a tiny model (the one slow RTL test, ~2 min): QAT (calibration only) ->
integer network -> Verilog -> Verilator bit-exact and cycle-exact on real test images -> yosys
synth_ice40 -> nextpnr-ice40 -> icepack: an iCE40 UP5K bitstream for the iCEBreaker."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

FASHION = Path("/usr/share/datasets/fashion-mnist")

pytestmark = [
    pytest.mark.skipif(not all(shutil.which(t) for t in ("verilator", "yosys", "nextpnr-ice40",
                                                          "icepack")),
                       reason="the open FPGA flow is not installed (make setup)"),
    pytest.mark.skipif(not (FASHION / "t10k-images-idx3-ubyte.gz").is_file(),
                       reason="Fashion-MNIST not installed (make setup)"),
]


def test_tiny_model_to_ice40_bitstream(tmp_path):
    torch = pytest.importorskip("torch")
    pytest.importorskip("brevitas")
    import torch.nn as nn

    from edgeprune.deploy import Deployment
    from edgeprune.export.rtl import export_rtl
    from edgeprune.targets import load_target

    class Tiny(nn.Module):
        input_shape = (1, 28, 28)

        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(1, 2, 5, stride=2)
            self.pool = nn.MaxPool2d(2)
            self.fc = nn.Linear(2 * 6 * 6, 10)

        def forward(self, x):
            return self.fc(torch.flatten(self.pool(torch.relu(self.conv1(x))), 1))

    torch.manual_seed(0)
    out = tmp_path / "rtl_out"
    dep = Deployment.for_target(load_target("ice40-up5k"))
    r = export_rtl(Tiny(), dep, out, data="fashion-mnist", epochs=0, sim_images=8,
                   verify_images=64, progress=False)
    assert r["integer_reference_vs_brevitas"]["bit_exact"]
    v = r["verilator"]
    assert v["bit_exact"] and v["images"] == 8
    assert v["ii_min"] == v["ii_max"] == r["cycles"]["ii_model"]
    assert v["latency_cycles_measured"] == r["cycles"]["latency_model"]
    hw = r["hardware"]
    assert (out / "rtl" / "edgeprune.bin").stat().st_size == hw["bitstream_bytes"] > 100_000
    assert 0 < hw["placed"]["lc"]["used"] <= hw["placed"]["lc"]["available"] == 5280
    est = r["rtl_estimate"]
    # the RTL cost model (units + UART wrapper, LUT4 + DFF) against nextpnr's placed cells; the
    # budget's estimate (layer graph, no weights) and the plan's (units as built) agree on BRAM
    placed = hw["placed"]["lc"]["used"]
    assert abs(est["plan"]["cells"] - placed) <= 0.15 * placed, (est, placed)
    assert est["budget"]["bram"] == est["plan"]["bram"]
    assert hw["fmax_mhz"] > 12          # meets the iCEBreaker's 12 MHz clock
    assert (out / "rtl" / "icebreaker.pcf").read_text().startswith("set_io clk 35")
    assert json.loads((out / "report.json").read_text())["family"] == "ice40"
    assert (out / ".edgeprune-manifest.json").is_file()
