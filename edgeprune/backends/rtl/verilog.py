"""Verilog-2001 for a `Plan`: one module per unit and a top module chaining them with valid/ready
streams. Every constant (weights, biases, masks, shifts) is written into the source, so the
files are self-contained for Verilator, yosys and any vendor tool. Deterministic: the same plan
gives the same bytes. Torch-free.

Stream convention: a beat carries N elements of B bits, element i at bits [i*B +: B]; a beat
moves when valid and ready are both high; no ready depends on its own valid.
"""
from __future__ import annotations

from typing import Dict, List

import numpy as np

from .plan import Plan, Unit, csd_digits

TOP = "edgeprune_top"


def _clog2(n: int) -> int:
    return max(1, (int(n) - 1).bit_length())


def _lit(v: int, width: int) -> str:
    """A signed decimal literal of `width` bits."""
    v = int(v)
    return f"-{width}'sd{-v}" if v < 0 else f"{width}'sd{v}"


def _hex(values: List[int], width: int) -> str:
    """Concatenate `values` (element 0 at the lsb) of `width` bits each into one hex literal."""
    word = 0
    for i, v in enumerate(values):
        word |= (int(v) & ((1 << width) - 1)) << (i * width)
    total = width * len(values)
    return f"{total}'h{word:0{(total + 3) // 4}x}"


def _ext(expr: str, bits: int, signed: bool, to: int) -> str:
    """Sign- or zero-extend an element (`name[hi:lo]`) to a `to`-bit signed value."""
    if signed:
        name, rng = expr[:-1].split("[")
        msb = f"{name}[{rng.split(':')[0]}]"
        return f"{{{{{to - bits}{{{msb}}}}}, {expr}}}" if to > bits else expr
    return f"{{{to - bits}'b0, {expr}}}" if to > bits else expr


def _max(a: str, b: str, signed: bool) -> str:
    if signed:
        return f"(($signed({a}) > $signed({b})) ? {a} : {b})"
    return f"(({a} > {b}) ? {a} : {b})"


def _mask(bits: List[bool]) -> str:
    return _hex([1 if b else 0 for b in bits], 1)


def _requant_function(acc: int, rq) -> str:
    """`function rq_f`: clamp(round_half_even(acc / 2^shift)) to the output range."""
    ob = rq.bits
    k = rq.shift
    lines = [f"  function [{ob - 1}:0] rq_f(input signed [{acc - 1}:0] a);"]
    if k > 0:
        qw = max(acc - k + 1, 2)
        lines.append(f"    reg signed [{qw - 1}:0] q;")
        lines.append("    begin")
        rest = f"(|a[{k - 2}:0])" if k > 1 else "1'b0"
        lines.append(f"      q = $signed(a[{acc - 1}:{k}]) + "
                     f"$signed({{1'b0, a[{k - 1}] & ({rest} | a[{k}])}});"
                     if acc > k else
                     f"      q = 0;")
    else:
        qw = acc - k + 1
        lines.append(f"    reg signed [{qw - 1}:0] q;")
        lines.append("    begin")
        lines.append(f"      q = $signed(a) <<< {-k};")
    lo, hi = rq.lo, rq.hi
    cw = max(qw, ob) + 2                 # wide enough for q and both bounds
    lines.append(f"      if (q < {_lit(lo, cw)}) rq_f = {_lit(lo, ob)};")
    lines.append(f"      else if (q > {_lit(hi, cw)}) rq_f = {_lit(hi, ob)};")
    lines.append(f"      else rq_f = q[{ob - 1}:0];")
    lines.append("    end")
    lines.append("  endfunction")
    return "\n".join(lines)


def _ports(u: Unit) -> str:
    iw, ow = u.in_elems * u.in_bits, u.out_elems * u.out_bits
    return (f"(input clk, input rst,\n  input in_valid, output in_ready, input [{iw - 1}:0] in_data,"
            f"\n  output out_valid, input out_ready, output [{ow - 1}:0] out_data);")


