"""hls4ml export with a real g++ C-simulation (one model; ~1-2 min on a loaded 2-core machine)."""
from pathlib import Path
import json
import shutil
import subprocess

import pytest
import torch

pytest.importorskip("hls4ml")
pytest.importorskip("brevitas")
if shutil.which("g++") is None:
    pytest.skip("g++ not installed (needed for the hls4ml C-simulation)", allow_module_level=True)

from edgeprune.export.hls import export_hls  # noqa: E402
from edgeprune.targets import load_target  # noqa: E402

from test_fpga_common import tiny_pruned  # noqa: E402


@pytest.mark.slow
def test_hls_export_csim_bit_exact(tmp_path, monkeypatch):
    # A relative OUT, as users type it: the exporter runs g++ and the testbench in subdirectories.
    monkeypatch.chdir(tmp_path)
    out = Path("rel") / "hls"
    r = export_hls(tiny_pruned(), load_target("pynq-z2"), out, data="fashion-mnist", epochs=1,
                   max_steps_per_epoch=3,
                   verify_images=16, csim_images=200, progress=False)
    c = r["csim"]
    assert c["images"] == 200 and c["bit_exact"] and c["mismatched_outputs"] == 0
    assert c["argmax_agreement"] == 1.0
    # The AXI-stream wrapper + C++ testbench (hls/ templates) compiled and passed with g++.
    assert r["axi_testbench"]["returncode"] == 0
    assert "PASS" in r["axi_testbench"]["stdout_tail"][0]
    layers = {l["node"]: l for l in r["hls4ml_layers"]}
    assert set(layers) == {"conv1", "conv2", "fc"}
    # ReuseFactor follows the FINN folding (never slower than it) and is valid for hls4ml.
    for l in layers.values():
        assert 1 <= l["reuse_factor"] <= l["finn_equivalent_reuse"]
        assert (l["n_in"] * l["n_out"]) % l["reuse_factor"] == 0
    assert layers["fc"]["zero_weights"] >= 480 // 2     # half the FC weights were pruned
    cfg = json.loads((out / "hls4ml_config.json").read_text())
    assert cfg["LayerName"]["MatMul_0"]["ReuseFactor"] == layers["fc"]["reuse_factor"]
    # Zero weights are still zero in the generated HLS weights.
    fc_files = []
    for f in (out / "hls4ml_prj" / "firmware" / "weights").glob("w*.txt"):
        vals = [float(v) for v in f.read_text().replace("\n", ",").split(",") if v.strip()]
        if len(vals) == 96 * 10:
            fc_files.append(vals)
    assert len(fc_files) == 1
    assert sum(v == 0.0 for v in fc_files[0]) >= layers["fc"]["zero_weights"]
    for f in ("vivado/build_ip.tcl", "vivado/block_design.tcl", "vivado/run_vivado.sh",
              "vivado/edgeprune_axi.cpp", "vivado/edgeprune_axi_tb.cpp", "report.json"):
        assert (out / f).is_file(), f
    assert subprocess.run(["bash", "-n", str(out / "vivado" / "run_vivado.sh")]).returncode == 0
    tcl = (out / "vivado" / "block_design.tcl").read_text()
    assert "xc7z020clg400-1" in tcl and "processing_system7" in tcl
    assert r["finn_style_estimate"]["totals"]["capacity"]["dsp"] == 220
    assert any("do NOT apply" in s for s in r["which_model_applies"])



@pytest.mark.slow
def test_hls_csim_bit_exact_on_depthwise_pad_and_summing_pool(tmp_path):
    """DS-CNN at width 8 (asymmetric input pad, depthwise convs, the 25x5 average pool as an
    all-ones summing conv with 1/125 folded into the classifier) through hls4ml: the g++
    C-simulation equals the Brevitas model on every output (synthetic 49x10 data)."""
    from edgeprune.data import synthetic_dataset
    from edgeprune.models.mlperf_tiny import DSCNN

    torch.manual_seed(0)
    ds = synthetic_dataset((1, 49, 10), 12, n_train=32, n_test=16)
    r = export_hls(DSCNN(width=8).eval(), load_target("pynq-z2"), tmp_path / "hls", data=ds,
                   epochs=1, max_steps_per_epoch=1, verify_images=4, csim_images=16,
                   axi_testbench=False, progress=False)
    c = r["csim"]
    assert c["images"] == 16 and c["bit_exact"] and c["mismatched_outputs"] == 0
    nodes = {l["node"]: l for l in r["hls4ml_layers"]}
    assert nodes["pool:sum"]["kind"] == "dwconv2d" and nodes["pool:sum"]["n_out"] == 8
    assert sum(l["kind"] == "dwconv2d" for l in nodes.values()) == 5     # 4 depthwise + the sum


