/* edgeprune-c: arithmetic shared by all kernels.
 *
 * Requantization is TFLite's int8 reference arithmetic, bit for bit:
 * MultiplyByQuantizedMultiplier (double rounding: SaturatingRoundingDoublingHighMul, then
 * RoundingDivideByPOT), tensorflow/lite/kernels/internal/common.{h,cc} and
 * gemmlowp/fixedpoint/fixedpoint.h.
 *
 * DSP primitives (SMLAD, SXTB16, ...) use the Armv7E-M instructions when the compiler says
 * the core has them (__ARM_FEATURE_DSP) and a portable C equivalent otherwise, so the same
 * kernels build and are tested on the host.
 */
#ifndef EP_COMMON_H
#define EP_COMMON_H

#include <stdint.h>
#include <string.h>

#include "ep_config.h"   /* generated per model: EP_SINGLE_ROUNDING, EP_CLUSTER_BITS_<k> */

#if defined(__GNUC__)
#define EP_INLINE static inline __attribute__((always_inline))
#else
#define EP_INLINE static inline
#endif

/* Hot SMLAD loops: not inlined (a fresh register set) and, with GCC, without the first
 * scheduling pass, whose load hoisting makes the loop spill registers (20 -> 18 instructions
 * per 16 MACs in ep_conv.c's block, see benchmarks/c_kernel_loops.py). */
#if defined(__GNUC__) && !defined(__clang__)
#define EP_HOT __attribute__((noinline, optimize("no-schedule-insns")))
#else
#define EP_HOT
#endif

/* gemmlowp SaturatingRoundingDoublingHighMul: round(a * b / 2^31), halves away from zero,
 * INT32_MIN * INT32_MIN saturated. For b > 0 (every requantization multiplier is in
 * [2^30, 2^31)) the nudge-and-truncate of gemmlowp equals floor((a*b + 2^30) / 2^31), which is
 * what ep_high_mul computes (one SMULL, one add, one shift pair). */
EP_INLINE int32_t ep_srdhm(int32_t a, int32_t b) {
  if (a == b && a == INT32_MIN) return INT32_MAX;
  int64_t ab = (int64_t)a * (int64_t)b;
  int64_t nudge = ab >= 0 ? (1 << 30) : (1 - (1 << 30));
  return (int32_t)((ab + nudge) / ((int64_t)1 << 31));
}

EP_INLINE int32_t ep_high_mul(int32_t a, int32_t b_positive) {
  return (int32_t)(((int64_t)a * (int64_t)b_positive + ((int64_t)1 << 30)) >> 31);
}

/* gemmlowp RoundingDivideByPOT: x / 2^e rounded to nearest, halves away from zero. */
EP_INLINE int32_t ep_rdbpot(int32_t x, int e) {
  const int32_t mask = (int32_t)((1u << e) - 1u);
  const int32_t remainder = x & mask;
  const int32_t threshold = (mask >> 1) + (int32_t)((uint32_t)x >> 31);
  return (x >> e) + (remainder > threshold ? 1 : 0);
}

/* TFLite MultiplyByQuantizedMultiplier(x, multiplier, shift), multiplier > 0, in one of the
 * two roundings TFLite has:
 * - double (gemmlowp; TFLM, CMSIS-NN and most LiteRT kernels): round(x * m / 2^31) half away
 *   from zero, then a rounding right shift; the left shift wraps like the reference's
 *   x * (1 << shift);
 * - single (TFLITE_SINGLE_ROUNDING, and ruy's ApplyMultiplier, which LiteRT's int8
 *   fully-connected layers run even with the reference op resolver):
 *   (x * m + 2^(30 - shift)) >> (31 - shift).
 * Which one each op uses is set per model in ep_config.h (EP_<OP>_SINGLE_ROUNDING); `single` is
 * a compile-time constant at every call, so only one of the two is compiled in. */
EP_INLINE int32_t ep_requantize_double(int32_t x, int32_t multiplier, int32_t shift) {
  if (shift > 0) return ep_high_mul((int32_t)((uint32_t)x << shift), multiplier);
  return ep_rdbpot(ep_high_mul(x, multiplier), -shift);
}

EP_INLINE int32_t ep_requantize_single(int32_t x, int32_t multiplier, int32_t shift) {
  const int total = 31 - shift;
  return (int32_t)(((int64_t)x * multiplier + ((int64_t)1 << (total - 1))) >> total);
}

