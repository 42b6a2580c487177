"""The spine: zoo counts, layer graph (shapes, MACs, coupled groups), data loaders, model loading."""
from __future__ import annotations

import gzip
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn

import edgeprune.models as M
from edgeprune.data import DataError, load_dataset, load_directory, mnist10k_dir, read_idx
from edgeprune.graph import UnsupportedOpError, extract
from edgeprune.artifacts import save_pt2
from edgeprune.models.loading import ModelLoadError, load_model

# Figures from the issue text (LeNet-5: Caffe variant; the rest: MLPerf Tiny reference models).
# compute_params = conv/linear weights + biases, i.e. a BN-folded deployed model.
ZOO_FIGURES = {
    "lenet5": (431_080, 2_293_000, 0.0),           # exact
    "resnet8": (78_000, 12_500_000, 0.01),        # "~78k params, ~12.5 M MACs"
    "dscnn": (22_600, 2_660_000, 0.01),           # "~22.6k params, ~2.66 M MACs"
    "mobilenetv1_025": (211_000, 7_490_000, 0.01),  # "~211k params, ~7.49 M MACs"
    "fc_autoencoder": (266_000, 260_000, 0.02),    # "~266k params, ~0.26 M MACs"
}


@pytest.mark.parametrize("name", sorted(ZOO_FIGURES))
def test_zoo_counts_match_reference(name):
    params, macs, tol = ZOO_FIGURES[name]
    g = extract(M.build(name))
    assert abs(g.compute_params - params) <= tol * params, g.compute_params
    assert abs(g.total_macs - macs) <= tol * macs, g.total_macs


def test_lenet300100_and_vgg_counts():
    g = extract(M.build("lenet300100"))
    assert g.compute_params == 784 * 300 + 300 + 300 * 100 + 100 + 100 * 10 + 10
    assert g.total_macs == 784 * 300 + 300 * 100 + 100 * 10
    for shape in ((1, 28, 28), (3, 32, 32)):
        m = M.vgg_small(in_channels=shape[0], image_size=shape[1])
        g = extract(m)
        assert g.output_node.out_shape == (10,)


def test_lenet5_nodes_shapes_intensity():
    g = extract(M.build("lenet5"))
    conv1, conv2, fc1 = g["conv1"], g["conv2"], g["fc1"]
    assert conv1.out_shape == (20, 24, 24) and conv1.macs == 20 * 24 * 24 * 25
    assert conv2.in_shape == (20, 12, 12) and conv2.macs == 50 * 8 * 8 * 20 * 25
    assert fc1.weight_shape == (500, 800)
    # Computational intensity steers memory- vs workload-oriented pruning.
    assert conv1.intensity == 24 * 24 and conv2.intensity == 64 and fc1.intensity == 1


def test_coupled_groups_lenet5_flatten_repeat():
    g = extract(M.build("lenet5"))
    grp = g.group_of_node("conv2")
    ins = [m for m in grp.members if m.role == "in"]
    assert [(m.node, m.repeat) for m in ins] == [("fc1", 16)]   # 50 channels x 4x4 -> fc1
    out = g.group_of_node("fc2")
    assert not out.prunable and "output" in out.reason


def test_coupled_groups_residual_and_depthwise():
    g = extract(M.build("resnet8"))
    # stack2's conv2 output and its shortcut are added: one group, also feeding stack3.
    grp = g.group_of_node("stack2_conv2")
    assert set(grp.nodes("out")) == {"stack2_conv2", "stack2_shortcut"}
    assert set(grp.nodes("in")) == {"stack3_conv1", "stack3_shortcut"}
    # The stem's output is added to stack1's identity path.
    grp = g.group_of_node("stem_0")
    assert "stack1_conv2" in grp.nodes("out")
    g = extract(M.build("dscnn"))
    # depthwise conv passes channels through: it joins its producer's group.
    dw = g.group_of_node("features_5", role="dw")
    assert "features_1" in dw.nodes("out") and "features_8" in dw.nodes("in")
    assert g["features_5"].op == "dwconv2d"