class _TinyResidual(torch.nn.Module):
    """ResNet-8's stem and identity residual stack at toy width (4 channels, 8x8 input)."""

    input_shape = (3, 8, 8)

    def __init__(self):
        super().__init__()
        from edgeprune.models.mlperf_tiny import _ResidualStack, _conv_bn_relu
        self.stem = torch.nn.Sequential(*_conv_bn_relu(3, 4, 3, padding=1))
        self.stack = _ResidualStack(4, 4, 1)
        self.pool = torch.nn.AvgPool2d(8)
        self.fc = torch.nn.Linear(4, 3)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(self.stack(self.stem(x))), 1))


def test_clone_precision_from_the_quant_feeding_two_layers():
    """A Quant output used twice gets its Clone type, under both names hls4ml may give it."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    from edgeprune.export.hls import HlsExportError, clone_precisions

    def graph(scale):
        inits = [numpy_helper.from_array(np.array(scale, np.float32), "s"),
                 numpy_helper.from_array(np.array(0.0, np.float32), "z"),
                 numpy_helper.from_array(np.array(4.0, np.float32), "b")]
        nodes = [helper.make_node("Relu", ["x"], ["r"], name="Relu_0"),
                 helper.make_node("Quant", ["r", "s", "z", "b"], ["q"], name="Quant_3",
                                  domain="qonnx.custom_op.general", signed=0, narrow=0,
                                  rounding_mode="ROUND"),
                 helper.make_node("Relu", ["q"], ["a"], name="A"),
                 helper.make_node("Relu", ["q"], ["c"], name="B"),
                 helper.make_node("Add", ["a", "c"], ["y"], name="Add_0")]
        vi = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 4]) for n in ("x", "y")]
        return helper.make_model(helper.make_graph(nodes, "g", vi[:1], vi[1:], inits))

    assert clone_precisions(graph(2.0 ** -5)) == {"clone_Quant_3": "ufixed<4,-1>",
                                                  "clone_Relu_0": "ufixed<4,-1>"}
    with pytest.raises(HlsExportError, match="power of two"):
        clone_precisions(graph(0.3))


@pytest.mark.slow
def test_hls_residual_converts_and_csim_bit_exact(tmp_path):
    """A residual (identity shortcut) model: hls4ml's conversion terminates (it looped forever
    in infer_precision_types on the shortcut's Clone before clone_precisions) and the g++
    C-simulation, built at g++ -O1, equals the Brevitas model on every output (synthetic 3x8x8
    data, ~50 s)."""
    import signal

    from edgeprune.data import synthetic_dataset

    def _hang(*_):
        raise TimeoutError("hls4ml conversion of a residual model did not finish in 300 s")

    torch.manual_seed(0)
    ds = synthetic_dataset((3, 8, 8), 3, n_train=32, n_test=16)
    old = signal.signal(signal.SIGALRM, _hang)
    signal.alarm(300)
    try:
        r = export_hls(_TinyResidual().eval(), load_target("pynq-z2"), tmp_path / "hls", data=ds,
                       epochs=1, max_steps_per_epoch=1, verify_images=4, csim_images=16,
                       axi_testbench=False, progress=False, csim_opt="O1")
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    c = r["csim"]
    assert c["images"] == 16 and c["bit_exact"] and c["mismatched_outputs"] == 0
    assert c["gxx_opt"] == "-O1"        # built at -O1; the project keeps hls4ml's -O3 script
    assert 'CFLAGS="-O3 -fPIC"' in (tmp_path / "hls" / "hls4ml_prj" / "build_lib.sh").read_text()
    cfg = json.loads((tmp_path / "hls" / "hls4ml_config.json").read_text())
    clones = {k: v for k, v in cfg["LayerName"].items() if k.startswith("clone_")}
    assert clones and all(v["Precision"]["result"].startswith("ufixed<") for v in clones.values())


def test_onnx_nodes_matched_to_modules_by_weight_shape_not_graph_order():
    """ResNet-8's stride-2 stack: the 1x1 shortcut conv can come first in the sorted ONNX graph;
    each module still gets its own node (a mix-up gave the 1x1 conv the 3x3 conv's ReuseFactor)."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    from edgeprune.export.hls import _match_onnx_nodes

    inits = [numpy_helper.from_array(np.zeros(s, np.float32), n) for n, s in
             (("w_sc", (32, 16, 1, 1)), ("w_c1", (32, 16, 3, 3)), ("w_fc", (32, 10)))]
    nodes = [helper.make_node("Conv", ["x", "w_sc"], ["s"], name="Conv_0"),
             helper.make_node("Quant", ["w_c1", "sc", "z", "b"], ["q1"], name="Quant_0"),
             helper.make_node("Conv", ["x", "q1"], ["c"], name="Conv_1"),
             helper.make_node("MatMul", ["c", "w_fc"], ["y"], name="MatMul_0")]
    vi = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1]) for n in ("x", "y")]
    model = helper.make_model(helper.make_graph(nodes, "g", vi[:1], vi[1:], inits))
    convs = [n for n in model.graph.node if n.op_type != "Quant"]
    rows = [(0, "stack.conv1", None, (32, 16, 3, 3), False),
            (1, "stack.shortcut", None, (32, 16, 1, 1), False),
            (2, "fc", None, (10, 32), False)]
    assert [n.name for n in _match_onnx_nodes(rows, convs, model)] == ["Conv_1", "Conv_0",
                                                                       "MatMul_0"]