def swg_module(u: Unit) -> str:
    c, ih, iw, k, s = (u.p[x] for x in ("C", "IH", "IW", "K", "S"))
    a = u.in_bits
    pw = c * a
    cw, rw = _clog2(iw), _clog2(ih)
    rows = [r >= k - 1 and (r - k + 1) % s == 0 for r in range(ih)]
    cols = [x >= k - 1 and (x - k + 1) % s == 0 for x in range(iw)]
    v = [f"// sliding window: {c} ch x {ih}x{iw}, kernel {k}, stride {s}; emits windows in (ky, kx, c)"
         f" order", f"module ep_{u.name} {_ports(u)}",
         f"  localparam [{ih - 1}:0] ROWS = {_mask(rows)};",
         f"  localparam [{iw - 1}:0] COLS = {_mask(cols)};",
         f"  reg [{rw - 1}:0] row; reg [{cw - 1}:0] col;",
         f"  reg [{k * k * pw - 1}:0] win;",
         "  reg ovalid;",
         "  assign in_ready = !ovalid || out_ready;",
         "  wire take = in_valid && in_ready;",
         "  assign out_valid = ovalid;",
         "  assign out_data = win;"]
    if k > 1:
        lbw = (k - 1) * pw
        v += [f"  // line buffer: entry x holds column x of rows r-1 (lsb) .. r-{k - 1} (msb);"
              f" synchronous read of the next column",
              f"  reg [{lbw - 1}:0] lb [0:{iw - 1}];",
              f"  reg [{lbw - 1}:0] lb_rd;",
              f"  wire [{cw - 1}:0] col_next = take ? ((col == {iw - 1}) ? 0 : col + 1) : col;",
              "  always @(posedge clk) begin",
              "    lb_rd <= lb[col_next];",
              ("    if (take) lb[col] <= {lb_rd[%d:0], in_data};" % ((k - 2) * pw - 1)) if k > 2
              else "    if (take) lb[col] <= in_data;",
              "  end"]
        # new column, top (ky = 0, oldest row) .. bottom (ky = K-1, the incoming pixel)
        newcol = [f"lb_rd[{(k - 2 - ky) * pw + pw - 1}:{(k - 2 - ky) * pw}]" for ky in range(k - 1)]
        newcol.append("in_data")
    else:
        newcol = ["in_data"]
    v.append("  always @(posedge clk) begin")
    v.append("    if (take) begin")
    for ky in range(k):
        for kx in range(k):
            p = ky * k + kx
            src = f"win[{(p + 1) * pw + pw - 1}:{(p + 1) * pw}]" if kx < k - 1 else newcol[ky]
            v.append(f"      win[{p * pw + pw - 1}:{p * pw}] <= {src};")
    v += ["    end",
          "  end",
          "  always @(posedge clk) begin",
          "    if (rst) begin row <= 0; col <= 0; ovalid <= 1'b0; end",
          "    else begin",
          "      if (out_ready) ovalid <= 1'b0;",
          "      if (take) begin",
          "        ovalid <= ROWS[row] && COLS[col];",
          f"        if (col == {iw - 1}) begin col <= 0; row <= (row == {ih - 1}) ? 0 : row + 1; end",
          "        else col <= col + 1;",
          "      end",
          "    end",
          "  end",
          "endmodule"]
    return "\n".join(v) + "\n"


