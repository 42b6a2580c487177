/* edgeprune-c: int8 depthwise convolution (weights 1 x KH x KW x out_c), as TFLite's
 * reference_integer_ops::DepthwiseConvPerChannel computes it.
 *
 * ep_dwconv_plain: any depth multiplier; padded taps hold the input zero point.
 * ep_dwconv_dsp:
 * - 3x3 windows, dilation 1, depth multiplier 1 (any stride, padding, channel count): channel
 *   by channel. The channel's input is gathered into a padded plane (scratch; the padding
 *   holds the zero point, so no border cases remain; four channels' planes per pass of the
 *   input, one word load per pixel), its nine weights are packed into int16
 *   pairs held in registers, (w0, w2) of each window row and the middle column, and each
 *   window row of an output pixel is one word load of the plane (x0 .. x3), SXTB16 into
 *   (x0, x2) and (x1, x3), one SMLAD (x0 w0 + x2 w2) and one SMLABB (x1 w1). At stride 1 two
 *   neighbouring pixels share the load: the second pixel's row is SMLAD (x1, x3) . (w0, w2)
 *   and SMLATB x2 w1 (6 MACs per load, 2 SXTB16 and 4 multiplies). A row of raw
 *   accumulators, then one requantization pass over it with the channel's constants in
 *   registers. Scratch: ep_dwconv_scratch_bytes (see costs.py: dwconv_scratch).
 * - other windows: depth multiplier 1 and in_c a multiple of 4 (else the plain kernel): four
 *   channels per load; SXTB16 splits them into (c0, c2) and (c1, c3) int16 pairs and
 *   SMLABB / SMLATT accumulate each channel separately (CMSIS-NN's depthwise structure).
 * The 3x3 kernel writes the output channel by channel after reading the whole input, so its
 * output must not overlay its input (codegen drops the overlap rule for it).
 */
#include "ep_common.h"
#include "ep_im2col.h"
#include "ep_kernels.h"

#define EP_DW_MAX_TAPS 64

void ep_dwconv_plain(const ep_window *g, const ep_requant *q_arg, const int8_t *w,
                     const int8_t *in, int8_t *out) {
  /* a local copy: stores through the int8 output cannot alias it, so its fields stay in
   * registers instead of being reloaded for every output */
  const ep_requant q_copy = *q_arg, *const q = &q_copy;
  const int mult = g->out_c / g->in_c;
  for (int oy = 0; oy < g->out_h; oy++) {
    const int y0 = oy * g->stride_h - g->pad_top;
    for (int ox = 0; ox < g->out_w; ox++) {
      const int x0 = ox * g->stride_w - g->pad_left;
      for (int ic = 0; ic < g->in_c; ic++) {
        for (int m = 0; m < mult; m++) {
          const int oc = ic * mult + m;
          int32_t acc = q->bias[oc];
          for (int ky = 0; ky < g->k_h; ky++) {
            const int iy = y0 + ky * g->dil_h;
            const int row_ok = iy >= 0 && iy < g->in_h;
            for (int kx = 0; kx < g->k_w; kx++) {
              const int ix = x0 + kx * g->dil_w;
              const int32_t x = (row_ok && ix >= 0 && ix < g->in_w)
                                    ? in[(iy * g->in_w + ix) * g->in_c + ic] : q->in_zp;
              acc += x * w[(ky * g->k_w + kx) * g->out_c + oc];
            }
          }
          *out++ = ep_out(q, acc, oc, EP_DW_SINGLE_ROUNDING);
        }
      }
    }
  }
}

/* Raw accumulators (no bias) of `rows` output rows of one channel; p: the plane row of the
 * first one's window, next rows `step` bytes further; acc: rows * ow values. Stride 1: pairs
 * of pixels share each word load. */
