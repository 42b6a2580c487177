/* edgeprune-c: the unstructured-sparse int8 convolution (ep_conv_sparse.c) fused with the max
 * pooling that follows it.
 *
 * ep_conv_sparse_maxpool: a max pooling whose windows tile the convolution's output (stride =
 * window, no padding) computed from the convolution's accumulators. The generator fuses them
 * (backends/c/fuse.py) only where the convolution's requantization is non-decreasing in the
 * accumulator (multipliers >= 0 and no left shift: round(acc * m / 2^k) with either rounding,
 * then the zero point and the clamp), so the requantized maximum of the accumulators IS the
 * maximum of the requantized outputs: the pooled bytes are those of the two kernels run one
 * after the other, while a pooled output costs one requantization and one store instead of
 * k_h * k_w of each, plus the pooling's reads and the intermediate tensor. Convolution outputs
 * that no pooling window covers (right and bottom remainders) are never computed. Channel by
 * channel, as ep_conv_sparse: a channel's entries, bias and requantization record stay in
 * registers over its pixels; a channel without entries is a constant. */
#include "ep_common.h"
#include "ep_im2col.h"
#include "ep_kernels.h"

/* The accumulator of convolution output (oy, ox) of one channel, any pixel (border pixels
 * substitute the input zero point for padded positions, as ep_conv_sparse does). */
static int32_t spp_acc(const ep_window *g, const int8_t *in, int32_t in_zp, int oy, int ox,
                       const uint16_t *pos, const int8_t *v, const uint8_t *t, int n, int32_t b,
                       int inside) {
  const int y0 = oy * g->stride_h - g->pad_top, x0 = ox * g->stride_w - g->pad_left;
  const int8_t *xw = in + (y0 * g->in_w + x0) * g->in_c;
  if (inside) return b + ep_sparse_dot(xw, pos, v, n);
  uint32_t row_ok = 0, col_ok = 0;
  for (int ky = 0; ky < g->k_h; ky++) {
    const int iy = y0 + ky * g->dil_h;
    if (iy >= 0 && iy < g->in_h) row_ok |= 1u << ky;
  }
  for (int kx = 0; kx < g->k_w; kx++) {
    const int ix = x0 + kx * g->dil_w;
    if (ix >= 0 && ix < g->in_w) col_ok |= 1u << kx;
  }
  int32_t acc = b;
  for (int j = 0; j < n; j++) {
    const uint32_t tap = t[j];
    const int ok = (int)((row_ok >> (tap >> 4)) & (col_ok >> (tap & 15)) & 1u);
    acc += (ok ? xw[pos[j]] : in_zp) * v[j];
  }
  return acc;
}

/* One channel's rectangle of pooled outputs of 2 x 2 windows whose four convolution pixels
 * are all interior: `rows` rows of `cols` outputs. Four accumulators share each entry's
 * position and value loads; the maximum accumulator is requantized once and clamped once to
 * [lo, hi], the intersection of the convolution's and the pooling's ranges (the generator fuses
 * only where they intersect, so the two clamps in a row are this one). xw: the first window's
 * top-left pixel's input window; dx, dy: input offsets of the next pixel and row; outputs OC
 * bytes apart, rows o_row bytes apart. */
#if EP_RQ_FAST
#define SPP_STORE(m) (*o = ep_clamp_s8(ep_rq_apply(&r_, (m), EP_CONV_SINGLE_ROUNDING) + out_zp, lo, hi))
#else
#define SPP_STORE(m) (*o = ep_clamp_s8(ep_requantize((m), m_, s_, EP_CONV_SINGLE_ROUNDING) + out_zp, lo, hi))
#endif
/* the rectangle's loops around BODY, which sets `m`, the window's maximum accumulator, from
 * the window's top-left pixel's input window xw (variadic: BODY may hold commas) */
#define SPP_RECT(...)                                                               \
  for (; rows > 0; rows--, o += o_row - cols * OC, xw += x_row) {                  \
    int8_t *const end = o + cols * OC;                                             \
    for (; o != end; o += OC, xw += step) {                                        \
      int32_t m;                                                                   \
      __VA_ARGS__                                                                  \
      SPP_STORE(m);                                                                \
    }                                                                              \
  }
#define SPP_MAX(a, b) ((a) > (b) ? (a) : (b))
#define SPP_MIN(a, b) ((a) < (b) ? (a) : (b))

