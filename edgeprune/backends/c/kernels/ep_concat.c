/* edgeprune-c: concatenation of int8 tensors that share scale and zero point (TFLM requires
 * it for int8): a copy. */
#include "ep_common.h"
#include "ep_kernels.h"

void ep_concat(int outer, int n_inputs, const int8_t *const *inputs, const uint32_t *inner,
               int8_t *out) {
  for (int o = 0; o < outer; o++) {
    for (int i = 0; i < n_inputs; i++) {
      memmove(out, inputs[i] + (uint32_t)o * inner[i], inner[i]);
      out += inner[i];
    }
  }
}