def maxpool_module(u: Unit) -> str:
    c, ih, iw, pk = (u.p[x] for x in ("C", "IH", "IW", "P"))
    a, sg = u.in_bits, u.in_signed
    pw = c * a
    oh, ow = ih // pk, iw // pk
    cw, rw, pwid, ow_w = _clog2(iw), _clog2(ih), _clog2(pk), _clog2(ow)
    v = [f"// max pool {pk}x{pk} stride {pk}: {c} ch x {ih}x{iw} -> {oh}x{ow}",
         f"module ep_{u.name} {_ports(u)}",
         f"  reg [{rw - 1}:0] row; reg [{cw - 1}:0] col;",
         f"  reg [{pwid - 1}:0] cx, ry; reg [{ow_w - 1}:0] ox;",
         f"  reg [{pw - 1}:0] hmax, obuf;",
         f"  reg [{pw - 1}:0] racc [0:{ow - 1}];",
         "  reg ovalid;",
         f"  wire inwin = (row < {oh * pk}) && (col < {ow * pk});",
         f"  wire emit = inwin && (cx == {pk - 1}) && (ry == {pk - 1});",
         "  assign in_ready = !(emit && ovalid && !out_ready);",
         "  wire take = in_valid && in_ready;",
         "  assign out_valid = ovalid;",
         "  assign out_data = obuf;",
         f"  wire [{pw - 1}:0] hnew, vnew;",
         f"  wire [{pw - 1}:0] rcur = racc[ox];"]
    for ch in range(c):
        sl = f"[{ch * a + a - 1}:{ch * a}]"
        v.append(f"  assign hnew{sl} = (cx == 0) ? in_data{sl} : "
                 f"{_max('in_data' + sl, 'hmax' + sl, sg)};")
        v.append(f"  assign vnew{sl} = (ry == 0) ? hnew{sl} : {_max('hnew' + sl, 'rcur' + sl, sg)};")
    v += ["  always @(posedge clk) begin",
          "    if (take && inwin) begin",
          "      hmax <= hnew;",
          f"      if (cx == {pk - 1}) begin",
          f"        if (ry == {pk - 1}) obuf <= vnew; else racc[ox] <= vnew;",
          "      end",
          "    end",
          "  end",
          "  always @(posedge clk) begin",
          "    if (rst) begin row <= 0; col <= 0; cx <= 0; ox <= 0; ry <= 0; ovalid <= 1'b0; end",
          "    else begin",
          "      if (out_ready) ovalid <= 1'b0;",
          "      if (take) begin",
          "        if (emit) ovalid <= 1'b1;",
          f"        if (col == {iw - 1}) begin",
          "          col <= 0; cx <= 0; ox <= 0;",
          f"          row <= (row == {ih - 1}) ? 0 : row + 1;",
          f"          ry <= (row == {ih - 1} || ry == {pk - 1}) ? 0 : ry + 1;",
          "        end else begin",
          "          col <= col + 1;",
          f"          if (cx == {pk - 1}) begin cx <= 0; ox <= ox + 1; end else cx <= cx + 1;",
          "        end",
          "      end",
          "    end",
          "  end",
          "endmodule"]
    return "\n".join(v) + "\n"


def _load_logic(u: Unit) -> List[str]:
    """Input side of an MVU: `load` / `load_data` of the compute buffer. A whole vector per beat
    is latched directly; narrower beats (a linear layer after a feature map) are collected in a
    shift register and transferred when the compute buffer frees up."""
    mw, a, beat = u.p["MW"], u.in_bits, u.in_elems
    if beat == mw:
        return ["  assign in_ready = en && (!cvalid || last_fold);",
                "  wire load = in_valid && in_ready;",
                f"  wire [{mw * a - 1}:0] load_data = in_data;"]
    nb = mw // beat
    bw = _clog2(nb + 1)
    return [f"  reg [{mw * a - 1}:0] lbuf; reg [{bw - 1}:0] lcnt;",
            f"  wire xfer = (lcnt == {nb}) && en && (!cvalid || last_fold);",
            f"  assign in_ready = (lcnt != {nb}) || xfer;",
            "  wire take = in_valid && in_ready;",
            "  wire load = xfer;",
            f"  wire [{mw * a - 1}:0] load_data = lbuf;",
            "  always @(posedge clk) begin",
            "    if (rst) lcnt <= 0;",
            "    else if (take) lcnt <= xfer ? 1 : lcnt + 1;",
            "    else if (xfer) lcnt <= 0;",
            ("    if (take) lbuf <= {in_data, lbuf[%d:%d]};" % (mw * a - 1, beat * a))
            if nb > 1 else "    if (take) lbuf <= in_data;",
            "  end"]


