"""The verify stage: each exported artefact executed on the test set, one verifier per export kind.

``VERIFIERS[kind](export_dir, VerifyContext) -> dict`` with

    status               "pass" | "fail" | "not verified"
    runs                 [{"runtime", "images", "accuracy", "source"}]: the artefact executed
    checks               [{"what", "ok", "detail"}]: agreement between runtimes, fits, ...
    estimate_vs_measured [{"quantity", "unit", "estimate", "measured", "source"}]

A verifier for a new export kind (the RTL export's Verilator run, the C runtime under QEMU) is one
function registered in VERIFIERS; the recipe's EXPORT_KINDS names the target kind it builds for.

What each executes now:
- tflm: model.tflite in the tflite-micro interpreter with the arena the export allocated, and in
  LiteRT's reference kernels; int8 outputs compared (at most 1 LSB apart: the two runtimes round
  requantization differently, see docs/tflm_export.md), accuracy of each.
- c:    the generated C compiled with the host compiler and run; outputs compared with TFLM's on
  the same model.tflite (bit-exact is what the runtime promises), accuracy; then, where
  qemu-system-arm and arm-none-eabi-gcc are installed and the target's core has a QEMU board,
  the same sources on the emulated core (edgeprune.verify): bit-exact with the host build, and
  the estimated instructions, cycles, flash and RAM against the measured ones.
- finn: model.onnx (QONNX) executed with qonnx; FINN's verify pair (verify/input.npy,
  expected_output.npy: the Brevitas model's output) reproduced exactly; accuracy on at most
  `qonnx_images` test images (qonnx runs node by node in Python).
- hls:  the g++ C-simulation of the written hls4ml project, compared bit for bit with the
  Brevitas model; run by the export itself (compiling the project takes a minute), so this
  verifier reads its record rather than compiling it a second time.
"""
from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict

import numpy as np

from ..artifacts import read_json

# TFLM and LiteRT's reference kernels round requantization differently; the exports record
# max 1 LSB between them on the zoo models (docs/tflm_export.md).
TFLM_VS_LITERT_MAX_LSB = 1


@dataclass
class VerifyContext:
    dataset: Any                # edgeprune.data.Dataset (full test split)
    images: int = 0             # test images to run (0 = all)
    qonnx_images: int = 0       # at most this many for QONNX execution (0 = as `images`)

    def test_split(self, cap: int = 0):
        n = len(self.dataset.x_test) if self.images <= 0 else min(self.images, len(self.dataset.x_test))
        if cap > 0:
            n = min(n, cap)
        return self.dataset.x_test[:n], self.dataset.y_test[:n]


def _nhwc_float(x_uint8: np.ndarray, nhwc_shape) -> np.ndarray:
    x = x_uint8.astype(np.float32) / 255.0
    if x.ndim == 4:                          # (N, C, H, W) data set images
        x = x.transpose(0, 2, 3, 1)
    return x.reshape((len(x),) + tuple(nhwc_shape[1:]))


def _accuracy(out: np.ndarray, y: np.ndarray) -> float:
    return float((out.reshape(len(y), -1).argmax(1) == y).mean())


def _int8_inputs(model_bytes: bytes, x_uint8: np.ndarray):
    from ..export.tflm import io_quant, quantize_input
    q = io_quant(model_bytes)
    return quantize_input(_nhwc_float(x_uint8, q["input_shape"]), q["input_scale"],
                          q["input_zero_point"]), q


