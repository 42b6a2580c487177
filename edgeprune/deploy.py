"""A deployment: the target plus every setting that changes what the model costs and what is built.

One `Deployment` is parsed once (CLI flags, a recipe, a prune output's summary) and handed to the
cost model, the pruner's budget checks and the exporters, so that what `prune` checks is what
`export` builds:

    target        an McuTarget or FpgaTarget (edgeprune.targets)
    runtime       MCU: tflm-cmsis-nn | tflm-reference (default: the target's); FPGA: finn
    wbits, abits  weight / activation bits. MCU: 8 / 8 (TFLite int8). FPGA: FPGA_DEFAULT_BITS
                  (4 / 4) unless given; the FINN and hls4ml exports quantize to exactly these
    input_bits    bits of the model input (8: uint8 pixels)
    bits_per_layer  FPGA: {layer: {"w": b, "a": b}} overrides
    fps           FPGA: fold for this frame rate with the least resources (None: the highest
                  frame rate that fits the part)
    compression   MCU: LUT-compression policy of the TFLM export: auto | flash | off

Torch-free.
"""
from __future__ import annotations

import dataclasses

import math
from dataclasses import dataclass, field
from typing import Any, Dict, Mapping, Optional

from .errors import EdgepruneError
from .targets import FpgaTarget, McuTarget, Target, load_target

# FPGA bit widths when none are given: W4A4. At W8A8 almost no zoo model fits a Pynq-Z2 because
# FINN's MultiThreshold storage grows as 2^abits (docs/cost_model_fpga.md); W4A4 is FINN's own
# default for its CNV/TFC examples' mid-size variants.
FPGA_DEFAULT_BITS = 4
FPGA_MIN_BITS, FPGA_MAX_BITS = 1, 8
MCU_RUNTIMES = ("tflm-cmsis-nn", "tflm-reference", "edgeprune-c")
FPGA_RUNTIMES = ("finn",)
COMPRESSION_POLICIES = ("auto", "flash", "off")


class DeploymentError(EdgepruneError, ValueError):
    pass


