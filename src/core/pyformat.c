#include "core/pyformat.h"

#include "core/alloc.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Shortest round-tripping digits of a finite nonzero |value|: digits[] without a point and the
 * decimal exponent `decpt` such that value = 0.d1d2... * 10^decpt (Python's convention). */
static void shortest_digits(double value, char *digits, int *decpt) {
  char tmp[40];
  for (int precision = 1; precision <= 17; precision++) {
    snprintf(tmp, sizeof tmp, "%.*e", precision - 1, value);
    if (strtod(tmp, NULL) == value || precision == 17) break;
  }
  /* tmp is "d.ddddde+XX" or "de+XX" */
  char *e = strchr(tmp, 'e');
  int exp10 = atoi(e + 1);
  int n = 0;
  for (char *p = tmp; p < e; p++) {
    if (*p >= '0' && *p <= '9') digits[n++] = *p;
  }
  while (n > 1 && digits[n - 1] == '0') n--;
  digits[n] = '\0';
  *decpt = exp10 + 1;
}

char *cq_format_pyfloat(double value, char buf[CQ_PYFLOAT_BUFSIZE]) {
  if (isnan(value)) {
    strcpy(buf, "nan");
    return buf;
  }
  if (isinf(value)) {
    strcpy(buf, value < 0 ? "-inf" : "inf");
    return buf;
  }
  char *out = buf;
  if (signbit(value)) {
    *out++ = '-';
    value = -value;
  }
  if (value == 0.0) {
    strcpy(out, "0.0");
    return buf;
  }
  char digits[24];
  int decpt;
  shortest_digits(value, digits, &decpt);
  int ndigits = (int)strlen(digits);
  if (decpt <= -4 || decpt > 16) {
    /* d[.ddd]e+XX with at least two exponent digits */
    *out++ = digits[0];
    if (ndigits > 1) {
      *out++ = '.';
      memcpy(out, digits + 1, (size_t)ndigits - 1);
      out += ndigits - 1;
    }
    int exp10 = decpt - 1;
    sprintf(out, "e%c%02d", exp10 < 0 ? '-' : '+', exp10 < 0 ? -exp10 : exp10);
  } else if (decpt <= 0) {
    *out++ = '0';
    *out++ = '.';
    for (int i = 0; i < -decpt; i++) *out++ = '0';
    strcpy(out, digits);
  } else if (decpt >= ndigits) {
    memcpy(out, digits, (size_t)ndigits);
    out += ndigits;
    for (int i = ndigits; i < decpt; i++) *out++ = '0';
    strcpy(out, ".0");
  } else {
    memcpy(out, digits, (size_t)decpt);
    out += decpt;
    *out++ = '.';
    strcpy(out, digits + decpt);
  }
  return buf;
}

void cq_strbuf_append_pyfloat(cq_strbuf *sb, double value) {
  char buf[CQ_PYFLOAT_BUFSIZE];
  cq_strbuf_append(sb, cq_format_pyfloat(value, buf));
}

void cq_strbuf_append_pyfloat_f32(cq_strbuf *sb, float value) {
  char tmp[48];
  for (int prec = 1; prec <= 9; prec++) {
    snprintf(tmp, sizeof tmp, "%.*g", prec, (double)value);
    if ((float)strtod(tmp, NULL) == value) break;
  }
  cq_strbuf_append_pyfloat(sb, strtod(tmp, NULL));
}

/* torch's print options: precision 4, linewidth 80, threshold 1000, edgeitems 3. */
enum { TORCH_PRECISION = 4, TORCH_LINEWIDTH = 80, TORCH_THRESHOLD = 1000, TORCH_EDGEITEMS = 3 };
enum { TENSOR_PREFIX_LEN = 7 }; /* strlen("tensor(") */

typedef struct float_formatter {
  int int_mode;
  int sci_mode;
  int max_width;
} float_formatter;

static void format_one(const float_formatter *f, double v, char *buf, size_t cap) {
  if (f->sci_mode) {
    snprintf(buf, cap, "%.*e", TORCH_PRECISION, v);
  } else if (f->int_mode) {
    snprintf(buf, cap, "%.0f%s", v, (isinf(v) || isnan(v)) ? "" : ".");
  } else {
    snprintf(buf, cap, "%.*f", TORCH_PRECISION, v);
  }
  /* Python prints nan/inf as "nan"/"inf" (glibc agrees for %f/%e) */
}

/* The indices shown: all, or the first and last TORCH_EDGEITEMS when summarized. */
static int64_t shown_index(int64_t n, int summarize, int64_t i) {
  if (!summarize || i < TORCH_EDGEITEMS) return i;
  return n - 2 * TORCH_EDGEITEMS + i;
}

static void append_lines(cq_strbuf *sb, char **items, int64_t count, int width) {
  int64_t element_length = width + 2;
  int64_t per_line = (TORCH_LINEWIDTH - TENSOR_PREFIX_LEN) / element_length;
  if (per_line < 1) per_line = 1;
  cq_strbuf_append(sb, "[");
  for (int64_t i = 0; i < count; i++) {
    if (i > 0) {
      if (i % per_line == 0) {
        cq_strbuf_append(sb, ",\n");
        for (int s = 0; s < TENSOR_PREFIX_LEN + 1; s++) cq_strbuf_append(sb, " ");
      } else {
        cq_strbuf_append(sb, ", ");
      }
    }
    cq_strbuf_append(sb, items[i]);
  }
  cq_strbuf_append(sb, "]");
}

void cq_format_torch_tensor_1d(cq_strbuf *sb, const float *values, int64_t n) {
  if (n == 0) {
    cq_strbuf_append(sb, "tensor([])");
    return;
  }
  int summarize = n > TORCH_THRESHOLD;
  int64_t shown = summarize ? 2 * TORCH_EDGEITEMS : n;
  float_formatter f = {1, 0, 1};
  double nz_min = INFINITY, nz_max = 0;
  int any = 0;
  for (int64_t k = 0; k < shown; k++) {
    double v = values[shown_index(n, summarize, k)];
    if (!isfinite(v) || v == 0) continue;
    any = 1;
    double a = fabs(v);
    if (a < nz_min) nz_min = a;
    if (a > nz_max) nz_max = a;
    if (v != ceil(v)) f.int_mode = 0;
  }
  if (any) {
    if (f.int_mode) {
      f.sci_mode = nz_max / nz_min > 1000. || nz_max > 1.e8;
    } else {
      f.sci_mode = nz_max / nz_min > 1000. || nz_max > 1.e8 || nz_min < 1.e-4;
    }
    for (int64_t k = 0; k < shown; k++) {
      double v = values[shown_index(n, summarize, k)];
      if (!isfinite(v) || v == 0) continue;
      char buf[64];
      format_one(&f, v, buf, sizeof buf);
      int w = (int)strlen(buf);
      if (w > f.max_width) f.max_width = w;
    }
  }
  int64_t count = shown + (summarize ? 1 : 0);
  char **items = cq_calloc((size_t)count, sizeof *items);
  char *storage = cq_calloc((size_t)count, 80);
  if (!items || !storage) {
    cq_free(items);
    cq_free(storage);
    sb->failed = 1;
    return;
  }
  int64_t j = 0;
  for (int64_t k = 0; k < shown; k++) {
    if (summarize && k == TORCH_EDGEITEMS) {
      items[j] = storage + 80 * j;
      strcpy(items[j++], " ...");
    }
    char buf[64];
    format_one(&f, values[shown_index(n, summarize, k)], buf, sizeof buf);
    items[j] = storage + 80 * j;
    snprintf(items[j], 80, "%*s", f.max_width, buf);
    j++;
  }
  cq_strbuf_append(sb, "tensor(");
  append_lines(sb, items, count, f.max_width);
  cq_strbuf_append(sb, ")");
  cq_free(items);
  cq_free(storage);
}

void cq_format_torch_int_tensor_1d(cq_strbuf *sb, const int64_t *values, int64_t n,
                                   const char *dtype_suffix) {
  cq_strbuf_append(sb, "tensor(");
  if (n == 0) {
    cq_strbuf_append(sb, "[]");
  } else {
    int summarize = n > TORCH_THRESHOLD;
    int64_t shown = summarize ? 2 * TORCH_EDGEITEMS : n;
    int width = 1;
    for (int64_t k = 0; k < shown; k++) {
      char buf[32];
      int w = snprintf(buf, sizeof buf, "%lld", (long long)values[shown_index(n, summarize, k)]);
      if (w > width) width = w;
    }
    int64_t count = shown + (summarize ? 1 : 0);
    char **items = cq_calloc((size_t)count, sizeof *items);
    char *storage = cq_calloc((size_t)count, 32);
    if (!items || !storage) {
      cq_free(items);
      cq_free(storage);
      sb->failed = 1;
      return;
    }
    int64_t j = 0;
    for (int64_t k = 0; k < shown; k++) {
      if (summarize && k == TORCH_EDGEITEMS) {
        items[j] = storage + 32 * j;
        strcpy(items[j++], " ...");
      }
      items[j] = storage + 32 * j;
      snprintf(items[j], 32, "%*lld", width, (long long)values[shown_index(n, summarize, k)]);
      j++;
    }
    append_lines(sb, items, count, width);
    cq_free(items);
    cq_free(storage);
  }
  if (dtype_suffix && dtype_suffix[0]) cq_strbuf_appendf(sb, ", dtype=%s", dtype_suffix);
  cq_strbuf_append(sb, ")");
}

void cq_strbuf_append_indented(cq_strbuf *sb, const char *text, int indent) {
  for (const char *p = text; *p; p++) {
    cq_strbuf_append_n(sb, p, 1);
    if (*p == '\n') {
      for (int i = 0; i < indent; i++) cq_strbuf_append(sb, " ");
    }
  }
}

void cq_format_leaf_repr(cq_strbuf *sb, const char *name, const char *extra) {
  cq_strbuf_appendf(sb, "%s(", name);
  if (extra[0] && strchr(extra, '\n')) {
    cq_strbuf_append(sb, "\n  ");
    cq_strbuf_append_indented(sb, extra, 2);
    cq_strbuf_append(sb, "\n");
  } else {
    cq_strbuf_append(sb, extra);
  }
  cq_strbuf_append(sb, ")");
}
