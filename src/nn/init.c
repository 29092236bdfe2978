#include "nn/init.h"

#include <math.h>

#include "core/rng.h"
#include "cquant/modules.h"

void cq_manual_seed(uint64_t seed) { cq_rng_seed(cq_default_rng(), seed); }

void cq_init_uniform(cq_tensor *t, float bound) {
  cq_rng *rng = cq_default_rng();
  float *d = t->data;
  int64_t n = cq_tensor_numel(t);
  for (int64_t i = 0; i < n; i++) d[i] = cq_rng_uniform(rng, -bound, bound);
}

float cq_init_fan_in_bound(int64_t fan_in) {
  return fan_in > 0 ? (float)(1.0 / sqrt((double)fan_in)) : 0.0f;
}
