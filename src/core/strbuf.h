/* A growable string used to build reprs and JSON. An allocation failure sets `failed` and further
 * appends are ignored, so callers check once at the end. */
#ifndef CQ_CORE_STRBUF_H
#define CQ_CORE_STRBUF_H

#include <stddef.h>

typedef struct cq_strbuf {
  char *data; /* always NUL-terminated when non-NULL */
  size_t len;
  size_t cap;
  int failed;
} cq_strbuf;

void cq_strbuf_init(cq_strbuf *sb);
void cq_strbuf_release(cq_strbuf *sb);
void cq_strbuf_append(cq_strbuf *sb, const char *s);
void cq_strbuf_append_n(cq_strbuf *sb, const char *s, size_t n);
void cq_strbuf_appendf(cq_strbuf *sb, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
const char *cq_strbuf_str(const cq_strbuf *sb); /* "" when empty */
/* snprintf-style copy into buf; returns the full length. */
size_t cq_strbuf_copy_out(const cq_strbuf *sb, char *buf, size_t cap);

#endif
