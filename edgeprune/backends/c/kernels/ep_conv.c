/* edgeprune-c: dense int8 convolution (NHWC input, OHWI weights), as TFLite's
 * reference_integer_ops::ConvPerChannel computes it.
 *
 * ep_conv_dense_plain: im2col of one pixel into an int8 column, then one dot product per
 *   output channel (cores without the DSP extension, e.g. Cortex-M0+).
 *   Scratch `col`: K = k_h * k_w * in_c bytes.
 * ep_conv_dense_dsp: im2col of two pixels into int16 columns, then a 2 x 2 block (two output
 *   channels x two pixels) of SMLAD dual multiply-accumulates, four int8 weights per word
 *   (the structure of CMSIS-NN's arm_nn_mat_mult_kernel_s8_s16, with the weights of two
 *   channels interleaved word by word so that one pointer walks both).
 *   Scratch `col`: 5 * K4 bytes (K4 = K rounded up to a multiple of 4).
 */
#include "ep_common.h"
#include "ep_im2col.h"
#include "ep_kernels.h"

/* The convolutions whose im2col column is the input pixel itself (no copy): 1x1 windows,
 * stride 1, no padding, in_c a multiple of 4 (costs.py: conv_direct). */
#define EP_CONV_DIRECT(g) ((g)->k_h == 1 && (g)->k_w == 1 && (g)->stride_h == 1 && \
                           (g)->stride_w == 1 && (g)->pad_top == 0 && (g)->pad_left == 0 && \
                           ((g)->in_c & 3) == 0)

/* 3 x 3 windows over 3 input channels at dilation 1 (K = 27): interior windows are packed
 * straight from the input (im2col_pair; costs.py: conv_win27). */
#define EP_CONV_WIN27(g) ((g)->k_h == 3 && (g)->k_w == 3 && (g)->in_c == 3 && \
                          (g)->dil_h == 1 && (g)->dil_w == 1)

static int32_t dot_s8(const int8_t *x, const int8_t *w, int n) {
  int32_t acc = 0;
  int k = 0;
  for (; k + 4 <= n; k += 4) {
    acc += x[k] * w[k];
    acc += x[k + 1] * w[k + 1];
    acc += x[k + 2] * w[k + 2];
    acc += x[k + 3] * w[k + 3];
  }
  for (; k < n; k++) acc += x[k] * w[k];
  return acc;
}

void ep_conv_dense_plain(const ep_window *g, const ep_requant *q_arg, const int8_t *w,
                         const int8_t *in, int8_t *out, int8_t *col) {
  /* a local copy: stores through the int8 output cannot alias it, so its fields stay in
   * registers instead of being reloaded for every output */
  const ep_requant q_copy = *q_arg, *const q = &q_copy;
  const int K = g->k_h * g->k_w * g->in_c;
  for (int oy = 0; oy < g->out_h; oy++) {
    for (int ox = 0; ox < g->out_w; ox++) {
      ep_im2col_s8(g, in, oy, ox, (int8_t)q->in_zp, col);
      const int8_t *wc = w;
      for (int c = 0; c < g->out_c; c++) {
        *out++ = ep_out(q, q->bias[c] + dot_s8(col, wc, K), c, EP_CONV_SINGLE_ROUNDING);
        wc += K;
      }
    }
  }
}

/* Columns of two output pixels A and B, interleaved: for each group g of four window
 * elements, words 4g .. 4g+3 hold A's (x0, x2), A's (x1, x3), B's (x0, x2), B's (x1, x3) as
 * int16 pairs, the pairs SXTB16 and SXTB16 ROR #8 make of four packed int8 weights. Elements
 * past K are zero (their weights are zero too). `stage` (K4 bytes) holds int8 bytes to expand.
 *
 * expand: `n` groups of four int8 values from `src` (any alignment) into one pixel's words of
 * the column (two words per group, stride four words), two groups per pass. */
