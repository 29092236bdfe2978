/* Parameter initialisation as torch.nn does it by default, drawing from the library's generator in
 * the same order and with the same arithmetic as torch's CPU generator, so that after
 * cq_manual_seed(s) a module gets the weights torch.manual_seed(s) would give it. */
#ifndef CQ_NN_INIT_H
#define CQ_NN_INIT_H

#include "cquant/tensor.h"

/* tensor.uniform_(-bound, bound): each value (float)(u * (double)(to - from) + from) with u drawn
 * from 24 random bits, as torch's uniform_real for float32. */
void cq_init_uniform(cq_tensor *t, double bound);
/* 1 / sqrt(fan_in) (0 for fan_in 0): the bias bound of Linear / ConvNd and the RNN bound with
 * fan_in = hidden_size. */
double cq_init_fan_in_bound(int64_t fan_in);
/* kaiming_uniform_(a=sqrt(5)) bound computed as torch does in double:
 * sqrt(3) * sqrt(2 / (1 + a^2)) / sqrt(fan_in). */
double cq_init_kaiming_bound(int64_t fan_in);

#endif
