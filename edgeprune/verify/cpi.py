"""Instructions -> cycles: the per-instruction timings of each core's Technical Reference Manual,
applied to the exact executed instruction stream that QEMU logs.

QEMU counts instructions, not cycles. Each executed instruction is converted with the timings
below (zero wait-state memory); the same table converts every runtime's stream (edgeprune-c,
TFLM + CMSIS-NN, the kernels of benchmarks/mcu_kernel_icount.py), so ratios between runtimes are
like for like.

Sources (TIMING_SOURCE names them per core):
 - Cortex-M0+ TRM (Arm DDI 0484C), section 3.3 "Instruction set summary" (Table 3-1): data
   processing 1; LDR/STR 2; LDM/STM/PUSH 1+N; POP 1+N (3+N with pc); B taken 2, not taken 1;
   BL 3; BX/BLX 2; MULS 1 with the single-cycle multiplier (RP2040 is built with it).
 - Cortex-M4 TRM (Arm 100166_0001_00), Table 3-1 "Processor instruction set summary": data
   processing, MUL/MLA/MLS, SMULL/SMLAL, SMLAD and the other DSP multiplies 1; LDR 2, and a
   load or store that follows a load or store pipelines to 1 ("Neighboring load and store
   single instructions can pipeline"); STR 1..2 (we use 1 after a load/store, 2 otherwise);
   LDM/STM/PUSH/POP 1+N; branches taken 1+P with P = 1..3 (we use 2), not taken 1;
   SDIV/UDIV 2..12 (we use 7, the middle).
 The M4 table is used for the M7, M33 and M55 scalar instructions too: the M33 TRM publishes no
 per-instruction timings (its 3-stage pipeline is the M4's), and the M7's dual issue makes the
 M4 timing an upper bound for it. MVE (M55) vector instructions: 2 cycles each (4 beats of a
 128-bit vector at the M55's 2 beats per cycle, Cortex-M55 TRM "beat-wise execution"); the
 overlap of a vector load with a vector MAC is not modelled, so M55 cycles are an upper bound.
"""
from __future__ import annotations

import re
from typing import Dict, Iterable, List, Optional, Tuple

BRANCH_TAKEN_P = 2
DIV_CYCLES = 7

TIMING_SOURCE = {
    "cortex-m0plus": "Cortex-M0+ TRM (DDI 0484C) Table 3-1 timings, single-cycle multiplier",
    "cortex-m4": "Cortex-M4 TRM (100166_0001_00) Table 3-1 timings",
    "cortex-m7": "Cortex-M4 TRM timings on the M7 instruction stream: an upper bound, dual issue "
                 "not modelled",
    "cortex-m33": "Cortex-M4 TRM timings (the M33 TRM publishes none; same 3-stage pipeline)",
    "cortex-m55": "Cortex-M4 TRM timings for scalar instructions, 2 cycles per MVE instruction, "
                  "no beat overlap: an upper bound",
}

_COND = "(eq|ne|cs|hs|cc|lo|mi|pl|vs|vc|hi|ls|ge|lt|gt|le)"


def is_load_store(m: str) -> bool:
    return bool(re.match(r"^(ldr|str)(b|h|sb|sh|d|ex)?(\.w|\.n)?$", m))


def instr_cycles(core: str, mnem: str, ops: str, taken: bool, prev_ls: bool) -> int:
    """Cycles of one executed instruction (see the module docstring for the tables)."""
    m = mnem.lower()
    base = re.sub(r"(eq|ne|cs|hs|cc|lo|mi|pl|vs|vc|hi|ls|ge|lt|gt|le|al)?(\.w|\.n)?$", "", m)
    nregs = ops.count(",") + 1 if "{" in ops else 1
    if core == "cortex-m0plus":
        if base in ("b",) or (m.startswith("b") and m[1:3] in ("eq", "ne", "cs", "hs", "cc", "lo", "mi", "pl", "vs", "vc", "hi", "ls", "ge", "lt", "gt", "le") and len(m) <= 4):
            return 2 if taken else 1
        if base == "bl":
            return 3
        if base in ("bx", "blx"):
            return 2
        if base in ("push", "stmia", "stm", "ldm", "ldmia"):
            return 1 + nregs
        if base == "pop":
            return (3 if "pc" in ops else 1) + nregs
        if is_load_store(m) or base in ("ldr", "str", "ldrb", "strb", "ldrh", "strh", "ldrsb", "ldrsh"):
            return 2
        return 1
    # Armv7-M / Armv8-M mainline (M4 table)
    if m.startswith("v") and core == "cortex-m55":
        return 2
    if base in ("b", "bl", "bx", "blx", "cbz", "cbnz", "le", "wls", "dls", "letp", "wlstp", "dlstp") or re.match(rf"^b{_COND}(\.w|\.n)?$", m):
        if base in ("bl", "blx"):
            return 1 + BRANCH_TAKEN_P
        return 1 + BRANCH_TAKEN_P if taken else 1
    if base in ("push", "pop", "ldm", "ldmia", "stm", "stmia", "stmdb", "ldmdb"):
        return 1 + nregs + (BRANCH_TAKEN_P if base == "pop" and "pc" in ops else 0)
    if base in ("sdiv", "udiv"):
        return DIV_CYCLES
    if is_load_store(m) or base.startswith("ldr") or base.startswith("str"):
        if base.startswith("ldrd") or base.startswith("strd"):
            return 2 if prev_ls else 3
        if base.startswith("ldr"):
            return 1 if prev_ls else 2
        return 1
    if base == "it" or base.startswith("it"):
        return 0  # IT instructions fold into the following instruction (M4 TRM, "IT" row)
    return 1


