#include "nn/rnn_cells.h"

#include <stddef.h>

#include "kernels/vmath/vmath.h"

/* The gates are activated a chunk of hidden units at a time with the vector sigmoid / tanh of
 * kernels/vmath (the chunk's pre-activations stay in L1). */
#define CHUNK 64

void cq_lstm_cell_forward(int64_t batch, int64_t hidden, const float *gi, const float *gh,
                          const float *c_prev, float *c, float *h, float *act) {
  const int64_t g4 = 4 * hidden;
  float gate[4][CHUNK], tc[CHUNK];
  for (int64_t b = 0; b < batch; b++) {
    const float *xi = gi + b * g4, *hh = gh + b * g4;
    const float *cp = c_prev + b * hidden;
    float *cb = c + b * hidden, *hb = h + b * hidden;
    float *ab = act ? act + b * g4 : NULL;
    for (int64_t j0 = 0; j0 < hidden; j0 += CHUNK) {
      const int64_t len = hidden - j0 < CHUNK ? hidden - j0 : CHUNK;
      for (int g = 0; g < 4; g++) {
        const int64_t o = g * hidden + j0;
        for (int64_t j = 0; j < len; j++) gate[g][j] = hh[o + j] + xi[o + j];
      }
      cq_f32_sigmoid(gate[0], gate[0], (size_t)len);
      cq_f32_sigmoid(gate[1], gate[1], (size_t)len);
      cq_f32_tanh(gate[2], gate[2], (size_t)len);
      cq_f32_sigmoid(gate[3], gate[3], (size_t)len);
      for (int64_t j = 0; j < len; j++) {
        cb[j0 + j] = gate[1][j] * cp[j0 + j] + gate[0][j] * gate[2][j];
      }
      cq_f32_tanh(cb + j0, tc, (size_t)len);
      for (int64_t j = 0; j < len; j++) hb[j0 + j] = gate[3][j] * tc[j];
      if (ab) {
        for (int g = 0; g < 4; g++) {
          for (int64_t j = 0; j < len; j++) ab[g * hidden + j0 + j] = gate[g][j];
        }
      }
    }
  }
}

void cq_lstm_cell_backward(int64_t batch, int64_t hidden, const float *act, const float *c_prev,
                           const float *c, const float *dh, float *dc, float *dgates) {
  const int64_t g4 = 4 * hidden;
  for (int64_t b = 0; b < batch; b++) {
    const float *ab = act + b * g4;
    const float *cp = c_prev + b * hidden, *cb = c + b * hidden, *dhb = dh + b * hidden;
    float *dcb = dc + b * hidden, *dg = dgates + b * g4;
    for (int64_t j = 0; j < hidden; j++) {
      const float ig = ab[j], fg = ab[hidden + j], gg = ab[2 * hidden + j], og = ab[3 * hidden + j];
      const float tc = cq_tanh_f32(cb[j]); /* as forward computed it */
      const float dct = dcb[j] + dhb[j] * og * (1.0f - tc * tc);
      dg[j] = dct * gg * ig * (1.0f - ig);
      dg[hidden + j] = dct * cp[j] * fg * (1.0f - fg);
      dg[2 * hidden + j] = dct * ig * (1.0f - gg * gg);
      dg[3 * hidden + j] = dhb[j] * tc * og * (1.0f - og);
      dcb[j] = dct * fg;
    }
  }
}

void cq_gru_cell_forward(int64_t batch, int64_t hidden, const float *gi, const float *gh,
                         const float *h_prev, float *h, float *act, float *hn) {
  const int64_t g3 = 3 * hidden;
  float r[CHUNK], z[CHUNK], n[CHUNK];
  for (int64_t b = 0; b < batch; b++) {
    const float *xi = gi + b * g3, *hh = gh + b * g3;
    const float *hp = h_prev + b * hidden;
    float *hb = h + b * hidden;
    float *ab = act ? act + b * g3 : NULL;
    float *hnb = hn ? hn + b * hidden : NULL;
    for (int64_t j0 = 0; j0 < hidden; j0 += CHUNK) {
      const int64_t len = hidden - j0 < CHUNK ? hidden - j0 : CHUNK;
      for (int64_t j = 0; j < len; j++) {
        r[j] = hh[j0 + j] + xi[j0 + j];
        z[j] = hh[hidden + j0 + j] + xi[hidden + j0 + j];
      }
      cq_f32_sigmoid(r, r, (size_t)len);
      cq_f32_sigmoid(z, z, (size_t)len);
      for (int64_t j = 0; j < len; j++) n[j] = xi[2 * hidden + j0 + j] + hh[2 * hidden + j0 + j] * r[j];
      cq_f32_tanh(n, n, (size_t)len);
      for (int64_t j = 0; j < len; j++) {
        const int64_t k = j0 + j;
        hb[k] = (hp[k] - n[j]) * z[j] + n[j];
        if (ab) {
          ab[k] = r[j];
          ab[hidden + k] = z[j];
          ab[2 * hidden + k] = n[j];
        }
        if (hnb) hnb[k] = hh[2 * hidden + k];
      }
    }
  }
}

void cq_gru_cell_backward(int64_t batch, int64_t hidden, const float *act, const float *hn,
                          const float *h_prev, const float *dh, float *dgi, float *dgh,
                          float *dh_prev) {
  const int64_t g3 = 3 * hidden;
  for (int64_t b = 0; b < batch; b++) {
    const float *ab = act + b * g3, *hnb = hn + b * hidden;
    const float *hp = h_prev + b * hidden, *dhb = dh + b * hidden;
    float *di = dgi + b * g3, *dhh = dgh + b * g3, *dhp = dh_prev + b * hidden;
    for (int64_t j = 0; j < hidden; j++) {
      const float r = ab[j], z = ab[hidden + j], n = ab[2 * hidden + j];
      const float g = dhb[j];
      const float dn = g * (1.0f - z) * (1.0f - n * n); /* d pre-activation of n */
      const float dz = g * (hp[j] - n) * z * (1.0f - z);
      const float dr = dn * hnb[j] * r * (1.0f - r);
      di[j] = dr;
      di[hidden + j] = dz;
      di[2 * hidden + j] = dn;
      dhh[j] = dr;
      dhh[hidden + j] = dz;
      dhh[2 * hidden + j] = dn * r;
      dhp[j] = g * z;
    }
  }
}
