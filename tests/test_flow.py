"""`edgeprune run RECIPE.toml`: recipe checks, a tiny recipe end to end (MCU exports executed,
report written), stage skipping, and a run killed mid-prune that --resume finishes without
redoing its finished stages."""
from __future__ import annotations

import json
import shutil
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edgeprune.cli import main
from flow_helpers import ROOT, flow_env, needs_fashion, run_edgeprune

TINY = """
name = "tiny"
[model]
name = "lenet5"
[data]
dataset = "fashion-mnist"
n_train = 2000
[[targets]]
name = "stm32l4r5-m4"
[train]
epochs = 1
max_steps_per_epoch = 10
[prune]
budgets = ["latency_ms=45"]
epochs = {prune_epochs}
max_steps_per_epoch = {prune_steps}
{extra}
[verify]
images = 200
"""
EXPORTS = """
[quantize]
cluster_bits = 4
cluster_epochs = 1
max_steps_per_epoch = 5
[[export]]
kind = "tflm"
[[export]]
kind = "c"
"""


def _recipe(tmp_path: Path, name: str = "r.toml", prune_epochs: int = 1, prune_steps: int = 10,
            extra: str = "") -> Path:
    p = tmp_path / name
    p.write_text(TINY.format(prune_epochs=prune_epochs, prune_steps=prune_steps, extra=extra))
    return p


# --------------------------------------------------------------------------------------------
# Recipe checks: one line, exit 2, nothing written

