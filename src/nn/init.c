#include "nn/init.h"

#include <math.h>

#include "core/rng.h"
#include "cquant/modules.h"

void cq_manual_seed(uint64_t seed) { cq_rng_seed(cq_default_rng(), seed); }

void cq_init_uniform(cq_tensor *t, double bound) {
  cq_rng *rng = cq_default_rng();
  const float from = (float)-bound, to = (float)bound;
  const double width = (double)(to - from);
  float *d = t->data;
  int64_t n = cq_tensor_numel(t);
  for (int64_t i = 0; i < n; i++) {
    const double u = (double)(cq_rng_next_u32(rng) & ((1u << 24) - 1)) / 16777216.0;
    d[i] = (float)(u * width + (double)from);
  }
}

double cq_init_fan_in_bound(int64_t fan_in) {
  return fan_in > 0 ? 1.0 / sqrt((double)fan_in) : 0.0;
}

double cq_init_kaiming_bound(int64_t fan_in) {
  if (fan_in <= 0) return 0.0;
  const double a = sqrt(5.0);
  const double gain = sqrt(2.0 / (1.0 + a * a));
  const double std = gain / sqrt((double)fan_in);
  return sqrt(3.0) * std;
}
