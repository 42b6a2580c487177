/* edgeprune-c: int8 max and average pooling, as TFLite's reference_integer_ops::MaxPool /
 * AveragePool compute them (the window is clipped to the input; the average divides by the
 * number of positions inside it, rounding halves away from zero). Output pixel p only reads
 * input at or after p's window, so the planner may place the output over the input. */
#include "ep_common.h"
#include "ep_kernels.h"

static void pool(const ep_window *g, int32_t act_min, int32_t act_max, const int8_t *in,
                 int8_t *out, int average) {
  const int C = g->in_c;
  for (int oy = 0; oy < g->out_h; oy++) {
    const int y0 = oy * g->stride_h - g->pad_top;
    const int fy0 = y0 < 0 ? -y0 : 0;
    const int fy1 = g->k_h < g->in_h - y0 ? g->k_h : g->in_h - y0;
    for (int ox = 0; ox < g->out_w; ox++) {
      const int x0 = ox * g->stride_w - g->pad_left;
      const int fx0 = x0 < 0 ? -x0 : 0;
      const int fx1 = g->k_w < g->in_w - x0 ? g->k_w : g->in_w - x0;
      for (int c = 0; c < C; c++) {
        int32_t acc = average ? 0 : -128;
        int count = 0;
        for (int fy = fy0; fy < fy1; fy++) {
          const int8_t *row = in + ((y0 + fy) * g->in_w + x0) * C + c;
          for (int fx = fx0; fx < fx1; fx++) {
            const int32_t v = row[fx * C];
            if (average) acc += v;
            else if (v > acc) acc = v;
            count++;
          }
        }
        if (average && count > 0)
          acc = acc > 0 ? (acc + count / 2) / count : (acc - count / 2) / count;
        *out++ = ep_clamp_s8(acc, act_min, act_max);
      }
    }
  }
}

/* Max pooling four channels per word (ep_max4_s8: SSUB8 + SEL on the DSP cores): the window's
 * maximum of four int8 lanes, then the activation clamp on the word when it is narrower than
 * int8; with C >= 4 not a multiple of 4 the last group is the word ending at channel C - 1,
 * fewer than 4 channels byte by byte. Same bytes as pool(): the maximum of a non-empty window
 * starting from its first element equals the reference's maximum from the lowest int8 value.
 * Outputs are written pixel after pixel, each after its window's reads, so the in-place
 * planning holds; where the last group re-reads a byte the same pixel's earlier group already
 * overwrote in place, that byte holds the clamped window maximum, and the clamped maximum of
 * the window with it is the same byte (maximum and clamp are monotone and idempotent). */
#if EP_HAVE_DSP || defined(EP_MAXPOOL_WORDS)
static void maxpool_words(const ep_window *g, int32_t act_min, int32_t act_max,
                          const int8_t *in, int8_t *out) {
  const int C = g->in_c, C4 = C & ~3;
  const int clamp = act_min > -128 || act_max < 127;
  const uint32_t lo4 = 0x01010101u * (uint8_t)(int8_t)(act_min < -128 ? -128 : act_min);
  const uint32_t hi4 = 0x01010101u * (uint8_t)(int8_t)(act_max > 127 ? 127 : act_max);
  const int row_stride = g->in_w * C;
  for (int oy = 0; oy < g->out_h; oy++) {
    const int y0 = oy * g->stride_h - g->pad_top;
    const int fy0 = y0 < 0 ? -y0 : 0;
    const int fy1 = g->k_h < g->in_h - y0 ? g->k_h : g->in_h - y0;
    for (int ox = 0; ox < g->out_w; ox++) {
      const int x0 = ox * g->stride_w - g->pad_left;
      const int fx0 = x0 < 0 ? -x0 : 0;
      const int fx1 = g->k_w < g->in_w - x0 ? g->k_w : g->in_w - x0;
      const int8_t *first = in + ((y0 + fy0) * g->in_w + x0 + fx0) * C;
      const int ny = fy1 - fy0, nx = fx1 - fx0;
      int c = 0;
      /* groups of 4 channels; with C >= 4 not a multiple of 4, a last group ending at channel
       * C - 1 (it recomputes a few channels of the previous group: the same bytes) */
      const int last = C4 == C ? C4 : (C >= 4 ? C4 + 4 : 0);
      for (; c < last; c += 4) {
        const int g0 = c + 4 <= C ? c : C - 4;
        const int8_t *row = first + g0;
        uint32_t m = ep_load32(row);
        for (int fy = 0; fy < ny; fy++, row += row_stride) {
          const int8_t *px = row;
          for (int fx = 0; fx < nx; fx++, px += C) m = ep_max4_s8(ep_load32(px), m);
        }
        if (clamp) m = ep_min4_s8(ep_max4_s8(m, lo4), hi4);
        ep_store32(out + g0, m);
      }
      out += last ? C : 0;
      for (; c < C; c++) {                /* C < 4 */
        const int8_t *row = first + c;
        int32_t acc = -128;
        for (int fy = 0; fy < ny; fy++, row += row_stride)
          for (int fx = 0; fx < nx; fx++) {
            const int32_t v = row[fx * C];
            if (v > acc) acc = v;
          }
        *out++ = ep_clamp_s8(acc, act_min, act_max);
      }
    }
  }
}

#endif

void ep_maxpool(const ep_window *g, int32_t act_min, int32_t act_max, const int8_t *in,
                int8_t *out) {
#if EP_HAVE_DSP || defined(EP_MAXPOOL_WORDS)
  maxpool_words(g, act_min, act_max, in, out);
#else
  pool(g, act_min, act_max, in, out, 0);
#endif
}

void ep_avgpool(const ep_window *g, int32_t act_min, int32_t act_max, const int8_t *in,
                int8_t *out) {
  pool(g, act_min, act_max, in, out, 1);
}
