"""The zoo through the FPGA path (issue 13): residual adds, depthwise convolutions, average and
global average pooling, padding - Brevitas twin, QAT, QONNX = Brevitas, FINN project. Tiny:
few images, one QAT step, MobileNet at 32x32. The hls4ml C-simulation of these ops runs on the
toy model in tests/test_fpga_hls.py."""
import json

import numpy as np
import pytest
import torch

pytest.importorskip("brevitas")
pytest.importorskip("qonnx")

from edgeprune.data import DataError, load_dataset, synthetic_dataset  # noqa: E402
from edgeprune.graph import extract  # noqa: E402
from edgeprune.layergraph import OpKind  # noqa: E402
from edgeprune.models import ZOO, build  # noqa: E402
from edgeprune.quant.brevitas_model import to_brevitas  # noqa: E402
from edgeprune.quant.fpga_support import SUPPORT  # noqa: E402
from edgeprune.quant.qat import qat  # noqa: E402
from edgeprune.quant.qonnx_io import export_qonnx_model, pixels, verify_qonnx  # noqa: E402

ZOO_KW = {"resnet8": {}, "dscnn": {}, "mobilenetv1_025": {"image_size": 32},
          "fc_autoencoder": {}}
CLASSES = {"resnet8": 10, "dscnn": 12, "mobilenetv1_025": 2, "fc_autoencoder": 10}


@pytest.mark.parametrize("name", sorted(ZOO))
def test_no_zoo_op_is_unsupported_by_the_fpga_export(name):
    # both FPGA columns of the support matrix (`edgeprune ops`): the Brevitas/QONNX twin that
    # export finn and export hls share, and the FINN-style cost model that folds them
    from edgeprune.support_matrix import table
    graph = extract(build(name))
    for column in ("fpga-export", "fpga-cost"):
        t = table(column)
        for n in graph.nodes:
            assert t[n.op].supported, (column, name, n.name, n.op)
    assert table("fpga-export") is SUPPORT


@pytest.mark.parametrize("name", sorted(ZOO_KW))
def test_zoo_twin_qat_and_qonnx_equal_brevitas(name, tmp_path):
    torch.manual_seed(0)
    model = build(name, **ZOO_KW[name]).eval()
    shape = tuple(model.input_shape)
    ds = synthetic_dataset(shape, CLASSES[name], n_train=32, n_test=6)
    q = to_brevitas(model, wbits=4, abits=4)
    qat(q, ds, epochs=1, max_steps_per_epoch=1, batch_size=16, progress=False)
    path = export_qonnx_model(q, tmp_path / "m.onnx")
    check = verify_qonnx(q, path, pixels(ds.x_test, shape))
    assert check.images == 6
    assert check.max_abs_diff == 0.0 and check.exact_integer_outputs == 1.0

    graph = extract(model)
    steps = {out: idx for out, idx, _ in q.core.steps}
    for n in graph.nodes:
        if n.op == OpKind.ADD:
            # One quantizer instance on both branches: equal scale and sign (FINN AddStreams).
            assert steps[f"{n.name}:in0"] == steps[f"{n.name}:in1"]
    pools = [n for n in graph.nodes if n.op in (OpKind.AVGPOOL2D, OpKind.GAP)]
    assert len(q.sum_pools) == len(pools) == (0 if name == "fc_autoencoder" else 1)
    for sp in q.sum_pools:
        summ = q.core[sp.index]
        qw = summ.quant_weight()
        assert torch.all(qw.value == 1) and float(qw.scale) == 1.0      # exact window sum
        assert summ.groups == summ.in_channels                         # depthwise
    dws = [l for l in q.layers if l.kind == OpKind.DWCONV2D]
    assert len(dws) == sum(n.op == OpKind.DWCONV2D for n in graph.nodes)
    for l in dws:
        assert q.core[l.index].groups == l.weight_shape[0]

    from qonnx.core.modelwrapper import ModelWrapper
    mw = ModelWrapper(str(path))
    for add in [n for n in mw.graph.node if n.op_type == "Add"]:
        quants = [mw.find_producer(t) for t in add.input]
        assert all(p is not None and p.op_type == "Quant" for p in quants)
        scales = [mw.get_initializer(p.input[1]) for p in quants]
        assert np.array_equal(scales[0], scales[1])


def test_toy_graph_with_concat_pad_windowed_pool_qonnx_equals_brevitas(tmp_path):
    """Concat (shared quantizer on both inputs), asymmetric pad, a windowed 2x2 average pool and
    a global one, depthwise conv and a residual add on one toy graph."""
    from test_fpga_common import tiny_branchy

    torch.manual_seed(0)
    ds = synthetic_dataset((1, 12, 12), 10, n_train=32, n_test=8)
    q = to_brevitas(tiny_branchy(), wbits=3, abits=4)
    qat(q, ds, epochs=1, max_steps_per_epoch=2, batch_size=16, progress=False)
    path = export_qonnx_model(q, tmp_path / "m.onnx")
    check = verify_qonnx(q, path, pixels(ds.x_test, (1, 12, 12)))
    assert check.max_abs_diff == 0.0 and check.exact_integer_outputs == 1.0
    steps = {out: idx for out, idx, _ in q.core.steps}
    assert steps["cat:in0"] == steps["cat:in1"] and steps["add:in0"] == steps["add:in1"]
    assert [s.kernel for s in q.sum_pools] == [(2, 2), (4, 4)]
    from qonnx.core.modelwrapper import ModelWrapper
    ops = [n.op_type for n in ModelWrapper(str(path)).graph.node]
    assert {"Concat", "Add"} <= set(ops)      # (the input Pad may be merged into the Conv)