EP_HOT static void dw3_rows_s1(const int8_t *p, int pw, int step, int rows, int ow,
                               const uint32_t *wk, int32_t *acc) {
  const uint32_t w0 = wk[0], w1 = wk[1], w2 = wk[2], m01 = wk[3], m2 = wk[4];
  const int pairs = ow >> 1;
  for (; rows > 0; rows--, p += step) {
    const int8_t *x = p, *const end = p + 2 * pairs;
#if EP_HAVE_DSP && defined(__GNUC__)
    /* 25 instructions per 18 MACs (GCC's schedule of the C below spills pw: 30) */
    if (pairs) {
      uint32_t v, e;
      int32_t a, b;
      __asm volatile(
          "1:\n\t"
          "ldr %[v], [%[x]]\n\t"
          "sxtb16 %[e], %[v]\n\t"
          "sxtb16 %[v], %[v], ror #8\n\t"
          "smuad %[a], %[e], %[w0]\n\t"
          "smuad %[b], %[v], %[w0]\n\t"
          "smlabb %[a], %[v], %[m01], %[a]\n\t"
          "smlatb %[b], %[e], %[m01], %[b]\n\t"
          "ldr %[v], [%[x], %[pw]]\n\t"
          "sxtb16 %[e], %[v]\n\t"
          "sxtb16 %[v], %[v], ror #8\n\t"
          "smlad %[a], %[e], %[w1], %[a]\n\t"
          "smlad %[b], %[v], %[w1], %[b]\n\t"
          "smlabt %[a], %[v], %[m01], %[a]\n\t"
          "smlatt %[b], %[e], %[m01], %[b]\n\t"
          "ldr %[v], [%[x], %[pw], lsl #1]\n\t"
          "adds %[x], %[x], #2\n\t"
          "sxtb16 %[e], %[v]\n\t"
          "sxtb16 %[v], %[v], ror #8\n\t"
          "smlad %[a], %[e], %[w2], %[a]\n\t"
          "smlad %[b], %[v], %[w2], %[b]\n\t"
          "smlabb %[a], %[v], %[m2], %[a]\n\t"
          "smlatb %[b], %[e], %[m2], %[b]\n\t"
          "strd %[a], %[b], [%[acc]], #8\n\t"
          "cmp %[x], %[end]\n\t"
          "bne 1b\n\t"
          : [x] "+r"(x), [acc] "+r"(acc), [v] "=&r"(v), [e] "=&r"(e), [a] "=&r"(a),
            [b] "=&r"(b)
          : [end] "r"(end), [pw] "r"(pw), [w0] "r"(w0), [w1] "r"(w1), [w2] "r"(w2),
            [m01] "r"(m01), [m2] "r"(m2)
          : "cc", "memory");
    }
#else
    while (x != end) {
      const uint32_t v0 = ep_load32(x), v1 = ep_load32(x + pw), v2 = ep_load32(x + 2 * pw);
      x += 2;
      const uint32_t e0 = ep_sxtb16(v0), o0 = ep_sxtb16_ror8(v0);
      int32_t a = ep_smuad(e0, w0), b = ep_smuad(o0, w0);
      a = ep_smlabb(o0, m01, a);
      b = ep_smlatb(e0, m01, b);
      const uint32_t e1 = ep_sxtb16(v1), o1 = ep_sxtb16_ror8(v1);
      a = ep_smlad(e1, w1, a);
      b = ep_smlad(o1, w1, b);
      a = ep_smlabt(o1, m01, a);
      b = ep_smlatt(e1, m01, b);
      const uint32_t e2 = ep_sxtb16(v2), o2 = ep_sxtb16_ror8(v2);
      a = ep_smlad(e2, w2, a);
      b = ep_smlad(o2, w2, b);
      a = ep_smlabb(o2, m2, a);
      b = ep_smlatb(e2, m2, b);
      acc[0] = a;
      acc[1] = b;
      acc += 2;
    }
#endif
    if (ow & 1) {
      const uint32_t v0 = ep_load32(x), v1 = ep_load32(x + pw), v2 = ep_load32(x + 2 * pw);
      int32_t a = ep_smuad(ep_sxtb16(v0), w0);
      a = ep_smlabb(ep_sxtb16_ror8(v0), m01, a);
      a = ep_smlad(ep_sxtb16(v1), w1, a);
      a = ep_smlabt(ep_sxtb16_ror8(v1), m01, a);
      a = ep_smlad(ep_sxtb16(v2), w2, a);
      a = ep_smlabb(ep_sxtb16_ror8(v2), m2, a);
      *acc++ = a;
    }
  }
}

