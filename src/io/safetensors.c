#include "cquant/safetensors.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/alloc.h"
#include "io/atomic_file.h"

/* A header larger than this is not a model header: refuse it before allocating. */
#define MAX_HEADER_BYTES ((uint64_t)100 << 20)

typedef enum { ST_F32, ST_F64, ST_F16, ST_BF16, ST_I64, ST_I32, ST_I8, ST_U8 } st_dtype;

static const struct {
  const char *name;
  size_t size;
} st_dtypes[] = {
    [ST_F32] = {"F32", 4}, [ST_F64] = {"F64", 8}, [ST_F16] = {"F16", 2}, [ST_BF16] = {"BF16", 2},
    [ST_I64] = {"I64", 8}, [ST_I32] = {"I32", 4}, [ST_I8] = {"I8", 1},   [ST_U8] = {"U8", 1},
};

static int st_dtype_parse(const char *s, st_dtype *out) {
  for (size_t i = 0; i < sizeof st_dtypes / sizeof st_dtypes[0]; i++) {
    if (strcmp(s, st_dtypes[i].name) == 0) {
      *out = (st_dtype)i;
      return 1;
    }
  }
  return 0;
}

static const char *st_name_of(cq_dtype d) {
  switch (d) {
    case CQ_F32: return "F32";
    case CQ_F64: return "F64";
    case CQ_U8: return "U8";
    case CQ_S8: return "I8";
    case CQ_S32: return "I32";
    case CQ_I64: return "I64";
    default: return NULL;
  }
}

static double half_to_double(uint16_t h, int bf16) {
  if (bf16) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
  }
  int sign = h >> 15, exp = (h >> 10) & 0x1f, mant = h & 0x3ff;
  double v;
  if (exp == 0) {
    v = ldexp(mant, -24);
  } else if (exp == 31) {
    v = mant ? NAN : INFINITY;
  } else {
    v = ldexp(mant + 1024, exp - 25);
  }
  return sign ? -v : v;
}

static double load_elem(const unsigned char *p, st_dtype d) {
  switch (d) {
    case ST_F32: { float v; memcpy(&v, p, 4); return v; }
    case ST_F64: { double v; memcpy(&v, p, 8); return v; }
    case ST_F16: { uint16_t v; memcpy(&v, p, 2); return half_to_double(v, 0); }
    case ST_BF16: { uint16_t v; memcpy(&v, p, 2); return half_to_double(v, 1); }
    case ST_I64: { int64_t v; memcpy(&v, p, 8); return (double)v; }
    case ST_I32: { int32_t v; memcpy(&v, p, 4); return v; }
    case ST_I8: return (int8_t)p[0];
    default: return p[0];
  }
}

static void store_elem(cq_tensor *t, int64_t i, double v) {
  switch (t->dtype) {
    case CQ_F32: ((float *)t->data)[i] = (float)v; break;
    case CQ_F64: ((double *)t->data)[i] = v; break;
    case CQ_U8: ((uint8_t *)t->data)[i] = (uint8_t)v; break;
    case CQ_S8: ((int8_t *)t->data)[i] = (int8_t)v; break;
    case CQ_S32: ((int32_t *)t->data)[i] = (int32_t)v; break;
    default: ((int64_t *)t->data)[i] = (int64_t)v; break;
  }
}

/* One validated entry of the file, matched to a model tensor. */
typedef struct st_entry {
  const char *key;
  st_dtype dtype;
  uint64_t begin, end;
  cq_named_tensor *target; /* NULL when the model has no such key (non-strict) */
} st_entry;

typedef struct missing_check {
  st_entry *entries;
  int n;
  const char *path;
} missing_check;

static cq_status check_present(const char *key, cq_named_tensor *t, void *user) {
  (void)t;
  missing_check *mc = user;
  for (int i = 0; i < mc->n; i++) {
    if (strcmp(mc->entries[i].key, key) == 0) return CQ_OK;
  }
  return cq_fail(CQ_EFORMAT, "%s: missing key '%s' (the model has it, the file does not)", mc->path,
                 key);
}

