"""FINN-style FPGA cost model: hand-worked formulas, folding rules, auto-folding, what-if."""
from __future__ import annotations

import itertools
import math

import pytest
import torch.nn as nn

from edgeprune.backends.finn import layers as fl
from edgeprune.backends.finn.folding import (FoldingError, _weights, auto_fold, fold_units,
                                             part_of)
from edgeprune.cost.fpga import estimate_fpga, what_if_fpga
from edgeprune.errors import EdgepruneError
from edgeprune.graph import extract
from edgeprune.models import ZOO, build
from edgeprune.deploy import Deployment
from edgeprune.targets import McuTarget, load_target


class _Seq(nn.Sequential):
    def __init__(self, shape, *mods):
        super().__init__(*mods)
        self.input_shape = shape


def _layer(graph, op_type, node=None, **bits):
    lw = fl.lower(graph, **bits)
    return next(l for l in lw.layers if l.op_type == op_type and (node is None or l.node == node))


# --------------------------------------------------------------------------------------------
# Hand-worked single-layer examples

def test_mvau_800x500_pe10_simd16():
    g = extract(_Seq((800,), nn.Linear(800, 500)))
    mvau = _layer(g, "MVAU_hls", wbits=4, abits=4, input_bits=4)
    assert (mvau.shape["MW"], mvau.shape["MH"], mvau.shape["noActivation"]) == (800, 500, 1)
    c = fl.evaluate(mvau, fl.LayerConfig(PE=10, SIMD=16, resType="lut", ram_style="block"))
    # cycles = (MH/PE) * (MW/SIMD) * vectors = 50 * 50 * 1
    assert c.cycles == 2500
    # accumulator: alpha = log2(800) + 4 + 4 - 1 = 16.64 -> ceil(16.64 + ~0 + 1) = 18 bits
    assert mvau.shape["acc_bits"] == 18
    # LUT = 300 + 1.1 * PE * (mult + adder + acc), no thresholds (last layer):
    # mult = SIMD * (2*ceil(8/6) - 1) * 8 = 16*3*8 = 384; adder = 8 * (2*16 - 1) = 248; acc = 18
    # = 300 + 1.1 * 10 * 650 = 7450
    assert c.lut == 7450
    # BRAM18: depth WMEM = 800*500/160 = 2500 (> 512), width = 10*16*4 = 640 bits
    # -> ceil(2500/1024) * ceil(640/18) = 3 * 36 = 108
    assert c.bram18 == 108 and c.dsp == 0
    d = fl.evaluate(mvau, fl.LayerConfig(PE=10, SIMD=16, resType="dsp", ram_style="distributed"))
    # DSP = PE * SIMD * ceil((4+4)/48) = 160; LUT drops the multipliers but adds LUTRAM weights:
    # 300 + 1.1*10*(248+18) + PE*SIMD*W*ceil(2500/64) = 300 + 2926 + 640*40 = 28826
    assert (d.dsp, d.bram18, d.lut) == (160, 0, 28826)