/* The same at any horizontal stride: one pixel per load. */
EP_HOT static void dw3_rows(const int8_t *p, int pw, int step, int rows, int ow, int stride,
                            const uint32_t *wk, int32_t *acc) {
  const uint32_t w0 = wk[0], w1 = wk[1], w2 = wk[2], m01 = wk[3], m2 = wk[4];
  for (; rows > 0; rows--, p += step) {
    const int8_t *x = p;
    for (int ox = ow; ox > 0; ox--, x += stride) {
      const uint32_t v0 = ep_load32(x), v1 = ep_load32(x + pw), v2 = ep_load32(x + 2 * pw);
      int32_t a = ep_smuad(ep_sxtb16(v0), w0);
      a = ep_smlabb(ep_sxtb16_ror8(v0), m01, a);
      a = ep_smlad(ep_sxtb16(v1), w1, a);
      a = ep_smlabt(ep_sxtb16_ror8(v1), m01, a);
      a = ep_smlad(ep_sxtb16(v2), w2, a);
      a = ep_smlabb(ep_sxtb16_ror8(v2), m2, a);
      *acc++ = a;
    }
  }
}

#if EP_RQ_FAST && !EP_DW_SINGLE_ROUNDING
/* ep_rq_apply's double rounding with SMMULR: (2x * m + 2^31) >> 32 is
 * floor((x * m + 2^30) / 2^31) (|x| < 2^30, so 2x fits), then RoundingDivideByPOT by e
 * ((y + 2^(e-1) - [y < 0]) >> e) when e > 0; `full`: act range [-128, 127], SSAT alone. */
EP_INLINE void dw3_rq(const int32_t *acc, int n, int8_t *out, int step, int32_t b2, int32_t m,
                      int32_t rnd, int32_t e, int32_t zp, int32_t lo, int32_t hi, int pos,
                      int full) {
  for (; n > 0; n--, out += step) {
    const int32_t y = ep_smmulr((int32_t)((uint32_t)b2 + ((uint32_t)*acc++ << 1)), m);
    int32_t t = pos ? ((y + rnd + (y >> 31)) >> e) + zp : y + zp;
    *out = full ? ep_ssat8(t) : ep_clamp_out(t, lo, hi);
  }
}
#endif

