"""Running a firmware on qemu-system-arm: with -icount (exact instruction counts read from a
timer) or with an execution trace (the executed instruction stream, for TRM cycles)."""
from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from ..errors import EdgepruneError
from .boards import ICOUNT_SHIFT, Board
from .cpi import TraceCounter, elf_instructions
from .firmware import tool

TIMEOUT_S = 1800


class QemuError(EdgepruneError):
    """The firmware did not run to its end on QEMU."""


def qemu_cmd(board: Board, elf: Path, *extra: str) -> List[str]:
    return [tool("qemu-system-arm"), "-M", board.machine, "-nographic", "-monitor", "none",
            "-serial", "none", "-semihosting-config", "enable=on,target=native",
            "-kernel", str(elf), *extra]


@dataclass
class Output:
    """What the harness printed: tagged number pairs, and the output bytes of each invoke."""
    tags: List[Tuple[str, int, int]] = field(default_factory=list)
    outputs: Dict[int, bytes] = field(default_factory=dict)

    def feed(self, line: str) -> bool:
        if not line.startswith("EPV "):
            return False
        parts = line.split()
        if parts[1] == "b":
            self.outputs[self._cur] += bytes.fromhex(parts[2])
        elif parts[1] == "fault":
            raise QemuError("the firmware took a fault (HardFault or similar) on QEMU")
        else:
            a, b = int(parts[2], 16), int(parts[3], 16)
            if parts[1] == "out":
                self._cur = a
                self.outputs[a] = b""
            self.tags.append((parts[1], a, b))
        return True

    def get(self, tag: str) -> List[Tuple[int, int]]:
        return [(a, b) for t, a, b in self.tags if t == tag]


def command_line(board: Board, elf_name: str) -> str:
    return " ".join(["qemu-system-arm", "-M", board.machine, "-nographic", "-monitor", "none",
                     "-serial", "none", "-semihosting-config", "enable=on,target=native",
                     "-icount", f"shift={ICOUNT_SHIFT}", "-kernel", elf_name])


def run_icount(board: Board, elf: Path, timeout: int = TIMEOUT_S) -> Output:
    cmd = qemu_cmd(board, elf, "-icount", f"shift={ICOUNT_SHIFT}")
    try:
        # semihosting console output goes to QEMU's stderr
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           timeout=timeout)
    except subprocess.TimeoutExpired:
        raise QemuError(f"QEMU {board.machine} did not finish within {timeout} s")
    out = Output()
    for line in p.stdout.splitlines():
        out.feed(line)
    if p.returncode != 0:
        raise QemuError(f"QEMU {board.machine} exited with {p.returncode}: "
                        f"{p.stdout.strip()[-500:]}")
    if not out.get("done"):
        raise QemuError(f"the firmware did not reach its end on {board.machine}")
    return out


def run_trace(board: Board, elf: Path, mark_pc: int, timeout: int = TIMEOUT_S,
              call_site=None) -> Tuple[Output, TraceCounter]:
    """Run with ``-d in_asm,exec,nochain`` (every translated block listed once, every executed
    block logged) and count instructions and TRM cycles between entries to `mark_pc`."""
    import os
    import tempfile
    decode = elf_instructions(elf, board.disas_arch) if board.disas_arch else None
    counter = TraceCounter(board.core, mark_pc, call_site, decode)
    out = Output()
    with tempfile.TemporaryDirectory(prefix="edgeprune-trace-") as d:
        fifo = os.path.join(d, "trace")
        os.mkfifo(fifo)
        stdout_path = os.path.join(d, "stdout")
        with open(stdout_path, "w") as so:
            cmd = qemu_cmd(board, elf, "-d", "in_asm,exec,nochain", "-D", fifo)
            proc = subprocess.Popen(cmd, stdout=so, stderr=subprocess.STDOUT, text=True)
            try:
                with open(fifo, "r", buffering=1 << 20) as log:
                    for line in log:
                        counter.feed(line.rstrip("\n"))
                rc = proc.wait(timeout=timeout)
            except BaseException:
                proc.kill()
                proc.wait()
                raise
        text = open(stdout_path).read()
    counter.finish()
    for line in text.splitlines():
        out.feed(line)
    if rc != 0:
        raise QemuError(f"QEMU {board.machine} (trace) exited with {rc}: {text[-500:]}")
    if not out.get("done"):
        raise QemuError(f"the firmware did not reach its end on {board.machine} (trace)")
    return out, counter
