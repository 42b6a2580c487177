"""W1A1 (bipolar) FPGA path: Brevitas binary quantizers -> QONNX BipolarQuant, FINN XNOR layers
in the cost model, hls4ml C-simulation bit-exact (tiny models, synthetic pixels)."""
import shutil

import numpy as np
import pytest
import torch
import torch.nn as nn

pytest.importorskip("brevitas")
pytest.importorskip("qonnx")

from edgeprune.backends.finn.layers import (HWLayer, LayerConfig, _popcount_luts, evaluate,  # noqa: E402
                                            is_xnor, layer_options)
from edgeprune.quant.brevitas_model import FpgaConversionError, integer_weights, to_brevitas  # noqa: E402
from edgeprune.quant.qonnx_io import export_qonnx_model, verify_qonnx  # noqa: E402

from test_fpga_common import tiny_pruned  # noqa: E402


def _pixels(n, shape=(1, 28, 28), seed=0):
    g = np.random.default_rng(seed)
    return g.integers(0, 256, size=(n,) + shape).astype(np.float32)


def test_w1a1_twin_is_bipolar_and_qonnx_equals_brevitas(tmp_path):
    q = to_brevitas(tiny_pruned(), wbits=1, abits=1)
    for w in integer_weights(q).values():
        assert set(torch.unique(w).tolist()) <= {-1, 1}          # no zeros at 1 bit
    path = export_qonnx_model(q, tmp_path / "m.onnx")
    import onnx
    ops = [n.op_type for n in onnx.load(str(path)).graph.node]
    # 3 weight quantizers + 2 sign activations (the last layer streams its accumulator)
    assert ops.count("BipolarQuant") == 5
    x = _pixels(16)
    check = verify_qonnx(q, path, x)
    assert check.max_abs_diff == 0.0 and check.exact_integer_outputs == 1.0
    # Hidden activations really are +-1: conv2 sees only bipolar values.
    seen = []
    conv2 = q.core[[l for l in q.layers if l.node == "conv2"][0].index]
    h = conv2.register_forward_pre_hook(lambda m, a: seen.append(a[0].value))
    q.core(torch.from_numpy(x))
    h.remove()
    assert set(torch.unique(seen[0]).tolist()) == {-1.0, 1.0}


def test_bipolar_padding_and_merges_are_refused():
    class Padded(nn.Module):
        input_shape = (1, 8, 8)

        def __init__(self):
            super().__init__()
            self.c1 = nn.Conv2d(1, 4, 3)
            self.c2 = nn.Conv2d(4, 4, 3, padding=1)
            self.fc = nn.Linear(4 * 6 * 6, 2)

        def forward(self, x):
            return self.fc(torch.flatten(self.c2(self.c1(x)), 1))
    with pytest.raises(FpgaConversionError, match="padding of a 1-bit"):
        to_brevitas(Padded(), wbits=1, abits=1)
    # ... and fine once the padded layer's input has 2 bits.
    to_brevitas(Padded(), wbits=1, abits=1, per_layer={"c1": {"a": 2}})


def test_xnor_cost_form():
    assert [_popcount_luts(s) for s in (1, 2, 4, 64)] == [1, 3, 8, 184]
    mk = lambda a: HWLayer("MVAU_hls", "fc", [-1], {"MW": 1024, "MH": 1024,  # noqa: E731
                                                   "numInputVectors": [1], "noActivation": 0,
                                                   "acc_bits": 12, "binaryXnorMode": int(a == 1)},
                           a, 1, 1)
    xnor, mixed = mk(1), mk(2)
    assert is_xnor(xnor) and not is_xnor(mixed)
    assert {c.resType for c in layer_options(xnor)} == {"lut"}          # no DSPs for XNOR
    cfg = LayerConfig(32, 64, "lut", "block")
    cx, cm = evaluate(xnor, cfg), evaluate(mixed, cfg)
    assert cx.cycles == cm.cycles == (1024 // 32) * (1024 // 64)
    assert cx.lut < cm.lut and cx.dsp == 0


def test_lfc_estimate_against_bnn_pynq_folding():
    from benchmarks.fpga_zoo import bnn_pynq_lfc_fps, lfc_row, parse_args
    r = lfc_row(parse_args(["--models", ""]))
    assert bnn_pynq_lfc_fps() == pytest.approx(100e6 / 512)
    # 1-bit input makes the first layer XNOR too: cheaper and at least as fast as uint8 input.
    assert r["input_1bit"]["lut"] < r["lut"]
    assert r["input_1bit"]["fps_estimate"] >= r["fps_estimate"]
    assert r["dsp"] == r["input_1bit"]["dsp"] == 0


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("g++") is None, reason="g++ not installed (hls4ml C-simulation)")
def test_w1a1_hls_csim_bit_exact_and_finn_project(tmp_path):
    pytest.importorskip("hls4ml")
    from edgeprune.data import synthetic_dataset
    from edgeprune.deploy import Deployment
    from edgeprune.export.finn import export_finn
    from edgeprune.export.hls import export_hls
    from edgeprune.targets import load_target
    ds = synthetic_dataset((1, 28, 28), 10, 256, 64, seed=0)
    dep = Deployment.for_target(load_target("pynq-z2"), wbits=1, abits=1)
    kw = dict(data=ds, epochs=1, max_steps_per_epoch=2, verify_images=16, progress=False)
    r = export_hls(tiny_pruned(), dep, tmp_path / "hls", csim_images=64, axi_testbench=False, **kw)
    assert r["csim"]["images"] == 64 and r["csim"]["bit_exact"]
    f = export_finn(tiny_pruned(), dep, tmp_path / "finn", model_name="tiny", **kw)
    assert f["quantization"]["qonnx_vs_brevitas"]["max_abs_diff"] == 0.0
    mv = {l["node"]: l for l in f["folding"]["layers"] if l["op_type"] == "MVAU_hls"}
    assert (tmp_path / "finn" / "model.onnx").is_file()
    assert set(mv) == {"conv1", "conv2", "fc"}


