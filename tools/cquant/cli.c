#include "cli.h"

#include <math.h>
#include <stdarg.h>

#include "core/pyformat.h"

int cli_error(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fputs("cquant: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  return CLI_FAILED;
}

int cli_usage_error(const char *command, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "cquant %s: ", command);
  vfprintf(stderr, fmt, ap);
  fprintf(stderr, " (see 'cquant %s --help')\n", command);
  va_end(ap);
  return CLI_USAGE;
}

void json_string(cq_strbuf *sb, const char *s) {
  cq_strbuf_append(sb, "\"");
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    switch (*p) {
      case '"': cq_strbuf_append(sb, "\\\""); break;
      case '\\': cq_strbuf_append(sb, "\\\\"); break;
      case '\n': cq_strbuf_append(sb, "\\n"); break;
      case '\t': cq_strbuf_append(sb, "\\t"); break;
      case '\r': cq_strbuf_append(sb, "\\r"); break;
      default:
        if (*p < 0x20) {
          cq_strbuf_appendf(sb, "\\u%04x", *p);
        } else {
          cq_strbuf_append_n(sb, (const char *)p, 1);
        }
    }
  }
  cq_strbuf_append(sb, "\"");
}

void json_float(cq_strbuf *sb, double v) {
  if (!isfinite(v)) {
    cq_strbuf_append(sb, "null");
    return;
  }
  cq_strbuf_append_pyfloat(sb, v);
}

void json_float_array(cq_strbuf *sb, const float *v, int64_t n) {
  cq_strbuf_append(sb, "[");
  for (int64_t i = 0; i < n; i++) {
    if (i) cq_strbuf_append(sb, ", ");
    json_float(sb, v[i]);
  }
  cq_strbuf_append(sb, "]");
}

void json_int_array(cq_strbuf *sb, const int32_t *v, int64_t n) {
  cq_strbuf_append(sb, "[");
  for (int64_t i = 0; i < n; i++) cq_strbuf_appendf(sb, "%s%d", i ? ", " : "", v[i]);
  cq_strbuf_append(sb, "]");
}

int json_emit(cq_strbuf *sb) {
  if (sb->failed) return cli_error("out of memory while formatting the result");
  if (fputs(cq_strbuf_str(sb), stdout) == EOF || fputc('\n', stdout) == EOF ||
      fflush(stdout) != 0) {
    return cli_error("cannot write the result to standard output");
  }
  return CLI_OK;
}
