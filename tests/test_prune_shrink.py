"""Physical shrink: the shrunk dense model computes what the channel-masked model computes."""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn as nn
from torch.nn.utils import parametrize
from torch.nn.utils import prune as torch_prune

from edgeprune.errors import EdgepruneError
from edgeprune.graph import extract
from edgeprune.models import ZOO, build
from edgeprune.artifacts import save_pt2
from edgeprune.surgery import ShrinkError, kept_indices, mask_channels_inplace, shrink_model


def _randomise_bn(model: nn.Module, gen: torch.Generator) -> None:
    """Fresh BN layers are identities in eval mode; give them real statistics and affine terms so
    a wrong slice of any of the four tensors shows up in the outputs."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                n = m.num_features
                m.running_mean.copy_(torch.rand(n, generator=gen) * 2 - 1)
                m.running_var.copy_(torch.rand(n, generator=gen) * 1.5 + 0.5)
                m.weight.copy_(torch.rand(n, generator=gen) + 0.5)
                m.bias.copy_(torch.rand(n, generator=gen) * 2 - 1)


def _random_keep(graph, gen: torch.Generator, p: float = 0.5):
    keep = {}
    for g in graph.prunable_groups():
        k = torch.rand(g.size, generator=gen) < p
        k[torch.randint(g.size, (1,), generator=gen)] = True  # never empty
        keep[g.id] = k
    return keep


def _expected_weight_shapes(graph, keep):
    """Weight shape of each compute layer after the shrink, counted from the groups directly."""
    kept = {g.id: int(keep[g.id].sum()) if g.id in keep else g.size for g in graph.groups}
    shapes = {}
    for node in graph.compute_nodes():
        shape = list(node.weight_shape)
        for g in graph.groups:
            for m in g.members:
                if m.node != node.name:
                    continue
                lost = (g.size - kept[g.id]) * m.repeat
                if m.role in ("out", "dw"):
                    shape[0] -= lost
                elif m.role == "in":
                    shape[1] -= lost
        shapes[node.target] = tuple(shape)
    return shapes


@pytest.mark.parametrize("name", sorted(ZOO))
def test_shrunk_equals_masked_on_every_zoo_model(name):
    gen = torch.Generator().manual_seed(1234)
    model = build(name).eval()
    _randomise_bn(model, gen)
    graph = extract(model)
    assert graph.prunable_groups(), f"{name} has no prunable groups"
    keep = _random_keep(graph, gen)
    before = {k: v.clone() for k, v in model.state_dict().items()}

    shrunk = shrink_model(model, graph, keep).eval()
    masked = mask_channels_inplace(copy.deepcopy(model), graph, keep).eval()

    # the input model is untouched
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), f"shrink_model modified input tensor {k}"

    x = torch.rand((3,) + tuple(graph.input_shape), generator=gen)
    with torch.no_grad():
        y_dense, y_masked, y_shrunk = model(x), masked(x), shrunk(x)
    assert not torch.allclose(y_dense, y_masked, atol=1e-3), "mask removed nothing visible"
    torch.testing.assert_close(y_shrunk, y_masked, atol=1e-5, rtol=1e-5)

    # the shrunk model's layer graph has the expected weight shapes, params and MACs
    g2 = extract(shrunk)
    expected = _expected_weight_shapes(graph, keep)
    for node in g2.compute_nodes():
        assert tuple(node.weight_shape) == expected[node.target], node.target
    sizes = {gid: int(k.sum()) for gid, k in keep.items()}
    analytic = graph.with_group_sizes(sizes)
    assert g2.total_params == analytic.total_params
    assert g2.total_macs == analytic.total_macs
    assert g2.total_params < graph.total_params and g2.total_macs < graph.total_macs


def test_lenet5_params_and_macs_by_hand():
    model = build("lenet5")
    graph = extract(model)
    conv1, conv2, fc1 = (graph.group_of_node(n).id for n in ("conv1", "conv2", "fc1"))
    keep = {conv1: torch.arange(20) < 10, conv2: torch.arange(50) % 2 == 0,
            fc1: torch.arange(500) < 100}
    g2 = extract(shrink_model(model, graph, keep))
    # conv1 10@1x5x5, conv2 25@10x5x5 (8x8 out), fc1 100x(25*4*4), fc2 10x100; biases
    params = (10 * 25 + 10) + (25 * 10 * 25 + 25) + (100 * 400 + 100) + (10 * 100 + 10)
    macs = 10 * 24 * 24 * 25 + 25 * 8 * 8 * 250 + 100 * 400 + 10 * 100
    assert g2.total_params == params
    assert g2.total_macs == macs


class _Branchy(nn.Module):
    """Concat of two conv branches into a conv, and conv -> flatten -> BN1d -> linear."""

    input_shape = (2, 6, 6)

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(2, 3, 3, padding=1)
        self.b = nn.Sequential(nn.Conv2d(2, 5, 1), nn.BatchNorm2d(5))
        self.mix = nn.Conv2d(8, 4, 3, padding=1)
        self.bn = nn.BatchNorm1d(4 * 36)
        self.head = nn.Linear(4 * 36, 3)

    def forward(self, x):
        y = torch.cat([torch.relu(self.a(x)), torch.relu(self.b(x))], dim=1)
        y = torch.flatten(torch.relu(self.mix(y)), 1)
        return self.head(self.bn(y))


def test_concat_offsets_and_flatten_bn1d():
    gen = torch.Generator().manual_seed(5)
    model = _Branchy().eval()
    _randomise_bn(model, gen)
    graph = extract(model)
    groups = {graph.group_of_node(n).id: graph.group_of_node(n).size for n in ("a", "b_0", "mix")}
    keep = {gid: torch.tensor([i % 2 == 1 for i in range(size)]) for gid, size in groups.items()}
    shrunk = shrink_model(model, graph, keep).eval()
    masked = mask_channels_inplace(copy.deepcopy(model), graph, keep).eval()
    x = torch.rand((4, 2, 6, 6), generator=gen)
    with torch.no_grad():
        torch.testing.assert_close(shrunk(x), masked(x), atol=1e-5, rtol=1e-5)
    assert shrunk.mix.in_channels == 1 + 2 and shrunk.mix.out_channels == 2
    assert shrunk.bn.num_features == 2 * 36 and shrunk.head.in_features == 2 * 36


def test_masks_held_by_parametrizations_and_torch_prune_are_baked():
    gen = torch.Generator().manual_seed(7)
    model = build("lenet300100")
    graph = extract(model)
    keep = _random_keep(graph, gen)

    class _Mask(nn.Module):
        def __init__(self, m):
            super().__init__()
            self.register_buffer("m", m)

        def forward(self, w):
            return w * self.m

    wmask = (torch.rand(model.fc2.weight.shape, generator=gen) > 0.3).float()
    parametrize.register_parametrization(model.fc2, "weight", _Mask(wmask))
    torch_prune.l1_unstructured(model.fc1, "weight", amount=0.5)
    model.fc1.register_forward_hook(lambda *a: None)  # a hook that must not follow the copy

    shrunk = shrink_model(model, graph, keep)
    assert not parametrize.is_parametrized(shrunk.fc2)
    assert not hasattr(shrunk.fc1, "weight_orig") and not shrunk.fc1._forward_hooks
    assert isinstance(shrunk.fc1.weight, nn.Parameter)
    # the input still carries its masks
    assert parametrize.is_parametrized(model.fc2) and hasattr(model.fc1, "weight_orig")
    # (deepcopy refuses torch-prune modules, so the reference masks the model itself, last;
    # its writes go under the parametrization / prune masks, which still apply on top)
    masked = mask_channels_inplace(model, graph, keep)
    x = torch.rand((3, 1, 28, 28), generator=gen)
    with torch.no_grad():
        torch.testing.assert_close(shrunk(x), masked(x), atol=1e-5, rtol=1e-5)


def test_kept_indices_name_the_sliced_tensors():
    model = build("vgg_small")
    graph = extract(model)
    gid = graph.group_of_node("features_0").id
    keep = {gid: torch.arange(16) >= 4}
    idx = kept_indices(graph, keep)
    assert set(idx) == {"features.0.weight", "features.0.bias", "features.1.weight",
                        "features.1.bias", "features.1.running_mean", "features.1.running_var",
                        "features.3.weight", "features.3.bias"}
    assert torch.equal(idx["features.0.weight"][0], torch.arange(4, 16))
    assert idx["features.3.weight"][0] is None
    assert torch.equal(idx["features.3.weight"][1], torch.arange(4, 16))


def test_bad_keep_masks_raise_one_line_errors():
    model = build("resnet8")
    graph = extract(model)
    g = graph.prunable_groups()[0]
    fixed = next(gr for gr in graph.groups if not gr.prunable)
    cases = [
        ({g.id: torch.zeros(g.size, dtype=torch.bool)}, "keep 0 of"),
        ({g.id: torch.ones(g.size + 1, dtype=torch.bool)}, "1-D bool tensor"),
        ({g.id: torch.ones(g.size)}, "1-D bool tensor"),
        ({999: torch.ones(3, dtype=torch.bool)}, "no such group"),
        ({fixed.id: torch.arange(fixed.size) > 0}, "not prunable"),
    ]
    for keep, msg in cases:
        with pytest.raises(ShrinkError, match=msg) as e:
            shrink_model(model, graph, keep)
        assert isinstance(e.value, EdgepruneError) and "\n" not in str(e.value)
    # a graph from another model is caught before anything is built
    other = extract(build("lenet5"))
    with pytest.raises(ShrinkError):
        shrink_model(model, other, {0: torch.arange(20) > 0})


def test_export_pt2_is_atomic_and_byte_deterministic(tmp_path):
    gen = torch.Generator().manual_seed(3)
    model = build("lenet5")
    graph = extract(model)
    shrunk = shrink_model(model, graph, _random_keep(graph, gen))
    p1 = save_pt2(shrunk, tmp_path / "a" / "shrunk.pt2", shrunk.input_shape)
    p2 = save_pt2(shrunk, tmp_path / "b" / "shrunk.pt2", shrunk.input_shape)
    assert p1.read_bytes() == p2.read_bytes()
    assert [p.name for p in (tmp_path / "a").iterdir()] == ["shrunk.pt2"]  # no temp left over
    program = torch.export.load(str(p1))
    x = torch.rand((2, 1, 28, 28), generator=gen)
    with torch.no_grad():
        torch.testing.assert_close(program.module()(x), shrunk.eval()(x))
