"""Retraining-free pruning (`--method reconstruct`) on small models: error vs magnitude pruning,
exactness when nothing is pruned, budgets, the CLI path."""
import copy
import json

import numpy as np
import pytest
import torch

from edgeprune.cli import main
from edgeprune.graph import extract
from edgeprune.models import build
from edgeprune.prune.masks import PruneError, parse_granularity
from edgeprune.prune.methods import METHODS, PruneSpec
from edgeprune.prune.methods.reconstruct import calibration_images
from edgeprune.prune.budgets import parse_budgets
from edgeprune.train import TrainConfig, Trainer, dataset_tensors
from template_data import template_dataset


DS = template_dataset(n_train=512, n_test=256, template_weight=0.6, noise=100.0)


@pytest.fixture(scope="module")
def trained():
    """Small trained models (a few hundred steps): name -> (model, x_calib, x_test)."""
    out = {}
    for name in ("lenet300100", "lenet5"):
        torch.manual_seed(0)
        m = build(name)
        Trainer(m, DS, TrainConfig(epochs=2, batch_size=64, progress=False)).fit()
        xtr, _, xte, _ = dataset_tensors(DS, m.input_shape)
        out[name] = (m.eval(), calibration_images(xtr, 256, 0), xte)
    return out


def _prune(method, model, gran, amount, x=None, orientation="memory", budgets=()):
    m = copy.deepcopy(model)
    crit = "obs" if method == "reconstruct" else "l1"
    spec = PruneSpec(granularity=parse_granularity(gran), criterion=crit, amount=amount,
                     orientation=orientation, budgets=parse_budgets(budgets), pretrained=True)
    h = METHODS[method](m, extract(m), spec)
    if method == "reconstruct":
        h.prune_once(x)
    else:                        # plain magnitude pruning, one shot, no retraining
        h.apply_amount(0, amount)
        h.masks.harden()
    return m.eval(), h


def _rel_err(a, b):
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize("name,gran,amount", [("lenet300100", "weight", 0.9),
                                              ("lenet5", "weight", 0.9),
                                              ("lenet300100", "channel", 0.6)])
def test_reconstruction_error_below_magnitude_pruning(trained, name, gran, amount):
    dense, xc, xte = trained[name]
    with torch.no_grad():
        ref = dense(xte)
        pm, hm = _prune("agp", dense, gran, amount)
        pr, hr = _prune("reconstruct", dense, gran, amount, xc)
        err_mag, err_rec = _rel_err(pm(xte), ref), _rel_err(pr(xte), ref)
    # the same resource removed (params within 2 %), on held-out images
    assert hr.figures()["params"] == pytest.approx(hm.figures()["params"], rel=0.02)
    assert err_rec < 0.7 * err_mag, (err_rec, err_mag)


def test_channel_reconstruction_equals_the_masked_model_when_nothing_is_pruned(trained):
    dense, xc, xte = trained["lenet5"]
    pr, h = _prune("reconstruct", dense, "channel", 0.0, xc)
    with torch.no_grad():
        assert torch.allclose(pr(xte), dense(xte), atol=1e-4, rtol=1e-4)
    assert all(bool(k.all()) for k in h.masks.channel_keep.values())
    assert max(h.errors.values()) < 1e-5


def test_channel_reconstruction_removes_channels_and_keeps_mask_semantics(trained):
    dense, xc, xte = trained["lenet5"]
    pr, h = _prune("reconstruct", dense, "channel", 0.6, xc, orientation="workload")
    dropped = {gid: int((~k).sum()) for gid, k in h.masks.channel_keep.items()}
    assert sum(dropped.values()) > 0
    # a dropped channel carries exactly zero (the channel-masked model the shrink reproduces)
    for g in h.graph.prunable_groups():
        gone = (~h.masks.channel_keep[g.id]).nonzero().flatten()
        for mem in g.members:
            if mem.role == "out":
                w = h.masks.node_module[mem.node].weight
                assert float(w.detach()[gone].abs().sum()) == 0
    assert 1 - h.figures()["macs"] / h.dense_figures["macs"] == pytest.approx(0.6, abs=0.05)


