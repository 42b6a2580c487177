"""The iCEBreaker UART wrapper (backends/rtl/synth.py uart_wrapper) in Icarus Verilog around a
stub dataflow (latches one pixel, streams it back as the output vector): bytes sent on rx
arrive as the pixel, the output comes back on tx little-endian and sign-extended. One and
three channels per pixel (the single-channel path once dropped the pixel's low bits)."""
from __future__ import annotations

import shutil
import subprocess
from types import SimpleNamespace

import pytest

from edgeprune.backends.rtl.synth import uart_wrapper

pytestmark = pytest.mark.skipif(not shutil.which("iverilog"), reason="iverilog not installed")

DIV = 8                      # clock cycles per bit: 1 MHz clock, 125 kbaud


def _stub(iw: int, ow: int) -> str:
    data = "pix" if ow == iw else f"{{{ow - iw}'d0, pix}}"
    return f"""module edgeprune_top (input clk, input rst, input in_valid, output in_ready,
  input [{iw - 1}:0] in_data, output out_valid, input out_ready, output [{ow - 1}:0] out_data);
  reg [{iw - 1}:0] pix; reg ov;
  assign in_ready = !ov; assign out_valid = ov; assign out_data = {data};
  always @(posedge clk) if (rst) ov <= 0; else if (in_valid && !ov) begin pix <= in_data; ov <= 1;
    end else if (ov && out_ready) ov <= 0;
endmodule
"""


def _bench(send, n_out) -> str:
    tx_bytes = "\n".join(
        f"    send(8'h{b:02x});" for b in send)
    return f"""`timescale 1ns/1ns
module tb;
  reg clk = 0; always #5 clk = !clk;
  reg rx = 1; wire tx, led_n;
  edgeprune_uart_top dut (.clk(clk), .rx(rx), .tx(tx), .led_n(led_n));
  task send(input [7:0] b); integer i; begin
    rx = 0; repeat ({DIV}) @(posedge clk);
    for (i = 0; i < 8; i = i + 1) begin rx = b[i]; repeat ({DIV}) @(posedge clk); end
    rx = 1; repeat ({DIV}) @(posedge clk);
  end endtask
  integer k, i; reg [7:0] got;
  initial begin
    repeat (100) @(posedge clk);
{tx_bytes}
  end
  initial begin
    for (k = 0; k < {n_out}; k = k + 1) begin
      @(negedge tx); repeat ({DIV // 2}) @(posedge clk);
      for (i = 0; i < 8; i = i + 1) begin repeat ({DIV}) @(posedge clk); got[i] = tx; end
      repeat ({DIV}) @(posedge clk);
      $display("%02x", got);
    end
    $finish;
  end
  initial begin #2000000 $display("timeout"); $finish; end
endmodule
"""


@pytest.mark.parametrize("chans,pixel", [(1, [0xA7]), (3, [0x5C, 0x93, 0xE1])])
def test_uart_wrapper_round_trip(tmp_path, chans, pixel):
    outs, ob = 2, 12
    plan = SimpleNamespace(units=[SimpleNamespace(in_elems=chans),
                                  SimpleNamespace(out_elems=outs, out_bits=ob)])
    (tmp_path / "top.v").write_text(uart_wrapper(plan, clock_mhz=1.0, baud=125000))
    (tmp_path / "stub.v").write_text(_stub(8 * chans, outs * ob))
    (tmp_path / "tb.v").write_text(_bench(pixel, outs * 2))
    subprocess.run(["iverilog", "-o", "sim", "tb.v", "top.v", "stub.v"], cwd=tmp_path,
                   check=True, capture_output=True)
    out = subprocess.run(["vvp", "sim"], cwd=tmp_path, capture_output=True, text=True).stdout
    got = [int(x, 16) for x in out.split() if len(x) == 2]
    word = sum(b << (8 * i) for i, b in enumerate(pixel))        # first byte = lowest bits
    want = []
    for j in range(outs):
        e = (word >> (j * ob)) & ((1 << ob) - 1)
        e16 = e | (0xF000 if e >> (ob - 1) else 0)               # sign-extended to 2 bytes
        want += [e16 & 0xFF, e16 >> 8]
    assert got == want, out
