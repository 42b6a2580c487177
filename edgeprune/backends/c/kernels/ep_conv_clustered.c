/* edgeprune-c: convolution with clustered weights (ep_clustered.h): im2col of one pixel into
 * an int8 column (scratch `col`, K = k_h * k_w * in_c bytes), then per output channel a dot
 * product that looks each weight up in the channel's codebook. */
#include "ep_clustered.h"
#include "ep_common.h"
#include "ep_im2col.h"
#include "ep_kernels.h"

#define EP_CONV_CLUSTERED(B)                                                        \
  static void conv_clustered_##B(const ep_window *g, const ep_requant *q,          \
                                 const ep_clustered *cl, const int8_t *in,         \
                                 int8_t *out, int8_t *col) {                       \
    const int K = g->k_h * g->k_w * g->in_c;                                       \
    for (int oy = 0; oy < g->out_h; oy++) {                                        \
      for (int ox = 0; ox < g->out_w; ox++) {                                      \
        ep_im2col_s8(g, in, oy, ox, (int8_t)q->in_zp, col);                         \
        const uint32_t *idx = cl->index;                                           \
        const int8_t *cb = cl->codebook;                                           \
        for (int c = 0; c < g->out_c; c++) {                                       \
          *out++ = ep_out(q, q->bias[c] + ep_clustered_dot(col, idx, cb, K, B), c, EP_CONV_SINGLE_ROUNDING); \
          idx += cl->row_words;                                                    \
          cb += 1 << B;                                                            \
        }                                                                          \
      }                                                                            \
    }                                                                              \
  }

#if EP_CLUSTER_BITS_1
EP_CONV_CLUSTERED(1)
#endif
#if EP_CLUSTER_BITS_2
EP_CONV_CLUSTERED(2)
#endif
#if EP_CLUSTER_BITS_3
EP_CONV_CLUSTERED(3)
#endif
#if EP_CLUSTER_BITS_4
EP_CONV_CLUSTERED(4)
#endif
#if EP_CLUSTER_BITS_5
EP_CONV_CLUSTERED(5)
#endif
#if EP_CLUSTER_BITS_6
EP_CONV_CLUSTERED(6)
#endif
#if EP_CLUSTER_BITS_7
EP_CONV_CLUSTERED(7)
#endif

void ep_conv_clustered(const ep_window *g, const ep_requant *q, const ep_clustered *c,
                       const int8_t *in, int8_t *out, int8_t *col) {
  switch (c->bits) {
#if EP_CLUSTER_BITS_1
    case 1: conv_clustered_1(g, q, c, in, out, col); break;
#endif
#if EP_CLUSTER_BITS_2
    case 2: conv_clustered_2(g, q, c, in, out, col); break;
#endif
#if EP_CLUSTER_BITS_3
    case 3: conv_clustered_3(g, q, c, in, out, col); break;
#endif
#if EP_CLUSTER_BITS_4
    case 4: conv_clustered_4(g, q, c, in, out, col); break;
#endif
#if EP_CLUSTER_BITS_5
    case 5: conv_clustered_5(g, q, c, in, out, col); break;
#endif
#if EP_CLUSTER_BITS_6
    case 6: conv_clustered_6(g, q, c, in, out, col); break;
#endif
#if EP_CLUSTER_BITS_7
    case 7: conv_clustered_7(g, q, c, in, out, col); break;
#endif
    default: break;
  }
}
