"""TFLite-Micro export: int8 .tflite (LUT-compressed where it pays) + C sources, verified.

Pipeline (``export_tflm``):
1. lower the layer graph to a TFLite op plan (``edgeprune.backends.tflm.plan.lower``); an op
   TFLM cannot run stops here, naming the op and the layer;
2. build the Keras NHWC mirror of that plan and check it computes what torch computes;
3. convert with TFLiteConverter: per-channel symmetric int8 weights, per-tensor asymmetric
   int8 activations, int32 biases, int8 input/output, calibrated on a representative sample
   of the training data;
4. canonicalise the flatbuffer (short tensor names, no signature defs) and LUT-compress,
   per channel only, the weight tensors whose channels hold few distinct int8 values, where
   that shrinks the file;
5. verify: run it in tflite_micro.runtime and in ai_edge_litert on test inputs, measure the
   arena, accuracy, and compare flash/arena with the cost model;
6. write model.tflite, model_data.cc/.h, edgeprune_model.cc/.h, tflm.mk, CMakeLists snippet,
   README.md, report.json into a temp dir, then rename it to the output path.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import re
import tempfile
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..backends.tflm import compress as tflm_compress
from ..backends.tflm import flatbuffer as tflm_flatbuffer
from ..backends.tflm import memory as tflm_memory
from ..backends.tflm import plan as tflm_plan
from ..errors import EdgepruneError
from ..artifacts import check_output, staged_output

N_CALIBRATION = 256       # representative samples for activation ranges
SEED = 0
TEMPLATES = Path(__file__).resolve().parent / "templates" / "tflm"


class ExportError(EdgepruneError):
    """The TFLM export cannot proceed; the message says why."""


# --------------------------------------------------------------------------------------------
# Conversion

# Packages that TensorFlow's and Keras's own imports load only for features the export never
# uses: Keras's scikit-learn wrappers (keras/src/wrappers/fixes.py), its matplotlib image
# gallery (keras/src/visualization/plot_image_gallery.py) and the legacy tf.keras v1 sparse-input
# check (tensorflow/python/keras/engine/training_arrays_v1.py, scipy.sparse). Each of those
# imports sits in a try / except ImportError, so while TensorFlow loads they are hidden
# (sys.modules[name] = None makes `import name` raise ImportError) and restored right after, so
# that a later import of them works as usual. Measured here: `import tensorflow, keras` 9.1 CPU
# s with them, 4.3 s without (issue 10, benchmarks/results/tflm_export_time.md). A package
# already imported by the caller is left alone.
TF_UNUSED_IMPORTS = ("sklearn", "matplotlib", "scipy")


def quiet_tf():
    import sys
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    hidden = [] if "tensorflow" in sys.modules else \
        [m for m in TF_UNUSED_IMPORTS if m not in sys.modules]
    for m in hidden:
        sys.modules[m] = None
    try:
        import tensorflow as tf
        import keras  # noqa: F401  (tf.keras loads it lazily: load it while the rest is hidden)
    finally:
        for m in hidden:
            if sys.modules.get(m, 0) is None:
                del sys.modules[m]
    tf.get_logger().setLevel("ERROR")
    return tf


@contextlib.contextmanager
def gc_paused():
    """Python's cyclic garbage collector off for the block, then back as it was. Importing
    TensorFlow and Keras and tracing the mirror create hundreds of thousands of long-lived
    objects, and each full collection meanwhile re-scans all of them for nothing
    (benchmarks/tflm_export_profile.py with and without --gc-on gives the CPU time per phase and
    the peak memory). The garbage of the block is collected after it as usual."""
    import gc
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


@contextlib.contextmanager
def capture_fd2():
    """Redirect the process's fd 2 (C++ stderr) into a temp file; yields a callable giving the
    text written so far."""
    import sys
    sys.stderr.flush()
    saved = os.dup(2)
    tmp = tempfile.TemporaryFile(mode="w+b")
    os.dup2(tmp.fileno(), 2)
    try:
        def read() -> str:
            tmp.flush()
            tmp.seek(0)
            return tmp.read().decode(errors="replace")
        yield read
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        tmp.close()


def convert_int8(mirror, calib_nhwc: np.ndarray) -> bytes:
    """Full-integer TFLite conversion of the Keras mirror."""
    tf = quiet_tf()

    def representative():
        for i in range(len(calib_nhwc)):
            yield [calib_nhwc[i:i + 1].astype(np.float32)]

    conv = tf.lite.TFLiteConverter.from_keras_model(mirror)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = representative
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    with capture_fd2(), open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):
        return bytes(conv.convert())


# --------------------------------------------------------------------------------------------
# Reading the converted model

def _model_t(b: bytes):
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as fb
    return fb, fb.ModelT.InitFromPackedBuf(bytearray(b), 0)


def _opname(fb, m, op) -> str:
    oc = m.operatorCodes[op.opcodeIndex]
    code = max(oc.builtinCode, oc.deprecatedBuiltinCode)
    if code == fb.BuiltinOperator.CUSTOM:
        return (oc.customCode or b"CUSTOM").decode()
    names = {v: k for k, v in vars(fb.BuiltinOperator).items() if not k.startswith("_")}
    return names.get(code, str(code))


def match_ops(model_bytes: bytes, plan: tflm_plan.TflPlan) -> List[Tuple[str, int]]:
    """For each op of the converted model: (graph node, op index). Raises ExportError when the
    converter's graph is not the planned one (an unplanned op, e.g. a QUANTIZE or TRANSPOSE)."""
    fb, m = _model_t(model_bytes)
    sg = m.subgraphs[0]
    got = [_opname(fb, m, op) for op in sg.operators]
    want = [op.opcode for op in plan.ops]
    if sorted(got) != sorted(want):
        from collections import Counter
        extra = Counter(got) - Counter(want)
        missing = Counter(want) - Counter(got)
        raise ExportError(
            "the TFLite converter's graph differs from the planned one (extra ops: "
            f"{dict(extra) or 'none'}, missing ops: {dict(missing) or 'none'}); please report "
            "this model")
    if got == want:
        return [(p.node, i) for i, p in enumerate(plan.ops)]
    # Branches may come out in another topological order: match by op and output shape.
    free = list(range(len(plan.ops)))
    out = []
    for i, op in enumerate(sg.operators):
        shape = tuple(int(d) for d in sg.tensors[op.outputs[0]].shape)
        for j in free:
            p = plan.ops[j]
            if p.opcode == got[i] and plan.tensors[p.outputs[0]].shape == shape:
                out.append((p.node, i))
                free.remove(j)
                break
        else:
            raise ExportError(f"cannot match converted op {i} ({got[i]}) to the plan")
    return out


