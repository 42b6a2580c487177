"""Each pruning method on a tiny model and a tiny synthetic dataset, a few steps each."""
import math

import pytest
import torch

from edgeprune.graph import extract
from edgeprune.models import build
from edgeprune.prune.masks import parse_granularity
from edgeprune.prune.methods import METHODS, PruneSpec
from edgeprune.prune.budgets import BudgetError, parse_budgets
from edgeprune.train import TrainConfig, TrainHook, Trainer
from template_data import template_dataset


DS = template_dataset(n_train=128, n_test=64)


def run(method, model="lenet5", gran="weight", criterion="l1", amount=0.8, orientation="memory",
        epochs=3, budgets=(), hooks=(), spec_kw=None, **cfg):
    torch.manual_seed(0)
    m = build(model)
    g = extract(m)
    spec = PruneSpec(granularity=parse_granularity(gran), criterion=criterion,
                     orientation=orientation, amount=amount, budgets=parse_budgets(budgets),
                     **(spec_kw or {}))
    h = METHODS[method](m, g, spec)
    t = Trainer(m, DS, TrainConfig(epochs=epochs, batch_size=32, progress=False, **cfg),
                [h, *hooks])
    t.fit()
    return h, t


def removed_fraction(h):
    """Fraction of the prunable weights (conv/linear) the masks removed."""
    tot = sum(h.masks.weight_masks[n].numel() for n in h.masks.layers)
    return 1 - sum(int(h.masks.effective_mask(mod, "weight").sum())
                   for mod in h.masks.layers.values()) / tot


def test_agp_reaches_the_cubic_goal_with_hard_masks():
    h, t = run("agp", amount=0.8)
    dec = h.log.decisions()
    assert len(dec) >= 3
    amounts = [d["amount"] for d in dec]
    assert amounts == sorted(amounts) and amounts[-1] == pytest.approx(0.8)
    assert removed_fraction(h) == pytest.approx(0.8, abs=1e-3)
    params = [d["after"]["params"] for d in dec]
    assert params == sorted(params, reverse=True)
    # hard: pruned dense weights are exactly zero
    w = h.masks.dense_weight("fc1")
    assert float(w.detach()[~h.masks.weight_masks["fc1"]].abs().sum()) == 0
    assert t.evaluate() > 0.15


@pytest.mark.parametrize("gran,criterion", [("kernel", "taylor"), ("2:4", "l2")])
def test_agp_other_granularities(gran, criterion):
    h, _ = run("agp", gran=gran, criterion=criterion, amount=0.6, epochs=2)
    if gran == "2:4":
        assert removed_fraction(h) == pytest.approx(0.5, abs=0.01)   # every layer with 4 | K
    else:
        w = h.model.conv2.weight.detach().reshape(50, 20, 25)
        assert set((w != 0).sum(-1).unique().tolist()) <= {0, 25}
        assert removed_fraction(h) > 0.5


def test_statistical_reaches_goal_with_soft_masks_and_prunes_biases():
    h, t = run("statistical", amount=0.9, epochs=3)
    assert removed_fraction(h) == pytest.approx(0.9, abs=2e-3)
    assert len(h.log.decisions()) >= 5
    assert h.thresholds and all(v >= 0 for v in h.thresholds.values())
    assert any(int((~b).sum()) > 0 for b in h.masks.bias_masks.values())


def test_statistical_pruned_weights_regrow():
    torch.manual_seed(0)
    m = build("lenet5")
    h = METHODS["statistical"](m, extract(m), PruneSpec(amount=0.9))
    h.sched = {"start": 0, "end": 100, "interval": 10, "total": 100, "steps_per_epoch": 10}
    h.update_masks(10, 0.0)
    mask = h.masks.weight_masks["fc1"]
    idx = (~mask).nonzero()[0].tolist()
    t = h.thresholds["fc1"]
    with torch.no_grad():                      # training pushed a pruned weight far past 1.1 t
        h.masks.dense_weight("fc1")[idx[0], idx[1]] = 5 * t + 1
    h.update_masks(20, 0.0)
    assert bool(h.masks.weight_masks["fc1"][idx[0], idx[1]])       # spliced back
    assert h.masks.soft
    # ... at 0, not at its shadow value: the function does not jump when it comes back
    assert float(h.masks.dense_weight("fc1").detach()[idx[0], idx[1]]) == 0.0


