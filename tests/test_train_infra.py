"""Training loop infrastructure: checkpoints, bit-identical resume (also after SIGKILL),
determinism, structural replacement of the model, and a 2-process DDP run under torchrun."""
from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn

from edgeprune.data import Dataset
from edgeprune.errors import EdgepruneError
from edgeprune.graph import extract
from edgeprune.train import TrainConfig, Trainer, TrainError, TrainHook

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
TESTS = Path(__file__).resolve().parent


# ---- a tiny, fully deterministic setup shared with the subprocess scripts -------------------

class TinyNet(nn.Module):
    """conv-BN-ReLU-dropout-FC: exercises buffers (BN) and the global torch RNG (dropout)."""

    input_shape = (1, 8, 8)

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 6, 3, padding=1)
        self.bn = nn.BatchNorm2d(6)
        self.relu = nn.ReLU()
        self.drop = nn.Dropout(0.3)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(6 * 64, 3)

    def forward(self, x):
        return self.fc(self.flatten(self.drop(self.relu(self.bn(self.conv(x))))))


def tiny_dataset(n_train: int = 160, n_test: int = 40) -> Dataset:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (n_train + n_test, 8, 8), dtype=np.uint8)
    y = (x[:, :4].mean(axis=(1, 2)) > x[:, 4:].mean(axis=(1, 2))).astype(np.int64)
    y += (x[:, :, :4].mean(axis=(1, 2)) > 140).astype(np.int64)
    return Dataset("tiny", x[:n_train], y[:n_train], x[n_train:], y[n_train:])


def tiny_model(seed: int = 0) -> TinyNet:
    torch.manual_seed(seed)
    return TinyNet()


class CountingHook(TrainHook):
    """Stateful hook: its state must survive a resume."""

    def __init__(self):
        self.steps = 0
        self.grad_norm_sum = torch.zeros(())

    def after_backward(self, trainer):
        self.steps += 1
        self.grad_norm_sum += trainer.model.fc.weight.grad.norm()

    def state_dict(self):
        return {"steps": self.steps, "grad_norm_sum": self.grad_norm_sum.clone()}

    def load_state_dict(self, state):
        self.steps = state["steps"]
        self.grad_norm_sum = state["grad_norm_sum"].clone()


class ShrinkAtEpochEnd(TrainHook):
    """Removes every other conv channel after epoch 0 (a structural change mid-run)."""

    def on_epoch_end(self, trainer, metrics):
        if metrics["epoch"] == 0:
            graph = extract(trainer.model)
            gid = graph.group_of_node("conv").id
            trainer.shrink_channels({gid: torch.arange(6) % 2 == 0}, graph)


def config(ckpt=None, **kw) -> TrainConfig:
    base = dict(epochs=2, lr=3e-3, batch_size=32, seed=7, progress=False,
                checkpoint_dir=str(ckpt) if ckpt else None)
    base.update(kw)
    return TrainConfig(**base)


def state_hash(model: nn.Module) -> str:
    h = hashlib.sha256()
    for k, v in sorted(model.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().contiguous().numpy().tobytes())
    return h.hexdigest()


def assert_same_state(a: nn.Module, b: nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), f"{k} differs"


