"""Distillation from the dense model while pruning (issue 14): the loss, the Trainer, run_prune."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from edgeprune.train import DISTILL_ALPHA, Trainer, distill_loss
from tests.test_train_infra import config, state_hash, tiny_dataset, tiny_model


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_distill_loss_is_the_weighted_label_loss_when_student_matches_teacher():
    g = torch.Generator().manual_seed(0)
    s = torch.randn(16, 5, generator=g)
    y = torch.randint(0, 5, (16,), generator=g)
    got = distill_loss(s, y, s.clone())
    assert torch.allclose(got, (1 - DISTILL_ALPHA) * F.cross_entropy(s, y), atol=1e-6)
    # a different teacher adds a positive KL term
    assert distill_loss(s, y, s.flip(1)) > got + 1e-3


def test_distill_loss_pulls_the_student_towards_the_teacher_over_the_label():
    s = torch.zeros(1, 3, requires_grad=True)
    teacher = torch.tensor([[0.0, 0.0, 8.0]])     # the teacher is sure of class 2
    distill_loss(s, torch.tensor([0]), teacher).backward()
    # soft weight 0.9 > hard 0.1: descent raises the teacher's class and lowers the label's
    assert s.grad[0, 2] < 0 < s.grad[0, 0]


def test_trainer_with_a_teacher_is_deterministic_and_differs_from_labels_only():
    ds = tiny_dataset()
    teacher = tiny_model(3)
    Trainer(teacher, ds, config(epochs=1)).fit()
    runs = []
    for t in (teacher, teacher, None):
        m = tiny_model()
        tr = Trainer(m, ds, config(), teacher=t)
        assert (tr.teacher_logits is not None) == (t is not None)
        tr.fit()
        runs.append(state_hash(m))
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]


@pytest.mark.parametrize("distill", [True, False])
def test_run_prune_distils_from_the_dense_baseline_when_asked(distill):
    from edgeprune.prune.runner import PruneConfig, run_prune
    cfg = PruneConfig(model="lenet300100", data="synthetic:1x28x28:4", method="statistical",
                      sparsity=0.9, epochs=1, max_steps_per_epoch=3, n_train=256, n_test=128,
                      progress=False, distill=distill)
    s = run_prune(cfg).summary
    assert s["distilled"] is distill
    assert s["acc_dense"] is not None


def test_distillation_is_off_by_default():
    from edgeprune.prune.runner import PruneConfig
    assert PruneConfig(model="lenet5", data="mnist-10k").distill is False
