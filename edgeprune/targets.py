"""Targets are data: TOML files in the repo's ``targets/`` folder (mcu/ and fpga/), or a user path.

Loaded into typed, frozen records (`McuTarget`, `FpgaTarget`); every field is checked on load
(type, sign, range, known names), and a bad file is a one-line error naming the file and the
field. Schema:

MCU::

    name = "stm32l4r5"          # CLI name; defaults to the file stem
    kind = "mcu"
    description = "..."
    core = "cortex-m4"          # cortex-m0plus | cortex-m4 | cortex-m7 | cortex-m33 | cortex-m55
    clock_mhz = 120             # > 0
    flash_kb = 2048             # > 0 (KiB)
    ram_kb = 640                # > 0 (KiB)
    runtime = "tflm-cmsis-nn"   # the default runtime: tflm-reference | tflm-cmsis-nn
    source = "datasheet ..."    # where the figures come from

FPGA::

    name = "pynq-z2"
    kind = "fpga"
    part = "xc7z020clg400-1"
    lut = 53200                 # > 0
    ff = 106400                 # > 0
    bram18 = 280                # >= 0
    uram = 0                    # >= 0
    dsp = 220                   # >= 0
    clock_mhz = 100             # > 0
    finn_board = "Pynq-Z2"      # FINN's board name (optional; `export finn` needs it)
    [util_limits]               # optional: utilisation ceilings in (0, 1] per resource
    lut = 0.7
    source = "..."

Other keys are kept in ``extra`` (e.g. ``dsp_block``) for tools that know them.
"""
from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

from .errors import EdgepruneError

TARGETS_DIR = Path(__file__).resolve().parent.parent / "targets"

MCU_CORES = ("cortex-m0plus", "cortex-m4", "cortex-m7", "cortex-m33", "cortex-m55")
MCU_RUNTIMES = ("tflm-reference", "tflm-cmsis-nn")
FPGA_RESOURCES = ("lut", "ff", "bram18", "uram", "dsp")
UTIL_LIMIT_KEYS = ("lut", "ff", "bram18", "uram", "dsp")


class TargetError(EdgepruneError, ValueError):
    pass


@dataclass(frozen=True)
class Target:
    """What every target has. Use `McuTarget` / `FpgaTarget`."""

    name: str
    kind: str                       # 'mcu' | 'fpga'
    path: Path
    clock_mhz: float
    description: str = ""
    source: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)

    def get(self, key: str, default: Any = None) -> Any:
        """A field by name (typed fields first, then `extra`)."""
        if key in self.__dataclass_fields__ and key != "extra":
            return getattr(self, key)
        return self.extra.get(key, default)

    def to_dict(self) -> Dict[str, Any]:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__ if k != "extra"}
        d["path"] = str(self.path)
        d.update(self.extra)
        return d


@dataclass(frozen=True)
class McuTarget(Target):
    core: str = "cortex-m4"
    flash_kb: int = 0
    ram_kb: int = 0
    runtime: str = "tflm-cmsis-nn"  # the default runtime of a deployment on this target


@dataclass(frozen=True)
class FpgaTarget(Target):
    part: str = ""
    lut: int = 0
    ff: int = 0
    bram18: int = 0
    uram: int = 0
    dsp: int = 0
    finn_board: str = ""
    util_limits: Mapping[str, float] = field(default_factory=dict)

    @property
    def capacity(self) -> Dict[str, int]:
        return {r: getattr(self, r) for r in FPGA_RESOURCES}


# --------------------------------------------------------------------------------------------
# Schema: key -> (type, check, required)

def _positive(v) -> bool:
    return v > 0


def _non_negative(v) -> bool:
    return v >= 0


_Num = Union[int, float]
_COMMON = {
    "name": (str, None, False), "kind": (str, None, True), "description": (str, None, False),
    "source": (str, None, False), "clock_mhz": (_Num, _positive, True),
}
_SCHEMA = {
    "mcu": {**_COMMON, "core": (str, None, True), "flash_kb": (int, _positive, True),
            "ram_kb": (int, _positive, True), "runtime": (str, None, True)},
    "fpga": {**_COMMON, "part": (str, None, True), "lut": (int, _positive, True),
             "ff": (int, _positive, True), "bram18": (int, _non_negative, True),
             "uram": (int, _non_negative, True), "dsp": (int, _non_negative, True),
             "finn_board": (str, None, False), "util_limits": (dict, None, False)},
}
_RANGE_TEXT = {_positive: "> 0", _non_negative: ">= 0"}


