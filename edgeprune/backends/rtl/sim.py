"""Verilator simulation of a generated design: bit-exactness against the integer reference, and
the cycle counts (initiation interval, latency) against the plan.

The testbench streams the images back to back (input valid whenever pixels remain, output always
ready), one pixel of all channels per beat, and records for every image the cycle its first pixel
is accepted and the cycle its output beat leaves. II = the distance between consecutive outputs
in steady state; latency = first image's output cycle - its first pixel's cycle (empty pipeline).
Torch-free.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

from .ir import RtlError
from .plan import Plan
from .verilog import TOP, generate, verilog_sources

_TB = r"""// edgeprune Verilator testbench (generated)
#include "V@TOP@.h"
#include "verilated.h"
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <vector>

static inline uint32_t word_of(uint64_t v, int i) {
  return i == 0 ? (uint32_t)v : (i == 1 ? (uint32_t)(v >> 32) : 0u);
}
template <std::size_t N> static inline uint32_t word_of(const VlWide<N>& v, int i) {
  return (i < (int)N) ? v[i] : 0u;
}

int main(int argc, char** argv) {
  Verilated::commandArgs(argc, argv);
  if (argc < 4) { fprintf(stderr, "usage: tb PIXELS N OUT\n"); return 2; }
  const long n = atol(argv[2]);
  const int beats = @BEATS@, chans = @CHANS@, outs = @OUTS@, ob = @OB@;
  std::vector<uint8_t> px((size_t)n * beats * chans);
  FILE* f = fopen(argv[1], "rb");
  if (!f || fread(px.data(), 1, px.size(), f) != px.size()) { fprintf(stderr, "bad pixels\n"); return 2; }
  fclose(f);
  FILE* o = fopen(argv[3], "w");
  V@TOP@* t = new V@TOP@;
  t->clk = 0; t->rst = 1; t->in_valid = 0; t->out_ready = 1; t->in_data = 0;
  for (int i = 0; i < 4; i++) { t->clk = 0; t->eval(); t->clk = 1; t->eval(); }
  t->rst = 0;
  long cyc = 0, beat = 0, nout = 0;
  const long total = n * beats, limit = @LIMIT@L * (n + 2);
  std::vector<long> start(n, -1);
  while (nout < n && cyc < limit) {
    t->in_valid = beat < total;
    if (beat < total) {
      uint64_t v = 0;
      for (int c = 0; c < chans; c++) v |= (uint64_t)px[(size_t)beat * chans + c] << (8 * c);
      t->in_data = v;
    }
    t->clk = 0; t->eval();
    const bool in_fire = t->in_valid && t->in_ready;
    const bool out_fire = t->out_valid && t->out_ready;
    if (in_fire && beat % beats == 0) start[beat / beats] = cyc;
    if (out_fire) {
      fprintf(o, "%ld %ld", start[nout], cyc);
      for (int j = 0; j < outs; j++) {
        int64_t val = 0;
        for (int b = 0; b < ob; b++) {
          const int bit = j * ob + b;
          val |= (int64_t)((word_of(t->out_data, bit / 32) >> (bit % 32)) & 1u) << b;
        }
        if (val & ((int64_t)1 << (ob - 1))) val -= (int64_t)1 << ob;
        fprintf(o, " %lld", (long long)val);
      }
      fprintf(o, "\n");
      nout++;
    }
    t->clk = 1; t->eval();
    if (in_fire) beat++;
    cyc++;
  }
  fclose(o);
  t->final();
  delete t;
  return nout == n ? 0 : 3;
}
"""


@dataclass
class SimResult:
    images: int
    exact_images: int
    mismatched_outputs: int
    ii_cycles: Optional[int]              # steady-state distance between outputs (None: < 3 images)
    ii_min: Optional[int]
    ii_max: Optional[int]
    latency_cycles: int
    outputs: np.ndarray

    @property
    def bit_exact(self) -> bool:
        return self.exact_images == self.images

    def to_dict(self) -> Dict:
        return {"images": self.images, "exact_images": self.exact_images,
                "mismatched_outputs": self.mismatched_outputs, "bit_exact": self.bit_exact,
                "ii_cycles_measured": self.ii_cycles, "ii_min": self.ii_min,
                "ii_max": self.ii_max, "latency_cycles_measured": self.latency_cycles}


def verilator_available() -> bool:
    return shutil.which("verilator") is not None


def build_simulator(plan: Plan, workdir: Path, timeout: int = 900) -> Path:
    """Write the design and testbench into `workdir` and compile them with Verilator."""
    if not verilator_available():
        raise RtlError("verilator is not installed (apt-get install verilator)")
    first, last = plan.units[0], plan.units[-1]
    if first.in_elems > 8:
        raise RtlError("the testbench streams at most 8 input channels per pixel")
    c, h, w = plan.input_shape
    workdir.mkdir(parents=True, exist_ok=True)
    files = generate(plan)
    for name, text in files.items():
        (workdir / name).write_text(text)       # the ROM .hex files: read at run time, here
    srcs = verilog_sources(files)
    tb = (_TB.replace("@TOP@", TOP).replace("@BEATS@", str(h * w)).replace("@CHANS@", str(c))
          .replace("@OUTS@", str(last.out_elems)).replace("@OB@", str(last.out_bits))
          .replace("@LIMIT@", str(4 * plan.latency_bound_cycles + 1000)))
    (workdir / "tb.cpp").write_text(tb)
    cmd = ["verilator", "--cc", "--exe", "--build", "-O1", "-j", "1", "--top-module", TOP,
           "-Wno-fatal", "-Wno-lint", "-Wno-WIDTH", "--Mdir", "obj", "-o", "Vtb",
           "-CFLAGS", "-O1"] + srcs + ["tb.cpp"]
    env = dict(os.environ, MAKEFLAGS="-j1")
    r = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, timeout=timeout, env=env)
    if r.returncode != 0:
        err = [l for l in (r.stderr + r.stdout).splitlines() if "Error" in l or "error" in l]
        raise RtlError(f"Verilator build failed: {(err or ['?'])[0][:200]}")
    return workdir / "obj" / "Vtb"


def simulate(plan: Plan, x_pixels: np.ndarray, expected: Optional[np.ndarray] = None,
             workdir: Optional[Path] = None, timeout: int = 1800) -> SimResult:
    """Run `x_pixels` (N, C, H, W) 0..255 through the design; compare with `expected` (N, out)."""
    x = np.asarray(x_pixels)
    n = len(x)
    tmp = None
    if workdir is None:
        tmp = tempfile.TemporaryDirectory(prefix="edgeprune-rtl-")
        workdir = Path(tmp.name)
    try:
        exe = build_simulator(plan, Path(workdir))
        pix = np.ascontiguousarray(x.astype(np.uint8).transpose(0, 2, 3, 1))  # raster, channels last
        (Path(workdir) / "pixels.bin").write_bytes(pix.tobytes())
        r = subprocess.run([str(exe), "pixels.bin", str(n), "outputs.txt"], cwd=workdir,
                           capture_output=True, text=True, timeout=timeout)
        if r.returncode != 0:
            raise RtlError(f"simulation did not finish: exit {r.returncode} "
                           f"({(r.stderr.strip().splitlines() or ['no output'])[-1][:160]})")
        rows = np.loadtxt(Path(workdir) / "outputs.txt", dtype=np.int64, ndmin=2)
    finally:
        if tmp is not None:
            tmp.cleanup()
    start, end, out = rows[:, 0], rows[:, 1], rows[:, 2:]
    gaps = np.diff(end)[1:] if n >= 3 else np.array([], dtype=np.int64)
    if expected is None:
        exact, mism = n, 0
    else:
        exp = np.asarray(expected, dtype=np.int64).reshape(out.shape)
        exact = int(np.all(out == exp, axis=1).sum())
        mism = int((out != exp).sum())
    return SimResult(n, exact, mism,
                     int(np.bincount(gaps).argmax()) if len(gaps) else None,
                     int(gaps.min()) if len(gaps) else None,
                     int(gaps.max()) if len(gaps) else None,
                     int(end[0] - start[0]), out)
