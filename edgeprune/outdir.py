"""Output directories are written whole or not at all.

Every command that writes a directory (cluster, export tflm/finn/hls) builds it in a temp dir
beside OUT and renames it into place at the end, so a failure or a kill never leaves a
half-written OUT. (`edgeprune prune` keeps its own partial directory on purpose: `--resume`
continues from it.)
"""
from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from .errors import EdgepruneError


class OutputDirError(EdgepruneError, ValueError):
    pass


@contextmanager
def staged_output(out: os.PathLike, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temp dir beside `out`; on success it replaces `out`, on error it is removed."""
    out = Path(out).absolute()  # exporters run tools in subdirectories (cwd changes)
    if out.exists() and not out.is_dir():
        raise OutputDirError(f"{out}: exists and is not a directory")
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise OutputDirError(f"{out}: directory is not empty (use --overwrite)")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)          # mkdtemp makes 0700; OUT should look like any mkdir
    try:
        yield tmp
        if out.exists():
            old = out.with_name(f".{out.name}.old-{os.getpid()}")
            out.rename(old)
            tmp.rename(out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