def test_reconstruct_meets_a_budget(trained):
    dense, xc, _ = trained["lenet300100"]
    _, h = _prune("reconstruct", dense, "weight", None, xc, budgets=("params=20k",))
    assert h.met and h.figures()["params"] <= 20000
    assert h.figures()["params"] > 15000      # the smallest amount that meets it, not 99.9 %


def test_reconstruct_is_deterministic(trained):
    dense, xc, _ = trained["lenet300100"]
    a, _ = _prune("reconstruct", dense, "weight", 0.8, xc)
    b, _ = _prune("reconstruct", dense, "weight", 0.8, xc)
    for (k, v), (_, w) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(v, w), k


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("tinydata")
    np.savez(d / "tiny.npz", x_train=DS.x_train[:192], y_train=DS.y_train[:192],
             x_test=DS.x_test[:64], y_test=DS.y_test[:64])
    return d


def test_cli_reconstruct_needs_a_trained_model_and_writes_outputs(data_dir, tmp_path, trained, capsys):
    out = tmp_path / "r"
    # a bare zoo name is untrained: one error line, exit 2, nothing written
    assert main(["prune", "lenet300100", "--data", str(data_dir), "--method", "reconstruct",
                 "--quiet", "-o", str(out)]) == 2
    assert "edgeprune: error: --method reconstruct prunes a trained model" in capsys.readouterr().err
    assert not out.exists() and not (tmp_path / "r.partial").exists()
    w = tmp_path / "dense.pt"
    torch.save(trained["lenet300100"][0].state_dict(), w)
    assert main(["prune", "lenet300100", "--weights", str(w), "--data", str(data_dir),
                 "--method", "reconstruct", "--sparsity", "10x", "--calibration", "100",
                 "--quiet", "-o", str(out)]) == 0
    s = json.loads((out / "summary.json").read_text())
    assert s["method"] == "reconstruct" and s["epochs"] == 0 and s["calibration_images"] == 100
    assert 8 < s["params_compression"] < 12
    log = json.loads((out / "log.json").read_text())
    assert set(log["meta"]["reconstruction_rel_error"]) == {"fc1", "fc2", "fc3"}
    for name in ("model.pt", "shrunk.pt2", "log.json", "summary.json"):
        assert (out / name).is_file()


def test_reconstruct_rejects_other_granularities():
    m = build("lenet300100")
    with pytest.raises(PruneError):
        METHODS["reconstruct"](m, extract(m), PruneSpec(granularity=parse_granularity("kernel"),
                                                        criterion="obs"))


@pytest.mark.parametrize("name", ["resnet8", "dscnn"])
def test_channel_reconstruction_on_residual_and_depthwise_models_shrinks_exactly(name):
    """BatchNorm, residual adds (coupled groups) and depthwise convs: the reconstructed,
    channel-masked model shrinks to a thinner model that computes the same outputs."""
    from edgeprune.prune.masks import dead_channels, plain_copy
    from edgeprune.surgery import shrink_model
    torch.manual_seed(0)
    m = build(name).eval()
    x = torch.rand(16, *m.input_shape)
    spec = PruneSpec(granularity=parse_granularity("channel"), criterion="obs", amount=0.5,
                     orientation="workload", pretrained=True)
    h = METHODS["reconstruct"](m, extract(m), spec)
    h.prune_once(x)
    assert sum(int((~k).sum()) for k in h.masks.channel_keep.values()) > 0
    plain = plain_copy(m).eval()
    g = extract(plain)
    keep = dead_channels(plain, g)
    for gid, k in h.masks.channel_keep.items():
        keep[gid] &= k
    small = shrink_model(plain, g, keep).eval()
    assert extract(small).total_macs < 0.6 * extract(build(name)).total_macs
    with torch.no_grad():
        a, b = plain(x), small(x)
    assert torch.allclose(a, b, atol=1e-4 * max(float(a.abs().max()), 1.0), rtol=1e-4)


class _TwoLayer(torch.nn.Module):
    input_shape = (4,)

    def __init__(self):
        super().__init__()
        self.fc1 = torch.nn.Linear(4, 6)
        self.relu = torch.nn.ReLU()
        self.fc2 = torch.nn.Linear(6, 3)

    def forward(self, x):
        return self.fc2(self.relu(self.fc1(x)))


