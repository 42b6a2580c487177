"""TFLM arena on the 32-bit target: estimate_arena(abi='arm32') against the arena_used_bytes()
measured on QEMU's Cortex-M4 and committed in benchmarks/results/tflm_target_arena.json
(benchmarks/tflm_target.py). Recomputes the estimate with the current code, no TensorFlow."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgeprune.backends.tflm import memory as tflm_memory

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results" / "tflm_target_arena.json"


def _rows(split):
    return [r for r in json.loads(RESULTS.read_text())["rows"] if r["split"] == split]


@pytest.mark.parametrize("row", _rows("validation"), ids=lambda r: r["model"])
def test_zoo_arena_estimate_within_2_percent_of_qemu(row):
    from edgeprune.graph import extract
    from edgeprune.models import build
    g = extract(build(row["model"]))
    est = tflm_memory.estimate_arena(g)          # default: arm32, TFLM + CMSIS-NN
    assert est["abi"] == "arm32"
    assert abs(est["total_bytes"] - row["arena_measured"]) <= 0.02 * row["arena_measured"]
    # and the 64-bit host figure, still available, is the larger one
    assert tflm_memory.estimate_arena(g, abi="host64")["total_bytes"] > est["total_bytes"]


def test_calibration_models_exact():
    import sys
    sys.path.insert(0, str(REPO / "benchmarks"))
    from tflm_memory import calibration_cases
    from edgeprune.graph import extract
    measured = {r["model"]: r["arena_measured"] for r in _rows("calibration")}
    cases = dict(calibration_cases())
    assert set(cases) == set(measured)
    for name, model in cases.items():
        g = extract(model.eval())
        assert tflm_memory.estimate_arena(g)["total_bytes"] == measured[name], name


def test_tail_replay_aligns_down_from_the_arena_end():
    seq = [("", "a", 5, 1), ("", "b", 60, 16), ("", "c", 12, 4)]
    # 5 -> 5; 5 + 60 = 65 -> 80 (16-aligned); 80 + 12 = 92
    assert tflm_memory.replay_tail(seq) == 92


def test_unknown_abi_is_refused():
    from edgeprune.graph import extract
    from edgeprune.models import build
    with pytest.raises(ValueError, match="abi"):
        tflm_memory.estimate_arena(extract(build("lenet5")), abi="arm64")


def test_reference_kernels_arena_on_the_target():
    """With TFLM's reference kernels the arena replays their own Init data (sizeof of the
    reference OpData on arm-none-eabi-g++, benchmarks/tflm_reference_opdata.py), not the
    CMSIS-NN wrappers: the reference rows measured on QEMU (benchmarks/results/tflm_qemu.json,
    every core) are then met to the byte."""
    from edgeprune.backends.tflm import arm32_reference, arm32_structs
    from edgeprune.graph import extract
    from edgeprune.models import build
    probed = json.loads((REPO / "benchmarks" / "results" / "tflm_reference_opdata.json").read_text())
    assert arm32_reference.REFERENCE_KERNEL_INIT == {k: (v,) for k, v in probed["sizes"].items()}
    # the CMSIS-NN fully-connected OpData wraps the reference one
    assert arm32_reference.REFERENCE_KERNEL_INIT["FULLY_CONNECTED"][0] < \
        arm32_structs.KERNEL_INIT["FULLY_CONNECTED"][0]
    rows = [r for r in json.loads((REPO / "benchmarks" / "results" / "tflm_qemu.json").read_text())["rows"]
            if r["runtime"] == "tflm-reference"]
    assert {"lenet300100", "fc_autoencoder"} <= {r["model"] for r in rows}
    est = {}
    for r in rows:
        if r["model"] not in est:
            g = extract(build(r["model"]))
            est[r["model"]] = tflm_memory.estimate_arena(g, runtime="tflm-reference")["total_bytes"]
            assert est[r["model"]] < tflm_memory.estimate_arena(g, runtime="tflm-cmsis-nn")["total_bytes"]
        assert est[r["model"]] == r["arena_measured"], (r["model"], r["core"])
