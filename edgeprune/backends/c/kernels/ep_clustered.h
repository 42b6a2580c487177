/* edgeprune-c: dot product of int8 inputs with clustered weights (ep_kernels.h, ep_clustered):
 * each weight is w = codebook[index], the index unpacked from 32-bit words with constant
 * shifts (one UBFX each on Armv7-M when BITS is a compile-time constant). */
#ifndef EP_CLUSTERED_H
#define EP_CLUSTERED_H

#include "ep_common.h"

EP_INLINE int32_t ep_clustered_dot(const int8_t *x, const uint32_t *idx, const int8_t *cb,
                                   int n, const int bits) {
  const int per = 32 / bits;
  const uint32_t mask = (1u << bits) - 1u;
  int32_t acc = 0;
  while (n >= per) {
    const uint32_t word = *idx++;
#pragma GCC unroll 32
    for (int j = 0; j < per; j++) acc += x[j] * cb[(word >> (j * bits)) & mask];
    x += per;
    n -= per;
  }
  if (n > 0) {
    uint32_t word = *idx;
    for (int j = 0; j < n; j++) {
      acc += x[j] * cb[word & mask];
      word >>= bits;
    }
  }
  return acc;
}

/* Calls BODY(b) with b a compile-time constant equal to bits (so each width gets its own
 * unrolled loop); widths the model does not use are compiled out by EP_CLUSTER_BITS_<b>. */
#if defined(EP_CLUSTER_ALL_BITS)
#define EP_CLUSTER_BITS_1 1
#define EP_CLUSTER_BITS_2 1
#define EP_CLUSTER_BITS_3 1
#define EP_CLUSTER_BITS_4 1
#define EP_CLUSTER_BITS_5 1
#define EP_CLUSTER_BITS_6 1
#define EP_CLUSTER_BITS_7 1
#endif

#endif /* EP_CLUSTERED_H */
