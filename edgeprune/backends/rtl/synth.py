"""The open FPGA flow on a generated design: yosys (synth_ice40 / synth_xilinx -family xc7) for
cell counts, nextpnr-ice40 + icepack for an iCE40 bitstream with its Fmax, and the UART stream
wrapper + PCF for the iCEBreaker board. Torch-free; the tools are Debian's yosys,
nextpnr-ice40 and fpga-icestorm (`make setup`).
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Dict, List, Optional

from .ir import RtlError
from .plan import Plan
from .verilog import TOP

UART_TOP = "edgeprune_uart_top"
# iCEBreaker v1.0e (1BitSquared schematic, icebreaker.pcf): 12 MHz oscillator on pin 35; the FTDI
# FT2232H channel B UART: FPGA RX on pin 6, TX on pin 9; red LED (LEDR_N) on pin 11.
ICEBREAKER_PCF = "set_io clk 35\nset_io rx 6\nset_io tx 9\nset_io led_n 11\n"
BAUD = 115200

# Cells that are LUTs / flip-flops / block RAM / DSP in yosys's `stat` output.
_ICE40 = {"lut": ("SB_LUT4",), "bram": ("SB_RAM40_4K",), "dsp": ("SB_MAC16",)}
# 7-series: LUT1..6; LUT-as-memory cells count the LUTs they occupy (UG474 Table 2-5 / yosys
# xilinx cells_sim.v: RAM32M/RAM64M use 4 LUTs, RAM32X1D/RAM64X1D 2, RAM128X1D 4, SRL 1).
_XC7_LUTRAM = {"RAM32M": 4, "RAM64M": 4, "RAM32X1D": 2, "RAM64X1D": 2, "RAM128X1D": 4,
               "RAM32X1S": 1, "RAM64X1S": 1, "RAM128X1S": 2, "RAM256X1S": 4, "SRL16E": 1,
               "SRLC32E": 1, "RAM32M16": 8, "RAM64M8": 8}


def tools_available(*names: str) -> bool:
    return all(shutil.which(n) for n in names)


def _run(cmd: List[str], cwd: Path, timeout: int, what: str) -> str:
    try:
        r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    except FileNotFoundError:
        raise RtlError(f"{cmd[0]} is not installed (make setup installs it)") from None
    except subprocess.TimeoutExpired:
        raise RtlError(f"{what} took longer than {timeout} s") from None
    if r.returncode != 0:
        text = (r.stderr + "\n" + r.stdout).splitlines()
        err = [l for l in text if "ERROR" in l or "Error" in l] or text[-3:] or ["?"]
        raise RtlError(f"{what} failed: {err[0].strip()[:220]}")
    return r.stdout + r.stderr


def _cells(stat_text: str) -> Dict[str, int]:
    """Cell counts of the top module from yosys `stat` (the last 'Number of cells' block)."""
    blocks = stat_text.split("Number of cells:")
    if len(blocks) < 2:
        raise RtlError("yosys printed no cell statistics")
    cells: Dict[str, int] = {}
    for line in blocks[-1].splitlines()[1:]:
        m = re.match(r"\s+(\S+)\s+(\d+)\s*$", line)
        if m:
            cells[m.group(1)] = int(m.group(2))
        elif line.strip() == "" and cells:
            break
    return cells


def summarize_cells(cells: Dict[str, int], family: str) -> Dict[str, int]:
    if family == "ice40":
        return {"lut": sum(cells.get(c, 0) for c in _ICE40["lut"]),
                "ff": sum(v for c, v in cells.items() if c.startswith("SB_DFF")),
                "bram": sum(cells.get(c, 0) for c in _ICE40["bram"]),
                "dsp": sum(cells.get(c, 0) for c in _ICE40["dsp"]),
                "carry": cells.get("SB_CARRY", 0)}
    lut = sum(v for c, v in cells.items() if re.fullmatch(r"LUT[1-6]", c))
    lut += sum(cells.get(c, 0) * n for c, n in _XC7_LUTRAM.items())
    return {"lut": lut,
            "ff": sum(v for c, v in cells.items() if re.fullmatch(r"FD[RSCP]E", c)),
            "bram": cells.get("RAMB18E1", 0) + 2 * cells.get("RAMB36E1", 0),
            "dsp": cells.get("DSP48E1", 0),
            "lutram": sum(cells.get(c, 0) * n for c, n in _XC7_LUTRAM.items())}


def synthesize(verilog_dir: Path, files: List[str], top: str, family: str, *,
               json_out: Optional[str] = None, timeout: int = 1800) -> Dict[str, object]:
    """yosys synthesis of `files` (in `verilog_dir`); returns the cell summary (BRAM in the
    family's unit: SB_RAM40_4K for ice40, RAMB18 for xc7) and the raw cell counts."""
    if family == "ice40":
        synth = f"synth_ice40 -top {top}" + (f" -json {json_out}" if json_out else "")
    elif family == "xc7":
        synth = f"synth_xilinx -family xc7 -top {top}"
    else:
        raise RtlError(f"unknown FPGA family '{family}' (ice40 | xc7)")
    stat_file = f"yosys_stat_{family}.txt"
    script = "; ".join([f"read_verilog {f}" for f in files] + [synth, f"tee -q -o {stat_file} stat"])
    _run(["yosys", "-q", "-p", script], verilog_dir, timeout, f"yosys {synth.split()[0]}")
    stat = Path(verilog_dir) / stat_file
    cells = _cells(stat.read_text())
    stat.unlink()
    return {**summarize_cells(cells, family), "cells": cells}


def uart_wrapper(plan: Plan, clock_mhz: float, baud: int = BAUD) -> str:
    """A board top: 8N1 UART in (one byte per pixel channel, raster order) -> the design -> UART
    out (each output accumulator as ceil(bits/8) bytes, little-endian, sign-extended). A pixel
    arriving while the design's input is busy sets the LED (the host sends one frame, then reads
    the result)."""
    first, last = plan.units[0], plan.units[-1]
    chans = first.in_elems
    outs, ob = last.out_elems, last.out_bits
    nbytes = (ob + 7) // 8
    div = int(round(clock_mhz * 1e6 / baud))
    iw, ow = chans * 8, outs * ob
    total = outs * nbytes
    pcw = max(1, (chans - 1).bit_length())
    return f"""// UART stream wrapper for {TOP}: {baud} baud 8N1 at {clock_mhz:g} MHz (divider {div})
module {UART_TOP} (input clk, input rx, output tx, output led_n);
  reg [5:0] por = 0;
  wire rst = !por[5];
  always @(posedge clk) if (!por[5]) por <= por + 1;
  // receiver: sample mid-bit
  reg [1:0] rx_s = 2'b11;
  always @(posedge clk) rx_s <= {{rx_s[0], rx}};
  reg [15:0] rx_cnt = 0; reg [3:0] rx_bit = 0; reg [7:0] rx_sh = 0; reg rx_busy = 0; reg rx_done = 0;
  always @(posedge clk) begin
    rx_done <= 1'b0;
    if (!rx_busy) begin
      if (!rx_s[1]) begin rx_busy <= 1'b1; rx_cnt <= {div // 2}; rx_bit <= 0; end
    end else if (rx_cnt == 0) begin
      rx_cnt <= {div - 1};
      if (rx_bit == 9) begin rx_busy <= 1'b0; rx_done <= rx_s[1]; end
      else begin if (rx_bit != 0) rx_sh <= {{rx_s[1], rx_sh[7:1]}}; rx_bit <= rx_bit + 1; end
    end else rx_cnt <= rx_cnt - 1;
  end
  // pixel beat: {chans} byte(s)
  reg [{iw - 1}:0] pix = 0; reg [{pcw - 1}:0] pcnt = 0; reg in_valid = 0; reg overrun = 0;
  wire in_ready;
  always @(posedge clk) begin
    if (rst) begin pcnt <= 0; in_valid <= 1'b0; overrun <= 1'b0; end
    else begin
      if (in_valid && in_ready) in_valid <= 1'b0;
      if (rx_done) begin
        if (in_valid && !in_ready) overrun <= 1'b1;
        pix <= {"rx_sh" if chans == 1 else f"{{rx_sh, pix[{iw - 1}:8]}}"};
        if (pcnt == {chans - 1}) begin pcnt <= 0; in_valid <= 1'b1; end else pcnt <= pcnt + 1;
      end
    end
  end
  assign led_n = !overrun;
  wire out_valid; wire [{ow - 1}:0] out_data;
  reg [{total * 8 - 1}:0] obytes = 0; reg [15:0] ocnt = 0; reg obusy = 0;
  wire out_ready = !obusy;
  {TOP} net (.clk(clk), .rst(rst), .in_valid(in_valid), .in_ready(in_ready), .in_data(pix),
    .out_valid(out_valid), .out_ready(out_ready), .out_data(out_data));
  // output bytes: element j sign-extended to {nbytes * 8} bits
  wire [{total * 8 - 1}:0] packed;
  genvar j;
  generate for (j = 0; j < {outs}; j = j + 1) begin : pk
    assign packed[j * {nbytes * 8} +: {nbytes * 8}] = {{{{{nbytes * 8 - ob}{{out_data[j * {ob} + {ob - 1}]}}}}, out_data[j * {ob} +: {ob}]}};
  end endgenerate
  // transmitter
  reg [15:0] tx_cnt = 0; reg [3:0] tx_bit = 0; reg [9:0] tx_sh = 10'h3ff; reg tx_busy = 0;
  assign tx = tx_sh[0];
  always @(posedge clk) begin
    if (rst) begin obusy <= 1'b0; tx_busy <= 1'b0; tx_sh <= 10'h3ff; end
    else begin
      if (out_valid && out_ready) begin obytes <= packed; ocnt <= {total}; obusy <= 1'b1; end
      if (!tx_busy && obusy) begin
        if (ocnt == 0) obusy <= 1'b0;
        else begin
          tx_sh <= {{1'b1, obytes[7:0], 1'b0}}; obytes <= obytes >> 8; ocnt <= ocnt - 1;
          tx_busy <= 1'b1; tx_cnt <= {div - 1}; tx_bit <= 0;
        end
      end else if (tx_busy) begin
        if (tx_cnt == 0) begin
          tx_cnt <= {div - 1}; tx_sh <= {{1'b1, tx_sh[9:1]}};
          if (tx_bit == 9) tx_busy <= 1'b0; else tx_bit <= tx_bit + 1;
        end else tx_cnt <= tx_cnt - 1;
      end
    end
  end
endmodule
"""


def bitstream_ice40(verilog_dir: Path, files: List[str], *, device: str = "up5k",
                    package: str = "sg48", clock_mhz: float = 12.0, pcf: str = ICEBREAKER_PCF,
                    timeout: int = 1800, seed: int = 1) -> Dict[str, object]:
    """yosys synth_ice40 -> nextpnr-ice40 (PCF) -> icepack for the UART top in `verilog_dir`.
    Writes edgeprune.json/.asc/.bin and icebreaker.pcf there; returns the placed utilisation and
    nextpnr's Fmax (MHz) for the clock."""
    for tool in ("yosys", "nextpnr-ice40", "icepack"):
        if not shutil.which(tool):
            raise RtlError(f"{tool} is not installed (make setup installs the open FPGA flow)")
    d = Path(verilog_dir)
    (d / "icebreaker.pcf").write_text(pcf)
    syn = synthesize(d, files, UART_TOP, "ice40", json_out="edgeprune.json", timeout=timeout)
    log = _run(["nextpnr-ice40", f"--{device}", "--package", package, "--json", "edgeprune.json",
                "--pcf", "icebreaker.pcf", "--asc", "edgeprune.asc", "--freq", f"{clock_mhz:g}",
                "--seed", str(seed), "--report", "nextpnr_report.json"], d, timeout,
               "nextpnr-ice40 (place and route)")
    _run(["icepack", "edgeprune.asc", "edgeprune.bin"], d, timeout, "icepack")
    rep = json.loads((d / "nextpnr_report.json").read_text())
    util = {k: v for k, v in rep.get("utilization", {}).items()}
    fmax = [v.get("achieved") for v in rep.get("fmax", {}).values() if "achieved" in v]
    if not fmax:
        m = re.findall(r"Max frequency for clock\s+'[^']+':\s+([\d.]+) MHz", log)
        fmax = [float(x) for x in m]
    (d / "edgeprune.asc").unlink()
    (d / "edgeprune.json").unlink()
    return {"synth": {k: v for k, v in syn.items() if k != "cells"}, "cells": syn["cells"],
            "placed": {"lc": util.get("ICESTORM_LC", {}), "ram": util.get("ICESTORM_RAM", {}),
                       "dsp": util.get("ICESTORM_DSP", {})},
            "fmax_mhz": round(min(fmax), 2) if fmax else None,
            "bitstream": "edgeprune.bin", "bitstream_bytes": (d / "edgeprune.bin").stat().st_size}
