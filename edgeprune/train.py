"""The one training loop every method uses: pruning, cluster fine-tuning and QAT plug in as hooks.

Inputs are uint8 images scaled to [0, 1] (no mean/std standardisation), so int8 exporters can
map input pixels to int8 with a fixed scale of 1/255 and zero point -128.

Hooks (`TrainHook`) see the model at fixed points of every step; a pruning method recomputes
masks in ``after_step``, a clustering method ties gradients in ``after_backward``.

Checkpoints and resume
    With ``TrainConfig.checkpoint_dir`` set, ``<dir>/last.pt`` is rewritten atomically at the
    end of every epoch: model and optimizer state, every RNG (Python, NumPy, torch, and the
    generator of the epoch permutations; one set per rank), step, epoch, history, hook states
    (``TrainHook.state_dict``) and the structural changes made with ``Trainer.shrink_channels``.
    ``resume=True`` loads it and continues with the next epoch; the result is bit-identical to an
    uninterrupted run with the same seed (a kill loses at most the epoch in progress). Hook
    states must be plain data (tensors, numbers, strings, lists, dicts) because checkpoints are
    read with ``torch.load(weights_only=True)``.

Distributed data parallel
    Launched under ``torchrun --nproc_per_node N`` (RANK/WORLD_SIZE set), the Trainer joins a
    gloo process group, wraps the model in DistributedDataParallel and gives each rank the slice
    ``batch[rank::N]`` of every global batch of ``batch_size`` samples; all ranks draw the same
    permutation from the shared seed and DDP averages the gradients, so one step sees the same
    global batch as a single-process run. Only rank 0 prints and writes checkpoints; every rank
    evaluates the whole test set (identical weights and buffers give identical metrics).
    ``trainer.model`` is always the bare module; the DDP wrapper is ``trainer.ddp``.

    Hooks run on every rank and must be deterministic across ranks: they see identical weights
    and gradients, so a pruning hook that recomputes masks from them stays in sync. Statistics
    gathered from each rank's own data (forward-hook activations, per-step losses) differ
    between ranks and must be combined with ``trainer.all_reduce_(tensor)`` before use.
"""
from __future__ import annotations

import atexit
import math
import os
import random
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence

import numpy as np
import torch
import torch.nn as nn

from .artifacts import save_torch
from .data import Dataset, to_tensors
from .errors import EdgepruneError, first_line

CHECKPOINT_NAME = "last.pt"
_CHECKPOINT_FORMAT = "edgeprune-train-checkpoint"
# Config fields that must match for a resumed run to continue the same computation.
_RESUME_FIELDS = ("seed", "batch_size", "lr", "optimizer", "weight_decay", "max_steps_per_epoch",
                  "lr_schedule")


# Knowledge distillation (Hinton, Vinyals & Dean 2015, "Distilling the Knowledge in a Neural
# Network", arXiv:1503.02531, sec. 2-3): loss = (1 - a) CE(student, y) + a T^2 KL(p_T || q_T),
# p/q the softmax of teacher/student logits at temperature T. T = 4: the paper finds "temperatures
# in the range 2.5 to 4 worked significantly better" than higher ones when the student is much
# smaller than the teacher (its MNIST 30-unit net), which a 200-300x pruned LeNet-5 is.
# a = 0.9: the paper's "best results [...] by using a considerably lower weight on the second
# objective function" (the hard labels); T^2 keeps the soft gradients' scale independent of T.
DISTILL_T = 4.0
DISTILL_ALPHA = 0.9


