/* edgeprune-c: PAD of a 4-D int8 tensor with a constant (TFLite: the output zero point).
 * It runs from the last output element to the first: output element o reads an input element
 * at an index <= o's, so the output may start at or below the input in memory. */
#include "ep_common.h"
#include "ep_kernels.h"

void ep_pad(const ep_pad_params *p, const int8_t *in, int8_t *out) {
  const int od0 = p->out_dims[0], od1 = p->out_dims[1], od2 = p->out_dims[2], od3 = p->out_dims[3];
  const int id1 = p->in_dims[1], id2 = p->in_dims[2], id3 = p->in_dims[3];
  int o = od0 * od1 * od2 * od3;
  for (int i0 = od0 - 1; i0 >= 0; i0--) {
    const int j0 = i0 - p->before[0];
    for (int i1 = od1 - 1; i1 >= 0; i1--) {
      const int j1 = i1 - p->before[1];
      for (int i2 = od2 - 1; i2 >= 0; i2--) {
        const int j2 = i2 - p->before[2];
        const int inside = j0 >= 0 && j0 < p->in_dims[0] && j1 >= 0 && j1 < id1 && j2 >= 0 &&
                           j2 < id2;
        for (int i3 = od3 - 1; i3 >= 0; i3--) {
          const int j3 = i3 - p->before[3];
          --o;
          out[o] = (inside && j3 >= 0 && j3 < id3)
                       ? in[((j0 * id1 + j1) * id2 + j2) * id3 + j3] : p->value;
        }
      }
    }
  }
}
