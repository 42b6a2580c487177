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

Cores without a board: the Cortex-M0+ (rp2040-m0plus). QEMU's only Armv6-M board with usable
memory is none (the micro:bit's nRF51 has 16 KB of RAM); an Armv6-M binary runs on the M3 board
mps2-an385, but that would time a different core's pipeline and is not offered as a
verification. M0+ targets are costed by the model alone (cost/mcu.py, constants from
benchmarks/mcu_kernel_icount.py, which does run the Armv6-M kernels on mps2-an385).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Tuple

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
    # AN547: ITCM (code and constants) and DTCM (data), 512 KB each
    "cortex-m55": Board("cortex-m55", "mps3-an547", 0x00000000, 512 << 10, 0x20000000, 512 << 10,
                        "sse", 0x48000000, 32_000_000, ("-mcpu=cortex-m55", "-mthumb")),
}

NO_BOARD = {
    "cortex-m0plus": "QEMU has no Armv6-M board with enough memory (the micro:bit has 16 KB of "
                     "RAM); M0+ targets are costed by the cost model only",
}


def board_for(core: str) -> Board:
    if core in BOARDS:
        return BOARDS[core]
    why = NO_BOARD.get(core, "unknown core")
    raise NoBoardError(f"no QEMU board for {core}: {why} (boards: "
                       f"{', '.join(f'{c} = {b.machine}' for c, b in BOARDS.items())})")
