"""What edgeprune writes: output directories whole or not at all, single files atomically, and the
model-directory contract that `prune` and `cluster` write and every later stage reads.

Output directories. Every command that writes a directory builds it in a temp dir beside OUT
and renames it into place at the end (``staged_output``), so a failure or a kill never leaves a
half-written OUT. (`edgeprune prune` keeps its own partial directory on purpose: ``--resume``
continues from it.)

Single files (``write_json``, ``write_bytes``, ``save_torch``) are written to a temp file in the
same directory and renamed over the target, with the permissions an ordinary file gets (0666
minus the umask; mkstemp would leave 0600).

Model directories (``ModelDir``): the output of `prune` and `cluster`, and an input of every
command that takes MODEL:

    summary.json   what produced the directory: {"model": zoo name, "model_kwargs": {...},
                   "acc_dense": ..., ...}; the keys each stage adds are documented there
    model.pt2      the model as a torch.export program (cluster: the clustered model)
    shrunk.pt2     prune: the pruned model with removed channels cut out
    model.pt       a plain state_dict of the zoo architecture named in summary.json

A loader takes model.pt2, else shrunk.pt2, else the zoo model of summary.json with model.pt.
Torch is imported only inside the functions that need it.
"""
from __future__ import annotations

import io
import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterator, Optional

from .errors import EdgepruneError


class ArtifactError(EdgepruneError, ValueError):
    """An output path that cannot be written, or an edgeprune directory that cannot be read."""


# Kept for the name the exporters raise; the same error.
OutputDirError = ArtifactError


# --------------------------------------------------------------------------------------------
# Single files

def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_bytes(path: os.PathLike, data: bytes) -> Path:
    """Write `data` to `path` atomically (temp file in the same directory, then rename)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())       # a checkpoint must survive a power cut or a kill -9
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _jsonable(o: Any) -> Any:
    """numpy scalars and paths in JSON output."""
    import numpy as np
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def json_text(obj: Any, *, indent: int = 2, sort_keys: bool = False) -> str:
    return json.dumps(obj, indent=indent, sort_keys=sort_keys, default=_jsonable) + "\n"


def write_json(path: os.PathLike, obj: Any, *, indent: int = 2, sort_keys: bool = False) -> Path:
    """Write `obj` as JSON (numpy scalars allowed) to `path` atomically."""
    return write_bytes(path, json_text(obj, indent=indent, sort_keys=sort_keys).encode())


def save_torch(obj: Any, path: os.PathLike) -> Path:
    """torch.save `obj` to `path` atomically. Saved to memory first: given a file, torch.save
    names the archive's folder after it, so a temp name would leak into the bytes."""
    import torch
    buf = io.BytesIO()
    torch.save(obj, buf)
    return write_bytes(path, buf.getvalue())


def save_pt2(module, path: os.PathLike, input_shape=None) -> Path:
    """Write ``torch.export.export(module.eval(), (example,))`` to `path` atomically.

    The batch dimension is dynamic (example ``zeros(2, *input_shape)``); a model whose trace
    pins the batch is exported with batch 1 instead. The example is all zeros, so the same
    module gives the same program, and the file bytes are deterministic for the same module and
    torch version (zip entries carry a fixed 1980 date; tests/test_prune_shrink.py checks it).
    `input_shape` defaults to ``module.input_shape``.
    """
    import torch
    shape = tuple(int(d) for d in (input_shape if input_shape is not None
                                   else module.input_shape))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    was_training = module.training
    module.eval()
    try:
        try:
            # Batch 2 so the batch dimension is not specialised to 1 (0/1 are special-cased).
            program = torch.export.export(module, (torch.zeros((2,) + shape),),
                                          dynamic_shapes=({0: torch.export.Dim("batch")},))
        except Exception:  # noqa: BLE001 - some models pin the batch; fall back to batch 1
            try:
                program = torch.export.export(module, (torch.zeros((1,) + shape),))
            except Exception as e:  # noqa: BLE001 - any export failure is reported with its cause
                raise ArtifactError(f"torch.export cannot export {type(module).__name__}: "
                                    f"{str(e).splitlines()[0] if str(e) else type(e).__name__}"
                                    ) from e
        # Saved into memory first: given a file name, torch.export.save names the archive's
        # top folder after it, so a temp name would leak into the bytes.
        buf = io.BytesIO()
        torch.export.save(program, buf)
        return write_bytes(path, buf.getvalue())
    finally:
        module.train(was_training)


def read_json(path: os.PathLike, what: str = "file") -> Any:
    """JSON from `path`, or an ArtifactError naming the file."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except OSError as e:
        raise ArtifactError(f"{path}: cannot read {what} ({e.strerror})") from e
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ArtifactError(f"{path}: invalid JSON in {what} ({e})") from e


# --------------------------------------------------------------------------------------------
# Output directories

@contextmanager
def staged_output(out: os.PathLike, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temp dir beside `out`; on success it replaces `out`, on error it is removed."""
    out = Path(out).absolute()  # exporters run tools in subdirectories (cwd changes)
    if out.exists() and not out.is_dir():
        raise ArtifactError(f"{out}: exists and is not a directory")
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise ArtifactError(f"{out}: directory is not empty (use --overwrite)")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    os.chmod(tmp, 0o777 & ~_umask())      # mkdtemp makes 0700; OUT should look like any mkdir
    try:
        yield tmp
        publish(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def publish(tmp: Path, out: Path) -> None:
    """Move the finished directory `tmp` to `out` (an existing `out` is moved aside first, then
    deleted)."""
    if out.exists():
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        os.replace(out, old)
        os.replace(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, out)


# --------------------------------------------------------------------------------------------
# Model directories

@dataclass(frozen=True)
class ModelDir:
    """An edgeprune model directory (the output of prune or cluster)."""

    path: Path

    SUMMARY = "summary.json"
    STATE_DICT = "model.pt"
    PROGRAM = "model.pt2"
    SHRUNK = "shrunk.pt2"

    @classmethod
    def is_model_dir(cls, path: os.PathLike) -> bool:
        p = Path(path)
        return p.is_dir() and any((p / f).is_file() for f in (cls.SUMMARY, cls.PROGRAM,
                                                               cls.SHRUNK))

    def summary(self) -> Dict[str, Any]:
        """summary.json, {} when absent; an ArtifactError when unreadable."""
        f = self.path / self.SUMMARY
        if not f.is_file():
            return {}
        data = read_json(f, "summary")
        if not isinstance(data, dict):
            raise ArtifactError(f"{f}: expected a JSON object")
        return data

    def program(self) -> Optional[Path]:
        """The .pt2 program a loader takes: model.pt2, else shrunk.pt2, else None."""
        for name in (self.PROGRAM, self.SHRUNK):
            if (self.path / name).is_file():
                return self.path / name
        return None

    def state_dict_file(self) -> Path:
        return self.path / self.STATE_DICT

    def zoo_model(self) -> Optional[str]:
        """The zoo architecture the directory's model came from (summary 'model'), if any."""
        name = self.summary().get("model")
        return name if isinstance(name, str) else None
