"""RTL backend: integer reference, plan, Verilog in Verilator (bit-exact and cycle-exact against
the cycle model), the integer network of a Brevitas twin, and the export's refusals."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgeprune.backends.rtl.ir import IntNet, MatLayer, MaxPool, Requant, RtlError, reference
from edgeprune.backends.rtl.plan import build_plan, csd_digits, cycle_model
from edgeprune.backends.rtl.sim import simulate, verilator_available

REPO = Path(__file__).resolve().parent.parent


def test_requant_rounds_half_to_even_and_clamps():
    rq = Requant(2, 4, True)
    acc = np.arange(-40, 41)
    want = np.clip(np.round(acc / 4.0), -8, 7)          # numpy rounds half to even
    assert np.array_equal(rq.apply(acc), want)
    assert np.array_equal(Requant(-1, 4, False).apply(np.array([-3, 3, 9])), [0, 6, 15])


def test_csd_digits_rebuild_the_value():
    for v in list(range(-70, 71)):
        d = csd_digits(v)
        assert sum(s << k for s, k in d) == v
        assert all(s in (-1, 1) for s, _ in d)
    assert len(csd_digits(7)) == 2 and len(csd_digits(0)) == 0     # 7 = 8 - 1


def _net(rng):
    def w(*s, sparsity=0.0):
        a = rng.integers(-7, 8, size=s)
        a[rng.random(s) < sparsity] = 0
        return a
    return IntNet((1, 10, 10), [
        MatLayer("conv1", "conv2d", w(4, 1, 3, 3), rng.integers(-50, 50, 4), 4,
                 Requant(6, 4, False)),
        MaxPool("pool1", 2),
        MatLayer("conv2", "conv2d", w(6, 4, 2, 2), rng.integers(-20, 20, 6), 4,
                 Requant(3, 4, True)),
        MatLayer("fc1", "linear", w(10, 54, sparsity=0.5), rng.integers(-20, 20, 10), 4, None),
    ])


def test_plan_cycles_and_stream_order():
    net = _net(np.random.default_rng(0))
    plan = build_plan(net, {"conv1": (2, 3), "conv2": (3, 4), "fc1": (5, 6)})
    kinds = [(u.kind, u.layer) for u in plan.units]
    assert kinds == [("swg", "conv1"), ("mvu", "conv1"), ("maxpool", "pool1"), ("swg", "conv2"),
                     ("mvu", "conv2"), ("mvu", "fc1")]
    conv1 = plan.units[1]
    # FINN's MVAU cycles: (MH/PE) * (MW/SIMD) * vectors
    assert conv1.cycles == (4 // 2) * (9 // 3) * 8 * 8
    assert plan.ii_cycles == conv1.cycles
    # the cycle model adds what the formula leaves out: the window fill at each frame start
    assert cycle_model(plan).ii_cycles >= plan.ii_cycles
    with pytest.raises(RtlError):
        build_plan(net, {"conv1": (3, 3)})            # PE must divide MH


def test_input_select_is_a_mux_for_any_slice_width():
    """A folded MVU's SIMD slice `cbuf[sf * K +: K]` with K not a power of two became a shifter in
    yosys (LUTs growing with K's odd factor: dense LeNet-5's conv2, K = 500, was estimated at
    ~58k LUT); it is written as a case mux, and the selection model is linear in K * (SF - 1)."""
    from edgeprune.backends.rtl import cost
    from edgeprune.backends.rtl.verilog import input_select
    assert input_select("o", "c", "s", 16, 4, "") == ["o <= c[s * 16 +: 16];"]
    assert input_select("o", "c", "s", 20, 1, "") == ["o <= c;"]
    mux = input_select("o", "c", "s", 20, 3, "")
    assert mux[0] == "case (s)" and "2: o <= c[59:40];" in mux[3] and mux[-1] == "endcase"
    assert cost.select_features(500, 4) == [1500.0] and cost.select_features(500, 1) == [0.0]
    # same SF, same K -> same cost whatever K's odd factor (it was K * SF * odd)
    assert cost.select_luts(500, 4, "xc7") == pytest.approx(
        cost.select_luts(512, 4, "xc7") * 500 / 512)


def test_folded_rom_words_are_a_readmemh_file():
    """A folded MVU's weight ROM is a $readmemh file (one word a line), not one `initial`
    statement per word (yosys's front end is quadratic in those: dense LeNet-5's 10,000-word fc1
    ROM kept synth_xilinx past 30 min); the words decode back to the weights."""
    from edgeprune.backends.rtl.verilog import (generate, rom_file, rom_file_name, unit_module,
                                                verilog_sources)
    net = _net(np.random.default_rng(0))
    plan = build_plan(net, {"conv1": (2, 3), "conv2": (3, 4), "fc1": (5, 6)})
    files = generate(plan)
    mvus = [u for u in plan.units if u.kind == "mvu"]
    for u in mvus:
        p = u.p
        pe, simd, nf, sf, w = p["PE"], p["SIMD"], p["NF"], p["SF"], p["W"]
        v = unit_module(u)
        assert f'$readmemh("{rom_file_name(u)}", rom);' in v and "rom[0] =" not in v
        words = [int(t, 16) for t in rom_file(u).split()]
        assert files[rom_file_name(u)] == rom_file(u) and len(words) == nf * sf
        got = np.zeros_like(p["weights"])
        for f in range(nf):
            for s_ in range(sf):
                for q in range(pe):
                    for s in range(simd):
                        e = (words[f * sf + s_] >> ((q * simd + s) * w)) & ((1 << w) - 1)
                        got[f * pe + q, s_ * simd + s] = e - (1 << w) if e >> (w - 1) else e
        assert np.array_equal(got, p["weights"])
    assert sorted(verilog_sources(files)) == sorted(f for f in files if f.endswith(".v"))
    assert len(files) - len(verilog_sources(files)) == len(mvus)


@pytest.mark.skipif(not verilator_available(), reason="verilator not installed")
@pytest.mark.parametrize("styles", [{}, {"conv2": "unrolled", "fc1": "unrolled"}])
def test_verilator_bit_exact_and_cycle_exact(tmp_path, styles):
    rng = np.random.default_rng(1)
    net = _net(rng)
    x = rng.integers(0, 256, size=(6, 1, 10, 10))
    plan = build_plan(net, {"conv1": (2, 3), "conv2": (3, 4), "fc1": (5, 6)}, styles)
    sim = simulate(plan, x, reference(net, x), workdir=tmp_path)
    assert sim.bit_exact, (sim.outputs[:2], reference(net, x)[:2])
    model = cycle_model(plan)
    assert sim.ii_min == sim.ii_max == model.ii_cycles
    assert sim.latency_cycles == model.latency_cycles
    assert np.array_equal(sim.outputs, reference(net, x))


def test_integer_net_matches_brevitas():
    torch = pytest.importorskip("torch")
    pytest.importorskip("brevitas")
    import torch.nn as nn

    from edgeprune.quant.brevitas_model import calibrate, to_brevitas
    from edgeprune.quant.integer_net import check_integer_net, to_integer_net

    class Small(nn.Module):
        input_shape = (1, 12, 12)

        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 3, 3)
            self.pool = nn.MaxPool2d(2)
            self.fc1 = nn.Linear(3 * 5 * 5, 8)
            self.fc2 = nn.Linear(8, 4)

        def forward(self, x):
            x = self.pool(self.conv(x)).flatten(1)
            return self.fc2(torch.relu(self.fc1(x)))

    torch.manual_seed(0)
    q = to_brevitas(Small(), wbits=4, abits=4)
    calibrate(q, torch.rand(64, 1, 12, 12))
    net = to_integer_net(q)
    assert [type(l).__name__ for l in net.layers] == ["MatLayer", "MaxPool", "MatLayer",
                                                       "MatLayer"]
    assert net.layers[2].requant.signed is False and net.layers[0].requant.signed is True
    x = np.random.default_rng(0).integers(0, 256, size=(50, 1, 12, 12)).astype(np.float32)
    assert check_integer_net(q, net, x)["bit_exact"]


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "edgeprune", *args], capture_output=True,
                          text=True, cwd=REPO, timeout=300)


def test_export_rtl_refuses_what_it_cannot_build(tmp_path):
    for target, why in (("stm32l4r5-m4", "FPGA"), ("zcu104", "iCE40")):
        p = _cli("export", "rtl", "lenet5", "--target", target, "--data", "fashion-mnist",
                 "-o", str(tmp_path / target))
        assert p.returncode == 2, p.stderr
        assert p.stderr.startswith("edgeprune: error:") and why in p.stderr, p.stderr
        assert not (tmp_path / target).exists()


def test_ramb18_count_takes_the_cheapest_aspect_ratio():
    """A deep narrow ROM (dense LeNet-5's fc2: 5,000 x 4 bits) is 2 RAMB18 as 4Kx4 (yosys
    synth_xilinx: 2), not 5 as 1Kx18 tiles; wide shallow ones stay 512x36 tiles."""
    from edgeprune.backends.rtl.cost import _ramb18
    assert _ramb18(5000, 4) == 2
    assert _ramb18(10000, 160) == 90           # fc1: 9 x 10 tiles of 1Kx18
    assert _ramb18(200, 500) == 14             # 512x36
    assert _ramb18(1024, 32) == 2              # cal_mvu_r of rtl_yosys.json: yosys 2


def test_folded_mvu_estimate_grows_with_neuron_folds():
    """The output staging register of a folded MVU is filled one neuron fold at a time through
    an indexed part-select, and yosys builds a select per staged bit: the LUT estimate grows
    with (NF - 1) x PE x output bits (fitted on fold_calibration's units of rtl_yosys.py; the
    first calibration set stopped at 32 folds and dense LeNet-5's fc1 has 500)."""
    from edgeprune.backends.rtl import cost
    from edgeprune.backends.rtl.plan import Unit

    def mvu(mh):
        return Unit("mvu", "m", "m", 8, 4, True, mh, 4, True, mh * 2,
                    {"style": "folded", "MW": 8, "MH": mh, "PE": 1, "SIMD": 4, "NF": mh,
                     "SF": 2, "vectors": 1, "W": 4, "ACC": 10})
    assert cost.features(mvu(512), "xc7")[-1] == 511 * 4
    assert cost.features(mvu(1), "ice40")[-1] == 0
    for fam in ("ice40", "xc7"):
        grow = cost.unit_resources(mvu(512), fam)["lut"] - cost.unit_resources(mvu(8), fam)["lut"]
        assert grow > 0.5 * (511 - 7) * 4, (fam, grow)
