"""The QEMU board that runs each Cortex-M core, and how time is read on it.

Counting method: QEMU with ``-icount shift=S`` advances virtual time by exactly 2**S ns per
executed instruction; a free-running hardware timer of the board read around a region gives
ticks = floor(phase + n * r) with r = 2**S ns / tick period, so n = round(delta / r) is exact
whenever r > 2 (the rounding error is below 1 / r < 0.5 instruction). The firmware checks r on
every run: a calibration loop of a known instruction count (``firmware.py``).

Timer clocks (checked on QEMU 7.2 with that loop; the numbers are QEMU's board models):
- MPS2 AN386 / AN500: CMSDK APB timer 0 at 0x40000000, 25 MHz SYSCLK (Arm AN386 / AN500
  application notes, "APB timers"), counting down;
- MPS2 AN505 (SSE-200): CMSDK APB timer 0 at 0x40000000, 20 MHz in QEMU's model, counting down;
- MPS3 AN547 (SSE-300): the SSE-300 system timer 0 at 0x48000000 counts the system counter
  (32 MHz in QEMU's model), counting up, once the counter is enabled (CNTCR at 0x58100000).

The Cortex-M0+ (rp2040-m0plus) has no board of its own: QEMU's only Armv6-M machine, the
micro:bit (Cortex-M0), has 16 KB of RAM. Armv6-M is a subset of Armv7-M, so the M0+ binary
(built with -mcpu=cortex-m0plus: TFLM's plain-C CMSIS-NN paths) runs unchanged on the
Cortex-M3 board mps2-an385 (CMSDK timer 0 at 0x40000000, 25 MHz, as on the AN386): the executed
instructions are the M0+'s, and cpi.py times them with the Cortex-M0+ TRM table, not the M3's
pipeline. Every core of targets/mcu has a board here (NO_BOARD is empty).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional, Tuple

from ..errors import EdgepruneError

ICOUNT_SHIFT = 7                    # 128 ns per instruction


class NoBoardError(EdgepruneError):
    """The core has no QEMU board here."""


@dataclass(frozen=True)
class Board:
    core: str
    machine: str                    # qemu-system-arm -M
    flash_origin: int
    flash_bytes: int
    ram_origin: int
    ram_bytes: int
    timer: str                      # cmsdk (down-counter) | sse (system timer, up-counter)
    timer_base: int
    timer_hz: int
    cflags: Tuple[str, ...]         # -mcpu / -mthumb as the export compiles the model
    # objdump -m architecture to decode the executed stream from the ELF, where QEMU's own
    # disassembler (capstone, in -d in_asm) does not know the core's instructions (cpi.redecode)
    disas_arch: Optional[str] = None
    # (origin, bytes) of a memory for .rodata (the model's weights) when the code memory is small
    const_region: Optional[Tuple[int, int]] = None

    @property
    def ticks_per_instruction(self) -> float:
        return self.timer_hz * (2 ** ICOUNT_SHIFT) * 1e-9


BOARDS: Dict[str, Board] = {
    "cortex-m4": Board("cortex-m4", "mps2-an386", 0x00000000, 4 << 20, 0x20000000, 4 << 20,
                       "cmsdk", 0x40000000, 25_000_000, ("-mcpu=cortex-m4", "-mthumb")),
    "cortex-m7": Board("cortex-m7", "mps2-an500", 0x00000000, 4 << 20, 0x20000000, 4 << 20,
                       "cmsdk", 0x40000000, 25_000_000, ("-mcpu=cortex-m7", "-mthumb")),
    # AN505 runs secure: code in the secure alias of SSRAM1, data in that of SSRAM2/3
    "cortex-m33": Board("cortex-m33", "mps2-an505", 0x10000000, 4 << 20, 0x38000000, 2 << 20,
                        "cmsdk", 0x40000000, 20_000_000, ("-mcpu=cortex-m33", "-mthumb")),
    # the Armv6-M binary on the Cortex-M3 board (see the module docstring)
    "cortex-m0plus": Board("cortex-m0plus", "mps2-an385", 0x00000000, 4 << 20, 0x20000000, 4 << 20,
                           "cmsdk", 0x40000000, 25_000_000, ("-mcpu=cortex-m0plus", "-mthumb")),
    # AN547: code in the ITCM (512 KB), data in the DTCM (512 KB), read-only data (weights) in
    # the 2 MB SRAM at 0x01000000 (QEMU's AN547 memory map; timing is not modelled by -icount)
    "cortex-m55": Board("cortex-m55", "mps3-an547", 0x00000000, 512 << 10, 0x20000000, 512 << 10,
                        "sse", 0x48000000, 32_000_000, ("-mcpu=cortex-m55", "-mthumb"),
                        disas_arch="armv8.1-m.main", const_region=(0x01000000, 2 << 20)),
}

NO_BOARD: Dict[str, str] = {}


def board_for(core: str) -> Board:
    if core in BOARDS:
        return BOARDS[core]
    why = NO_BOARD.get(core, "unknown core")
    raise NoBoardError(f"no QEMU board for {core}: {why} (boards: "
                       f"{', '.join(f'{c} = {b.machine}' for c, b in BOARDS.items())})")