@pytest.fixture(autouse=True)
def one_thread():
    """Bit-identity with the subprocesses needs the same intra-op thread count."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def straight_run(hooks=()):
    model = tiny_model()
    t = Trainer(model, tiny_dataset(), config(), hooks)
    return t, t.fit()


# ---- tests -----------------------------------------------------------------------------------

def test_resume_is_bit_identical_to_a_straight_run(tmp_path):
    h_ref = CountingHook()
    ref, ref_result = straight_run([h_ref])

    h1 = CountingHook()
    first = Trainer(tiny_model(), tiny_dataset(), config(tmp_path, epochs=1), [h1])
    first.fit()
    assert (tmp_path / "last.pt").is_file()
    assert not [p for p in tmp_path.iterdir() if p.name != "last.pt"]  # no temp file left
    ck = torch.load(tmp_path / "last.pt", weights_only=True)
    assert ck["epoch"] == 0 and ck["step"] == 5 and len(ck["history"]) == 1

    h2 = CountingHook()
    second = Trainer(tiny_model(seed=99), tiny_dataset(), config(tmp_path, resume=True), [h2])
    result = second.fit()
    assert_same_state(second.model, ref.model)
    assert second.step == ref.step == 10
    assert h2.steps == h_ref.steps == 10 and torch.equal(h2.grad_norm_sum, h_ref.grad_norm_sum)
    assert result.history == ref_result.history
    # the optimizer state continued too (Adam moments), not just the weights
    for (pa, sa), (pb, sb) in zip(second.optimizer.state.items(), ref.optimizer.state.items()):
        assert torch.equal(sa["exp_avg_sq"], sb["exp_avg_sq"])


def test_same_seed_same_weights_other_seed_differs():
    a, _ = straight_run()
    b, _ = straight_run()
    assert_same_state(a.model, b.model)
    c = Trainer(tiny_model(), tiny_dataset(), config(seed=8))
    c.fit()
    assert state_hash(c.model) != state_hash(a.model)


def test_shrink_channels_carries_optimizer_state_and_resumes(tmp_path):
    ref = Trainer(tiny_model(), tiny_dataset(), config(), [ShrinkAtEpochEnd()])
    ref.fit()
    assert ref.model.conv.out_channels == 3 and ref.model.fc.in_features == 3 * 64
    assert ref.structure is not None and len(ref.structure) == 1

    # replace_model slices Adam's moments with the kept indices
    t = Trainer(tiny_model(), tiny_dataset(), config(epochs=1))
    t.fit()
    old_avg = t.optimizer.state[t.model.conv.weight]["exp_avg"].clone()
    old_lr = t.optimizer.param_groups[0]["lr"] = 1.23e-3
    graph = extract(t.model)
    new = t.shrink_channels({graph.group_of_node("conv").id: torch.arange(6) % 2 == 0}, graph)
    assert t.model is new
    assert torch.equal(t.optimizer.state[new.conv.weight]["exp_avg"], old_avg[::2])
    assert t.optimizer.param_groups[0]["lr"] == old_lr

    # a run that shrank in epoch 0, killed after it, rebuilds the shrunk architecture on resume
    Trainer(tiny_model(), tiny_dataset(), config(tmp_path, epochs=1), [ShrinkAtEpochEnd()]).fit()
    resumed = Trainer(tiny_model(), tiny_dataset(), config(tmp_path, resume=True), [ShrinkAtEpochEnd()])
    resumed.fit()
    assert_same_state(resumed.model, ref.model)


def test_resume_refuses_mismatched_or_corrupt_checkpoints(tmp_path):
    Trainer(tiny_model(), tiny_dataset(), config(tmp_path, epochs=1)).fit()
    with pytest.raises(TrainError, match="seed=7.*seed=8"):
        Trainer(tiny_model(), tiny_dataset(), config(tmp_path, seed=8, resume=True)).fit()
    (tmp_path / "last.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(EdgepruneError, match="unreadable checkpoint"):
        Trainer(tiny_model(), tiny_dataset(), config(tmp_path, resume=True)).fit()
    # resume with no checkpoint yet starts from scratch (killed before the first epoch ended)
    fresh = Trainer(tiny_model(), tiny_dataset(), config(tmp_path / "empty", resume=True))
    fresh.fit()
    ref, _ = straight_run()
    assert_same_state(fresh.model, ref.model)


def test_progress_prints_epoch_lines_without_a_bar_when_not_a_tty(capsys):
    Trainer(tiny_model(), tiny_dataset(), config(epochs=2, progress=True)).fit()
    out, err = capsys.readouterr()
    assert out.count("epoch ") == 2 and "epoch 2/2" in out and "test acc" in out
    assert "it/s" not in err  # tqdm stays off when stderr is not a terminal


# ---- subprocess runs: SIGKILL + resume, and torchrun with 2 ranks ---------------------------

SCRIPT = r"""
import hashlib, json, os, sys, time
import torch
torch.set_num_threads(1)
sys.path.insert(0, {tests!r})
from test_train_infra import CountingHook, TinyNet, config, state_hash, tiny_dataset, tiny_model
from edgeprune.train import Trainer, TrainHook

out, mode = sys.argv[1], sys.argv[2]

class Stall(TrainHook):
    # Signals the parent once epoch 2 is under way, then waits to be killed.
    def before_step(self, trainer):
        if mode == "kill" and trainer.epoch == 1 and trainer.step == 7:
            open(os.path.join(out, "in_epoch_2"), "w").close()
            time.sleep(300)

class Seen(TrainHook):
    # Counts the training samples this rank's model really ran forward on.
    def __init__(self): self.samples = 0
    def on_train_begin(self, trainer):
        trainer.model.register_forward_pre_hook(self.count)
    def count(self, module, args):
        if module.training:
            self.samples += args[0].shape[0]