def test_statistical_threshold_leaves_exactly_the_wanted_count():
    from edgeprune.prune.methods.statistical import Statistical
    g = torch.Generator().manual_seed(0)
    for n, want in ((1000, 37), (5000, 1234), (10, 3), (100, 99), (100, 0)):
        s = torch.rand(n, generator=g)
        kept = torch.rand(n, generator=g) > 0.3
        t = Statistical._threshold_for(s, kept, want)
        assert int(torch.where(kept, s > 0.9 * t, s > 1.1 * t).sum()) == want


def test_statistical_landing_moves_as_few_weights_as_possible():
    from edgeprune.prune.methods.statistical import Statistical
    s = torch.tensor([5.0, 4.0, 3.0, 2.0, 1.0, 0.5])
    kept = torch.tensor([False, True, True, True, True, True])
    prot = torch.tensor([False, True, False, False, False, False])
    # the rule kept 5 (one spliced back), the goal is 3 at the last decision: drop the 2 weakest
    # of those the rule kept, never re-select among all dense magnitudes
    rule = torch.tensor([True, True, True, True, True, False])
    out = Statistical._land(s, kept, rule, 3, True, prot)
    assert out.tolist() == [True, True, True, False, False, False]
    # under the goal: give back the strongest of those kept before this decision first
    rule = torch.tensor([False, True, False, False, False, False])
    out = Statistical._land(s, kept, rule, 3, False, prot)
    assert out.tolist() == [False, True, True, True, False, False]


def test_statistical_decides_more_often_when_decisions_are_cheap():
    from edgeprune.prune.methods.statistical import DECISION_BUDGET, DECISION_COST

    class FakeTrainer:
        def __init__(self, spe, epochs, batch=128):
            self.config = TrainConfig(epochs=epochs, batch_size=batch)
            self._spe = spe

        def _steps_per_epoch(self):
            return self._spe

    torch.manual_seed(0)
    m = build("lenet5")
    h = METHODS["statistical"](m, extract(m), PruneSpec(amount=0.9))
    long_epochs = h.derive_schedule(FakeTrainer(469, 10))     # Fashion-MNIST
    macs = sum(n.macs for n in h.dense_graph.compute_nodes())
    cost = DECISION_COST * sum(mm.weight.numel() for mm in h.masks.layers.values()) / (128 * macs)
    assert long_epochs["interval"] == math.ceil(cost / DECISION_BUDGET) < 469 // 4
    short_run = h.derive_schedule(FakeTrainer(63, 2))     # a short run: at least 20 decisions
    window = short_run["end"] - short_run["start"]
    assert short_run["interval"] == window // 20 < math.ceil(cost / DECISION_BUDGET)


def test_random_init_prunes_once_before_training():
    h, _ = run("random_init", criterion="random", amount=0.7, epochs=2)
    dec = h.log.decisions()
    assert len(dec) == 1 and dec[0]["step"] == 0
    assert removed_fraction(h) == pytest.approx(0.7, abs=1e-3)
    # same seed -> same masks
    h2, _ = run("random_init", criterion="random", amount=0.7, epochs=1)
    assert all(torch.equal(h.masks.weight_masks[n], h2.masks.weight_masks[n]) for n in h.masks.layers)


@pytest.mark.parametrize("criterion", ["l1", "mean_act"])
def test_filter_while_training_removes_channels(criterion):
    h, t = run("filter_while_training", model="vgg_small", gran="channel", criterion=criterion,
               amount=0.5, epochs=2)
    dropped = sum(int((~k).sum()) for k in h.masks.channel_keep.values())
    assert dropped > 0
    assert h.masks.nonzero_params() < 0.6 * h.dense_figures["params"]


def test_activation_density_shrinks_physically():
    h, t = run("activation_density", model="lenet300100", gran="channel", criterion="density",
               amount=None, epochs=4)
    assert t.model.fc1.out_features < 300 or t.model.fc2.out_features < 100
    assert h.log.decisions() and "shrunk" in h.log.decisions()[0]["note"]
    assert t.evaluate() > 0.15


def test_budget_met_stops_pruning():
    # (the tiny run is too noisy for the accuracy-collapse guard: switch it off here)
    h, _ = run("agp", amount=None, budgets=["params=60k"], epochs=3, spec_kw={"max_acc_drop": 1.0})
    assert h.met
    assert h.masks.nonzero_params() <= 60_000
    assert h.masks.nonzero_params() > 40_000          # stopped near the budget, not at 99.9 %
    assert "budgets met" in h.log.decisions()[-1]["note"]


def test_unmeetable_budget_fails_before_training_and_says_how_close():
    with pytest.raises(BudgetError) as e:
        run("agp", gran="channel", amount=None, budgets=["macs=1000"], epochs=1)
    msg = str(e.value)
    assert "macs" in msg and "cannot be met" in msg and "budget 1000" in msg