static cq_status parse_entry(const char *path, cJSON *item, uint64_t data_size, st_entry *e,
                             int64_t *shape, int *ndim) {
  const char *key = item->string;
  cJSON *dtype = cJSON_GetObjectItemCaseSensitive(item, "dtype");
  cJSON *shp = cJSON_GetObjectItemCaseSensitive(item, "shape");
  cJSON *offs = cJSON_GetObjectItemCaseSensitive(item, "data_offsets");
  if (!cJSON_IsObject(item) || !cJSON_IsString(dtype) || !cJSON_IsArray(shp) ||
      !cJSON_IsArray(offs) || cJSON_GetArraySize(offs) != 2) {
    return cq_fail(CQ_EFORMAT, "%s: entry '%s' needs \"dtype\", \"shape\" and \"data_offsets\"",
                   path, key);
  }
  if (!st_dtype_parse(dtype->valuestring, &e->dtype)) {
    return cq_fail(CQ_EUNSUPPORTED, "%s: entry '%s' has unsupported dtype '%s'", path, key,
                   dtype->valuestring);
  }
  int n = cJSON_GetArraySize(shp);
  if (n > CQ_MAX_DIMS) {
    return cq_fail(CQ_EFORMAT, "%s: entry '%s' has %d dimensions (at most %d)", path, key, n,
                   CQ_MAX_DIMS);
  }
  for (int i = 0; i < n; i++) {
    cJSON *d = cJSON_GetArrayItem(shp, i);
    if (!cJSON_IsNumber(d) || d->valuedouble < 0 || d->valuedouble > 9.0e15 ||
        d->valuedouble != floor(d->valuedouble)) {
      return cq_fail(CQ_EFORMAT, "%s: entry '%s' has an invalid dimension", path, key);
    }
    shape[i] = (int64_t)d->valuedouble;
  }
  *ndim = n;
  double b = cJSON_GetArrayItem(offs, 0)->valuedouble, en = cJSON_GetArrayItem(offs, 1)->valuedouble;
  if (!cJSON_IsNumber(cJSON_GetArrayItem(offs, 0)) || !cJSON_IsNumber(cJSON_GetArrayItem(offs, 1)) ||
      b < 0 || en < b || en > (double)data_size || b != floor(b) || en != floor(en)) {
    return cq_fail(CQ_EFORMAT, "%s: entry '%s' has data_offsets [%.0f, %.0f] outside the %llu-byte "
                   "data buffer", path, key, b, en, (unsigned long long)data_size);
  }
  e->key = key;
  e->begin = (uint64_t)b;
  e->end = (uint64_t)en;
  int64_t numel;
  cq_status st = cq_shape_numel(n, shape, st_dtypes[e->dtype].size, &numel);
  if (st != CQ_OK) return cq_fail_context(CQ_EFORMAT, "%s: entry '%s'", path, key);
  if ((uint64_t)numel * st_dtypes[e->dtype].size != e->end - e->begin) {
    return cq_fail(CQ_EFORMAT, "%s: entry '%s' holds %llu bytes but its shape and dtype need %llu",
                   path, key, (unsigned long long)(e->end - e->begin),
                   (unsigned long long)numel * st_dtypes[e->dtype].size);
  }
  return CQ_OK;
}

static cq_status match_entry(const char *path, cq_module *model, st_entry *e, const int64_t *shape,
                             int ndim, int strict) {
  cq_named_tensor *t = cq_module_find_tensor(model, e->key);
  if (!t) {
    if (strict) {
      return cq_fail(CQ_EFORMAT, "%s: unexpected key '%s' (the model has no such parameter or "
                     "buffer)", path, e->key);
    }
    e->target = NULL;
    return CQ_OK;
  }
  int same = t->tensor->ndim == ndim;
  for (int i = 0; same && i < ndim; i++) same = t->tensor->shape[i] == shape[i];
  if (!same) {
    char a[160], b[160];
    return cq_fail(CQ_ESHAPE, "%s: size mismatch for '%s': the file has shape %s, the model %s",
                   path, e->key, cq_shape_str(ndim, shape, a, sizeof a),
                   cq_shape_str(t->tensor->ndim, t->tensor->shape, b, sizeof b));
  }
  e->target = t;
  return CQ_OK;
}

