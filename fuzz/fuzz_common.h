/* Shared pieces of the libFuzzer harnesses in fuzz/ and of their regression replay
 * (tests/test_fuzz_regressions.c, which includes the harness files with CQ_FUZZ_NO_MAIN defined).
 *
 * Each harness fuzz/fuzz_NAME.c defines `int cq_fuzz_NAME_one(const uint8_t *data, size_t size)`,
 * the whole work for one input, and the libFuzzer entry points around it with
 * CQ_FUZZ_ENTRY_POINTS(cq_fuzz_NAME_one) (nothing under CQ_FUZZ_NO_MAIN).
 * Besides crashes and sanitizer reports, a harness flags broken contracts through cq_fuzz_violation:
 * a failing call must return a known status with a non-empty one-line message and leave its output
 * pointer NULL. Under libFuzzer a violation aborts (so it is saved as a crash); in the regression
 * test it is counted as a failure.
 *
 * A long fuzzing run can step over a contract violation that is already reported by naming its
 * check in CQ_FUZZ_SKIP (comma-separated; today only "message-lines", the one-line message rule),
 * as UBSAN_OPTIONS=suppressions does for sanitizer reports. The regression test ignores it. */
#ifndef CQ_FUZZ_COMMON_H
#define CQ_FUZZ_COMMON_H

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cquant/cquant.h"

/* Set by the regression test to count violations instead of aborting. */
static void (*cq_fuzz_violation_hook)(const char *message);

static inline void cq_fuzz_violation(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static inline void cq_fuzz_violation(const char *fmt, ...) {
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  if (cq_fuzz_violation_hook) {
    cq_fuzz_violation_hook(msg);
    return;
  }
  fprintf(stderr, "cquant fuzz: contract violation: %s\n", msg);
  abort();
}

/* 1 when a libFuzzer run was asked (CQ_FUZZ_SKIP) to step over the check named `check`. */
static inline int cq_fuzz_skipped(const char *check) {
  const char *list = getenv("CQ_FUZZ_SKIP");
  size_t n = strlen(check);
  if (cq_fuzz_violation_hook || !list) return 0;
  for (const char *p = list; (p = strstr(p, check)) != NULL; p += n) {
    if ((p == list || p[-1] == ',') && (p[n] == '\0' || p[n] == ',')) return 1;
  }
  return 0;
}

/* A failed call: `st` must be a known non-OK status and cq_last_error() one non-empty line. */
static inline void cq_fuzz_check_failure(const char *what, cq_status st) {
  const char *msg = cq_last_error();
  if (st <= CQ_OK || st >= CQ_STATUS_COUNT) {
    cq_fuzz_violation("%s: status %d is not a known failure", what, (int)st);
  } else if (!msg || !msg[0]) {
    cq_fuzz_violation("%s: failed with %s but left no message", what, cq_status_str(st));
  } else if ((strchr(msg, '\n') || strchr(msg, '\r')) && !cq_fuzz_skipped("message-lines")) {
    cq_fuzz_violation("%s: message spans several lines: %s", what, msg);
  }
}

static inline void cq_fuzz_quiet_warning(const char *message, void *user) {
  (void)message;
  (void)user;
}

/* Folder for the harnesses' temporary files: $CQ_FUZZ_TMPDIR, else /dev/shm when it exists, else
 * $TMPDIR or /tmp. */
static inline const char *cq_fuzz_tmp_dir(void) {
  const char *env = getenv("CQ_FUZZ_TMPDIR");
  if (env && env[0]) return env;
  struct stat sb;
  if (stat("/dev/shm", &sb) == 0 && S_ISDIR(sb.st_mode) && access("/dev/shm", W_OK) == 0) {
    return "/dev/shm";
  }
  env = getenv("TMPDIR");
  return env && env[0] ? env : "/tmp";
}

/* "<dir>/cquant-fuzz-<pid>-<tag><suffix>" into buf. */
static inline void cq_fuzz_tmp_path(char *buf, size_t cap, const char *tag, const char *suffix) {
  snprintf(buf, cap, "%s/cquant-fuzz-%ld-%s%s", cq_fuzz_tmp_dir(), (long)getpid(), tag, suffix);
}

/* Writes the input to `path` (replacing it). Returns 0 on success; a failure here is the test
 * machine's problem, not cquant's, and is reported as such. */
static inline int cq_fuzz_write_file(const char *path, const uint8_t *data, size_t size) {
  FILE *f = fopen(path, "wb");
  if (!f) {
    fprintf(stderr, "cquant fuzz: cannot create %s\n", path);
    return -1;
  }
  size_t put = size ? fwrite(data, 1, size, f) : 0;
  int bad = put != size;
  if (fclose(f) != 0) bad = 1;
  if (bad) {
    fprintf(stderr, "cquant fuzz: cannot write %s\n", path);
    unlink(path);
    return -1;
  }
  return 0;
}

/* The libFuzzer entry points of a harness whose whole work for one input is `one` (library
 * warnings silenced); nothing when the regression test includes the harness (CQ_FUZZ_NO_MAIN). */
#ifndef CQ_FUZZ_NO_MAIN
#define CQ_FUZZ_ENTRY_POINTS(one)                                   \
  int LLVMFuzzerInitialize(int *argc, char ***argv) {               \
    (void)argc;                                                     \
    (void)argv;                                                     \
    cq_set_warning_handler(cq_fuzz_quiet_warning, NULL);            \
    return 0;                                                       \
  }                                                                 \
  int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {    \
    return one(data, size);                                         \
  }
#else
#define CQ_FUZZ_ENTRY_POINTS(one)
#endif

#endif
