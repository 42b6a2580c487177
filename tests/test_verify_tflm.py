"""`edgeprune verify OUT_TFLM --qemu cortex-m4 --tflm-root PATH`: a small `export tflm` output
compiled unchanged against TFLite-Micro + CMSIS-NN, built from the pinned snapshot in
../shared/third_party/tflm (unpacked and built inside the test's tmp dir, only the objects the
model's ops need), run on QEMU's Cortex-M4 board: bit-exact with the host interpreter, arena
measured on the target, per-operator counts that add up.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

REPO = Path(__file__).resolve().parent.parent
SNAPSHOT = REPO.parent / "shared" / "third_party" / "tflm" / "tflm-90b983c.tar.xz"
if not SNAPSHOT.is_file():
    pytest.skip(f"{SNAPSHOT.name} absent (../shared/third_party/tflm): no TFLM tree to build",
                allow_module_level=True)
for tool in ("qemu-system-arm", "arm-none-eabi-g++", "make"):
    if shutil.which(tool) is None:
        pytest.skip(f"{tool} not installed (make setup installs it)", allow_module_level=True)
pytest.importorskip("tflite_micro")
pytest.importorskip("tensorflow")
torch = pytest.importorskip("torch")
nn = torch.nn


class Tiny(nn.Module):
    """conv + max pool + fully connected: three CMSIS-NN kernels and a RESHAPE."""
    input_shape = (1, 12, 12)

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 3, padding=1)
        self.relu = nn.ReLU()
        self.pool = nn.MaxPool2d(2)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(8 * 6 * 6, 10)

    def forward(self, x):
        return self.fc(self.flatten(self.pool(self.relu(self.conv(x)))))


@pytest.fixture(scope="module")
def tflm_tree(tmp_path_factory):
    """(TFLM tree, library cache): the snapshot unpacked into the test's tmp dir, the library
    built there. EDGEPRUNE_TEST_TFLM_TREE / EDGEPRUNE_TEST_TFLM_CACHE reuse a developer's
    unpacked tree and its cache instead (CI sets neither)."""
    tree, cache = os.environ.get("EDGEPRUNE_TEST_TFLM_TREE"), os.environ.get("EDGEPRUNE_TEST_TFLM_CACHE")
    if tree and cache:
        return Path(tree), Path(cache)
    d = tmp_path_factory.mktemp("tflm")
    subprocess.run(["tar", "-xJf", str(SNAPSHOT), "-C", str(d)], check=True)
    return d, d / "cache"


def test_tflm_export_runs_bit_exact_on_m4(tflm_tree, tmp_path):
    from edgeprune.export.tflm import export_tflm
    from edgeprune.verify.run import verify_command
    torch.manual_seed(0)
    out = tmp_path / "tflm"
    export_tflm(Tiny().eval(), "stm32l4r5-m4", out, None, n_eval=8)
    rng = np.random.default_rng(0)
    np.save(tmp_path / "x.npy", rng.random((4, 12, 12, 1), dtype=np.float32))
    vout = tmp_path / "v"
    tree, cache = tflm_tree
    res = verify_command(out, "cortex-m4", vout, inputs=str(tmp_path / "x.npy"), samples=4,
                         tflm_root=tree, tflm_cache=cache)
    assert res["outputs_vs_host"]["tflm_host"]["identical"], res["outputs_vs_host"]
    assert res["return_codes_zero"] and res["compile_warnings"] == ""
    # the arena on the 32-bit target: used <= allocated, and not above the 64-bit host's figure
    assert 0 < res["arena_used_bytes"] <= res["arena_bytes_allocated"]
    assert res["arena_used_bytes"] <= res["arena_bytes_host"]
    # and the arm32 estimate in the export report (goal: within 2 %; equal on the zoo)
    rep = json.loads((out / "report.json").read_text())
    assert abs(rep["arena_bytes_target_estimate"] - res["arena_used_bytes"]) <= 0.02 * res["arena_used_bytes"]
    # per operator: CONV_2D, MAX_POOL_2D, RESHAPE, FULLY_CONNECTED, from the trace, which agrees
    # with the timer on the whole invoke
    assert res["trace_instructions_equal_icount"]
    assert [o["op"] for o in res["operators"]] == ["CONV_2D", "MAX_POOL_2D", "RESHAPE",
                                                  "FULLY_CONNECTED"]
    assert all(o["instructions"] > 0 for o in res["operators"])
    assert 0 < res["instructions_interpreter"] < 0.5 * res["instructions_per_invoke"]
    assert res["cycles_trm"] > res["instructions_per_invoke"]
    assert json.loads((vout / "verify.json").read_text())["arena_used_bytes"] == res["arena_used_bytes"]
    # the library is cached per core and op set: a second run reuses it
    lib = Path(res["tflm"]["library"])
    assert lib.is_file() and lib.is_relative_to(cache)
    res2 = verify_command(out, "cortex-m4", tmp_path / "v2", inputs=str(tmp_path / "x.npy"),
                          samples=2, cycles=False, tflm_root=tree, tflm_cache=cache)
    assert res2["tflm"]["cached"] and res2["instructions_per_invoke"] == res["instructions_per_invoke"]


def test_int4_export_runs_bit_exact_on_m4(tflm_tree, tmp_path):
    """4-bit weights exported as TFLite int4 (`--compress flash`): CMSIS-NN's int4 kernels on
    the M4 give the host interpreter's bytes; the arena is the arm32 estimate's."""
    from edgeprune.export.tflm import export_tflm
    from edgeprune.verify.run import verify_command
    torch.manual_seed(0)
    model = Tiny().eval()
    with torch.no_grad():
        for m in (model.conv, model.fc):
            step = m.weight.abs().max() / 7
            m.weight.copy_(torch.clamp(torch.round(m.weight / step), -7, 7) * step)
    out = tmp_path / "tflm4"
    rep = export_tflm(model, "stm32l4r5-m4", out, None, n_eval=8, compress="flash")
    assert rep["int4_layers"] == ["conv", "fc"]
    assert rep["flash_bytes_estimate"] == rep["flash_bytes_actual"]
    np.save(tmp_path / "x.npy", np.random.default_rng(0).random((4, 12, 12, 1), dtype=np.float32))
    tree, cache = tflm_tree
    res = verify_command(out, "cortex-m4", tmp_path / "v", inputs=str(tmp_path / "x.npy"),
                         samples=4, cycles=False, tflm_root=tree, tflm_cache=cache)
    assert res["outputs_vs_host"]["tflm_host"]["identical"], res["outputs_vs_host"]
    assert res["return_codes_zero"]
    assert abs(rep["arena_bytes_target_estimate"] - res["arena_used_bytes"]) <= 0.02 * res["arena_used_bytes"]