def test_concat_offsets():
    class Cat(nn.Module):
        input_shape = (3, 8, 8)

        def __init__(self):
            super().__init__()
            self.a = nn.Conv2d(3, 4, 1)
            self.b = nn.Conv2d(3, 6, 1)
            self.c = nn.Conv2d(10, 5, 1)
            self.fc = nn.Linear(5 * 64, 2)

        def forward(self, x):
            y = torch.cat([self.a(x), self.b(x)], dim=1)
            return self.fc(torch.flatten(self.c(y), 1))

    g = extract(Cat())
    gb = g.group_of_node("b")
    assert [(m.node, m.offset) for m in gb.members if m.role == "in"] == [("c", 4)]
    assert g.with_group_sizes({gb.id: 3})["c"].weight_shape == (5, 7, 1, 1)


def test_with_group_sizes_matches_a_narrower_model():
    g = extract(M.build("lenet5")).with_group_sizes({0: 10, 1: 25, 2: 100})

    class Narrow(nn.Module):
        input_shape = (1, 28, 28)

        def __init__(self):
            super().__init__()
            self.c1, self.c2 = nn.Conv2d(1, 10, 5), nn.Conv2d(10, 25, 5)
            self.l1, self.l2 = nn.Linear(400, 100), nn.Linear(100, 10)

        def forward(self, x):
            x = nn.functional.max_pool2d(self.c2(nn.functional.max_pool2d(self.c1(x), 2)), 2)
            return self.l2(torch.relu(self.l1(torch.flatten(x, 1))))

    ref = extract(Narrow())
    assert (g.total_params, g.total_macs) == (ref.total_params, ref.total_macs)


def test_unsupported_op_names_node_and_op():
    class Weird(nn.Module):
        input_shape = (4,)

        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 4)
            self.gelu = nn.GELU()

        def forward(self, x):
            return self.gelu(self.fc(x))

    with pytest.raises(UnsupportedOpError, match=r"node 'gelu'.*GELU"):
        extract(Weird())


# ---------------------------------------------------------------------------- data

def _write_idx(path: Path, arr: np.ndarray, gz: bool = True) -> None:
    header = struct.pack(">BBBB", 0, 0, 0x08, arr.ndim) + struct.pack(">" + "I" * arr.ndim, *arr.shape)
    raw = header + arr.astype(np.uint8).tobytes()
    (gzip.open if gz else open)(path, "wb").write(raw)


def test_idx_roundtrip_and_lone_t10k_split(tmp_path):
    x = np.random.default_rng(0).integers(0, 255, (50, 28, 28), dtype=np.uint8)
    y = np.arange(50) % 10
    _write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", x)
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte", y.astype(np.uint8), gz=False)
    ds = load_directory(tmp_path)
    assert ds.x_train.shape == (40, 28, 28) and ds.x_test.shape == (10, 28, 28)
    assert np.array_equal(np.concatenate([ds.x_train, ds.x_test]), x)
    assert ds.num_classes == 10


def test_corrupt_idx_names_file(tmp_path):
    p = tmp_path / "t10k-images-idx3-ubyte"
    p.write_bytes(b"\x00\x00\x08\x03" + struct.pack(">III", 10, 28, 28) + b"\x00" * 100)
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte: size mismatch"):
        read_idx(p)
    with pytest.raises(DataError, match="not found"):
        load_directory(tmp_path / "missing")


def test_npz_directory(tmp_path):
    rng = np.random.default_rng(1)
    np.savez(tmp_path / "d.npz", x=rng.integers(0, 255, (20, 1, 8, 8), dtype=np.uint8),
             y=np.arange(20) % 3)
    ds = load_directory(tmp_path)
    assert ds.x_train.shape == (16, 1, 8, 8) and ds.image_shape == (1, 8, 8)


def test_fashion_mnist_installed():
    ds = load_dataset("fashion-mnist")
    assert ds.x_train.shape == (60000, 28, 28) and ds.x_test.shape == (10000, 28, 28)
    assert ds.num_classes == 10


