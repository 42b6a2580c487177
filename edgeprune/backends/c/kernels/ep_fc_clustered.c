/* edgeprune-c: fully-connected layer with clustered weights (ep_clustered.h). */
#include "ep_clustered.h"
#include "ep_common.h"
#include "ep_im2col.h"
#include "ep_kernels.h"

#define EP_FC_CLUSTERED(B)                                                               \
  static void fc_clustered_##B(int batches, int in_n, int out_n, const ep_requant *q,   \
                               const ep_clustered *cl, const int8_t *in, int8_t *out) { \
    for (int b = 0; b < batches; b++) {                                                 \
      const uint32_t *idx = cl->index;                                                  \
      const int8_t *cb = cl->codebook;                                                  \
      for (int o = 0; o < out_n; o++) {                                                 \
        *out++ = ep_out(q, q->bias[o] + ep_clustered_dot(in, idx, cb, in_n, B), o, EP_FC_SINGLE_ROUNDING);      \
        idx += cl->row_words;                                                           \
        cb += 1 << B;                                                                   \
      }                                                                                 \
      in += in_n;                                                                       \
    }                                                                                   \
  }

#if EP_CLUSTER_BITS_1
EP_FC_CLUSTERED(1)
#endif
#if EP_CLUSTER_BITS_2
EP_FC_CLUSTERED(2)
#endif
#if EP_CLUSTER_BITS_3
EP_FC_CLUSTERED(3)
#endif
#if EP_CLUSTER_BITS_4
EP_FC_CLUSTERED(4)
#endif
#if EP_CLUSTER_BITS_5
EP_FC_CLUSTERED(5)
#endif
#if EP_CLUSTER_BITS_6
EP_FC_CLUSTERED(6)
#endif
#if EP_CLUSTER_BITS_7
EP_FC_CLUSTERED(7)
#endif

void ep_fc_clustered(int batches, int in_n, int out_n, const ep_requant *q,
                     const ep_clustered *c, const int8_t *in, int8_t *out) {
  switch (c->bits) {
#if EP_CLUSTER_BITS_1
    case 1: fc_clustered_1(batches, in_n, out_n, q, c, in, out); break;
#endif
#if EP_CLUSTER_BITS_2
    case 2: fc_clustered_2(batches, in_n, out_n, q, c, in, out); break;
#endif
#if EP_CLUSTER_BITS_3
    case 3: fc_clustered_3(batches, in_n, out_n, q, c, in, out); break;
#endif
#if EP_CLUSTER_BITS_4
    case 4: fc_clustered_4(batches, in_n, out_n, q, c, in, out); break;
#endif
#if EP_CLUSTER_BITS_5
    case 5: fc_clustered_5(batches, in_n, out_n, q, c, in, out); break;
#endif
#if EP_CLUSTER_BITS_6
    case 6: fc_clustered_6(batches, in_n, out_n, q, c, in, out); break;
#endif
#if EP_CLUSTER_BITS_7
    case 7: fc_clustered_7(batches, in_n, out_n, q, c, in, out); break;
#endif
    default: break;
  }
}
