"""Bare-metal firmware for the QEMU boards: start-up, linker script, timer access, harness.

What a user's start-up code must do, and what this one does (``STARTUP``):
- a vector table (initial stack pointer, reset handler, fault handlers that stop the run);
- copy .data from flash to RAM, zero .bss;
- enable the FPU / MVE coprocessor access (CPACR) on cores that have them;
- run the C++ static constructors (``__libc_init_array``: a TFLM MicroMutableOpResolver at
  namespace scope is one), with ``__dso_handle`` defined because ``-nostartfiles`` leaves it out;
- fill the free stack with a pattern, so that the stack high-water mark can be read after a run.

Output goes through semihosting (SYS_WRITE0) to QEMU's stdout; the run ends with SYS_EXIT.
"""
from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from ..errors import EdgepruneError
from .boards import Board

STACK_PATTERN = 0x5AA5C33C
CALIBRATION_LOOP = 4000             # iterations; 2 instructions each (subs, bne)


class FirmwareError(EdgepruneError):
    """The firmware does not build or does not fit the board."""


LINKER_SCRIPT = """\
/* edgeprune verify: {machine} ({core}) */
MEMORY {{
  FLASH (rx) : ORIGIN = 0x{flash_origin:08x}, LENGTH = {flash_bytes}
  RAM (rwx)  : ORIGIN = 0x{ram_origin:08x}, LENGTH = {ram_bytes}{const_region}
}}
ENTRY(epv_reset)
SECTIONS {{
  .text : {{
    KEEP(*(.epv_vectors))
    *(.text*)
    KEEP(*(.init)) KEEP(*(.fini))
    . = ALIGN(4);
  }} > FLASH
  .rodata : {{ *(.rodata*) . = ALIGN(4); }} > {const_name}
  .ARM.extab : {{ *(.ARM.extab* .gnu.linkonce.armextab.*) }} > FLASH
  .ARM.exidx : {{ __exidx_start = .; *(.ARM.exidx*) __exidx_end = .; }} > FLASH
  .init_array : {{
    . = ALIGN(4);
    PROVIDE_HIDDEN(__preinit_array_start = .); KEEP(*(.preinit_array)) PROVIDE_HIDDEN(__preinit_array_end = .);
    PROVIDE_HIDDEN(__init_array_start = .); KEEP(*(SORT(.init_array.*))) KEEP(*(.init_array)) PROVIDE_HIDDEN(__init_array_end = .);
    PROVIDE_HIDDEN(__fini_array_start = .); KEEP(*(.fini_array)) PROVIDE_HIDDEN(__fini_array_end = .);
  }} > FLASH
  __data_load = LOADADDR(.data);
  .data : {{ __data_start = .; *(.data*) . = ALIGN(4); __data_end = .; }} > RAM AT > FLASH
  .bss (NOLOAD) : {{ __bss_start = .; *(.bss*) *(COMMON) . = ALIGN(8); __bss_end = .; end = .; _end = .; }} > RAM
  __heap_start = __bss_end;
  __stack_top = ORIGIN(RAM) + LENGTH(RAM);
  __stack_limit = __stack_top - {stack_bytes};
  ASSERT(__bss_end <= __stack_limit, "edgeprune verify: data + bss + stack do not fit the board's RAM")
}}
"""

STACK_BYTES = 64 << 10


def linker_script(board: Board) -> str:
    const_region, const_name = "", "FLASH"
    if board.const_region is not None:       # read-only data in a memory of its own
        const_region = (f"\n  CONST (r)  : ORIGIN = 0x{board.const_region[0]:08x}, "
                        f"LENGTH = {board.const_region[1]}")
        const_name = "CONST"
    return LINKER_SCRIPT.format(machine=board.machine, core=board.core,
                                flash_origin=board.flash_origin, flash_bytes=board.flash_bytes,
                                ram_origin=board.ram_origin, ram_bytes=board.ram_bytes,
                                stack_bytes=STACK_BYTES, const_region=const_region,
                                const_name=const_name)


