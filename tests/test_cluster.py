"""Cluster quantization: sparsity preservation, code counts, exact centroid updates, bit accounting,
determinism and the CLI."""
from __future__ import annotations

import copy
import json
import os

import numpy as np
import pytest
import torch
import torch.nn as nn

from edgeprune.quant import bits as cl_bits
from edgeprune.quant import cluster as cl
from edgeprune.data import Dataset
from edgeprune.train import Trainer, TrainConfig

torch.set_num_threads(1)


class Tiny(nn.Module):
    input_shape = (1, 8, 8)

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(4 * 6 * 6, 16)
        self.relu = nn.ReLU()
        self.fc2 = nn.Linear(16, 3)

    def forward(self, x):
        return self.fc2(self.relu(self.fc1(self.flatten(self.conv(x)))))


def pruned_tiny(seed: int = 0) -> nn.Module:
    """conv and fc1 about half pruned (exact zeros), fc2 dense."""
    torch.manual_seed(seed)
    m = Tiny()
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for layer in (m.conv, m.fc1):
            layer.weight.mul_((torch.rand(layer.weight.shape, generator=g) > 0.5).float())
    return m


def tiny_dataset(n_train=64, n_test=32, shape=(8, 8), classes=3, seed=0) -> Dataset:
    rng = np.random.default_rng(seed)
    return Dataset("tiny", rng.integers(0, 256, (n_train,) + shape, dtype=np.uint8),
                   rng.integers(0, classes, n_train).astype(np.int64),
                   rng.integers(0, 256, (n_test,) + shape, dtype=np.uint8),
                   rng.integers(0, classes, n_test).astype(np.int64))


def nonzero_distinct(w: torch.Tensor, per_channel: bool) -> int:
    rows = w.detach().reshape(w.shape[0], -1) if per_channel else w.detach().reshape(1, -1)
    return max(len(torch.unique(r[r != 0])) for r in rows)


@pytest.mark.parametrize("per_channel", [False, True])
@pytest.mark.parametrize("init", cl.INITS)
def test_zeros_stay_zero_and_codes_bounded_through_finetuning(init, per_channel):
    model = pruned_tiny()
    zeros = {n: (m.weight == 0).clone() for n, m in cl.weight_layers(model).items()}
    bits = {"conv": 2, "fc1": 3, "fc2": 2}
    state = cl.cluster_model(model, bits, init=init, per_channel=per_channel, seed=0)
    cl.apply(state, model)
    assert state.layers["conv"].zero_code and not state.layers["fc2"].zero_code

    def check():
        for name, m in cl.weight_layers(model).items():
            lc = state.layers[name]
            assert torch.equal(m.weight == 0, zeros[name]), f"{name}: zero pattern changed"
            # the zero code is one of the 2^b codes in pruned layers
            limit = (1 << lc.bits) - (1 if lc.zero_code else 0)
            assert nonzero_distinct(m.weight, per_channel) <= limit
            assert torch.equal(m.weight.detach(), lc.weight())

    check()
    before = copy.deepcopy(state.layers["fc1"].codebook)
    hook = cl.ClusterFinetuneHook(state)
    cfg = TrainConfig(epochs=1, lr=1e-2, batch_size=16, seed=0, optimizer="adam",
                      max_steps_per_epoch=3, progress=False)
    Trainer(model, tiny_dataset(), cfg, hooks=[hook]).fit()
    check()
    # Adam is element-wise: every weight of a cluster got the same update, nothing to re-tie
    assert hook.max_untie == 0.0
    assert not torch.equal(before, state.layers["fc1"].codebook), "centroids did not train"
    assert torch.all(state.layers["fc1"].codebook[:, 0] == 0)


