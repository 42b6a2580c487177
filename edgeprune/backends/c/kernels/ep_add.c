/* edgeprune-c: int8 element-wise ADD of two same-shape tensors, as TFLite's
 * reference_integer_ops::AddFunc computes it (inputs rescaled to a common scale with
 * left_shift = 20, summed, rescaled to the output). Element i is written after reading
 * element i of both inputs, so the output may overlay either input. */
#include "ep_common.h"
#include "ep_kernels.h"

void ep_add(const ep_add_params *p, int n, const int8_t *a, const int8_t *b, int8_t *out) {
  for (int i = 0; i < n; i++) {
    const int32_t x = (int32_t)((uint32_t)(p->in1_offset + a[i]) << p->left_shift);
    const int32_t y = (int32_t)((uint32_t)(p->in2_offset + b[i]) << p->left_shift);
    /* MultiplyByQuantizedMultiplierSmallerThanOneExp (shifts <= 0) */
    const int32_t sx = ep_requantize(x, p->in1_mult, p->in1_shift, EP_ADD_SINGLE_ROUNDING);
    const int32_t sy = ep_requantize(y, p->in2_mult, p->in2_shift, EP_ADD_SINGLE_ROUNDING);
    const int32_t r =
        ep_requantize(sx + sy, p->out_mult, p->out_shift, EP_ADD_SINGLE_ROUNDING) + p->out_zp;
    out[i] = ep_clamp_s8(r, p->act_min, p->act_max);
  }
}
