"""int4 weights for the TFLM export (edgeprune.backends.tflm.int4), host only: TFLite's int4
packing, the <= 16-level grid detection, and a tiny conv + FC model rewritten to int4 that
TFLM's host interpreter runs, with the flash estimate equal to the file. The QEMU check
(CMSIS-NN int4 kernels, bit-exact with the host) is benchmarks/tflm_int4.py."""
from __future__ import annotations

import numpy as np
import pytest
import torch.nn as nn

from edgeprune.backends.tflm import int4 as tflm_int4
from edgeprune.backends.tflm import memory as tflm_memory

pytest.importorskip("tflite_micro")


def test_pack_unpack_round_trip_odd_length():
    q = np.array([-8, 7, 0, -1, 3, -5, 1], np.int8)
    b = tflm_int4.pack_int4(q)
    assert len(b) == 4
    assert b[0] == 0x78          # -8 -> 0x8 in the low nibble, 7 -> 0x7 in the high one
    assert np.array_equal(tflm_int4.unpack_int4(b, len(q)), q)


def test_auto_choice_weighs_cycles_against_flash():
    el = {"conv1": 500, "conv2": 25_000, "fc1": 400_000, "fc2": 5_000}
    assert tflm_int4.auto_choice(el, 449_152, 2048 * 1024) == []        # fits: stay int8
    assert tflm_int4.auto_choice(el, 449_152, None) == []
    assert tflm_int4.auto_choice(el, 449_152, 256 * 1024) == ["fc1"]    # 249,152 B fits
    assert tflm_int4.auto_choice(el, 449_152, 200 * 1024) == ["fc1", "conv2", "fc2", "conv1"]


def test_channel_grid():
    q4 = np.array([-7, -3, 0, 2, 5, 7])
    assert tflm_int4.channel_grid(18 * q4) == pytest.approx(18.0)
    # a 4-bit float grid rounded to int8 (max |w| -> 127): within half an int8 step
    row = np.round(q4 * 127 / 7)
    r = tflm_int4.channel_grid(row)
    assert r is not None and np.abs(row - r * np.round(row / r)).max() <= 0.5 + 1e-6
    assert tflm_int4.channel_grid(np.arange(-8, 9) * 3) is None        # 17 levels
    assert tflm_int4.channel_grid(np.array([0, 1, 2, 3, 5, 7, 11, 13, 17, 100])) is None
    assert tflm_int4.channel_grid(np.zeros(5)) == 1.0


class _Tiny(nn.Sequential):
    input_shape = (2, 8, 8)


def _grid_model(step: int):
    """Placeholder flatbuffer of a conv + pool + FC plan with int8 weights step * q4 and
    biases in matching scales (bias scale = input scale x weight scale)."""
    from edgeprune.backends.tflm import flatbuffer as F
    from edgeprune.backends.tflm import plan as P
    from edgeprune.graph import extract
    m = _Tiny(nn.Conv2d(2, 6, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(54, 5))
    g = extract(m.eval())
    plan = P.lower(g)
    mt = F.plan_model_t(plan, {})
    sg = mt.subgraphs[0]
    rng = np.random.default_rng(0)
    for i, t in enumerate(plan.tensors):
        tt = sg.tensors[i]
        if t.role == "weights":
            mt.buffers[tt.buffer].data = (step * rng.integers(-8, 8, t.nbytes)).astype(np.int8).view(np.uint8)
        elif t.role == "bias":
            mt.buffers[tt.buffer].data = (step * rng.integers(-50, 50, t.nbytes // 4)).astype(np.int32).view(np.uint8)
            tt.quantization.scale = np.full(len(tt.quantization.scale), 1e-4, np.float32)
    for op in plan.ops:
        for i in op.inputs:
            if i >= 0 and plan.tensors[i].role == "shape":
                mt.buffers[sg.tensors[i].buffer].data = np.array(
                    plan.tensors[op.outputs[0]].shape, np.int32).view(np.uint8)
    return g, plan, F.canonicalize(F.pack_aligned(mt))


def test_int4_model_runs_on_tflm_and_matches_the_flash_estimate():
    from edgeprune.export.tflm import run_tflm
    g, plan, b = _grid_model(8)
    cands = tflm_int4.int4_candidates(b)
    wt = {op.inputs[1]: op for op in plan.ops if op.opcode in tflm_int4.INT4_OPS}
    assert set(cands) == set(wt)
    fc = next(i for i, op in wt.items() if op.opcode == "FULLY_CONNECTED")
    assert cands[fc]["per_tensor_scale"] is not None      # TFLM's int4 FC is per-tensor
    b4 = tflm_int4.to_int4(b, sorted(cands), cands)
    assert tflm_int4.to_int4(b, sorted(cands), cands) == b4                # deterministic
    nodes = [op.node for op in wt.values()]
    assert tflm_memory.estimate_flash(g, plan=plan, int4=nodes)["total_bytes"] == len(b4)
    saved = sum(plan.tensors[i].nbytes - -(-plan.tensors[i].nbytes // 2) for i in wt)
    assert len(b) - len(b4) >= saved - 64            # weights halved (less alignment slack)
    x = np.random.default_rng(1).integers(-128, 128, (3, 8, 8, 2)).astype(np.int8)
    o8, _, _ = run_tflm(b, x)
    o4, _, _ = run_tflm(b4, x)
    # same real-valued weights and biases; the per-tensor FC's requantization may round
    # one output LSB differently from the per-channel int8 one
    assert np.abs(o8.astype(int) - o4.astype(int)).max() <= 1


def test_int4_arena_on_target_has_no_per_channel_fc_arrays():
    g, plan, _ = _grid_model(8)
    fc = next(op for op in plan.ops if op.opcode == "FULLY_CONNECTED")
    a8 = tflm_memory.estimate_arena(g, plan=plan, abi="arm32")
    a4 = tflm_memory.estimate_arena(g, plan=plan, abi="arm32", int4=[fc.node])
    # int4 FC: per-tensor, so its Prepare allocates no multiplier / shift arrays (2 x 5 int32,
    # 16-byte aligned each); the head is unchanged (no scratch for int4 FC on the M4)
    assert a4["head_bytes"] == a8["head_bytes"]
    assert a8["persistent_bytes"] - a4["persistent_bytes"] == 2 * tflm_memory.align(4 * 5)