def test_unrolled_strategy_only_for_large_pruned_layers():
    """Resource_Unrolled (one generated C++ statement per non-zero weight: minutes of g++ for a
    784x300 layer) only where zero weights remove a real share of the multipliers."""
    from edgeprune.export.hls import UNROLLED_MIN_ZERO_FRACTION, choose_strategy
    from edgeprune.layergraph import OpKind

    n = 784 * 300
    pruned = int(UNROLLED_MIN_ZERO_FRACTION * n) + 1
    assert choose_strategy(OpKind.LINEAR, 784, 300, 392, pruned, n) == "Resource_Unrolled"
    assert choose_strategy(OpKind.LINEAR, 784, 300, 392, pruned - 2, n) == "Resource"
    assert choose_strategy(OpKind.LINEAR, 784, 300, 392, 0, n) == "Resource"    # e.g. 1-bit
    assert choose_strategy(OpKind.LINEAR, 40, 100, 4, 0, 4000) == "Latency"    # small
    assert choose_strategy(OpKind.LINEAR, 784, 300, 1, 0, n) == "Latency"      # RF 1
    assert choose_strategy(OpKind.DWCONV2D, 576, 64, 72, 0, 576 * 64) == "Latency"


@pytest.mark.slow
def test_hls_csim_bit_exact_with_resource_and_unrolled_layers(tmp_path):
    """An MLP with one large pruned layer (Resource_Unrolled), one large dense layer (Resource)
    and a small one (Latency): the C-simulation (g++ -O1) is bit-exact with all three kernels."""
    import torch.nn as nn

    torch.manual_seed(0)
    m = nn.Sequential(nn.Flatten(), nn.Linear(784, 16), nn.ReLU(), nn.Linear(16, 300), nn.ReLU(),
                      nn.Linear(300, 10))
    with torch.no_grad():
        w = m[1].weight
        w[w.abs() <= w.abs().flatten().kthvalue(w.numel() // 2).values] = 0
    m.input_shape = (1, 28, 28)
    r = export_hls(m.eval(), load_target("pynq-z2"), tmp_path / "hls", data="fashion-mnist",
                   epochs=1, max_steps_per_epoch=2, verify_images=8, csim_images=64,
                   progress=False, csim_opt="O1")
    c = r["csim"]
    assert c["images"] == 64 and c["bit_exact"] and c["gxx_opt"] == "-O1"
    assert c["build_s"] > 0
    strategies = [l["strategy"] for l in r["hls4ml_layers"]]
    assert strategies == ["Resource_Unrolled", "Resource", "Latency"], strategies
    params = (tmp_path / "hls" / "hls4ml_prj" / "firmware" / "parameters.h").read_text()
    assert "nnet::resource_unrolled" in params and "nnet::resource;" in params