def test_lenet_conv2_5x5_on_12x12x20_gives_50_channels():
    g = extract(build("lenet5"))
    swg = _layer(g, "ConvolutionInputGenerator_hls", "conv2")
    mvau = _layer(g, "MVAU_hls", "conv2")
    # 5x5 conv on 12x12x20 -> 8x8x50: MW = 20*5*5 = 500, MH = 50, 64 input vectors
    assert (mvau.shape["MW"], mvau.shape["MH"], mvau.shape["numInputVectors"]) == (500, 50, [8, 8])
    c = fl.evaluate(mvau, fl.LayerConfig(PE=5, SIMD=20, resType="lut", ram_style="block"))
    assert c.cycles == (50 // 5) * (500 // 20) * 64 == 16000
    # SWG: IFM_W*K_H*Ch/SIMD + OFM_H*max(OFM_W*K_W*K_H*Ch/SIMD, stride*IFM_W*Ch/SIMD)
    # SIMD 4: 12*5*5 + 8*max(8*25*5, 12*5) = 300 + 8000 = 8300
    s = fl.evaluate(swg, fl.LayerConfig(SIMD=4, ram_style="block"))
    assert s.cycles == 8300
    # line buffer: (K + stride) = 6 rows, depth 12*20/4 = 60 words (512x36 shape), 32 bits wide
    assert s.bram18 == 6 * math.ceil(32 / 36) * math.ceil(60 / 512) == 6
    assert fl.evaluate(swg, fl.LayerConfig(SIMD=20, ram_style="block")).cycles == 60 + 8 * 200


def test_vvau_maxpool_pool_and_stream_ops():
    g = extract(build("dscnn"))
    vvau = _layer(g, "VVAU_hls")
    # depthwise 3x3 on 25x5x64: Ch*K*K/(PE*SIMD) * H*W = 64*9/8 * 125 = 9000
    assert fl.evaluate(vvau, fl.LayerConfig(8, 1, "lut", "block")).cycles == 9000
    assert fl.evaluate(vvau, fl.LayerConfig(64, 3, "dsp", "block")).cycles == 375
    # The 25x5 average pool is what the export builds: an all-ones depthwise conv (2-bit
    # weights) over the whole map, requantized by its thresholds: Ch*K/(PE*SIMD) * 1 position.
    gap = _layer(g, "VVAU_hls", "pool")
    assert gap.shape["Kernel"] == [25, 5] and gap.shape["Dim"] == [1, 1] and gap.w_bits == 2
    assert fl.evaluate(gap, fl.LayerConfig(4, 1, "lut", "block")).cycles == 64 * 125 // 4
    lenet = extract(build("lenet5"))
    mp = _layer(lenet, "StreamingMaxPool_hls", "pool1")
    # 24*24*(1 + 1/4) = 720
    assert fl.evaluate(mp, fl.LayerConfig()).cycles == 720
    vgg = extract(build("vgg_small"))
    pool = _layer(vgg, "Pool_hls")      # maxpool 2 on the odd 7x7 map -> SWG + Pool
    assert pool.shape["OutImgDims"] == [3, 3]
    assert fl.evaluate(pool, fl.LayerConfig(PE=16)).cycles == 64 * 4 // 16 * 9


def test_depthwise_swg_is_coupled_and_vvau_simd_rule():
    g = extract(build("dscnn"))
    lw = fl.lower(g)
    for l in lw.layers:
        if l.op_type == "ConvolutionInputGenerator_hls" and l.shape["depthwise"]:
            assert lw.layers[l.couple].op_type == "VVAU_hls"
    vvau = _layer(g, "VVAU_hls")
    vvau.name = "VVAU_hls_0"
    with pytest.raises(FoldingError):
        fl.check_config(vvau, fl.LayerConfig(8, 3, "lut", "block"))    # SIMD>1 needs PE=Ch
    with pytest.raises(FoldingError):
        fl.check_config(vvau, fl.LayerConfig(64, 2, "lut", "block"))    # 9 % 2 != 0
    fl.check_config(vvau, fl.LayerConfig(64, 9, "lut", "block"))


# --------------------------------------------------------------------------------------------
# Folding rules and search

@pytest.mark.parametrize("model", sorted(ZOO))
def test_auto_fold_respects_divisibility_on_zoo(model):
    g = extract(build(model))
    fold = auto_fold(g, load_target("zcu104"), wbits=4, abits=4)
    by_index = {l.order: l for l in fold.layers}
    assert fold.layers and fold.ii_cycles == max(l.cycles for l in fold.layers)
    for l in fold.layers:
        s, a = l.shape, l.attrs
        if l.op_type == "MVAU_hls":
            assert s["MH"] % a["PE"] == 0 and s["MW"] % a["SIMD"] == 0
            assert a["SIMD"] * 1024 >= s["MW"]
        elif l.op_type == "VVAU_hls":
            k2 = s["Kernel"][0] * s["Kernel"][1]
            assert s["Channels"] % a["PE"] == 0 and k2 % a["SIMD"] == 0
            assert a["SIMD"] == 1 or a["PE"] == s["Channels"]
        elif l.op_type == "ConvolutionInputGenerator_hls":
            assert s["IFMChannels"] % a["SIMD"] == 0
            if s["depthwise"]:
                consumer = next(m for m in fold.layers if m.order > l.order
                                and m.op_type in ("VVAU_hls", "Pool_hls"))
                assert a["SIMD"] == consumer.attrs["PE"]
        elif l.op_type != "StreamingMaxPool_hls":
            p = a.get("PE", a.get("SIMD"))
            ch = s.get("NumChannels", s.get("Channels"))
            assert ch % p == 0
    cfg = fold.finn_folding_config()
    assert "Defaults" in cfg and all(name in cfg for name in
                                     (l.name for l in fold.layers if l.attrs))
    assert by_index[0].order == 0


def _tiny_cnn():
    return extract(_Seq((2, 6, 6), nn.Conv2d(2, 4, 3), nn.ReLU(), nn.Flatten(),
                        nn.Linear(4 * 4 * 4, 4)))


def test_auto_fold_target_fps_is_least_cost_by_brute_force():
    g = _tiny_cnn()
    target = load_target("pynq-z2")
    part = part_of(target)
    lw = fl.lower(g, wbits=4, abits=4)
    units = fold_units(lw, True)
    w = _weights(part)
    T = 300  # cycles per frame (100 MHz / 300 = 333 kFPS): SWG needs SIMD 2 (SIMD 1: 324 cycles)
    fold = auto_fold(g, target, wbits=4, abits=4, target_fps=part.clock_mhz * 1e6 / T)
    assert fold.ii_cycles <= T

    def cost(costs):
        return sum(c * wi for c, wi in zip(costs, w))

    got = sum(cost([l.cost[r] for r in ("lut", "bram18", "uram", "dsp")]) for l in fold.layers)
    # brute force over every legal configuration of every layer
    per_layer = [fl.layer_options(l) for l in lw.layers]
    assert math.prod(len(o) for o in per_layer) > 1000
    best = math.inf
    for combo in itertools.product(*per_layer):
        lcs = [fl.evaluate(l, c) for l, c in zip(lw.layers, combo)]
        if max(c.cycles for c in lcs) > T:
            continue
        best = min(best, sum(cost([c.lut, c.bram18, c.uram, c.dsp]) for c in lcs))
    assert got == pytest.approx(best, rel=1e-12)
    assert len(units) == len(lw.layers)


def test_max_fps_mode_fits_and_faster_target_is_refused():
    g = extract(build("lenet5"))
    target = load_target("pynq-z2")
    fold = auto_fold(g, target, wbits=4, abits=4)
    assert fold.mode == "max_fps_fit" and fold.fits
    r = estimate_fpga(g, Deployment.for_target(target, wbits=4, abits=4))
    t = r.totals
    for res, lim in (("lut", 0.7), ("bram18", 0.8), ("dsp", 0.8)):
        assert t[res] <= lim * getattr(target, res)
    assert t["fps"] == pytest.approx(fold.fps)
    assert t["latency_ms"] > 0 and t["cycles"] >= t["ii_cycles"]
    # nothing faster than the best-fitting FPS fits: asking for more names the best FPS
    with pytest.raises(FoldingError, match=r"best that fits pynq-z2 is"):
        auto_fold(g, target, wbits=4, abits=4, target_fps=fold.fps * 1.5 + 1)


def test_unmeetable_target_fps_names_best_reachable():
    g = extract(build("lenet300100"))
    with pytest.raises(EdgepruneError, match=r"not reachable.*FPS"):
        estimate_fpga(g, Deployment.for_target(load_target("ultra96"), wbits=4, abits=4, fps=1e12))


def test_target_fps_mode_uses_fewer_resources_than_max_fps():
    g = extract(build("lenet5"))
    target = load_target("kv260")
    fast = estimate_fpga(g, Deployment.for_target(target, wbits=4, abits=4))
    slow = estimate_fpga(g, Deployment.for_target(target, wbits=4, abits=4, fps=100))
    assert slow.totals["fps"] >= 100
    assert slow.totals["lut"] < fast.totals["lut"]


def test_determinism_and_given_folding_roundtrip():
    g = extract(build("resnet8"))
    target = load_target("ultra96")
    a = auto_fold(g, target, wbits=4, abits=4)
    b = auto_fold(g, target, wbits=4, abits=4)
    assert a.to_dict() == b.to_dict()
    for l in a.to_dict()["layers"]:
        if l["op_type"] == "MVAU_hls":     # hls4ml ReuseFactor with the same multiplier count
            s, at = l["shape"], l["attrs"]
            assert l["hls4ml_reuse_factor"] == s["MW"] * s["MH"] // (at["PE"] * at["SIMD"])
    est = estimate_fpga(g, Deployment.for_target(target, wbits=4, abits=4))
    again = estimate_fpga(g, Deployment.for_target(target, wbits=4, abits=4), folding=a.to_dict())
    for k in ("fps", "lut", "bram18", "dsp", "cycles"):
        assert again.totals[k] == est.totals[k]
    bad = a.to_dict()
    mv = next(l for l in bad["layers"] if l["op_type"] == "MVAU_hls")
    mv["attrs"]["PE"] = 3                      # MH = 16 is not divisible by 3
    with pytest.raises(FoldingError, match="% PE=3"):
        estimate_fpga(g, Deployment.for_target(target, wbits=4, abits=4), folding=bad)


def test_report_rows_and_totals_schema():
    g = extract(build("lenet5"))
    r = estimate_fpga(g, Deployment.for_target(load_target("pynq-z2"), wbits=4, abits=4))
    d = r.to_dict()
    assert d["kind"] == "fpga"
    for k in ("params", "macs", "cycles", "fps", "latency_ms", "lut", "bram18", "dsp", "ff",
              "uram", "utilisation_pct"):
        assert k in d["totals"]
    assert d["totals"]["params"] == 431080 and d["totals"]["macs"] == 2293000
    assert [row["op"] for row in d["layers"]][:2] == ["ConvolutionInputGenerator_hls", "MVAU_hls"]
    assert sum(row["bottleneck"] for row in d["layers"]) >= 1
    assert any("FIFO" in n for n in d["notes"])


# --------------------------------------------------------------------------------------------
# What-if and targets

def test_what_if_scattered_gives_nothing_channels_save():
    g = extract(build("lenet5"))
    rows = what_if_fpga(g, Deployment.for_target("pynq-z2", wbits=4, abits=4))
    assert [r["name"] for r in rows] == ["conv1", "conv2", "fc1", "fc2"]
    for r in rows:
        sc = r["weights"]
        assert r["weights_removed"] == round(0.1 * g[r["name"]].weight_count)
        assert all(sc[k] == 0 for k in ("lut", "bram18", "dsp", "cycles", "fps"))
        assert "FINN" in r["weights_note"] and "hls4ml" in r["weights_note"]
    conv2 = rows[1]
    assert (conv2["group_size"], conv2["channels_after"], conv2["channels_removed"]) == (50, 45, 5)
    ch = conv2["channels"]
    assert ch["lut"] + ch["bram18"] + ch["dsp"] > 0
    assert not rows[3]["prunable"] and rows[3]["channels"] == {}
    assert "output" in rows[3]["channels_note"]


def test_fpga_targets_and_errors():
    names = {t.name for t in map(load_target, ("pynq-z2", "ultra96", "zcu104", "kv260"))}
    assert names == {"pynq-z2", "ultra96", "zcu104", "kv260"}
    boards = {load_target(n).finn_board for n in names}
    assert boards == {"Pynq-Z2", "Ultra96", "ZCU104", "KV260_SOM"}
    for n in names:
        t = load_target(n)
        assert t.kind == "fpga" and t.source and t.bram18 > 0
    mcu = McuTarget(name="m4", kind="mcu", path=None, clock_mhz=100.0, core="cortex-m4")
    with pytest.raises(EdgepruneError, match="not an FPGA target"):
        auto_fold(extract(build("lenet300100")), mcu, wbits=4, abits=4)
    with pytest.raises(EdgepruneError, match="unknown layer"):
        estimate_fpga(extract(build("lenet300100")),
                      Deployment.for_target("pynq-z2", bits_per_layer={"nope": {"w": 4}}))