def verify_tflm(d: Path, v: VerifyContext) -> Dict[str, Any]:
    from ..export.tflm import run_litert, run_tflm
    model = (d / "model.tflite").read_bytes()
    rep = read_json(d / "report.json", "export report")
    x, y = v.test_split()
    x8, _ = _int8_inputs(model, x)
    t0 = time.time()
    out_tflm, _, _ = run_tflm(model, x8, arena_size=int(rep["arena_bytes_allocated"]))
    runs = [{"runtime": "TFLM (tflite-micro interpreter)", "model_stage": "int8 TFLM",
             "images": int(len(y)), "accuracy": _accuracy(out_tflm, y)}]
    checks = []
    if rep.get("compressed_layers"):
        # LiteRT cannot read TFLM's LUT compression; the export checked that the compressed
        # model is bit-exact with the uncompressed one in TFLM, and compared that with LiteRT.
        checks.append({"what": "LUT-compressed = uncompressed model in TFLM (checked at export)",
                       "ok": bool(rep.get("lut_bit_exact_vs_uncompressed")),
                       "detail": f"compressed layers: {', '.join(rep['compressed_layers'])}; LiteRT "
                                 f"vs TFLM on the uncompressed model at export: "
                                 f"{rep.get('max_abs_diff_lsb_vs_litert')} LSB on "
                                 f"{rep.get('eval_samples')} images"})
    else:
        out_lite = run_litert(model, x8).reshape(out_tflm.shape)
        lsb = int(np.abs(out_tflm.astype(np.int32) - out_lite.astype(np.int32)).max())
        checks.append({"what": f"TFLM vs LiteRT reference: max |diff| <= {TFLM_VS_LITERT_MAX_LSB} LSB",
                       "ok": lsb <= TFLM_VS_LITERT_MAX_LSB, "detail": f"{lsb} LSB on {len(y)} images"})
        runs.append({"runtime": "LiteRT reference kernels", "model_stage": "int8 LiteRT",
                     "images": int(len(y)), "accuracy": _accuracy(out_lite, y)})
    fits = rep.get("fits_target", {})
    checks += [
        {"what": "runs in the arena the export allocates", "ok": True,
         "detail": f"{rep['arena_bytes_allocated']} B (measured minimum "
                   f"{rep['arena_bytes_measured']} B + {100 * rep['arena_margin']:.0f} %)"},
        {"what": "fits the target's flash and RAM", "ok": not fits.get("overflow"),
         "detail": "; ".join(fits.get("overflow") or []) or
                   f"flash {len(model)} B of {fits.get('flash_kb')} KiB, arena "
                   f"{rep['arena_bytes_allocated']} B of {fits.get('ram_kb')} KiB"},
    ]
    return {
        "status": "pass" if all(c["ok"] for c in checks) else "fail",
        "seconds": round(time.time() - t0, 2),
        "runs": runs,
        "checks": checks,
        "estimate_vs_measured": [
            {"quantity": "flash (.tflite)", "unit": "B", "estimate": rep["flash_bytes_estimate"],
             "measured": len(model), "source": "size of model.tflite"},
            {"quantity": "tensor arena", "unit": "B", "estimate": rep["arena_bytes_estimate"],
             "measured": rep["arena_bytes_measured"],
             "source": "TFLM host runtime, minimum found by bisection at export"}],
    }


def verify_c(d: Path, v: VerifyContext) -> Dict[str, Any]:
    from ..backends.c import build as cbuild
    from ..export.tflm import run_tflm
    rep = read_json(d / "report.json", "export report")
    if cbuild.host_cc() is None:
        return {"status": "not verified", "detail": "no host C compiler (cc, gcc or clang)",
                "runs": [], "checks": []}
    model = (d / "model.tflite").read_bytes()
    x, y = v.test_split()
    x8, q = _int8_inputs(model, x)
    out_bytes = int(np.prod(q["output_shape"]))
    t0 = time.time()
    with tempfile.TemporaryDirectory(prefix="edgeprune-verify-c-") as tmp:
        hb = cbuild.build_host(d, Path(tmp) / "host")
        out_c = cbuild.run_host(hb, x8, out_bytes)
    out_tflm, _, _ = run_tflm(model, x8)
    out_tflm = out_tflm.reshape(out_c.shape)
    differ = int((out_c != out_tflm).sum())
    checks = [{"what": "host build of the C sources = TFLM on model.tflite, bit for bit",
               "ok": differ == 0, "detail": f"{differ} output values differ on {len(y)} images"}]
    runs = [{"runtime": "edgeprune-c, host build (cc -O2)", "model_stage": "int8 C runtime",
             "images": int(len(y)), "accuracy": _accuracy(out_c, y)}]
    measured = _qemu_c(d, rep, x8, y, checks, runs)
    cross = rep.get("cross") or {}
    if cross:
        over = (rep.get("fits_target") or {}).get("overflow") or []
        checks.append({"what": "fits the target's flash and RAM (arm-none-eabi-gcc sizes)",
                       "ok": not over, "detail": "; ".join(over) or
                       f"flash {cross['flash_bytes']} B, RAM {cross['ram_bytes']} B"})
    return {
        "status": "pass" if all(c["ok"] for c in checks) else "fail",
        "seconds": round(time.time() - t0, 2),
        "runs": runs,
        "checks": checks,
        "estimate_vs_measured": measured or ([
            {"quantity": "arena (RAM for activations)", "unit": "B",
             "estimate": rep.get("arena_bytes"), "measured": None,
             "source": "edgeprune-c planner; measured only under QEMU (edgeprune verify --qemu)"}]
            if rep.get("arena_bytes") else []),
    }


