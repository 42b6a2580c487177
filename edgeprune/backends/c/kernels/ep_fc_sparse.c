/* edgeprune-c: unstructured-sparse fully-connected layer: per output, only the non-zero
 * weights, as (position, value) entries (ep_kernels.h, ep_sparse). */
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
    for (int o = 0; o < out_n; o++) {
      const int n = s->count[o];
      *out++ = ep_out(q, q->bias[o] + ep_sparse_dot(in, pos, v, n), o, EP_FC_SINGLE_ROUNDING);
      pos += n;
      v += n;
    }
    in += in_n;
  }
}
