/* edgeprune-c: fully-connected layer with clustered weights (ep_clustered.h). */
#include "ep_clustered.h"
#include "ep_common.h"
#include "ep_im2col.h"
#include "ep_kernels.h"

/* Inlined once per index width below, with `bits` a constant. */
EP_INLINE void fc_clustered(int batches, int in_n, int out_n, const ep_requant *q_arg,
                            const ep_clustered *cl, const int8_t *in, int8_t *out,
                            const int bits) {
  /* a local copy: stores through the int8 output cannot alias it */
  const ep_requant q_copy = *q_arg, *const q = &q_copy;
  for (int b = 0; b < batches; b++) {
    const uint32_t *idx = cl->index;
    const int8_t *cb = cl->codebook;
    for (int o = 0; o < out_n; o++) {
      const int32_t acc = q->bias[o] + ep_clustered_dot(in, idx, cb, in_n, bits);
      *out++ = ep_out(q, acc, o, EP_FC_SINGLE_ROUNDING);
      idx += cl->row_words;
      cb += 1 << bits;
    }
    in += in_n;
  }
}

void ep_fc_clustered(int batches, int in_n, int out_n, const ep_requant *q,
                     const ep_clustered *c, const int8_t *in, int8_t *out) {
  switch (c->bits) {
#if EP_CLUSTER_BITS_1
    case 1: fc_clustered(batches, in_n, out_n, q, c, in, out, 1); break;
#endif
#if EP_CLUSTER_BITS_2
    case 2: fc_clustered(batches, in_n, out_n, q, c, in, out, 2); break;
#endif
#if EP_CLUSTER_BITS_3
    case 3: fc_clustered(batches, in_n, out_n, q, c, in, out, 3); break;
#endif
#if EP_CLUSTER_BITS_4
    case 4: fc_clustered(batches, in_n, out_n, q, c, in, out, 4); break;
#endif
#if EP_CLUSTER_BITS_5
    case 5: fc_clustered(batches, in_n, out_n, q, c, in, out, 5); break;
#endif
#if EP_CLUSTER_BITS_6
    case 6: fc_clustered(batches, in_n, out_n, q, c, in, out, 6); break;
#endif
#if EP_CLUSTER_BITS_7
    case 7: fc_clustered(batches, in_n, out_n, q, c, in, out, 7); break;
#endif
    default: break;   /* the generator enables every width the model uses */
  }
}
