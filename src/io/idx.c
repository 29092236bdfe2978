#include "cquant/idx.h"

#include <errno.h>
#include <string.h>
#include <zlib.h>

#include "core/alloc.h"

/* Reads up to n bytes; returns the count (short only at end of file) or -1 on a read error. */
static long read_some(gzFile f, void *buf, size_t n) {
  size_t done = 0;
  while (done < n) {
    unsigned chunk = n - done > (1u << 30) ? (1u << 30) : (unsigned)(n - done);
    int got = gzread(f, (char *)buf + done, chunk);
    if (got < 0) return -1;
    if (got == 0) break;
    done += (size_t)got;
  }
  return (long)done;
}

typedef struct idx_type {
  unsigned char code;
  size_t file_size; /* bytes per element in the file */
  cq_dtype dtype;
  const char *name;
} idx_type;

static const idx_type idx_types[] = {
    {0x08, 1, CQ_U8, "uint8"},   {0x09, 1, CQ_S8, "int8"},      {0x0B, 2, CQ_S32, "int16"},
    {0x0C, 4, CQ_S32, "int32"},  {0x0D, 4, CQ_F32, "float32"}, {0x0E, 8, CQ_F64, "float64"},
};

/* Converts big-endian file elements in place into the tensor's little-endian dtype. */
static void convert(const idx_type *t, const unsigned char *src, cq_tensor *out, int64_t n) {
  switch (t->code) {
    case 0x08:
    case 0x09: memcpy(out->data, src, (size_t)n); break;
    case 0x0B:
      for (int64_t i = 0; i < n; i++) {
        ((int32_t *)out->data)[i] = (int16_t)(uint16_t)(src[2 * i] << 8 | src[2 * i + 1]);
      }
      break;
    case 0x0C:
    case 0x0D:
      for (int64_t i = 0; i < n; i++) {
        const unsigned char *p = src + 4 * i;
        uint32_t v = (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
        memcpy((char *)out->data + 4 * i, &v, 4);
      }
      break;
    default:
      for (int64_t i = 0; i < n; i++) {
        uint64_t v = 0;
        for (int k = 0; k < 8; k++) v = v << 8 | src[8 * i + k];
        memcpy((char *)out->data + 8 * i, &v, 8);
      }
      break;
  }
}

cq_status cq_idx_load(const char *path, cq_tensor **out) {
  *out = NULL;
  gzFile f = gzopen(path, "rb");
  if (!f) return cq_fail(CQ_EIO, "%s: cannot open: %s", path, errno ? strerror(errno) : "zlib error");
  cq_status st = CQ_OK;
  unsigned char *data = NULL;
  cq_tensor *t = NULL;
  unsigned char head[4];
  long got = read_some(f, head, 4);
  if (got != 4) {
    st = cq_fail(CQ_EFORMAT, "%s: too short for an IDX file", path);
    goto done;
  }
  if (head[0] != 0 || head[1] != 0) {
    st = cq_fail(CQ_EFORMAT, "%s: not an IDX file (bad magic %02x %02x)", path, head[0], head[1]);
    goto done;
  }
  const idx_type *type = NULL;
  for (size_t i = 0; i < sizeof idx_types / sizeof idx_types[0]; i++) {
    if (idx_types[i].code == head[2]) type = &idx_types[i];
  }
  if (!type) {
    st = cq_fail(CQ_EFORMAT, "%s: unknown IDX element type 0x%02x", path, head[2]);
    goto done;
  }
  int ndim = head[3];
  if (ndim < 1 || ndim > CQ_MAX_DIMS) {
    st = cq_fail(CQ_EFORMAT, "%s: %d dimensions (IDX files have 1 to %d here)", path, ndim,
                 CQ_MAX_DIMS);
    goto done;
  }
  unsigned char dims[4 * CQ_MAX_DIMS];
  if (read_some(f, dims, (size_t)(4 * ndim)) != 4 * ndim) {
    st = cq_fail(CQ_EFORMAT, "%s: truncated in the dimensions", path);
    goto done;
  }
  int64_t shape[CQ_MAX_DIMS];
  for (int i = 0; i < ndim; i++) {
    const unsigned char *p = dims + 4 * i;
    shape[i] = (int64_t)((uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]);
  }
  int64_t numel;
  st = cq_shape_numel(ndim, shape, type->file_size > 4 ? type->file_size : 4, &numel);
  if (st != CQ_OK) {
    st = cq_fail_context(CQ_EFORMAT, "%s", path);
    goto done;
  }
  const size_t want = (size_t)numel * type->file_size;
  /* grow the buffer only as data arrives */
  size_t cap = want < ((size_t)1 << 24) ? want : ((size_t)1 << 24), have = 0;
  data = cq_malloc_for(cap ? cap : 1, "IDX data");
  if (!data) {
    st = cq_fail_context(CQ_ENOMEM, "%s", path);
    goto done;
  }
  while (have < want) {
    if (have == cap) {
      size_t ncap = cap * 2 < want ? cap * 2 : want;
      unsigned char *nd = cq_realloc(data, ncap);
      if (!nd) {
        st = cq_fail(CQ_ENOMEM, "%s: out of memory reading %zu bytes", path, want);
        goto done;
      }
      data = nd;
      cap = ncap;
    }
    long n = read_some(f, data + have, cap - have);
    if (n < 0) {
      st = cq_fail(CQ_EIO, "%s: read error (corrupt compressed data?)", path);
      goto done;
    }
    if (n == 0) break;
    have += (size_t)n;
  }
  if (have < want) {
    st = cq_fail(CQ_EFORMAT, "%s: truncated: the header promises %zu bytes of %s data, %zu follow",
                 path, want, type->name, have);
    goto done;
  }
  unsigned char extra;
  long more = read_some(f, &extra, 1);
  if (more != 0) {
    st = more < 0 ? cq_fail(CQ_EIO, "%s: read error (corrupt compressed data?)", path)
                  : cq_fail(CQ_EFORMAT, "%s: trailing bytes after the %zu bytes of data", path, want);
    goto done;
  }
  st = cq_tensor_create(&t, type->dtype, ndim, shape);
  if (st != CQ_OK) {
    st = cq_fail_context(st, "%s", path);
    goto done;
  }
  convert(type, data, t, numel);
  *out = t;
  t = NULL;
done:
  cq_tensor_free(t);
  cq_free(data);
  gzclose(f);
  return st;
}