def test_centroid_update_is_minus_lr_times_summed_gradient():
    torch.manual_seed(3)
    layer = nn.Linear(6, 4)
    with torch.no_grad():
        layer.weight[0, :3] = 0.0                # pruned weights -> fixed zero code
    model = nn.Sequential(layer)
    state = cl.cluster_model(model, 2, init="linear", seed=0)
    cl.apply(state, model)
    lc = state.layers["0"]
    old = lc.codebook.clone()
    hook = cl.ClusterFinetuneHook(state)
    hook.bind(model)
    x, y = torch.randn(5, 6), torch.tensor([0, 1, 2, 3, 0])
    nn.functional.cross_entropy(model(x), y).backward()
    raw = layer.weight.grad.clone()
    expected_sum = torch.zeros(4, dtype=torch.float64)
    for code, g in zip(lc.indices.flatten().tolist(), raw.flatten().tolist()):
        expected_sum[code] += g
    lr = 0.1
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.0)
    hook.tie_gradients()
    opt.step()
    hook.retie()
    expected = old.double()[0] - lr * expected_sum
    expected[0] = 0.0                             # the zero code never moves
    assert torch.allclose(lc.codebook[0].double(), expected, atol=1e-6), (lc.codebook, expected)
    assert not torch.allclose(lc.codebook, old)
    assert hook.max_untie == 0.0
    assert torch.equal(layer.weight.detach(), lc.weight())
    assert torch.all(layer.weight[0, :3] == 0)


def hand_layer() -> nn.Module:
    lin = nn.Linear(8, 3)
    with torch.no_grad():
        lin.weight.zero_()
        lin.weight[0, 0], lin.weight[1, 0], lin.weight[1, 6] = 0.5, -0.5, 0.25
        lin.bias.copy_(torch.tensor([0.1, 0.2, 0.0]))
    return nn.Sequential(lin)


def test_bit_accounting_hand_worked_example():
    model = hand_layer()
    state = cl.cluster_model(model, 2)
    cl.apply(state, model)
    # Dense reference: 32 * (24 weights + 3 biases) = 864 bits.
    # Non-zeros at flat positions 0, 8, 14 -> gaps 1, 8, 6 (a gap of 2^p fits in p bits, stored
    # minus 1). 3 distinct non-zero values <= 2^2 - 1 slots (code 0 = zero): codes are exact,
    # codebook 4 x 32 = 128 bits. Biases: 3 x 32 = 96 bits (output channels are never removed).
    # Relative index with p bits, fillers = sum((gap - 1) >> p):
    #   p=2: fillers 0+1+1 = 2, 5 entries x (2 + 2) = 20 bits
    #   p=3: fillers 0+0+0,  3 entries x (3 + 2) = 15 bits  <- cheapest p
    # Dense codes: 3 rows x 8 x 2 = 48 bits. CSR: 3 x (2 + ceil(log2 8)=3) + 4 row pointers x
    #   ceil(log2 4)=2 = 23 bits.
    r = cl_bits.bit_accounting(model, cluster_state=state, relative_index_bits=2)
    layer = r["layers"][0]
    assert layer["storage_options_bits"] == {"dense": 48, "relative": 20, "csr": 23}
    assert (layer["storage"], layer["fillers"]) == ("relative", 2)
    assert (layer["codebook_bits"], layer["bias_bits"], layer["total_bits"]) == (128, 96, 244)
    assert r["totals"]["dense_bits"] == 864
    r = cl_bits.bit_accounting(model, cluster_state=state)
    layer = r["layers"][0]
    assert (layer["storage"], layer["relative_index_bits"], layer["weight_bits"]) == ("relative", 3, 15)
    assert r["totals"]["compressed_bits"] == 15 + 128 + 96
    assert r["totals"]["compression"] == pytest.approx(864 / 239)
    # values only (3 non-zeros x 2 bits, nothing else): 864 / 6
    assert r["totals"]["values_only_compression"] == pytest.approx(144.0)
    # Unclustered float32: relative p=3 -> 3 x (3 + 32) = 105 bits (< CSR 3 x 35 + 8 = 113,
    # < dense 24 x 32 = 768); no codebook; total 105 + 96 = 201.
    r = cl_bits.bit_accounting(hand_layer())
    assert r["layers"][0]["storage_options_bits"] == {"dense": 768, "relative": 105, "csr": 113}
    assert r["totals"]["compressed_bits"] == 201