@dataclass(frozen=True)
class Deployment:
    target: Target
    runtime: str
    wbits: int
    abits: int
    input_bits: int = 8
    bits_per_layer: Mapping[str, Mapping[str, Optional[int]]] = field(default_factory=dict)
    fps: Optional[float] = None
    compression: str = "auto"

    @property
    def kind(self) -> str:
        return self.target.kind

    @classmethod
    def for_target(cls, target, *, runtime: Optional[str] = None, wbits: Optional[int] = None,
                   abits: Optional[int] = None, fps: Optional[float] = None,
                   bits_per_layer: Optional[Mapping] = None,
                   compression: Optional[str] = None) -> "Deployment":
        """The deployment on `target` (a Target, name or path) with every default filled in and
        every setting checked. Settings that do not apply to the target's kind are refused."""
        target = load_target(target)
        if (target.kind, type(target)) not in (("mcu", McuTarget), ("fpga", FpgaTarget)):
            raise DeploymentError(f"target '{target.name}' has kind {target.kind!r}; expected "
                                  f"'mcu' or 'fpga'")
        if isinstance(target, McuTarget):
            for flag, v in (("--fps", fps), ("--bits-map", bits_per_layer)):
                if v:
                    raise DeploymentError(f"{flag} applies to FPGA targets; '{target.name}' is an "
                                          f"MCU target")
            for flag, v in (("--wbits", wbits), ("--abits", abits)):
                if v is not None and v != 8:
                    raise DeploymentError(f"{flag} {v}: MCU runtimes ({', '.join(MCU_RUNTIMES)}) "
                                          f"run int8 models only")
            runtime = runtime or target.runtime
            if runtime not in MCU_RUNTIMES:
                raise DeploymentError(f"unknown MCU runtime '{runtime}'; known: "
                                      f"{', '.join(MCU_RUNTIMES)}")
            compression = compression or "auto"
            if compression not in COMPRESSION_POLICIES:
                raise DeploymentError(f"compression policy must be one of "
                                      f"{', '.join(COMPRESSION_POLICIES)}, got {compression!r}")
            return cls(target, runtime, 8, 8, compression=compression)
        if compression not in (None, "off"):
            raise DeploymentError(f"--compress applies to MCU targets; '{target.name}' is an "
                                  f"FPGA target")
        runtime = runtime or "finn"
        if runtime not in FPGA_RUNTIMES:
            raise DeploymentError(f"unknown FPGA runtime '{runtime}'; known: "
                                  f"{', '.join(FPGA_RUNTIMES)}")
        wbits = FPGA_DEFAULT_BITS if wbits is None else wbits
        abits = FPGA_DEFAULT_BITS if abits is None else abits
        for flag, v in (("--wbits", wbits), ("--abits", abits)):
            if isinstance(v, bool) or not isinstance(v, int) or not FPGA_MIN_BITS <= v <= FPGA_MAX_BITS:
                raise DeploymentError(f"{flag} must be an integer in {FPGA_MIN_BITS}..{FPGA_MAX_BITS}, "
                                      f"got {v!r}")
        if fps is not None and not (isinstance(fps, (int, float)) and math.isfinite(fps) and fps > 0):
            raise DeploymentError(f"--fps must be a positive number, got {fps!r}")
        per_layer = _check_bits_map(bits_per_layer)
        return cls(target, runtime, wbits, abits, bits_per_layer=per_layer,
                   fps=float(fps) if fps is not None else None, compression="off")

    # ---------------------------------------------------------------- what the backends take
    def weight_bits_per_layer(self) -> Dict[str, int]:
        return {k: int(v["w"]) for k, v in self.bits_per_layer.items() if v.get("w") is not None}

    def act_bits_per_layer(self) -> Dict[str, int]:
        return {k: int(v["a"]) for k, v in self.bits_per_layer.items() if v.get("a") is not None}

    def with_(self, **changes) -> "Deployment":
        """A copy with `changes` (re-checked)."""
        d = {"runtime": self.runtime, "wbits": self.wbits, "abits": self.abits, "fps": self.fps,
             "bits_per_layer": dict(self.bits_per_layer) or None,
             "compression": self.compression if self.kind == "mcu" else None}
        input_bits = changes.pop("input_bits", self.input_bits)
        d.update(changes)
        return dataclasses.replace(Deployment.for_target(self.target, **d), input_bits=input_bits)

    def to_dict(self) -> Dict[str, Any]:
        d: Dict[str, Any] = {"target": self.target.name, "kind": self.kind, "runtime": self.runtime,
                             "wbits": self.wbits, "abits": self.abits,
                             "input_bits": self.input_bits}
        if self.kind == "fpga":
            d.update(fps=self.fps, bits_per_layer={k: dict(v) for k, v in
                                                   self.bits_per_layer.items()})
        else:
            d["compression"] = self.compression
        return d

    def describe(self) -> str:
        if self.kind == "mcu":
            return f"{self.target.name} ({self.target.core}, {self.runtime}, int8)"
        fps = f", {self.fps:g} FPS" if self.fps else ""
        return f"{self.target.name} ({self.target.part}, W{self.wbits}A{self.abits}{fps})"


def _check_bits_map(spec: Optional[Mapping]) -> Dict[str, Dict[str, Optional[int]]]:
    out: Dict[str, Dict[str, Optional[int]]] = {}
    for name, v in dict(spec or {}).items():
        if not isinstance(v, Mapping) or not set(v) <= {"w", "a"}:
            raise DeploymentError(f"bits map entry '{name}' must be {{\"w\": bits, \"a\": bits}}, "
                                  f"got {v!r}")
        entry: Dict[str, Optional[int]] = {}
        for k in ("w", "a"):
            b = v.get(k)
            if b is not None and (isinstance(b, bool) or not isinstance(b, int)
                                  or not FPGA_MIN_BITS <= b <= FPGA_MAX_BITS):
                raise DeploymentError(f"bits map entry '{name}'.{k} must be an integer in "
                                      f"{FPGA_MIN_BITS}..{FPGA_MAX_BITS}, got {b!r}")
            entry[k] = b
        out[str(name)] = entry
    return out


def as_deployment(target_or_deployment, **settings) -> Deployment:
    """A Deployment from a Deployment (returned as is when no settings are given), a Target, or a
    target name/path."""
    if isinstance(target_or_deployment, Deployment):
        return target_or_deployment.with_(**settings) if settings else target_or_deployment
    return Deployment.for_target(target_or_deployment, **settings)
