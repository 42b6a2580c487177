"""The ``edgeprune verify`` command: inputs, the run, the staged output directory."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np

from ..artifacts import check_output, json_text, staged_output
from .c_runtime import VerifyError, dataset_inputs, quantize_inputs, read_export, verify_c


def load_inputs(report: dict, data: Optional[str], inputs: Optional[str], samples: int, seed: int):
    """((N, input bytes) int8, labels or None, description)."""
    io = report["io"]
    if data:
        from ..data import load_dataset
        n = samples or 10 ** 9
        x = dataset_inputs(data, io, n)
        labels = load_dataset(data).y_test[:len(x)]
        return x, labels, f"{data}: the first {len(x)} test images, scaled to [0, 1], quantized"
    if inputs:
        try:
            arr = np.load(inputs, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise VerifyError(f"{inputs}: not a readable .npy array ({e})")
        if arr.dtype != np.int8 and not np.issubdtype(arr.dtype, np.floating):
            raise VerifyError(f"{inputs}: dtype {arr.dtype}; expected int8 or float")
        if np.issubdtype(arr.dtype, np.floating) and not np.all(np.isfinite(arr)):
            raise VerifyError(f"{inputs}: holds NaN or Inf")
        arr = arr[:samples] if samples else arr
        if len(arr) == 0:
            raise VerifyError(f"{inputs}: no inputs")
        return quantize_inputs(arr, io), None, f"{inputs}: {len(arr)} inputs"
    n = samples or 10
    rng = np.random.default_rng(seed)
    x = rng.integers(-128, 128, size=(n, int(np.prod(io["input_shape"]))), dtype=np.int8)
    return x, None, f"{n} random int8 inputs (seed {seed})"


def default_tflm_cache() -> Path:
    import os
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "edgeprune" / "tflm"


def verify_command(export_dir: Path, core: str, out, *, data=None, inputs=None, samples: int = 10,
                   seed: int = 0, cycles: bool = True, layers: bool = True,
                   overwrite: bool = False, tflm_root=None, tflm_cache=None, jobs: int = 2) -> dict:
    check_output(out, overwrite)
    export_dir = Path(export_dir)
    if (export_dir / "edgeprune_model.cc").is_file():          # an 'export tflm' output
        from .tflm_runtime import read_tflm_export, verify_tflm
        report = read_tflm_export(export_dir)
        if tflm_root is None:
            raise VerifyError(f"{export_dir} is an 'edgeprune export tflm' output: pass "
                              f"--tflm-root PATH (a TFLite-Micro tree with its downloads)")
        x, labels, note = load_inputs(report, data, inputs, samples, seed)
        res, elf_bytes, _ = verify_tflm(export_dir, core, x, tflm_root,
                                        tflm_cache or default_tflm_cache(), input_note=note,
                                        labels=labels, trace=cycles, jobs=jobs)
    else:
        report = read_export(export_dir)
        x, labels, note = load_inputs(report, data, inputs, samples, seed)
        res, elf_bytes, _ = verify_c(export_dir, core, x, input_note=note, labels=labels,
                                     layer_counts=layers, trace=cycles)
    with staged_output(out, overwrite) as tmp:
        (tmp / "verify.json").write_text(json_text(res, indent=1))
        (tmp / "firmware.elf").write_bytes(elf_bytes)
    return res
