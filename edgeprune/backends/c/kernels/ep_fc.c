/* edgeprune-c: dense int8 fully-connected layer (weights [out_n][in_n]), as TFLite's
 * reference_integer_ops::FullyConnectedPerChannel computes it.
 *
 * ep_fc_dense_plain: one dot product per output (cores without the DSP extension).
 * ep_fc_dense_dsp: four output rows at a time; four inputs per load, expanded once into
 *   int16 pairs (SXTB16) and shared by the four rows, whose weights (interleaved word by
 *   word, so one pointer walks all four) are expanded the same way; SMLAD does two
 *   multiply-accumulates. No scratch memory.
 */
#include "ep_common.h"
#include "ep_im2col.h"
#include "ep_kernels.h"

void ep_fc_dense_plain(int batches, int in_n, int out_n, const ep_requant *q_arg, const int8_t *w,
                       const int8_t *in, int8_t *out) {
  /* a local copy: stores through the int8 output cannot alias it, so its fields stay in
   * registers instead of being reloaded for every output */
  const ep_requant q_copy = *q_arg, *const q = &q_copy;
  for (int b = 0; b < batches; b++) {
    const int8_t *wr = w;
    for (int o = 0; o < out_n; o++) {
      int32_t acc = q->bias[o];
      int k = 0;
      for (; k + 4 <= in_n; k += 4) {
        acc += in[k] * wr[k];
        acc += in[k + 1] * wr[k + 1];
        acc += in[k + 2] * wr[k + 2];
        acc += in[k + 3] * wr[k + 3];
      }
      for (; k < in_n; k++) acc += in[k] * wr[k];
      *out++ = ep_out(q, acc, o, EP_FC_SINGLE_ROUNDING);
      wr += in_n;
    }
    in += in_n;
  }
}

/* w: for each block of four output rows o .. o+3: per group g of four inputs, the four rows'
 * words (4 int8 weights each); then per remaining input k (in_n % 4 of them) one word holding
 * w[o][k], w[o+1][k], w[o+2][k], w[o+3][k]. Rows past the last full block: each row's words,
 * its last word zero-padded. */
/* Four rows o .. o+3 over the first 4 * groups inputs; returns the weight pointer after them. */
#if EP_HAVE_DSP && defined(__GNUC__)
/* One group of four inputs: the input word and the four rows' weight words in one run of
 * loads (LDR, two LDRD: 6 TRM cycles for 5 words), the input's two SXTB16 pairs, then per row
 * SXTB16, SMLAD, SXTB16 ROR #8, SMLAD through one temporary: 21 instructions, 24 cycles per
 * 16 MACs (GCC's schedule of the C version below: 23 instructions, 27 cycles). */
#define EP_ROWS4_GROUP                                   \
  "ldr %[xv], [%[x]], #4\n\t"                           \
  "ldrd %[v0], %[v1], [%[w]], #8\n\t"                   \
  "ldrd %[v2], %[v3], [%[w]], #8\n\t"                   \
  "sxtb16 %[xe], %[xv]\n\t"                             \
  "sxtb16 %[xv], %[xv], ror #8\n\t"                     \
  "sxtb16 %[t], %[v0]\n\t"                              \
  "smlad %[a0], %[t], %[xe], %[a0]\n\t"                 \
  "sxtb16 %[v0], %[v0], ror #8\n\t"                     \
  "smlad %[a0], %[v0], %[xv], %[a0]\n\t"                \
  "sxtb16 %[t], %[v1]\n\t"                              \
  "smlad %[a1], %[t], %[xe], %[a1]\n\t"                 \
  "sxtb16 %[v1], %[v1], ror #8\n\t"                     \
  "smlad %[a1], %[v1], %[xv], %[a1]\n\t"                \
  "sxtb16 %[t], %[v2]\n\t"                              \
  "smlad %[a2], %[t], %[xe], %[a2]\n\t"                 \
  "sxtb16 %[v2], %[v2], ror #8\n\t"                     \
  "smlad %[a2], %[v2], %[xv], %[a2]\n\t"                \
  "sxtb16 %[t], %[v3]\n\t"                              \
  "smlad %[a3], %[t], %[xe], %[a3]\n\t"                 \
  "sxtb16 %[v3], %[v3], ror #8\n\t"                     \
  "smlad %[a3], %[v3], %[xv], %[a3]\n\t"