def _type_ok(value, typ) -> bool:
    if isinstance(value, bool):            # TOML true/false is not a number
        return typ is bool
    if typ is _Num:
        return isinstance(value, (int, float)) and math.isfinite(value)
    return isinstance(value, typ)


def _type_name(typ) -> str:
    return {_Num: "a number", int: "an integer", str: "a string", dict: "a table"}.get(typ, str(typ))


def _check(path: Path, spec: Dict[str, Any]) -> Tuple[str, Dict[str, Any]]:
    kind = spec.get("kind")
    if kind not in _SCHEMA:
        raise TargetError(f"{path}: 'kind' must be 'mcu' or 'fpga', got {kind!r}")
    schema = _SCHEMA[kind]
    for key, (typ, check, required) in schema.items():
        if key not in spec:
            if required:
                raise TargetError(f"{path}: missing key '{key}' for a {kind} target")
            continue
        value = spec[key]
        if not _type_ok(value, typ):
            raise TargetError(f"{path}: '{key}' must be {_type_name(typ)}, got {value!r}")
        if check is not None and not check(value):
            raise TargetError(f"{path}: '{key}' must be {_RANGE_TEXT[check]}, got {value!r}")
    if kind == "mcu":
        if spec["core"] not in MCU_CORES:
            raise TargetError(f"{path}: unknown core {spec['core']!r}; known: {', '.join(MCU_CORES)}")
        if spec["runtime"] not in MCU_RUNTIMES:
            raise TargetError(f"{path}: unknown runtime {spec['runtime']!r}; "
                              f"known: {', '.join(MCU_RUNTIMES)}")
    else:
        for k, v in dict(spec.get("util_limits", {})).items():
            if k not in UTIL_LIMIT_KEYS:
                raise TargetError(f"{path}: util_limits.{k}: unknown resource; known: "
                                  f"{', '.join(UTIL_LIMIT_KEYS)}")
            if not _type_ok(v, _Num) or not 0 < v <= 1:
                raise TargetError(f"{path}: util_limits.{k} must be a number in (0, 1], got {v!r}")
    return kind, schema


def load_target_file(path: Path) -> Target:
    path = Path(path)
    try:
        with open(path, "rb") as f:
            spec = tomllib.load(f)
    except OSError as e:
        raise TargetError(f"{path}: cannot read target file ({e.strerror})") from e
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise TargetError(f"{path}: invalid TOML ({e})") from e
    kind, schema = _check(path, spec)
    fields = {k: v for k, v in spec.items() if k in schema and k not in ("kind", "name")}
    extra = {k: v for k, v in spec.items() if k not in schema}
    name = spec.get("name", path.stem)
    cls = McuTarget if kind == "mcu" else FpgaTarget
    if kind == "fpga":
        fields["util_limits"] = {k: float(v) for k, v in dict(spec.get("util_limits", {})).items()}
    fields["clock_mhz"] = float(fields["clock_mhz"])
    return cls(name=name, kind=kind, path=path, extra=extra, **fields)


def _builtin_files() -> List[Path]:
    return sorted(TARGETS_DIR.glob("*/*.toml")) + sorted(TARGETS_DIR.glob("*.toml"))


def list_targets() -> List[Target]:
    return [load_target_file(p) for p in _builtin_files()]


def load_target(name_or_path: Union[str, Path, Target]) -> Target:
    """A built-in target name, or a path to a TOML file (a Target is returned as is)."""
    if isinstance(name_or_path, Target):
        return name_or_path
    p = Path(name_or_path)
    if p.suffix == ".toml" or p.is_file():
        if not p.is_file():
            raise TargetError(f"{p}: target file not found")
        return load_target_file(p)
    for f in _builtin_files():
        t = load_target_file(f)
        if t.name == str(name_or_path):
            return t
    names = ", ".join(t.name for t in list_targets())
    raise TargetError(f"unknown target '{name_or_path}'; known: {names} (or a path to a .toml)")


def require_kind(target: Target, kind: str, what: str, hint: Optional[str] = None) -> None:
    """Raise a TargetError unless `target` is of `kind` (for `what`, e.g. 'the TFLM export')."""
    if target.kind != kind:
        raise TargetError(f"target '{target.name}' is not an {kind.upper()} target but an "
                          f"{target.kind} target: {what} needs an {kind.upper()} target"
                          + (f" ({hint})" if hint else ""))