EP_INLINE uint32_t *expand(const int8_t *src, int n, uint32_t *col) {
#if EP_HAVE_DSP && defined(__GNUC__)
  /* four groups per pass: four LDR in one run, eight SXTB16, four STRD in one run (26 TRM
   * cycles per four groups, the C loop below about 40) */
  if (n >= 4) {
    int passes = n >> 2;
    uint32_t v0, v1, v2, v3, e0, e1, e2, e3;
    __asm volatile(
        "1:\n\t"
        "ldr %[v1], [%[s], #4]\n\t"
        "ldr %[v2], [%[s], #8]\n\t"
        "ldr %[v3], [%[s], #12]\n\t"
        "ldr %[v0], [%[s]], #16\n\t"
        "sxtb16 %[e0], %[v0]\n\t"
        "sxtb16 %[v0], %[v0], ror #8\n\t"
        "sxtb16 %[e1], %[v1]\n\t"
        "sxtb16 %[v1], %[v1], ror #8\n\t"
        "sxtb16 %[e2], %[v2]\n\t"
        "sxtb16 %[v2], %[v2], ror #8\n\t"
        "sxtb16 %[e3], %[v3]\n\t"
        "sxtb16 %[v3], %[v3], ror #8\n\t"
        "strd %[e1], %[v1], [%[c], #16]\n\t"
        "strd %[e2], %[v2], [%[c], #32]\n\t"
        "strd %[e3], %[v3], [%[c], #48]\n\t"
        "strd %[e0], %[v0], [%[c]], #64\n\t"
        "subs %[n], %[n], #1\n\t"
        "bne 1b\n\t"
        : [s] "+r"(src), [c] "+r"(col), [n] "+r"(passes), [v0] "=&r"(v0), [v1] "=&r"(v1),
          [v2] "=&r"(v2), [v3] "=&r"(v3), [e0] "=&r"(e0), [e1] "=&r"(e1), [e2] "=&r"(e2),
          [e3] "=&r"(e3)
        :
        : "cc", "memory");
    n &= 3;
  }
#endif
  for (; n >= 2; n -= 2) {
    const uint32_t v0 = ep_load32(src), v1 = ep_load32(src + 4);
    src += 8;
    col[0] = ep_sxtb16(v0);
    col[1] = ep_sxtb16_ror8(v0);
    col[4] = ep_sxtb16(v1);
    col[5] = ep_sxtb16_ror8(v1);
    col += 8;
  }
  if (n) {
    const uint32_t v = ep_load32(src);
    col[0] = ep_sxtb16(v);
    col[1] = ep_sxtb16_ror8(v);
    col += 4;
  }
  return col;
}

/* Copies and fills of a few bytes (window pieces of in_c bytes, often 1 to 16): word moves
 * inline, no library call. */
EP_INLINE int8_t *copy_small(int8_t *dst, const int8_t *src, int n) {
  for (; n >= 4; n -= 4) {
    ep_store32(dst, ep_load32(src));
    dst += 4;
    src += 4;
  }
  if (n & 2) {
    memcpy(dst, src, 2);
    dst += 2;
    src += 2;
  }
  if (n & 1) *dst++ = *src;
  return dst;
}

EP_INLINE int8_t *fill_small(int8_t *dst, uint32_t v4, int n) {
  for (; n >= 4; n -= 4) {
    ep_store32(dst, v4);
    dst += 4;
  }
  if (n & 2) {
    memcpy(dst, &v4, 2);
    dst += 2;
  }
  if (n & 1) *dst++ = (int8_t)v4;
  return dst;
}

/* One window row (k_w pieces of in_c bytes at input row iy, from column x0) into `dst`,
 * padded positions as the zero point (v4: four of it). */
EP_INLINE int8_t *gather_row(const ep_window *g, const int8_t *in, int iy, int x0, uint32_t v4,
                             int8_t *dst) {
  const int c = g->in_c, kw = g->k_w, dw = g->dil_w;
  if (iy < 0 || iy >= g->in_h) return fill_small(dst, v4, kw * c);
  if (x0 >= 0 && x0 + (kw - 1) * dw < g->in_w && dw == 1)
    return copy_small(dst, in + (iy * g->in_w + x0) * c, kw * c);
  for (int kx = 0; kx < kw; kx++) {
    const int ix = x0 + kx * dw;
    if (ix < 0 || ix >= g->in_w) dst = fill_small(dst, v4, c);
    else dst = copy_small(dst, in + (iy * g->in_w + ix) * c, c);
  }
  return dst;
}