def input_select(dst: str, src: str, sel: str, k: int, sf: int, indent: str) -> List[str]:
    """`dst <= src[sel * k +: k]` (non-blocking, in a clocked block): the SIMD slice of a folded
    MVU's input. With a power-of-two k yosys builds this part-select as an SF:1 mux per bit; with
    any other k it builds a shifter by sel * k whose LUTs grow with SF * k * (k's odd factor)
    (dense LeNet-5's conv2, k = 500, SF = 4: about 58,000 LUT on xc7 by the previous selection
    model; benchmarks/rtl_yosys.py SELECTS), so such a k gets the mux written out as a case
    statement (same values: sel < SF always)."""
    if sf <= 1:
        return [f"{indent}{dst} <= {src};"]
    if not k & (k - 1):
        return [f"{indent}{dst} <= {src}[{sel} * {k} +: {k}];"]
    return ([f"{indent}case ({sel})"]
            + [f"{indent}  {i}: {dst} <= {src}[{i * k + k - 1}:{i * k}];" for i in range(sf)]
            + [f"{indent}  default: {dst} <= {k}'d0;", f"{indent}endcase"])


def rom_file_name(u: Unit) -> str:
    return f"ep_{u.name}_rom.hex"


def rom_words(u: Unit) -> List[int]:
    """A folded MVU's weight ROM: word nf*SF+sf holds W[nf*PE+pe][sf*SIMD+s] at element
    pe*SIMD+s (element 0 at the lsb, W bits each, two's complement)."""
    p = u.p
    pe, simd, nf, sf, w = (p[x] for x in ("PE", "SIMD", "NF", "SF", "W"))
    wm = np.asarray(p["weights"], dtype=np.int64) & ((1 << w) - 1)
    words = []
    for f in range(nf):
        blk = wm[f * pe:(f + 1) * pe]
        for s_ in range(sf):
            word = 0
            for i, v in enumerate(blk[:, s_ * simd:(s_ + 1) * simd].reshape(-1).tolist()):
                word |= v << (i * w)
            words.append(word)
    return words


def rom_file(u: Unit) -> str:
    """The $readmemh file of a folded MVU's weight ROM: one word a line, hex.

    The words used to be assignments in an `initial` block (`rom[i] = ...;`, one statement per
    word). yosys 0.23's Verilog front end takes time quadratic in their number there (a ROM of
    160-bit words, read_verilog + proc alone: 1,250 words 21 s, 2,500 words 76 s; the same
    2,500 words by $readmemh 0.3 s), so dense LeNet-5's fc1 ROM (10,000 words) kept synth_xilinx
    of the whole design past 30 min. The memory yosys infers is the same (same size, same
    initial contents)."""
    digits = (u.p["PE"] * u.p["SIMD"] * u.p["W"] + 3) // 4
    return "".join(f"{word:0{digits}x}\n" for word in rom_words(u))