def timer_header(board: Board) -> str:
    """epv_timer_start() and EPV_TIMER_NOW() for the board (an up-counting value)."""
    if board.timer == "cmsdk":
        b = board.timer_base
        return f"""\
#define EPV_TIMER_CTRL  (*(volatile uint32_t *)0x{b:08x}u)
#define EPV_TIMER_VALUE (*(volatile uint32_t *)0x{b + 4:08x}u)
#define EPV_TIMER_RELOAD (*(volatile uint32_t *)0x{b + 8:08x}u)
static void epv_timer_start(void) {{
  EPV_TIMER_RELOAD = 0xFFFFFFFFu; EPV_TIMER_VALUE = 0xFFFFFFFFu; EPV_TIMER_CTRL = 1u;
}}
/* CMSDK APB timer: counts down at {board.timer_hz} Hz */
#define EPV_TIMER_NOW() (0xFFFFFFFFu - EPV_TIMER_VALUE)
"""
    if board.timer == "sse":
        b = board.timer_base
        return f"""\
#define EPV_CNTCR (*(volatile uint32_t *)0x58100000u)   /* SSE-300 system counter control */
#define EPV_CNTPCT_LO (*(volatile uint32_t *)0x{b:08x}u)
static void epv_timer_start(void) {{ EPV_CNTCR = 1u; }}
/* SSE-300 system timer 0: the system counter, {board.timer_hz} Hz, counting up */
#define EPV_TIMER_NOW() (EPV_CNTPCT_LO)
"""
    raise ValueError(board.timer)


STARTUP = r"""
/* edgeprune verify: bare-metal start-up (see edgeprune/verify/firmware.py) */
#include <stdint.h>

extern uint32_t __stack_top, __stack_limit, __data_load, __data_start, __data_end, __bss_start,
    __bss_end;
extern void __libc_init_array(void);
extern int main(void);
void epv_exit(int code);

/* -nostartfiles drops crtbegin's __dso_handle; C++ objects with destructors register them
   against it (__cxa_atexit), so a C++ firmware does not link without one. */
void *__dso_handle = 0;
/* __libc_init_array calls _init (crti's, also dropped by -nostartfiles): nothing to do here */
void _init(void) {}
void _fini(void) {}

__attribute__((noreturn)) void epv_reset(void) {
  uint32_t *src = &__data_load, *dst;
  for (dst = &__data_start; dst < &__data_end;) *dst++ = *src++;
  for (dst = &__bss_start; dst < &__bss_end;) *dst++ = 0;
#if defined(__ARM_FEATURE_MVE) || defined(__ARM_FP) || defined(EPV_ENABLE_FPU)
  *(volatile uint32_t *)0xE000ED88u |= (0xFu << 20);   /* CPACR: CP10, CP11 full access */
  __asm volatile("dsb\n isb" ::: "memory");
#endif
#if defined(__ARM_ARCH_6M__)
  /* Armv6-M has no unaligned loads and stores: the Armv7-M board that runs an M0+ binary
     (mps2-an385) traps them as the M0+ would (CCR.UNALIGN_TRP) */
  *(volatile uint32_t *)0xE000ED14u |= (1u << 3);
  __asm volatile("dsb\n isb" ::: "memory");
#endif
  __libc_init_array();              /* C++ static constructors */
  epv_exit(main());
  for (;;) {}
}

static void epv_fault(void) {
  static const char msg[] = "EPV fault\n";
  register int r0 __asm("r0") = 4;  /* SYS_WRITE0 */
  register const char *r1 __asm("r1") = msg;
  __asm volatile("bkpt 0xab" : : "r"(r0), "r"(r1) : "memory");
  epv_exit(3);
}

__attribute__((section(".epv_vectors"), used)) const void *const epv_vectors[16] = {
  &__stack_top, (void *)epv_reset, (void *)epv_fault, (void *)epv_fault, (void *)epv_fault,
  (void *)epv_fault, (void *)epv_fault, 0, 0, 0, 0, (void *)epv_fault, (void *)epv_fault, 0,
  (void *)epv_fault, (void *)epv_fault};

/* newlib's system calls, for code that pulls in stdio (TFLM's logging can): no files, no
   console through them (the harness prints by semihosting); the heap lies between .bss and
   the stack's reserved area. */
#include <errno.h>
#include <stddef.h>
#include <sys/stat.h>
void _exit(int code) { epv_exit(code); for (;;) {} }
int _close(int fd) { (void)fd; errno = EBADF; return -1; }
int _fstat(int fd, struct stat *st) { (void)fd; st->st_mode = S_IFCHR; return 0; }
int _isatty(int fd) { (void)fd; return 1; }
int _lseek(int fd, int off, int whence) { (void)fd; (void)off; (void)whence; return 0; }
int _read(int fd, char *buf, int n) { (void)fd; (void)buf; (void)n; return 0; }
int _write(int fd, const char *buf, int n) { (void)fd; (void)buf; return n; }
int _kill(int pid, int sig) { (void)pid; (void)sig; errno = EINVAL; return -1; }
int _getpid(void) { return 1; }
void *_sbrk(ptrdiff_t incr) {
  static char *brk = (char *)&__bss_end;
  if (brk + incr > (char *)&__stack_limit) { errno = ENOMEM; return (void *)-1; }
  char *old = brk;
  brk += incr;
  return old;
}
"""