/* The window's rows are runs of k_w * in_c input bytes; when a run is a whole number of groups
 * (k_w * in_c a multiple of 4), each row is expanded on its own: straight from the input when
 * it lies inside (no copy), as the zero point's pairs when it lies in the top or bottom padding,
 * and through `stage` only when it crosses the left or right edge (costs.py:
 * conv_dsp_im2col_counts). Otherwise the whole window is gathered into `stage` first. */
EP_INLINE void im2col_pair(const ep_window *g, const int8_t *in, int oy, int ox, int8_t zp,
                        int K, int K4, int8_t *stage, uint32_t *col) {
  if (EP_CONV_DIRECT(g)) {
    /* 1x1, stride 1, no padding, K a multiple of 4: the pixel's K input bytes are its column */
    expand(in + (oy * g->in_w + ox) * K, K4 >> 2, col);
    return;
  }
  const int c = g->in_c, kw = g->k_w, run = kw * c;
  const uint32_t zp4 = (uint32_t)(uint8_t)zp * 0x01010101u;
  const int y0 = oy * g->stride_h - g->pad_top;
  const int x0 = ox * g->stride_w - g->pad_left;
  if (EP_CONV_WIN27(g) && y0 >= 0 && y0 + 2 < g->in_h && x0 >= 0 && x0 + 2 < g->in_w) {
    /* a 3 x 3 window of 3 channels inside the input (first layers on RGB images): its three
     * rows of 9 bytes packed into 7 words straight from the input by unaligned word loads
     * (each word's bytes from at most two rows; the load before a row's start or ending past
     * it stays inside the input), the 28th byte zero, then expanded (about 40 instructions;
     * through the staging buffer about 300) (costs.py: conv_dsp_im2col_counts, win27) */
    const int8_t *r0 = in + (y0 * g->in_w + x0) * 3;
    const int8_t *r1 = r0 + g->in_w * 3, *r2 = r1 + g->in_w * 3;
#define EP_W27(j, v)                  \
  do {                                \
    const uint32_t v_ = (v);          \
    col[4 * (j)] = ep_sxtb16(v_);     \
    col[4 * (j) + 1] = ep_sxtb16_ror8(v_); \
  } while (0)
    EP_W27(0, ep_load32(r0));
    EP_W27(1, ep_load32(r0 + 4));
    EP_W27(2, (ep_load32(r1 - 1) & ~0xffu) | (uint8_t)r0[8]);
    EP_W27(3, ep_load32(r1 + 3));
    EP_W27(4, (ep_load32(r2 - 2) & ~0xffffu) | (ep_load32(r1 + 5) >> 16));
    EP_W27(5, ep_load32(r2 + 2));
    EP_W27(6, ep_load32(r2 + 5) >> 8);
#undef EP_W27
    return;
  }
  if ((run & 3) == 0) {
    const int dw = g->dil_w;
    const int row_inside = x0 >= 0 && x0 + (kw - 1) * dw < g->in_w && dw == 1;
    const int n = run >> 2;
    const uint32_t zpw = ep_sxtb16(zp4);
    for (int ky = 0; ky < g->k_h; ky++) {
      const int iy = y0 + ky * g->dil_h;
      if (iy < 0 || iy >= g->in_h) {
        for (int j = 0; j < n; j++) {
          col[0] = zpw;
          col[1] = zpw;
          col += 4;
        }
      } else if (row_inside) {
        col = expand(in + (iy * g->in_w + x0) * c, n, col);
      } else {
        gather_row(g, in, iy, x0, zp4, stage);
        col = expand(stage, n, col);
      }
    }
    return;
  }
  int8_t *p = stage;
  for (int ky = 0; ky < g->k_h; ky++) p = gather_row(g, in, y0 + ky * g->dil_h, x0, zp4, p);
  fill_small(p, 0, K4 - K);
  expand(stage, K4 >> 2, col);
}

/* Output channels c, c+1 (weight words interleaved: c's group g, then c+1's) times pixels
 * A, B: a00 = A.c, a01 = B.c, a10 = A.c+1, a11 = B.c+1, kept in registers (the function is
 * inlined into the channel loop: no call, no accumulator array in memory). *w advances past
 * the two channels' words. */
