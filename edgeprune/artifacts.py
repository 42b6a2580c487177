"""What edgeprune writes: output directories whole or not at all, single files atomically, and the
model-directory contract that `prune` and `cluster` write and every later stage reads.

Output directories. Every command that writes a directory checks OUT before any work
(``check_output``), builds the output in a staging directory and moves it into place at the end
(``staged_output`` / ``publish``), so a failure or a kill never leaves a half-written OUT. A
non-empty OUT is refused unless ``--overwrite``; even then only the files edgeprune wrote there
(listed in OUT/.edgeprune-manifest.json) are replaced or removed: a user's own files are never
deleted or overwritten. (`edgeprune prune` keeps its own partial directory on purpose:
``--resume`` continues from it.)

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
from typing import Any, Dict, Iterator, List, Optional

from .errors import EdgepruneError, first_line


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
                                    f"{first_line(e)}"
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

# Every output directory lists the files edgeprune wrote into it. With --overwrite, only those
# may be replaced or removed; anything else in the directory is the user's and is left alone.
MANIFEST = ".edgeprune-manifest.json"
_STAGING_PREFIX = ".edgeprune-staging-"


def _manifest(out: Path) -> List[str]:
    f = out / MANIFEST
    if not f.is_file():
        return []
    try:
        data = json.loads(f.read_text())
        files = data.get("files", []) if isinstance(data, dict) else []
        return [str(x) for x in files if isinstance(x, str)]
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return []


def _user_entries(out: Path) -> List[str]:
    """Top-level entries of `out` that edgeprune did not write (per its manifest)."""
    ours = {p.split("/")[0] for p in _manifest(out)} | {MANIFEST}
    return sorted(e.name for e in out.iterdir()
                  if e.name not in ours and not e.name.startswith(_STAGING_PREFIX))


def check_output(out: os.PathLike, overwrite: bool = False) -> Path:
    """Check an output directory before any work starts; returns its absolute path.

    Refused: an existing path that is not a directory; a directory holding anything edgeprune
    did not write there, unless `overwrite` (then those entries are kept, never deleted); a
    directory holding an earlier edgeprune output, unless `overwrite`.
    """
    raw = str(out)
    if not raw.strip():
        raise ArtifactError("the output path is empty")
    path = Path(out).absolute()
    if path.exists() and not path.is_dir():
        raise ArtifactError(f"{out}: exists and is not a directory (choose a directory for -o)")
    if path.is_dir() and any(path.iterdir()) and not overwrite:
        user = _user_entries(path)
        what = (f"holds files edgeprune did not write ({', '.join(user[:3])}"
                f"{', ...' if len(user) > 3 else ''})" if user else "holds an earlier output")
        raise ArtifactError(f"{out}: directory {what}; pass --overwrite to write into it (files "
                            f"edgeprune did not write are kept) or choose another -o")
    parent = path.parent if not path.exists() else path
    probe = parent
    while not probe.exists():
        probe = probe.parent
    if not os.access(probe, os.W_OK):
        raise ArtifactError(f"{out}: cannot write there ({probe} is not writable)")
    return path


def _walk_files(root: Path) -> List[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")
                  if p.is_file() or p.is_symlink())


@contextmanager
def staged_output(out: os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Yield an empty staging directory; on success its files become `out`'s (see `publish`),
    on error it is removed and `out` is untouched."""
    out = check_output(out, overwrite)  # exporters run tools in subdirectories (cwd changes)
    if out.is_dir():
        tmp = Path(tempfile.mkdtemp(prefix=_STAGING_PREFIX, dir=out))
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    os.chmod(tmp, 0o777 & ~_umask())      # mkdtemp makes 0700; OUT should look like any mkdir
    try:
        yield tmp
        publish(tmp, out, overwrite)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def publish(tmp: Path, out: Path, overwrite: bool = False) -> None:
    """Make the finished staging directory `tmp` the content of `out`.

    `out` absent: `tmp` is renamed to `out` (one atomic step). `out` an existing directory: the
    files edgeprune wrote there before (its manifest) are replaced or removed, the new files
    moved in one by one, and every other entry left as it was (a non-empty `out` needs
    `overwrite`); a new file whose name is taken by a file edgeprune did not write is refused
    before anything moves.
    """
    out = Path(out).absolute()
    tmp = Path(tmp).absolute()
    new_files = _walk_files(tmp)
    write_json(tmp / MANIFEST, {"tool": "edgeprune", "files": new_files})
    if not out.exists():
        os.replace(tmp, out)
        return
    if not out.is_dir():
        raise ArtifactError(f"{out}: exists and is not a directory")
    others = [e for e in out.iterdir() if e.absolute() != tmp]
    if others and not overwrite:
        raise ArtifactError(f"{out}: directory is not empty; pass --overwrite")
    old = set(_manifest(out))
    clashes = [f for f in new_files if (out / f).exists() and f not in old]
    clashes += [f for f in new_files for parent in Path(f).parents
                if str(parent) != "." and (out / parent).exists() and not (out / parent).is_dir()]
    if clashes:
        raise ArtifactError(f"{out}: {clashes[0]} exists and edgeprune did not write it; move it "
                            f"away or choose another -o (nothing was changed)")
    for f in sorted(old - set(new_files)):          # our stale outputs of an earlier run
        p = out / f
        if p.is_file() or p.is_symlink():
            p.unlink()
    for f in new_files + [MANIFEST]:
        dst = out / f
        dst.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp / f, dst)
    for d in sorted({str(Path(f).parent) for f in old}, key=len, reverse=True):
        if d != "." and (out / d).is_dir() and not any((out / d).iterdir()):
            (out / d).rmdir()                       # directories our stale files left empty
    shutil.rmtree(tmp, ignore_errors=True)


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