SUPPORT = r"""
/* edgeprune verify: semihosting output, the timer, the stack watermark */
#include <stdint.h>
#include "epv_support.h"

void epv_write(const char *s) {
  register int r0 __asm("r0") = 4;  /* SYS_WRITE0 */
  register const char *r1 __asm("r1") = s;
  __asm volatile("bkpt 0xab" : : "r"(r0), "r"(r1) : "memory");
}

void epv_exit(int code) {
  /* SYS_EXIT with ADP_Stopped_ApplicationExit (0x20026); code 0 only (QEMU's 32-bit form) */
  register int r0 __asm("r0") = 0x18;
  register int r1 __asm("r1") = code == 0 ? 0x20026 : 0x20023;
  __asm volatile("bkpt 0xab" : : "r"(r0), "r"(r1) : "memory");
  for (;;) {}
}

static char *epv_hex(char *p, uint32_t v) {
  for (int i = 7; i >= 0; --i) { uint32_t d = (v >> (4 * i)) & 15u; *p++ = (char)(d < 10 ? '0' + d : 'a' + d - 10); }
  return p;
}

void epv_print(const char *tag, uint32_t a, uint32_t b) {
  char buf[40], *p = buf;
  *p++ = 'E'; *p++ = 'P'; *p++ = 'V'; *p++ = ' ';
  while (*tag) *p++ = *tag++;
  *p++ = ' '; p = epv_hex(p, a); *p++ = ' '; p = epv_hex(p, b); *p++ = '\n'; *p = 0;
  epv_write(buf);
}

void epv_print_bytes(uint32_t index, const int8_t *data, uint32_t n) {
  char buf[80];
  epv_print("out", index, n);
  for (uint32_t i = 0; i < n;) {
    char *p = buf;
    *p++ = 'E'; *p++ = 'P'; *p++ = 'V'; *p++ = ' '; *p++ = 'b'; *p++ = ' ';
    for (uint32_t j = 0; j < 32 && i < n; ++j, ++i) {
      uint8_t v = (uint8_t)data[i];
      *p++ = "0123456789abcdef"[v >> 4]; *p++ = "0123456789abcdef"[v & 15];
    }
    *p++ = '\n'; *p = 0;
    epv_write(buf);
  }
}

volatile uint32_t epv_stamps[EPV_SLOTS];

/* One timer read per call, stored by slot; noinline so that every call site costs the same
   and the execution trace can be cut at its entry. */
__attribute__((noinline)) void epv_hook(int slot) { epv_stamps[slot] = EPV_TIMER_NOW(); }

__attribute__((noinline)) void epv_spin(uint32_t n) {
#if defined(__thumb2__)
  __asm volatile("1: subs %0, #1\n bne 1b" : "+r"(n) : : "cc");
#else  /* Armv6-M: GCC assembles Thumb-1 inline asm in divided syntax (sub sets the flags) */
  __asm volatile("1: sub %0, #1\n bne 1b" : "+r"(n) : : "cc");
#endif
}

extern uint32_t __bss_end, __stack_limit;

/* Paint the free stack below the caller's frame (this function's frame sits above its sp). */
__attribute__((noinline)) void epv_stack_paint(void) {
  uint32_t *p = &__stack_limit, *sp;
  __asm volatile("mov %0, sp" : "=r"(sp));
  while (p < sp - 8) *p++ = EPV_STACK_PATTERN;
}

/* Lowest stack address written since the paint. */
uint32_t epv_stack_low(void) {
  uint32_t *p = &__stack_limit;
  while (*p == EPV_STACK_PATTERN) ++p;
  return (uint32_t)p;
}

uint32_t epv_sp(void) { uint32_t sp; __asm volatile("mov %0, sp" : "=r"(sp)); return sp; }

void epv_calibrate(void) {
  /* Ticks per instruction, from a loop of a known instruction count: the two runs differ by
     exactly EPV_CAL_LOOP iterations of 2 instructions. */
  epv_hook(0); epv_spin(EPV_CAL_LOOP); epv_hook(1);
  epv_hook(2); epv_spin(2 * EPV_CAL_LOOP); epv_hook(3);
  epv_print("cal", epv_stamps[1] - epv_stamps[0], epv_stamps[3] - epv_stamps[2]);
  /* the cost of the hook itself: two calls back to back */
  epv_hook(0); epv_hook(1);
  epv_print("hook", epv_stamps[1] - epv_stamps[0], 0);
}
"""