def mvu_folded_module(u: Unit) -> str:
    p = u.p
    mw, mh, pe, simd, nf, sf = (p[x] for x in ("MW", "MH", "PE", "SIMD", "NF", "SF"))
    a, w, acc = u.in_bits, p["W"], p["ACC"]
    ae = a + (0 if u.in_signed else 1)               # signed width of an input element
    pw_ = ae + w                                     # product width
    bias: np.ndarray = p["bias"]
    rq = p["requant"]
    ob = u.out_bits
    nfw, sfw = _clog2(nf), _clog2(sf)
    depth = nf * sf
    aw = _clog2(depth)
    v = [f"// folded MVU: MW={mw} MH={mh} PE={pe} SIMD={simd} (NF={nf}, SF={sf}), W{w} A{a}, "
         f"acc {acc} bits; {nf * sf} cycles per vector",
         f"module ep_{u.name} {_ports(u)}"]
    if rq is not None:
        v.append(_requant_function(acc, rq))
    v += [f"  reg [{mw * a - 1}:0] cbuf; reg cvalid;",
          f"  reg [{nfw - 1}:0] nf; reg [{sfw - 1}:0] sf;",
          f"  wire last_fold = (nf == {nf - 1}) && (sf == {sf - 1});",
          "  reg s1_v, s1_first, s1_last, s1_vlast, s2_v, s2_first, s2_last, s2_vlast;",
          f"  reg [{nfw - 1}:0] s1_nf, s2_nf;",
          f"  reg [{mh * ob - 1}:0] obuf; reg ovalid;",
          "  wire en = !(s2_v && s2_vlast && ovalid && !out_ready);",
          "  wire issue = cvalid && en;",
          "  assign out_valid = ovalid;",
          "  assign out_data = obuf;"]
    v += _load_logic(u)
    # weight ROM: word nf*SF+sf holds W[nf*PE+pe][sf*SIMD+s] at element pe*SIMD+s; its words
    # are in rom_file(u), loaded with $readmemh (see rom_file)
    v.append(f"  reg [{pe * simd * w - 1}:0] rom [0:{depth - 1}];")
    v.append(f'  initial $readmemh("{rom_file_name(u)}", rom);')
    v += [f"  wire [{aw - 1}:0] addr = nf * {sf} + sf;" if sf > 1 else
          f"  wire [{aw - 1}:0] addr = nf;",
          f"  reg [{pe * simd * w - 1}:0] s1_w;",
          f"  reg [{simd * a - 1}:0] s1_x;",
          f"  reg [{pe * simd * pw_ - 1}:0] s2_p;",
          "  always @(posedge clk) begin",
          "    if (en) s1_w <= rom[addr];",
          "  end",
          "  always @(posedge clk) begin",
          "    if (rst) begin cvalid <= 1'b0; nf <= 0; sf <= 0; s1_v <= 1'b0; s2_v <= 1'b0; end",
          "    else begin",
          "      if (load) begin cvalid <= 1'b1; nf <= 0; sf <= 0; end",
          "      else if (issue) begin",
          "        if (last_fold) cvalid <= 1'b0;",
          f"        if (sf == {sf - 1}) begin sf <= 0; nf <= (nf == {nf - 1}) ? 0 : nf + 1; end",
          "        else sf <= sf + 1;",
          "      end",
          "      if (en) begin s1_v <= issue; s2_v <= s1_v; end",
          "    end",
          "  end",
          "  always @(posedge clk) begin",
          "    if (load) cbuf <= load_data;",
          "    if (en) begin",
          *input_select("s1_x", "cbuf", "sf", simd * a, sf, "      "),
          f"      s1_first <= (sf == 0); s1_last <= (sf == {sf - 1}); s1_vlast <= last_fold; "
          f"s1_nf <= nf;",
          "      s2_first <= s1_first; s2_last <= s1_last; s2_vlast <= s1_vlast; s2_nf <= s1_nf;",
          "    end",
          "  end"]
    # stage 2: the pipeline register after the multipliers
    v.append("  always @(posedge clk) if (en) begin")
    for q in range(pe):
        for s in range(simd):
            i = q * simd + s
            x = _ext(f"s1_x[{s * a + a - 1}:{s * a}]", a, u.in_signed, ae)
            v.append(f"    s2_p[{i * pw_ + pw_ - 1}:{i * pw_}] <= $signed({x}) * "
                     f"$signed(s1_w[{i * w + w - 1}:{i * w}]);")
    v.append("  end")
    # stage 3: adder tree + accumulate; bias per (nf, pe)
    v.append(f"  reg [{pe * acc - 1}:0] bias_w;")
    v.append("  always @* begin")
    v.append("    case (s2_nf)")
    for f in range(nf):
        v.append(f"      {f}: bias_w = {_hex([bias[f * pe + q] for q in range(pe)], acc)};")
    v.append(f"      default: bias_w = {pe * acc}'d0;")
    v.append("    endcase")
    v.append("  end")
    v.append(f"  reg [{pe * acc - 1}:0] accr;")
    v.append(f"  wire [{pe * acc - 1}:0] accn;")
    for q in range(pe):
        terms = " + ".join(
            f"{{{{{acc - pw_}{{s2_p[{(q * simd + s) * pw_ + pw_ - 1}]}}}}, "
            f"s2_p[{(q * simd + s) * pw_ + pw_ - 1}:{(q * simd + s) * pw_}]}}" if acc > pw_ else
            f"s2_p[{(q * simd + s) * pw_ + acc - 1}:{(q * simd + s) * pw_}]"
            for s in range(simd))
        v.append(f"  assign accn[{q * acc + acc - 1}:{q * acc}] = (s2_first ? "
                 f"bias_w[{q * acc + acc - 1}:{q * acc}] : accr[{q * acc + acc - 1}:{q * acc}])"
                 f" + {terms};")
    # the output slice of this neuron fold
    v.append(f"  wire [{pe * ob - 1}:0] oslice;")
    for q in range(pe):
        src = f"accn[{q * acc + acc - 1}:{q * acc}]"
        v.append(f"  assign oslice[{q * ob + ob - 1}:{q * ob}] = "
                 + (f"rq_f({src});" if rq is not None else f"{src};"))
    if nf > 1:
        v.append(f"  reg [{(nf - 1) * pe * ob - 1}:0] stage;")
    v += ["  always @(posedge clk) begin",
          "    if (en && s2_v) begin",
          "      accr <= accn;"]
    if nf > 1:
        v.append(f"      if (s2_last && !s2_vlast) stage[s2_nf * {pe * ob} +: {pe * ob}] <= oslice;")
        v.append("      if (s2_vlast) obuf <= {oslice, stage};")
    else:
        v.append("      if (s2_vlast) obuf <= oslice;")
    v += ["    end",
          "  end",
          "  always @(posedge clk) begin",
          "    if (rst) ovalid <= 1'b0;",
          "    else begin",
          "      if (out_ready) ovalid <= 1'b0;",
          "      if (en && s2_v && s2_vlast) ovalid <= 1'b1;",
          "    end",
          "  end",
          "endmodule"]
    return "\n".join(v) + "\n"


