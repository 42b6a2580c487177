"""Building generated C: on the host (to run it on test inputs and compare with LiteRT / TFLM),
and cross-compiled for a Cortex-M core (to read flash and RAM from the object sizes).

Tools: the host C compiler (``cc``, or $CC) and Debian's ``gcc-arm-none-eabi`` (arm-none-eabi-gcc,
-size, -objdump). Both are optional for the export: without them the report says what was not
checked.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

from ...errors import EdgepruneError

CFLAGS = ["-std=c99", "-O2", "-Wall", "-Wextra"]

_HARNESS = r"""
#include <stdio.h>
#include <stdint.h>
#include "edgeprune_model.h"
/* Reads int8 inputs from stdin, one EDGEPRUNE_INPUT_BYTES record per sample, and writes the
 * outputs to stdout; alternates between the copying and the zero-copy call. */
int main(void) {
  static int8_t in[EDGEPRUNE_INPUT_BYTES], out[EDGEPRUNE_OUTPUT_BYTES];
  unsigned long n = 0;
  while (fread(in, 1, sizeof in, stdin) == sizeof in) {
    if (n++ & 1) {
      int8_t *dst = edgeprune_input();
      for (unsigned i = 0; i < sizeof in; i++) dst[i] = in[i];
      if (edgeprune_invoke(dst, out) != 0) return 1;
    } else if (edgeprune_invoke(in, out) != 0) {
      return 1;
    }
    if (fwrite(out, 1, sizeof out, stdout) != sizeof out) return 1;
  }
  return 0;
}
"""


class BuildError(EdgepruneError):
    """The generated C did not compile or run (a bug: please report it)."""


def host_cc() -> Optional[str]:
    cc = os.environ.get("CC")
    for c in ([cc] if cc else []) + ["cc", "gcc", "clang"]:
        if c and shutil.which(c):
            return c
    return None


def c_sources(src_dir: Path) -> List[Path]:
    return sorted(p for p in Path(src_dir).glob("*.c"))


@dataclass
class HostBuild:
    exe: Path
    warnings: str


def build_host(src_dir: Path, work: Path, extra_flags: Optional[List[str]] = None) -> HostBuild:
    cc = host_cc()
    if cc is None:
        raise BuildError("no host C compiler (cc, gcc or clang) found")
    work.mkdir(parents=True, exist_ok=True)
    (work / "harness.c").write_text(_HARNESS)
    exe = work / "model_host"
    cmd = [cc] + CFLAGS + (extra_flags or []) + ["-I", str(src_dir), "-o", str(exe),
                                                 str(work / "harness.c")] + [str(p) for p in c_sources(src_dir)]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        raise BuildError(f"host compile failed: {p.stderr.strip()[-2000:]}")
    return HostBuild(exe, p.stderr)


def run_host(build: HostBuild, x_int8: np.ndarray, out_bytes: int) -> np.ndarray:
    data = np.ascontiguousarray(x_int8.astype(np.int8)).tobytes()
    p = subprocess.run([str(build.exe)], input=data, capture_output=True, timeout=600)
    if p.returncode != 0:
        raise BuildError(f"the host build of the model failed (exit {p.returncode})")
    out = np.frombuffer(p.stdout, dtype=np.int8)
    if out.size != len(x_int8) * out_bytes:
        raise BuildError(f"the host build wrote {out.size} bytes for {len(x_int8)} inputs")
    return out.reshape(len(x_int8), out_bytes)


# --------------------------------------------------------------------------------------------
# Cross compilation

CORE_FLAGS = {
    "cortex-m0plus": ["-mcpu=cortex-m0plus", "-mthumb"],
    "cortex-m0": ["-mcpu=cortex-m0", "-mthumb"],
    "cortex-m3": ["-mcpu=cortex-m3", "-mthumb"],
    "cortex-m4": ["-mcpu=cortex-m4", "-mthumb"],
    "cortex-m7": ["-mcpu=cortex-m7", "-mthumb"],
    "cortex-m33": ["-mcpu=cortex-m33", "-mthumb"],
    "cortex-m55": ["-mcpu=cortex-m55", "-mthumb"],
}


def arm_gcc() -> Optional[str]:
    return shutil.which("arm-none-eabi-gcc")


@dataclass
class CrossBuild:
    core: str
    sections: Dict[str, int]           # summed over the objects: text, rodata, data, bss
    stack_bytes: Optional[int]         # deepest static call chain from edgeprune_invoke
    warnings: str
    objects: List[Path] = field(default_factory=list)

    @property
    def flash_bytes(self) -> int:
        return self.sections["text"] + self.sections["rodata"] + self.sections["data"]

    @property
    def ram_bytes(self) -> int:
        return self.sections["data"] + self.sections["bss"] + (self.stack_bytes or 0)


def cross_compile(src_dir: Path, core: str, work: Path, extra_flags: Optional[List[str]] = None) -> CrossBuild:
    """Compile every .c of src_dir for `core` (arm-none-eabi-gcc -O2 -ffunction-sections
    -fstack-usage) and measure: flash = .text + .rodata + .data (initial values), RAM = .data +
    .bss + the stack of the deepest call chain from edgeprune_invoke (-fstack-usage frames over
    the call graph from the disassembly; newlib's memcpy / memset, leaf functions, excluded)."""
    gcc = arm_gcc()
    if gcc is None or core not in CORE_FLAGS:
        raise BuildError(f"cannot cross-compile for {core}: arm-none-eabi-gcc missing or core unknown")
    work.mkdir(parents=True, exist_ok=True)
    objs: List[Path] = []
    warnings = ""
    for src in c_sources(src_dir):
        obj = work / (src.stem + ".o")
        cmd = [gcc] + CFLAGS + CORE_FLAGS[core] + ["-fstack-usage", "-I", str(src_dir), "-c",
                                                   str(src), "-o", str(obj)] + (extra_flags or [])
        p = subprocess.run(cmd, capture_output=True, text=True, cwd=work)
        if p.returncode != 0:
            raise BuildError(f"{src.name} does not compile for {core}: {p.stderr.strip()[-2000:]}")
        warnings += p.stderr
        objs.append(obj)
    sections = {"text": 0, "rodata": 0, "data": 0, "bss": 0}
    for obj in objs:
        p = subprocess.run(["arm-none-eabi-size", "-A", str(obj)], capture_output=True, text=True)
        for line in p.stdout.splitlines():
            parts = line.split()
            if len(parts) < 2 or not parts[1].isdigit():
                continue
            name, size = parts[0], int(parts[1])
            for key in sections:
                if name == f".{key}" or name.startswith(f".{key}."):
                    sections[key] += size
    return CrossBuild(core, sections, _stack_depth(objs, work), warnings, objs)


def _stack_depth(objs: List[Path], work: Path) -> Optional[int]:
    frames: Dict[str, int] = {}
    for su in work.glob("*.su"):
        for line in su.read_text().splitlines():
            m = re.match(r"^\S+:\d+:\d+:(\S+)\s+(\d+)\s+(\S+)", line)
            if m:
                frames[m.group(1)] = int(m.group(2))
    calls: Dict[str, set] = {}
    for obj in objs:
        p = subprocess.run(["arm-none-eabi-objdump", "-dr", str(obj)], capture_output=True, text=True)
        func = None
        for line in p.stdout.splitlines():
            m = re.match(r"^[0-9a-f]+ <([^>]+)>:", line)
            if m:
                func = m.group(1)
                calls.setdefault(func, set())
                continue
            m = re.search(r"R_ARM_THM_CALL\s+(\S+)", line) or re.search(r"\bbl\s+[0-9a-f]+ <([^>+]+)>", line)
            if m and func:
                calls[func].add(m.group(1))
    if "edgeprune_invoke" not in frames:
        return None

    def depth(f: str, seen: tuple) -> int:
        if f in seen:
            raise BuildError(f"recursion through {f}")
        # GCC's clones are 'f.isra.0' in the disassembly but 'f.isra' in the .su file
        frame = frames.get(f, frames.get(re.sub(r"\.\d+$", "", f), 0))
        return frame + max((depth(c, seen + (f,)) for c in calls.get(f, ())), default=0)
    return depth("edgeprune_invoke", ())


def tool_versions() -> Dict[str, str]:
    out = {}
    for name, cmd in (("host_cc", [host_cc() or "cc", "--version"]),
                      ("arm_gcc", ["arm-none-eabi-gcc", "--version"])):
        try:
            out[name] = subprocess.run(cmd, capture_output=True, text=True).stdout.splitlines()[0]
        except (OSError, IndexError):
            out[name] = None
    return out


def temp_dir(prefix: str) -> tempfile.TemporaryDirectory:
    return tempfile.TemporaryDirectory(prefix=prefix)