#if EP_HAVE_DSP && defined(__GNUC__)
/* One group of four window elements of the 2 x 2 block: the two channels' weight words and
 * both pixels' int16 pairs in one run of three LDRD (7 cycles for 6 words with the M4's load
 * pipelining), then four SXTB16 through one temporary and eight SMLAD: 15 instructions, 19 TRM
 * cycles per 16 MACs (was 20: three LDRD in two runs). */
#define EP_BLOCK_GROUP                                   \
  "ldrd %[va], %[vb], [%[w]], #8\n\t"                   \
  "ldrd %[x0], %[x1], [%[x]], #8\n\t"                   \
  "ldrd %[x2], %[x3], [%[x]], #8\n\t"                   \
  "sxtb16 %[t], %[va]\n\t"                              \
  "smlad %[a00], %[t], %[x0], %[a00]\n\t"               \
  "smlad %[a01], %[t], %[x2], %[a01]\n\t"               \
  "sxtb16 %[va], %[va], ror #8\n\t"                     \
  "smlad %[a00], %[va], %[x1], %[a00]\n\t"              \
  "smlad %[a01], %[va], %[x3], %[a01]\n\t"              \
  "sxtb16 %[t], %[vb]\n\t"                              \
  "smlad %[a10], %[t], %[x0], %[a10]\n\t"               \
  "smlad %[a11], %[t], %[x2], %[a11]\n\t"               \
  "sxtb16 %[vb], %[vb], ror #8\n\t"                     \
  "smlad %[a10], %[vb], %[x1], %[a10]\n\t"              \
  "smlad %[a11], %[vb], %[x3], %[a11]\n\t"

EP_INLINE void block_2x2(const uint32_t *x, const uint32_t **wp, int groups, int32_t *p00,
                         int32_t *p01, int32_t *p10, int32_t *p11) {
  int32_t a00 = *p00, a01 = *p01, a10 = *p10, a11 = *p11;
  const uint32_t *w = *wp;
  uint32_t va, vb, x0, x1, x2, x3, t;
  int n = groups;
  /* groups % 4 first (one, then two groups, from the bits shifted out), then four groups
   * per loop pass: the loop's SUBS, BNE once per 64 MACs */
  __asm volatile(
      "lsrs %[n], %[n], #1\n\t"
      "bcc 1f\n\t"
      EP_BLOCK_GROUP
      "1:\n\t"
      "lsrs %[n], %[n], #1\n\t"
      "bcc 2f\n\t"
      EP_BLOCK_GROUP
      EP_BLOCK_GROUP
      "2:\n\t"
      "cmp %[n], #0\n\t"
      "beq 4f\n\t"
      "3:\n\t"
      EP_BLOCK_GROUP
      EP_BLOCK_GROUP
      EP_BLOCK_GROUP
      EP_BLOCK_GROUP
      "subs %[n], %[n], #1\n\t"
      "bne 3b\n\t"
      "4:\n\t"
      : [a00] "+r"(a00), [a01] "+r"(a01), [a10] "+r"(a10), [a11] "+r"(a11), [x] "+r"(x),
        [w] "+r"(w), [n] "+r"(n), [va] "=&r"(va), [vb] "=&r"(vb), [x0] "=&r"(x0),
        [x1] "=&r"(x1), [x2] "=&r"(x2), [x3] "=&r"(x3), [t] "=&r"(t)
      :
      : "cc", "memory");
  *p00 = a00; *p01 = a01; *p10 = a10; *p11 = a11;
  *wp = w;
}
#else
EP_INLINE void block_2x2(const uint32_t *x, const uint32_t **wp, int groups, int32_t *p00,
                         int32_t *p01, int32_t *p10, int32_t *p11) {
  int32_t a00 = *p00, a01 = *p01, a10 = *p10, a11 = *p11;
  const uint32_t *w = *wp;
#pragma GCC unroll 2
  for (int n = groups; n > 0; n--) {
    const uint32_t va = w[0], vb = w[1];
    w += 2;
    const uint32_t x00 = x[0], x01 = x[1];          /* pixel A */
    const uint32_t wa02 = ep_sxtb16(va), wa13 = ep_sxtb16_ror8(va);
    a00 = ep_smlad(wa02, x00, a00);
    a00 = ep_smlad(wa13, x01, a00);
    const uint32_t wb02 = ep_sxtb16(vb), wb13 = ep_sxtb16_ror8(vb);
    a10 = ep_smlad(wb02, x00, a10);
    a10 = ep_smlad(wb13, x01, a10);
    const uint32_t x10 = x[2], x11 = x[3];          /* pixel B */
    x += 4;
    a01 = ep_smlad(wa02, x10, a01);
    a01 = ep_smlad(wa13, x11, a01);
    a11 = ep_smlad(wb02, x10, a11);
    a11 = ep_smlad(wb13, x11, a11);
  }
  *p00 = a00; *p01 = a01; *p10 = a10; *p11 = a11;
  *wp = w;
}
#endif

