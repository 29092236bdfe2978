#include "core/rng.h"

#include <math.h>

enum { MT_N = 624, MT_M = 397 };

void cq_rng_seed(cq_rng *rng, uint64_t seed) {
  rng->state[0] = (uint32_t)seed;
  for (int i = 1; i < MT_N; i++) {
    uint32_t prev = rng->state[i - 1];
    rng->state[i] = 1812433253u * (prev ^ (prev >> 30)) + (uint32_t)i;
  }
  rng->index = MT_N;
}

static void twist(cq_rng *rng) {
  for (int i = 0; i < MT_N; i++) {
    uint32_t y = (rng->state[i] & 0x80000000u) | (rng->state[(i + 1) % MT_N] & 0x7fffffffu);
    uint32_t v = rng->state[(i + MT_M) % MT_N] ^ (y >> 1);
    if (y & 1u) v ^= 0x9908b0dfu;
    rng->state[i] = v;
  }
  rng->index = 0;
}

uint32_t cq_rng_next_u32(cq_rng *rng) {
  if (rng->index >= MT_N) twist(rng);
  uint32_t y = rng->state[rng->index++];
  y ^= y >> 11;
  y ^= (y << 7) & 0x9d2c5680u;
  y ^= (y << 15) & 0xefc60000u;
  y ^= y >> 18;
  return y;
}

float cq_rng_uniform(cq_rng *rng, float from, float to) {
  uint32_t bits = cq_rng_next_u32(rng) & ((1u << 24) - 1);
  float u = (float)bits * (1.0f / 16777216.0f);
  return u * (to - from) + from;
}

float cq_rng_normal(cq_rng *rng) {
  double u1 = ((cq_rng_next_u32(rng) >> 8) + 1.0) / 16777217.0;
  double u2 = (cq_rng_next_u32(rng) >> 8) / 16777216.0;
  return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

static cq_rng default_rng;
static int default_seeded;

cq_rng *cq_default_rng(void) {
  if (!default_seeded) {
    cq_rng_seed(&default_rng, 0);
    default_seeded = 1;
  }
  return &default_rng;
}