#if defined(__GNUC__)
__attribute__((noinline))
#endif
static void spp_rect2x2(const int8_t *xw, int dx, int dy, int8_t *o, int OC, int o_row,
                        int rows, int cols, const uint16_t *pos, const int8_t *v, int n,
                        int32_t b, const ep_requant *q, int c, int32_t lo, int32_t hi) {
  SP_RQ_DECL(q, c);
  const int32_t out_zp = q->out_zp;
  const int step = 2 * dx, x_row = 2 * dy - cols * step;
  if (n == 1) {
    /* one weight: the maximum accumulator is the bias plus the weight times the window's
     * largest input (weight >= 0) or its smallest (weight < 0) */
    const int8_t *const x0 = xw + pos[0];
    const int32_t w = v[0];
    xw = x0;
    if (w >= 0) {
      SPP_RECT(m = b + w * SPP_MAX(SPP_MAX(xw[0], xw[dx]), SPP_MAX(xw[dy], xw[dy + dx]));)
    } else {
      SPP_RECT(m = b + w * SPP_MIN(SPP_MIN(xw[0], xw[dx]), SPP_MIN(xw[dy], xw[dy + dx]));)
    }
  } else if (n == 2) {
    const int p0 = pos[0], p1 = pos[1];
    const int32_t w0 = v[0], w1 = v[1];
    SPP_RECT(
      const int8_t *const x0 = xw + p0;
      const int8_t *const x1 = xw + p1;
      const int32_t a0 = x0[0] * w0 + x1[0] * w1, a1 = x0[dx] * w0 + x1[dx] * w1;
      const int32_t a2 = x0[dy] * w0 + x1[dy] * w1, a3 = x0[dy + dx] * w0 + x1[dy + dx] * w1;
      m = b + SPP_MAX(SPP_MAX(a0, a1), SPP_MAX(a2, a3));)
  } else {
    /* four accumulators share each entry's position and value loads */
    SPP_RECT(
      int32_t a0 = b, a1 = b, a2 = b, a3 = b;
      for (int j = 0; j < n; j++) {
        const int8_t *x = xw + pos[j];
        const int32_t w = v[j];
        a0 += x[0] * w;
        a1 += x[dx] * w;
        a2 += x[dy] * w;
        a3 += x[dy + dx] * w;
      }
      m = SPP_MAX(SPP_MAX(a0, a1), SPP_MAX(a2, a3));)
  }
}

void ep_conv_sparse_maxpool(const ep_window *g, const ep_requant *q_arg, const ep_sparse *s,
                            const ep_window *pg, int32_t pool_min, int32_t pool_max,
                            const int8_t *in, int8_t *out) {
  const ep_requant q_copy = *q_arg, *const q = &q_copy;
  const int OC = g->out_c, IC = g->in_c;
  const int PH = pg->out_h, PW = pg->out_w, pkh = pg->k_h, pkw = pg->k_w;
  const int span_h = (g->k_h - 1) * g->dil_h, span_w = (g->k_w - 1) * g->dil_w;
  /* interior convolution pixels: ox in [ox_lo, ox_hi), oy in [oy_lo, oy_hi) */
  int ox_lo = (g->pad_left + g->stride_w - 1) / g->stride_w, oy_lo = (g->pad_top + g->stride_h - 1) / g->stride_h;
  int ox_hi = (g->in_w - 1 - span_w + g->pad_left) >= 0 ? (g->in_w - 1 - span_w + g->pad_left) / g->stride_w + 1 : 0;
  int oy_hi = (g->in_h - 1 - span_h + g->pad_top) >= 0 ? (g->in_h - 1 - span_h + g->pad_top) / g->stride_h + 1 : 0;
  if (ox_hi > g->out_w) ox_hi = g->out_w;
  if (oy_hi > g->out_h) oy_hi = g->out_h;
  /* pooled pixels whose whole window is interior: px in [px_lo, px_hi), py in [py_lo, py_hi) */
  const int px_lo = (ox_lo + pkw - 1) / pkw, py_lo = (oy_lo + pkh - 1) / pkh;
  int px_hi = ox_hi / pkw, py_hi = oy_hi / pkh;
  if (px_hi > PW) px_hi = PW;
  if (py_hi > PH) py_hi = PH;
  const int quad = pkh == 2 && pkw == 2;
  const int32_t lo = q->act_min > pool_min ? q->act_min : pool_min;
  const int32_t hi = q->act_max < pool_max ? q->act_max : pool_max;
  const int dx = g->stride_w * IC, dy = g->stride_h * g->in_w * IC;
  const uint16_t *pos = s->pos;
  const int8_t *v = s->value;
  const uint8_t *t = s->tap;
  for (int c = 0; c < OC; c++) {
    const int n = s->count[c];
    const int32_t b = q->bias[c];
    SP_RQ_DECL(q, c);
    int8_t *o = out + c;
    if (n == 0) {                                   /* constant channel */
      const int8_t k = ep_clamp_s8(SP_OUT(q, b), pool_min, pool_max);
      for (int p = PH * PW; p > 0; p--, o += OC) *o = k;
      continue;
    }
    const int rect = quad && py_hi > py_lo && px_hi > px_lo;
    if (rect)                                       /* the interior rectangle */
      spp_rect2x2(in + ((2 * py_lo * g->stride_h - g->pad_top) * g->in_w
                        + 2 * px_lo * g->stride_w - g->pad_left) * IC,
                  dx, dy, o + (py_lo * PW + px_lo) * OC, OC, PW * OC, py_hi - py_lo,
                  px_hi - px_lo, pos, v, n, b, q, c, lo, hi);
    for (int py = 0; py < PH; py++) {
      const int row_inside = py >= py_lo && py < py_hi;
      for (int px = 0; px < PW; px++, o += OC) {
        const int inside = row_inside && px >= px_lo && px < px_hi;
        if (inside && rect) {                       /* done above: skip the row's run */
          o += (px_hi - 1 - px) * OC;
          px = px_hi - 1;
          continue;
        }
        int32_t m = INT32_MIN;
        for (int i = 0; i < pkh; i++)
          for (int j = 0; j < pkw; j++) {
            const int oy = py * pkh + i, ox = px * pkw + j;
            const int32_t a = spp_acc(g, in, q->in_zp, oy, ox, pos, v, t, n, b,
                                      inside || (oy >= oy_lo && oy < oy_hi && ox >= ox_lo && ox < ox_hi));
            m = a > m ? a : m;
          }
        *o = ep_clamp_s8(SP_OUT(q, m), pool_min, pool_max);
      }
    }
    pos += n;
    v += n;
    if (t) t += n;
  }
}
