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
    for (int i = 0; i < n; i++) {
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
