"""Every writing command (prune, cluster, export tflm|c|finn|hls):
- never removes or overwrites a file it did not write, even with --overwrite;
- gives byte-identical outputs for the same command and seed, also from an untrained zoo model;
- refuses --resume with settings other than the interrupted run's.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from edgeprune.artifacts import MANIFEST
from edgeprune.cli import main
from edgeprune.data import FASHION_MNIST_DIR

pytestmark = pytest.mark.skipif(not FASHION_MNIST_DIR.is_dir(),
                                reason="Fashion-MNIST (Debian dataset-fashion-mnist) not installed")

USER_FILES = {"notes.txt": b"my notes", "mine/data.bin": b"\x00\x01\x02"}


def _put_user_files(d: Path) -> None:
    for rel, data in USER_FILES.items():
        (d / rel).parent.mkdir(parents=True, exist_ok=True)
        (d / rel).write_bytes(data)


def _user_files_intact(d: Path) -> bool:
    return all((d / rel).read_bytes() == data for rel, data in USER_FILES.items())


def _tool_files(d: Path):
    """{relative path: sha256} of every file edgeprune wrote (its manifest), manifest included."""
    import json
    listed = json.loads((d / MANIFEST).read_text())["files"]
    out = {}
    for rel in listed + [MANIFEST]:
        out[rel] = hashlib.sha256((d / rel).read_bytes()).hexdigest()
    return out


def _run(argv) -> None:
    rc = main(argv)
    assert rc == 0, f"edgeprune {' '.join(argv)} exited {rc}"


Q = ["--n-train", "256", "--n-test", "64", "--quiet"]


@pytest.fixture(scope="module")
def pruned(tmp_path_factory):
    out = tmp_path_factory.mktemp("p") / "prune"
    _run(["prune", "lenet5", "--data", "fashion-mnist", "--method", "agp", "--granularity",
          "channel", "--sparsity", "0.5", "--epochs", "1", *Q, "-o", str(out)])
    return out


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny pruned CNN as a .pt2 program: the FPGA exports' C-simulation stays quick."""
    import sys
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from test_fpga_common import tiny_pruned

    from edgeprune.artifacts import save_pt2
    path = tmp_path_factory.mktemp("tiny") / "tiny.pt2"
    save_pt2(tiny_pruned(), path)
    return path


COMMANDS = {
    "prune": lambda fx: ["prune", "lenet5", "--data", "fashion-mnist", "--epochs", "1",
                         "--sparsity", "0.8", *Q],
    "cluster": lambda fx: ["cluster", str(fx["pruned"]), "--data", "fashion-mnist", "--bits", "3",
                           "--epochs", "0"],
    "export-tflm": lambda fx: ["export", "tflm", "lenet5", "-t", "stm32l4r5-m4", "--seed", "3",
                               "--eval-samples", "16"],
    "export-c": lambda fx: ["export", "c", "lenet5", "-t", "stm32l4r5-m4", "--seed", "3",
                            "--eval-samples", "8"],
    "export-finn": lambda fx: ["export", "finn", str(fx["tiny"]), "-t", "pynq-z2", "--data",
                               "fashion-mnist", "--epochs", "0", "--verify-images", "16"],
    "export-hls": lambda fx: ["export", "hls", str(fx["tiny"]), "-t", "pynq-z2", "--data",
                              "fashion-mnist", "--epochs", "0", "--verify-images", "16",
                              "--csim-images", "16", "--no-axi-testbench"],
}


@pytest.mark.slow
@pytest.mark.parametrize("command", list(COMMANDS))
def test_keeps_user_files_and_is_deterministic(command, request, tmp_path):
    fx = {"pruned": request.getfixturevalue("pruned") if command == "cluster" else None,
          "tiny": request.getfixturevalue("tiny") if command.startswith("export-") else None}
    argv = COMMANDS[command](fx)
    a, b = tmp_path / "a", tmp_path / "b"
    _run(argv + ["-o", str(a)])                        # a fresh directory
    b.mkdir()
    _put_user_files(b)
    assert main(argv + ["-o", str(b)]) == 2            # a user's directory: refused...
    assert _user_files_intact(b) and not (b / MANIFEST).exists()
    _run(argv + ["--overwrite", "-o", str(b)])         # ...unless --overwrite, keeping them
    assert _user_files_intact(b)
    assert _tool_files(a) == _tool_files(b), "same command, same seed: different bytes"
    if command != "export-hls":                        # (each HLS run compiles a C-simulation)
        _run(argv + ["--overwrite", "-o", str(b)])     # again over its own earlier output
        assert _user_files_intact(b) and _tool_files(a) == _tool_files(b)


def test_a_user_file_named_like_an_output_is_never_replaced(tmp_path):
    out = tmp_path / "o"
    out.mkdir()
    (out / "report.json").write_text("mine")
    rc = main(["export", "tflm", "lenet5", "-t", "stm32l4r5-m4", "--eval-samples", "8",
               "--overwrite", "-o", str(out)])
    assert rc == 2
    assert (out / "report.json").read_text() == "mine"
    assert sorted(p.name for p in out.iterdir()) == ["report.json"]


def test_resume_refuses_other_settings(tmp_path):
    from edgeprune.prune.runner import PARTIAL_MARKER
    out = tmp_path / "p"
    work = tmp_path / "p.partial"
    work.mkdir()
    (work / PARTIAL_MARKER).touch()
    (work / "run_config.json").write_text('{"granularity": "weight", "method": "agp"}')
    rc = main(["prune", "lenet5", "--data", "fashion-mnist", "--method", "agp", "--granularity",
               "channel", "--epochs", "1", *Q, "--resume", "-o", str(out)])
    assert rc == 2 and not out.exists()


def test_a_user_directory_named_like_the_partial_one_is_refused(tmp_path):
    out = tmp_path / "p"
    (tmp_path / "p.partial").mkdir()
    (tmp_path / "p.partial" / "thesis.tex").write_text("keep")
    rc = main(["prune", "lenet5", "--data", "fashion-mnist", "--epochs", "1", *Q, "-o", str(out)])
    assert rc == 2
    assert (tmp_path / "p.partial" / "thesis.tex").read_text() == "keep"
