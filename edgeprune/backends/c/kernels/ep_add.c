/* edgeprune-c: int8 element-wise ADD of two same-shape tensors, as TFLite's
 * reference_integer_ops::AddFunc computes it (inputs rescaled to a common scale with
 * left_shift = 20, summed, rescaled to the output). The inputs' rescalings are tables
 * (ep_add_params). Element i is written after reading element i of both inputs, so the output
 * may overlay either input. */
#include "ep_common.h"
#include "ep_kernels.h"

void ep_add(const ep_add_params *p, int n, const int8_t *a, const int8_t *b, int8_t *out) {
  const int32_t *t1 = p->t1 + 128, *t2 = p->t2 + 128;
  const int32_t zp = p->out_zp, lo = p->act_min, hi = p->act_max;
  if (p->fast) {
    const ep_rq rq = p->out_rq;
    int i = 0;
#if EP_HAVE_DSP && defined(__GNUC__) && !EP_ADD_SINGLE_ROUNDING
    /* two elements per pass in asm when the output's shift e is in 1..21 and act_max is 127:
     * four LDRSB and four table LDR in one run, ep_rq_apply's SMMULR double rounding with the
     * output zero point in the rounding constant (rz = round + zp 2^e: no overflow for
     * |y| < 2^30, as in ep_dwconv.c), SSAT, the lower bound unless it is -128 (about 15 TRM
     * cycles per element, the C loop 23). Both inputs' elements are read before the outputs
     * are written, so the output may still overlay an input. */
    const int32_t e = rq.shift & 0xff;
    if (e > 0 && e <= 21 && hi == 127 && n >= 2) {
      const int32_t rz = (int32_t)((uint32_t)rq.round + ((uint32_t)zp << e)), m = rq.mult;
      int pairs = n >> 1;
      int32_t x0, x1, y0, y1;
      const int8_t *pa = a, *pb = b;
      int8_t *po = out;
      if (lo == -128) {
        __asm volatile(
            "1:\n\t"
            "ldrsb %[x0], [%[a]], #1\n\t"
            "ldrsb %[x1], [%[a]], #1\n\t"
            "ldrsb %[y0], [%[b]], #1\n\t"
            "ldrsb %[y1], [%[b]], #1\n\t"
            "ldr %[x0], [%[t1], %[x0], lsl #2]\n\t"
            "ldr %[x1], [%[t1], %[x1], lsl #2]\n\t"
            "ldr %[y0], [%[t2], %[y0], lsl #2]\n\t"
            "ldr %[y1], [%[t2], %[y1], lsl #2]\n\t"
            "add %[x0], %[x0], %[y0]\n\t"
            "add %[x1], %[x1], %[y1]\n\t"
            "lsl %[x0], %[x0], #1\n\t"
            "lsl %[x1], %[x1], #1\n\t"
            "smmulr %[x0], %[x0], %[m]\n\t"
            "smmulr %[x1], %[x1], %[m]\n\t"
            "add %[y0], %[x0], %[rz]\n\t"
            "add %[y0], %[y0], %[x0], asr #31\n\t"
            "asr %[y0], %[y0], %[e]\n\t"
            "ssat %[y0], #8, %[y0]\n\t"
            "add %[y1], %[x1], %[rz]\n\t"
            "add %[y1], %[y1], %[x1], asr #31\n\t"
            "asr %[y1], %[y1], %[e]\n\t"
            "ssat %[y1], #8, %[y1]\n\t"
            "strb %[y0], [%[o]], #1\n\t"
            "strb %[y1], [%[o]], #1\n\t"
            "subs %[n], %[n], #1\n\t"
            "bne 1b\n\t"
            : [a] "+r"(pa), [b] "+r"(pb), [o] "+r"(po), [n] "+r"(pairs), [x0] "=&r"(x0),
              [x1] "=&r"(x1), [y0] "=&r"(y0), [y1] "=&r"(y1)
            : [t1] "r"(t1), [t2] "r"(t2), [m] "r"(m), [rz] "r"(rz), [e] "r"(e)
            : "cc", "memory");
      } else {
        __asm volatile(
            "1:\n\t"
            "ldrsb %[x0], [%[a]], #1\n\t"
            "ldrsb %[x1], [%[a]], #1\n\t"
            "ldrsb %[y0], [%[b]], #1\n\t"
            "ldrsb %[y1], [%[b]], #1\n\t"
            "ldr %[x0], [%[t1], %[x0], lsl #2]\n\t"
            "ldr %[x1], [%[t1], %[x1], lsl #2]\n\t"
            "ldr %[y0], [%[t2], %[y0], lsl #2]\n\t"
            "ldr %[y1], [%[t2], %[y1], lsl #2]\n\t"
            "add %[x0], %[x0], %[y0]\n\t"
            "add %[x1], %[x1], %[y1]\n\t"
            "lsl %[x0], %[x0], #1\n\t"
            "lsl %[x1], %[x1], #1\n\t"
            "smmulr %[x0], %[x0], %[m]\n\t"
            "smmulr %[x1], %[x1], %[m]\n\t"
            "add %[y0], %[x0], %[rz]\n\t"
            "add %[y0], %[y0], %[x0], asr #31\n\t"
            "asr %[y0], %[y0], %[e]\n\t"
            "ssat %[y0], #8, %[y0]\n\t"
            "cmp %[y0], %[lo]\n\t"
            "it lt\n\t"
            "movlt %[y0], %[lo]\n\t"
            "add %[y1], %[x1], %[rz]\n\t"
            "add %[y1], %[y1], %[x1], asr #31\n\t"
            "asr %[y1], %[y1], %[e]\n\t"
            "ssat %[y1], #8, %[y1]\n\t"
            "cmp %[y1], %[lo]\n\t"
            "it lt\n\t"
            "movlt %[y1], %[lo]\n\t"
            "strb %[y0], [%[o]], #1\n\t"
            "strb %[y1], [%[o]], #1\n\t"
            "subs %[n], %[n], #1\n\t"
            "bne 1b\n\t"
            : [a] "+r"(pa), [b] "+r"(pb), [o] "+r"(po), [n] "+r"(pairs), [x0] "=&r"(x0),
              [x1] "=&r"(x1), [y0] "=&r"(y0), [y1] "=&r"(y1)
            : [t1] "r"(t1), [t2] "r"(t2), [m] "r"(m), [rz] "r"(rz), [e] "r"(e), [lo] "r"(lo)
            : "cc", "memory");
      }
      i = n & ~1;
    }
#endif
    for (; i < n; i++) {
      const int32_t r = ep_rq_apply(&rq, t1[a[i]] + t2[b[i]], EP_ADD_SINGLE_ROUNDING) + zp;
      out[i] = ep_clamp_s8(r, lo, hi);
    }
  } else {
    const int32_t m = p->out_mult, s = p->out_shift;
    for (int i = 0; i < n; i++) {
      const int32_t r = ep_requantize(t1[a[i]] + t2[b[i]], m, s, EP_ADD_SINGLE_ROUNDING) + zp;
      out[i] = ep_clamp_s8(r, lo, hi);
    }
  }
}
