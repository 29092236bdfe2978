#include "core/strbuf.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"

void cq_strbuf_init(cq_strbuf *sb) {
  sb->data = NULL;
  sb->len = 0;
  sb->cap = 0;
  sb->failed = 0;
}

void cq_strbuf_release(cq_strbuf *sb) {
  cq_free(sb->data);
  cq_strbuf_init(sb);
}

static int reserve(cq_strbuf *sb, size_t extra) {
  if (sb->failed) return 0;
  size_t need = sb->len + extra + 1;
  if (need <= sb->cap) return 1;
  size_t cap = sb->cap ? sb->cap : 64;
  while (cap < need) cap *= 2;
  char *p = cq_realloc(sb->data, cap);
  if (!p) {
    sb->failed = 1;
    return 0;
  }
  sb->data = p;
  sb->cap = cap;
  return 1;
}

void cq_strbuf_append_n(cq_strbuf *sb, const char *s, size_t n) {
  if (!reserve(sb, n)) return;
  memcpy(sb->data + sb->len, s, n);
  sb->len += n;
  sb->data[sb->len] = '\0';
}

void cq_strbuf_append(cq_strbuf *sb, const char *s) { cq_strbuf_append_n(sb, s, strlen(s)); }

void cq_strbuf_appendf(cq_strbuf *sb, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  if (n < 0 || !reserve(sb, (size_t)n)) return;
  va_start(ap, fmt);
  vsnprintf(sb->data + sb->len, (size_t)n + 1, fmt, ap);
  va_end(ap);
  sb->len += (size_t)n;
}

const char *cq_strbuf_str(const cq_strbuf *sb) { return sb->data ? sb->data : ""; }

size_t cq_strbuf_copy_out(const cq_strbuf *sb, char *buf, size_t cap) {
  if (cap > 0) {
    size_t n = sb->len < cap - 1 ? sb->len : cap - 1;
    if (n) memcpy(buf, sb->data, n);
    buf[n] = '\0';
  }
  return sb->len;
}