def _lfc_tiny() -> nn.Module:
    """An LFC-style MLP (linear + BN + activation), small enough for a quick hls4ml C-sim."""
    torch.manual_seed(0)
    m = nn.Sequential(nn.Flatten(), nn.Linear(784, 32), nn.BatchNorm1d(32), nn.ReLU(),
                      nn.Linear(32, 10))
    m.input_shape = (1, 28, 28)
    return m


@pytest.mark.parametrize("make,input_bits", [(_lfc_tiny, 1), (_lfc_tiny, 8), (tiny_pruned, 8)])
def test_bnn_training_batchnorm_folds_exactly(make, input_bits):
    """W1A1 layers train behind a BatchNorm (else the sign's straight-through estimator, which
    passes gradients only for |x| <= 1, gets accumulators of +-sqrt(fan-in) and the layers do not
    learn); fold_sign_batchnorms turns it into integer thresholds and weight-sign flips with the
    same outputs, for positive, negative and zero BatchNorm gammas."""
    from edgeprune.quant.brevitas_model import _SignBatchNorm, fold_sign_batchnorms
    torch.manual_seed(1)
    q = to_brevitas(make(), wbits=1, abits=1, input_bits=input_bits)
    bns = [m for m in q.core.mods if isinstance(m, _SignBatchNorm)]
    assert bns
    with torch.no_grad():
        for m in bns:
            c = m.bn.num_features
            m.bn.running_mean.uniform_(-20, 20)
            m.bn.running_var.uniform_(1, 400)
            m.bn.weight.copy_(torch.randn(c))
            m.bn.weight[0] = 0.0                       # a constant sign
            m.bn.bias.copy_(torch.randn(c))
    q.eval()
    x = torch.from_numpy(_pixels(64)) / 255.0
    before = q(x)
    assert fold_sign_batchnorms(q) == len(bns)
    assert not any(isinstance(m, _SignBatchNorm) for m in q.core.mods)
    assert torch.equal(q(x), before)
    for w in integer_weights(q).values():
        assert set(torch.unique(w).tolist()) <= {-1, 1}


def test_w1a1_mlp_hls_csim_bit_exact(tmp_path):
    """A W1A1 MLP (LFC-style: linear + BN + sign): hls4ml merges each bias Add with the sign
    into BatchNormalizationQuantizedTanh, whose type edgeprune sets; C-sim bit-exact."""
    pytest.importorskip("hls4ml")
    from edgeprune.data import synthetic_dataset
    from edgeprune.deploy import Deployment
    from edgeprune.export.hls import export_hls
    from edgeprune.targets import load_target
    m = _lfc_tiny()
    ds = synthetic_dataset((1, 28, 28), 10, 256, 32, seed=0)
    dep = Deployment.for_target(load_target("pynq-z2"), wbits=1, abits=1)
    r = export_hls(m.eval(), dep, tmp_path / "hls", data=ds, epochs=1, max_steps_per_epoch=2,
                   verify_images=8, csim_images=32, axi_testbench=False, progress=False,
                   csim_opt="O1")
    assert r["csim"]["images"] == 32 and r["csim"]["bit_exact"]
    cfg = (tmp_path / "hls" / "hls4ml_prj" / "firmware" / "parameters.h").read_text()
    assert "batchnorm_quantized_tanh_config" in cfg      # the merged bias + sign layer