cq_status cq_load_safetensors(cq_module *model, const char *path, int strict) {
  cq_status st = CQ_OK;
  cJSON *root = NULL;
  char *header = NULL;
  st_entry *entries = NULL;
  unsigned char *buf = NULL;
  FILE *f = fopen(path, "rb");
  if (!f) return cq_fail(CQ_EIO, "%s: cannot open: %s", path, strerror(errno));
  struct stat sb;
  if (fstat(fileno(f), &sb) != 0 || !S_ISREG(sb.st_mode)) {
    st = cq_fail(CQ_EIO, "%s: not a regular file", path);
    goto done;
  }
  uint64_t file_size = (uint64_t)sb.st_size;
  unsigned char len8[8];
  if (file_size < 8 || fread(len8, 1, 8, f) != 8) {
    st = cq_fail(CQ_EFORMAT, "%s: too short for a safetensors file (%llu bytes)", path,
                 (unsigned long long)file_size);
    goto done;
  }
  uint64_t hlen = 0;
  for (int i = 7; i >= 0; i--) hlen = hlen << 8 | len8[i];
  if (hlen > file_size - 8 || hlen > MAX_HEADER_BYTES || hlen < 2) {
    st = cq_fail(CQ_EFORMAT, "%s: header length %llu does not fit the %llu-byte file", path,
                 (unsigned long long)hlen, (unsigned long long)file_size);
    goto done;
  }
  header = cq_malloc_for((size_t)hlen + 1, "the safetensors header");
  if (!header) {
    st = CQ_ENOMEM;
    goto done;
  }
  if (fread(header, 1, (size_t)hlen, f) != hlen) {
    st = cq_fail(CQ_EIO, "%s: cannot read the header", path);
    goto done;
  }
  header[hlen] = '\0';
  root = cJSON_ParseWithLength(header, (size_t)hlen);
  if (!cJSON_IsObject(root)) {
    st = cq_fail(CQ_EFORMAT, "%s: the header is not a JSON object", path);
    goto done;
  }
  const uint64_t data_start = 8 + hlen, data_size = file_size - data_start;
  int n = 0;
  for (cJSON *it = root->child; it; it = it->next) n++;
  entries = cq_calloc_for((size_t)(n ? n : 1), sizeof *entries, "safetensors entries");
  if (!entries) {
    st = CQ_ENOMEM;
    goto done;
  }
  int count = 0;
  for (cJSON *it = root->child; it; it = it->next) {
    if (strcmp(it->string, "__metadata__") == 0) continue;
    int64_t shape[CQ_MAX_DIMS];
    int ndim = 0;
    st = parse_entry(path, it, data_size, &entries[count], shape, &ndim);
    if (st == CQ_OK) st = match_entry(path, model, &entries[count], shape, ndim, strict);
    if (st != CQ_OK) goto done;
    count++;
  }
  if (strict) {
    missing_check mc = {entries, count, path};
    st = cq_module_visit_tensors(model, check_present, &mc);
    if (st != CQ_OK) goto done;
  }
  /* Everything fits: copy (converting the dtype as load_state_dict's copy_ does). */
  for (int i = 0; i < count; i++) {
    st_entry *e = &entries[i];
    if (!e->target) continue;
    size_t bytes = (size_t)(e->end - e->begin);
    cq_tensor *t = e->target->tensor;
    if (bytes == 0) continue;
    if (fseek(f, (long)(data_start + e->begin), SEEK_SET) != 0) {
      st = cq_fail(CQ_EIO, "%s: cannot seek to '%s'", path, e->key);
      goto done;
    }
    const char *want = st_name_of(t->dtype);
    if (want && strcmp(want, st_dtypes[e->dtype].name) == 0) {
      if (fread(t->data, 1, bytes, f) != bytes) {
        st = cq_fail(CQ_EIO, "%s: cannot read '%s'", path, e->key);
        goto done;
      }
      continue;
    }
    cq_free(buf);
    buf = cq_malloc_for(bytes, "a tensor being converted");
    if (!buf) {
      st = CQ_ENOMEM;
      goto done;
    }
    if (fread(buf, 1, bytes, f) != bytes) {
      st = cq_fail(CQ_EIO, "%s: cannot read '%s'", path, e->key);
      goto done;
    }
    size_t es = st_dtypes[e->dtype].size;
    for (int64_t k = 0; k < (int64_t)(bytes / es); k++) {
      store_elem(t, k, load_elem(buf + (size_t)k * es, e->dtype));
    }
  }
done:
  cq_free(buf);
  cq_free(entries);
  cJSON_Delete(root);
  cq_free(header);
  fclose(f);
  return st;
}