#if EP_HAVE_DSP && defined(__GNUC__) && EP_RQ_FAST && !EP_CONV_SINGLE_ROUNDING
/* All the 2 x 2 blocks of one pixel pair (every pair of output channels) with their
 * requantization, in one asm function: the C loop around block_2x2 kept its pointers and
 * requantization constants on the stack (about 110 TRM cycles per block besides the SMLAD
 * loop); here the per-block state lives in an 11-word frame, the two channels' records are
 * loaded with one LDM, and each output is requantized in 7 instructions (ep_rq_apply's SMMULR
 * double rounding with the rounding constant added by the multiply, SMMLAR; the sign
 * correction from the accumulator's sign, which is y's except where both round to 0: LSL,
 * AND (shared mask per channel), SMMLAR, ADD, ASR, ADD zero point,
 * SSAT; the lower bound of act_min > -128 on the four packed bytes, EP_PAIRS_STORE_LO), and
 * the groups run eight per loop pass (one SUBS/BNE per 128 MACs; groups % 8 by a computed
 * entry into the first pass). Registers in the group loop: a00 r0, a01 r1,
 * a10 r2, a11 r3, x r4, w r5, n r6, va r7, vb r8, x0..x3 r9..r12, t lr.
 * Frame (ep_pairs_ctx, copied to the stack): col, w, bias, rq, outA, outB, outA's end,
 * groups (then the group loop's pass count), out_zp, act_min, entry (both computed by the
 * first call of a layer and written back to the context, which the caller keeps across its
 * pixel pairs). Only for act_max 127 (the caller checks). */
typedef struct {
  const uint32_t *col;
  const uint32_t *w;
  const int32_t *bias;
  const ep_rq *rq;
  int8_t *out_a, *out_b;
  int8_t *out_a_end;           /* out_a + 2 * (channel pairs): the block loop's end */
  int32_t groups, out_zp, act_min;
  uint32_t entry;              /* 0, then set by the first call (with groups replaced by the
                                  group loop's pass count): the group loop's entry point */
} ep_pairs_ctx;
void ep_conv_pairs_full(ep_pairs_ctx *k);   /* act_min -128: SSAT only */
void ep_conv_pairs_lo(ep_pairs_ctx *k);     /* act_min > -128, act_min in every byte,
                                                     halfword-aligned outputs */
void ep_conv_pairs_lo_bytes(ep_pairs_ctx *k);   /* act_min > -128, any alignment */

#define EP_PG                                                   \
  "ldrd r7, r8, [r5], #8\n\t"                                   \
  "ldrd r9, r10, [r4], #8\n\t"                                  \
  "ldrd r11, r12, [r4], #8\n\t"                                 \
  "sxtb16 lr, r7\n\t"                                           \
  "smlad r0, lr, r9, r0\n\t"                                    \
  "smlad r1, lr, r11, r1\n\t"                                   \
  "sxtb16 r7, r7, ror #8\n\t"                                   \
  "smlad r0, r7, r10, r0\n\t"                                   \
  "smlad r1, r7, r12, r1\n\t"                                   \
  "sxtb16 lr, r8\n\t"                                           \
  "smlad r2, lr, r9, r2\n\t"                                    \
  "smlad r3, lr, r11, r3\n\t"                                   \
  "sxtb16 r8, r8, ror #8\n\t"                                   \
  "smlad r2, r8, r10, r2\n\t"                                   \
  "smlad r3, r8, r12, r3\n\t"