def test_one_bit_input_mlp_qonnx_hls_and_finn(tmp_path):
    """BNN-PYNQ's LFC input: pixels binarized on the host (>= 128 -> +1). The core's input
    quantizer is a scale-1 BipolarQuant, stripped from model.onnx (input annotated BIPOLAR); the
    first layer is XNOR-popcount in the FINN folding; QONNX = Brevitas and the hls4ml C-sim are
    exact on the binarized pixels."""
    pytest.importorskip("hls4ml")
    import dataclasses

    from qonnx.core.modelwrapper import ModelWrapper

    from edgeprune.data import synthetic_dataset
    from edgeprune.deploy import Deployment
    from edgeprune.export.finn import export_finn
    from edgeprune.export.hls import export_hls
    from edgeprune.quant.qonnx_io import pixels
    from edgeprune.targets import load_target
    m = _lfc_tiny()
    assert set(np.unique(pixels(np.array([[0, 127, 128, 255]]), (4,), 1))) == {-1.0, 1.0}
    assert pixels(np.array([[0, 127, 128, 255]]), (4,), 1).tolist() == [[-1, -1, 1, 1]]
    ds = synthetic_dataset((1, 28, 28), 10, 256, 32, seed=0)
    dep = dataclasses.replace(Deployment.for_target(load_target("pynq-z2"), wbits=1, abits=1),
                              input_bits=1)
    kw = dict(data=ds, epochs=1, max_steps_per_epoch=2, verify_images=32, progress=False)
    f = export_finn(m.eval(), dep, tmp_path / "finn", model_name="lfc1", **kw)
    assert f["quantization"]["qonnx_vs_brevitas"]["max_abs_diff"] == 0.0
    assert f["quantization"]["input"].startswith("bipolar")
    mw = ModelWrapper(str(tmp_path / "finn" / "model.onnx"))
    assert str(mw.get_tensor_datatype(mw.graph.input[0].name)) == "BIPOLAR"
    assert mw.find_consumers(mw.graph.input[0].name)[0].op_type != "BipolarQuant"
    first = [l for l in f["folding"]["layers"] if l["op_type"] == "MVAU_hls"][0]
    assert first["in_bits"] == 1 and first["shape"]["binaryXnorMode"] == 1
    r = export_hls(m.eval(), dep, tmp_path / "hls", csim_images=32, axi_testbench=False,
                   csim_opt="O1", **kw)
    assert r["csim"]["images"] == 32 and r["csim"]["bit_exact"]
    assert "fixed<2,2>" in (tmp_path / "hls" / "hls4ml_prj" / "firmware" /
                            "defines.h").read_text()
    # the RTL export takes uint8 pixels only: refused before any training
    from edgeprune.errors import EdgepruneError
    from edgeprune.export.rtl import export_rtl
    with pytest.raises(EdgepruneError, match="input bits 8"):
        export_rtl(m.eval(), dep, tmp_path / "rtl", data=ds)


def test_w1a2_mlp_hls_csim_bit_exact(tmp_path):
    """1-bit weights, 2-bit activations (W1A2): not XNOR-popcount (FINN's XNOR mode needs both
    operands bipolar); the accumulator holds sums at the activations' 2^-k scale, so its type
    (edgeprune's, hls4ml cannot infer it from the 1-bit weights) has fractional bits. C-sim
    bit-exact."""
    pytest.importorskip("hls4ml")
    import onnx

    from edgeprune.data import synthetic_dataset
    from edgeprune.deploy import Deployment
    from edgeprune.export.hls import _wide_accumulator_type, export_hls
    from edgeprune.targets import load_target
    m = _lfc_tiny()
    ds = synthetic_dataset((1, 28, 28), 10, 256, 32, seed=0)
    dep = Deployment.for_target(load_target("pynq-z2"), wbits=1, abits=2)
    r = export_hls(m.eval(), dep, tmp_path / "hls", data=ds, epochs=1, max_steps_per_epoch=2,
                   verify_images=8, csim_images=32, axi_testbench=False, progress=False,
                   csim_opt="O1")
    assert r["csim"]["images"] == 32 and r["csim"]["bit_exact"]
    assert r["quantization"]["qonnx_vs_brevitas"]["max_abs_diff"] == 0.0
    # the case the type is for: a scale below 1 in the graph (else a 32-bit integer would do)
    acc_t = _wide_accumulator_type(onnx.load(str(tmp_path / "hls" / "model.onnx")))
    assert acc_t != "fixed<32,32>"