/* Requantize n raw accumulators of channel c (bias added here) into out, `step` apart. */
static void dw3_requant(const ep_requant *q, int c, const int32_t *acc, int n, int8_t *out,
                        int step) {
  const int32_t bias = q->bias[c];
#if EP_RQ_FAST && !EP_DW_SINGLE_ROUNDING
  const ep_rq *r = &q->rq[c];
  const int32_t m = r->mult, rnd = r->round, e = r->shift & 0xff;
  const int32_t b2 = (int32_t)((uint32_t)bias << 1);
  const int32_t zp = q->out_zp, lo = q->act_min, hi = q->act_max;
  const int full = lo == -128 && hi == 127;
#if EP_HAVE_DSP && defined(__GNUC__)
  /* e in 1..21 and act_max 127: the output zero point joins the rounding constant
   * ((y + rnd + [y<0] + zp 2^e) >> e = ((y + rnd + [y<0]) >> e) + zp; |y| < 2^30, so no
   * overflow), SSAT, and the lower bound unless it is -128: 10 or 13 instructions */
  if (e > 0 && e <= 21 && hi == 127 && n > 0) {
    const int32_t rz = (int32_t)((uint32_t)rnd + ((uint32_t)zp << e));
    int32_t t, t2, u;
    /* an odd output first, then two per loop pass (one LDRD, one SUBS/BNE per two outputs:
     * 10 TRM cycles per output, was 14). SMMLAR adds the rounding constant with the multiply;
     * the sign correction comes from the sign of 2(x + bias), which is y's except where
     * both round to 0 (ep_common.h) */
    if (n & 1) {
      t = *acc++;
      const int32_t y = ep_smmulr((int32_t)((uint32_t)b2 + ((uint32_t)t << 1)), m);
      *out = ep_clamp_s8((y + rz + (y >> 31)) >> e, lo, 127);
      out += step;
    }
    n >>= 1;
    if (n == 0) return;
    if (lo == -128) {
      __asm volatile(
          "1:\n\t"
          "ldrd %[t], %[t2], [%[acc]], #8\n\t"
          "add %[t], %[b2], %[t], lsl #1\n\t"
          "add %[t2], %[b2], %[t2], lsl #1\n\t"
          "smmlar %[u], %[t], %[m], %[rz]\n\t"
          "add %[u], %[u], %[t], asr #31\n\t"
          "asr %[u], %[u], %[e]\n\t"
          "ssat %[u], #8, %[u]\n\t"
          "strb %[u], [%[out]]\n\t"
          "smmlar %[u], %[t2], %[m], %[rz]\n\t"
          "add %[u], %[u], %[t2], asr #31\n\t"
          "asr %[u], %[u], %[e]\n\t"
          "ssat %[u], #8, %[u]\n\t"
          "strb %[u], [%[out], %[step]]\n\t"
          "add %[out], %[out], %[step], lsl #1\n\t"
          "subs %[n], %[n], #1\n\t"
          "bne 1b\n\t"
          : [acc] "+r"(acc), [out] "+r"(out), [n] "+r"(n), [t] "=&r"(t), [t2] "=&r"(t2),
            [u] "=&r"(u)
          : [b2] "r"(b2), [m] "r"(m), [rz] "r"(rz), [e] "r"(e), [step] "r"(step)
          : "cc", "memory");
    } else {
      /* the lower bound: with rl = rz - lo 2^e the shifted value is t - lo; USAT #8 clamps it
       * to [0, 255], adding lo gives [lo, lo + 255] and SSAT the upper bound 127 (lo >= -128:
       * 3 instructions, CMP/IT/MOVLT after SSAT 4) */
      const int32_t rl = (int32_t)((uint32_t)rz - ((uint32_t)lo << e));
      __asm volatile(
          "1:\n\t"
          "ldrd %[t], %[t2], [%[acc]], #8\n\t"
          "add %[t], %[b2], %[t], lsl #1\n\t"
          "add %[t2], %[b2], %[t2], lsl #1\n\t"
          "smmlar %[u], %[t], %[m], %[rl]\n\t"
          "add %[u], %[u], %[t], asr #31\n\t"
          "asr %[u], %[u], %[e]\n\t"
          "usat %[u], #8, %[u]\n\t"
          "add %[u], %[u], %[lo]\n\t"
          "ssat %[u], #8, %[u]\n\t"
          "strb %[u], [%[out]]\n\t"
          "smmlar %[u], %[t2], %[m], %[rl]\n\t"
          "add %[u], %[u], %[t2], asr #31\n\t"
          "asr %[u], %[u], %[e]\n\t"
          "usat %[u], #8, %[u]\n\t"
          "add %[u], %[u], %[lo]\n\t"
          "ssat %[u], #8, %[u]\n\t"
          "strb %[u], [%[out], %[step]]\n\t"
          "add %[out], %[out], %[step], lsl #1\n\t"
          "subs %[n], %[n], #1\n\t"
          "bne 1b\n\t"
          : [acc] "+r"(acc), [out] "+r"(out), [n] "+r"(n), [t] "=&r"(t), [t2] "=&r"(t2),
            [u] "=&r"(u)
          : [b2] "r"(b2), [m] "r"(m), [rl] "r"(rl), [e] "r"(e), [step] "r"(step), [lo] "r"(lo)
          : "cc", "memory");
    }
    return;
  }
#elif defined(EP_RQ_SMMULR)
  /* the asm loops' arithmetic in portable C (host tests: tests/test_c_dwconv.py) */
  if (e > 0 && e <= 21 && hi == 127 && n > 0) {
    const int32_t rz = (int32_t)((uint32_t)rnd + ((uint32_t)zp << e));
    for (; n > 0; n--, out += step) {
      const int32_t y = ep_smmulr((int32_t)((uint32_t)b2 + ((uint32_t)*acc++ << 1)), m);
      *out = ep_clamp_s8((y + rz + (y >> 31)) >> e, lo, 127);
    }
    return;
  }
#endif
  if (e > 0) {
    if (full) dw3_rq(acc, n, out, step, b2, m, rnd, e, zp, lo, hi, 1, 1);
    else dw3_rq(acc, n, out, step, b2, m, rnd, e, zp, lo, hi, 1, 0);
  } else {
    if (full) dw3_rq(acc, n, out, step, b2, m, rnd, e, zp, lo, hi, 0, 1);
    else dw3_rq(acc, n, out, step, b2, m, rnd, e, zp, lo, hi, 0, 0);
  }
#else
  for (; n > 0; n--, out += step) *out = ep_out(q, *acc++ + bias, c, EP_DW_SINGLE_ROUNDING);
#endif
}

