/* edgeprune-c: int8 -> int8 softmax, as TFLite's reference_ops::Softmax computes it with
 * gemmlowp's fixed-point exp and reciprocal (Q5.26 scaled differences, Q12 sum of exps;
 * tensorflow/lite/kernels/internal/reference/softmax.h, gemmlowp/fixedpoint/fixedpoint.h).
 * Every row is read fully before its first output is written, and output c is written after
 * input c was last read, so the output may overlay the input. */
#include "ep_common.h"
#include "ep_kernels.h"

/* gemmlowp SaturatingRoundingMultiplyByPOT<e>. */
static int32_t mul_pot(int32_t x, int e) {
  if (e < 0) return ep_rdbpot(x, -e);
  const int32_t threshold = (int32_t)((1u << (31 - e)) - 1u);
  if (x > threshold) return INT32_MAX;
  if (x < -threshold) return INT32_MIN;
  return (int32_t)((uint32_t)x << e);
}

/* exp(a) for a in [-1/4, 0), Q0.31 in and out. */
static int32_t exp_quarter(int32_t a) {
  const int32_t constant_term = 1895147668;   /* exp(-1/8) */
  const int32_t one_third = 715827883;
  const int32_t x = a + (1 << 28);            /* a + 1/8 */
  const int32_t x2 = ep_srdhm(x, x);
  const int32_t x3 = ep_srdhm(x2, x);
  const int32_t x4 = ep_srdhm(x2, x2);
  const int32_t x4_over_4 = mul_pot(x4, -2);
  const int32_t poly = mul_pot(ep_srdhm(x4_over_4 + x3, one_third) + x2, -1);
  return constant_term + ep_srdhm(constant_term, x + poly);
}

/* exp(a) for a <= 0 given in Q5.26; result Q0.31. */
static int32_t exp_negative_q5_26(int32_t a) {
  static const int32_t barrel[7] = {1672461947, 1302514674, 790015084, 290630308,
                                    39332535, 720401, 242};   /* exp(-2^e), e = -2 .. 4 */
  const int32_t one_quarter = 1 << 24;
  const int32_t a_mod_quarter_minus_quarter = (a & (one_quarter - 1)) - one_quarter;
  int32_t result = exp_quarter(mul_pot(a_mod_quarter_minus_quarter, 5));
  const int32_t remainder = a_mod_quarter_minus_quarter - a;
  for (int e = -2; e <= 4; e++) {
    if (remainder & (1 << (26 + e))) result = ep_srdhm(result, barrel[e + 2]);
  }
  return a == 0 ? INT32_MAX : result;
}

/* 1 / (1 + a) for a in [0, 1), Q0.31, by Newton-Raphson. */
static int32_t one_over_one_plus(int32_t a) {
  const int64_t sum = (int64_t)a + INT32_MAX;
  const int32_t half_denominator = (int32_t)((sum + (sum >= 0 ? 1 : -1)) / 2);
  int32_t x = 1515870810 + ep_srdhm(half_denominator, -1010580540);  /* 48/17 - 32/17 d, Q2 */
  for (int i = 0; i < 3; i++) {
    const int32_t one_minus = (1 << 29) - ep_srdhm(half_denominator, x);
    x = x + mul_pot(ep_srdhm(x, one_minus), 2);
  }
  return mul_pot(x, 1);
}

static int clz32(uint32_t x) {
#if defined(__GNUC__)
  return x ? __builtin_clz(x) : 32;
#else
  int n = 0;
  if (!x) return 32;
  while (!(x & 0x80000000u)) { x <<= 1; n++; }
  return n;
#endif
}

void ep_softmax(const ep_softmax_params *p, int rows, int depth, const int8_t *in, int8_t *out) {
  for (int r = 0; r < rows; r++) {
    int32_t max_in_row = -128;
    for (int c = 0; c < depth; c++) max_in_row = in[c] > max_in_row ? in[c] : max_in_row;
    int32_t sum_of_exps = 0;   /* Q12.19 */
    for (int c = 0; c < depth; c++) {
      const int32_t diff = in[c] - max_in_row;
      if (diff >= p->diff_min) {
        /* MultiplyByQuantizedMultiplierGreaterThanOne (shift >= 0) */
        const int32_t scaled = ep_requantize(diff, p->input_multiplier, p->input_left_shift,
                                             EP_SOFTMAX_SINGLE_ROUNDING);
        sum_of_exps += ep_rdbpot(exp_negative_q5_26(scaled), 12);
      }
    }
    const int headroom_plus_one = clz32((uint32_t)sum_of_exps);
    const int num_bits_over_unit = 12 - headroom_plus_one;
    const int32_t shifted_sum_minus_one =
        (int32_t)(((uint32_t)sum_of_exps << headroom_plus_one) - (1u << 31));
    const int32_t shifted_scale = one_over_one_plus(shifted_sum_minus_one);
    const int exponent = num_bits_over_unit + 31 - 8;
    for (int c = 0; c < depth; c++) {
      const int32_t diff = in[c] - max_in_row;
      if (diff >= p->diff_min) {
        /* MultiplyByQuantizedMultiplierGreaterThanOne (shift >= 0) */
        const int32_t scaled = ep_requantize(diff, p->input_multiplier, p->input_left_shift,
                                             EP_SOFTMAX_SINGLE_ROUNDING);
        const int32_t e = exp_negative_q5_26(scaled);
        const int32_t unsat = ep_rdbpot(ep_srdhm(shifted_scale, e), exponent);
        out[c] = ep_clamp_s8(unsat - 128, -128, 127);
      } else {
        out[c] = -128;
      }
    }
    in += depth;
    out += depth;
  }
}