/* The four outputs' clamp and stores. full (act_min -128): SSAT alone, four STRB. lo
 * (act_min > -128): the four bytes packed into one word by BFI (A.c, A.c+1, B.c, B.c+1), the
 * lower bound applied to all four by SSUB8 / SEL against act_min in every byte (GE per byte:
 * signed >=), then one STRH per pixel (outputs c, c+1 adjacent; the caller takes this path
 * only for halfword-aligned outputs: 8 instructions, was 12 for the clamp plus 4 STRB). */
#define EP_PAIRS_STORE_FULL                                     \
  "ldrd r4, r5, [sp, #16]\n\t"                                  \
  "strb r2, [r4, #1]\n\t"                                       \
  "strb r0, [r4], #2\n\t"                                       \
  "strb r3, [r5, #1]\n\t"                                       \
  "strb r1, [r5], #2\n\t"                                       \
  "strd r4, r5, [sp, #16]\n\t"
#define EP_PAIRS_STORE_LO                                       \
  "bfi r0, r2, #8, #8\n\t"                                      \
  "bfi r0, r1, #16, #8\n\t"                                     \
  "bfi r0, r3, #24, #8\n\t"                                     \
  "ldrd r4, r5, [sp, #16]\n\t"                                  \
  "ssub8 r1, r0, r12\n\t"                                       \
  "sel r0, r0, r12\n\t"                                         \
  "strh r0, [r4], #2\n\t"                                       \
  "lsrs r0, r0, #16\n\t"                                        \
  "strh r0, [r5], #2\n\t"                                       \
  "strd r4, r5, [sp, #16]\n\t"
#define EP_PAIRS_STORE_LO_BYTES                                 \
  "cmp r0, r12\n\tit lt\n\tmovlt r0, r12\n\t"                   \
  "cmp r1, r12\n\tit lt\n\tmovlt r1, r12\n\t"                   \
  "cmp r2, r12\n\tit lt\n\tmovlt r2, r12\n\t"                   \
  "cmp r3, r12\n\tit lt\n\tmovlt r3, r12\n\t"                   \
  EP_PAIRS_STORE_FULL

/* The group loop runs eight groups (EP_PG, fifteen 32-bit instructions: 60 bytes) per pass;
 * groups % 8 by entering the first pass that many groups before its end (computed once per
 * call into the frame's `entry`, one BX per block instead of the three LSRS/BCC tests). */