def test_target_orientation_meets_mcu_budgets():
    from edgeprune.deploy import Deployment
    h, _ = run("agp", gran="channel", amount=None, orientation="target",
               budgets=["latency_ms=40,flash_kb=200"], epochs=2,
               spec_kw={"deployment": Deployment.for_target("stm32l4r5-m4"), "max_acc_drop": 1.0})
    assert h.met
    last = h.log.decisions()[-1]
    assert last["after"]["latency_ms"] <= 40 < h.dense_figures["latency_ms"]
    assert last["after"]["flash_kb"] <= 200
    assert last["saved"]["latency_ms"] > 0 and "budgets met" in last["note"]


def test_target_budget_needs_a_target():
    with pytest.raises(BudgetError):
        run("agp", amount=None, budgets=["latency_ms=5"], epochs=1)


class _Kill(TrainHook):
    def __init__(self, at):
        self.at = at

    def after_step(self, trainer):
        if trainer.step == self.at:
            raise KeyboardInterrupt


def test_resume_after_kill_gives_the_same_masks(tmp_path):
    ref, _ = run("statistical", amount=0.8, epochs=2)  # 4 steps per epoch
    with pytest.raises(KeyboardInterrupt):
        run("statistical", amount=0.8, epochs=2, hooks=[_Kill(6)], checkpoint_dir=str(tmp_path))
    h, _ = run("statistical", amount=0.8, epochs=2, checkpoint_dir=str(tmp_path), resume=True,
               hooks=[_Kill(-1)])
    for n in ref.masks.layers:
        assert torch.equal(ref.masks.weight_masks[n], h.masks.weight_masks[n]), n
    assert len(h.log.decisions()) == len(ref.log.decisions())


DDP_SCRIPT = r'''
import hashlib, sys, torch
sys.path.insert(0, sys.argv[1])
from template_data import template_dataset
from edgeprune.graph import extract
from edgeprune.models import build
from edgeprune.prune.masks import parse_granularity
from edgeprune.prune.methods import METHODS, PruneSpec
from edgeprune.train import TrainConfig, Trainer
torch.set_num_threads(1)
torch.manual_seed(0)
m = build("lenet300100")
h = METHODS["activation_density"](m, extract(m), PruneSpec(
    granularity=parse_granularity("channel"), criterion="density", amount=None))
t = Trainer(m, template_dataset(128, 32), TrainConfig(epochs=4, batch_size=32, progress=False), [h])
t.fit()
sig = hashlib.sha256(b"".join(v.detach().numpy().tobytes() for v in t.model.state_dict().values()))
print(f"RESULT {t.rank} {t.model.fc1.out_features} {sig.hexdigest()}", flush=True)
'''