EP_INLINE int32_t ep_requantize(int32_t x, int32_t multiplier, int32_t shift, int single) {
  return single ? ep_requantize_single(x, multiplier, shift)
                : ep_requantize_double(x, multiplier, shift);
}

/* Requantization from a precomputed per-channel record (ep_rq), for shifts <= 0 (no left
 * shift) and accumulators |x| < 2^30, which the generator checks per layer before it enables
 * this path (EP_RQ_FAST in ep_config.h; otherwise the kernels call ep_requantize). One SMLAL
 * (64-bit multiply-accumulate) and a few single-cycle operations, the same bytes as
 * ep_requantize_{double,single} (tests/test_c_requant.py):
 * - double rounding, e = -shift: y = floor((x * m + 2^30) / 2^31) is gemmlowp's
 *   SaturatingRoundingDoublingHighMul for m > 0; RoundingDivideByPOT(y, e) is then
 *   floor((y + 2^(e-1) - [y < 0]) / 2^e) for e > 0 (halves away from zero), and y < 0 exactly
 *   when x < 0 except x = -1, m = 2^30, where both give 0;
 * - single rounding: (x * m + 2^(30+e)) >> (31+e) = (floor(x * m / 2^31) + 2^(e-1)) >> e for
 *   e > 0, and (x * m + 2^30) >> 31 for e = 0.
 * Record: round = e > 0 ? 2^(e-1) : 0; shift = e in bits 0-7, and in bits 16-31 all ones when
 * the double rounding's sign correction applies (e > 0), or bit 30 set for the single
 * rounding's 2^30 (e = 0). */
typedef struct {
  int32_t mult;
  int32_t round;
  int32_t shift;
} ep_rq;

EP_INLINE int32_t ep_smmulr(int32_t a, int32_t b);

EP_INLINE int32_t ep_rq_apply(const ep_rq *r, int32_t x, int single) {
  const int32_t w = r->shift;
#if (defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP && defined(__GNUC__)) || defined(EP_RQ_SMMULR)
  if (!single) {
    /* SMMULR: (2x * m + 2^31) >> 32 = floor((x * m + 2^30) / 2^31) (|x| < 2^30, so 2x
     * fits); RoundingDivideByPOT's sign correction from y's sign (the reference's own test;
     * w >> 16 is -1 when e > 0, else 0). EP_RQ_SMMULR: the same arithmetic in portable C
     * (host tests of the DSP cores' path: tests/test_c_requant.py, tests/test_c_dwconv.py) */
    const int32_t y = ep_smmulr((int32_t)((uint32_t)x << 1), r->mult);
    int32_t t = y + r->round + ((y >> 31) & (w >> 16));
#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP && defined(__GNUC__)
    __asm("asr %0, %0, %1" : "+r"(t) : "r"(w));
    return t;
#else
    return t >> (w & 31);
#endif
  }
#endif
  const uint32_t lo = single ? ((uint32_t)w & 0x40000000u) : 0x40000000u;
  const int64_t a = (int64_t)x * r->mult + (int64_t)lo;
  int32_t t = (int32_t)(uint32_t)((uint64_t)a >> 31);   /* fits: |x| < 2^30 */
  t += r->round;
  if (!single) t += (int32_t)((x >> 31) & w) >> 16;
#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP && defined(__GNUC__)
  /* ASR by register shifts by the register's bottom byte (e), no masking needed */
  __asm("asr %0, %0, %1" : "+r"(t) : "r"(w));
  return t;
#else
  return t >> (w & 31);
#endif
}

#ifndef EP_RQ_FAST
#define EP_RQ_FAST 0
#endif
#ifndef EP_CONV_SINGLE_ROUNDING
#define EP_CONV_SINGLE_ROUNDING 0
#endif
#ifndef EP_DW_SINGLE_ROUNDING
#define EP_DW_SINGLE_ROUNDING 0
#endif
#ifndef EP_FC_SINGLE_ROUNDING
#define EP_FC_SINGLE_ROUNDING 0
#endif
#ifndef EP_ADD_SINGLE_ROUNDING
#define EP_ADD_SINGLE_ROUNDING 0
#endif
#ifndef EP_SOFTMAX_SINGLE_ROUNDING
#define EP_SOFTMAX_SINGLE_ROUNDING 0
#endif
#ifndef EP_RELU_SINGLE_ROUNDING
#define EP_RELU_SINGLE_ROUNDING 0
#endif

