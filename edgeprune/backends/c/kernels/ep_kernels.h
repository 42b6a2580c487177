/* edgeprune-c kernels: int8 inference, NHWC activations, batch 1.
 *
 * Every weighted kernel takes raw int8 inputs: the input zero point is folded into the bias at
 * export time (bias' = bias - in_zp * sum(w)), so a padded input position holds the value in_zp
 * (it then contributes in_zp * w, which the folded bias cancels, exactly as TFLite's skipped
 * padding contributes (in_zp - in_zp) * w = 0).
 */
#ifndef EP_KERNELS_H
#define EP_KERNELS_H

#include <stdint.h>

#include "ep_common.h"

/* Geometry of a sliding-window op (conv, depthwise, pooling). */
typedef struct {
  uint16_t in_h, in_w, in_c;
  uint16_t out_h, out_w, out_c;
  uint8_t k_h, k_w, stride_h, stride_w, dil_h, dil_w;
  uint8_t pad_top, pad_left;   /* bottom / right padding follows from out_h / out_w */
} ep_window;

/* Per-output-channel requantization of int32 accumulators. */
typedef struct {
  const int32_t *bias;         /* bias - in_zp * sum(weights of the channel) */
  const int32_t *mult;         /* QuantizeMultiplier(in_scale * w_scale[c] / out_scale) */
  const int8_t *shift;
  int32_t in_zp;               /* value of a padded input position */
  int32_t out_zp, act_min, act_max;
  const ep_rq *rq;             /* the same as records (ep_common.h), when EP_RQ_FAST */
} ep_requant;

/* Unstructured sparse weights, row by row (a row = one output channel's window or one
 * fully-connected output): count[r] entries; entry n multiplies the input at offset pos[n] from
 * the row's first input (the window's first element for a convolution) by value[n].
 * tap[n] = ky << 4 | kx, only for padded convolutions (border pixels). */
typedef struct {
  const uint16_t *count;
  const uint16_t *pos;
  const int8_t *value;
  const uint8_t *tap;
} ep_sparse;

/* Clustered weights: k-bit indices into a per-output-channel codebook of 2^k int8 values.
 * Each row starts on a 32-bit word; a word holds 32 / k indices, first index in the low bits. */
typedef struct {
  const uint32_t *index;
  const int8_t *codebook;      /* rows * 2^bits values */
  uint8_t bits;
  uint16_t row_words;
} ep_clustered;

/* Convolution (weights OHWI). col: scratch, see each kernel. */
void ep_conv_dense_plain(const ep_window *g, const ep_requant *q, const int8_t *w,
                         const int8_t *in, int8_t *out, int8_t *col);
void ep_conv_dense_dsp(const ep_window *g, const ep_requant *q, const uint32_t *w,
                       const int8_t *in, int8_t *out, uint32_t *col);
void ep_conv_sparse(const ep_window *g, const ep_requant *q, const ep_sparse *s,
                    const int8_t *in, int8_t *out);
/* ep_conv_sparse followed by the max pooling pg (stride = window, no padding) whose output it
 * writes: same bytes as the two kernels (kernels/ep_conv_sparse.c). */
void ep_conv_sparse_maxpool(const ep_window *g, const ep_requant *q, const ep_sparse *s,
                            const ep_window *pg, int32_t pool_min, int32_t pool_max,
                            const int8_t *in, int8_t *out);
void ep_conv_clustered(const ep_window *g, const ep_requant *q, const ep_clustered *c,
                       const int8_t *in, int8_t *out, int8_t *col);

/* Depthwise convolution (weights 1 x KH x KW x out_c, out_c = in_c * depth_multiplier). */
void ep_dwconv_plain(const ep_window *g, const ep_requant *q, const int8_t *w,
                     const int8_t *in, int8_t *out);
/* ep_dwconv_dsp's 3x3 path (3x3 window, dilation 1, depth multiplier 1) and its scratch:
 * int32 accumulators of EP_DW3_CHUNK rows and the padded plane of one channel (+ 4 bytes a word load of
 * the last pixel reads past it). Other windows need no scratch. */