def mvu_unrolled_module(u: Unit) -> str:
    p = u.p
    mw, mh = p["MW"], p["MH"]
    a, acc = u.in_bits, p["ACC"]
    wm: np.ndarray = p["weights"]
    bias: np.ndarray = p["bias"]
    rq = p["requant"]
    ob = u.out_bits
    v = [f"// unrolled MVU with constant weights: MW={mw} MH={mh}, {p['nonzero_weights']} non-zero"
         f" weights as {p['csd_digits']} shift-adds; 1 cycle per vector",
         f"module ep_{u.name} {_ports(u)}"]
    if rq is not None:
        v.append(_requant_function(acc, rq))
    v += [f"  reg [{mw * a - 1}:0] cbuf; reg cvalid;",
          "  wire last_fold = 1'b1;",
          "  reg s1_v;",
          f"  reg [{mh * acc - 1}:0] s1_acc;",
          f"  reg [{mh * ob - 1}:0] obuf; reg ovalid;",
          "  wire en = !(s1_v && ovalid && !out_ready);",
          "  wire issue = cvalid && en;",
          "  assign out_valid = ovalid;",
          "  assign out_data = obuf;"]
    v += _load_logic(u)
    used = sorted({int(i) for i in np.nonzero(wm)[1]})
    for i in used:
        v.append(f"  wire signed [{acc - 1}:0] x{i} = "
                 f"{_ext(f'cbuf[{i * a + a - 1}:{i * a}]', a, u.in_signed, acc)};")
    for j in range(mh):
        terms = []
        for i in np.nonzero(wm[j])[0]:
            for sign, sh in csd_digits(int(wm[j, i])):
                t = f"(x{int(i)} <<< {sh})" if sh else f"x{int(i)}"
                terms.append(("+ " if sign > 0 else "- ") + t)
        expr = f"{_lit(int(bias[j]), acc)} " + " ".join(terms)
        v.append(f"  wire signed [{acc - 1}:0] d{j} = {expr};")
    v += ["  always @(posedge clk) begin",
          "    if (rst) begin cvalid <= 1'b0; s1_v <= 1'b0; end",
          "    else begin",
          "      if (load) cvalid <= 1'b1;",
          "      else if (issue) cvalid <= 1'b0;",
          "      if (en) s1_v <= issue;",
          "    end",
          "  end",
          "  always @(posedge clk) begin",
          "    if (load) cbuf <= load_data;",
          "    if (en) begin"]
    for j in range(mh):
        v.append(f"      s1_acc[{j * acc + acc - 1}:{j * acc}] <= d{j};")
    v += ["    end",
          "    if (en && s1_v) begin"]
    for j in range(mh):
        src = f"s1_acc[{j * acc + acc - 1}:{j * acc}]"
        v.append(f"      obuf[{j * ob + ob - 1}:{j * ob}] <= "
                 + (f"rq_f({src});" if rq is not None else f"{src};"))
    v += ["    end",
          "  end",
          "  always @(posedge clk) begin",
          "    if (rst) ovalid <= 1'b0;",
          "    else begin",
          "      if (out_ready) ovalid <= 1'b0;",
          "      if (en && s1_v) ovalid <= 1'b1;",
          "    end",
          "  end",
          "endmodule"]
    return "\n".join(v) + "\n"