def test_w2a2_resnet8_qonnx_equals_brevitas(tmp_path):
    """The lowest bit widths the twin takes (2-bit weights and activations, shared add
    quantizers included) stay exact through QONNX."""
    torch.manual_seed(0)
    ds = synthetic_dataset((3, 32, 32), 10, n_train=32, n_test=4)
    q = to_brevitas(build("resnet8"), wbits=2, abits=2)
    qat(q, ds, epochs=0, progress=False)
    assert {l.bits.w for l in q.layers} == {2}
    path = export_qonnx_model(q, tmp_path / "m.onnx")
    check = verify_qonnx(q, path, pixels(ds.x_test, (3, 32, 32)))
    assert check.max_abs_diff == 0.0 and check.exact_integer_outputs == 1.0


def test_average_pool_without_a_following_layer_is_refused():
    from edgeprune.errors import EdgepruneError
    m = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.ReLU(), torch.nn.AvgPool2d(2))
    with pytest.raises(EdgepruneError, match="folds the 1/4"):
        to_brevitas(m, input_shape=(1, 6, 6))


def test_synthetic_data_is_deterministic_and_labelled():
    a = load_dataset("synthetic:3x8x8:4")
    b = synthetic_dataset((3, 8, 8), 4)
    assert np.array_equal(a.x_train, b.x_train) and np.array_equal(a.y_test, b.y_test)
    assert a.x_train.dtype == np.uint8 and a.image_shape == (3, 8, 8)
    assert a.name.startswith("synthetic:") and set(np.unique(a.y_train)) == {0, 1, 2, 3}
    assert synthetic_dataset((640,), 10, 4, 2).image_shape == (1, 1, 640)
    with pytest.raises(DataError, match="synthetic:CxHxW"):
        load_dataset("synthetic:3xfoo")


def test_finn_project_for_resnet8_with_addstreams_and_vvau_rules(tmp_path):
    from edgeprune.export.finn import export_finn
    from edgeprune.targets import load_target

    torch.manual_seed(0)
    ds = synthetic_dataset((3, 32, 32), 10, n_train=32, n_test=4)
    r = export_finn(build("resnet8"), load_target("pynq-z2"), tmp_path / "finn", data=ds,
                    epochs=0, verify_images=4, progress=False, model_name="resnet8")
    assert r["quantization"]["qonnx_vs_brevitas"]["max_abs_diff"] == 0.0
    layers = r["folding"]["layers"]
    ops = {l["op_type"] for l in layers}
    assert {"AddStreams_hls", "DuplicateStreams_hls", "Thresholding_hls", "VVAU_hls",
            "MVAU_hls"} <= ops
    for l in layers:
        s, a = l["shape"], l["attrs"]
        if l["op_type"] in ("AddStreams_hls", "DuplicateStreams_hls", "Thresholding_hls"):
            assert s["NumChannels"] % a["PE"] == 0
        if l["op_type"] == "VVAU_hls":
            k = s["Kernel"][0] * s["Kernel"][1]
            assert s["Channels"] % a["PE"] == 0 and k % a["SIMD"] == 0
            assert a["SIMD"] == 1 or a["PE"] == s["Channels"]
    pool = [l for l in layers if l["op_type"] == "VVAU_hls" and l["node"] == "pool"]
    assert len(pool) == 1 and pool[0]["shape"]["Kernel"] == [8, 8]
    plan = json.loads((tmp_path / "finn" / "estimates.json").read_text())
    assert [l["name"] for l in plan["layers"]] == [l["name"] for l in layers]
    for f in ("model.onnx", "build.py", "folding_config.json", "verify/input.npy"):
        assert (tmp_path / "finn" / f).is_file()


@pytest.mark.parametrize("name", sorted(ZOO))
def test_every_zoo_model_converts_and_its_finn_folding_is_legal_on_pynq_z2(name):
    """What `export finn|hls` does before QAT, for all seven zoo models: the Brevitas twin is
    built, and the cost model's folding for pynq-z2 fits and passes FINN's divisibility rules
    (the export's own check_folding)."""
    from edgeprune.backends.finn.folding import auto_fold
    from edgeprune.cost.fpga import estimate_fpga
    from edgeprune.deploy import Deployment
    from edgeprune.export.finn import check_folding
    from edgeprune.targets import load_target

    model = build(name).eval()
    q = to_brevitas(model, wbits=4, abits=4)
    assert q.layers
    graph = extract(model)
    dep = Deployment.for_target(load_target("pynq-z2"), wbits=4, abits=4)
    fold = auto_fold(graph, dep.target, wbits=4, abits=4, target_fps=None, input_bits=8)
    check_folding(fold.finn_folding_config(), [l.to_dict() for l in fold.layers])
    assert estimate_fpga(graph, dep, folding=fold).totals["fits"]