_INSN = re.compile(r"^0x([0-9a-f]+):\s+((?:[0-9a-f]{4}\s?)+)\s+(\S+)\s*(.*)$")
_EXEC = re.compile(r"^Trace \d+: 0x[0-9a-f]+ \[[0-9a-f]+/([0-9a-f]+)/")


def parse_in_asm(log_text: str):
    """{tb start pc: [(pc, size, mnemonic, operands)]} from QEMU's -d in_asm blocks."""
    p = InAsmParser()
    for line in log_text.splitlines():
        p.feed(line)
    p.flush()
    return p.blocks


_OBJDUMP = re.compile(r"^\s*([0-9a-f]+):\s+((?:[0-9a-f]{4}\s?){1,2})\s+(\S+)\s*(.*)$")


def elf_instructions(elf, arch: str) -> Dict[int, Tuple[int, str, str]]:
    """{pc: (size, mnemonic, operands)} of every instruction of `elf`'s code, decoded by
    binutils' objdump for `arch` (``-m armv8.1-m.main`` decodes MVE and the low-overhead loops,
    which the capstone disassembler of QEMU 7.2's ``-d in_asm`` does not: it splits each of those
    32-bit instructions into a ``.byte`` pair and a bogus 16-bit one)."""
    import subprocess
    from .firmware import tool
    out = subprocess.run([tool("arm-none-eabi-objdump"), "-d", "-m", arch, str(elf)],
                         capture_output=True, text=True, check=True).stdout
    table: Dict[int, Tuple[int, str, str]] = {}
    for line in out.splitlines():
        mt = _OBJDUMP.match(line)
        if not mt or mt.group(3).startswith("."):
            continue
        size = len(mt.group(2).replace(" ", "")) // 2
        ops = mt.group(4).split("@")[0].split(";")[0].strip()
        table[int(mt.group(1), 16)] = (size, mt.group(3), ops)
    return table


def redecode(block: list, table: Dict[int, Tuple[int, str, str]]) -> list:
    """A QEMU in_asm block re-decoded from `table` (elf_instructions): QEMU lists the block's
    bytes exactly, only the instruction boundaries and mnemonics of its disassembler can be
    wrong. The block is kept as QEMU listed it when `table` does not cover it exactly."""
    start = block[0][0]
    end = block[-1][0] + block[-1][1]
    out, pc = [], start
    while pc < end:
        ins = table.get(pc)
        if ins is None:
            return block
        out.append((pc, ins[0], ins[1], ins[2]))
        pc += ins[0]
    return out if pc == end else block


class InAsmParser:
    """Incremental parser of QEMU's ``-d in_asm`` output (one translated block per ``IN:``);
    with `decode` (elf_instructions), each block is re-decoded from the ELF (see redecode)."""

    def __init__(self, decode: Optional[Dict[int, Tuple[int, str, str]]] = None):
        self.blocks: Dict[int, list] = {}
        self._cur: Optional[list] = None
        self.decode = decode

    def feed(self, line: str) -> bool:
        """Consume `line` if it belongs to an in_asm block; returns whether it did."""
        if line.startswith("IN:"):
            self.flush()
            self._cur = []
            return True
        if self._cur is None:
            return False
        mt = _INSN.match(line)
        if mt:
            size = len(mt.group(2).replace(" ", "")) // 2
            self._cur.append((int(mt.group(1), 16), size, mt.group(3), mt.group(4)))
            return True
        self.flush()
        return not line.strip()

    def flush(self) -> None:
        if self._cur:
            if self.decode is not None:
                self._cur = redecode(self._cur, self.decode)
            self.blocks.setdefault(self._cur[0][0], self._cur)
        self._cur = None