SUPPORT_H = """\
#ifndef EPV_SUPPORT_H
#define EPV_SUPPORT_H
#include <stdint.h>
#ifdef __cplusplus
extern "C" {{
#endif
{timer}
#define EPV_STACK_PATTERN 0x{pattern:08x}u
#define EPV_CAL_LOOP {cal}u
#define EPV_SLOTS {slots}
extern volatile uint32_t epv_stamps[EPV_SLOTS];
void epv_write(const char *s);
void epv_exit(int code);
void epv_print(const char *tag, uint32_t a, uint32_t b);
void epv_print_bytes(uint32_t index, const int8_t *data, uint32_t n);
void epv_hook(int slot);
void epv_stack_paint(void);
uint32_t epv_stack_low(void);
uint32_t epv_sp(void);
void epv_calibrate(void);
void epv_timer_init(void);
#ifdef __cplusplus
}}
#endif
#endif
"""

# Slots of epv_stamps: 0..3 calibration, 4/5 around an invoke, 6 + 2 i / 7 + 2 i around layer i.
SLOT_INVOKE = 4
SLOT_LAYER0 = 6


def support_files(board: Board, n_layers: int) -> Dict[str, str]:
    timer = timer_header(board)
    return {
        "epv_support.h": SUPPORT_H.format(timer=timer.replace("static void epv_timer_start",
                                                              "static inline void epv_timer_start"),
                                          pattern=STACK_PATTERN, cal=CALIBRATION_LOOP,
                                          slots=SLOT_LAYER0 + 2 * max(n_layers, 1)),
        "epv_startup.c": STARTUP,
        "epv_support.c": SUPPORT + "\nvoid epv_timer_init(void) { epv_timer_start(); }\n",
    }


def inputs_source(x_int8) -> str:
    """epv_inputs.c: the inputs (N, bytes) and their count, as data the harness reads.

    The count is a variable in this file, not a macro in the harness, so that the harness's
    machine code is the same whatever N is: the firmware traced on one input and the firmware
    timed on N run the same instructions between the timer reads. (With the count a
    compile-time constant, GCC compiled the call of the invoke differently for 1 and for 2
    inputs on the Cortex-M0+: one instruction more inside the timed region, so the trace and
    the timer disagreed by one.) The array is padded to a multiple of 16 bytes so that what the
    linker places after it keeps its alignment for any N."""
    data = x_int8.tobytes()
    pad = -len(data) % 16
    return ("#include <stdint.h>\n"
            f"const uint32_t epv_n_inputs = {len(x_int8)}u;\n"
            + c_array("epv_inputs", data + bytes(pad)))


def c_array(name: str, data: bytes, ctype: str = "int8_t") -> str:
    vals = [str(b - 256 if b > 127 else b) for b in data] if ctype == "int8_t" else [str(b) for b in data]
    lines = [", ".join(vals[i:i + 24]) for i in range(0, len(vals), 24)]
    return f"const {ctype} {name}[{len(data)}] = {{\n  " + ",\n  ".join(lines) + "\n};\n"


@dataclass
class Elf:
    path: Path
    map_path: Path
    symbols: Dict[str, int]


