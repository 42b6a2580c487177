"""Brevitas conversion, QAT with zeros kept, QONNX export and its verification (no C-sim)."""
import numpy as np
import pytest
import torch

pytest.importorskip("brevitas")
pytest.importorskip("qonnx")

from edgeprune.data import load_dataset  # noqa: E402
from edgeprune.errors import EdgepruneError  # noqa: E402
from edgeprune.quant.brevitas_model import to_brevitas  # noqa: E402
from edgeprune.quant.qat import qat  # noqa: E402
from edgeprune.quant.qonnx_io import export_qonnx_model, pixels, verify_qonnx  # noqa: E402
from edgeprune.graph import UnsupportedOpError  # noqa: E402

from test_fpga_common import Residual, tiny_pruned  # noqa: E402


@pytest.fixture(scope="module")
def ds():
    return load_dataset("fashion-mnist").subset(1024, 64)


@pytest.fixture(scope="module")
def trained(ds):
    torch.set_num_threads(1)
    m = tiny_pruned()
    q = to_brevitas(m, wbits=4, abits=4, per_layer={"conv1": {"w": 8, "a": 6}})
    before = q.core[q.layers[-1].index].weight.detach().clone()
    qat(q, ds, epochs=1, max_steps_per_epoch=4, batch_size=64, progress=False)
    return m, q, before


def test_structure_bits_and_activation_placement(trained):
    _, q, _ = trained
    assert [(l.node, l.bits.w, l.bits.a, l.act) for l in q.layers] == [
        ("conv1", 8, 6, "relu"),        # BN folded, ReLU moved up across the max-pool
        ("conv2", 4, 4, "identity"),    # no ReLU: signed activation quantizer
        ("fc", 4, None, "none")]        # last layer streams its accumulator
    names = [type(m).__name__ for m in q.core]
    assert names == ["QuantIdentity", "QuantConv2d", "QuantReLU", "MaxPool2d", "QuantConv2d",
                     "QuantIdentity", "MaxPool2d", "Flatten", "QuantLinear"]
    # Power-of-two output scale: outputs / scale are integers.
    s = q.output_scale()
    assert s > 0 and np.log2(s) == round(np.log2(s))


def test_bn_fold_and_pixel_input_reproduce_float_model():
    m = tiny_pruned()
    q = to_brevitas(m, wbits=8, abits=8)
    x = torch.rand(16, 1, 28, 28)
    from edgeprune.quant.brevitas_model import calibrate
    calibrate(q, x, batch_size=16, batches=1)
    with torch.no_grad():
        ref, got = m(x), q(x)
    # 8-bit quantization of a random net: close, not equal.
    assert torch.corrcoef(torch.stack([ref.flatten(), got.flatten()]))[0, 1] > 0.95


def test_pruned_weights_stay_zero_through_qat(trained):
    m, q, before = trained
    w = q.core[q.layers[-1].index].weight.detach()
    zero_float = m.fc.weight == 0
    assert zero_float.sum() > 0
    assert torch.all(w[zero_float] == 0)
    assert not torch.equal(w[~zero_float], before[~zero_float])   # QAT did update the rest
    qw = q.core[q.layers[-1].index].quant_weight().value
    assert torch.all(qw[zero_float] == 0)


def test_qonnx_export_exact_deterministic_uint8_input(trained, ds, tmp_path):
    _, q, _ = trained
    p1 = export_qonnx_model(q, tmp_path / "a.onnx")
    p2 = export_qonnx_model(q, tmp_path / "b.onnx")
    assert p1.read_bytes() == p2.read_bytes()
    from qonnx.core.modelwrapper import ModelWrapper
    mw = ModelWrapper(str(p1))
    gin = mw.graph.input[0].name
    assert mw.get_tensor_datatype(gin).name == "UINT8"
    assert mw.find_consumers(gin)[0].op_type == "Conv"     # identity input quantizer stripped
    check = verify_qonnx(q, p1, pixels(ds.x_test[:32], q.input_shape))
    assert check.ok and check.max_abs_diff <= 1e-5 and check.argmax_agreement == 1.0
    assert check.exact_integer_outputs == 1.0



def test_qonnx_batched_execution_equals_one_image_at_a_time(trained, ds, tmp_path):
    """execute_onnx on a batch-resized copy of the graph (QONNX_BATCH images a call, a shorter
    last chunk) gives the same outputs, byte for byte, as one image per call."""
    from edgeprune.quant.qonnx_io import qonnx_execute
    _, q, _ = trained
    p = export_qonnx_model(q, tmp_path / "m.onnx")
    x = pixels(ds.x_test[:7], q.input_shape)
    one = qonnx_execute(p, x, batch_size=1)
    assert one.shape[0] == 7
    got = qonnx_execute(p, x, batch_size=3)          # chunks of 3, 3 and 1
    assert got.tobytes() == one.tobytes()
    with pytest.raises(ValueError):
        qonnx_execute(p, x, batch_size=0)

def test_bad_inputs_raise_one_line_errors():
    with pytest.raises(UnsupportedOpError, match="sigmoid"):
        to_brevitas(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 4),
                                        torch.nn.Sigmoid(), torch.nn.Linear(4, 2)),
                    input_shape=(1, 8, 8))
    with pytest.raises(EdgepruneError, match="bit width"):
        to_brevitas(tiny_pruned(), wbits=0)
    with pytest.raises(EdgepruneError, match="not a conv/linear layer"):
        to_brevitas(tiny_pruned(), per_layer={"pool1": {"w": 4}})