/* --- saving ------------------------------------------------------------------------------------ */

typedef struct save_state {
  cJSON *root;
  uint64_t offset;
  cq_status st;
} save_state;

static cq_status add_header_entry(const char *key, cq_named_tensor *t, void *user) {
  save_state *s = user;
  const char *dtype = st_name_of(t->tensor->dtype);
  if (!dtype) return cq_fail(CQ_EUNSUPPORTED, "'%s' has a dtype safetensors cannot hold", key);
  cJSON *item = cJSON_CreateObject();
  cJSON *shape = cJSON_CreateArray();
  cJSON *offs = cJSON_CreateArray();
  if (!item || !shape || !offs) {
    cJSON_Delete(item);
    cJSON_Delete(shape);
    cJSON_Delete(offs);
    return cq_fail(CQ_ENOMEM, "out of memory building the safetensors header");
  }
  for (int i = 0; i < t->tensor->ndim; i++) {
    cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)t->tensor->shape[i]));
  }
  uint64_t bytes = cq_tensor_nbytes(t->tensor);
  cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)s->offset));
  cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)(s->offset + bytes)));
  s->offset += bytes;
  cJSON_AddStringToObject(item, "dtype", dtype);
  cJSON_AddItemToObject(item, "shape", shape);
  cJSON_AddItemToObject(item, "data_offsets", offs);
  cJSON_AddItemToObject(s->root, key, item);
  return CQ_OK;
}

static cq_status write_data(const char *key, cq_named_tensor *t, void *user) {
  FILE *f = user;
  size_t bytes = cq_tensor_nbytes(t->tensor);
  if (bytes && fwrite(t->tensor->data, 1, bytes, f) != bytes) {
    return cq_fail(CQ_EIO, "cannot write '%s': %s", key, strerror(errno));
  }
  return CQ_OK;
}

cq_status cq_save_safetensors(cq_module *model, const char *path) {
  save_state s = {cJSON_CreateObject(), 0, CQ_OK};
  if (!s.root) return cq_fail(CQ_ENOMEM, "out of memory building the safetensors header");
  cJSON *meta = cJSON_AddObjectToObject(s.root, "__metadata__");
  if (meta) cJSON_AddStringToObject(meta, "format", "pt");
  cq_status st = cq_module_visit_tensors(model, add_header_entry, &s);
  char *json = st == CQ_OK ? cJSON_PrintUnformatted(s.root) : NULL;
  cJSON_Delete(s.root);
  if (st != CQ_OK) return cq_fail_context(st, "%s", path);
  if (!json) return cq_fail(CQ_ENOMEM, "out of memory printing the safetensors header");
  size_t jlen = strlen(json);
  size_t padded = (jlen + 7) / 8 * 8; /* data starts 8-byte aligned */
  cq_atomic_file af;
  st = cq_atomic_open(&af, path);
  if (st != CQ_OK) {
    free(json);
    return st;
  }
  unsigned char len8[8];
  for (int i = 0; i < 8; i++) len8[i] = (unsigned char)((uint64_t)padded >> (8 * i));
  int ok = fwrite(len8, 1, 8, af.f) == 8 && fwrite(json, 1, jlen, af.f) == jlen;
  for (size_t i = jlen; ok && i < padded; i++) ok = fputc(' ', af.f) != EOF;
  free(json);
  if (!ok) {
    st = cq_fail(CQ_EIO, "%s: cannot write: %s", path, strerror(errno));
  } else {
    st = cq_module_visit_tensors(model, write_data, af.f);
    if (st != CQ_OK) st = cq_fail_context(st, "%s", path);
  }
  if (st != CQ_OK) {
    cq_atomic_abort(&af);
    return st;
  }
  return cq_atomic_commit(&af);
}
