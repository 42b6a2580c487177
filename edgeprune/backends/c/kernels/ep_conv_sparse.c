/* edgeprune-c: unstructured-sparse int8 convolution. Only the non-zero weights are stored and
 * multiplied (ep_kernels.h, ep_sparse): per output channel, (position, value) entries whose
 * positions are offsets in the input tensor from the window's first element, so an interior
 * pixel needs no im2col and no bounds checks. Pixels whose window crosses the padding use the
 * entry's tap (ky, kx) to substitute the input zero point for padded positions. */
#include "ep_common.h"
#include "ep_im2col.h"
#include "ep_kernels.h"

void ep_conv_sparse(const ep_window *g, const ep_requant *q_arg, const ep_sparse *s,
                    const int8_t *in, int8_t *out) {
  /* a local copy: stores through the int8 output cannot alias it, so its fields stay in
   * registers instead of being reloaded for every output */
  const ep_requant q_copy = *q_arg, *const q = &q_copy;
  const int span_h = (g->k_h - 1) * g->dil_h, span_w = (g->k_w - 1) * g->dil_w;
  for (int oy = 0; oy < g->out_h; oy++) {
    const int y0 = oy * g->stride_h - g->pad_top;
    uint32_t row_ok = 0;
    for (int ky = 0; ky < g->k_h; ky++) {
      const int iy = y0 + ky * g->dil_h;
      if (iy >= 0 && iy < g->in_h) row_ok |= 1u << ky;
    }
    for (int ox = 0; ox < g->out_w; ox++) {
      const int x0 = ox * g->stride_w - g->pad_left;
      const int inside = y0 >= 0 && y0 + span_h < g->in_h && x0 >= 0 && x0 + span_w < g->in_w;
      const int base = (y0 * g->in_w + x0) * g->in_c;
      const uint16_t *pos = s->pos;
      const int8_t *v = s->value;
      if (inside) {
        const int8_t *xw = in + base;
        for (int c = 0; c < g->out_c; c++) {
          const int n = s->count[c];
          *out++ = ep_out(q, q->bias[c] + ep_sparse_dot(xw, pos, v, n), c, EP_CONV_SINGLE_ROUNDING);
          pos += n;
          v += n;
        }
      } else {
        uint32_t col_ok = 0;
        for (int kx = 0; kx < g->k_w; kx++) {
          const int ix = x0 + kx * g->dil_w;
          if (ix >= 0 && ix < g->in_w) col_ok |= 1u << kx;
        }
        const int32_t zp = q->in_zp;
        const uint8_t *t = s->tap;
        for (int c = 0; c < g->out_c; c++) {
          int32_t acc = q->bias[c];
          for (int n = s->count[c]; n > 0; n--) {
            const uint32_t tap = *t++;
            const int ok = (int)((row_ok >> (tap >> 4)) & (col_ok >> (tap & 15)) & 1u);
            acc += (ok ? in[base + *pos] : zp) * *v;
            pos++;
            v++;
          }
          *out++ = ep_out(q, acc, c, EP_CONV_SINGLE_ROUNDING);
        }
      }
    }
  }
}