def _redundant_pair_model():
    """Hidden units 0 and 1 are copies: removing one alone costs little (the other takes over),
    less than removing any of 2..5; removing both costs most."""
    torch.manual_seed(0)
    m = _TwoLayer().eval()
    with torch.no_grad():
        m.fc1.weight[1] = m.fc1.weight[0]
        m.fc1.bias[1] = m.fc1.bias[0]
        m.fc2.weight[:, :2] = torch.tensor([[1.0, 1.0], [-1.0, -1.0], [0.5, 0.5]])
        m.fc2.weight[:, 2:] *= 3.0
    return m


def test_greedy_channel_selection_keeps_one_of_two_redundant_channels(monkeypatch):
    """Each copy alone is expendable (the other takes over its output), both together are not
    (amount 0.3 of the params = 2 of the 6 hidden units, 8 params each of 51): the greedy
    removal re-scores after each channel, the one-shot saliency cannot."""
    import edgeprune.prune.methods.reconstruct as R
    monkeypatch.setattr(R, "GCV_STEPS", 0)    # the ranking at the floor dampening
    dense = _redundant_pair_model()
    x = torch.randn(256, 4, generator=torch.Generator().manual_seed(1))
    keep, err = {}, {}
    for greedy in (True, False):
        monkeypatch.setattr(R, "GREEDY", greedy)
        m = copy.deepcopy(dense)
        spec = PruneSpec(granularity=parse_granularity("channel"), criterion="obs", amount=0.3,
                         orientation="memory", pretrained=True)
        h = METHODS["reconstruct"](m, extract(m), spec)
        h.prune_once(x)
        keep[greedy] = next(iter(h.masks.channel_keep.values()))
        assert int((~keep[greedy]).sum()) == 2
        with torch.no_grad():
            err[greedy] = _rel_err(m(x), dense(x))
    assert int(keep[True][:2].sum()) == 1, keep       # one copy stays and carries both
    assert int(keep[False][:2].sum()) == 0, keep      # the failure mode the greedy fixes
    assert err[True] < 0.5 * err[False], err


def _synthetic_layer_stats(n, d, noise, seed):
    """A linear layer's stats: dense inputs X_d, pruned-model inputs X_p = X_d + noise."""
    from edgeprune.prune.methods.reconstruct import _LayerStats
    g = torch.Generator().manual_seed(seed)
    lin = torch.nn.Linear(d, 8, bias=False)
    xd = torch.randn(n, d, generator=g)
    xp = xd + noise * torch.randn(n, d, generator=g)
    st = _LayerStats(lin)
    st.add(xd, xp)
    return st, xd, xp


def test_gcv_ridge_grows_when_the_calibration_rows_do_not_determine_the_weights():
    from edgeprune.prune.methods.reconstruct import DAMP, Reconstruct
    torch.manual_seed(0)
    W = torch.randn(1, 8, 60, dtype=torch.float64)
    # 80 rows for 60 inputs, inputs perturbed by pruning: the floor fits the noise
    st, _, _ = _synthetic_layer_stats(80, 60, 0.5, 0)
    floor = DAMP * float(torch.diagonal(st.H[0]).mean())
    lam = float(Reconstruct._gcv_lambda(st, W)[0])
    assert lam > 4 * floor
    # ... and the chosen ridge reconstructs new rows of the same layer better than the floor
    _, xd2, xp2 = _synthetic_layer_stats(2000, 60, 0.5, 1)

    def held_out(l):
        Wn = (W[0] @ st.C[0] + l * W[0]) @ torch.linalg.inv(st.H[0] + l * torch.eye(60, dtype=torch.float64))
        return float((xd2.double() @ W[0].T - xp2.double() @ Wn.T).norm())
    assert held_out(lam) < 0.9 * held_out(floor)
    # many rows and unchanged inputs: nothing to regularise, the floor stays
    st, _, _ = _synthetic_layer_stats(4000, 60, 0.0, 2)
    assert float(Reconstruct._gcv_lambda(st, W)[0]) == pytest.approx(
        DAMP * float(torch.diagonal(st.H[0]).mean()))