@pytest.mark.parametrize("text, message", [
    ("[model]\nname='lenet5'\n", "missing [data]"),
    ("[model]\nname='lenet5'\n[data]\ndataset='fashion-mnist'\n", "missing [[targets]]"),
    ("[model]\nname='lenet5'\n[data]\ndataset='x'\n[[targets]]\nname='stm32l4r5-m4'\n[prune]\nepochs=0\n",
     "[prune] epochs = 0: expected an integer >= 1"),
    ("[model]\nname='lenet5'\n[data]\ndataset='x'\n[[targets]]\nname='stm32l4r5-m4'\n[prune]\nbudget=['a']\n",
     "[prune] has unknown key 'budget'"),
    ("[model]\nname='lenet5'\n[data]\ndataset='x'\n[[targets]]\nname='stm32l4r5-m4'\n[train]\n"
     "[[export]]\nkind='finn'\n", "finn builds for FPGA targets"),
    ("[model]\nname='lenet5'\n[data]\ndataset='x'\n[[targets]]\nname='nope-target'\n",
     "nope-target"),
    ("[model]\nname='lenet5'\n[data]\ndataset='x'\n[[targets]]\nname='stm32l4r5-m4'\n[[export]]\n"
     "kind='tflm'\n", "exporting an untrained zoo model"),
    ("[model\nname='lenet5'\n", "invalid TOML"),
    ("[modle]\nname='lenet5'\n", "unknown section 'modle'"),
])
def test_bad_recipe_is_one_line_and_writes_nothing(tmp_path, capsys, text, message):
    p = tmp_path / "bad.toml"
    p.write_text(text)
    out = tmp_path / "out"
    assert main(["run", str(p), "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("edgeprune: error: ") and "\n" not in err
    assert message in err
    assert not out.exists()


def test_out_holding_user_files_is_refused(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    p = ROOT / "recipes" / "estimate.toml"
    assert main(["run", str(p), "-o", str(out), "--resume"]) == 2
    assert "holds no edgeprune run" in capsys.readouterr().err
    assert (out / "mine.txt").read_text() == "keep me" and len(list(out.iterdir())) == 1


def test_estimate_recipe_skips_unchanged_stages(tmp_path, capsys):
    out = tmp_path / "est"
    assert main(["run", str(ROOT / "recipes" / "estimate.toml"), "-o", str(out)]) == 0
    first = json.loads((out / ".flow" / "state.json").read_text())["stages"]
    assert set(first) == {"estimate", "report"}
    rep = json.loads((out / "report.json").read_text())
    before = rep["costs"]["stm32l4r5-m4"]["before"]
    assert before["totals"]["params"] == sum(r["params"] for r in before["layers"])
    assert [r["name"] for r in before["layers"]][:1] == ["conv1"]
    capsys.readouterr()
    # Same recipe again: refused without --resume; with it, nothing re-runs.
    assert main(["run", str(ROOT / "recipes" / "estimate.toml"), "-o", str(out)]) == 2
    assert "pass --resume" in capsys.readouterr().err
    assert main(["run", str(ROOT / "recipes" / "estimate.toml"), "-o", str(out), "--resume"]) == 0
    text = capsys.readouterr().out
    assert "estimate (dense model)             unchanged, reused" in text
    assert "report                             done" in text      # the report is always rewritten
    again = json.loads((out / ".flow" / "state.json").read_text())["stages"]
    assert again["estimate"]["finished"] == first["estimate"]["finished"]
    # A changed target list changes the estimate's key: it re-runs.
    changed = tmp_path / "est2.toml"
    changed.write_text((ROOT / "recipes" / "estimate.toml").read_text().replace(
        'name = "pynq-z2"', 'name = "pynq-z2"\nfps = 1000'))
    assert main(["run", str(changed), "-o", str(out), "--resume"]) == 0
    assert "estimate (dense model)             done" in capsys.readouterr().out
    manifest = json.loads((out / ".edgeprune-manifest.json").read_text())["files"]
    assert "report.html" in manifest and "estimate/estimate.json" in manifest


# --------------------------------------------------------------------------------------------
# End to end

@needs_fashion
def test_tiny_recipe_end_to_end(tmp_path):
    recipe = _recipe(tmp_path, extra=EXPORTS)
    out = tmp_path / "run"
    p = run_edgeprune(["run", str(recipe), "-o", str(out)], timeout=600, cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-2000:]
    # A quiet terminal: TensorFlow / LiteRT / absl lines are in OUT/run.log, not on the terminal.
    terminal = p.stdout + p.stderr
    for noise in ("tensorflow", "XNNPACK", "absl", "UserWarning"):
        assert noise not in terminal, noise
    log = (out / "run.log").read_text()
    assert "XNNPACK" in log or "tensorflow" in log.lower()
    assert f"report: {out / 'report.html'}" in p.stdout
    state = json.loads((out / ".flow" / "state.json").read_text())["stages"]
    assert list(state) == ["estimate", "train", "prune", "shrink", "quantize",
                           "export/tflm-stm32l4r5-m4", "export/c-stm32l4r5-m4", "verify", "report"]
    assert all(s["status"] == "done" for s in state.values())
    rep = json.loads((out / "report.json").read_text())
    ver = rep["verification"]
    assert ver["export/tflm-stm32l4r5-m4"]["status"] == "pass"
    assert ver["export/c-stm32l4r5-m4"]["status"] == "pass"
    if shutil.which("qemu-system-arm") and shutil.which("arm-none-eabi-gcc"):
        # the C runtime also ran on the emulated M4, bit-exact, with measured instructions
        qemu = [c for c in ver["export/c-stm32l4r5-m4"]["checks"] if "QEMU" in c["what"]]
        assert qemu and qemu[0]["ok"], ver["export/c-stm32l4r5-m4"]["checks"]
        instr = [r for r in rep["estimate_vs_measured"]
                 if r["quantity"] == "instructions per inference"][0]
        assert instr["measured"] > 0 and abs(instr["estimate"] / instr["measured"] - 1) < 0.10
    stages = [a["model_stage"] for a in rep["accuracy"]]
    assert stages[:4] == ["dense (trained, 1 epoch)",
                          "pruned (masked, float, 1 epoch more from the dense weights)",
                          "shrunk (channels removed, float)", "clustered 4-bit, fine-tuned (float)"]
    assert any(s.startswith("int8 TFLM") for s in stages)
    assert any(s.startswith("int8 C runtime") for s in stages)
    # Float accuracies on the full test split; artefacts on the recipe's 200 images.
    assert {a["images"] for a in rep["accuracy"][:4]} == {10000}
    assert {a["images"] for a in rep["accuracy"][4:]} == {200}
    # The prune and shrink accuracies are the same model (masked vs cut): equal.
    assert rep["accuracy"][1]["accuracy"] == pytest.approx(rep["accuracy"][2]["accuracy"], abs=1e-4)
    # estimate vs measured: the flash estimate is the .tflite size (the cost model is exact there)
    flash = [r for r in rep["estimate_vs_measured"] if r["quantity"] == "flash (.tflite)"][0]
    assert flash["measured"] == (out / "export/tflm-stm32l4r5-m4/model.tflite").stat().st_size
    after = rep["costs"]["stm32l4r5-m4"]["after"]["totals"]
    assert after["latency_ms"] <= 45 < rep["costs"]["stm32l4r5-m4"]["before"]["totals"]["latency_ms"]
    html = (out / "report.html").read_text()
    assert "http://" not in html and "https://" not in html and "<script" not in html
    assert html.count("data:image/png;base64,") == len(rep["figures"]) >= 4
    assert {"accuracy.png", "cost-stm32l4r5-m4.png", "pruning-run.png",
            "estimate-vs-measured.png"} <= set(rep["figures"])
    for f in rep["figures"]:
        assert (out / "figures" / f).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@needs_fashion
def test_kill_mid_prune_then_resume(tmp_path):
    recipe = _recipe(tmp_path, prune_epochs=3, prune_steps=12)
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "edgeprune", "run", str(recipe), "-o", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=flow_env(),
                            cwd=tmp_path)
    ckpt = out / "prune.partial" / "ckpt-prune" / "last.pt"
    deadline = time.time() + 300
    try:
        while not ckpt.is_file():          # the first pruning epoch is checkpointed
            assert proc.poll() is None, proc.stdout.read().decode()[-2000:]
            assert time.time() < deadline, "no pruning checkpoint within 300 s"
            time.sleep(0.2)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    killed = json.loads((out / ".flow" / "state.json").read_text())["stages"]
    assert killed["train"]["status"] == "done" and killed["prune"]["status"] == "running"
    assert not (out / "prune").exists()            # no half-written stage
    p = run_edgeprune(cmd[3:] + ["--resume"], timeout=600, cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-2000:]
    assert "estimate (dense model)             unchanged, reused" in p.stdout
    assert "train                              unchanged, reused" in p.stdout
    done = json.loads((out / ".flow" / "state.json").read_text())["stages"]
    assert done["train"]["finished"] == killed["train"]["finished"]
    assert done["prune"]["status"] == "done"
    log = (out / "run.log").read_text()
    # The pruning run continued from its checkpoint rather than starting over.
    assert "continuing" in log and "resumed from" in log and "after epoch" in log
    assert not (out / "prune.partial").exists()
    summary = json.loads((out / "prune" / "summary.json").read_text())
    assert summary["epochs"] == 3


@pytest.mark.parametrize("name", ["estimate", "mcu", "fpga", "demo"])
def test_shipped_recipes_are_valid(name):
    from edgeprune.flow.recipe import check_targets, load_recipe
    from edgeprune.flow.stages import plan
    r = load_recipe(ROOT / "recipes" / f"{name}.toml")
    check_targets(r)
    stages = [s.name for s in plan(r)]
    assert stages[0] == "estimate" and stages[-1] == "report"
    if name != "estimate":
        assert {"train", "prune", "shrink", "verify"} <= set(stages)


def test_demo_command_runs_the_demo_recipe():
    from edgeprune.cli.demo import DEMO_RECIPE
    assert DEMO_RECIPE == ROOT / "recipes" / "demo.toml"
    assert "edgeprune run recipes/demo.toml" in (ROOT / "Makefile").read_text()


def test_stage_keys_follow_only_what_each_stage_reads():
    from edgeprune.flow.recipe import load_recipe, recipe_from_dict
    from edgeprune.flow.runner import stage_key
    from edgeprune.flow.stages import plan

    def keys(recipe):
        k = {}
        for spec in plan(recipe):
            k[spec.name] = stage_key(spec, k)
        return k
    base = load_recipe(ROOT / "recipes" / "demo.toml")
    a = keys(base)
    d = json.loads(json.dumps(base.data))
    d["verify"]["qonnx_images"] = 10            # read by the verify stage only
    b = keys(recipe_from_dict(d, base.source))
    assert [n for n in a if a[n] != b[n]] == ["verify", "report"]
    d["quantize"]["cluster_bits"] = 3           # the MCU exports read the clustered model
    c = keys(recipe_from_dict(d, base.source))
    changed = [n for n in a if a[n] != c[n]]
    assert changed[0] == "quantize" and "prune" not in changed and "train" not in changed
    assert "export/tflm-stm32l4r5-m4" in changed
    # FPGA exports start from the pruned float model: clustering does not re-run them
    assert "export/hls-pynq-z2" not in changed and "export/finn-pynq-z2" not in changed
    d["quantize"]["qat_epochs"] = 2
    e = keys(recipe_from_dict(d, base.source))
    assert e["export/hls-pynq-z2"] != c["export/hls-pynq-z2"]