#define EP_PAIRS_FN(name, store)                                \
  __asm__(                                                      \
      ".syntax unified\n\t"                                     \
      ".section .text." #name ",\"ax\",%progbits\n\t"          \
      ".align 2\n\t"                                            \
      ".global " #name "\n\t"                                   \
      ".thumb\n\t"                                              \
      ".thumb_func\n\t"                                         \
      ".type " #name ", %function\n"                            \
      #name ":\n\t"                                             \
      "push {r4-r11, lr}\n\t"                                   \
      "ldmia r0, {r1-r11}\n\t"                                  \
      "push {r1-r11}\n\t"                                       \
      "cmp r11, #0\n\t"                                         \
      "bne 5f\n\t"                                              \
      "and r7, r8, #7\n\t"                                      \
      "lsrs r8, r8, #3\n\t"                                     \
      "adr.w r11, 8f\n\t"                                       \
      "cmp r7, #0\n\t"                                          \
      "itt ne\n\t"                                              \
      "addne r8, r8, #1\n\t"                                    \
      "rsbne r7, r7, #8\n\t"                                    \
      "movs r9, #60\n\t"                                        \
      "mla r11, r7, r9, r11\n\t"                                \
      "orr r11, r11, #1\n\t"                                    \
      "str r8, [sp, #28]\n\t"                                   \
      "str r11, [sp, #40]\n\t"                                  \
      "str r8, [r0, #28]\n\t"                                   \
      "str r11, [r0, #40]\n"                                    \
      "5:\n\t"                                                  \
      "ldr r6, [sp, #8]\n\t"                                    \
      "ldrd r0, r2, [r6]\n\t"                                   \
      "ldrd r1, r3, [r6], #8\n\t"                               \
      "str r6, [sp, #8]\n\t"                                    \
      "ldrd r4, r5, [sp, #0]\n\t"                               \
      "ldr r6, [sp, #28]\n\t"                                   \
      "ldr r7, [sp, #40]\n\t"                                   \
      "bx r7\n\t"                                               \
      ".align 2\n"                                              \
      "8:\n\t"                                                  \
      EP_PG EP_PG EP_PG EP_PG EP_PG EP_PG EP_PG EP_PG           \
      "subs r6, r6, #1\n\t"                                     \
      "bne 8b\n\t"                                              \
      "str r5, [sp, #4]\n\t"                                    \
      "ldr r4, [sp, #12]\n\t"                                   \
      "ldmia r4!, {r5-r10}\n\t"                                 \
      "str r4, [sp, #12]\n\t"                                   \
      "lsls r0, r0, #1\n\t"                                     \
      "lsls r1, r1, #1\n\t"                                     \
      "lsls r2, r2, #1\n\t"                                     \
      "lsls r3, r3, #1\n\t"                                     \
      "asr r11, r7, #16\n\t"                                    \
      "asr r12, r10, #16\n\t"                                   \
      "and r4, r11, r0, asr #31\n\t"                            \
      "smmlar r0, r0, r5, r6\n\t"                               \
      "add r0, r0, r4\n\t"                                      \
      "asr r0, r0, r7\n\t"                                      \
      "and r4, r11, r1, asr #31\n\t"                            \
      "smmlar r1, r1, r5, r6\n\t"                               \
      "add r1, r1, r4\n\t"                                      \
      "asr r1, r1, r7\n\t"                                      \
      "and r4, r12, r2, asr #31\n\t"                            \
      "smmlar r2, r2, r8, r9\n\t"                               \
      "add r2, r2, r4\n\t"                                      \
      "asr r2, r2, r10\n\t"                                     \
      "and r4, r12, r3, asr #31\n\t"                            \
      "smmlar r3, r3, r8, r9\n\t"                               \
      "add r3, r3, r4\n\t"                                      \
      "asr r3, r3, r10\n\t"                                     \
      "ldrd r11, r12, [sp, #32]\n\t"                            \
      "add r0, r0, r11\n\t"                                     \
      "add r1, r1, r11\n\t"                                     \
      "add r2, r2, r11\n\t"                                     \
      "add r3, r3, r11\n\t"                                     \
      "ssat r0, #8, r0\n\t"                                     \
      "ssat r1, #8, r1\n\t"                                     \
      "ssat r2, #8, r2\n\t"                                     \
      "ssat r3, #8, r3\n\t"                                     \
      store                                                     \
      "ldr r6, [sp, #24]\n\t"                                   \
      "cmp r4, r6\n\t"                                          \
      "bne 5b\n\t"                                              \
      "add sp, sp, #44\n\t"                                     \
      "pop {r4-r11, pc}\n\t"                                    \
      ".size " #name ", .-" #name "\n\t"                        \
      ".text\n");

EP_PAIRS_FN(ep_conv_pairs_full, EP_PAIRS_STORE_FULL)
EP_PAIRS_FN(ep_conv_pairs_lo, EP_PAIRS_STORE_LO)
EP_PAIRS_FN(ep_conv_pairs_lo_bytes, EP_PAIRS_STORE_LO_BYTES)
#define EP_CONV_PAIRS 1
#else
#define EP_CONV_PAIRS 0
#endif

/* The last output channel of an odd out_c (its words in order) times pixels A, B. */
EP_HOT static void block_1x2(const uint32_t *x, const uint32_t *w, int groups, int32_t *acc) {
  int32_t a0 = acc[0], a1 = acc[1];
  for (int n = groups; n > 0; n--) {
    const uint32_t v = *w++;
    const uint32_t w02 = ep_sxtb16(v), w13 = ep_sxtb16_ror8(v);
    a0 = ep_smlad(w02, x[0], a0);
    a0 = ep_smlad(w13, x[1], a0);
    a1 = ep_smlad(w02, x[2], a1);
    a1 = ep_smlad(w13, x[3], a1);
    x += 4;
  }
  acc[0] = a0; acc[1] = a1;
}

/* w: the weights in ep_conv_dense_dsp's layout (see above), K4 = K rounded up to 4 zero-padded.
 * col: scratch of 5 * K4 bytes, 4-byte aligned. */
