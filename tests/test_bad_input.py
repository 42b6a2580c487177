"""Bad input, table-driven: every case is a command and the fragment its error must contain.

Each case must end with exit code 2, exactly one `edgeprune: error:` line on stderr, no
traceback, and nothing left behind (no output directory, no partial files). Cases run in
process (`edgeprune.cli.main`) to keep the suite fast; a few run as real processes too.
The classes covered are listed in CLASSES at the bottom (the closing note quotes the counts).
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from edgeprune.cli import main
from edgeprune.data import FASHION_MNIST_DIR

REPO = Path(__file__).resolve().parent.parent
needs_fashion = pytest.mark.skipif(not FASHION_MNIST_DIR.is_dir(),
                                   reason="Fashion-MNIST (Debian dataset-fashion-mnist) not installed")


# --------------------------------------------------------------------------------------------
# Fixtures: bad files of every kind, in one directory

def _write(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


MCU_OK = """kind = "mcu"
core = "cortex-m4"
clock_mhz = 80
flash_kb = 1024
ram_kb = 256
runtime = "tflm-cmsis-nn"
"""
FPGA_OK = """kind = "fpga"
part = "xc7z020clg400-1"
lut = 53200
ff = 106400
bram18 = 280
uram = 0
dsp = 220
clock_mhz = 100
finn_board = "Pynq-Z2"
"""


@pytest.fixture(scope="module")
def bad(tmp_path_factory):
    d = tmp_path_factory.mktemp("bad")
    f = {}
    # models and weights
    from edgeprune.artifacts import save_pt2
    from edgeprune.models import build
    torch.manual_seed(0)
    lenet = build("lenet5")
    save_pt2(lenet, d / "good.pt2")
    raw = (d / "good.pt2").read_bytes()
    (d / "truncated.pt2").write_bytes(raw[: len(raw) // 2])
    (d / "empty.pt2").write_bytes(b"")
    (d / "garbage.pt2").write_bytes(os.urandom(4096))
    sd = lenet.state_dict()
    torch.save(sd, d / "weights.pt")
    nan = {k: v.clone() for k, v in sd.items()}
    nan["fc1.weight"][0, 0] = float("nan")
    torch.save(nan, d / "nan_weights.pt")
    inf = {k: v.clone() for k, v in sd.items()}
    inf["conv1.bias"][0] = float("inf")
    torch.save(inf, d / "inf_weights.pt")
    torch.save(build("lenet300100").state_dict(), d / "other_arch.pt")
    torch.save(lenet, d / "pickled.pt")
    (d / "empty_weights.pt").write_bytes(b"")
    _write(d / "model.txt", "not a model")
    for k in ("good.pt2", "truncated.pt2", "empty.pt2", "garbage.pt2", "weights.pt",
              "nan_weights.pt", "inf_weights.pt", "other_arch.pt", "pickled.pt", "empty_weights.pt",
              "model.txt"):
        f[k.replace(".", "_")] = str(d / k)
    # targets
    for name, text in {
        "t_clock_str": MCU_OK.replace("clock_mhz = 80", 'clock_mhz = "fast"'),
        "t_clock_zero": MCU_OK.replace("clock_mhz = 80", "clock_mhz = 0"),
        "t_clock_neg": MCU_OK.replace("clock_mhz = 80", "clock_mhz = -80"),
        "t_clock_bool": MCU_OK.replace("clock_mhz = 80", "clock_mhz = true"),
        "t_flash_neg": MCU_OK.replace("flash_kb = 1024", "flash_kb = -1"),
        "t_flash_float": MCU_OK.replace("flash_kb = 1024", "flash_kb = 1.5"),
        "t_ram_missing": MCU_OK.replace("ram_kb = 256\n", ""),
        "t_core": MCU_OK.replace('"cortex-m4"', '"cortex-a53"'),
        "t_runtime": MCU_OK.replace('"tflm-cmsis-nn"', '"onnx"'),
        "t_kind": MCU_OK.replace('kind = "mcu"', 'kind = "gpu"'),
        "t_syntax": MCU_OK.replace("clock_mhz = 80", "clock_mhz = = 80"),
        "t_lut_str": FPGA_OK.replace("lut = 53200", 'lut = "many"'),
        "t_lut_zero": FPGA_OK.replace("lut = 53200", "lut = 0"),
        "t_dsp_neg": FPGA_OK.replace("dsp = 220", "dsp = -5"),
        "t_util": FPGA_OK + "[util_limits]\nlut = 1.5\n",
        "t_util_key": FPGA_OK + "[util_limits]\nwatts = 0.5\n",
        "t_tiny_mcu": MCU_OK.replace("flash_kb = 1024", "flash_kb = 16").replace("ram_kb = 256",
                                                                                  "ram_kb = 4"),
        "t_tiny_fpga": FPGA_OK.replace("lut = 53200", "lut = 2000").replace("dsp = 220", "dsp = 0")
                              .replace("bram18 = 280", "bram18 = 4"),
        "t_no_board": FPGA_OK.replace('finn_board = "Pynq-Z2"\n', ""),
    }.items():
        f[name] = _write(d / f"{name}.toml", text)
    # data sets
    def npz_dir(name, **arrays):
        p = d / name
        p.mkdir()
        np.savez(p / "data.npz", **arrays)
        return str(p)

    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (64, 28, 28), dtype=np.uint8)
    lab = rng.integers(0, 10, 64)
    f["d_ok"] = npz_dir("d_ok", x=img, y=lab)
    f["d_nan"] = npz_dir("d_nan", x=np.where(img > 250, np.nan, img / 255.0), y=lab)
    f["d_labels_float"] = npz_dir("d_labels_float", x=img, y=lab + 0.5)
    f["d_labels_neg"] = npz_dir("d_labels_neg", x=img, y=lab - 5)
    f["d_labels_big"] = npz_dir("d_labels_big", x=img, y=lab + 10)
    f["d_len"] = npz_dir("d_len", x=img, y=lab[:10])
    f["d_shape"] = npz_dir("d_shape", x=rng.integers(0, 255, (64, 32, 32, 3), dtype=np.uint8), y=lab)
    f["d_flat"] = npz_dir("d_flat", x=img.reshape(64, -1), y=lab)
    f["d_keys"] = npz_dir("d_keys", images=img, labels=lab)
    (d / "d_empty").mkdir()
    f["d_empty"] = str(d / "d_empty")
    (d / "d_corrupt").mkdir()
    (d / "d_corrupt" / "data.npz").write_bytes(b"PK\x03\x04garbage")
    f["d_corrupt"] = str(d / "d_corrupt")
    (d / "d_idx").mkdir()
    (d / "d_idx" / "t10k-images-idx3-ubyte").write_bytes(b"\x00\x00\x08\x03" + b"\x00" * 10)
    (d / "d_idx" / "t10k-labels-idx1-ubyte").write_bytes(b"\x00\x00\x08\x01\x00\x00\x00\x02\x01\x02")
    f["d_idx"] = str(d / "d_idx")
    # outputs that must not be touched
    f["a_file"] = _write(d / "a_file", "precious")
    (d / "user_dir").mkdir()
    _write(d / "user_dir" / "notes.txt", "keep me")
    f["user_dir"] = str(d / "user_dir")
    f["dir"] = str(d)
    return f


# --------------------------------------------------------------------------------------------
# The cases: (id, argv with {placeholders}, expected error fragment)

Q = ["--epochs", "1", "--n-train", "256", "--n-test", "64", "--no-baseline", "--quiet"]
M4 = "stm32l4r5-m4"

CASES_BY_CLASS = {
    "CLI numbers and choices": [
        ("epochs-zero", ["prune", "lenet5", "--data", "{d_ok}", "--epochs", "0", "-o", "{out}"], "--epochs"),
        ("epochs-neg", ["prune", "lenet5", "--data", "{d_ok}", "--epochs", "-3", "-o", "{out}"], "--epochs"),
        ("epochs-text", ["prune", "lenet5", "--data", "{d_ok}", "--epochs", "ten", "-o", "{out}"], "--epochs"),
        ("lr-zero", ["prune", "lenet5", "--data", "{d_ok}", "--lr", "0", "-o", "{out}"], "--lr"),
        ("lr-nan", ["prune", "lenet5", "--data", "{d_ok}", "--lr", "nan", "-o", "{out}"], "--lr"),
        ("lr-inf", ["prune", "lenet5", "--data", "{d_ok}", "--lr", "inf", "-o", "{out}"], "--lr"),
        ("batch-zero", ["prune", "lenet5", "--data", "{d_ok}", "--batch-size", "0", "-o", "{out}"], "--batch-size"),
        ("seed-neg", ["prune", "lenet5", "--data", "{d_ok}", "--seed", "-1", "-o", "{out}"], "--seed"),
        ("n-train-zero", ["prune", "lenet5", "--data", "{d_ok}", "--n-train", "0", "-o", "{out}"], "--n-train"),
        ("max-acc-drop", ["prune", "lenet5", "--data", "{d_ok}", "--max-acc-drop", "2", "-o", "{out}"], "--max-acc-drop"),
        ("sparsity-big", ["prune", "lenet5", "--data", "{d_ok}", "--sparsity", "1.5", "-o", "{out}"], "sparsity"),
        ("sparsity-text", ["prune", "lenet5", "--data", "{d_ok}", "--sparsity", "lots", "-o", "{out}"], "sparsity"),
        ("sparsity-ratio", ["prune", "lenet5", "--data", "{d_ok}", "--sparsity", "0.5x", "-o", "{out}"], "sparsity"),
        ("granularity", ["prune", "lenet5", "--data", "{d_ok}", "--granularity", "pixel", "-o", "{out}"], "granularity"),
        ("nm-bad", ["prune", "lenet5", "--data", "{d_ok}", "--granularity", "4:2", "-o", "{out}"], "4:2"),
        ("method", ["prune", "lenet5", "--data", "{d_ok}", "--method", "magic", "-o", "{out}"], "--method"),
        ("criterion", ["prune", "lenet5", "--data", "{d_ok}", "--criterion", "vibes", "-o", "{out}"], "vibes"),
        ("fraction", ["estimate", "lenet5", "-t", M4, "--what-if", "--fraction", "1.5"], "--fraction"),
        ("cluster-bits", ["cluster", "lenet5", "--data", "{d_ok}", "--bits", "0", "-o", "{out}"], "--bits"),
        ("cluster-bits-big", ["cluster", "lenet5", "--data", "{d_ok}", "--bits", "99", "-o", "{out}"], "--bits"),
        ("cluster-bpl", ["cluster", "lenet5", "--data", "{d_ok}", "--bits-per-layer", "fc1", "-o", "{out}"], "fc1"),
        ("cluster-bpl-layer", ["cluster", "lenet5", "--data", "{d_ok}", "--bits-per-layer", "nope=3", "-o", "{out}"], "nope"),
        ("cluster-epochs", ["cluster", "lenet5", "--data", "{d_ok}", "--epochs", "-1", "-o", "{out}"], "--epochs"),
        ("arena-margin", ["export", "tflm", "lenet5", "-t", M4, "--arena-margin", "-1", "-o", "{out}"], "--arena-margin"),
        ("eval-samples", ["export", "tflm", "lenet5", "-t", M4, "--eval-samples", "-5", "-o", "{out}"], "--eval-samples"),
        ("wbits-big", ["estimate", "lenet5", "-t", "pynq-z2", "--wbits", "9"], "--wbits"),
        ("abits-zero", ["estimate", "lenet5", "-t", "pynq-z2", "--abits", "0"], "--abits"),
        ("fps-neg", ["estimate", "lenet5", "-t", "pynq-z2", "--fps", "-10"], "--fps"),
        ("fps-unreachable", ["estimate", "lenet5", "-t", "pynq-z2", "--fps", "1e12"], "not reachable"),
        ("wbits-on-mcu", ["estimate", "lenet5", "-t", M4, "--wbits", "4"], "int8"),
        ("runtime", ["estimate", "lenet5", "-t", M4, "--runtime", "onnx"], "runtime"),
        ("bits-map-json", ["estimate", "lenet5", "-t", "pynq-z2", "--bits-map", "{{nope"], "bits-map"),
        ("bits-map-layer", ["estimate", "lenet5", "-t", "pynq-z2", "--bits-map", '{{"zz": {{"w": 4}}}}'], "zz"),
        ("unknown-command", ["frobnicate"], "invalid choice"),
        ("missing-arg", ["prune", "lenet5", "-o", "{out}"], "--data"),
    ],
    "budgets": [
        ("budget-syntax", ["prune", "lenet5", "--data", "{d_ok}", "--budget", "flash=3", "-o", "{out}"], "flash"),
        ("budget-neg", ["prune", "lenet5", "--data", "{d_ok}", "--budget", "macs=-3", "-o", "{out}"], "macs"),
        ("budget-no-target", ["prune", "lenet5", "--data", "{d_ok}", *Q, "--budget", "latency_ms=5", "-o", "{out}"], "--target"),
        ("budget-wrong-kind", ["prune", "lenet5", "--data", "{d_ok}", "-t", M4, "--budget", "lut=2000", "-o", "{out}"], "lut"),
        ("budget-fpga-flash", ["prune", "lenet5", "--data", "{d_ok}", "-t", "pynq-z2", "--budget", "flash_kb=10", "-o", "{out}"], "flash_kb"),
        ("budget-unmeetable", ["prune", "lenet5", "--data", "{d_ok}", *Q, "--granularity", "channel", "--budget", "macs=10", "-o", "{out}"], "cannot be met"),
        ("orientation-target", ["prune", "lenet5", "--data", "{d_ok}", *Q, "--orientation", "target", "-o", "{out}"], "--target"),
        ("wbits-no-target", ["prune", "lenet5", "--data", "{d_ok}", "--wbits", "4", "-o", "{out}"], "--target"),
    ],
    "targets": [
        ("target-unknown", ["estimate", "lenet5", "-t", "esp32"], "unknown target"),
        ("target-missing-file", ["estimate", "lenet5", "-t", "{dir}/nope.toml"], "not found"),
        ("target-clock-str", ["estimate", "lenet5", "-t", "{t_clock_str}"], "clock_mhz"),
        ("target-clock-zero", ["estimate", "lenet5", "-t", "{t_clock_zero}"], "clock_mhz"),
        ("target-clock-neg", ["estimate", "lenet5", "-t", "{t_clock_neg}"], "clock_mhz"),
        ("target-clock-bool", ["estimate", "lenet5", "-t", "{t_clock_bool}"], "clock_mhz"),
        ("target-flash-neg", ["estimate", "lenet5", "-t", "{t_flash_neg}"], "flash_kb"),
        ("target-flash-float", ["estimate", "lenet5", "-t", "{t_flash_float}"], "flash_kb"),
        ("target-ram-missing", ["estimate", "lenet5", "-t", "{t_ram_missing}"], "ram_kb"),
        ("target-core", ["estimate", "lenet5", "-t", "{t_core}"], "core"),
        ("target-runtime", ["estimate", "lenet5", "-t", "{t_runtime}"], "runtime"),
        ("target-kind", ["estimate", "lenet5", "-t", "{t_kind}"], "kind"),
        ("target-syntax", ["estimate", "lenet5", "-t", "{t_syntax}"], "invalid TOML"),
        ("target-lut-str", ["estimate", "lenet5", "-t", "{t_lut_str}"], "lut"),
        ("target-lut-zero", ["estimate", "lenet5", "-t", "{t_lut_zero}"], "lut"),
        ("target-dsp-neg", ["estimate", "lenet5", "-t", "{t_dsp_neg}"], "dsp"),
        ("target-util", ["estimate", "lenet5", "-t", "{t_util}"], "util_limits"),
        ("target-util-key", ["estimate", "lenet5", "-t", "{t_util_key}"], "watts"),
        ("tflm-fpga-target", ["export", "tflm", "lenet5", "-t", "pynq-z2", "-o", "{out}"], "MCU target"),
        ("c-fpga-target", ["export", "c", "lenet5", "-t", "pynq-z2", "-o", "{out}"], "MCU target"),
        ("finn-mcu-target", ["export", "finn", "lenet5", "-t", M4, "--data", "{d_ok}", "-o", "{out}"], "FPGA target"),
        ("hls-mcu-target", ["export", "hls", "lenet5", "-t", M4, "--data", "{d_ok}", "-o", "{out}"], "FPGA target"),
        ("finn-no-board", ["export", "finn", "lenet5", "-t", "{t_no_board}", "--data", "{d_ok}", "-o", "{out}"], "finn_board"),
        ("finn-no-data", ["export", "finn", "lenet5", "-t", "pynq-z2", "-o", "{out}"], "--data"),
        ("hls-no-data", ["export", "hls", "lenet5", "-t", "pynq-z2", "-o", "{out}"], "--data"),
    ],
    "does not fit": [
        ("tflm-does-not-fit", ["export", "tflm", "lenet5", "-t", "{t_tiny_mcu}", "-o", "{out}"], "does not fit"),
        ("c-does-not-fit", ["export", "c", "lenet5", "-t", "{t_tiny_mcu}", "--eval-samples", "4", "-o", "{out}"], "does not fit"),
        ("finn-does-not-fit", ["export", "finn", "lenet5", "-t", "{t_tiny_fpga}", "--wbits", "8", "--abits", "8", "--data", "{d_ok}", "-o", "{out}"], "does not fit"),
        ("hls-does-not-fit", ["export", "hls", "lenet5", "-t", "{t_tiny_fpga}", "--wbits", "8", "--abits", "8", "--data", "{d_ok}", "-o", "{out}"], "does not fit"),
    ],
    "models and weights": [
        ("model-unknown", ["estimate", "resnet9000", "-t", M4], "unknown model"),
        ("model-truncated", ["estimate", "{truncated_pt2}", "-t", M4], "truncated.pt2"),
        ("model-empty", ["estimate", "{empty_pt2}", "-t", M4], "empty.pt2"),
        ("model-garbage", ["estimate", "{garbage_pt2}", "-t", M4], "garbage.pt2"),
        ("model-txt", ["estimate", "{model_txt}", "-t", M4], "model.txt"),
        ("model-pickle", ["estimate", "{pickled_pt}", "-t", M4], "--trust-pickle"),
        ("weights-nan", ["estimate", "lenet5", "--weights", "{nan_weights_pt}", "-t", M4], "NaN"),
        ("weights-inf", ["estimate", "lenet5", "--weights", "{inf_weights_pt}", "-t", M4], "NaN or infinite"),
        ("weights-arch", ["estimate", "lenet5", "--weights", "{other_arch_pt}", "-t", M4], "do not fit"),
        ("weights-empty", ["estimate", "lenet5", "--weights", "{empty_weights_pt}", "-t", M4], "empty_weights.pt"),
        ("weights-missing", ["estimate", "lenet5", "--weights", "{dir}/nope.pt", "-t", M4], "not found"),
        ("weights-nan-prune", ["prune", "lenet5", "--weights", "{nan_weights_pt}", "--data", "{d_ok}", "-o", "{out}"], "NaN"),
        ("weights-nan-export", ["export", "tflm", "lenet5", "--weights", "{nan_weights_pt}", "-t", M4, "-o", "{out}"], "NaN"),
        ("model-dir-empty", ["estimate", "{user_dir}", "-t", M4], "user_dir"),
    ],
    "data sets": [
        ("data-missing", ["prune", "lenet5", "--data", "{dir}/nowhere", *Q, "-o", "{out}"], "not found"),
        ("data-empty-dir", ["prune", "lenet5", "--data", "{d_empty}", *Q, "-o", "{out}"], "no IDX"),
        ("data-corrupt-npz", ["prune", "lenet5", "--data", "{d_corrupt}", *Q, "-o", "{out}"], "npz"),
        ("data-idx", ["prune", "lenet5", "--data", "{d_idx}", *Q, "-o", "{out}"], "t10k"),
        ("data-nan", ["prune", "lenet5", "--data", "{d_nan}", *Q, "-o", "{out}"], "NaN"),
        ("data-labels-float", ["prune", "lenet5", "--data", "{d_labels_float}", *Q, "-o", "{out}"], "labels"),
        ("data-labels-neg", ["prune", "lenet5", "--data", "{d_labels_neg}", *Q, "-o", "{out}"], "labels"),
        # (a zoo model is built for the data's classes; a .pt2 program has its own output count)
        ("data-labels-big", ["prune", "{good_pt2}", "--data", "{d_labels_big}", *Q, "-o", "{out}"], "outputs"),
        ("data-len", ["prune", "lenet5", "--data", "{d_len}", *Q, "-o", "{out}"], "labels"),
        ("data-shape", ["prune", "lenet5", "--data", "{d_shape}", *Q, "-o", "{out}"], "shape"),
        ("data-flat", ["prune", "lenet5", "--data", "{d_flat}", *Q, "-o", "{out}"], "images"),
        ("data-keys", ["prune", "lenet5", "--data", "{d_keys}", *Q, "-o", "{out}"], "x_train"),
        ("data-shape-export", ["export", "tflm", "lenet5", "-t", M4, "--data", "{d_shape}", "-o", "{out}"], "shape"),
        ("data-shape-cluster", ["cluster", "lenet5", "--data", "{d_shape}", "-o", "{out}"], "shape"),
        ("data-labels-finn", ["export", "finn", "{good_pt2}", "-t", "pynq-z2", "--data", "{d_labels_big}", "-o", "{out}"], "outputs"),
    ],
    "outputs": [
        ("out-is-file", ["prune", "lenet5", "--data", "{d_ok}", *Q, "-o", "{a_file}"], "not a directory"),
        ("out-not-empty-prune", ["prune", "lenet5", "--data", "{d_ok}", *Q, "-o", "{user_dir}"], "--overwrite"),
        ("out-not-empty-cluster", ["cluster", "lenet5", "--data", "{d_ok}", "--epochs", "0", "-o", "{user_dir}"], "--overwrite"),
        ("out-not-empty-tflm", ["export", "tflm", "lenet5", "-t", M4, "-o", "{user_dir}"], "--overwrite"),
        ("out-not-empty-c", ["export", "c", "lenet5", "-t", M4, "-o", "{user_dir}"], "--overwrite"),
        ("out-not-empty-finn", ["export", "finn", "lenet5", "-t", "pynq-z2", "--data", "{d_ok}", "-o", "{user_dir}"], "--overwrite"),
        ("out-not-empty-hls", ["export", "hls", "lenet5", "-t", "pynq-z2", "--data", "{d_ok}", "-o", "{user_dir}"], "--overwrite"),
        ("out-dot", ["export", "tflm", "lenet5", "-t", M4, "-o", "."], "--overwrite"),
        ("out-empty-string", ["export", "tflm", "lenet5", "-t", M4, "-o", ""], "empty"),
    ],
    "training that diverges": [
        ("diverges", ["prune", "lenet5", "--data", "{d_ok}", *Q, "--epochs", "4", "--batch-size", "16",
                      "--lr", "1e8", "-o", "{out}"], "diverged"),
    ],
}
CASES = [case for cases in CASES_BY_CLASS.values() for case in cases]


def _fill(argv, bad, out):
    return [a.format(out=out, **bad) for a in argv]


def _listing(root: Path):
    return sorted((str(p.relative_to(root)), p.stat().st_size if p.is_file() else -1)
                  for p in root.rglob("*"))


@needs_fashion
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input(case, bad, tmp_path, capsys, monkeypatch):
    name, argv, fragment = case
    monkeypatch.chdir(bad["user_dir"])       # `-o .` is a directory holding a user's file
    out = tmp_path / "out"
    args = _fill(argv, bad, str(out))
    root = Path(bad["dir"])
    before = _listing(root)
    before_tmp = _listing(tmp_path)
    rc = main(args)
    err = capsys.readouterr().err
    lines = [l for l in err.splitlines() if l.strip()]
    errors = [l for l in lines if l.startswith("edgeprune: error:")]
    assert rc == 2, f"{name}: exit {rc}\n{err}"
    assert len(errors) == 1, f"{name}: expected one error line, got:\n{err}"
    assert "Traceback" not in err
    assert fragment in errors[0], f"{name}: {fragment!r} not in {errors[0]!r}"
    assert not out.exists(), f"{name}: left {out} behind"
    assert _listing(tmp_path) == before_tmp, f"{name}: left files in {tmp_path}"
    assert _listing(root) == before, f"{name}: changed the fixture directory"


def test_every_case_is_a_distinct_command():
    ids = [c[0] for c in CASES]
    assert len(ids) == len(set(ids))


@needs_fashion
def test_real_process_prints_one_line_and_no_library_noise(bad, tmp_path):
    """End to end in a real process: one error line, nothing from TensorFlow/absl on stderr."""
    p = subprocess.run([sys.executable, "-m", "edgeprune", "export", "tflm", "lenet5", "-t",
                        bad["t_tiny_mcu"], "-o", str(tmp_path / "o")],
                       capture_output=True, text=True, cwd=REPO, timeout=300,
                       env={**os.environ, "EDGEPRUNE_LOG": str(tmp_path / "log.txt")})
    assert p.returncode == 2
    assert p.stderr.strip().count("\n") == 0 and p.stderr.startswith("edgeprune: error:")
    assert not (tmp_path / "o").exists()


def test_classes(capsys):
    """The classes of bad input covered, with their counts (printed for the closing note:
    `pytest tests/test_bad_input.py -k classes -s`)."""
    counts = {cls: len(cases) for cls, cases in CASES_BY_CLASS.items()}
    assert all(counts.values())
    with capsys.disabled():
        print("\nbad-input classes:", ", ".join(f"{k} {v}" for k, v in counts.items()),
              f"(total {sum(counts.values())})")
