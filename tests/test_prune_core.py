"""Mask core, criteria, orientation and budgets of the pruning engine (no training loops)."""
import pytest
import torch
import torch.nn.functional as F

from edgeprune.errors import EdgepruneError
from edgeprune.graph import extract
from edgeprune.models import build
from edgeprune.prune.criteria import make_criterion
from edgeprune.prune.masks import (PruneError, PruningMasks, count_nonzero_params, dead_channels,
                                   effective_macs, parse_granularity, plain_copy)
from edgeprune.prune.budgets import Budget, BudgetError, parse_budgets
from edgeprune.prune.orientation import (attach_target_savings, build_families, lamp_normalise,
                                         nm_masks, select, apply_selection)
from edgeprune.surgery import shrink_model


def _masked(name="lenet5", soft=False, seed=0):
    torch.manual_seed(seed)
    m = build(name)
    g = extract(m)
    return m, g, PruningMasks(m, g, soft=soft)


def _prune(pm, gran, amount=0.5, orientation="memory", criterion="l1"):
    c = make_criterion(criterion, pm)
    fams = build_families(pm, c, parse_granularity(gran))
    apply_selection(pm, fams, select(fams, orientation, amount), parse_granularity(gran))
    return fams


def test_parse_granularity():
    assert str(parse_granularity("2:4")) == "2:4"
    assert parse_granularity("filter").kind == "channel"
    with pytest.raises(PruneError):
        parse_granularity("4:2")
    with pytest.raises(PruneError):
        parse_granularity("block")


def test_weight_masks_apply_without_copy_and_bake():
    m, g, pm = _masked()
    dense_conv2 = pm.dense_weight("conv2")
    _prune(pm, "weight", 0.8)
    # the module computes with the masked weight; the dense tensor is the optimizer's parameter
    assert pm.dense_weight("conv2") is dense_conv2
    assert torch.equal(m.conv2.weight, dense_conv2 * pm.weight_masks["conv2"])
    removed = sum(int((~pm.weight_masks[n]).sum()) for n in pm.layers)
    prunable = sum(pm.weight_masks[n].numel() for n in pm.layers)
    assert abs(removed / prunable - 0.8) < 1e-3
    plain = plain_copy(m)
    x = torch.rand(3, 1, 28, 28)
    assert torch.allclose(plain(x), m(x))
    assert count_nonzero_params(plain) == count_nonzero_params(m) < g.total_params
    extract(plain)                       # a plain copy traces again; the masked model is untouched
    assert torch.allclose(m(x), plain(x))


def test_kernel_masks_remove_whole_kxk_slices():
    m, g, pm = _masked()
    _prune(pm, "kernel", 0.5, orientation="uniform")
    w = m.conv2.weight.detach()
    per_kernel = (w != 0).reshape(50, 20, -1).sum(-1)
    assert set(per_kernel.unique().tolist()) <= {0, 25}
    assert int((per_kernel == 0).sum()) > 0


def test_nm_masks_keep_n_of_every_m_along_input_channels():
    m, g, pm = _masked("vgg_small")
    c = make_criterion("l1", pm)
    pm.weight_masks.update(nm_masks(pm, c, 2, 4))
    pm.refresh()
    w = m.features[3].weight.detach()           # (32, 16, 3, 3), OHWI runs of 4 input channels
    runs = (w.permute(0, 2, 3, 1).reshape(-1, 4) != 0).sum(-1)
    assert runs.max() <= 2 and (runs == 2).float().mean() > 0.99
    first = m.features[0].weight                # 1 input channel x 3x3: 9 not a multiple of 4
    assert bool((first != 0).all())


def test_channel_mask_definition_matches_shrink_on_resnet8():
    m, g, pm = _masked("resnet8")
    res = next(gr for gr in g.prunable_groups() if len(gr.nodes("out")) > 1)   # a residual group
    keep = torch.ones(res.size, dtype=torch.bool)
    keep[[1, 4, 7]] = False
    pm.channel_keep[res.id] = keep
    pm.refresh()
    mods = dict(m.named_modules())
    for mem in res.members:
        t = mods[g[mem.node].target]
        if mem.role in ("out", "bn", "dw"):
            assert float(t.weight.detach()[~keep].abs().sum()) == 0
            assert float(t.bias.detach()[~keep].abs().sum()) == 0
        else:
            assert float(t.weight.detach()[:, ~keep].abs().sum()) == 0
    m.eval()
    plain = plain_copy(m)
    small = shrink_model(plain, g, {res.id: keep}).eval()
    x = torch.rand(2, 3, 32, 32)
    assert torch.allclose(small(x), m(x), atol=1e-5)
    assert small.stem[0].out_channels == res.size - 3


def test_channel_pruning_prunes_a_residual_group_as_one_unit():
    m, g, pm = _masked("resnet8")
    _prune(pm, "channel", 0.5)
    mods = dict(m.named_modules())
    for gr in g.prunable_groups():
        dropped = ~pm.channel_keep[gr.id]
        if not dropped.any():
            continue
        for node in gr.nodes("out"):
            w = mods[g[node].target].weight.detach()
            zero_rows = (w.reshape(w.shape[0], -1).abs().sum(1) == 0)
            assert torch.equal(zero_rows, dropped), node
    assert any((~k).any() for gid, k in pm.channel_keep.items()
               if len(g.groups[gid].nodes("out")) > 1)