def test_ddp_two_processes_stay_in_sync_through_physical_shrinks(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path
    script = tmp_path / "ddp_prune.py"
    script.write_text(DDP_SCRIPT)
    torchrun = Path(sys.executable).parent / "torchrun"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    out = subprocess.run([str(torchrun), "--nproc_per_node", "2", str(script),
                          str(Path(__file__).parent)], capture_output=True, text=True, env=env,
                         timeout=300)
    # Both ranks print to one pipe: find the records anywhere in it, not only at line starts.
    import re
    results = sorted(list(m) for m in re.findall(r"RESULT (\d+) (\d+) ([0-9a-f]{64})", out.stdout))
    assert len(results) == 2, (out.returncode, out.stdout[-1000:], out.stderr[-2000:])
    (r0, width0, sig0), (r1, width1, sig1) = results
    assert int(width0) < 300                      # shrunk at least once
    assert (width0, sig0) == (width1, sig1)       # identical weights on both ranks


def test_statistical_ft_rewind_rewinds_then_anneals_the_lr():
    """Variant ft-rewind: the schedule's lr until the window ends, then back to the window-start
    lr, annealed by a cosine towards 0 over the fine-tune."""
    lrs = []

    class Rec(TrainHook):
        def before_optimizer_step(self, trainer):
            lrs.append((trainer.step, trainer.optimizer.param_groups[0]["lr"]))

    h, t = run("statistical", amount=0.8, epochs=4, hooks=[Rec()], lr=2e-3,
               spec_kw={"variant": ("ft-rewind",)})
    end, total = h.sched["end"], h.sched["total"]
    before = [lr for s, lr in lrs if s < end]
    after = [lr for s, lr in lrs if s >= end]
    assert before and after and all(lr == 2e-3 for lr in before)
    assert after[0] == pytest.approx(2e-3)
    assert all(a > b for a, b in zip(after, after[1:]))
    n = total - end          # cosine over the fine-tune: its last step is one short of 0
    assert after[-1] == pytest.approx(2e-3 * 0.5 * (1 + math.cos(math.pi * (n - 1) / n)))


def test_statistical_dead_path_weights_are_the_ones_no_output_depends_on():
    torch.manual_seed(0)
    m = build("lenet5")
    h = METHODS["statistical"](m, extract(m), PruneSpec(granularity=parse_granularity("weight"),
                                                         amount=0.9, variant=("dead-path",)))
    wm = h.masks.weight_masks
    wm["fc1"][3, :] = False                      # fc1 unit 3: no input, bias pruned
    h.masks.bias_masks["fc1"] = torch.ones(500, dtype=torch.bool)
    h.masks.bias_masks["fc1"][3] = False
    wm["fc2"][:, 7] = False                      # fc1 unit 7: nobody reads it
    wm["conv2"][5] = False                       # conv2 channel 5: no input, bias pruned
    h.masks.bias_masks["conv2"] = torch.ones(50, dtype=torch.bool)
    h.masks.bias_masks["conv2"][5] = False
    d = h._dead_path_weights()
    assert int(d["fc2"].sum()) == 10 and bool(d["fc2"][:, 3].all())
    assert bool(d["fc1"][7].all())                            # writes an unread unit
    assert int(d["fc1"][:, 5 * 16:6 * 16].sum()) == 16 * 499   # reads the empty channel
    assert int(d["fc1"].sum()) == 800 + 16 * 499 - 16          # row 7 counted once
    assert int(d["conv1"].sum()) == 0 and int(d["conv2"].sum()) == 0
    # a unit with a kept bias is not empty: its readers stay
    h.masks.bias_masks["fc1"][3] = True
    assert int(h._dead_path_weights()["fc2"].sum()) == 0
    # the variant scores them 0, so the allocation spends their share elsewhere
    fams = {f.key: f for f in h.families()}
    assert int((fams["fc1"].scores == 0).sum()) >= int(d["fc1"].sum())


def test_unknown_prune_variant_is_refused_not_ignored():
    from edgeprune.prune.masks import PruneError
    PruneSpec(variant=("ft-rewind", "end50", "dead-path"))          # the benchmark's levers
    for bad in ("ft_rewind", "end", "end100", "distill"):
        with pytest.raises(PruneError, match="unknown pruning variant"):
            PruneSpec(variant=(bad,))
    # a known lever where it does nothing is refused too (memory orientation, channels)
    with pytest.raises(PruneError, match="obd-alloc"):
        PruneSpec(variant=("obd-alloc",))
    with pytest.raises(PruneError, match="obd-alloc"):
        PruneSpec(variant=("obd-alloc",), orientation="workload",
                  granularity=parse_granularity("channel"))
    PruneSpec(variant=("obd-alloc",), orientation="target")


def test_statistical_obd_alloc_ranks_layers_by_estimated_loss_not_lamp():
    """Variant obd-alloc (workload / target orientation): the per-layer goals come from OBD
    saliencies 1/2 x mean squared gradient x w^2, used as they are (no LAMP normalisation)."""
    from edgeprune.prune.orientation import select
    torch.manual_seed(0)
    m = build("lenet5")
    spec = PruneSpec(granularity=parse_granularity("weight"), orientation="workload", amount=0.9,
                     variant=("obd-alloc",))
    h = METHODS["statistical"](m, extract(m), spec)
    fams = h.families()
    assert h.allocation_families(fams) is fams          # no gradient seen yet: LAMP as before
    for node in h.masks.layers:                          # two backward passes' worth of Fisher
        h._fisher[node] = torch.full_like(h.masks.dense_weight(node), 2.0)
    h._fisher_steps = 2
    h._fisher["fc1"] *= 1e-6                             # fc1: removing it costs nothing
    alloc = h.allocation_families(fams)
    w = h.masks.dense_weight("conv2").detach()
    assert torch.allclose(next(f for f in alloc if f.key == "conv2").scores,
                          (0.5 * w.square()).flatten())
    assert h._fisher_steps == 0 and not h._fisher       # restarts after each goal
    obd = select(alloc, "workload", 0.3, comparable=True)
    lamp = select(fams, "workload", 0.3)
    # same MACs removed; the near-free fc1 goes first under OBD, not under LAMP
    assert int(obd["fc1"].sum()) > int(lamp["fc1"].sum())