# Images run on the emulated core: their inputs are linked into the firmware image, whose flash
# on the smallest board (mps2-an386: 4 MB) must also hold the model.
QEMU_IMAGES = 500


def _qemu_c(d: Path, rep: Dict[str, Any], x8: np.ndarray, y: np.ndarray, checks, runs):
    """The C export run on QEMU's board for its core (edgeprune.verify.c_runtime), when
    qemu-system-arm and arm-none-eabi-gcc are installed and the core has a board: outputs
    compared with the host build, and the estimate against the measured instructions, cycles,
    flash and RAM. Returns the estimate-vs-measured rows ([] when not run)."""
    import shutil
    from ..verify.boards import BOARDS
    from ..verify.c_runtime import verify_c as qemu_verify_c
    core = rep.get("core")
    if core not in BOARDS or not (shutil.which("qemu-system-arm") and shutil.which("arm-none-eabi-gcc")):
        checks.append({"what": "run on an emulated Cortex-M (QEMU)", "ok": True,
                       "detail": f"not run: {'no QEMU board for ' + str(core) if core not in BOARDS else 'qemu-system-arm or arm-none-eabi-gcc missing'}"})
        return []
    n = min(len(y), QEMU_IMAGES)
    res, _, emu = qemu_verify_c(d, core, x8[:n], labels=y[:n], layer_counts=False, trace=True,
                                input_note=f"first {n} test images")
    checks.append({"what": f"{core} under QEMU ({res['board']}) = host build, bit for bit",
                   "ok": bool(res["identical"]),
                   "detail": f"{n} images, {res['instructions_per_invoke']:,} instructions per invoke"})
    runs.append({"runtime": f"edgeprune-c on QEMU {res['board']} ({core})",
                 "model_stage": "int8 C runtime", "images": n,
                 "accuracy": res.get("accuracy_int8_emulated")})
    src = f"QEMU {res['board']} -icount (edgeprune verify --qemu {core})"
    rows = [{"quantity": "instructions per inference", "unit": "instr",
             "estimate": rep.get("instructions_estimate"),
             "measured": res["instructions_per_invoke"], "source": src},
            {"quantity": "flash (model code + constants)", "unit": "B",
             "estimate": (rep.get("cross") or {}).get("flash_bytes"),
             "measured": res["flash_bytes"], "source": src + ", link map"},
            {"quantity": "RAM (data + bss + stack high-water mark)", "unit": "B",
             "estimate": (rep.get("cross") or {}).get("ram_bytes"),
             "measured": res["ram_bytes"], "source": src + ", painted stack"}]
    if "cycles_trm" in res:
        rows.insert(1, {"quantity": "cycles per inference", "unit": "cycles",
                        "estimate": rep.get("cycles_estimate"), "measured": res["cycles_trm"],
                        "source": f"QEMU execution trace, {res['cycles_source']}"})
    return rows


