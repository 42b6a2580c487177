#!/usr/bin/env python3
"""Fuzz the command line: random flag values and corrupted files for every subcommand, for a
bounded time. A run fails the fuzz when it exits with anything but 0 or 2, prints a traceback,
prints more or fewer than one `edgeprune: error:` line when it fails, or leaves a partial output
directory behind. Findings go to benchmarks/results/fuzz_cli.json (with the seeds to replay them).

    .venv/bin/python benchmarks/fuzz_cli.py --minutes 10 [--seed 0]

Runs each case in a fresh process (like a user's shell), with short time limits; training-heavy
cases are kept tiny (--epochs 1 --n-train 128) so that most of the time goes to input handling.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
from common import command_line, upsert_rows  # noqa: E402

NUMBERS = ["0", "-1", "1", "2", "3", "1e9", "-1e9", "nan", "inf", "-inf", "0.5", "1.5", "abc", "",
           "1e-9", "7x", "300x", "95%", "2:4", "08", "0x10", " 3"]
TARGETS = ["stm32l4r5-m4", "pynq-z2", "rp2040-m0plus", "alif-e3-m55", "nope", "{bad_toml}",
           "{garbage}"]
MODELS = ["lenet5", "lenet300100", "{garbage}", "{truncated_pt2}", "{empty}", "{dir}", "nope",
          "{good_pt2}"]
DATA = ["{tiny}", "{garbage_dir}", "{empty_dir}", "nowhere", "fashion-mnist"]

FLAGS = {
    "estimate": {"--target": TARGETS, "--fraction": NUMBERS, "--wbits": NUMBERS,
                 "--abits": NUMBERS, "--fps": NUMBERS, "--runtime": ["tflm-reference", "x"],
                 "--bits-map": ['{"conv1": {"w": 3}}', "{", "[]", '{"x": 1}'],
                 "--what-if": None, "--json": None, "--weights": ["{garbage}", "{empty}"]},
    "prune": {"--data": DATA, "--method": ["statistical", "agp", "random_init", "x"],
              "--granularity": ["weight", "kernel", "channel", "2:4", "0:0", "x"],
              "--orientation": ["memory", "workload", "target", "x"], "--sparsity": NUMBERS,
              "--target": TARGETS, "--budget": ["lut=10", "flash_kb=1", "macs=1k", "x=1",
                                                "latency_ms=-1", "params=abc"],
              "--epochs": ["1", "0", "-1", "x"], "--lr": NUMBERS, "--batch-size": NUMBERS,
              "--seed": NUMBERS, "--max-acc-drop": NUMBERS, "--wbits": NUMBERS,
              "--criterion": ["l1", "taylor", "apoz", "x"], "--resume": None,
              "--n-train": ["128", "0", "-5"], "--n-test": ["64", "0"]},
    "cluster": {"--data": DATA, "--bits": NUMBERS, "--bits-per-layer": ["fc1=3", "x", "fc1=99"],
                "--epochs": ["0", "-1", "x"], "--lr": NUMBERS, "--init": ["linear", "x"],
                "--per-channel": None, "--seed": NUMBERS},
    "export tflm": {"--target": TARGETS, "--data": DATA, "--arena-margin": NUMBERS,
                    "--eval-samples": ["8", "0", "-1", "x"], "--compress": ["auto", "off", "x"],
                    "--seed": NUMBERS, "--runtime": ["tflm-reference", "x"],
                    "--allow-overflow": None},
    "export finn": {"--target": TARGETS, "--data": DATA, "--wbits": NUMBERS,
                    "--abits": NUMBERS, "--fps": NUMBERS, "--epochs": ["0", "-1"],
                    "--verify-images": ["8", "-1"], "--max-steps": ["1", "0"]},
}


def fixtures(d: Path) -> dict:
    import numpy as np
    import torch
    from edgeprune.artifacts import save_pt2
    from edgeprune.models import build
    torch.manual_seed(0)
    save_pt2(build("lenet5"), d / "good.pt2")
    raw = (d / "good.pt2").read_bytes()
    (d / "truncated.pt2").write_bytes(raw[: len(raw) // 3])
    (d / "garbage.pt2").write_bytes(os.urandom(2048))
    (d / "empty.pt").write_bytes(b"")
    (d / "bad.toml").write_text('kind = "mcu"\ncore = 3\n')
    (d / "tiny").mkdir()
    rng = np.random.default_rng(0)
    np.savez(d / "tiny" / "d.npz", x=rng.integers(0, 255, (192, 28, 28), dtype=np.uint8),
             y=rng.integers(0, 10, 192))
    (d / "garbage_dir").mkdir()
    (d / "garbage_dir" / "d.npz").write_bytes(os.urandom(512))
    (d / "empty_dir").mkdir()
    return {"good_pt2": str(d / "good.pt2"), "truncated_pt2": str(d / "truncated.pt2"),
            "garbage": str(d / "garbage.pt2"), "empty": str(d / "empty.pt"),
            "bad_toml": str(d / "bad.toml"), "tiny": str(d / "tiny"),
            "garbage_dir": str(d / "garbage_dir"), "empty_dir": str(d / "empty_dir"),
            "dir": str(d)}


def _fill(text: str, fx: dict) -> str:
    for k, v in fx.items():
        text = text.replace("{" + k + "}", v)
    return text


def random_case(rng: random.Random, fx: dict, out: Path):
    cmd = rng.choice(list(FLAGS))
    argv = cmd.split()
    model = _fill(rng.choice(MODELS), fx)
    argv.append(model)
    flags = FLAGS[cmd]
    chosen = rng.sample(list(flags), k=min(len(flags), rng.randint(1, 4)))
    if cmd != "estimate" and "--data" not in chosen and rng.random() < 0.8:
        chosen.append("--data")
    if cmd in ("estimate", "export tflm", "export finn") and "--target" not in chosen:
        chosen.append("--target")
    for f in chosen:
        vals = flags[f]
        argv.append(f)
        if vals is not None:
            argv.append(_fill(rng.choice(vals), fx))
    if cmd == "prune":
        argv += ["--epochs", "1", "--n-train", "128", "--n-test", "64", "--no-baseline", "--quiet"]
    if cmd != "estimate":
        argv += ["-o", str(out)]
    return argv


def judge(p, out: Path):
    problems = []
    err_lines = [l for l in p.stderr.splitlines() if l.startswith("edgeprune: error:")]
    if p.returncode not in (0, 2):
        problems.append(f"exit code {p.returncode}")
    if "Traceback" in p.stderr:
        problems.append("traceback")
    if p.returncode == 2 and len(err_lines) != 1:
        problems.append(f"{len(err_lines)} error lines")
    if p.returncode != 0 and out.exists():
        problems.append("output left behind")
    leftovers = [q.name for q in out.parent.iterdir() if q.name.startswith(f".{out.name}.")]
    if leftovers:
        problems.append(f"staging left behind: {leftovers}")
    return problems, err_lines


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--timeout", type=int, default=300, help="seconds per case")
    args = ap.parse_args()
    rng = random.Random(args.seed)
    d = Path(tempfile.mkdtemp(prefix="edgeprune-fuzz-"))
    fx = fixtures(d)
    deadline = time.time() + 60 * args.minutes
    cases = findings = 0
    outcomes = {"ok": 0, "error": 0}
    found = []
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "EDGEPRUNE_LOG": str(d / "log.txt")}
    while time.time() < deadline:
        out = d / f"out{cases}"
        argv = random_case(rng, fx, out)
        try:
            p = subprocess.run([sys.executable, "-m", "edgeprune", *argv], capture_output=True,
                               text=True, cwd=d, timeout=args.timeout, env=env)
        except subprocess.TimeoutExpired:
            cases += 1
            continue
        problems, err = judge(p, out)
        cases += 1
        outcomes["ok" if p.returncode == 0 else "error"] += 1
        if problems:
            findings += 1
            found.append({"argv": argv, "problems": problems, "rc": p.returncode,
                          "stderr_tail": p.stderr[-800:]})
            print(f"FINDING {problems}: edgeprune {' '.join(argv)}", flush=True)
        shutil.rmtree(out, ignore_errors=True)
    row = {"seed": args.seed, "minutes": args.minutes, "cases": cases, "findings": findings,
           "exit_0": outcomes["ok"], "exit_2": outcomes["error"], "found": found,
           "command": command_line()}
    upsert_rows("fuzz_cli.json", [row], key=("seed", "minutes"))
    print(json.dumps({k: v for k, v in row.items() if k != "found"}))
    shutil.rmtree(d, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
