/* edgeprune-c: stand-alone int8 RELU / RELU6 (those not fused into the layer before them), as
 * TFLite's ReluQuantized computes it: requantize to the output scale, then clamp. */
#include "ep_common.h"
#include "ep_kernels.h"

void ep_relu(const ep_relu_params *p, int n, const int8_t *in, int8_t *out) {
  for (int i = 0; i < n; i++) {
    const int32_t v =
        p->out_zp + ep_requantize(in[i] - p->in_zp, p->mult, p->shift, EP_RELU_SINGLE_ROUNDING);
    out[i] = ep_clamp_s8(v, p->act_min, p->act_max);
  }
}
