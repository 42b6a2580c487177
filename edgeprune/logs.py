"""A quiet terminal: third-party noise goes to a log file, not to the user's terminal.

TensorFlow/absl (C++ lines on stderr at import and conversion), LiteRT's delegate messages,
torch.onnx, brevitas, qonnx and hls4ml warnings are written to the log file of the command
(``log_path()``: $EDGEPRUNE_LOG, else ~/.cache/edgeprune/last.log, rewritten by every command).
``edgeprune -v ...`` (or ``--verbose`` anywhere on the command line) lets them through.

- `configure(verbose)`: called once by the CLI before any heavy import (environment variables of
  the C++ loggers, Python warnings and logging routed to the log file);
- `native_stderr_to_log()`: a context that sends the process's file descriptor 2 (C/C++
  stderr) to the log file while a noisy library runs; a no-op when verbose.
"""
from __future__ import annotations

import contextlib
import logging
import os
import sys
import warnings
from pathlib import Path
from typing import Iterator, Optional

_VERBOSE = False
_LOG_FILE: Optional[Path] = None
_NOISY_LOGGERS = ("tensorflow", "absl", "torch", "torch.onnx", "torch.export", "brevitas",
                  "qonnx", "hls4ml", "onnxscript", "matplotlib", "h5py", "keras")


def log_path() -> Path:
    env = os.environ.get("EDGEPRUNE_LOG")
    if env:
        return Path(env)
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "edgeprune" / "last.log"


def verbose() -> bool:
    return _VERBOSE


def current_log() -> Optional[Path]:
    """The file third-party output goes to now (None when verbose or not writable)."""
    return _LOG_FILE


def configure(verbose: bool = False) -> Optional[Path]:
    """Route third-party output: to the terminal when `verbose`, else to the log file (returned)."""
    global _VERBOSE, _LOG_FILE
    _VERBOSE = verbose
    if verbose:
        return None
    # C++ loggers read these when their library loads: set them before any heavy import.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    # torch sets up its own log handlers when it loads; its ONNX exporter's registration lines
    # ("torchvision is not installed ...") are silenced through its own switch.
    os.environ.setdefault("TORCH_LOGS", "-onnx")
    return _route_to(log_path(), mode="w")


def redirect(path: Path) -> Optional[Path]:
    """From now on, write the log to `path` (appended; `edgeprune run` keeps its run's log in
    OUT/run.log). A no-op when verbose: third-party output then goes to the terminal."""
    if _VERBOSE:
        return None
    return _route_to(Path(path), mode="a")


def _route_to(path: Optional[Path], mode: str) -> Optional[Path]:
    global _LOG_FILE
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, mode) as f:
            f.write(f"edgeprune {' '.join(sys.argv[1:])}\n")
    except OSError:
        path = None     # no writable cache: noise is dropped rather than shown
    _LOG_FILE = path
    handler: logging.Handler
    if path is not None:
        handler = logging.FileHandler(path, mode="a")
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    else:
        handler = logging.NullHandler()
    logging.captureWarnings(True)
    warnings.simplefilter("default")
    pw = logging.getLogger("py.warnings")
    for old in pw.handlers:          # the previous log file's handler (shared by all loggers)
        old.close()
    pw.handlers[:] = [handler]
    pw.propagate = False
    for name in _NOISY_LOGGERS:
        lg = logging.getLogger(name)
        lg.handlers[:] = [handler]
        lg.setLevel(logging.WARNING)
        lg.propagate = False
    return path


@contextlib.contextmanager
def native_stderr_to_log() -> Iterator[None]:
    """Send C/C++ writes to stderr (fd 2) into the log file for the duration (no-op if verbose
    or no log file)."""
    if _VERBOSE or _LOG_FILE is None:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(_LOG_FILE, "ab") as f:
            os.dup2(f.fileno(), 2)
            try:
                yield
            finally:
                sys.stderr.flush()
                os.dup2(saved, 2)
    finally:
        os.close(saved)
