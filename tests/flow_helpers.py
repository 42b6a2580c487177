"""What the flow tests (test_flow, test_flow_sweep) share: the repo root, the Fashion-MNIST skip
marker, and running `python -m edgeprune` in a subprocess the way a user's shell would."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from edgeprune.data import FASHION_MNIST_DIR

ROOT = Path(__file__).resolve().parent.parent
needs_fashion = pytest.mark.skipif(not FASHION_MNIST_DIR.is_dir(),
                                   reason=f"{FASHION_MNIST_DIR} absent (Debian dataset-fashion-mnist)")


def flow_env() -> dict[str, str]:
    # One torch thread per process: the sweep runs several workers on 2 shared cores.
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1",
            "OMP_WAIT_POLICY": "PASSIVE"}


def run_edgeprune(args: list[str], timeout: int, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edgeprune", *args], capture_output=True,
                          text=True, env=flow_env(), timeout=timeout, **kw)