#define EP_DW3(g) ((g)->k_h == 3 && (g)->k_w == 3 && (g)->dil_h == 1 && (g)->dil_w == 1 && \
                   (g)->out_c == (g)->in_c)
/* output rows per pass of the 3x3 path (int32 accumulators of up to 512 outputs, >= 1 row) */
#define EP_DW3_CHUNK(g) ((g)->out_w >= 512 ? 1 : (512 / (g)->out_w < (g)->out_h ? 512 / (g)->out_w : (g)->out_h))
/* one padded plane: ((out_h - 1) stride_h + 3) x ((out_w - 1) stride_w + 3) bytes + 4, word-aligned;
 * four of them (four channels gathered per pass) when in_c >= 4 */
#define EP_DW3_PLANE_BYTES(g) (((((g)->out_h - 1) * (g)->stride_h + 3) * (((g)->out_w - 1) * (g)->stride_w + 3) + 7) & ~3)
#define EP_DW3_PLANES(g) ((g)->in_c >= 4 ? 4 : 1)
void ep_dwconv_dsp(const ep_window *g, const ep_requant *q, const int8_t *w,
                   const int8_t *in, int8_t *out, uint32_t *scratch);

/* Fully connected (weights [out_n][in_n]); `batches` rows of in_n inputs. */
void ep_fc_dense_plain(int batches, int in_n, int out_n, const ep_requant *q, const int8_t *w,
                       const int8_t *in, int8_t *out);
void ep_fc_dense_dsp(int batches, int in_n, int out_n, const ep_requant *q, const uint32_t *w,
                     const int8_t *in, int8_t *out);
void ep_fc_sparse(int batches, int in_n, int out_n, const ep_requant *q, const ep_sparse *s,
                  const int8_t *in, int8_t *out);
void ep_fc_clustered(int batches, int in_n, int out_n, const ep_requant *q,
                     const ep_clustered *c, const int8_t *in, int8_t *out);

/* Pooling (input and output share scale and zero point, as TFLite requires). */
void ep_maxpool(const ep_window *g, int32_t act_min, int32_t act_max, const int8_t *in,
                int8_t *out);
void ep_avgpool(const ep_window *g, int32_t act_min, int32_t act_max, const int8_t *in,
                int8_t *out);

/* ADD: each input's rescaling ((x - zp) << left_shift, then its multiplier) depends on one
 * int8 value only, so the generator tabulates it (256 int32 per input, computed with the same
 * arithmetic); out_rq: the output requantization as a record (fast != 0, see ep_rq) or
 * out_mult / out_shift. */
typedef struct {
  const int32_t *t1, *t2;       /* indexed by the int8 input + 128 */
  ep_rq out_rq;
  int32_t fast;
  int32_t out_mult, out_shift, out_zp, act_min, act_max;
} ep_add_params;
void ep_add(const ep_add_params *p, int n, const int8_t *a, const int8_t *b, int8_t *out);

/* PAD of an NHWC tensor with the output zero point; runs backwards so that the output may
 * start at or below the input in memory (the planner uses this). */
typedef struct {
  uint16_t in_dims[4];
  uint16_t before[4];
  uint16_t out_dims[4];
  int8_t value;
} ep_pad_params;
void ep_pad(const ep_pad_params *p, const int8_t *in, int8_t *out);

/* Concatenation along one axis: `outer` blocks; input i contributes inner[i] bytes each. */
void ep_concat(int outer, int n_inputs, const int8_t *const *inputs, const uint32_t *inner,
               int8_t *out);

typedef struct {
  int32_t input_multiplier, input_left_shift, diff_min;
} ep_softmax_params;
void ep_softmax(const ep_softmax_params *p, int rows, int depth, const int8_t *in, int8_t *out);

typedef struct {
  int32_t in_zp, out_zp, mult, shift, act_min, act_max;
} ep_relu_params;
void ep_relu(const ep_relu_params *p, int n, const int8_t *in, int8_t *out);

#endif /* EP_KERNELS_H */