def test_mnist10k_from_shared():
    d = mnist10k_dir()
    if d is None:
        pytest.skip("../shared/data/mnist-t10k is absent on this machine (developer-only data)")
    ds = load_dataset("mnist-10k")
    assert len(ds.x_train) == 8000 and len(ds.x_test) == 2000


# ---------------------------------------------------------------------------- model loading

def test_load_zoo_state_dict_and_pt2(tmp_path):
    m = M.build("dscnn").eval()
    torch.save(m.state_dict(), tmp_path / "w.pt")
    m2 = load_model("dscnn", weights=str(tmp_path / "w.pt")).eval()
    x = torch.randn(2, *m.input_shape)
    assert torch.equal(m(x), m2(x))
    save_pt2(m, tmp_path / "m.pt2")
    m3 = load_model(str(tmp_path / "m.pt2")).eval()
    assert torch.allclose(m(x), m3(x), atol=1e-6)
    assert set(m3.state_dict()) == set(m.state_dict())      # original qualified names kept
    assert extract(m3).total_macs == extract(m).total_macs


def test_load_errors(tmp_path):
    with pytest.raises(ModelLoadError, match="unknown model 'nosuch'"):
        load_model("nosuch")
    bad = tmp_path / "bad.pt2"
    bad.write_bytes(b"not a zip")
    with pytest.raises(ModelLoadError, match="bad.pt2: cannot load"):
        load_model(str(bad))
    torch.save(M.build("lenet5").state_dict(), tmp_path / "w.pt")
    with pytest.raises(ModelLoadError, match="weights do not fit"):
        load_model("dscnn", weights=str(tmp_path / "w.pt"))
    torch.save(M.build("lenet5"), tmp_path / "full.pt")       # a pickled module
    with pytest.raises(ModelLoadError, match="--trust-pickle"):
        load_model(str(tmp_path / "full.pt"))
    assert isinstance(load_model(str(tmp_path / "full.pt"), trust_pickle=True), nn.Module)


def test_cli_targets_and_errors():
    exe = [sys.executable, "-m", "edgeprune"]
    r = subprocess.run(exe + ["targets", "--json"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    import json
    kinds = {t["kind"] for t in json.loads(r.stdout)}
    assert kinds == {"mcu", "fpga"}


def test_shipped_zoo_graphs_are_current():
    """`edgeprune estimate <zoo>` reads shipped graphs; they must equal a fresh extraction."""
    from edgeprune.zoo_graphs import cached_graph
    for name in M.ZOO:
        g = cached_graph(name)
        assert g is not None, f"{name}: stale or missing; run python -m edgeprune.zoo_graphs"
        assert g.to_dict() == extract(M.build(name)).to_dict()


def test_estimate_zoo_model_does_not_import_torch():
    code = ("import sys, json, io, contextlib\n"
            "from edgeprune.cli import main\n"
            "buf = io.StringIO()\n"
            "with contextlib.redirect_stdout(buf):\n"
            "    rc = main(['estimate', 'lenet5', '--target', 'stm32l4r5-m4', '--json'])\n"
            "d = json.loads(buf.getvalue())\n"
            "print(rc, d['totals']['params'], d['totals']['macs'], 'torch' in sys.modules)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["0", "431080", "2293000", "False"]


def test_pt2_module_keeps_input_shape_through_deepcopy(tmp_path):
    import copy
    save_pt2(M.build("lenet5"), tmp_path / "m.pt2")
    m = load_model(str(tmp_path / "m.pt2"))
    assert copy.deepcopy(m).input_shape == (1, 28, 28)


def test_corrupt_pt2_gives_one_line_error(tmp_path):
    bad = tmp_path / "bad.pt2"
    bad.write_bytes(b"not a zip")
    r = subprocess.run([sys.executable, "-m", "edgeprune", "estimate", str(bad), "--target",
                        "stm32l4r5-m4"], capture_output=True, text=True)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [f"edgeprune: error: {bad}: cannot load torch.export "
                                             f"program (File is not a zip file)"]
