/* edgeprune-c: convolution with clustered weights (ep_clustered.h): im2col of one pixel into
 * an int8 column (scratch `col`, K = k_h * k_w * in_c bytes), then per output channel a dot
 * product that looks each weight up in the channel's codebook. */
#include "ep_clustered.h"
#include "ep_common.h"
#include "ep_im2col.h"
#include "ep_kernels.h"

/* Inlined once per index width below, with `bits` a constant. */
EP_INLINE void conv_clustered(const ep_window *g, const ep_requant *q_arg, const ep_clustered *cl,
                              const int8_t *in, int8_t *out, int8_t *col, const int bits) {
  /* a local copy: stores through the int8 output cannot alias it, so its fields stay in
   * registers instead of being reloaded for every output */
  const ep_requant q_copy = *q_arg, *const q = &q_copy;
  const int K = g->k_h * g->k_w * g->in_c;
  for (int oy = 0; oy < g->out_h; oy++) {
    for (int ox = 0; ox < g->out_w; ox++) {
      ep_im2col_s8(g, in, oy, ox, (int8_t)q->in_zp, col);
      const uint32_t *idx = cl->index;
      const int8_t *cb = cl->codebook;
      for (int c = 0; c < g->out_c; c++) {
        const int32_t acc = q->bias[c] + ep_clustered_dot(col, idx, cb, K, bits);
        *out++ = ep_out(q, acc, c, EP_CONV_SINGLE_ROUNDING);
        idx += cl->row_words;
        cb += 1 << bits;
      }
    }
  }
}

void ep_conv_clustered(const ep_window *g, const ep_requant *q, const ep_clustered *c,
                       const int8_t *in, int8_t *out, int8_t *col) {
  switch (c->bits) {
#if EP_CLUSTER_BITS_1
    case 1: conv_clustered(g, q, c, in, out, col, 1); break;
#endif
#if EP_CLUSTER_BITS_2
    case 2: conv_clustered(g, q, c, in, out, col, 2); break;
#endif
#if EP_CLUSTER_BITS_3
    case 3: conv_clustered(g, q, c, in, out, col, 3); break;
#endif
#if EP_CLUSTER_BITS_4
    case 4: conv_clustered(g, q, c, in, out, col, 4); break;
#endif
#if EP_CLUSTER_BITS_5
    case 5: conv_clustered(g, q, c, in, out, col, 5); break;
#endif
#if EP_CLUSTER_BITS_6
    case 6: conv_clustered(g, q, c, in, out, col, 6); break;
#endif
#if EP_CLUSTER_BITS_7
    case 7: conv_clustered(g, q, c, in, out, col, 7); break;
#endif
    default: break;   /* the generator enables every width the model uses */
  }
}
