/* The random generator used for parameter initialisation and random data: MT19937 (the generator
 * behind torch's CPU default generator), seeded like std::mt19937(seed). cq_rng_uniform draws a
 * float in [from, to) from 24 random bits, as torch's uniform_ does for float32. */
#ifndef CQ_CORE_RNG_H
#define CQ_CORE_RNG_H

#include <stdint.h>

typedef struct cq_rng {
  uint32_t state[624];
  int index;
} cq_rng;

void cq_rng_seed(cq_rng *rng, uint64_t seed);
uint32_t cq_rng_next_u32(cq_rng *rng);
float cq_rng_uniform(cq_rng *rng, float from, float to);
/* Standard normal (Box-Muller on two uniforms). */
float cq_rng_normal(cq_rng *rng);

/* The library's default generator (cq_manual_seed in nn.h reseeds it). Not thread-safe. */
cq_rng *cq_default_rng(void);

#endif
