"""MCU cost model, cost API (estimate / what_if / marginal_costs / budget_value), MCU targets."""
from __future__ import annotations

import dataclasses

import pytest
import torch.nn as nn

from edgeprune import cost
from edgeprune.cost.report import CostReport
from edgeprune.errors import EdgepruneError
from edgeprune.graph import extract
from edgeprune.models import build
from edgeprune.targets import Target, TargetError, list_targets, load_target

MCU_TARGETS = ("rp2040-m0plus", "stm32l4r5-m4", "stm32h7a3-m7", "stm32u585-m33", "alif-e3-m55")


@pytest.fixture(scope="module")
def lenet():
    return extract(build("lenet5"))


@pytest.fixture(scope="module")
def m4():
    return load_target("stm32l4r5-m4")


@pytest.fixture(scope="module")
def lenet_m4(lenet, m4):
    return cost.estimate(lenet, m4)


def with_spec(target: Target, **changes) -> Target:
    return dataclasses.replace(target, **changes)


class SmallNet(nn.Module):
    """conv-BN-ReLU, depthwise, pooling, residual add, linear: every MCU op kind."""

    input_shape = (3, 12, 12)

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.relu = nn.ReLU()
        self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.pw = nn.Conv2d(8, 8, 1)
        self.pool = nn.MaxPool2d(2)
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.flat = nn.Flatten()
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        x = self.relu(self.bn(self.conv(x)))
        x = x + self.pw(self.dw(x))
        return self.fc(self.flat(self.gap(self.pool(x))))


# ---------------------------------------------------------------------------------- targets

def test_mcu_targets_load_with_sources():
    names = {t.name: t for t in list_targets() if t.kind == "mcu"}
    assert set(MCU_TARGETS) <= set(names)
    cores = {names[n].core for n in MCU_TARGETS}
    assert cores == {"cortex-m0plus", "cortex-m4", "cortex-m7", "cortex-m33", "cortex-m55"}
    for n in MCU_TARGETS:
        t = names[n]
        assert t.clock_mhz > 0 and t.flash_kb > 0 and t.ram_kb > 0
        assert t.runtime in ("tflm-reference", "tflm-cmsis-nn")
        assert t.get("source"), f"{n} names no source"
    assert names["stm32l4r5-m4"].clock_mhz == 120 and names["stm32h7a3-m7"].clock_mhz == 280


def test_unknown_target_names_known_ones():
    with pytest.raises(TargetError) as e:
        load_target("no-such-chip")
    msg = str(e.value)
    assert "no-such-chip" in msg and "stm32l4r5-m4" in msg and "\n" not in msg


def test_bad_toml_is_one_line_error_naming_file(tmp_path):
    bad = tmp_path / "broken.toml"
    bad.write_text("kind = 'mcu'\ncore = \n")
    with pytest.raises(TargetError) as e:
        load_target(str(bad))
    assert str(bad) in str(e.value) and "\n" not in str(e.value).strip()
    missing = tmp_path / "missing_key.toml"
    missing.write_text("kind = 'mcu'\ncore = 'cortex-m4'\nclock_mhz = 80\nflash_kb = 512\n")
    with pytest.raises(TargetError, match="ram_kb"):
        load_target(str(missing))


# -------------------------------------------------------------------------------- estimate

def test_lenet5_totals_and_consistency(lenet_m4, m4):
    t = lenet_m4.totals
    assert isinstance(lenet_m4, CostReport) and lenet_m4.kind == "mcu"
    assert t["params"] == 431080 and t["macs"] == 2293000
    assert t["cycles"] > t["macs"]  # no Cortex-M4 kernel does better than 1 MAC per cycle
    assert t["latency_ms"] == pytest.approx(t["cycles"] / (m4.clock_mhz * 1e3), rel=1e-6)
    assert sum(r["cycles"] for r in lenet_m4.layers) + t["interpreter_cycles"] == \
        pytest.approx(t["cycles"], abs=len(lenet_m4.layers))
    # int8 weights alone are 430,500 bytes; the flatbuffer adds biases, quant params, format
    assert 430_500 < t["flash_bytes"] < 470_000
    assert t["ram_bytes"] > 24 * 24 * 20  # conv1's int8 output must fit in the arena
    assert t["fits_flash"] and t["fits_ram"]
    conv1 = lenet_m4.layer("conv1")
    assert conv1["tflite_op"] == "CONV_2D" and conv1["cycles"] > 0 and conv1["flash_bytes"] >= 500
    assert lenet_m4.layer("relu")["cycles"] == 0 and "fused" in lenet_m4.layer("relu")["tflite_op"]
    assert lenet_m4.to_dict()["totals"]["macs"] == 2293000


def test_layer_cycles_follow_the_constants(lenet_m4):
    """conv2 (12x12x20 -> 8x8x50, 5x5) on the M4 with CMSIS-NN, from the constants fitted on
    the real TFLM kernels (tflm_constants; arm_convolve_s8 on an even number of pixels)."""
    from edgeprune.cost import tflm_constants
    coef = tflm_constants.KERNEL_CYCLES["tflm-cmsis-nn"]["cortex-m4"]["cm_conv"]
    terms = {"macs": 64 * 50 * 500, "macs_tail4": 0, "macs_odd": 0, "im2col": 64 * 500,
             "ptaps": 64 * 25, "ptaps_pad": 0, "outputs": 64 * 50, "call": 1}
    expected = sum(c * terms[t] for t, c in coef.items())
    expected += tflm_constants.INTERPRETER_CYCLES["tflm-cmsis-nn"]["cortex-m4"]["op"]
    assert lenet_m4.layer("conv2")["cycles"] == pytest.approx(expected, abs=1)


