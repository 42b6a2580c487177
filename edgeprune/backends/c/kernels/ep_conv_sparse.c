/* edgeprune-c: unstructured-sparse int8 convolution. Only the non-zero weights are stored and
 * multiplied (ep_kernels.h, ep_sparse): per output channel, (position, value) entries whose
 * positions are offsets in the input tensor from the window's first element, so an interior
 * pixel needs no im2col and no bounds checks. Pixels whose window crosses the padding use the
 * entry's tap (ky, kx) to substitute the input zero point for padded positions.
 *
 * Channel by channel (output-channel-major): a channel's entry list, bias and requantization
 * record are loaded once and stay in registers over all its pixels, so an output costs its
 * entries plus a few instructions, however few entries it has (LeNet-5 pruned 50x keeps 1-3
 * weights per output channel). A channel without entries (every weight pruned) is a constant
 * output, requantized once and stored at every pixel. The output is written channel by channel,
 * so it never overlays the input (the generator drops the overlap, backends/c/codegen.py). */
#include "ep_common.h"
#include "ep_im2col.h"
#include "ep_kernels.h"

/* four entries per pass (ep_im2col.h's ep_sparse_dot): long rows keep the 4-way unroll */
EP_INLINE int32_t sp_dot(const int8_t *x, const uint16_t *pos, const int8_t *v, int n, int32_t acc) {
  return acc + ep_sparse_dot(x, pos, v, n);
}

/* One channel's run of `count` interior pixels (input windows step_x bytes apart, outputs
 * OC bytes apart): not inlined, so the run's few values (the channel's entries when it has 1
 * or 2, its bias and requantization record) get the registers instead of the caller's
 * geometry. */
#if defined(__GNUC__)
__attribute__((noinline))
#endif
static void sp_run(const int8_t *xw, int step_x, int8_t *o, int OC, int count,
                   const uint16_t *pos, const int8_t *v, int n, int32_t b, const ep_requant *q,
                   int c) {
  SP_RQ_DECL(q, c);
  const int32_t out_zp = q->out_zp, act_min = q->act_min, act_max = q->act_max;
  int8_t *const end = o + count * OC;
#define SP_STORE(acc) *o = ep_clamp_out(ep_rq_apply_or_requant(acc) + out_zp, act_min, act_max)
#if EP_RQ_FAST
#define ep_rq_apply_or_requant(acc) ep_rq_apply(&r_, (acc), EP_CONV_SINGLE_ROUNDING)
#else
#define ep_rq_apply_or_requant(acc) ep_requantize((acc), m_, s_, EP_CONV_SINGLE_ROUNDING)
#endif
  if (n == 1) {
    const int p0 = pos[0];
    const int32_t v0 = v[0];
    for (; o != end; o += OC, xw += step_x) SP_STORE(b + xw[p0] * v0);
  } else if (n == 2) {
    const int p0 = pos[0], p1 = pos[1];
    const int32_t v0 = v[0], v1 = v[1];
    for (; o != end; o += OC, xw += step_x) SP_STORE(b + xw[p0] * v0 + xw[p1] * v1);
  } else {
    for (; o != end; o += OC, xw += step_x) SP_STORE(sp_dot(xw, pos, v, n, b));
  }
#undef SP_STORE
#undef ep_rq_apply_or_requant
}

void ep_conv_sparse(const ep_window *g, const ep_requant *q_arg, const ep_sparse *s,
                    const int8_t *in, int8_t *out) {
  const ep_requant q_copy = *q_arg, *const q = &q_copy;
  const int OC = g->out_c, OH = g->out_h, OW = g->out_w, IC = g->in_c;
  const int sh = g->stride_h, sw = g->stride_w;
  const int span_h = (g->k_h - 1) * g->dil_h, span_w = (g->k_w - 1) * g->dil_w;
  /* interior pixels: ox in [ox_lo, ox_hi), oy in [oy_lo, oy_hi) */
  int ox_lo = (g->pad_left + sw - 1) / sw, oy_lo = (g->pad_top + sh - 1) / sh;
  int ox_hi = (g->in_w - 1 - span_w + g->pad_left) >= 0 ? (g->in_w - 1 - span_w + g->pad_left) / sw + 1 : 0;
  int oy_hi = (g->in_h - 1 - span_h + g->pad_top) >= 0 ? (g->in_h - 1 - span_h + g->pad_top) / sh + 1 : 0;
  if (ox_hi > OW) ox_hi = OW;
  if (oy_hi > OH) oy_hi = OH;
  if (ox_lo > ox_hi) ox_lo = ox_hi;
  if (oy_lo > oy_hi) oy_lo = oy_hi;
  const int step_x = sw * IC, step_y = sh * g->in_w * IC;
  const uint16_t *pos = s->pos;
  const int8_t *v = s->value;
  const uint8_t *t = s->tap;
  for (int c = 0; c < OC; c++) {
    const int n = s->count[c];
    const int32_t b = q->bias[c];
    SP_RQ_DECL(q, c);
    int8_t *o = out + c;
    if (n == 0) {                                   /* constant channel */
      const int8_t k = SP_OUT(q, b);
      for (int p = OH * OW; p > 0; p--, o += OC) *o = k;
      continue;
    }
    for (int oy = 0; oy < OH; oy++) {
      const int y0 = oy * sh - g->pad_top;
      const int row_inside = oy >= oy_lo && oy < oy_hi;
      const int8_t *xw = in + (y0 * g->in_w + ox_lo * sw - g->pad_left) * IC;
      for (int ox = 0; ox < OW; ox++, o += OC) {
        if (row_inside && ox == ox_lo) {            /* the row's interior run */
          const int run = ox_hi - ox_lo;
          sp_run(xw, step_x, o, OC, run, pos, v, n, b, q, c);
          ox += run;
          o += run * OC;
          if (ox >= OW) break;
        }
        /* a border pixel: padded positions read the input zero point */
        const int x0 = ox * sw - g->pad_left;
        uint32_t row_ok = 0, col_ok = 0;
        for (int ky = 0; ky < g->k_h; ky++) {
          const int iy = y0 + ky * g->dil_h;
          if (iy >= 0 && iy < g->in_h) row_ok |= 1u << ky;
        }
        for (int kx = 0; kx < g->k_w; kx++) {
          const int ix = x0 + kx * g->dil_w;
          if (ix >= 0 && ix < g->in_w) col_ok |= 1u << kx;
        }
        const int base = (y0 * g->in_w + x0) * IC;
        int32_t acc = b;
        for (int j = 0; j < n; j++) {
          const uint32_t tap = t[j];
          const int ok = (int)((row_ok >> (tap >> 4)) & (col_ok >> (tap & 15)) & 1u);
          acc += (ok ? in[base + pos[j]] : q->in_zp) * v[j];
        }
        *o = SP_OUT(q, acc);
      }
    }
    (void)step_y;
    pos += n;
    v += n;
    if (t) t += n;
  }
}