def unit_module(u: Unit) -> str:
    if u.kind == "swg":
        return swg_module(u)
    if u.kind == "maxpool":
        return maxpool_module(u)
    if u.p["style"] == "unrolled":
        return mvu_unrolled_module(u)
    return mvu_folded_module(u)


def top_module(plan: Plan) -> str:
    units = plan.units
    first, last = units[0], units[-1]
    iw = first.in_elems * first.in_bits
    ow = last.out_elems * last.out_bits
    v = [f"// edgeprune RTL dataflow: {len(units)} units, II {plan.ii_cycles} cycles per frame",
         f"module {TOP} (input clk, input rst,",
         f"  input in_valid, output in_ready, input [{iw - 1}:0] in_data,",
         f"  output out_valid, input out_ready, output [{ow - 1}:0] out_data);"]
    for i, u in enumerate(units):
        w = u.out_elems * u.out_bits
        v.append(f"  wire s{i}_valid, s{i}_ready; wire [{w - 1}:0] s{i}_data;")
    for i, u in enumerate(units):
        if i == 0:
            src = ("in_valid", "in_ready", "in_data")
        else:
            src = (f"s{i - 1}_valid", f"s{i - 1}_ready", f"s{i - 1}_data")
        v.append(f"  ep_{u.name} u{i} (.clk(clk), .rst(rst), .in_valid({src[0]}), "
                 f".in_ready({src[1]}), .in_data({src[2]}), .out_valid(s{i}_valid), "
                 f".out_ready(s{i}_ready), .out_data(s{i}_data));")
    n = len(units) - 1
    v += [f"  assign out_valid = s{n}_valid;", f"  assign s{n}_ready = out_ready;",
          f"  assign out_data = s{n}_data;", "endmodule"]
    return "\n".join(v) + "\n"


def generate(plan: Plan) -> Dict[str, str]:
    """{file name: text}: one Verilog file per unit and the top, and each folded MVU's
    weight ROM words ($readmemh file, rom_file)."""
    files = {}
    for u in plan.units:
        files.update(unit_files(u))
    files[f"{TOP}.v"] = top_module(plan)
    return files


def unit_files(u: Unit) -> Dict[str, str]:
    """{file name: text} of one unit: its Verilog, and a folded MVU's ROM words (rom_file)."""
    files = {f"ep_{u.name}.v": unit_module(u)}
    if u.kind == "mvu" and u.p["style"] == "folded":
        files[rom_file_name(u)] = rom_file(u)
    return files


def verilog_sources(files) -> List[str]:
    """The Verilog files among generate()'s (the .hex ROM files are read by $readmemh)."""
    return [f for f in files if f.endswith(".v")]