def test_bit_accounting_drops_channels_no_consumer_reads():
    model = pruned_tiny()
    with torch.no_grad():
        model.fc2.weight[:, 5] = 0                 # fc1 unit 5 is read by nobody
        model.fc1.weight[:, :36] = 0               # conv channel 0 (6x6 features) likewise
    r = {row["name"]: row for row in cl_bits.bit_accounting(model)["layers"]}
    assert (r["fc1"]["live_channels"], r["fc1"]["biases_stored"]) == (15, 15)
    assert r["fc1"]["stored_shape"] == [15, 3 * 36]
    assert (r["conv"]["live_channels"], r["fc2"]["stored_shape"]) == (3, [3, 15])
    # its weights are gone from storage too: conv's non-zeros are those of channels 1..3
    assert r["conv"]["nonzero"] == int((model.conv.weight[1:] != 0).sum())


def test_bit_accounting_refuses_untied_weights():
    model = pruned_tiny()
    state = cl.cluster_model(model, 2)
    with pytest.raises(cl.ClusterError, match="not tied"):
        cl_bits.bit_accounting(model, cluster_state=state)   # apply() was not called


@pytest.mark.parametrize("init", cl.INITS)
def test_same_seed_same_codebooks(init):
    a = cl.cluster_model(pruned_tiny(), 3, init=init, per_channel=True, seed=7)
    b = cl.cluster_model(pruned_tiny(), 3, init=init, per_channel=True, seed=7)
    for name in a.layers:
        assert torch.equal(a.layers[name].codebook, b.layers[name].codebook)
        assert torch.equal(a.layers[name].indices, b.layers[name].indices)


def test_codebooks_json_round_trip():
    model = pruned_tiny()
    state = cl.cluster_model(model, 3, per_channel=True)
    cl.apply(state, model)
    again = cl.state_from_codebooks(model, json.loads(json.dumps(state.to_dict())))
    for name, lc in state.layers.items():
        assert torch.equal(again.layers[name].weight(), lc.weight())


def test_bad_bits_are_refused():
    with pytest.raises(cl.ClusterError, match="'nope'"):
        cl.cluster_model(pruned_tiny(), {"nope": 3})
    with pytest.raises(cl.ClusterError, match="1..16"):
        cl.cluster_model(pruned_tiny(), 0)
    with pytest.raises(cl.ClusterError, match="init"):
        cl.cluster_model(pruned_tiny(), 2, init="forgy")


# --------------------------------------------------------------------------------------------
# CLI

@pytest.fixture()
def npz_data(tmp_path):
    d = tmp_path / "data"
    d.mkdir()
    ds = tiny_dataset(n_train=48, n_test=32, shape=(28, 28), classes=10)
    np.savez(d / "tiny.npz", x_train=ds.x_train, y_train=ds.y_train, x_test=ds.x_test,
             y_test=ds.y_test)
    return d


