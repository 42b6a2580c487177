"""`edgeprune` command line. Each subcommand is a module here with ``register(subparsers)``.

Subcommand modules must stay light at import time (argparse only): heavy libraries (tensorflow,
brevitas, hls4ml) are imported inside their run function, so `edgeprune estimate` starts fast.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from typing import List, Optional

from ..errors import EdgepruneError

# Order is the order of `edgeprune --help`.
SUBCOMMANDS = ("targets", "ops", "estimate", "prune", "cluster", "export", "verify", "run", "sweep", "demo")


class UsageError(Exception):
    """A command line argparse refuses; `main` prints it as one line and returns 2."""


class _Parser(argparse.ArgumentParser):
    """Usage errors end like every other error: one line, exit 2."""

    def error(self, message: str):
        sub = self.prog.removeprefix("edgeprune").strip()
        raise UsageError(f"{sub + ': ' if sub else ''}{message} (see {self.prog} --help)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="edgeprune",
        description="Cost-aware pruning and cluster quantization for MCUs (TFLite-Micro) and "
                    "FPGAs (FINN / hls4ml).")
    from .. import __version__
    parser.add_argument("--version", action="version", version=f"edgeprune {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="show third-party library output (TensorFlow, brevitas, torch.onnx, "
                             "...) instead of writing it to the log file; allowed anywhere on "
                             "the command line")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in SUBCOMMANDS:
        try:
            mod = importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as e:
            if e.name == f"{__name__}.{name}":
                continue  # subcommand not built yet
            raise
        mod.register(sub)
    return parser


VERBOSE_FLAGS = ("-v", "--verbose")


def main(argv: Optional[List[str]] = None) -> int:
    from .. import logs
    argv = list(sys.argv[1:] if argv is None else argv)
    verbose = any(a in VERBOSE_FLAGS for a in argv)
    argv = [a for a in argv if a not in VERBOSE_FLAGS]
    logs.configure(verbose)
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except UsageError as e:
        print(f"edgeprune: error: {e}", file=sys.stderr)
        return 2
    try:
        rc = args.func(args)
    except EdgepruneError as e:
        print(f"edgeprune: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("edgeprune: interrupted", file=sys.stderr)
        return 130
    except (FileNotFoundError, IsADirectoryError, PermissionError) as e:
        print(f"edgeprune: error: {e.filename}: {e.strerror}", file=sys.stderr)
        return 2
    return int(rc or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
