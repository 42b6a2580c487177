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

void ep_maxpool(const ep_window *g, int32_t act_min, int32_t act_max, const int8_t *in,
                int8_t *out) {
  pool(g, act_min, act_max, in, out, 0);
}

void ep_avgpool(const ep_window *g, int32_t act_min, int32_t act_max, const int8_t *in,
                int8_t *out) {
  pool(g, act_min, act_max, in, out, 1);
}
