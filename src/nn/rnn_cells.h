/* Gate math of one LSTM / GRU time step over a batch, forward and backward.
 *
 * The callers do the matrix products: every function takes the two projected gate pre-activations
 *   gi = x W_ih^T + b_ih   and   gh = h W_hh^T + b_hh      (each [batch, G*hidden], contiguous rows)
 * so the float RNN (src/nn/rnn.c, cq_sgemm) and a dynamically quantized RNN (int8 products,
 * dequantized into float gi / gh) share the elementwise part. Gate order in the G*hidden columns is
 * PyTorch's: LSTM i, f, g, o (G = 4); GRU r, z, n (G = 3). All state arrays are [batch, hidden],
 * contiguous. The arithmetic follows ATen's CPU cells (aten/src/ATen/native/RNN.cpp):
 *
 *   LSTM: gates = gh + gi; i, f, o = sigmoid; g = tanh; c' = f * c + i * g; h' = o * tanh(c')
 *   GRU:  r = sigmoid(gh_r + gi_r); z = sigmoid(gh_z + gi_z); n = tanh(gi_n + r * gh_n);
 *         h' = (h - n) * z + n            (= (1 - z) * n + z * h)
 */
#ifndef CQ_NN_RNN_CELLS_H
#define CQ_NN_RNN_CELLS_H

#include <stdint.h>

/* One LSTM step. c_prev -> c, writes h. `act` (optional, [batch, 4*hidden]) receives the activated
 * gates i, f, g, o for cq_lstm_cell_backward. c may not alias c_prev; h may not alias either. */
void cq_lstm_cell_forward(int64_t batch, int64_t hidden, const float *gi, const float *gh,
                          const float *c_prev, float *c, float *h, float *act);

/* Backward of one LSTM step. In: act (from forward), c_prev, c, dh (dL/dh'), dc (dL/dc' coming from
 * the next step; updated in place to dL/dc_prev). Out: dgates [batch, 4*hidden], the gradient of
 * the summed pre-activation, which is both dL/dgi and dL/dgh. dL/dh_prev = dgates W_hh (caller). */
void cq_lstm_cell_backward(int64_t batch, int64_t hidden, const float *act, const float *c_prev,
                           const float *c, const float *dh, float *dc, float *dgates);

/* One GRU step: h_prev -> h. `act` (optional, [batch, 3*hidden]) receives r, z, n and `hn`
 * (optional, [batch, hidden]) the n-column of gh (W_hn h + b_hn), both for backward. h may not
 * alias h_prev. */
void cq_gru_cell_forward(int64_t batch, int64_t hidden, const float *gi, const float *gh,
                         const float *h_prev, float *h, float *act, float *hn);

/* Backward of one GRU step. In: act, hn (from forward), h_prev, dh (dL/dh'). Out: dgi = dL/dgi and
 * dgh = dL/dgh ([batch, 3*hidden]; they differ in the n columns), dh_prev = the direct part
 * z * dh of dL/dh_prev (the caller adds dgh W_hh). */
void cq_gru_cell_backward(int64_t batch, int64_t hidden, const float *act, const float *hn,
                          const float *h_prev, const float *dh, float *dgi, float *dgh,
                          float *dh_prev);

#endif
