"""Building TFLite-Micro + CMSIS-NN from a user's TFLM tree for one core, with TFLM's own
Makefile, naming only the objects a model needs; cached per core and kernel set.

``--tflm-root PATH`` is a tflite-micro checkout (or a folder holding ``tflite-micro/``) whose
dependencies sit in ``tensorflow/lite/micro/tools/make/downloads/`` (CMSIS_6, Cortex_DFP,
CMSIS-NN, flatbuffers, gemmlowp, ruy), so that the Makefile downloads nothing. The build runs

    make -f tensorflow/lite/micro/tools/make/Makefile TARGET=cortex_m_generic TARGET_ARCH=ARCH \\
         TARGET_TOOLCHAIN_ROOT=<dir of arm-none-eabi-gcc>/ OPTIMIZED_KERNEL_DIR=cmsis_nn \\
         GENDIR=<cache>/gen/ -j N <object files>

with TFLM's flags (core at -Os, kernels and CMSIS-NN at -O2, -DTF_LITE_STATIC_MEMORY,
-funsigned-char) and archives the objects into ``<cache>/libtflm.a``. The objects: TFLM's
core library (its test helpers left out), the kernels of the ops the model uses and their
``*_common`` parts, and the CMSIS-NN sources those kernels can reach (``cmsis_closure``: calls
followed through the CMSIS-NN sources). Nothing is written
into the TFLM tree; the cache key is the tree's path and revision, the core and the op set.

TFLM's Makefile runs python3 generators while parsing; they need numpy and PIL (Debian's
python3-numpy, python3-pil on the system python3).
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from ..errors import EdgepruneError

MAKEFILE = "tensorflow/lite/micro/tools/make/Makefile"

# TFLM's TARGET_ARCH per core: the FPU variants, as an STM32L4 / H7 / U5 and the Alif E3 have one
TARGET_ARCH = {"cortex-m4": "cortex-m4+fp", "cortex-m7": "cortex-m7+fp", "cortex-m33": "cortex-m33",
               "cortex-m55": "cortex-m55", "cortex-m0plus": "cortex-m0plus"}

# TFLite builtin op -> (TFLM kernel sources, by stem; CMSIS-NN source folders they call)
OP_KERNELS: Dict[str, tuple] = {
    "CONV_2D": (("conv", "conv_common"), ("ConvolutionFunctions",)),
    # TransposeFunctions: the MVE wrapper turns a one-input-channel depthwise conv into a conv
    # (arm_depthwise_conv_to_conv_s8 -> arm_transpose_s8; other cores build it, never link it)
    "DEPTHWISE_CONV_2D": (("depthwise_conv", "depthwise_conv_common"),
                          ("ConvolutionFunctions", "TransposeFunctions")),
    "FULLY_CONNECTED": (("fully_connected", "fully_connected_common"), ("FullyConnectedFunctions",)),
    "MAX_POOL_2D": (("pooling", "pooling_common"), ("PoolingFunctions",)),
    "AVERAGE_POOL_2D": (("pooling", "pooling_common"), ("PoolingFunctions",)),
    "ADD": (("add", "add_common"), ("BasicMathFunctions",)),
    "MUL": (("mul", "mul_common"), ("BasicMathFunctions",)),
    "PAD": (("pad", "pad_common"), ("PadFunctions",)),
    "RESHAPE": (("reshape", "reshape_common"), ()),
    "SOFTMAX": (("softmax", "softmax_common"), ("SoftmaxFunctions",)),
    "CONCATENATION": (("concatenation",), ()),
    "RELU": (("activations", "activations_common"), ()),
    "RELU6": (("activations", "activations_common"), ()),
    "LOGISTIC": (("logistic", "logistic_common"), ()),
    "TANH": (("tanh",), ()),
    "TRANSPOSE": (("transpose", "transpose_common"), ()),
    "MEAN": (("reduce", "reduce_common"), ()),
    "QUANTIZE": (("quantize", "quantize_common"), ()),
    "DEQUANTIZE": (("dequantize", "dequantize_common"), ()),
}
ALWAYS_KERNELS = ("kernel_util", "micro_tensor_utils")
ALWAYS_CMSIS = ("NNSupportFunctions",)
# core-library objects a firmware never needs (test scaffolding)
SKIP_LIB = ("test_helper", "test_helpers", "test_helper_custom_ops")


class TflmBuildError(EdgepruneError):
    """The TFLM tree cannot be built (missing, incomplete, or a compile error)."""


def find_tree(root: Path) -> Path:
    root = Path(root)
    for cand in (root, root / "tflite-micro"):
        if (cand / MAKEFILE).is_file():
            return cand.resolve()
    raise TflmBuildError(f"{root}: no TFLite-Micro tree ({MAKEFILE} not found there or in "
                         f"{root / 'tflite-micro'})")


def _python_dir() -> Optional[str]:
    """A directory whose python3 has numpy and PIL (TFLM's Makefile runs python3 generators)."""
    for py in (shutil.which("python3"), "/usr/bin/python3"):
        if py and subprocess.run([py, "-c", "import numpy, PIL"], capture_output=True).returncode == 0:
            return str(Path(py).parent)
    return None


def _make_env() -> dict:
    env = dict(os.environ)
    d = _python_dir()
    if d is None:
        raise TflmBuildError("TFLM's Makefile needs a python3 with numpy and PIL (Debian: "
                             "apt-get install python3-numpy python3-pil)")
    env["PATH"] = d + os.pathsep + env.get("PATH", "")
    return env


KERNEL_SETS = ("cmsis_nn", "reference")


def _make_args(tree: Path, core: str, gendir: Path, kernels: str = "cmsis_nn") -> List[str]:
    gcc = shutil.which("arm-none-eabi-gcc")
    if gcc is None:
        raise TflmBuildError("arm-none-eabi-gcc not found (Debian: gcc-arm-none-eabi)")
    if core not in TARGET_ARCH:
        raise TflmBuildError(f"no TFLM build for {core} (cores: {', '.join(TARGET_ARCH)})")
    if kernels not in KERNEL_SETS:
        raise TflmBuildError(f"unknown TFLM kernel set '{kernels}' (one of {', '.join(KERNEL_SETS)})")
    opt = ["OPTIMIZED_KERNEL_DIR=cmsis_nn"] if kernels == "cmsis_nn" else []
    return ["make", "-s", "-C", str(tree), "-f", MAKEFILE, "TARGET=cortex_m_generic",
            f"TARGET_ARCH={TARGET_ARCH[core]}", f"TARGET_TOOLCHAIN_ROOT={Path(gcc).parent}/",
            *opt, f"GENDIR={gendir}/"]


def _revision(tree: Path) -> str:
    for f in (tree.parent / "versions.txt", tree / ".git" / "HEAD"):
        if f.is_file():
            return f.read_text()[:2000]
    return ""


@dataclass
class TflmLibrary:
    tree: Path
    core: str
    library: Path
    cflags: List[str]               # TFLM's CCFLAGS for the core (C sources)
    cxxflags: List[str]             # CXXFLAGS (C++)
    includes: List[str]             # -I flags, absolute
    objects: int
    cached: bool

    def machine_flags(self) -> List[str]:
        return [f for f in self.cxxflags if f.startswith(("-mcpu=", "-mfpu=", "-mfloat-abi=", "-mthumb"))]


def _query(tree: Path, core: str, gendir: Path, kernels: str = "cmsis_nn") -> dict:
    names = ["MICROLITE_LIB_OBJS", "MICROLITE_KERNEL_OBJS", "MICROLITE_THIRD_PARTY_KERNEL_OBJS",
             "CXXFLAGS", "CCFLAGS", "INCLUDES"]
    cmd = _make_args(tree, core, gendir, kernels) + [f"print-{n}" for n in names]
    p = subprocess.run(cmd, capture_output=True, text=True, env=_make_env())
    out = {}
    for line in p.stdout.splitlines():
        m = re.match(r"^(\w+)=(.*)$", line)
        if m and m.group(1) in names:
            out[m.group(1)] = m.group(2)
    if set(out) != set(names):
        raise TflmBuildError(f"TFLM's Makefile did not list its objects: {(p.stderr or p.stdout)[-600:]}")
    return out


def _split_flags(s: str) -> List[str]:
    import shlex
    return shlex.split(s)


_CALL = re.compile(r"\b(arm_\w+)\s*\(")
_DEF = re.compile(r"^[A-Za-z_][\w \t\*]*?\b(arm_\w+)\s*\([^;]*$", re.M)


def cmsis_closure(tree: Path, kernel_sources: Sequence[Path]) -> set:
    """CMSIS-NN source files (relative to its Source/ folder) reachable from the arm_*
    calls of `kernel_sources`: each file's function definitions are read, and calls are
    followed file by file, so that only the CMSIS-NN objects a kernel can reach are built."""
    src = tree / "tensorflow/lite/micro/tools/make/downloads/cmsis_nn/Source"
    defs: Dict[str, str] = {}
    calls: Dict[str, set] = {}
    for f in src.rglob("*.c"):
        text = f.read_text(errors="replace")
        rel = str(f.relative_to(src))
        calls[rel] = set(_CALL.findall(text))
        for name in _DEF.findall(text):
            defs.setdefault(name, rel)
    todo = set()
    for k in kernel_sources:
        if k.is_file():
            todo |= set(_CALL.findall(k.read_text(errors="replace")))
    files: set = set()
    seen: set = set()
    while todo:
        sym = todo.pop()
        if sym in seen:
            continue
        seen.add(sym)
        f = defs.get(sym)
        if f is not None and f not in files:
            files.add(f)
            todo |= calls[f]
    return files


def select_objects(vars_: dict, ops: Sequence[str], tree: Optional[Path] = None) -> List[str]:
    """The object files the ops need (see the module docstring)."""
    unknown = [o for o in ops if o not in OP_KERNELS]
    if unknown:
        raise TflmBuildError(f"no TFLM kernel mapping for op(s) {', '.join(unknown)}")
    stems = set(ALWAYS_KERNELS)
    folders = set(ALWAYS_CMSIS)
    for o in ops:
        stems.update(OP_KERNELS[o][0])
        folders.update(OP_KERNELS[o][1])
    objs = [o for o in vars_["MICROLITE_LIB_OBJS"].split()
            if Path(o).stem not in SKIP_LIB]
    for o in vars_["MICROLITE_KERNEL_OBJS"].split():
        if "/micro/kernels/" in o and Path(o).stem in stems:
            objs.append(o)
    reach = None
    if tree is not None:
        kdir = tree / "tensorflow/lite/micro/kernels"
        ksrc = [kdir / "cmsis_nn" / f"{st}.cc" for st in stems] + [kdir / f"{st}.cc" for st in stems]
        reach = cmsis_closure(tree, ksrc)
    for o in vars_["MICROLITE_THIRD_PARTY_KERNEL_OBJS"].split():
        m = re.search(r"/cmsis_nn/Source/(([^/]+)/[^/]+)\.o$", o)
        if not m or m.group(2) not in folders:
            continue
        if reach is None or m.group(1) + ".c" in reach:
            objs.append(o)
    return objs


def build_tflm(tflm_root, core: str, ops: Sequence[str], cache_dir, jobs: int = 2,
               log=None, kernels: str = "cmsis_nn") -> TflmLibrary:
    """libtflm.a for `core` and the kernels of `ops`, built in (or reused from) `cache_dir`.
    ``kernels``: 'cmsis_nn' (TFLM's CMSIS-NN kernels, the tflm-cmsis-nn runtime) or
    'reference' (TFLM's reference kernels, the tflm-reference runtime)."""
    tree = find_tree(Path(tflm_root))
    ops = sorted(set(ops))
    ident = [str(tree), _revision(tree), core, TARGET_ARCH.get(core)]
    if kernels != "cmsis_nn":
        ident.append(kernels)
    base = hashlib.sha256(json.dumps(ident).encode()).hexdigest()[:16]
    key = hashlib.sha256(json.dumps([base, ops]).encode()).hexdigest()[:16]
    cache = Path(cache_dir).absolute()
    # a library built for this tree and core with a superset of the ops serves as well
    for info_path in sorted(cache.glob(f"tflm-{core}-*/build.json")):
        try:
            info = json.loads(info_path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        lib = info_path.parent / "libtflm.a"
        if info.get("base") == base and set(info.get("ops", ())) >= set(ops) and lib.is_file():
            return TflmLibrary(tree, core, lib, info["cflags"], info["cxxflags"], info["includes"],
                               info["objects"], True)
    work = cache / f"tflm-{core}-{key}"
    gendir = work / "gen"
    lib = work / "libtflm.a"
    info_path = work / "build.json"
    work.mkdir(parents=True, exist_ok=True)
    vars_ = _query(tree, core, gendir, kernels)
    objs = select_objects(vars_, ops, tree)
    cmd = _make_args(tree, core, gendir, kernels) + [f"-j{jobs}"] + objs
    p = subprocess.run(cmd, capture_output=True, text=True, env=_make_env())
    if log is not None:
        Path(log).write_text(p.stdout + p.stderr)
    if p.returncode != 0:
        raise TflmBuildError(f"building TFLM for {core} failed: {(p.stderr or p.stdout)[-1500:]}")
    tmp_lib = work / "libtflm.a.tmp"
    tmp_lib.unlink(missing_ok=True)
    subprocess.run(["arm-none-eabi-ar", "rcs", str(tmp_lib), *objs], check=True, cwd=tree)
    includes = []
    for f in _split_flags(vars_["INCLUDES"]):
        if f.startswith("-I"):
            d = f[2:]
            includes.append("-I" + str((tree / d).resolve() if not os.path.isabs(d) else Path(d)))
    info = {"cflags": _split_flags(vars_["CCFLAGS"]), "cxxflags": _split_flags(vars_["CXXFLAGS"]),
            "includes": includes, "objects": len(objs), "ops": ops, "core": core,
            "target_arch": TARGET_ARCH[core], "tree": str(tree), "base": base, "kernels": kernels}
    info_path.write_text(json.dumps(info, indent=1))
    tmp_lib.replace(lib)
    return TflmLibrary(tree, core, lib, info["cflags"], info["cxxflags"], includes, len(objs), False)
