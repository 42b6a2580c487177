"""`edgeprune estimate`: JSON shape, tables, errors (one line, exit 2), light imports."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from edgeprune.cli import main
from edgeprune.models import build

M4 = "stm32l4r5-m4"


def run_cli(capsys, *argv):
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def test_json_mcu(capsys):
    rc, out, err = run_cli(capsys, "estimate", "lenet5", "--target", M4, "--json")
    assert rc == 0, err
    d = json.loads(out)
    t = d["totals"]
    assert t["params"] == 431080 and t["macs"] == 2293000
    for k in ("cycles", "latency_ms", "flash_bytes", "ram_bytes"):
        assert t[k] > 0
    assert isinstance(d["layers"], list) and d["layers"][0]["name"] == "conv1"
    assert "what_if" not in d


def test_json_what_if(capsys):
    rc, out, _ = run_cli(capsys, "estimate", "lenet5", "--target", M4, "--json", "--what-if")
    assert rc == 0
    w = {r["name"]: r for r in json.loads(out)["what_if"]["layers"]}
    assert w["conv1"]["channels"]["cycles"] > 0 and w["conv1"]["weights"]["cycles"] == 0


def test_json_fpga_totals(capsys):
    rc, out, err = run_cli(capsys, "estimate", "lenet5", "--target", "pynq-z2", "--json")
    assert rc == 0, err
    t = json.loads(out)["totals"]
    assert {"params", "macs", "cycles", "fps", "latency_ms", "lut", "bram18", "dsp"} <= set(t)
    assert t["params"] == 431080 and t["macs"] == 2293000


def test_tables(capsys):
    rc, out, _ = run_cli(capsys, "estimate", "lenet5", "--target", M4, "--what-if")
    assert rc == 0
    assert "conv1" in out and "total" in out and "what-if" in out and "dense" in out


def test_weights_file(capsys, tmp_path):
    w = tmp_path / "w.pt"
    torch.save(build("lenet5").state_dict(), w)
    rc, out, err = run_cli(capsys, "estimate", "lenet5", "--weights", str(w), "--target", M4, "--json")
    assert rc == 0, err and json.loads(out)["totals"]["macs"] == 2293000


@pytest.mark.parametrize("argv, needle", [
    (["estimate", "lenet5", "--target", "no-such-chip"], "unknown target 'no-such-chip'"),
    (["estimate", "no-such-model", "--target", M4], "no-such-model"),
    (["estimate", "lenet5", "--target", M4, "--weights", "/nonexistent/w.pt"], "/nonexistent/w.pt"),
])
def test_errors_one_line_exit_2(capsys, argv, needle):
    rc, out, err = run_cli(capsys, *argv)
    assert rc == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("edgeprune: error:") and needle in lines[0]


def test_corrupt_weights_file(capsys, tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a torch file")
    rc, _, err = run_cli(capsys, "estimate", "lenet5", "--target", M4, "--weights", str(bad))
    assert rc == 2 and str(bad) in err and len(err.strip().splitlines()) == 1


def test_estimate_path_imports_no_heavy_frameworks():
    code = ("import sys, io, contextlib\n"
            "from edgeprune.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            f"    rc = main(['estimate', 'lenet5', '--target', '{M4}', '--json'])\n"
            "heavy = sorted({m.split('.')[0] for m in sys.modules} & "
            "{'tensorflow', 'keras', 'brevitas', 'hls4ml', 'qonnx', 'onnx', 'onnxruntime'})\n"
            "print(rc, heavy)\n")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "0 []"
