/* edgeprune-c: int8 depthwise convolution (weights 1 x KH x KW x out_c), as TFLite's
 * reference_integer_ops::DepthwiseConvPerChannel computes it.
 *
 * ep_dwconv_plain: any depth multiplier; padded taps hold the input zero point.
 * ep_dwconv_dsp: depth multiplier 1 and in_c a multiple of 4 (else it runs the plain kernel):
 *   four channels per load; SXTB16 splits them into (c0, c2) and (c1, c3) int16 pairs and
 *   SMLABB / SMLATT accumulate each channel separately (CMSIS-NN's depthwise structure).
 */
#include "ep_common.h"
#include "ep_im2col.h"
#include "ep_kernels.h"

#define EP_DW_MAX_TAPS 64

void ep_dwconv_plain(const ep_window *g, const ep_requant *q_arg, const int8_t *w,
                     const int8_t *in, int8_t *out) {
  /* a local copy: stores through the int8 output cannot alias it, so its fields stay in
   * registers instead of being reloaded for every output */
  const ep_requant q_copy = *q_arg, *const q = &q_copy;
  const int mult = g->out_c / g->in_c;
  for (int oy = 0; oy < g->out_h; oy++) {
    const int y0 = oy * g->stride_h - g->pad_top;
    for (int ox = 0; ox < g->out_w; ox++) {
      const int x0 = ox * g->stride_w - g->pad_left;
      for (int ic = 0; ic < g->in_c; ic++) {
        for (int m = 0; m < mult; m++) {
          const int oc = ic * mult + m;
          int32_t acc = q->bias[oc];
          for (int ky = 0; ky < g->k_h; ky++) {
            const int iy = y0 + ky * g->dil_h;
            const int row_ok = iy >= 0 && iy < g->in_h;
            for (int kx = 0; kx < g->k_w; kx++) {
              const int ix = x0 + kx * g->dil_w;
              const int32_t x = (row_ok && ix >= 0 && ix < g->in_w)
                                    ? in[(iy * g->in_w + ix) * g->in_c + ic] : q->in_zp;
              acc += x * w[(ky * g->k_w + kx) * g->out_c + oc];
            }
          }
          *out++ = ep_out(q, acc, oc, EP_DW_SINGLE_ROUNDING);
        }
      }
    }
  }
}

void ep_dwconv_dsp(const ep_window *g, const ep_requant *q_arg, const int8_t *w,
                   const int8_t *in, int8_t *out) {
  /* a local copy: stores through the int8 output cannot alias it, so its fields stay in
   * registers instead of being reloaded for every output */
  const ep_requant q_copy = *q_arg, *const q = &q_copy;
  const int C = g->in_c, taps = g->k_h * g->k_w;
  if (g->out_c != C || (C & 3) != 0 || taps > EP_DW_MAX_TAPS) {
    ep_dwconv_plain(g, q, w, in, out);
    return;
  }
  const uint32_t zp4 = (uint32_t)(uint8_t)q->in_zp * 0x01010101u;
  const int8_t *src[EP_DW_MAX_TAPS];
  for (int oy = 0; oy < g->out_h; oy++) {
    const int y0 = oy * g->stride_h - g->pad_top;
    for (int ox = 0; ox < g->out_w; ox++) {
      const int x0 = ox * g->stride_w - g->pad_left;
      int t = 0;
      for (int ky = 0; ky < g->k_h; ky++) {
        const int iy = y0 + ky * g->dil_h;
        for (int kx = 0; kx < g->k_w; kx++, t++) {
          const int ix = x0 + kx * g->dil_w;
          src[t] = (iy >= 0 && iy < g->in_h && ix >= 0 && ix < g->in_w)
                       ? in + (iy * g->in_w + ix) * C : (const int8_t *)0;
        }
      }
      for (int c = 0; c < C; c += 4) {
        int32_t a0 = q->bias[c], a1 = q->bias[c + 1], a2 = q->bias[c + 2], a3 = q->bias[c + 3];
        const int8_t *wp = w + c;
        for (t = 0; t < taps; t++) {
          const uint32_t xv = src[t] ? ep_load32(src[t] + c) : zp4;
          const uint32_t wv = ep_load32(wp);
          wp += C;
          const uint32_t x02 = ep_sxtb16(xv), x13 = ep_sxtb16_ror8(xv);
          const uint32_t w02 = ep_sxtb16(wv), w13 = ep_sxtb16_ror8(wv);
          a0 = ep_smlabb(x02, w02, a0);
          a2 = ep_smlatt(x02, w02, a2);
          a1 = ep_smlabb(x13, w13, a1);
          a3 = ep_smlatt(x13, w13, a3);
        }
        out[0] = ep_out(q, a0, c, EP_DW_SINGLE_ROUNDING);
        out[1] = ep_out(q, a1, c + 1, EP_DW_SINGLE_ROUNDING);
        out[2] = ep_out(q, a2, c + 2, EP_DW_SINGLE_ROUNDING);
        out[3] = ep_out(q, a3, c + 3, EP_DW_SINGLE_ROUNDING);
        out += 4;
      }
    }
  }
}
