"""The committed real-TFLM rows (benchmarks/results/tflm_qemu.json): every row names its core's
target and the command that measured it, and its estimate columns are what the current cost
model gives (a change to the constants that is not re-estimated fails here). No QEMU."""
from __future__ import annotations

import copy
import importlib.util
import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
ROWS = REPO / "benchmarks" / "results" / "tflm_qemu.json"


def _qemu_module():
    spec = importlib.util.spec_from_file_location("tflm_qemu", REPO / "benchmarks" / "tflm_qemu.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_rows_name_core_target_and_command():
    q = _qemu_module()
    rows = json.loads(ROWS.read_text())["rows"]
    assert {"cortex-m4", "cortex-m7", "cortex-m33", "cortex-m55", "cortex-m0plus"} <= {r["core"] for r in rows}
    for r in rows:
        assert r["core"] in q.TARGET, r["core"]
        assert f"--core {r['core']}" in r["command"] or r["core"] == "cortex-m4"
        assert r["cycles_measured"] > 0 and r["identical_vs_host_interpreter"] is True


@pytest.mark.parametrize("core", ["cortex-m4", "cortex-m7", "cortex-m33", "cortex-m0plus"])
def test_estimate_columns_are_the_current_model(core):
    q = _qemu_module()
    rows = [r for r in json.loads(ROWS.read_text())["rows"]
            if r["core"] == core and r["model"] == "lenet300100"]
    assert rows, f"no lenet300100 row on {core}"
    for r in rows:
        fresh = q.reestimate(copy.deepcopy(r))
        assert fresh["cycles_estimate"] == r["cycles_estimate"]
        assert [o["cycles_estimate"] for o in fresh["operators"]] == \
            [o["cycles_estimate"] for o in r["operators"]]
