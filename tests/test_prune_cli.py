"""`edgeprune prune` end to end on a tiny npz dataset: outputs, determinism, errors."""
import json

import numpy as np
import pytest
import torch

from edgeprune.cli import main
from edgeprune.models.loading import load_model
from edgeprune.train import dataset_tensors
from edgeprune.data import load_dataset
from template_data import template_arrays

OUTPUTS = ("model.pt", "shrunk.pt2", "log.json", "log.png", "summary.json")
SUMMARY_KEYS = ("model", "dataset", "method", "granularity", "orientation", "acc_dense",
                "acc_pruned", "params_dense", "params_nonzero", "params_compression", "macs_dense",
                "macs_effective", "macs_reduction", "seed", "epochs", "target", "budgets")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("tinydata")
    xtr, ytr, xte, yte = template_arrays(192, 64)
    np.savez(d / "tiny.npz", x_train=xtr, y_train=ytr, x_test=xte, y_test=yte)
    return d


def prune(data_dir, out, *extra):
    return main(["prune", "lenet5", "--data", str(data_dir), "--epochs", "2", "--batch-size", "32",
                 "--max-steps-per-epoch", "4", "--quiet", "-o", str(out), *extra])


def test_cli_writes_every_output_and_is_deterministic(data_dir, tmp_path):
    out = tmp_path / "a"
    assert prune(data_dir, out, "--method", "agp", "--sparsity", "20x") == 0
    for name in OUTPUTS:
        assert (out / name).is_file(), name
    s = json.loads((out / "summary.json").read_text())
    for k in SUMMARY_KEYS:
        assert k in s, k
    assert s["params_dense"] == 431080
    assert s["params_compression"] == pytest.approx(s["params_dense"] / s["params_nonzero"])
    assert 15 < s["params_compression"] < 25
    assert s["macs_effective"] < s["macs_dense"]
    assert s["acc_dense"] is not None and 0 <= s["acc_pruned"] <= 1
    log = json.loads((out / "log.json").read_text())
    dec = [e for e in log["entries"] if e["kind"] == "decision"]
    assert dec and {"before", "after", "saved", "layers"} <= set(dec[-1])
    # model.pt is a plain state_dict with the masks baked in; shrunk.pt2 computes the same
    sd = torch.load(out / "model.pt", weights_only=True)
    nz = sum(int((v != 0).sum()) for k, v in sd.items())
    assert nz == s["params_nonzero"]
    m = load_model("lenet5", weights=str(out / "model.pt")).eval()
    shrunk = load_model(str(out / "shrunk.pt2")).eval()
    _, _, xte, _ = dataset_tensors(load_dataset(str(data_dir)), (1, 28, 28))
    with torch.no_grad():
        assert torch.allclose(m(xte), shrunk(xte), atol=1e-4)
    # same seed -> same masks -> same bytes
    out2 = tmp_path / "b"
    assert prune(data_dir, out2, "--method", "agp", "--sparsity", "20x") == 0
    for name in ("model.pt", "shrunk.pt2"):
        assert (out / name).read_bytes() == (out2 / name).read_bytes(), name


def test_cli_channel_pruning_shrinks_the_export(data_dir, tmp_path):
    out = tmp_path / "c"
    assert prune(data_dir, out, "--method", "filter_while_training", "--granularity", "channel",
                 "--sparsity", "0.5", "--no-baseline") == 0
    s = json.loads((out / "summary.json").read_text())
    assert s["acc_dense"] is None
    assert s["shrunk"]["params"] < 0.6 * s["params_dense"]
    assert (out / "shrunk.pt2").stat().st_size > 0


def test_cli_bad_budget_is_one_line_exit_2_no_output(data_dir, tmp_path, capsys):
    out = tmp_path / "d"
    assert prune(data_dir, out, "--budget", "flash=3") == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("edgeprune: error:") and "\n" not in err and "flash" in err
    assert not out.exists()


def test_cli_unmeetable_budget_says_how_close(data_dir, tmp_path, capsys):
    out = tmp_path / "e"
    rc = prune(data_dir, out, "--method", "agp", "--granularity", "channel", "--budget", "macs=2k")
    assert rc == 2
    err = capsys.readouterr().err.strip()
    assert "cannot be met" in err and "macs" in err and "dense 2.293e+06" in err
    assert not out.exists() and not (tmp_path / "e.partial").exists()
