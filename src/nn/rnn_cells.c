#include "nn/rnn_cells.h"

#include <math.h>
#include <stddef.h>

static inline float sigmoidf(float x) { return 1.0f / (1.0f + expf(-x)); }

void cq_lstm_cell_forward(int64_t batch, int64_t hidden, const float *gi, const float *gh,
                          const float *c_prev, float *c, float *h, float *act) {
  const int64_t g4 = 4 * hidden;
  for (int64_t b = 0; b < batch; b++) {
    const float *xi = gi + b * g4, *hh = gh + b * g4;
    const float *cp = c_prev + b * hidden;
    float *cb = c + b * hidden, *hb = h + b * hidden;
    float *ab = act ? act + b * g4 : NULL;
    for (int64_t j = 0; j < hidden; j++) {
      const float ig = sigmoidf(hh[j] + xi[j]);
      const float fg = sigmoidf(hh[hidden + j] + xi[hidden + j]);
      const float gg = tanhf(hh[2 * hidden + j] + xi[2 * hidden + j]);
      const float og = sigmoidf(hh[3 * hidden + j] + xi[3 * hidden + j]);
      const float cy = fg * cp[j] + ig * gg;
      cb[j] = cy;
      hb[j] = og * tanhf(cy);
      if (ab) {
        ab[j] = ig;
        ab[hidden + j] = fg;
        ab[2 * hidden + j] = gg;
        ab[3 * hidden + j] = og;
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
      const float tc = tanhf(cb[j]);
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
  for (int64_t b = 0; b < batch; b++) {
    const float *xi = gi + b * g3, *hh = gh + b * g3;
    const float *hp = h_prev + b * hidden;
    float *hb = h + b * hidden;
    float *ab = act ? act + b * g3 : NULL;
    float *hnb = hn ? hn + b * hidden : NULL;
    for (int64_t j = 0; j < hidden; j++) {
      const float r = sigmoidf(hh[j] + xi[j]);
      const float z = sigmoidf(hh[hidden + j] + xi[hidden + j]);
      const float n = tanhf(xi[2 * hidden + j] + hh[2 * hidden + j] * r);
      hb[j] = (hp[j] - n) * z + n;
      if (ab) {
        ab[j] = r;
        ab[hidden + j] = z;
        ab[2 * hidden + j] = n;
      }
      if (hnb) hnb[j] = hh[2 * hidden + j];
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
