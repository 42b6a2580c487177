"""TFLM flash/arena cost model, without TensorFlow: lowering rules, the planner, compression
accounting. The estimate-vs-measured checks on exported zoo models are in test_export_tflm.py
(and benchmarks/tflm_memory.py); the constants were calibrated on synthetic models only."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch.nn as nn

from edgeprune.backends.tflm import compress as tflm_compress
from edgeprune.backends.tflm import memory as tflm_memory
from edgeprune.backends.tflm import plan as tflm_plan
from edgeprune.errors import EdgepruneError
from edgeprune.graph import extract
from edgeprune.models import build

pytest.importorskip("tflite_micro")
REPO = Path(__file__).resolve().parent.parent


def test_import_stays_light():
    code = ("import sys, time; t = time.time(); import edgeprune.backends.tflm.memory as m; "
            "from edgeprune.models import build; from edgeprune.graph import extract; "
            "g = extract(build('dscnn')); m.estimate_flash(g); m.estimate_arena(g); "
            "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules; "
            "print(time.time() - t)")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                       timeout=120)
    assert p.returncode == 0, p.stderr


def test_lowering_folds_bn_relu_pad_and_dropout():
    plan = tflm_plan.lower(extract(build("dscnn")))
    ops = [op.opcode for op in plan.ops]
    # ZeroPad2d(1,1,4,5) + 10x4/2 conv == SAME; BN and ReLU fold; dropout vanishes; the
    # GAP -> flatten -> Linear head needs no RESHAPE.
    assert ops == ["CONV_2D"] + ["DEPTHWISE_CONV_2D", "CONV_2D"] * 4 + ["AVERAGE_POOL_2D",
                                                                         "FULLY_CONNECTED"]
    assert all(op.options["fused_activation"] == "RELU" for op in plan.ops[:9])
    assert plan.ops[0].options["padding"] == "SAME"
    dw = plan.tensors[plan.ops[1].inputs[1]]
    assert dw.shape == (1, 3, 3, 64) and dw.quant_axis == 3 and dw.quant_channels == 64


def test_lowering_of_resnet8_pads_stride2_and_fuses_add_relu():
    plan = tflm_plan.lower(extract(build("resnet8")))
    ops = [op.opcode for op in plan.ops]
    assert ops.count("PAD") == 2 and ops.count("ADD") == 3
    assert all(op.options["fused_activation"] == "RELU" for op in plan.ops if op.opcode == "ADD")
    # both PADs pad (1,1,1,1): one shared paddings constant, as the converter writes it
    pads = {op.inputs[1] for op in plan.ops if op.opcode == "PAD"}
    assert len(pads) == 1


def test_flatten_permutation_recorded_for_linear():
    plan = tflm_plan.lower(extract(build("lenet5")))
    fc1 = plan.op_for_node("fc1")
    assert fc1.attrs["permute_from_chw"] == (50, 4, 4)
    assert fc1.options["fused_activation"] == "RELU"


def test_greedy_planner_reverse_index_ties():
    # Three equal buffers: TFLM places equal sizes in reverse index order.
    bufs = [(16, 0, 1), (16, 1, 2), (16, 2, 3)]
    total, offsets = tflm_memory.greedy_plan(bufs)
    assert total == 32
    assert offsets[2] == 0 and offsets[1] == 16 and offsets[0] == 0
    # A gap left by a short-lived buffer is reused.
    total, offsets = tflm_memory.greedy_plan([(100, 0, 1), (50, 2, 3), (40, 1, 2)])
    assert total == 140 and offsets[1] == 0


def test_estimates_structure_and_layers():
    g = extract(build("lenet5"))
    f = tflm_memory.estimate_flash(g)
    assert set(f) >= {"total_bytes", "layers", "overhead_bytes"}
    assert f["total_bytes"] == sum(f["layers"].values()) + f["overhead_bytes"]
    # fc1: 400,000 int8 weights + 500 int32 biases dominate
    assert f["layers"]["fc1"] > 400_000 + 2_000
    a = tflm_memory.estimate_arena(g, abi="host64")      # TFLM's Python runtime
    assert a["total_bytes"] == a["head_bytes"] + a["persistent_bytes"]
    assert a["activations_bytes"] == 24 * 24 * 20 + 12 * 12 * 20   # conv1 out + pool1 out
    assert a["scratch_bytes"] == 0
    cm = tflm_memory.estimate_arena(g, runtime="tflm-cmsis-nn", abi="host64")
    # im2col: 2 * c_in * kh * kw int16 per conv; conv2's 2000 B fits beside the live maps
    assert cm["layers"]["conv2"]["scratch_bytes"] == 2 * 20 * 5 * 5 * 2
    assert cm["total_bytes"] >= a["total_bytes"]


def test_compression_accounting():
    g = extract(build("lenet5"))
    plain = tflm_memory.estimate_flash(g)["total_bytes"]
    comp = tflm_memory.estimate_flash(g, compression={"fc1": 4, "conv1": 4})
    # fc1: 400 kB -> 200 kB of 4-bit indices + 500 x 16-byte tables + a 6 kB copy of its
    # per-channel quantization on the DECODE output; conv1 would grow: skipped
    assert comp["compressed"] == ["fc1"]
    assert 180_000 < plain - comp["total_bytes"] < 200_000
    a0 = tflm_memory.estimate_arena(g, abi="host64")
    a1 = tflm_memory.estimate_arena(g, compression={"fc1": 4}, abi="host64")
    # the decoded copy of fc1 lives in the arena while fc1 runs; beside the small live maps it
    # costs almost all of its 400 kB
    assert a1["layers"]["fc1"]["decode_bytes"] == 400_000
    assert 400_000 - a0["activations_bytes"] <= a1["decode_bytes"] <= 400_000
    assert a1["total_bytes"] > a0["total_bytes"] + 380_000
    a2 = tflm_memory.estimate_arena(g, compression={"fc1": 4}, alt_decompression=True, abi="host64")
    assert a2["decode_bytes"] == 400_000 and a2["total_bytes"] < a1["total_bytes"]
    with pytest.raises(EdgepruneError, match="not a layer"):
        tflm_memory.estimate_flash(g, compression={"nope": 4})
    with pytest.raises(EdgepruneError, match="1..7"):
        tflm_memory.estimate_flash(g, compression={"fc1": 8})


def test_per_tensor_lut_is_never_specified():
    from tflite_micro.tensorflow.lite.micro.compression import spec
    s = tflm_compress.compress_spec({5: (4, 0), 7: (2, 3)})
    assert all(isinstance(t.compression[0].mode, spec.PerChannel) for t in s)


class _Grouped(nn.Module):
    input_shape = (4, 8, 8)

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(4, 8, 3, groups=2)

    def forward(self, x):
        return self.conv(x)


class _FlattenToSoftmax(nn.Module):
    input_shape = (2, 4, 4)

    def __init__(self):
        super().__init__()
        self.flatten = nn.Flatten()
        self.softmax = nn.Softmax(dim=1)

    def forward(self, x):
        return self.softmax(self.flatten(x))


@pytest.mark.parametrize("model,match", [
    (_Grouped(), r"layer 'conv' \(conv\): grouped CONV_2D"),
    (_FlattenToSoftmax(), r"layer 'flatten'.*non-Linear"),
])
def test_unsupported_is_named(model, match):
    with pytest.raises(tflm_plan.TflmUnsupportedError, match=match):
        tflm_plan.lower(extract(model))