/* Channels c .. c+3 of the input rows r0 .. r1 into four planes `ps` bytes apart: one word
 * load per pixel (the four channels), four byte stores (about 2.5 instructions per byte; one
 * channel at a time took about 10 per byte on narrow planes, the loop's overhead per row). */
EP_HOT static void dw3_gather4(const int8_t *s_row, int in_row, int C, int rows, int nj,
                               int8_t *d, int pw, int ps) {
  for (; rows > 0; rows--, s_row += in_row, d += pw) {
    const int8_t *s = s_row;
    int8_t *e = d;
    for (int j = nj; j > 0; j--, s += C, e++) {
      const uint32_t v = ep_load32(s);
      e[0] = (int8_t)v;
      e[ps] = (int8_t)(v >> 8);
      e[2 * ps] = (int8_t)(v >> 16);
      e[3 * ps] = (int8_t)(v >> 24);
    }
  }
}

static void dwconv_3x3(const ep_window *g, const ep_requant *q, const int8_t *w,
                       const int8_t *in, int8_t *out, uint32_t *scratch) {
  const int C = g->in_c, sh = g->stride_h, sw = g->stride_w;
  const int oh = g->out_h, ow = g->out_w;
  const int ph = (oh - 1) * sh + 3, pw = (ow - 1) * sw + 3;
  const int chunk = EP_DW3_CHUNK(g);
  int32_t *acc = (int32_t *)scratch;
  int8_t *planes = (int8_t *)(scratch + chunk * ow);
  const int ps = EP_DW3_PLANE_BYTES(g), np = EP_DW3_PLANES(g);
  /* plane rows r = iy + pad_top and columns j = ix + pad_left that hold input */
  const int r0 = g->pad_top, r1 = (g->pad_top + g->in_h < ph) ? g->pad_top + g->in_h : ph;
  const int j0 = g->pad_left, j1 = (g->pad_left + g->in_w < pw) ? g->pad_left + g->in_w : pw;
  const int nj = j1 - j0, in_row = g->in_w * C;
  memset(planes, (int8_t)q->in_zp, (size_t)(np * ps));
  for (int c0 = 0; c0 < C;) {
    /* gather four channels at once into the four planes, or (the last C % 4) one */
    const int nch = c0 + 4 <= C ? 4 : 1;
    if (nch == 4) {
      dw3_gather4(in + c0, in_row, C, r1 - r0, nj, planes + r0 * pw + j0, pw, ps);
    } else {
      const int8_t *s_row = in + c0;
      int8_t *d = planes + r0 * pw + j0;
      for (int r = r0; r < r1; r++, s_row += in_row, d += pw) {
        const int8_t *s = s_row;
        int j = 0;
        for (; j + 4 <= nj; j += 4, s += 4 * C) {
          d[j] = s[0];
          d[j + 1] = s[C];
          d[j + 2] = s[2 * C];
          d[j + 3] = s[3 * C];
        }
        for (; j < nj; j++, s += C) d[j] = *s;
      }
    }
    for (int k = 0; k < nch; k++) {
      const int c = c0 + k;
      const int8_t *plane = planes + k * ps;
      /* the nine weights as int16 pairs: (w0, w2) of each window row, (w01, w11), (w21, 0) */
      const int8_t *wc = w + c;
      uint32_t wk[5];
      wk[0] = ep_pack2(wc[0], wc[2 * C]);
      wk[1] = ep_pack2(wc[3 * C], wc[5 * C]);
      wk[2] = ep_pack2(wc[6 * C], wc[8 * C]);
      wk[3] = ep_pack2(wc[C], wc[4 * C]);
      wk[4] = ep_pack2(wc[7 * C], 0);
      for (int oy = 0; oy < oh; oy += chunk) {
        const int rows = oh - oy < chunk ? oh - oy : chunk;
        const int8_t *p = plane + oy * sh * pw;
        if (sw == 1) dw3_rows_s1(p, pw, sh * pw, rows, ow, wk, acc);
        else dw3_rows(p, pw, sh * pw, rows, ow, sw, wk, acc);
        dw3_requant(q, c, acc, rows * ow, out + oy * ow * C + c, C);
      }
    }
    c0 += nch;
  }
}