def weight_value_counts(model_bytes: bytes, plan: tflm_plan.TflPlan) -> Dict[str, dict]:
    """Per weighted layer: tensor index, quantized axis, and the largest number of distinct
    int8 values in one output channel."""
    fb, m = _model_t(model_bytes)
    sg = m.subgraphs[0]
    res = {}
    for node, i in match_ops(model_bytes, plan):
        op = sg.operators[i]
        name = _opname(fb, m, op)
        if name not in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"):
            continue
        ti = int(op.inputs[1])
        t = sg.tensors[ti]
        data = np.frombuffer(bytes(m.buffers[t.buffer].data), dtype=np.int8).reshape(t.shape)
        axis = 3 if name == "DEPTHWISE_CONV_2D" else 0
        per = np.moveaxis(data, axis, 0).reshape(data.shape[axis], -1)
        counts = [len(np.unique(r)) for r in per]
        res[node] = {"tensor": ti, "axis": axis, "max_values": int(max(counts)),
                     "channels": int(data.shape[axis]), "elements": int(data.size)}
    return res


# --------------------------------------------------------------------------------------------
# Running the model

def _set_and_invoke(it, x):
    it.set_input(x, 0)
    it.invoke()
    return np.array(it.get_output(0))


# TFLM's Python runtime runs one input per Invoke on its reference kernels and holds the GIL
# (up to ~20 ms per image on MobileNetV1-0.25 here); the inputs are independent, so large
# batches are split across child processes, one per core, each with its own interpreter.
# Batching would not help inside TFLM: a batch-50 copy of ResNet-8 ran at the same time per
# image as batch 1 (tried for issue 10); the reference convolutions take nearly all of it.
PARALLEL_MIN_INPUTS = 64

# The smallest arena (to the byte) in which TFLM allocates and runs the model on x[:1]:
# `start` when it runs there, else grown by max(1 KiB, 25 %) until it runs, then bisected.
# Each probe runs in a forked process (an arena a few bytes short can crash the TFLM Python
# runtime, seen: a segfault on the MLPerf autoencoder) forked from a process that imported
# TFLM once. Needs: os, runtime, model (bytes), x (int8 inputs), start (int).
_ARENA_SEARCH = """
def _runs(n):
    pid = os.fork()
    if pid == 0:
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, 1)
        os.dup2(null, 2)
        try:
            it = runtime.Interpreter.from_bytes(model, arena_size=n)
            it.set_input(x[:1], 0)
            it.invoke()
        except BaseException:
            os._exit(1)
        os._exit(0)
    return os.waitpid(pid, 0)[1] == 0
lo, hi = start - 1, start
while not _runs(hi):
    lo, hi = hi, hi + max(1024, hi // 4)
while hi - lo > 1:
    mid = (lo + hi) // 2
    lo, hi = (lo, mid) if _runs(mid) else (mid, hi)
"""

# One TFLM child: outputs of its inputs, the allocation report on fd 2, and with a 5th
# argument also the minimum arena (the search above, started from print_allocations()' total),
# so that the arena search costs no Python start-up and TFLM import of its own.
_TFLM_WORKER = """
import os, re, sys, tempfile, numpy as np
from tflite_micro import runtime
model = open(sys.argv[1], 'rb').read()
x = np.load(sys.argv[2])
it = runtime.Interpreter.from_bytes(model, arena_size=int(sys.argv[3]))
outs = []
for i in range(len(x)):
    it.set_input(x[i:i + 1], 0)
    it.invoke()
    outs.append(np.array(it.get_output(0)))
np.save(sys.argv[4], np.concatenate(outs))
sys.stderr.flush()
saved, tmp = os.dup(2), tempfile.TemporaryFile()
os.dup2(tmp.fileno(), 2)
it.print_allocations()
os.dup2(saved, 2)
tmp.seek(0)
text = tmp.read()
os.write(2, text)
if len(sys.argv) > 5:
    m = re.search(rb"Arena allocation total (\\d+) bytes", text)
    if m:
        del it
        start = int(m.group(1))
""" + "\n".join("        " + line for line in _ARENA_SEARCH.strip().splitlines()) + """
        open(sys.argv[5], "w").write(str(hi))
"""


def _child_env() -> dict:
    """The environment of the TFLM children: they do no linear algebra, so numpy's OpenBLAS
    gets one thread (its idle threads otherwise cost ~1-2 % of a child's CPU time)."""
    return dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")