def tool(name: str) -> str:
    import shutil
    p = shutil.which(name)
    if p is None:
        raise FirmwareError(f"{name} not found: install Debian's gcc-arm-none-eabi, "
                            f"libnewlib-arm-none-eabi and qemu-system-arm (make setup does)")
    return p


def link(board: Board, objects: Sequence[Path], out: Path, *, cxx: bool = False,
         extra: Sequence[str] = ()) -> Elf:
    """Link objects (with the start-up and support objects among them) for the board."""
    ld = out.with_suffix(".ld")
    ld.write_text(linker_script(board))
    driver = tool("arm-none-eabi-g++" if cxx else "arm-none-eabi-gcc")
    map_path = out.with_suffix(".map")
    cmd = [driver, *board.cflags, "-nostartfiles", "--specs=nano.specs", "-T", str(ld),
           "-Wl,--gc-sections", f"-Wl,-Map={map_path}", "-o", str(out),
           *map(str, objects), *extra, "-Wl,--start-group", "-lc", "-lgcc", "-Wl,--end-group"]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        msg = p.stderr.strip()
        if "do not fit" in msg or "overflowed" in msg or "will not fit" in msg:
            raise FirmwareError(f"the firmware does not fit {board.machine}'s memory "
                                f"({board.flash_bytes} B code, {board.ram_bytes} B RAM): "
                                f"{msg.splitlines()[-1][:300]}")
        raise FirmwareError(f"link failed for {board.machine}: {msg[-1500:]}")
    nm = subprocess.run([tool("arm-none-eabi-nm"), str(out)], capture_output=True, text=True,
                        check=True).stdout
    syms = {}
    for line in nm.splitlines():
        parts = line.split()
        if len(parts) == 3:
            syms[parts[2]] = int(parts[0], 16)
    return Elf(out, map_path, syms)


def compile_c(board: Board, src: Path, obj: Path, flags: Sequence[str], includes: Sequence[Path] = (),
              cxx: bool = False) -> str:
    """Compile one source; returns the compiler's warnings."""
    cc = tool("arm-none-eabi-g++" if cxx else "arm-none-eabi-gcc")
    cmd = [cc, *board.cflags, *flags, *[f"-I{i}" for i in includes], "-c", str(src), "-o", str(obj)]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        raise FirmwareError(f"{src.name} does not compile for {board.core}: {p.stderr.strip()[-1500:]}")
    return p.stderr


_MAP_SECTION = re.compile(r"^ (\.[A-Za-z_.]+[^\s]*)?\s+0x([0-9a-f]+)\s+0x([0-9a-f]+)\s+(\S+)$")


def sizes_by_object(map_path: Path) -> Dict[str, Dict[str, int]]:
    """{object file (basename, or archive(member)): {text, rodata, data, bss: bytes}} of the
    linked image, from the linker map (input sections kept after --gc-sections)."""
    out: Dict[str, Dict[str, int]] = {}
    text = map_path.read_text(errors="replace")
    start = text.find("Linker script and memory map")
    pending: Optional[str] = None
    for line in text[start:].splitlines():
        if line.startswith(" .") and len(line.split()) == 1:      # long name: values on the next line
            pending = line.strip()
            continue
        if pending is not None:
            line = " " + pending + " " + line.strip()
            pending = None
        m = _MAP_SECTION.match(line)
        if not m or m.group(1) is None:
            continue
        name, size, obj = m.group(1), int(m.group(3), 16), m.group(4)
        if size == 0:
            continue
        kind = ("text" if name.startswith(".text") else "rodata" if name.startswith(".rodata")
                else "data" if name.startswith(".data") else "bss" if name.startswith((".bss", "COMMON"))
                else None)
        if kind is None:
            continue
        key = Path(obj.split("(")[0]).name + (obj[obj.index("("):] if "(" in obj else "")
        out.setdefault(key, {"text": 0, "rodata": 0, "data": 0, "bss": 0})[kind] += size
    return out


def elf_sections(elf: Path) -> Dict[str, int]:
    """Sizes of the linked image's output sections (arm-none-eabi-size -A)."""
    p = subprocess.run([tool("arm-none-eabi-size"), "-A", str(elf)], capture_output=True, text=True,
                       check=True)
    out = {}
    for line in p.stdout.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0].startswith(".") and parts[1].isdigit():
            out[parts[0]] = int(parts[1])
    return out