EP_INLINE int8_t ep_clamp_s8(int32_t v, int32_t lo, int32_t hi) {
  v = v < lo ? lo : v;
  v = v > hi ? hi : v;
  return (int8_t)v;
}

/* Saturation to int8 (SSAT #8 on the DSP cores). */
EP_INLINE int8_t ep_ssat8(int32_t v) {
#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP && defined(__GNUC__)
  __asm("ssat %0, #8, %0" : "+r"(v));
  return (int8_t)v;
#else
  return ep_clamp_s8(v, -128, 127);
#endif
}

/* The weighted layers' output clamp, when every one of them has act_max = 127 (EP_ACT_MAX_127
 * in ep_config.h: no ReLU6 or narrower range): SSAT to int8, then the lower bound. */
#ifndef EP_ACT_MAX_127
#define EP_ACT_MAX_127 0
#endif
#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP && defined(__GNUC__) && EP_ACT_MAX_127
EP_INLINE int8_t ep_clamp_out(int32_t v, int32_t lo, int32_t hi) {
  (void)hi;
  __asm("ssat %0, #8, %0" : "+r"(v));
  v = v < lo ? lo : v;
  return (int8_t)v;
}
#else
#define ep_clamp_out ep_clamp_s8
#endif

/* Unaligned little-endian 32-bit load (one LDR on Armv7-M; memcpy keeps it standard C). */
EP_INLINE uint32_t ep_load32(const void *p) {
  uint32_t v;
  memcpy(&v, p, 4);
  return v;
}

EP_INLINE void ep_store32(void *p, uint32_t v) { memcpy(p, &v, 4); }

#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP
#define EP_HAVE_DSP 1
#include <arm_acle.h>
/* SXTB16: bytes 0 and 2 sign-extended into two int16 halves. */
EP_INLINE uint32_t ep_sxtb16(uint32_t x) { return (uint32_t)__sxtb16(x); }
/* SXTB16 with ROR #8: bytes 1 and 3. GCC does not fold a rotate into SXTB16 itself. */
EP_INLINE uint32_t ep_sxtb16_ror8(uint32_t x) {
  uint32_t r;
  __asm("sxtb16 %0, %1, ror #8" : "=r"(r) : "r"(x));
  return r;
}
/* SMLAD: acc + lo(x) * lo(y) + hi(x) * hi(y) on int16 halves; SMLABB / SMLATT: one of them. */
EP_INLINE int32_t ep_smlad(uint32_t x, uint32_t y, int32_t acc) {
  return __smlad((int16x2_t)x, (int16x2_t)y, acc);
}
EP_INLINE int32_t ep_smlabb(uint32_t x, uint32_t y, int32_t acc) {
  return __smlabb((int32_t)x, (int32_t)y, acc);
}
EP_INLINE int32_t ep_smlatt(uint32_t x, uint32_t y, int32_t acc) {
  return __smlatt((int32_t)x, (int32_t)y, acc);
}
/* SMLABT / SMLATB: bottom(x) * top(y), top(x) * bottom(y); SMUAD: SMLAD from zero. */
EP_INLINE int32_t ep_smlabt(uint32_t x, uint32_t y, int32_t acc) {
  return __smlatb((int32_t)y, (int32_t)x, acc);
}
EP_INLINE int32_t ep_smlatb(uint32_t x, uint32_t y, int32_t acc) {
  return __smlatb((int32_t)x, (int32_t)y, acc);
}
EP_INLINE int32_t ep_smuad(uint32_t x, uint32_t y) { return __smuad((int16x2_t)x, (int16x2_t)y); }
/* SMMULR: (a * b + 2^31) >> 32, the rounded high word of the 64-bit product. */
EP_INLINE int32_t ep_smmulr(int32_t a, int32_t b) {
#if defined(__GNUC__)
  int32_t r;
  __asm("smmulr %0, %1, %2" : "=r"(r) : "r"(a), "r"(b));
  return r;
#else
  return (int32_t)(((int64_t)a * b + ((int64_t)1 << 31)) >> 32);
#endif
}
#else
/* Portable equivalents (host builds, cores without the DSP extension). The sums wrap modulo
 * 2^32 like the instructions; in int32 the reference's sums are the same. */