def test_runtime_and_core_change_cycles(lenet, m4, lenet_m4):
    ref = cost.estimate(lenet, with_spec(m4, runtime="tflm-reference"))
    # measured: CMSIS-NN-style SMLAD kernels beat the reference loops on a DSP core
    assert ref.totals["cycles"] > 1.5 * lenet_m4.totals["cycles"]
    assert ref.totals["macs"] == lenet_m4.totals["macs"]
    faster_clock = cost.estimate(lenet, with_spec(m4, clock_mhz=240))
    assert faster_clock.totals["latency_ms"] == pytest.approx(lenet_m4.totals["latency_ms"] / 2, rel=1e-6)
    m0 = cost.estimate(lenet, load_target("rp2040-m0plus"))
    assert m0.totals["cycles"] > lenet_m4.totals["cycles"]


def test_every_op_kind_and_fusion():
    g = extract(SmallNet())
    for name in MCU_TARGETS:
        r = cost.estimate(g, load_target(name))
        ops = {row["name"]: row for row in r.layers}
        assert ops["bn"]["cycles"] == 0 and ops["relu"]["cycles"] == 0     # folded / fused
        for n in ("conv", "dw", "pw", "pool", "add", "gap", "fc"):
            assert ops[n]["cycles"] > 0, (name, n)
        assert r.totals["cycles"] > 0 and r.totals["ram_bytes"] > 0


def test_does_not_fit_is_reported(lenet, m4):
    tiny = with_spec(m4, flash_kb=64, ram_kb=8)
    r = cost.estimate(lenet, tiny)
    assert not r.totals["fits_flash"] and not r.totals["fits_ram"]
    assert any("does NOT fit flash" in n for n in r.notes)
    assert any("does NOT fit RAM" in n for n in r.notes)


def test_deterministic(lenet, m4, lenet_m4):
    assert cost.estimate(lenet, m4).to_dict() == lenet_m4.to_dict()


def test_bad_target_kind(lenet, m4):
    with pytest.raises(EdgepruneError):
        cost.estimate(lenet, dataclasses.replace(m4, kind="gpu"))


# ------------------------------------------------------------------------ what-if / marginal

def test_what_if_is_honest_about_tflm(lenet, m4, lenet_m4):
    rows = {r["name"]: r for r in cost.what_if(lenet, m4, 0.1)}
    assert set(rows) == {"conv1", "conv2", "fc1", "fc2"}
    for r in rows.values():
        # dense int8 kernels: scattered zeros save nothing
        assert r["weights_removed"] > 0
        assert all(v == 0 for v in r["weights"].values())
        assert "dense" in r["note"]
    c1 = rows["conv1"]
    assert c1["prunable"] and c1["channels_removed"] == 2
    assert c1["channels"]["cycles"] > 0 and c1["channels"]["flash_bytes"] > 0
    assert c1["channels"]["macs"] == 2 * 24 * 24 * 25 + 2 * 50 * 64 * 25
    assert rows["fc1"]["channels"]["flash_bytes"] >= 50 * 800  # 50 rows of fc1 + 50 cols of fc2
    assert not rows["fc2"]["prunable"] and "output" in rows["fc2"]["note"]
    assert rows["fc2"]["channels"] == {}


def test_marginal_costs_and_budget_value(lenet, m4, lenet_m4):
    mc = cost.marginal_costs(lenet, m4)
    wi = {r["name"]: r for r in cost.what_if(lenet, m4, 0.1)}
    per = mc["conv2"]["per_channel"]
    assert per["cycles"] == pytest.approx(wi["conv2"]["channels"]["cycles"] / wi["conv2"]["channels_removed"])
    assert set(per) >= {"cycles", "latency_ms", "flash_bytes", "ram_bytes"}
    assert mc["conv2"]["per_weight"]["cycles"] == 0
    assert mc["fc2"]["per_channel"] == {}
    t = lenet_m4.totals
    assert cost.budget_value(lenet_m4, "flash_kb") == pytest.approx(t["flash_bytes"] / 1024)
    assert cost.budget_value(lenet_m4, "ram_kb") == pytest.approx(t["ram_bytes"] / 1024)
    assert cost.budget_value(lenet_m4, "latency_ms") == pytest.approx(t["latency_ms"])
    assert cost.budget_value(lenet_m4, "macs") == 2293000
    assert cost.budget_value(lenet_m4, "fps") == pytest.approx(1000 / t["latency_ms"])
    with pytest.raises(cost.CostError, match="known"):
        cost.budget_value(lenet_m4, "watts")
    with pytest.raises(cost.CostError):
        cost.budget_value(lenet_m4, "lut")          # an FPGA metric on an MCU report
    with pytest.raises(cost.CostError):
        cost.what_if(lenet, m4, 1.5)
