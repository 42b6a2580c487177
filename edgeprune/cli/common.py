"""Argument groups several subcommands share, and turning them into the objects the API takes."""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any, Callable, Dict, Optional


# --------------------------------------------------------------------------------------------
# Number arguments: checked where they enter, with the expected range in the message

def _number(kind: type, check: Callable[[float], bool], expect: str):
    def parse(text: str):
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected {'an integer' if kind is int else 'a number'} {expect}, got {text!r}"
            ) from None
        if isinstance(v, float) and not math.isfinite(v) or not check(v):
            raise argparse.ArgumentTypeError(f"expected {expect}, got {text!r}")
        return v
    parse.__name__ = f"{kind.__name__} {expect}"
    return parse


positive_int = _number(int, lambda v: v >= 1, ">= 1")
non_negative_int = _number(int, lambda v: v >= 0, ">= 0")
positive_float = _number(float, lambda v: v > 0, "> 0")
non_negative_float = _number(float, lambda v: v >= 0, ">= 0")
open_fraction = _number(float, lambda v: 0 < v < 1, "in (0, 1)")
unit_fraction = _number(float, lambda v: 0 < v <= 1, "in (0, 1]")
bits = _number(int, lambda v: 1 <= v <= 16, "in 1..16")


def add_export_inputs(p: argparse.ArgumentParser, target_kind: str) -> None:
    """MODEL, --target, -o and --weights: what every exporter reads and where it writes.
    target_kind ('MCU' or 'FPGA') only words the help."""
    p.add_argument("model", metavar="MODEL",
                   help="zoo name, .pt2 program, edgeprune output dir, or pickled module")
    p.add_argument("--target", "-t", required=True,
                   help=f"{target_kind} target name (edgeprune targets) or path to a .toml")
    p.add_argument("-o", "--output", required=True, metavar="OUT", help="output directory")
    p.add_argument("--weights", metavar="W", help="state_dict file for a zoo MODEL")


def add_export_safety(p: argparse.ArgumentParser, overflow_help: str) -> None:
    """--seed, --overwrite, --allow-overflow, --trust-pickle: the switches every exporter has
    for determinism, the user's files, the budget check and untrusted input."""
    p.add_argument("--seed", type=non_negative_int, default=0)
    p.add_argument("--overwrite", action="store_true",
                   help="write into a non-empty OUT (files edgeprune did not write are kept)")
    p.add_argument("--allow-overflow", action="store_true", help=overflow_help)
    p.add_argument("--trust-pickle", action="store_true",
                   help="allow loading a pickled module (runs code from the file)")


def add_deployment_arguments(p: argparse.ArgumentParser, *, fpga_only: bool = False) -> None:
    """--runtime, --wbits, --abits, --fps, --bits-map: the settings of a Deployment besides the
    target (edgeprune.deploy). Defaults are None so that the target's kind decides them."""
    g = p.add_argument_group("deployment")
    if not fpga_only:
        g.add_argument("--runtime", default=None,
                       help="MCU targets: tflm-cmsis-nn | tflm-reference | edgeprune-c "
                            "(estimate only) [the target's]")
    g.add_argument("--wbits", type=bits, default=None,
                   help="FPGA targets: weight bits, 1..8 [4; MCU: int8]")
    g.add_argument("--abits", type=bits, default=None,
                   help="FPGA targets: activation bits, 1..8 [4; MCU: int8]")
    g.add_argument("--fps", type=positive_float, default=None, metavar="N",
                   help="FPGA targets: fold for this frame rate with the least resources "
                        "[the highest frame rate that fits the part]")
    g.add_argument("--bits-map", metavar="JSON", default=None,
                   help='FPGA targets: per-layer bits, JSON or a .json file: '
                        '{"conv1": {"w": 8, "a": 8}}')


def load_bits_map(spec: Optional[str]) -> Optional[Dict[str, Any]]:
    """--bits-map: a JSON string or a path to a JSON file ``{"conv1": {"w": 8, "a": 8}}``."""
    from ..deploy import DeploymentError
    if not spec:
        return None
    text = spec
    if not spec.lstrip().startswith("{"):
        p = Path(spec)
        if not p.is_file():
            raise DeploymentError(f"--bits-map {spec}: not a JSON object and no such file")
        try:
            text = p.read_text()
        except (OSError, UnicodeDecodeError) as e:
            raise DeploymentError(f"--bits-map {spec}: cannot read ({e})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise DeploymentError(f"--bits-map: invalid JSON ({e})") from None
    if not isinstance(data, dict):
        raise DeploymentError("--bits-map must be a JSON object {layer: {\"w\": b, \"a\": b}}")
    return data


def deployment_from_args(args: argparse.Namespace, target=None, **defaults):
    """The Deployment the flags describe (target from --target unless given). `defaults` fill
    settings the user did not give (e.g. the bits recorded in a prune output)."""
    from ..deploy import Deployment
    settings = {"runtime": getattr(args, "runtime", None), "wbits": getattr(args, "wbits", None),
                "abits": getattr(args, "abits", None), "fps": getattr(args, "fps", None),
                "bits_per_layer": load_bits_map(getattr(args, "bits_map", None)),
                "compression": getattr(args, "compress", None)}
    for k, v in defaults.items():
        if settings.get(k) is None:
            settings[k] = v
    return Deployment.for_target(target if target is not None else args.target, **settings)
