"""Targets are data: TOML files in the repo's ``targets/`` folder (mcu/ and fpga/), or a user path.

Schema (validated on load; a missing key is a one-line error naming file and key):

MCU::

    name = "stm32l4r5"          # CLI name; defaults to the file stem
    kind = "mcu"
    description = "..."
    core = "cortex-m4"          # cortex-m0plus | cortex-m4 | cortex-m7 | cortex-m33 | cortex-m55
    clock_mhz = 120
    flash_kb = 2048
    ram_kb = 640
    runtime = "tflm-cmsis-nn"   # tflm-reference | tflm-cmsis-nn
    source = "datasheet ..."    # where the figures come from

FPGA::

    name = "pynq-z2"
    kind = "fpga"
    part = "xc7z020clg400-1"
    lut = 53200
    ff = 106400
    bram18 = 280
    uram = 0
    dsp = 220
    clock_mhz = 100
    finn_board = "Pynq-Z2"      # FINN's board name
    source = "..."
"""
from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List

from .errors import EdgepruneError

TARGETS_DIR = Path(__file__).resolve().parent.parent / "targets"

REQUIRED = {
    "mcu": ("core", "clock_mhz", "flash_kb", "ram_kb", "runtime"),
    "fpga": ("part", "lut", "ff", "bram18", "uram", "dsp", "clock_mhz"),
}
MCU_CORES = ("cortex-m0plus", "cortex-m4", "cortex-m7", "cortex-m33", "cortex-m55")
MCU_RUNTIMES = ("tflm-reference", "tflm-cmsis-nn")


class TargetError(EdgepruneError, ValueError):
    pass


@dataclass
class Target:
    name: str
    kind: str                       # 'mcu' | 'fpga'
    path: Path
    spec: Dict[str, Any] = field(default_factory=dict)

    def __getattr__(self, key: str) -> Any:
        spec = self.__dict__.get("spec", {})
        if key in spec:
            return spec[key]
        raise AttributeError(key)

    def get(self, key: str, default: Any = None) -> Any:
        return self.spec.get(key, default)

    @property
    def description(self) -> str:
        return self.spec.get("description", "")


def _builtin_files() -> List[Path]:
    return sorted(TARGETS_DIR.glob("*/*.toml")) + sorted(TARGETS_DIR.glob("*.toml"))


def load_target_file(path: Path) -> Target:
    try:
        with open(path, "rb") as f:
            spec = tomllib.load(f)
    except OSError as e:
        raise TargetError(f"{path}: cannot read target file ({e.strerror})") from e
    except tomllib.TOMLDecodeError as e:
        raise TargetError(f"{path}: invalid TOML ({e})") from e
    kind = spec.get("kind")
    if kind not in REQUIRED:
        raise TargetError(f"{path}: 'kind' must be 'mcu' or 'fpga', got {kind!r}")
    for key in REQUIRED[kind]:
        if key not in spec:
            raise TargetError(f"{path}: missing key '{key}' for a {kind} target")
    if kind == "mcu":
        if spec["core"] not in MCU_CORES:
            raise TargetError(f"{path}: unknown core {spec['core']!r}; known: {', '.join(MCU_CORES)}")
        if spec["runtime"] not in MCU_RUNTIMES:
            raise TargetError(f"{path}: unknown runtime {spec['runtime']!r}; "
                              f"known: {', '.join(MCU_RUNTIMES)}")
    return Target(spec.get("name", path.stem), kind, path, spec)


def list_targets() -> List[Target]:
    return [load_target_file(p) for p in _builtin_files()]


def load_target(name_or_path: str) -> Target:
    """A built-in target name, or a path to a TOML file."""
    p = Path(name_or_path)
    if p.suffix == ".toml" or p.is_file():
        if not p.is_file():
            raise TargetError(f"{p}: target file not found")
        return load_target_file(p)
    for t in list_targets():
        if t.name == name_or_path:
            return t
    names = ", ".join(t.name for t in list_targets())
    raise TargetError(f"unknown target '{name_or_path}'; known: {names} (or a path to a .toml)")