def distill_loss(student: torch.Tensor, y: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Hinton et al.'s distillation loss with DISTILL_T / DISTILL_ALPHA (see above)."""
    import torch.nn.functional as F
    t = DISTILL_T
    soft = F.kl_div(F.log_softmax(student / t, dim=1), F.log_softmax(teacher / t, dim=1),
                    reduction="batchmean", log_target=True) * (t * t)
    return (1.0 - DISTILL_ALPHA) * F.cross_entropy(student, y) + DISTILL_ALPHA * soft


class TrainError(EdgepruneError, RuntimeError):
    """A training run cannot start, resume or go on (unreadable or mismatched checkpoint, ...)."""


class TrainDivergedError(TrainError):
    """The loss became NaN/Inf; the last checkpoint from before it is kept (see mark_diverged)."""


def mark_diverged(path: Path, info: Dict[str, Any]) -> None:
    """Mark a checkpoint as written before a divergence: resuming from it may change the
    learning rate (resuming with the same settings would diverge again)."""
    if not path.is_file():
        return
    ck = torch.load(path, map_location="cpu", weights_only=True)
    ck["diverged"] = dict(info)
    save_torch(ck, path)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class TrainHook:
    """Override any of these; all receive the Trainer, which exposes model, step, epoch, optimizer."""

    def on_train_begin(self, trainer: "Trainer") -> None: ...
    def before_step(self, trainer: "Trainer") -> None: ...
    def after_backward(self, trainer: "Trainer") -> None: ...
    def before_optimizer_step(self, trainer: "Trainer") -> None:
        """Last call before ``optimizer.step()``, after the trainer set the schedule's lr (a hook
        may shape the lr of its own phase here, e.g. a pruning method's fine-tune)."""
    def after_step(self, trainer: "Trainer") -> None: ...
    def on_epoch_end(self, trainer: "Trainer", metrics: Dict[str, float]) -> None: ...
    def on_train_end(self, trainer: "Trainer") -> None: ...

    def on_model_replaced(self, trainer: "Trainer", old_model: nn.Module) -> None:
        """Called after ``Trainer.replace_model``/``shrink_channels``: ``trainer.model`` is the new
        module; re-register forward hooks / parametrizations on it here."""

    def state_dict(self) -> Dict[str, Any]:
        """State to save in checkpoints (plain data and tensors only)."""
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what ``state_dict`` returned; called on resume after ``on_train_begin``."""


@dataclass
class TrainConfig:
    epochs: int = 1
    lr: float = 1e-3
    batch_size: int = 128
    seed: int = 0
    optimizer: str = "adam"          # adam | sgd
    weight_decay: float = 0.0
    max_steps_per_epoch: Optional[int] = None   # for tests
    progress: bool = True            # per-epoch line; a tqdm bar too when stderr is a TTY
    checkpoint_dir: Optional[str] = None        # <dir>/last.pt rewritten every epoch
    resume: bool = False             # continue from <checkpoint_dir>/last.pt when it exists
    lr_schedule: str = "constant"    # constant | cosine (per step, over all epochs)
    # NHWC activations and conv weights for image models: oneDNN's convolutions and max-pooling
    # run 1.5x faster per LeNet-5 step on one CPU thread than in NCHW (measured:
    # benchmarks/train_throughput.py). Values are unchanged up to float rounding order.
    channels_last: bool = True


@dataclass
class TrainResult:
    history: List[Dict[str, float]] = field(default_factory=list)
    test_accuracy: float = 0.0


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1000) -> float:
    """Top-1 accuracy in [0, 1]."""
    was_training = model.training
    model.eval()
    correct = 0
    for i in range(0, len(x), batch_size):
        correct += (model(x[i:i + batch_size]).argmax(1) == y[i:i + batch_size]).sum().item()
    model.train(was_training)
    return correct / max(len(x), 1)


def dataset_tensors(ds: Dataset, input_shape: Optional[Sequence[int]] = None):
    """(x_train, y_train, x_test, y_test) float tensors shaped for a model's input_shape."""
    xtr, ytr = to_tensors(ds.x_train, ds.y_train)
    xte, yte = to_tensors(ds.x_test, ds.y_test)
    if input_shape is not None and tuple(xtr.shape[1:]) != tuple(input_shape):
        xtr = xtr.reshape((len(xtr),) + tuple(input_shape))
        xte = xte.reshape((len(xte),) + tuple(input_shape))
    return xtr, ytr, xte, yte


# --------------------------------------------------------------------------------------------
# Distributed setup

def _distributed_from_env() -> tuple:
    """(rank, world_size); joins a gloo process group when launched by torchrun with N > 1."""
    import torch.distributed as dist
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1
    if not dist.is_available():
        raise TrainError(f"WORLD_SIZE={world} but this torch build has no torch.distributed")
    dist.init_process_group("gloo")
    atexit.register(_destroy_process_group)
    return dist.get_rank(), dist.get_world_size()


def _destroy_process_group() -> None:
    import torch.distributed as dist
    if dist.is_initialized():
        dist.destroy_process_group()


def is_main_process() -> bool:
    """True outside torchrun and on rank 0: the process that should write outputs."""
    import torch.distributed as dist
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank() == 0
    return int(os.environ.get("RANK", "0")) == 0


_WRAPPED = re.compile(r"(^|\.)parametrizations\.([^.]+)\.original$")


def _canonical(name: str) -> str:
    """Parameter name without parametrization / torch-prune wrapping, so optimizer state can be
    matched between a masked model and its shrunk copy ('fc.parametrizations.weight.original'
    and 'fc.weight_orig' are both 'fc.weight')."""
    name = _WRAPPED.sub(r"\1\2", name)
    return name[:-len("_orig")] if name.endswith("_orig") else name


# --------------------------------------------------------------------------------------------
# RNG state as weights_only-loadable data

def _rng_state(gen: torch.Generator) -> Dict[str, Any]:
    np_state = np.random.get_state(legacy=False)
    return {"python": random.getstate(),
            "numpy": {"key": torch.from_numpy(np_state["state"]["key"].astype(np.int64)),
                      "pos": int(np_state["state"]["pos"]),
                      "has_gauss": int(np_state["has_gauss"]), "gauss": float(np_state["gauss"])},
            "torch": torch.get_rng_state(),
            "perm": gen.get_state()}


def _set_rng_state(state: Mapping[str, Any], gen: torch.Generator) -> None:
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = state["numpy"]
    np.random.set_state({"bit_generator": "MT19937",
                         "state": {"key": n["key"].numpy().astype(np.uint32), "pos": n["pos"]},
                         "has_gauss": n["has_gauss"], "gauss": n["gauss"]})
    torch.set_rng_state(state["torch"])
    gen.set_state(state["perm"])


class Trainer:
    def __init__(self, model: nn.Module, ds: Dataset, config: TrainConfig,
                 hooks: Sequence[TrainHook] = (), loss_fn: Optional[Callable] = None,
                 teacher: Optional[nn.Module] = None):
        """`teacher`: a trained model of the same task; with it every step's loss is
        `distill_loss` against its logits (computed once, in eval mode, on the training set)."""
        if config.optimizer not in ("adam", "sgd"):
            raise TrainError(f"unknown optimizer '{config.optimizer}' (adam | sgd)")
        if config.lr_schedule not in ("constant", "cosine"):
            raise TrainError(f"unknown lr schedule '{config.lr_schedule}' (constant | cosine)")
        self.model = model
        self.config = config
        self.hooks = list(hooks)
        self.loss_fn = loss_fn or nn.CrossEntropyLoss()
        shape = getattr(model, "input_shape", None)
        self.x_train, self.y_train, self.x_test, self.y_test = dataset_tensors(ds, shape)
        self._channels_last = bool(config.channels_last) and self.x_train.dim() == 4
        if self._channels_last:
            self.x_train = self.x_train.contiguous(memory_format=torch.channels_last)
            self.x_test = self.x_test.contiguous(memory_format=torch.channels_last)
            self.model.to(memory_format=torch.channels_last)
        self.teacher_logits: Optional[torch.Tensor] = None
        if teacher is not None:
            self.teacher_logits = self._logits(teacher, self.x_train)
        self.step = 0
        self.epoch = 0
        self.optimizer = self._make_optimizer()
        self.last_loss = float("nan")
        self.rank, self.world_size = _distributed_from_env()
        self.ddp: Optional[nn.Module] = None
        # keep masks of every shrink_channels call, replayed on resume; None once replace_model
        # was called with a model this list cannot rebuild.
        self.structure: Optional[List[Dict[int, torch.Tensor]]] = []
        self._gen = torch.Generator()

    # ---- basics ------------------------------------------------------------------------------
    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def _make_optimizer(self) -> torch.optim.Optimizer:
        c = self.config
        params = [p for p in self.model.parameters() if p.requires_grad]
        if c.optimizer == "sgd":
            return torch.optim.SGD(params, lr=c.lr, momentum=0.9, weight_decay=c.weight_decay)
        return torch.optim.Adam(params, lr=c.lr, weight_decay=c.weight_decay)

    @staticmethod
    @torch.no_grad()
    def _logits(model: nn.Module, x: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
        was_training = model.training
        model.eval()
        out = torch.cat([model(x[i:i + batch_size]) for i in range(0, len(x), batch_size)])
        model.train(was_training)
        return out.detach().float()

    def evaluate(self) -> float:
        """Accuracy of the bare model on the whole test set (no collectives: safe on one rank)."""
        return evaluate(self.model, self.x_test, self.y_test)

    def all_reduce_(self, tensor: torch.Tensor, op: str = "sum") -> torch.Tensor:
        """In-place sum/mean/max over ranks (no-op in a single process); every rank must call it."""
        if self.distributed:
            import torch.distributed as dist
            red = {"sum": dist.ReduceOp.SUM, "mean": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX,
                   "min": dist.ReduceOp.MIN}[op]
            dist.all_reduce(tensor, red)
            if op == "mean":
                tensor /= self.world_size
        return tensor

    def _wrap(self) -> None:
        if not self.distributed:
            self.ddp = None
            return
        from torch.nn.parallel import DistributedDataParallel
        self.ddp = DistributedDataParallel(self.model)

    def _sync_buffers(self) -> None:
        """Give every rank rank 0's buffers (BN statistics drift apart on each rank's shard)."""
        if self.distributed:
            import torch.distributed as dist
            for b in self.model.buffers():
                dist.broadcast(b.data, 0)

    def _steps_per_epoch(self) -> int:
        c = self.config
        n = len(self.x_train)
        steps = (n + c.batch_size - 1) // c.batch_size
        # every rank needs at least one sample of each global batch
        if steps and n - (steps - 1) * c.batch_size < self.world_size:
            steps -= 1
        if c.max_steps_per_epoch:
            steps = min(steps, c.max_steps_per_epoch)
        return steps

    def _lr_at(self, step: int) -> float:
        c = self.config
        total = max(c.epochs * self._steps_per_epoch(), 1)
        return c.lr * 0.5 * (1.0 + math.cos(math.pi * min(step, total) / total))

    # ---- structural changes ------------------------------------------------------------------
    def replace_model(self, new_model: nn.Module,
                      param_index: Optional[Mapping[str, Sequence[Optional[torch.Tensor]]]] = None,
                      _record: Optional[Dict[int, torch.Tensor]] = None) -> None:
        """Swap in a structurally different model (e.g. a shrunk one) and rebuild the optimizer
        (and the DDP wrapper). Learning rates and other param-group settings are carried over;
        per-parameter optimizer state (Adam moments, momentum) is carried for parameters of the
        same name and shape, and sliced with `param_index` (from
        ``edgeprune.surgery.kept_indices``) where shapes changed; otherwise it restarts.

        A resumed run can rebuild the model only from ``shrink_channels`` calls; after a direct
        call, resuming needs the caller to rebuild the architecture itself.
        """
        old_model, old_opt = self.model, self.optimizer
        self.model = new_model
        if self._channels_last:
            new_model.to(memory_format=torch.channels_last)
        self.optimizer = self._make_optimizer()
        for g_new, g_old in zip(self.optimizer.param_groups, old_opt.param_groups):
            for k, v in g_old.items():
                if k != "params":
                    g_new[k] = v
        old_named = {_canonical(n): p for n, p in old_model.named_parameters()}
        for name, p in self.model.named_parameters():
            name = _canonical(name)
            old_p = old_named.get(name)
            st = old_opt.state.get(old_p) if old_p is not None else None
            if not st:
                continue
            dims = (param_index or {}).get(name)
            new_st = {}
            for k, v in st.items():
                if isinstance(v, torch.Tensor) and v.dim() > 0:
                    if tuple(v.shape) == tuple(old_p.shape) and dims is not None:
                        for d, idx in enumerate(dims):
                            if idx is not None:
                                v = v.index_select(d, idx)
                        v = v.contiguous()
                    if tuple(v.shape) != tuple(p.shape):
                        new_st = None
                        break
                    new_st[k] = v.clone()
                else:
                    new_st[k] = v.clone() if isinstance(v, torch.Tensor) else v
            if new_st:
                self.optimizer.state[p] = new_st
        if _record is not None and self.structure is not None:
            self.structure.append({int(k): v.clone() for k, v in _record.items()})
        elif _record is None:
            self.structure = None
        # Hooks first: parametrizations a hook registers on the new model (pruning masks) must be
        # in place before DistributedDataParallel wraps it, or their gradients are not synced.
        for h in self.hooks:
            h.on_model_replaced(self, old_model)
        if self.ddp is not None:
            self._wrap()

    def shrink_channels(self, keep: Mapping[int, torch.Tensor], graph=None) -> nn.Module:
        """Physically remove channels (``edgeprune.surgery.shrink_model``) and swap the result
        in with ``replace_model``, carrying optimizer state. Recorded so resume can replay it.
        `graph` must be the layer graph of the current model (extracted if not given)."""
        from .graph import extract
        from .surgery import kept_indices, plain_copy, shrink_model
        if graph is None:
            graph = extract(plain_copy(self.model))  # parametrized layers do not trace
        new = shrink_model(self.model, graph, keep)
        new.train(self.model.training)
        self.replace_model(new, kept_indices(graph, keep), _record=dict(keep))
        return new

    # ---- checkpoints -------------------------------------------------------------------------
    @property
    def checkpoint_path(self) -> Optional[Path]:
        d = self.config.checkpoint_dir
        return Path(d) / CHECKPOINT_NAME if d else None

    def _config_fingerprint(self) -> Dict[str, Any]:
        c = self.config
        fp = {k: getattr(c, k) for k in _RESUME_FIELDS}
        fp["n_train"] = len(self.x_train)
        if c.lr_schedule != "constant":
            fp["epochs"] = c.epochs  # the schedule's length depends on it
        return fp

    def _gather_rng(self) -> List[Dict[str, Any]]:
        mine = _rng_state(self._gen)
        if not self.distributed:
            return [mine]
        import torch.distributed as dist
        out: List[Any] = [None] * self.world_size
        dist.all_gather_object(out, mine)
        return out

    def save_checkpoint(self, history: List[Dict[str, float]]) -> None:
        """Rank 0 writes <checkpoint_dir>/last.pt atomically; every rank must call it (the RNG
        states of all ranks are gathered)."""
        rng = self._gather_rng()
        path = self.checkpoint_path
        if path is None or not self.is_main:
            return
        state = {"format": _CHECKPOINT_FORMAT, "version": 1,
                 "epoch": self.epoch, "step": self.step, "history": list(history),
                 "last_loss": float(self.last_loss),
                 "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                 "rng": rng, "world_size": self.world_size,
                 "hooks": [h.state_dict() for h in self.hooks],
                 "structure": self.structure, "config": self._config_fingerprint()}
        path.parent.mkdir(parents=True, exist_ok=True)
        save_torch(state, path)

    def _load_checkpoint(self) -> Optional[Dict[str, Any]]:
        path = self.checkpoint_path
        if path is None:
            raise TrainError("resume needs TrainConfig.checkpoint_dir")
        if not path.is_file():
            return None  # killed before the first epoch ended: start from scratch
        try:
            ck = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 - truncated zip, pickle error, ... all mean corrupt
            raise TrainError(f"{path}: unreadable checkpoint ({first_line(e)})") from e
        if not isinstance(ck, dict) or ck.get("format") != _CHECKPOINT_FORMAT:
            raise TrainError(f"{path}: not an edgeprune training checkpoint")
        mine = self._config_fingerprint()
        for k, v in ck["config"].items():
            if k == "lr" and ck.get("diverged"):
                if mine.get(k) != v and self.is_main and self.config.progress:
                    print(f"resuming a run that diverged with lr={v!r}: now lr={mine.get(k)!r}",
                          flush=True)
                continue
            if mine.get(k) != v:
                raise TrainError(f"{path}: checkpoint was written with {k}={v!r}, this run has "
                                 f"{k}={mine.get(k)!r}; use the same settings or another directory")
        return ck

    def _restore(self, ck: Dict[str, Any]) -> None:
        path = self.checkpoint_path
        if ck["structure"] is None:
            pass  # architecture changed by replace_model: the caller rebuilt it (or load fails)
        else:
            for keep in ck["structure"]:
                self.shrink_channels(keep)
        try:
            self.model.load_state_dict(ck["model"])
        except RuntimeError as e:
            raise TrainError(f"{path}: checkpoint does not fit this model "
                             f"({first_line(e)})") from e
        self.optimizer.load_state_dict(ck["optimizer"])
        if len(ck["hooks"]) != len(self.hooks):
            raise TrainError(f"{path}: checkpoint has {len(ck['hooks'])} hook states, this run "
                             f"has {len(self.hooks)} hooks")
        for h, st in zip(self.hooks, ck["hooks"]):
            h.load_state_dict(st)
        rng = ck["rng"]
        # same world size: each rank continues its own streams; otherwise all take rank 0's
        _set_rng_state(rng[self.rank] if len(rng) == self.world_size else rng[0], self._gen)
        self.step, self.epoch = ck["step"], ck["epoch"]
        self.last_loss = ck["last_loss"]

    def _diverged(self, epoch: int, step: int, loss: float) -> TrainDivergedError:
        """The error for a NaN/Inf loss, after marking the last checkpoint resumable with another
        learning rate."""
        c = self.config
        where = f"epoch {epoch + 1}, step {step + 1} of {self._steps_per_epoch()}"
        cause = (f"likely causes: a learning rate too high for this model (--lr {c.lr:g}), or "
                 f"NaN/Inf in the data or the starting weights")
        path = self.checkpoint_path
        if path is not None and path.is_file():
            mark_diverged(path, {"epoch": epoch, "step": step, "lr": c.lr})
            keep = (f"; the checkpoint of epoch {epoch} is kept in {path.parent}: rerun with "
                    f"--resume and a lower --lr")
        else:
            keep = "; no epoch had finished: rerun with a lower --lr"
        return TrainDivergedError(f"training diverged at {where} (loss {loss}): {cause}{keep}")

    # ---- the loop ----------------------------------------------------------------------------
    def fit(self) -> TrainResult:
        c = self.config
        seed_everything(c.seed)
        result = TrainResult()
        for h in self.hooks:
            h.on_train_begin(self)
        self._gen = torch.Generator().manual_seed(c.seed)
        start = 0
        if c.resume:
            ck = self._load_checkpoint()
            if ck is not None:
                self._restore(ck)
                result.history = list(ck["history"])
                start = ck["epoch"] + 1
                if self.is_main and c.progress:
                    print(f"resumed from {self.checkpoint_path} after epoch {start}/{c.epochs}",
                          flush=True)
        self._wrap()
        n = len(self.x_train)
        steps = self._steps_per_epoch()
        show_bar = c.progress and self.is_main and sys.stderr.isatty()
        for epoch in range(start, c.epochs):
            self.epoch = epoch
            self.model.train()
            perm = torch.randperm(n, generator=self._gen)
            total = 0.0
            bar = None
            if show_bar:
                from tqdm import tqdm
                bar = tqdm(total=steps, desc=f"epoch {epoch + 1}/{c.epochs}", leave=False,
                           file=sys.stderr, dynamic_ncols=True)
            for s in range(steps):
                idx = perm[s * c.batch_size:(s + 1) * c.batch_size][self.rank::self.world_size]
                for h in self.hooks:
                    h.before_step(self)
                self.optimizer.zero_grad(set_to_none=True)
                forward = self.ddp if self.ddp is not None else self.model
                if self.teacher_logits is None:
                    loss = self.loss_fn(forward(self.x_train[idx]), self.y_train[idx])
                else:
                    loss = distill_loss(forward(self.x_train[idx]), self.y_train[idx],
                                        self.teacher_logits[idx])
                if not math.isfinite(loss.item()):
                    raise self._diverged(epoch, s, loss.item())
                loss.backward()
                for h in self.hooks:
                    h.after_backward(self)
                if c.lr_schedule == "cosine":
                    for g in self.optimizer.param_groups:
                        g["lr"] = self._lr_at(self.step)
                for h in self.hooks:
                    h.before_optimizer_step(self)
                self.optimizer.step()
                self.step += 1
                for h in self.hooks:
                    h.after_step(self)
                self.last_loss = loss.item()
                total += self.last_loss
                if bar is not None:
                    bar.update(1)
                    if s % 10 == 0:
                        bar.set_postfix(loss=f"{self.last_loss:.4f}", refresh=False)
            if bar is not None:
                bar.close()
            self._sync_buffers()
            mean_loss = self.all_reduce_(torch.tensor([total / max(steps, 1)], dtype=torch.float64),
                                         "mean").item()
            metrics = {"epoch": epoch, "loss": mean_loss, "test_acc": self.evaluate()}
            for h in self.hooks:
                h.on_epoch_end(self, metrics)
            result.history.append(metrics)
            if c.checkpoint_dir:
                self.save_checkpoint(result.history)
            if c.progress and self.is_main:
                print(f"epoch {epoch + 1}/{c.epochs}  loss {metrics['loss']:.4f}  "
                      f"test acc {100 * metrics['test_acc']:.2f}%", flush=True)
        for h in self.hooks:
            h.on_train_end(self)
        if self._channels_last:   # hand back the usual layout (exporters, torch.export)
            self.model.to(memory_format=torch.contiguous_format)
        result.test_accuracy = self.evaluate()
        return result


def train(model: nn.Module, ds: Dataset, config: Optional[TrainConfig] = None,
          hooks: Sequence[TrainHook] = ()) -> TrainResult:
    return Trainer(model, ds, config or TrainConfig(), hooks).fit()
