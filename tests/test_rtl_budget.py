"""iCE40 prune budgets: `lut` is the RTL backend's logic-cell estimate (LUT4 + DFF of the folded
design), built from the layer graph and the cost model's folding; other FPGA targets keep the
FINN-style LUT estimate."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
import torch.nn as nn  # noqa: E402


class Tiny(nn.Module):
    input_shape = (1, 28, 28)

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 5)
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(4 * 12 * 12, 10)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(torch.relu(self.conv1(x))), 1))


def test_ice40_budget_is_rtl_cells():
    from edgeprune import cost
    from edgeprune.backends.rtl.cost import graph_units, uart_resources, unit_resources
    from edgeprune.deploy import Deployment
    from edgeprune.graph import extract
    from edgeprune.prune.budgets import rtl_cells
    from edgeprune.targets import load_target

    g = extract(Tiny())
    dep = Deployment.for_target(load_target("ice40-up5k"))
    rep = cost.estimate(g, dep)
    units = graph_units(g, dep, rep.layers)
    assert [u.kind for u in units] == ["swg", "mvu", "maxpool", "mvu"]
    conv, fc = units[1], units[3]
    assert (conv.p["MW"], conv.p["MH"], conv.p["vectors"]) == (25, 4, 24 * 24)
    assert (fc.p["MW"], fc.p["MH"], fc.in_elems) == (4 * 12 * 12, 10, 4)
    fold = {r["node"]: (r["PE"], r["SIMD"]) for r in rep.layers if r["op"] == "MVAU_hls"}
    assert (conv.p["PE"], conv.p["SIMD"]) == fold["conv1"]
    res = [unit_resources(u, "ice40") for u in units]
    assert all(r["ff"] > 0 for r in res)
    cells = rtl_cells(g, dep, rep)
    uart = uart_resources(1, 10, fc.out_bits)          # the bitstream's UART wrapper
    assert uart["cells"] > 0
    assert cells == sum(r["lut"] + r["ff"] for r in res) + uart["cells"]
    # fewer channels, fewer cells
    gid = next(grp.id for grp in g.groups if "conv1" in grp.nodes() and grp.prunable)
    assert rtl_cells(g.with_group_sizes({gid: 2}), dep) < cells
    assert rtl_cells(g, Deployment.for_target(load_target("pynq-z2"))) is None

