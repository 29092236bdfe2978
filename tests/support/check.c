#include "check.h"

#include <stdarg.h>

#include "cquant/status.h"

long check_passed;
long check_failed;

void check_report(const char *file, int line, const char *fmt, ...) {
  check_failed++;
  if (check_failed > 50) return; /* enough to diagnose; keep the log readable */
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "%s:%d: ", file, line);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
}

int check_summary(const char *name) {
  printf("%s: %ld passed, %ld failed\n", name, check_passed, check_failed);
  return check_failed ? 1 : 0;
}

uint32_t check_f32_bits(float f) {
  uint32_t u;
  memcpy(&u, &f, sizeof u);
  return u;
}