class TraceCounter:
    """Instructions and TRM cycles of an executed stream (QEMU ``-d in_asm,exec,nochain``),
    cut into segments at every entry to `mark_pc` (segment k starts at the k-th entry;
    segment -1 is everything before the first)."""

    def __init__(self, core: str, mark_pc: int, call_site: Optional[Tuple[int, int]] = None,
                 decode: Optional[Dict[int, Tuple[int, str, str]]] = None):
        """call_site: [start, end) of a function whose indirect calls (``blx rN``) start the
        spans to attribute separately (TFLM's MicroInterpreterGraph::InvokeSubgraph calling
        each operator's invoke): span k runs from the callee's first block to the return."""
        self.call_site = call_site
        self.spans: List[List[int]] = []      # [segment, instructions, cycles, call pc] per span
        self._ret: Optional[int] = None
        self.core = core
        self.mark_pc = mark_pc & ~1
        self.asm = InAsmParser(decode)
        self.seg = -1
        self.insns: Dict[int, int] = {}
        self.cycles: Dict[int, int] = {}
        self._prev_ls = False
        self._pending = None          # last instruction of the previous block
        self._cache: Dict[Tuple[int, bool], Tuple[int, bool]] = {}
        self._last_cache: Dict[Tuple[int, bool, bool], int] = {}
        self._meta: Dict[int, tuple] = {}

    def feed(self, line: str) -> None:
        # The hot path: a large model's trace is 10^8 lines and this parser, not QEMU, bounds
        # the run's speed, so everything that depends only on a block (or on a block, whether
        # its last branch was taken and the load/store state) is computed once and cached.
        if not line.startswith("Trace "):
            self.asm.feed(line)
            return
        mt = _EXEC.match(line)
        if not mt:
            self.asm.feed(line)
            return
        self.asm.flush()
        self._exec(int(mt.group(1), 16))

    def _block(self, pc: int) -> tuple:
        """(instructions, last pc, end of block, last is a load/store, last is an indirect call
        from the call site, last instruction) of the block listed at `pc`."""
        block = self.asm.blocks.get(pc)
        if block is None:
            raise RuntimeError(f"executed block 0x{pc:x} was never listed by in_asm")
        lpc, lsize, lm, lops = block[-1]
        call = (self.call_site is not None and self.call_site[0] <= lpc < self.call_site[1]
                and lm.lower().startswith("blx") and lops.strip().startswith("r"))
        meta = self._meta[pc] = (len(block), lpc, lpc + lsize, is_load_store(lm.lower()), call,
                                 block)
        return meta

    def _exec(self, pc: int) -> None:
        pend = self._pending
        if pend is not None:
            bpc, lseg = pend
            meta = self._meta[bpc]
            key = (bpc, pc != meta[2], self._prev_ls)
            c = self._last_cache.get(key)
            if c is None:
                _, _, lm, lops = meta[5][-1]
                c = self._last_cache[key] = instr_cycles(self.core, lm, lops, key[1], key[2])
            self.cycles[lseg] = self.cycles.get(lseg, 0) + c
            if self._ret is not None:
                self.spans[-1][2] += c
            self._prev_ls = meta[3]
            self._pending = None
            if self.call_site is not None:
                if self._ret is not None and pc == self._ret:
                    self._ret = None
                elif self._ret is None and meta[4]:
                    self._ret = meta[2]
                    self.spans.append([self.seg, 0, 0, meta[1]])
        if (pc & ~1) == self.mark_pc:
            self.seg += 1
        meta = self._meta.get(pc) or self._block(pc)
        key = (pc, self._prev_ls)
        hit = self._cache.get(key)
        if hit is None:            # cycles of all but the last instruction, and the state after
            c, ls = 0, self._prev_ls
            for (_, _, m, ops) in meta[5][:-1]:
                c += instr_cycles(self.core, m, ops, False, ls)
                ls = is_load_store(m.lower())
            hit = self._cache[key] = (c, ls)
        s = self.seg
        self.insns[s] = self.insns.get(s, 0) + meta[0]
        self.cycles[s] = self.cycles.get(s, 0) + hit[0]
        if self._ret is not None:
            self.spans[-1][1] += meta[0]
            self.spans[-1][2] += hit[0]
        self._prev_ls = hit[1]
        self._pending = (pc, s)

    def finish(self) -> None:
        if self._pending is not None:
            bpc, lseg = self._pending
            _, _, lm, lops = self._meta[bpc][5][-1]
            c = instr_cycles(self.core, lm, lops, True, self._prev_ls)
            self.cycles[lseg] = self.cycles.get(lseg, 0) + c
            if self._ret is not None:
                self.spans[-1][2] += c
            self._pending = None

    def segments(self) -> List[Tuple[int, int]]:
        """[(instructions, cycles)] of segments 0, 1, ..."""
        n = max(self.insns, default=-1) + 1
        return [(self.insns.get(k, 0), self.cycles.get(k, 0)) for k in range(n)]
