/* Weight packing for the quantized GEMM (layout documented in qgemm.h). */
#include <string.h>

#include "core/alloc.h"
#include "kernels/gemm/qgemm.h"

static size_t align64(size_t v) { return (v + 63) & ~(size_t)63; }

cq_status cq_qgemm_pack(const int8_t *w, int64_t n, int64_t k, const float *w_scale,
                        const int32_t *w_zp, int per_channel, const float *bias,
                        cq_qgemm_packed **out) {
  if (!out) return cq_fail(CQ_EINVAL, "qgemm pack: output pointer is NULL");
  *out = NULL;
  if (!w || !w_scale) return cq_fail(CQ_EINVAL, "qgemm pack: weight or scales are NULL");
  if (n < 1 || k < 1 || n > INT32_MAX || k > INT32_MAX) {
    return cq_fail(CQ_EINVAL, "qgemm pack: weight shape [%lld, %lld] must have both sizes in "
                   "[1, 2^31 - 1]", (long long)n, (long long)k);
  }
  cq_status st = cq_requant_check_weights(n, w_scale, per_channel, bias);
  if (st != CQ_OK) return st;
  const int64_t zp_count = per_channel ? n : 1;
  if (w_zp) {
    for (int64_t c = 0; c < zp_count; c++) {
      if (w_zp[c] < -128 || w_zp[c] > 127) {
        return cq_fail(CQ_EINVAL, "weight zero point %d of channel %lld is outside qint8's "
                       "[-128, 127]", (int)w_zp[c], (long long)c);
      }
    }
  }

  const int64_t panels = (n + CQ_QGEMM_NR - 1) / CQ_QGEMM_NR;
  const int64_t k_padded = (k + CQ_QGEMM_KB - 1) / CQ_QGEMM_KB * CQ_QGEMM_KB;
  const size_t panel_bytes = (size_t)k_padded * CQ_QGEMM_NR;
  const size_t n_pad = (size_t)panels * CQ_QGEMM_NR;
  if ((size_t)panels > SIZE_MAX / 2 / panel_bytes) {
    return cq_fail(CQ_ENOMEM, "qgemm pack: %lld x %lld weights are too large", (long long)n,
                   (long long)k);
  }
  const size_t w_bytes = align64((size_t)panels * panel_bytes);
  const size_t sums_bytes = align64(n_pad * sizeof(int32_t));
  const size_t scale_bytes = align64((size_t)zp_count * sizeof(float));
  const size_t bias_bytes = bias ? align64((size_t)n * sizeof(float)) : 0;
  const size_t total = 64 + sizeof(cq_qgemm_packed) + 64 + w_bytes + 2 * sums_bytes + scale_bytes +
                       bias_bytes;
  void *mem = cq_malloc_weights(total, "packed GEMM weights");
  if (!mem) return CQ_ENOMEM;
  char *base = (char *)align64((size_t)(uintptr_t)mem);
  cq_qgemm_packed *p = (cq_qgemm_packed *)base;
  memset(p, 0, sizeof *p);
  char *cur = base + align64(sizeof *p);
  p->mem = mem;
  p->n = n;
  p->k = k;
  p->panels = panels;
  p->k_padded = k_padded;
  p->panel_bytes = panel_bytes;
  p->per_channel = per_channel ? 1 : 0;
  p->w = (int8_t *)cur;
  cur += w_bytes;
  p->col_sums = (int32_t *)cur;
  cur += sums_bytes;
  p->w_zp = (int32_t *)cur;
  cur += sums_bytes;
  p->w_scale = (float *)cur;
  cur += scale_bytes;
  if (bias) {
    p->bias = (float *)cur;
    memcpy(p->bias, bias, (size_t)n * sizeof(float));
  }
  memcpy(p->w_scale, w_scale, (size_t)zp_count * sizeof(float));

  memset(p->w, 0, (size_t)panels * panel_bytes);
  for (size_t c = 0; c < n_pad; c++) {
    int32_t zp = 0;
    uint32_t sum = 0; /* wraps like the kernels' int32 lanes */
    if ((int64_t)c < n) {
      zp = w_zp ? w_zp[per_channel ? c : 0] : 0;
      const int8_t *row = w + (size_t)c * (size_t)k;
      int8_t *panel = p->w + (c / CQ_QGEMM_NR) * panel_bytes;
      const size_t j = c % CQ_QGEMM_NR;
      for (int64_t i = 0; i < k; i++) {
        panel[(size_t)(i / 4) * 64 + j * 4 + (size_t)(i % 4)] = row[i];
        sum += (uint32_t)(int32_t)row[i];
      }
    }
    if (zp != 0) p->has_w_zp = 1;
    p->w_zp[c] = zp;
    p->col_sums[c] = (int32_t)sum;
  }
  *out = p;
  return CQ_OK;
}

void cq_qgemm_packed_destroy(cq_qgemm_packed *p) {
  if (p) cq_free_weights(p->mem);
}