#define EP_HAVE_DSP 0
EP_INLINE int32_t ep_lo16(uint32_t x) { return (int16_t)(x & 0xffff); }
EP_INLINE int32_t ep_hi16(uint32_t x) { return (int16_t)(x >> 16); }
EP_INLINE uint32_t ep_pack16(int32_t lo, int32_t hi) {
  return ((uint32_t)(uint16_t)(int16_t)lo) | ((uint32_t)(uint16_t)(int16_t)hi << 16);
}
EP_INLINE uint32_t ep_sxtb16(uint32_t x) {
  return ep_pack16((int8_t)(x & 0xff), (int8_t)((x >> 16) & 0xff));
}
EP_INLINE uint32_t ep_sxtb16_ror8(uint32_t x) {
  return ep_pack16((int8_t)((x >> 8) & 0xff), (int8_t)(x >> 24));
}
EP_INLINE int32_t ep_smlad(uint32_t x, uint32_t y, int32_t acc) {
  return (int32_t)((uint32_t)acc + (uint32_t)(ep_lo16(x) * ep_lo16(y))
                   + (uint32_t)(ep_hi16(x) * ep_hi16(y)));
}
EP_INLINE int32_t ep_smlabb(uint32_t x, uint32_t y, int32_t acc) {
  return (int32_t)((uint32_t)acc + (uint32_t)(ep_lo16(x) * ep_lo16(y)));
}
EP_INLINE int32_t ep_smlatt(uint32_t x, uint32_t y, int32_t acc) {
  return (int32_t)((uint32_t)acc + (uint32_t)(ep_hi16(x) * ep_hi16(y)));
}
EP_INLINE int32_t ep_smlabt(uint32_t x, uint32_t y, int32_t acc) {
  return (int32_t)((uint32_t)acc + (uint32_t)(ep_lo16(x) * ep_hi16(y)));
}
EP_INLINE int32_t ep_smlatb(uint32_t x, uint32_t y, int32_t acc) {
  return (int32_t)((uint32_t)acc + (uint32_t)(ep_hi16(x) * ep_lo16(y)));
}
EP_INLINE int32_t ep_smuad(uint32_t x, uint32_t y) { return ep_smlad(x, y, 0); }
EP_INLINE int32_t ep_smmulr(int32_t a, int32_t b) {
  return (int32_t)(((int64_t)a * b + ((int64_t)1 << 31)) >> 32);
}
#endif

/* Byte-wise signed maximum of four int8 lanes: SSUB8 sets each lane's GE flag where a >= b,
 * SEL then takes a's byte there and b's elsewhere (one asm block, so nothing can clobber the
 * GE flags between them); a portable lane loop elsewhere (host tests of the same path). */
EP_INLINE uint32_t ep_max4_s8(uint32_t a, uint32_t b) {
#if EP_HAVE_DSP && defined(__GNUC__)
  uint32_t r;
  __asm("ssub8 %0, %1, %2\n\tsel %0, %1, %2" : "=&r"(r) : "r"(a), "r"(b) : "cc");
  return r;
#else
  uint32_t r = 0;
  for (int i = 0; i < 32; i += 8) {
    const int8_t x = (int8_t)(a >> i), y = (int8_t)(b >> i);
    r |= (uint32_t)(uint8_t)(x >= y ? x : y) << i;
  }
  return r;
#endif
}

EP_INLINE uint32_t ep_min4_s8(uint32_t a, uint32_t b) {
#if EP_HAVE_DSP && defined(__GNUC__)
  uint32_t r;
  __asm("ssub8 %0, %1, %2\n\tsel %0, %2, %1" : "=&r"(r) : "r"(a), "r"(b) : "cc");
  return r;
#else
  uint32_t r = 0;
  for (int i = 0; i < 32; i += 8) {
    const int8_t x = (int8_t)(a >> i), y = (int8_t)(b >> i);
    r |= (uint32_t)(uint8_t)(x >= y ? y : x) << i;
  }
  return r;
#endif
}

/* Two int16 values in one word: lo in bits 0-15, hi in bits 16-31. */
EP_INLINE uint32_t ep_pack2(int32_t lo, int32_t hi) {
  return ((uint32_t)(uint16_t)(int16_t)lo) | ((uint32_t)(uint16_t)(int16_t)hi << 16);
}

#endif /* EP_COMMON_H */