seen = Seen()
t = Trainer(tiny_model(), tiny_dataset(),
            config(os.path.join(out, "ckpt"), resume=(mode != "kill"), progress=(mode == "ddp")),
            [CountingHook(), Stall(), seen])
result = t.fit()
with open(os.path.join(out, f"rank{{t.rank}}.json"), "w") as f:
    json.dump({{"hash": state_hash(t.model), "world": t.world_size, "samples": seen.samples,
               "history": result.history, "steps": t.hooks[0].steps}}, f)
"""


def _script(tmp_path: Path) -> Path:
    p = tmp_path / "run_tiny.py"
    p.write_text(SCRIPT.format(tests=str(TESTS)))
    return p


def _env():
    return dict(os.environ, OMP_NUM_THREADS="1", OMP_WAIT_POLICY="PASSIVE")


def test_sigkill_during_epoch_2_then_resume_matches_straight_run(tmp_path):
    ref, _ = straight_run([CountingHook()])
    script = _script(tmp_path)
    proc = subprocess.Popen([sys.executable, str(script), str(tmp_path), "kill"], env=_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    marker = tmp_path / "in_epoch_2"
    deadline = time.time() + 120
    while not marker.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.1)
    assert marker.exists(), f"the run never reached epoch 2: {proc.stderr.read().decode()[-2000:]}"
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait(timeout=30) == -signal.SIGKILL
    ck = torch.load(tmp_path / "ckpt" / "last.pt", weights_only=True)
    assert ck["epoch"] == 0  # epoch 2 was in progress: only epoch 1 is on disk

    done = subprocess.run([sys.executable, str(script), str(tmp_path), "resume"], env=_env(),
                          capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    res = json.loads((tmp_path / "rank0.json").read_text())
    assert res["hash"] == state_hash(ref.model)
    assert res["steps"] == 10  # the hook's state came back from the checkpoint


def test_torchrun_two_ranks_end_with_identical_weights(tmp_path):
    torchrun = VENV_BIN / "torchrun"
    if not torchrun.exists():
        pytest.skip(f"{torchrun} not found")
    script = _script(tmp_path)
    done = subprocess.run([str(torchrun), "--standalone", "--nproc_per_node", "2", str(script),
                           str(tmp_path), "ddp"], env=_env(), capture_output=True, text=True,
                          timeout=300, cwd=tmp_path)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    r0 = json.loads((tmp_path / "rank0.json").read_text())
    r1 = json.loads((tmp_path / "rank1.json").read_text())
    assert r0["world"] == r1["world"] == 2
    assert r0["hash"] == r1["hash"]
    assert r0["history"] == r1["history"]
    # each rank saw half of every global batch: 2 epochs x 160 samples in all
    assert r0["samples"] == r1["samples"] == 160
    ck = torch.load(tmp_path / "ckpt" / "last.pt", weights_only=True)
    assert ck["world_size"] == 2 and len(ck["rng"]) == 2 and ck["epoch"] == 1
    assert done.stdout.count("epoch 2/2") == 1  # only rank 0 prints


class _PoisonAtEpoch(TrainHook):
    """Sets a weight to NaN at the first step of `epoch`: the loss diverges there."""

    def __init__(self, epoch: int):
        self.epoch = epoch

    def before_step(self, trainer):
        if trainer.epoch == self.epoch:
            with torch.no_grad():
                trainer.model.fc.weight[0, 0] = float("nan")


def test_divergence_stops_with_the_epoch_and_keeps_a_resumable_checkpoint(tmp_path):
    from edgeprune.train import TrainDivergedError
    with pytest.raises(TrainDivergedError, match=r"diverged at epoch 2, step 1 .*--lr") as e:
        Trainer(tiny_model(), tiny_dataset(), config(tmp_path), [_PoisonAtEpoch(1)]).fit()
    assert "checkpoint of epoch 1 is kept" in str(e.value)
    ck = torch.load(tmp_path / "last.pt", weights_only=True)
    assert ck["epoch"] == 0 and ck["diverged"]["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in ck["model"].values() if v.is_floating_point())
    # resuming with a lower learning rate is allowed after a divergence (not otherwise)
    resumed = Trainer(tiny_model(), tiny_dataset(), config(tmp_path, resume=True, lr=1e-4),
                      [_PoisonAtEpoch(99)])
    result = resumed.fit()
    assert len(result.history) == 2 and resumed.step == 10
    with pytest.raises(TrainError, match="lr"):
        Trainer(tiny_model(), tiny_dataset(), config(tmp_path, resume=True, lr=1e-5),
                [_PoisonAtEpoch(99)]).fit()
