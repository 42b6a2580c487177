/* edgeprune-c: unstructured-sparse fully-connected layer: per output, only the non-zero
 * weights, as (delta, value) entries (ep_kernels.h, ep_sparse). */
#include "ep_common.h"
#include "ep_im2col.h"
#include "ep_kernels.h"

void ep_fc_sparse(int batches, int in_n, int out_n, const ep_requant *q, const ep_sparse *s,
                  const int8_t *in, int8_t *out) {
  for (int b = 0; b < batches; b++) {
    const uint8_t *d = s->delta;
    const int8_t *v = s->value;
    for (int o = 0; o < out_n; o++) {
      int32_t acc = q->bias[o];
      const int8_t *xp = in;
      for (int n = s->count[o]; n > 0; n--) {
        xp += *d++;
        acc += *xp * *v++;
      }
      *out++ = ep_out(q, acc, o, EP_FC_SINGLE_ROUNDING);
    }
    in += in_n;
  }
}