EP_INLINE const uint32_t *rows4(const int8_t *x, const uint32_t *w, int groups, int32_t *acc) {
  int32_t a0 = acc[0], a1 = acc[1], a2 = acc[2], a3 = acc[3];
  uint32_t xv, xe, v0, v1, v2, v3, t;
  int n = groups;
  /* groups % 4 first (one, then two groups, from the bits shifted out), then four groups
   * per loop pass: one SUBS/BNE per 64 MACs */
  __asm volatile(
      "lsrs %[n], %[n], #1\n\t"
      "bcc 1f\n\t"
      EP_ROWS4_GROUP
      "1:\n\t"
      "lsrs %[n], %[n], #1\n\t"
      "bcc 4f\n\t"
      EP_ROWS4_GROUP
      EP_ROWS4_GROUP
      "4:\n\t"
      "cmp %[n], #0\n\t"
      "beq 3f\n\t"
      "2:\n\t"
      EP_ROWS4_GROUP
      EP_ROWS4_GROUP
      EP_ROWS4_GROUP
      EP_ROWS4_GROUP
      "subs %[n], %[n], #1\n\t"
      "bne 2b\n\t"
      "3:\n\t"
      : [a0] "+r"(a0), [a1] "+r"(a1), [a2] "+r"(a2), [a3] "+r"(a3), [x] "+r"(x), [w] "+r"(w),
        [n] "+r"(n), [xv] "=&r"(xv), [xe] "=&r"(xe), [v0] "=&r"(v0), [v1] "=&r"(v1),
        [v2] "=&r"(v2), [v3] "=&r"(v3), [t] "=&r"(t)
      :
      : "cc", "memory");
  acc[0] = a0; acc[1] = a1; acc[2] = a2; acc[3] = a3;
  return w;
}
#else
EP_HOT static const uint32_t *rows4(const int8_t *x, const uint32_t *wp, int groups, int32_t *acc) {
  int32_t a0 = acc[0], a1 = acc[1], a2 = acc[2], a3 = acc[3];
  for (int n = groups; n > 0; n--) {
    const uint32_t xv = ep_load32(x);
    x += 4;
    const uint32_t x02 = ep_sxtb16(xv), x13 = ep_sxtb16_ror8(xv);
    const uint32_t v0 = wp[0], v1 = wp[1];
    a0 = ep_smlad(ep_sxtb16(v0), x02, a0);
    a0 = ep_smlad(ep_sxtb16_ror8(v0), x13, a0);
    a1 = ep_smlad(ep_sxtb16(v1), x02, a1);
    a1 = ep_smlad(ep_sxtb16_ror8(v1), x13, a1);
    const uint32_t v2 = wp[2], v3 = wp[3];
    wp += 4;
    a2 = ep_smlad(ep_sxtb16(v2), x02, a2);
    a2 = ep_smlad(ep_sxtb16_ror8(v2), x13, a2);
    a3 = ep_smlad(ep_sxtb16(v3), x02, a3);
    a3 = ep_smlad(ep_sxtb16_ror8(v3), x13, a3);
  }
  acc[0] = a0; acc[1] = a1; acc[2] = a2; acc[3] = a3;
  return wp;
}
#endif

void ep_fc_dense_dsp(int batches, int in_n, int out_n, const ep_requant *q_arg, const uint32_t *w,
                     const int8_t *in, int8_t *out) {
  /* a local copy: stores through the int8 output cannot alias it, so its fields stay in
   * registers instead of being reloaded for every output */
  const ep_requant q_copy = *q_arg, *const q = &q_copy;
  const int groups = in_n >> 2, n4 = in_n & ~3;
  for (int b = 0; b < batches; b++) {
    const uint32_t *wp = w;
    int o = 0;
    for (; o + 4 <= out_n; o += 4) {
      int32_t acc[4] = {q->bias[o], q->bias[o + 1], q->bias[o + 2], q->bias[o + 3]};
      wp = rows4(in, wp, groups, acc);
      int32_t a0 = acc[0], a1 = acc[1], a2 = acc[2], a3 = acc[3];
      for (int k = n4; k < in_n; k++) {
        const int32_t xv = in[k];
        const uint32_t v = *wp++;
        a0 += xv * (int8_t)(v & 0xff);
        a1 += xv * (int8_t)((v >> 8) & 0xff);
        a2 += xv * (int8_t)((v >> 16) & 0xff);
        a3 += xv * (int8_t)(v >> 24);
      }
      /* all four before the first store (a byte store may alias the records) */
      const int8_t r0 = ep_out(q, a0, o, EP_FC_SINGLE_ROUNDING);
      const int8_t r1 = ep_out(q, a1, o + 1, EP_FC_SINGLE_ROUNDING);
      const int8_t r2 = ep_out(q, a2, o + 2, EP_FC_SINGLE_ROUNDING);
      const int8_t r3 = ep_out(q, a3, o + 3, EP_FC_SINGLE_ROUNDING);
      out[o] = r0;
      out[o + 1] = r1;
      out[o + 2] = r2;
      out[o + 3] = r3;
    }
    for (; o < out_n; o++) {
      const int8_t *x = in;
      int32_t a0 = q->bias[o];
      for (int n = groups; n > 0; n--) {
        const uint32_t xv = ep_load32(x), v = *wp++;
        x += 4;
        a0 = ep_smlad(ep_sxtb16(v), ep_sxtb16(xv), a0);
        a0 = ep_smlad(ep_sxtb16_ror8(v), ep_sxtb16_ror8(xv), a0);
      }
      if (n4 < in_n) {
        uint32_t v = *wp++;
        for (int k = n4; k < in_n; k++, v >>= 8) a0 += in[k] * (int8_t)(v & 0xff);
      }
      out[o] = ep_out(q, a0, o, EP_FC_SINGLE_ROUNDING);
    }
    in += in_n;
    out += out_n;
  }
}