void ep_dwconv_dsp(const ep_window *g, const ep_requant *q_arg, const int8_t *w,
                   const int8_t *in, int8_t *out, uint32_t *scratch) {
  /* a local copy: stores through the int8 output cannot alias it, so its fields stay in
   * registers instead of being reloaded for every output */
  const ep_requant q_copy = *q_arg, *const q = &q_copy;
  if (EP_DW3(g)) {
    dwconv_3x3(g, q, w, in, out, scratch);
    return;
  }
  const int C = g->in_c, taps = g->k_h * g->k_w;
  if (g->out_c != C || (C & 3) != 0 || taps > EP_DW_MAX_TAPS) {
    ep_dwconv_plain(g, q, w, in, out);
    return;
  }
  const uint32_t zp4 = (uint32_t)(uint8_t)q->in_zp * 0x01010101u;
  const int8_t *src[EP_DW_MAX_TAPS];
  for (int oy = 0; oy < g->out_h; oy++) {
    const int y0 = oy * g->stride_h - g->pad_top;
    for (int ox = 0; ox < g->out_w; ox++) {
      const int x0 = ox * g->stride_w - g->pad_left;
      int t = 0;
      for (int ky = 0; ky < g->k_h; ky++) {
        const int iy = y0 + ky * g->dil_h;
        for (int kx = 0; kx < g->k_w; kx++, t++) {
          const int ix = x0 + kx * g->dil_w;
          src[t] = (iy >= 0 && iy < g->in_h && ix >= 0 && ix < g->in_w)
                       ? in + (iy * g->in_w + ix) * C : (const int8_t *)0;
        }
      }
      for (int c = 0; c < C; c += 4) {
        int32_t a0 = q->bias[c], a1 = q->bias[c + 1], a2 = q->bias[c + 2], a3 = q->bias[c + 3];
        const int8_t *wp = w + c;
        for (t = 0; t < taps; t++) {
          const uint32_t xv = src[t] ? ep_load32(src[t] + c) : zp4;
          const uint32_t wv = ep_load32(wp);
          wp += C;
          const uint32_t x02 = ep_sxtb16(xv), x13 = ep_sxtb16_ror8(xv);
          const uint32_t w02 = ep_sxtb16(wv), w13 = ep_sxtb16_ror8(wv);
          a0 = ep_smlabb(x02, w02, a0);
          a2 = ep_smlatt(x02, w02, a2);
          a1 = ep_smlabb(x13, w13, a1);
          a3 = ep_smlatt(x13, w13, a3);
        }
        out[0] = ep_out(q, a0, c, EP_DW_SINGLE_ROUNDING);
        out[1] = ep_out(q, a1, c + 1, EP_DW_SINGLE_ROUNDING);
        out[2] = ep_out(q, a2, c + 2, EP_DW_SINGLE_ROUNDING);
        out[3] = ep_out(q, a3, c + 3, EP_DW_SINGLE_ROUNDING);
        out += 4;
      }
    }
  }
}