void ep_conv_dense_dsp(const ep_window *g, const ep_requant *q_arg, const uint32_t *w,
                       const int8_t *in, int8_t *out, uint32_t *col) {
  /* a local copy: stores through the int8 output cannot alias it, so its fields stay in
   * registers instead of being reloaded for every output */
  const ep_requant q_copy = *q_arg, *const q = &q_copy;
  const int K = g->k_h * g->k_w * g->in_c;
  const int K4 = (K + 3) & ~3, groups = K4 >> 2;
  const int oc = g->out_c;
  const int n_pix = g->out_h * g->out_w;
  int8_t *stage = (int8_t *)(col + K4);
  const int8_t zp = (int8_t)q->in_zp;
  int oy = 0, ox = 0;
  const int direct = EP_CONV_DIRECT(g);
#if EP_CONV_PAIRS
  /* one context for every pixel pair: only the output pointers change */
  ep_pairs_ctx k = {col, w, q->bias, q->rq, 0, 0, 0, groups, q->out_zp, q->act_min, 0};
  const int pairs_ok = oc >= 2 && q->act_max == 127;
  const int lo_packed = q->act_min > -128 && (((uintptr_t)out | (uintptr_t)oc) & 1) == 0;
  if (lo_packed) k.act_min = (int32_t)((uint32_t)(uint8_t)q->act_min * 0x01010101u);
#endif
  for (int p = 0; p < n_pix; p += 2) {
    const int two = p + 1 < n_pix;
    if (direct) {
      /* 1x1, stride 1, no padding: pixel p's K input bytes are its column (inline, no call) */
      expand(in + p * K, groups, col);
      if (two) expand(in + (p + 1) * K, groups, col + 2);
    } else {
      im2col_pair(g, in, oy, ox, zp, K, K4, stage, col);
      if (++ox == g->out_w) { ox = 0; oy++; }
      if (two) {
        im2col_pair(g, in, oy, ox, zp, K, K4, stage, col + 2);
        if (++ox == g->out_w) { ox = 0; oy++; }
      }
    }
    if (!two) {
      for (int j = 0; j < groups; j++) {   /* odd last pixel: B = A, B's outputs not stored */
        col[4 * j + 2] = col[4 * j];
        col[4 * j + 3] = col[4 * j + 1];
      }
    }
    int8_t *o0 = out + p * oc, *o1 = o0 + oc;
    const uint32_t *wc = w;
    int c = 0;
#if EP_CONV_PAIRS
    if (two && pairs_ok) {
      k.out_a = o0;
      k.out_b = o1;
      k.out_a_end = o0 + 2 * (oc >> 1);
      if (q->act_min == -128) ep_conv_pairs_full(&k);
      else if (lo_packed) ep_conv_pairs_lo(&k);
      else ep_conv_pairs_lo_bytes(&k);
      c = oc & ~1;
      wc = w + (size_t)c * groups;
    }
#endif
    for (; c + 2 <= oc; c += 2) {
      int32_t a00 = q->bias[c], a01 = a00, a10 = q->bias[c + 1], a11 = a10;
      block_2x2(col, &wc, groups, &a00, &a01, &a10, &a11);
      /* all four requantized before the first store: a byte store may alias the
       * requantization records, which would otherwise be loaded again for pixel B */
      const int8_t r00 = ep_out(q, a00, c, EP_CONV_SINGLE_ROUNDING);
      const int8_t r10 = ep_out(q, a10, c + 1, EP_CONV_SINGLE_ROUNDING);
      const int8_t r01 = ep_out(q, a01, c, EP_CONV_SINGLE_ROUNDING);
      const int8_t r11 = ep_out(q, a11, c + 1, EP_CONV_SINGLE_ROUNDING);
      o0[c] = r00;
      o0[c + 1] = r10;
      if (two) {
        o1[c] = r01;
        o1[c + 1] = r11;
      }
    }
    if (c < oc) {
      int32_t acc[2] = {q->bias[c], q->bias[c]};
      block_1x2(col, wc, groups, acc);
      o0[c] = ep_out(q, acc[0], c, EP_CONV_SINGLE_ROUNDING);
      if (two) o1[c] = ep_out(q, acc[1], c, EP_CONV_SINGLE_ROUNDING);
    }
  }
}