def verify_finn(d: Path, v: VerifyContext) -> Dict[str, Any]:
    import onnx
    from ..quant.qonnx_io import pixels, qonnx_execute
    rep = read_json(d / "report.json", "export report")
    onnx_path = d / "model.onnx"
    m = onnx.load(str(onnx_path))
    dims = [int(x.dim_value) for x in m.graph.input[0].type.tensor_type.shape.dim]
    # qonnx executes node by node in Python, one image at a time (tens of ms per LeNet-5 image):
    # the full W/A-bit model's accuracy on the whole test set is the Brevitas figure of the
    # export, whose QONNX file it checked integer-exact against Brevitas.
    x, y = v.test_split(v.qonnx_images)
    t0 = time.time()
    pair_in = np.load(d / "verify" / "input.npy")
    pair_out = np.load(d / "verify" / "expected_output.npy")
    got_pair = qonnx_execute(str(onnx_path), pair_in).reshape(pair_out.shape)
    scale = float(rep["quantization"]["output_scale"])
    pair_ok = bool(np.array_equal(np.round(got_pair / scale), np.round(pair_out / scale)))
    in_bits = 1 if str(rep["quantization"].get("input", "")).startswith("bipolar") else 8
    out = qonnx_execute(str(onnx_path), pixels(x, dims[1:], in_bits))
    acc_quant = rep["quantization"].get("accuracy_quant")
    checks = [{"what": "QONNX reproduces FINN's verify pair (Brevitas output), integer-exact",
               "ok": pair_ok, "detail": f"{len(pair_in)} image(s), verify/expected_output.npy"}]
    est = rep["estimate"]["totals"]
    cap = rep["target"].get("capacity") or {}
    return {
        "status": "pass" if pair_ok else "fail",
        "seconds": round(time.time() - t0, 2),
        "runs": [{"runtime": "qonnx execute_onnx (model.onnx)", "model_stage":
                  f"W{rep['quantization']['wbits']}A{rep['quantization']['abits']} QONNX",
                  "images": int(len(y)), "accuracy": _accuracy(out, y)}],
        "checks": checks,
        "accuracy_brevitas": acc_quant,
        "estimate": {k: est.get(k) for k in ("fps", "lut", "bram18", "dsp")},
        "capacity": cap,
        "estimate_vs_measured": [
            {"quantity": "LUT", "unit": "LUT", "estimate": est.get("lut"), "measured": None,
             "source": "FINN-style estimate; measured only by synthesis (Vivado, or yosys "
                       "for the RTL export)"}],
    }


def verify_hls(d: Path, v: VerifyContext) -> Dict[str, Any]:
    rep = read_json(d / "report.json", "export report")
    cs = rep["csim"]
    tb = rep.get("axi_testbench")
    checks = [{"what": "g++ C-simulation = Brevitas model, integer-exact",
               "ok": bool(cs["bit_exact"]),
               "detail": f"{cs['exact_images']}/{cs['images']} images exact"}]
    if tb is not None:
        checks.append({"what": "AXI-stream wrapper testbench (g++)", "ok": tb.get("returncode") == 0,
                       "detail": f"exit {tb.get('returncode')}"})
    return {
        "status": "pass" if all(c["ok"] for c in checks) else "fail",
        "runs": [{"runtime": "hls4ml g++ C-simulation (run by the export on this project)",
                  "model_stage": f"W{rep['quantization']['wbits']}A{rep['quantization']['abits']} "
                                 f"HLS C-sim", "images": cs["images"],
                  "accuracy": cs.get("accuracy_csim")}],
        "checks": checks,
        "estimate_vs_measured": [],
    }


Verifier = Callable[[Path, VerifyContext], Dict[str, Any]]
VERIFIERS: Dict[str, Verifier] = {"tflm": verify_tflm, "c": verify_c, "finn": verify_finn,
                                  "hls": verify_hls}


def register(kind: str, verifier: Verifier) -> None:
    """Add or replace the verifier of an export kind (the RTL and QEMU verifiers plug in here)."""
    VERIFIERS[kind] = verifier


__all__ = ["VERIFIERS", "VerifyContext", "register"]
