/* edgeprune-c: unstructured-sparse fully-connected layer: per output, only the non-zero
 * weights, as (position, value) entries (ep_kernels.h, ep_sparse). An output without entries
 * is its requantized bias. */
#include "ep_common.h"
#include "ep_im2col.h"
#include "ep_kernels.h"

void ep_fc_sparse(int batches, int in_n, int out_n, const ep_requant *q_arg, const ep_sparse *s,
                  const int8_t *in, int8_t *out) {
  /* a local copy: stores through the int8 output cannot alias it, so its fields stay in
   * registers instead of being reloaded for every output */
  const ep_requant q_copy = *q_arg, *const q = &q_copy;
  for (int b = 0; b < batches; b++) {
    const uint16_t *pos = s->pos;
    const int8_t *v = s->value;
    const uint16_t *cnt = s->count;
    for (int o = 0; o < out_n; o++) {
      int32_t acc = q->bias[o];
      for (int n = *cnt++; n > 0; n--) acc += in[*pos++] * *v++;
      *out++ = ep_out(q, acc, o, EP_FC_SINGLE_ROUNDING);
    }
    in += in_n;
  }
}