def test_cli_writes_all_outputs(tmp_path, npz_data):
    from edgeprune.cli import main
    from edgeprune.models import build
    from edgeprune.models.loading import load_model
    # a "prune output": lenet5 with 90 % of weights zeroed, as model.pt + summary.json
    src = tmp_path / "pruned"
    src.mkdir()
    torch.manual_seed(0)
    m = build("lenet5")
    with torch.no_grad():
        for layer in cl.weight_layers(m).values():
            layer.weight.mul_((torch.rand_like(layer.weight) > 0.9).float())
    torch.save(m.state_dict(), src / "model.pt")
    (src / "summary.json").write_text(json.dumps({"model": "lenet5", "acc_dense": 0.5}))
    out = tmp_path / "out"
    rc = main(["cluster", str(src), "--data", str(npz_data), "--bits", "3",
               "--bits-per-layer", "conv1=4", "--epochs", "1", "--max-steps-per-epoch", "2",
               "-o", str(out)])
    assert rc == 0
    assert sorted(os.listdir(out)) == ["codebooks.json", "model.pt", "model.pt2", "summary.json"]
    summary = json.loads((out / "summary.json").read_text())
    for key in ("acc_before", "acc_clustered", "acc_finetuned", "bits_compression",
                "bit_accounting"):
        assert key in summary
    assert summary["bits_per_layer"] == {"conv1": 4, "conv2": 3, "fc1": 3, "fc2": 3}
    assert summary["bits_compression"] > 1 and summary["acc_dense"] == 0.5
    codebooks = json.loads((out / "codebooks.json").read_text())
    assert len(codebooks["layers"]["conv1"]["codebook"][0]) == 16
    for spec in (str(out),):
        loaded = load_model(spec)
        sd = torch.load(out / "model.pt", weights_only=True)
        for name, layer in cl.weight_layers(loaded).items():
            limit = (1 << summary["bits_per_layer"][name]) - 1
            assert nonzero_distinct(layer.weight, False) <= limit
            assert torch.equal(layer.weight, sd[f"{name}.weight"])
            assert torch.equal(layer.weight == 0, m.get_submodule(name).weight == 0)


def test_cli_bad_layer_name_is_one_line_error(tmp_path, npz_data, capsys):
    from edgeprune.cli import main
    out = tmp_path / "out"
    rc = main(["cluster", "lenet5", "--data", str(npz_data), "--bits-per-layer", "conv9=3",
               "-o", str(out)])
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert len(err.splitlines()) == 1 and "conv9" in err and err.startswith("edgeprune: error:")
    assert not out.exists() and os.listdir(tmp_path) == ["data"]


def test_finetuning_resumes_bit_identically(tmp_path):
    ds = tiny_dataset()

    def run(epochs, resume, ckdir):
        model = pruned_tiny()
        state = cl.cluster_model(model, 2, seed=0)
        cfg = TrainConfig(epochs=epochs, lr=1e-2, batch_size=16, seed=0, max_steps_per_epoch=2,
                          progress=False, checkpoint_dir=str(ckdir), resume=resume)
        Trainer(model, ds, cfg, hooks=[cl.ClusterFinetuneHook(state)]).fit()
        return model, state

    full, full_state = run(2, False, tmp_path / "a")
    run(1, False, tmp_path / "b")                       # "killed" after epoch 1
    resumed, resumed_state = run(2, True, tmp_path / "b")
    for name, lc in full_state.layers.items():
        assert torch.equal(lc.codebook, resumed_state.layers[name].codebook)
    for a, b in zip(full.state_dict().values(), resumed.state_dict().values()):
        assert torch.equal(a, b)


def test_cli_measures_shrunk_prune_output_against_unpruned_model(tmp_path, npz_data):
    from edgeprune.cli import main
    from edgeprune.models import build
    from edgeprune.artifacts import save_pt2
    # a prune output whose shrunk.pt2 lost half of conv1's channels
    src = tmp_path / "pruned"
    src.mkdir()
    torch.manual_seed(0)
    small = build("lenet5")
    small.conv1 = nn.Conv2d(1, 10, 5)
    small.conv2 = nn.Conv2d(10, 50, 5)
    save_pt2(small, src / "shrunk.pt2")
    (src / "summary.json").write_text(json.dumps({"model": "lenet5"}))
    out = tmp_path / "out"
    assert main(["cluster", str(src), "--data", str(npz_data), "--bits", "2", "--epochs", "0",
                 "-o", str(out)]) == 0
    totals = json.loads((out / "summary.json").read_text())["bit_accounting"]["totals"]
    assert totals["dense_bits"] == 32 * 431080          # Caffe LeNet-5, not the shrunk model
    assert totals["params"] == 431080