class TflmRun:
    """TFLM outputs for a batch of inputs, computed in child processes while the caller does
    other work; ``result()`` waits and returns (outputs, arena total, allocation report)."""

    def __init__(self, model_bytes: bytes, x_int8: np.ndarray, arena_size: int = 0,
                 workers: Optional[int] = None, min_arena: bool = False):
        """min_arena: the first child also finds the smallest arena the model runs in
        (``min_arena`` after ``result()``; None when this platform has no fork)."""
        import subprocess
        import sys
        self._arena = arena_size or max(1 << 20, 16 * len(model_bytes))
        self._dir = tempfile.TemporaryDirectory(prefix="edgeprune-tflm-")
        self.min_arena: Optional[int] = None
        d = self._dir.name
        mp = os.path.join(d, "m.tflite")
        with open(mp, "wb") as f:
            f.write(model_bytes)
        workers = workers or min(2, os.cpu_count() or 1)
        # contiguous slices (views: saved without a copy)
        bounds = np.linspace(0, len(x_int8), max(1, min(workers, len(x_int8))) + 1).astype(int)
        self._arena_file = os.path.join(d, "arena.txt") if min_arena and hasattr(os, "fork") else None
        env = _child_env()
        self._procs = []
        for k in range(len(bounds) - 1):
            xp, op, ep = (os.path.join(d, f"{name}{k}{ext}") for name, ext in
                          (("x", ".npy"), ("y", ".npy"), ("err", ".txt")))
            np.save(xp, x_int8[bounds[k]:bounds[k + 1]])
            err = open(ep, "w+b")
            extra = [self._arena_file] if k == 0 and self._arena_file else []
            p = subprocess.Popen([sys.executable, "-c", _TFLM_WORKER, mp, xp, str(self._arena), op]
                                 + extra, stdout=subprocess.DEVNULL, stderr=err, env=env)
            self._procs.append((p, op, err))

    def result(self) -> Tuple[np.ndarray, int, str]:
        try:
            outs, texts = [], []
            for p, op, err in self._procs:
                rc = p.wait()
                err.seek(0)
                text = err.read().decode(errors="replace")
                err.close()
                if rc != 0:
                    raise ExportError(f"the TFLM runtime failed (exit {rc}): {text.strip()[-300:]!r}")
                outs.append(np.load(op))
                texts.append(text)
            if self._arena_file and os.path.exists(self._arena_file):   # else tflm_min_arena()
                with open(self._arena_file) as f:
                    self.min_arena = int(f.read())
        finally:
            for p, _, err in self._procs:
                if p.poll() is None:
                    p.kill()
                    p.wait()
                err.close()
            self._dir.cleanup()
        return np.concatenate(outs), _arena_total(texts[0]), texts[0]


def _arena_total(text: str) -> int:
    m = re.search(r"Arena allocation total (\d+) bytes", text)
    if not m:
        raise ExportError(f"cannot read the TFLM arena size from print_allocations(): {text[-300:]!r}")
    return int(m.group(1))


def run_tflm(model_bytes: bytes, x_int8: np.ndarray, arena_size: int = 0) -> Tuple[np.ndarray, int, str]:
    """(outputs, arena bytes used per print_allocations(), allocation report text)."""
    if len(x_int8) >= PARALLEL_MIN_INPUTS and (os.cpu_count() or 1) > 1:
        return TflmRun(model_bytes, x_int8, arena_size).result()
    from tflite_micro import runtime
    arena_size = arena_size or max(1 << 20, 16 * len(model_bytes))
    with capture_fd2() as read:
        it = runtime.Interpreter.from_bytes(model_bytes, arena_size=arena_size)
        outs = [_set_and_invoke(it, x_int8[i:i + 1]) for i in range(len(x_int8))]
        it.print_allocations()
        text = read()
    return np.concatenate(outs), _arena_total(text), text


_PROBE = """
import sys, numpy as np
from tflite_micro import runtime
model = open(sys.argv[1], 'rb').read()
it = runtime.Interpreter.from_bytes(model, arena_size=int(sys.argv[2]))
it.set_input(np.load(sys.argv[3]), 0)
it.invoke()
"""


def tflm_runs_with(model_bytes: bytes, arena_size: int, x_int8: np.ndarray) -> bool:
    """Whether TFLM runs the model in `arena_size` bytes. Probed in a child process: with an
    arena a few bytes short the TFLM Python runtime can crash (seen: segfault on the MLPerf
    autoencoder) instead of returning an error."""
    import subprocess
    import sys
    with tempfile.TemporaryDirectory(prefix="edgeprune-probe-") as d:
        mp, xp = os.path.join(d, "m.tflite"), os.path.join(d, "x.npy")
        with open(mp, "wb") as f:
            f.write(model_bytes)
        np.save(xp, x_int8[:1])
        p = subprocess.run([sys.executable, "-c", _PROBE, mp, str(arena_size), xp],
                           capture_output=True, timeout=300)
        return p.returncode == 0


_MIN_ARENA = """
import os, sys, numpy as np
from tflite_micro import runtime
model = open(sys.argv[1], 'rb').read()
x = np.load(sys.argv[2])
start = int(sys.argv[3])
""" + _ARENA_SEARCH + """
print(hi)
"""


