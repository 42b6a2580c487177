/* edgeprune-c: im2col of one output pixel's window (OHWI order: ky, kx, input channel).
 * Padded positions get the input zero point (ep_kernels.h: the folded bias cancels them). */
#ifndef EP_IM2COL_H
#define EP_IM2COL_H

#include "ep_common.h"
#include "ep_kernels.h"

/* int8 column of K = k_h * k_w * in_c values for output pixel (oy, ox). */
EP_INLINE void ep_im2col_s8(const ep_window *g, const int8_t *in, int oy, int ox, int8_t zp,
                            int8_t *col) {
  const int y0 = oy * g->stride_h - g->pad_top;
  const int x0 = ox * g->stride_w - g->pad_left;
  const int c = g->in_c, kw = g->k_w, dw = g->dil_w;
  const int row_inside = x0 >= 0 && x0 + (kw - 1) * dw < g->in_w;
  for (int ky = 0; ky < g->k_h; ky++) {
    const int iy = y0 + ky * g->dil_h;
    if (iy < 0 || iy >= g->in_h) {
      memset(col, zp, (size_t)(kw * c));
    } else if (row_inside && dw == 1) {
      /* the whole window row is one contiguous run of the input */
      memcpy(col, in + (iy * g->in_w + x0) * c, (size_t)(kw * c));
    } else {
      for (int kx = 0; kx < kw; kx++) {
        const int ix = x0 + kx * dw;
        if (ix < 0 || ix >= g->in_w) memset(col + kx * c, zp, (size_t)c);
        else memcpy(col + kx * c, in + (iy * g->in_w + ix) * c, (size_t)c);
      }
    }
    col += kw * c;
  }
}

/* Sparse dot product: sum of x[pos[i]] * v[i] over n entries (four per pass: one halfword, two
 * byte loads and one multiply-accumulate each). */
EP_INLINE int32_t ep_sparse_dot(const int8_t *x, const uint16_t *pos, const int8_t *v, int n) {
  int32_t acc = 0;
  for (; n >= 4; n -= 4) {
    acc += x[pos[0]] * v[0];
    acc += x[pos[1]] * v[1];
    acc += x[pos[2]] * v[2];
    acc += x[pos[3]] * v[3];
    pos += 4;
    v += 4;
  }
  for (; n > 0; n--) acc += x[*pos++] * *v++;
  return acc;
}

/* Output channel c of accumulator acc: requantize (rounding `single`, see ep_common.h), add the
 * output zero point, clamp to the fused activation's range. */
EP_INLINE int8_t ep_out(const ep_requant *q, int32_t acc, int c, int single) {
#if EP_RQ_FAST
  return ep_clamp_out(ep_rq_apply(&q->rq[c], acc, single) + q->out_zp, q->act_min, q->act_max);
#else
  return ep_clamp_s8(ep_requantize(acc, q->mult[c], q->shift[c], single) + q->out_zp, q->act_min,
                     q->act_max);
#endif
}

/* The sparse convolutions' requantization of one channel (ep_conv_sparse.c,
 * ep_conv_sparse_pool.c), from a local copy of its record: stores through the int8 output
 * cannot alias a local, so it stays in registers across the pixel loop. */
#if EP_RQ_FAST
#define SP_RQ_DECL(q, c) const ep_rq r_ = (q)->rq[c]
#define SP_OUT(q, acc) ep_clamp_out(ep_rq_apply(&r_, (acc), EP_CONV_SINGLE_ROUNDING) + (q)->out_zp, \
                                    (q)->act_min, (q)->act_max)
#else
#define SP_RQ_DECL(q, c) const int32_t m_ = (q)->mult[c], s_ = (q)->shift[c]
#define SP_OUT(q, acc) ep_clamp_s8(ep_requantize((acc), m_, s_, EP_CONV_SINGLE_ROUNDING) + (q)->out_zp, \
                                   (q)->act_min, (q)->act_max)
#endif

#endif /* EP_IM2COL_H */
