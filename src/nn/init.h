/* Parameter initialisation as torch.nn does it by default. */
#ifndef CQ_NN_INIT_H
#define CQ_NN_INIT_H

#include "cquant/tensor.h"

/* Fills t with U(-bound, bound) from the library's generator. */
void cq_init_uniform(cq_tensor *t, float bound);
/* The default of Linear/ConvNd: kaiming_uniform_(a=sqrt(5)) for the weight, which is
 * U(-1/sqrt(fan_in), 1/sqrt(fan_in)); the bias uses the same bound. */
float cq_init_fan_in_bound(int64_t fan_in);

#endif