def test_soft_masks_pass_gradient_to_pruned_weights_hard_masks_do_not():
    for soft in (True, False):
        m, g, pm = _masked(soft=soft)
        _prune(pm, "weight", 0.9)
        x, y = torch.rand(8, 1, 28, 28), torch.randint(0, 10, (8,))
        F.cross_entropy(m(x), y).backward()
        grad = pm.dense_weight("fc1").grad
        pruned = ~pm.weight_masks["fc1"]
        if soft:
            assert float(grad[pruned].abs().sum()) > 0
        else:
            assert float(grad[pruned].abs().sum()) == 0


def test_effective_macs_and_dead_channels():
    m, g, pm = _masked()
    assert effective_macs(m, g) == sum(n.macs for n in g.compute_nodes())
    pm.weight_masks["fc2"][:, :100] = False      # nobody reads fc1 units 0..99 any more
    pm.refresh()
    keep = dead_channels(plain_copy(m), g)
    fc1_group = g.group_of_node("fc1")
    assert int((~keep[fc1_group.id]).sum()) == 100
    assert effective_macs(m, g) == sum(n.macs for n in g.compute_nodes()) - 10 * 100


def test_criteria_taylor_random_activation():
    m, g, pm = _masked("vgg_small")
    t = make_criterion("taylor", pm)
    x, y = torch.rand(4, 1, 28, 28), torch.randint(0, 10, (4,))
    F.cross_entropy(m(x), y).backward()
    t.after_backward()
    assert float(t.weight_scores("features_3").sum()) > 0
    assert float(t.channel_scores(g.groups[1]).sum()) > 0
    r1 = make_criterion("random", pm, seed=3).weight_scores("fc")
    r2 = make_criterion("random", pm, seed=3).weight_scores("fc")
    r3 = make_criterion("random", pm, seed=4).weight_scores("fc")
    assert torch.equal(r1, r2) and not torch.equal(r1, r3)
    a = make_criterion("density", pm)
    m.train()
    m(torch.rand(4, 1, 28, 28))
    d = a.density(g.groups[0])
    assert d is not None and 0 <= float(d.min()) and float(d.max()) <= 1
    with pytest.raises(PruneError):
        a.weight_scores("fc")
    a.close()


def test_memory_and_workload_allocate_differently_on_lenet5():
    m, g, pm = _masked()
    c = make_criterion("l1", pm)
    fams = build_families(pm, c, parse_granularity("weight"))
    mem = select(fams, "memory", 0.9)
    work = select(fams, "workload", 0.9)
    sp = lambda sel: {k: float(v.float().mean()) for k, v in sel.items()}  # noqa: E731
    mem_sp, work_sp = sp(mem), sp(work)
    assert max(mem_sp, key=mem_sp.get) == "fc1"          # memory: where the parameters are
    assert max(work_sp, key=work_sp.get) == "conv2"      # workload: where the MACs are
    assert work_sp["conv2"] > mem_sp["conv2"] and mem_sp["fc1"] > work_sp["fc1"]
    # amounts are fractions of the orientation's resource: params vs MACs
    params_removed = sum(int(v.sum()) for v in mem.values())
    assert abs(params_removed / sum(f.n for f in fams) - 0.9) < 1e-3
    macs = {f.key: f.macs for f in fams}
    macs_removed = sum(float(macs[k][v].sum()) for k, v in work.items())
    assert abs(macs_removed / sum(float(f.macs.sum()) for f in fams) - 0.9) < 1e-3


def test_target_orientation_prices_units_by_marginal_cost():
    m, g, pm = _masked()
    c = make_criterion("l1", pm)
    fams = build_families(pm, c, parse_granularity("weight"))
    # a cost model where only conv1 weights cost anything: target orientation prunes conv1 first
    marginal = {n.name: {"per_weight": {"cycles": 1000.0 if n.name == "conv1" else 1.0},
                         "per_channel": {}} for n in g.compute_nodes()}
    attach_target_savings(fams, g, marginal, {"cycles": 1e6})
    sel = select(fams, "target", 0.5)
    mem = select(fams, "memory", 0.5)
    conv1 = float(sel["conv1"].float().mean())
    assert conv1 > float(sel["fc1"].float().mean())
    assert conv1 > 0.3 > float(mem["conv1"].float().mean())


def test_lamp_normalise_keeps_order_and_tops_at_one():
    s = torch.tensor([3.0, 1.0, 2.0, 4.0])
    n = lamp_normalise(s)
    assert torch.equal(torch.argsort(n), torch.argsort(s))
    assert float(n.max()) == 1.0


def test_parse_budgets():
    b = {x.metric: x for x in parse_budgets(["latency_ms=5", "flash_kb=32,ram_kb=16",
                                              "macs=300k fps=2e4", "lut=20000"])}
    assert b["macs"].limit == 300e3 and b["fps"].limit == 2e4 and b["ram_kb"].limit == 16
    assert b["fps"].is_min and not b["macs"].is_min
    assert Budget("fps", 100).met(120) and not Budget("macs", 100).met(120)
    for bad in ("flash=3", "macs=lots", "macs=-3", "macs"):
        with pytest.raises(BudgetError):
            parse_budgets([bad])
    assert issubclass(BudgetError, EdgepruneError)