def tflm_min_arena(model_bytes: bytes, start: int, x_int8: np.ndarray) -> int:
    """The smallest arena (to the byte) in which TFLM allocates and runs the model: `start`
    (print_allocations()' total) when it runs there, else grown by max(1 KiB, 25 %) until it
    runs, then bisected. The same probes as tflm_runs_with(), each in its own process (a short
    arena can crash the runtime), but forked from one child that imported TFLM once: one
    Python start-up instead of one per probe (about 11 probes when the total is short)."""
    if not hasattr(os, "fork"):
        lo, hi = start - 1, start
        while not tflm_runs_with(model_bytes, hi, x_int8):
            lo, hi = hi, hi + max(1024, hi // 4)
        while hi - lo > 1:
            mid = (lo + hi) // 2
            lo, hi = (lo, mid) if tflm_runs_with(model_bytes, mid, x_int8) else (mid, hi)
        return hi
    import subprocess
    import sys
    with tempfile.TemporaryDirectory(prefix="edgeprune-probe-") as d:
        mp, xp = os.path.join(d, "m.tflite"), os.path.join(d, "x.npy")
        with open(mp, "wb") as f:
            f.write(model_bytes)
        np.save(xp, x_int8[:1])
        p = subprocess.run([sys.executable, "-c", _MIN_ARENA, mp, xp, str(start)],
                           capture_output=True, text=True, timeout=600, env=_child_env())
    if p.returncode != 0 or not p.stdout.strip().isdigit():
        raise ExportError(f"the TFLM arena search failed (exit {p.returncode}): "
                          f"{p.stderr.strip()[-300:]!r}")
    return int(p.stdout.strip())


def run_litert(model_bytes: bytes, x_int8: np.ndarray, reference: bool = True) -> np.ndarray:
    """LiteRT outputs; reference=True uses its reference kernels (BUILTIN_REF), which share
    TFLM's integer arithmetic, else the default (optimized/XNNPACK) kernels. Inputs run in
    batches where the graph allows it (a RESHAPE to a fixed batch-1 shape does not): each
    sample's arithmetic is the same either way, only the per-Invoke overhead goes."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType
    kind = OpResolverType.BUILTIN_REF if reference else OpResolverType.AUTO
    with capture_fd2():
        it = Interpreter(model_content=model_bytes, num_threads=1,
                         experimental_op_resolver_type=kind)
    inp = it.get_input_details()[0]
    out = it.get_output_details()[0]["index"]
    batch = min(LITERT_BATCH, len(x_int8))
    if batch > 1:
        try:
            it.resize_tensor_input(inp["index"], [batch] + list(inp["shape"][1:]), strict=True)
            it.allocate_tensors()
            res = []
            for i in range(0, len(x_int8), batch):
                xb = x_int8[i:i + batch]
                if len(xb) < batch:       # the tail: pad to the allocated batch
                    xb = np.concatenate([xb, np.repeat(xb[-1:], batch - len(xb), axis=0)])
                it.set_tensor(inp["index"], xb)
                it.invoke()
                y = np.array(it.get_tensor(out))
                if y.shape[0] != batch:
                    raise ValueError("output batch differs from the input batch")
                res.append(y[:min(batch, len(x_int8) - i)])
            return np.concatenate(res)
        except (ValueError, RuntimeError):
            with capture_fd2():
                it = Interpreter(model_content=model_bytes, num_threads=1,
                                 experimental_op_resolver_type=kind)
    it.allocate_tensors()
    res = []
    for i in range(len(x_int8)):
        it.set_tensor(inp["index"], x_int8[i:i + 1])
        it.invoke()
        res.append(np.array(it.get_tensor(out)))
    return np.concatenate(res)


LITERT_BATCH = 100


def io_quant(model_bytes: bytes) -> dict:
    fb, m = _model_t(model_bytes)
    sg = m.subgraphs[0]

    def q(t):
        return float(t.quantization.scale[0]), int(t.quantization.zeroPoint[0])
    i, o = sg.tensors[sg.inputs[0]], sg.tensors[sg.outputs[0]]
    return {"input_scale": q(i)[0], "input_zero_point": q(i)[1],
            "output_scale": q(o)[0], "output_zero_point": q(o)[1],
            "input_shape": [int(d) for d in i.shape], "output_shape": [int(d) for d in o.shape]}


def quantize_input(x_nhwc: np.ndarray, scale: float, zp: int) -> np.ndarray:
    """int8 inputs: clip(round(x / scale) + zp, -128, 127), in x's float type (float32 for
    float32 inputs), computed in one buffer (the export quantizes 1,000 images)."""
    y = np.empty(x_nhwc.shape, np.result_type(x_nhwc.dtype, scale))   # x_nhwc / scale's type
    np.divide(x_nhwc, scale, out=y)          # C order: the TFLM children get contiguous slices
    np.round(y, out=y)
    y += zp
    np.clip(y, -128, 127, out=y)
    return y.astype(np.int8)


# --------------------------------------------------------------------------------------------
# Data

def samples(model, graph, dataset, n_cal: int, n_eval: int, seed: int):
    """(calibration NCHW float, eval NCHW float, eval labels or None, source description)."""
    shape = tuple(graph.input_shape)
    rng = np.random.default_rng(seed)
    if dataset is None:
        n_eval = n_eval if n_eval > 0 else 1000
        cal = rng.random((n_cal,) + shape, dtype=np.float32)
        ev = rng.random((n_eval,) + shape, dtype=np.float32)
        return cal, ev, None, "random uniform [0, 1) inputs (no dataset given)"
    from ..data import Dataset, load_dataset, to_tensors
    ds = load_dataset(dataset) if isinstance(dataset, str) else dataset
    if not isinstance(ds, Dataset):
        raise ExportError(f"dataset must be a name, a path or a Dataset, got {type(ds).__name__}")
    ds.check_fits(shape, graph.n_outputs)
    idx = np.sort(rng.choice(len(ds.x_train), size=min(n_cal, len(ds.x_train)), replace=False))
    xtr, _ = to_tensors(ds.x_train[idx], ds.y_train[idx])
    n = len(ds.x_test) if n_eval <= 0 else min(n_eval, len(ds.x_test))
    xte, yte = to_tensors(ds.x_test[:n], ds.y_test[:n])
    cal = xtr.numpy().reshape((-1,) + shape)
    ev = xte.numpy().reshape((-1,) + shape)
    return cal, ev, yte.numpy(), f"{ds.name}: {len(cal)} training images for calibration, " \
                                 f"first {len(ev)} test images for verification"


# --------------------------------------------------------------------------------------------
# The export

def export_tflm(model, deployment, out_dir, dataset=None, **kw) -> dict:
    """Export `model` (a float torch module) for TFLite-Micro into `out_dir`; returns the report.

    deployment: an MCU Deployment (target + runtime + LUT-compression policy), or a Target,
    target name or path (its default deployment). dataset: 'fashion-mnist', 'mnist-10k', a
    directory, a Dataset, or None for random inputs (then no accuracy is reported).
    Keywords: input_shape, arena_margin (0.1), n_eval (1000 test samples verified in both
    interpreters; 0 = all), n_calibration, compress (auto | flash | off, overriding the
    deployment's policy), seed (0), overwrite (False), allow_overflow (False: a model that does
    not fit the target's flash or RAM is an ExportError; the report says by how much either way).
    TensorFlow's and LiteRT's C++ log lines go to the log file (edgeprune.logs).
    """
    from ..logs import native_stderr_to_log
    with native_stderr_to_log(), gc_paused():
        return _export_tflm(model, deployment, out_dir, dataset, **kw)


def _export_tflm(model, deployment, out_dir, dataset=None, *, input_shape=None,
                arena_margin: float = 0.1, n_eval: int = 1000, n_calibration: int = N_CALIBRATION,
                compress: Optional[str] = None, seed: int = SEED, overwrite: bool = False,
                allow_overflow: bool = False) -> dict:
    """Export `model` (a float torch module) for TFLite-Micro into `out_dir`; returns the report.

    deployment: an MCU Deployment (target + runtime + LUT-compression policy), or a Target,
    target name or path (its default deployment). dataset: 'fashion-mnist', 'mnist-10k', a
    directory, a Dataset, or None for random inputs (then no accuracy is reported).
    compress: auto | flash | off, overriding the deployment's policy.
    n_eval: test samples verified in both interpreters (0 = the whole test set).
    allow_overflow: write the files even when the model does not fit the target's flash or RAM
    (otherwise that is an ExportError; the report says by how much either way).
    """
    import torch
    from ..deploy import as_deployment
    from ..graph import extract
    from ..targets import require_kind

    dep = as_deployment(deployment)
    require_kind(dep.target, "mcu", "the TFLM export", "use 'edgeprune export finn' or 'hls'")
    if dep.runtime == "edgeprune-c":
        raise ExportError("runtime edgeprune-c is edgeprune's own C runtime, not TFLM: export it "
                          "with 'edgeprune export c'")
    check_output(out_dir, overwrite)
    if compress is not None:
        dep = dep.with_(compression=compress)
    target = dep.target
    if not 0 <= arena_margin <= 10:
        raise ExportError(f"--arena-margin must be between 0 and 10, got {arena_margin}")
    model = model.eval()
    graph = extract(model, input_shape)
    plan = tflm_plan.lower(graph)              # raises naming op and layer for anything TFLM lacks
    est = None                                 # the uncompressed file's flash estimate
    if not allow_overflow:
        # The flash estimate is the uncompressed file's size to the byte; LUT compression can
        # only shrink it, but not below the non-weight part: fail early on what cannot fit.
        est = tflm_memory.estimate_flash(graph, plan=plan)
        floor = est["overhead_bytes"] + sum(est["layers"].values()) // 8
        if floor > target.flash_kb * 1024:
            raise ExportError(f"does not fit {target.name}: flash at least {floor / 1024:,.1f} KB "
                              f"> {target.flash_kb:,} KB (nothing written; --allow-overflow "
                              f"writes it anyway)")
    torch.manual_seed(seed)

    cal, ev, labels, data_note = samples(model, graph, dataset, n_calibration, n_eval, seed)
    from .keras_mirror import build_keras_mirror, check_mirror, to_nhwc
    quiet_tf()
    import keras
    keras.utils.set_random_seed(seed)
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mirror = build_keras_mirror(model, graph, plan)
        mirror_diff = check_mirror(model, mirror, ev[:16])

    raw = convert_int8(mirror, to_nhwc(cal))
    plain = tflm_flatbuffer.canonicalize(raw)
    match_ops(plain, plan)              # the converter emitted exactly the planned ops

    # Clustered / few-valued weights: LUT-compress per channel where it pays.
    policy = dep.compression
    compress = policy != "off"
    counts = weight_value_counts(plain, plan)
    float_counts = _float_value_counts(model, graph, plan)
    compression: Dict[str, dict] = {}
    dropped_for_ram: List[str] = []
    tensor_bits: Dict[int, Tuple[int, int]] = {}
    # int4: weights on a grid of <= 16 uniform levels stored packed two per byte (CMSIS-NN
    # runs them directly: half the flash, nothing decoded into the arena, but more cycles: its
    # int4 kernels ran 1.3-2.3x the int8 cycles per layer on the Cortex-M4,
    # benchmarks/results/tflm_int4.md). 'flash' stores every such tensor as int4 unless a LUT
    # makes a smaller file. 'auto' weighs the cycles: int8 while the file fits the target's
    # flash; otherwise int4 for the largest such tensors until it fits (never a LUT for them:
    # a LUT's decoded copy costs the arena, and DECODE cycles too).
    int4_nodes: Dict[str, int] = {}
    int4_cands: Dict[int, dict] = {}
    int4_not_needed: List[str] = []
    if compress:
        from ..backends.tflm import int4 as tflm_int4
        int4_cands = tflm_int4.int4_candidates(plain)
        for node, c in counts.items():
            if c["tensor"] in int4_cands:
                int4_nodes[node] = c["tensor"]
        if policy == "auto" and int4_nodes:
            keep = tflm_int4.auto_choice({n: counts[n]["elements"] for n in int4_nodes}, len(plain),
                                         target.flash_kb * 1024 if target.flash_kb else None)
            int4_not_needed = sorted(set(int4_nodes) - set(keep))
            int4_nodes = {n: int4_nodes[n] for n in keep}
    for node, c in counts.items():
        bits = max(1, math.ceil(math.log2(c["max_values"]))) if c["max_values"] > 1 else 1
        t = plan.tensors[plan.op_for_node(node).inputs[1]]
        if node in int4_nodes:
            enc, anc = tflm_compress.lut_sizes(t, bits, c["max_values"])
            lut_bytes = (enc + anc + 12 * t.quant_channels + 2 * tflm_compress.FLATBUFFER_PER_TENSOR_BYTES
                         + tflm_compress.FLATBUFFER_PER_OP_BYTES)
            if policy == "flash" and bits <= tflm_compress.LUT_MAX_BITS and lut_bytes < -(-c["elements"] // 2):
                del int4_nodes[node]
            else:
                continue
        elif node in int4_not_needed:
            continue      # auto: int4-eligible, kept int8 (fits flash); a LUT would cost more
        if compress and bits <= tflm_compress.LUT_MAX_BITS and tflm_compress.lut_pays(t, bits, c["max_values"]):
            compression[node] = {"bits": bits, "values": c["max_values"]}
            tensor_bits[c["tensor"]] = (bits, c["axis"])
    # Decoded copies live in the arena (flash down, RAM up). Policy 'auto' keeps the set of
    # compressed tensors that minimises flash + arena bytes together: dropping the largest
    # decoded tensors first, since they set the arena's peak. 'flash' minimises flash alone.
    dropped_for_memory: List[str] = []
    if compression and policy == "auto":
        def memory_with(comp):
            return (tflm_memory.estimate_flash(graph, compression=comp or None, plan=plan)["total_bytes"]
                    + tflm_memory.estimate_arena(graph, compression=comp or None, plan=plan,
                                                 abi="host64")["total_bytes"])
        trial = dict(compression)
        best, best_bytes = dict(trial), memory_with(trial)
        for node in sorted(compression, key=lambda n: -counts[n]["elements"]):
            del trial[node]
            b = memory_with(trial)
            if b < best_bytes:
                best, best_bytes = dict(trial), b
        for node in [n for n in compression if n not in best]:
            dropped_for_memory.append(node)
            del tensor_bits[counts[node]["tensor"]]
            del compression[node]
    # Either way the arena must fit the target's RAM: drop the largest compressed tensors
    # until it does (only when it fits without them).
    ram_kb = target.ram_kb
    if compression and ram_kb:
        def arena_with(comp):
            return tflm_memory.estimate_arena(graph, compression=comp or None, plan=plan,
                                              abi="host64")["total_bytes"]
        if arena_with(compression) > ram_kb * 1024 and arena_with({}) <= ram_kb * 1024:
            for node in sorted(compression, key=lambda n: -counts[n]["elements"]):
                dropped_for_ram.append(node)
                del tensor_bits[counts[node]["tensor"]]
                del compression[node]
                if arena_with(compression) <= ram_kb * 1024:
                    break
    base = plain
    if int4_nodes:
        from ..backends.tflm import int4 as tflm_int4
        base = tflm_int4.to_int4(plain, sorted(int4_nodes.values()), int4_cands)
    final = tflm_compress.compress_model(base, tensor_bits) if tensor_bits else base

    # Verification
    q = io_quant(final)
    x_int8 = quantize_input(to_nhwc(ev), q["input_scale"], q["input_zero_point"])
    # TFLM runs in child processes while LiteRT and torch run here (see TflmRun); the first
    # child then also measures the minimum arena.
    tflm_final = TflmRun(final, x_int8, min_arena=True)
    out_litert = run_litert(plain, x_int8)
    out_fast = run_litert(plain, x_int8, reference=False)
    if labels is not None:       # the float model's outputs serve only the accuracy
        with torch.no_grad():
            float_out = model(torch.from_numpy(ev)).numpy()
    out_tflm, arena_total, alloc_text = tflm_final.result()
    lsb = int(np.max(np.abs(out_tflm.astype(np.int32) - out_litert.astype(np.int32))))
    lsb_fast = int(np.max(np.abs(out_tflm.astype(np.int32) - out_fast.astype(np.int32))))
    lut_exact = None
    if tensor_bits:
        out_plain, _, _ = run_tflm(base, x_int8)
        lut_exact = bool(np.array_equal(out_plain, out_tflm))
        if not lut_exact:
            raise ExportError("LUT-compressed model differs from the uncompressed one in the TFLM "
                              "runtime; refusing to write it")
    # The measured minimum: print_allocations() total, confirmed by running with exactly it.
    # print_allocations() gives the final head + tail; AllocateTensors can need more while it
    # runs (temp tensors, planner state), so the minimum is found by bisection (1 byte).
    arena_min = tflm_final.min_arena
    if arena_min is None:
        arena_min = tflm_min_arena(final, arena_total, x_int8)
    arena_size = tflm_memory.align(int(math.ceil(arena_min * (1 + arena_margin))))

    acc_float = acc_int8 = None
    if labels is not None:
        acc_float = float((float_out.argmax(1) == labels).mean())
        acc_int8 = float((out_tflm.reshape(len(labels), -1).argmax(1) == labels).mean())

    int4_list = sorted(int4_nodes)
    if est is not None and not compression and not int4_list:
        flash_est = est                        # the same arguments as above
    else:
        flash_est = tflm_memory.estimate_flash(graph, compression=compression or None, plan=plan,
                                               int4=int4_list)
    arena_est = tflm_memory.estimate_arena(graph, compression=compression or None, plan=plan,
                                           abi="host64", int4=int4_list)
    # the arena on the 32-bit target (arena_used_bytes() after AllocateTensors(), TFLM +
    # CMSIS-NN on the target's core: DSP, or MVE with its larger scratch buffers;
    # benchmarks/tflm_target.py and tflm_qemu.py measure it on QEMU)
    from ..cost.mcu import ISA
    arena_target = tflm_memory.estimate_arena(graph, compression=compression or None, plan=plan,
                                              abi="arm32", runtime="tflm-cmsis-nn", int4=int4_list,
                                              isa=ISA.get(target.core, "dsp"))
    # the arena edgeprune_model.cc allocates holds the target's need too (on an M55 CMSIS-NN's
    # MVE scratch buffers can exceed what the 64-bit host measured)
    arena_size = max(arena_size, tflm_memory.align(int(math.ceil(
        (arena_target["total_bytes"] + arena_target.get("init_headroom_bytes", 0)) * (1 + arena_margin)))))
    if int4_list:
        # TFLM's reference kernels (the host runtime) unpack int4 filters into an arena scratch
        # buffer as large as the filter; CMSIS-NN's int4 kernels read them packed. The arena in
        # edgeprune_model.cc is sized for the CMSIS-NN target from its estimate.
        arena_size = tflm_memory.align(int(math.ceil(arena_target["total_bytes"] * (1 + arena_margin))))
    ops = [op for op in _ops_used(final)]
    flash_kb, ram_kb = target.flash_kb, target.ram_kb
    report = {
        "model": getattr(model, "__class__", type(model)).__name__,
        "target": target.name,
        "runtime": dep.runtime,
        "deployment": dep.to_dict(),
        "flash_bytes_estimate": flash_est["total_bytes"],
        "flash_bytes_actual": len(final),
        "flash_error_pct": _pct(flash_est["total_bytes"], len(final)),
        "arena_bytes_estimate": arena_est["total_bytes"],
        "arena_bytes_measured": arena_min,
        "arena_bytes_print_allocations": arena_total,
        "arena_error_pct": _pct(arena_est["total_bytes"], arena_min),
        "arena_bytes_allocated": arena_size,
        "arena_bytes_target_estimate": arena_target["total_bytes"],
        "arena_target_note": ("estimated arena_used_bytes() on the 32-bit target (TFLM + CMSIS-NN, "
                              "Cortex-M with DSP; within 2 % on QEMU M4, "
                              "benchmarks/results/tflm_target_arena.md); arena_bytes_measured is "
                              "the 64-bit host runtime's minimum, which sizes the arena"),
        "arena_margin": arena_margin,
        "accuracy_float": acc_float,
        "accuracy_int8": acc_int8,
        "max_abs_diff_lsb_vs_litert": lsb,
        "max_abs_diff_lsb_vs_litert_optimized": lsb_fast,
        "lut_bit_exact_vs_uncompressed": lut_exact,
        "mirror_max_abs_diff": mirror_diff,
        "eval_samples": int(len(ev)),
        "data": data_note,
        "ops": ops,
        "io": q,
        "compressed_layers": compression,
        "int4_layers": int4_list,
        "int4_eligible_kept_int8_fits_flash": int4_not_needed,
        "not_compressed_to_fit_ram": dropped_for_ram,
        "compression_policy": policy,
        "not_compressed_flash_plus_ram_smaller": dropped_for_memory,
        "uncompressed_flash_bytes": len(plain),
        "weight_values": {n: {"float_max_per_channel": float_counts.get(n),
                              "int8_max_per_channel": c["max_values"]} for n, c in counts.items()},
        "fits_target": {
            "flash_kb": flash_kb, "ram_kb": ram_kb,
            "flash_fits": None if flash_kb is None else len(final) <= flash_kb * 1024,
            "arena_fits": None if ram_kb is None else arena_size <= ram_kb * 1024,
            "note": "arena measured on the 64-bit host runtime (reference kernels), and sized "
                    "from it; on the 32-bit target it is arena_bytes_target_estimate",
        },
        "arena_estimate_breakdown": {k: v for k, v in arena_est.items() if k != "layers"},
    }
    overflow = target_overflow(len(final), arena_size, target)
    report["fits_target"]["overflow"] = overflow
    if overflow and not allow_overflow:
        raise ExportError(f"does not fit {target.name}: {'; '.join(overflow)} (nothing written; "
                          f"--allow-overflow writes it anyway)")
    _write_outputs(Path(out_dir), final, report, arena_size, ops, overwrite)
    return report


def target_overflow(flash_bytes: int, arena_bytes: int, target) -> List[str]:
    """What exceeds the target's flash or RAM, and by how much."""
    out = []
    for what, used, kb in (("flash", flash_bytes, target.flash_kb),
                           ("RAM (arena)", arena_bytes, target.ram_kb)):
        if used > kb * 1024:
            out.append(f"{what} {used / 1024:,.1f} KB > {kb:,} KB by {(used - kb * 1024) / 1024:,.1f}"
                       f" KB ({100 * used / (kb * 1024):.0f} %)")
    return out


def _pct(est: int, real: int) -> float:
    return round(100.0 * (est - real) / real, 3) if real else 0.0


def _float_value_counts(model, graph, plan) -> Dict[str, int]:
    """Largest number of distinct float weights in one output channel, per weighted layer
    (after BN folding, which scales each channel and so keeps its count)."""
    res = {}
    for op in plan.ops:
        if op.opcode not in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"):
            continue
        w = model.get_submodule(graph[op.node].target).weight.detach().cpu().numpy()
        res[op.node] = int(max(len(np.unique(r)) for r in w.reshape(w.shape[0], -1)))
    return res


def _ops_used(model_bytes: bytes) -> List[str]:
    fb, m = _model_t(model_bytes)
    seen = []
    for op in m.subgraphs[0].operators:
        n = _opname(fb, m, op)
        if n not in seen:
            seen.append(n)
    return seen


# --------------------------------------------------------------------------------------------
# Output files

_RESOLVER = {  # TFLite op -> MicroMutableOpResolver call
    "CONV_2D": "AddConv2D()", "DEPTHWISE_CONV_2D": "AddDepthwiseConv2D()",
    "FULLY_CONNECTED": "AddFullyConnected()", "MAX_POOL_2D": "AddMaxPool2D()",
    "AVERAGE_POOL_2D": "AddAveragePool2D()", "RESHAPE": "AddReshape()",
    "SOFTMAX": "AddSoftmax()", "ADD": "AddAdd()", "CONCATENATION": "AddConcatenation()",
    "PAD": "AddPad()", "LOGISTIC": "AddLogistic()", "TANH": "AddTanh()", "RELU": "AddRelu()",
    "RELU6": "AddRelu6()", "TRANSPOSE": "AddTranspose()",
    "TFLM_DECODE": 'AddCustom("TFLM_DECODE", &g_decode_registration)',
}


def _c_array(data: bytes) -> str:
    lines = []
    for i in range(0, len(data), 12):
        lines.append("  " + ", ".join(f"0x{b:02x}" for b in data[i:i + 12]) + ",")
    return "\n".join(lines)


def _render(name: str, **kw) -> str:
    text = (TEMPLATES / name).read_text()
    for k, v in kw.items():
        text = text.replace("{{" + k + "}}", str(v))
    if "{{" in text:
        raise ExportError(f"template {name}: unfilled placeholder near "
                          f"{text[text.index('{{'):text.index('{{') + 30]!r}")
    return text


def _write_outputs(out: Path, model_bytes: bytes, report: dict, arena_size: int,
                   ops: Sequence[str], overwrite: bool) -> None:
    with staged_output(out, overwrite) as tmp:
        (tmp / "model.tflite").write_bytes(model_bytes)
        n = len(model_bytes)
        q = report["io"]
        (tmp / "model_data.h").write_text(_render("model_data.h", MODEL_LEN=n))
        (tmp / "model_data.cc").write_text(_render("model_data.cc", MODEL_LEN=n,
                                                   MODEL_BYTES=_c_array(model_bytes)))
        resolver = "\n".join(f"  if (g_resolver.{_RESOLVER[o]} != kTfLiteOk) return kTfLiteError;"
                             for o in ops)
        decode_decl = ("// DECODE (LUT decompression) is registered as the custom op TFLM_DECODE.\n"
                       "TFLMRegistration g_decode_registration = tflite::Register_DECODE();\n"
                       if "TFLM_DECODE" in ops else "")
        in_bytes = int(np.prod(q["input_shape"]))
        out_bytes = int(np.prod(q["output_shape"]))
        common = dict(ARENA_BYTES=arena_size, ARENA_MEASURED=report["arena_bytes_measured"],
                      ARENA_MARGIN_PCT=f"{100 * report['arena_margin']:g}",
                      INPUT_BYTES=in_bytes, OUTPUT_BYTES=out_bytes,
                      INPUT_SCALE=repr(q["input_scale"]), INPUT_ZP=q["input_zero_point"],
                      OUTPUT_SCALE=repr(q["output_scale"]), OUTPUT_ZP=q["output_zero_point"],
                      N_OPS=len(ops), OPS=", ".join(ops))
        (tmp / "edgeprune_model.h").write_text(_render("edgeprune_model.h", **common))
        (tmp / "edgeprune_model.cc").write_text(_render("edgeprune_model.cc", RESOLVER=resolver,
                                                        DECODE_DECL=decode_decl, **common))
        (tmp / "tflm.mk").write_text(_render("tflm.mk"))
        (tmp / "CMakeLists.txt").write_text(_render("CMakeLists.txt"))
        (tmp / "README.md").write_text(_render("README.md", REPORT=_readme_table(report), **common))
        (tmp / "report.json").write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")


def _readme_table(r: dict) -> str:
    def fmt(v):
        return "n/a" if v is None else (f"{100 * v:.2f} %" if isinstance(v, float) and v <= 1 else str(v))
    rows = [("flash (.tflite) bytes", r["flash_bytes_actual"], r["flash_bytes_estimate"]),
            ("arena bytes (measured minimum)", r["arena_bytes_measured"], r["arena_bytes_estimate"]),
            ("arena bytes allocated in edgeprune_model.cc", r["arena_bytes_allocated"], ""),
            ("arena bytes used on the 32-bit target (TFLM + CMSIS-NN)", "",
             r.get("arena_bytes_target_estimate", "n/a")),
            ("accuracy float / int8", f"{fmt(r['accuracy_float'])} / {fmt(r['accuracy_int8'])}", ""),
            ("max |TFLM - LiteRT| (int8 LSB)", r["max_abs_diff_lsb_vs_litert"], "")]
    lines = ["| quantity | measured | cost model |", "|---|---|---|"]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in rows]
    return "\n".join(lines)
