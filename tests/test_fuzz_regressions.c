/* Replays every fuzzing input kept in the repository through the same entry points the libFuzzer
 * harnesses use (fuzz/fuzz_*.c, included here without their libFuzzer main): the crash reproducers
 * in tests/data/fuzz_regressions/TARGET/ and the seed corpora in fuzz/corpus/TARGET/.
 *
 * Each input must be handled without a crash (in the sanitizer build: without any ASan/UBSan report
 * or leak) and with a clean status: OK with a result, or a known error status with a message and no
 * result. The harnesses' other checks (the ones listed at the top of each fuzz/fuzz_*.c) count as
 * failures too, reported with the input's path. */
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_UNDEFINED__)
#define CQ_FUZZ_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(undefined_behavior_sanitizer)
#define CQ_FUZZ_SANITIZED 1
#endif
#endif
#ifdef CQ_FUZZ_SANITIZED
#include <sanitizer/common_interface_defs.h>
#endif

#define CQ_FUZZ_NO_MAIN 1
#include "../fuzz/fuzz_idx.c"
#include "../fuzz/fuzz_npy.c"
#include "../fuzz/fuzz_observe.c"
#include "../fuzz/fuzz_onnx.c"
#include "../fuzz/fuzz_onnx_run.c"
#include "../fuzz/fuzz_safetensors.c"

#define REGRESSIONS_DIR CQ_TEST_DATA_DIR "/fuzz_regressions"
#define CORPUS_DIR CQ_TEST_DATA_DIR "/../../fuzz/corpus"
#define MAX_INPUT_BYTES (64u << 20)

typedef struct fuzz_target {
  const char *name;
  int (*one)(const uint8_t *data, size_t size);
  const char *seeds; /* the seed corpus folder when it is another harness's, else NULL */
} fuzz_target;

static const fuzz_target targets[] = {
    {"npy", cq_fuzz_npy_one, NULL},
    {"idx", cq_fuzz_idx_one, NULL},
    {"safetensors", cq_fuzz_safetensors_one, NULL},
    {"observe", cq_fuzz_observe_one, NULL},
    {"onnx", cq_fuzz_onnx_one, NULL},
    {"onnx_run", cq_fuzz_onnx_run_one, "onnx"},
};

static const char *current_input = "";
static long violations = 0;

/* Reports a broken contract on one line (control characters in the message shown as \xNN). */
static void record_violation(const char *message) {
  char shown[1024];
  size_t n = 0;
  for (const unsigned char *p = (const unsigned char *)message; *p && n + 5 < sizeof shown; p++) {
    if (*p < 0x20 || *p == 0x7f) {
      n += (size_t)snprintf(shown + n, sizeof shown - n, "\\x%02x", *p);
    } else {
      shown[n++] = (char)*p;
    }
  }
  shown[n] = '\0';
  violations++;
  check_report(__FILE__, __LINE__, "%s: %s", current_input, shown);
}

/* When an input kills the process (a signal, or an ASan report), say which one. GCC's UBSan exits
 * without calling the death callback, so sanitized builds also name each input on stderr before
 * replaying it (ctest shows that only when the test fails). */
static void say_which_input(void) {
  static const char head[] = "test_fuzz_regressions: died while replaying ";
  if (!current_input[0]) return;
  ssize_t ignored = write(2, head, sizeof head - 1);
  ignored = write(2, current_input, strlen(current_input));
  ignored = write(2, "\n", 1);
  (void)ignored;
}

static void on_fatal_signal(int sig) {
  say_which_input();
  signal(sig, SIG_DFL);
  raise(sig);
}

static void install_crash_reporting(void) {
  static const int fatal[] = {SIGSEGV, SIGBUS, SIGABRT, SIGFPE, SIGILL};
  for (size_t i = 0; i < sizeof fatal / sizeof fatal[0]; i++) signal(fatal[i], on_fatal_signal);
#ifdef CQ_FUZZ_SANITIZED
  __sanitizer_set_death_callback(say_which_input);
#endif
}

static int compare_names(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Reads a whole file; NULL (and a reported failure) when it cannot. */
static uint8_t *read_input(const char *path, size_t *size) {
  FILE *f = fopen(path, "rb");
  uint8_t *data = NULL;
  *size = 0;
  if (!f) {
    check_report(__FILE__, __LINE__, "cannot open %s: %s", path, strerror(errno));
    return NULL;
  }
  size_t cap = 4096;
  data = malloc(cap);
  while (data) {
    size_t got = fread(data + *size, 1, cap - *size, f);
    *size += got;
    if (*size < cap) break;
    if (cap >= MAX_INPUT_BYTES) {
      check_report(__FILE__, __LINE__, "%s is larger than %u bytes", path, MAX_INPUT_BYTES);
      free(data);
      data = NULL;
      break;
    }
    uint8_t *grown = realloc(data, cap * 2);
    if (!grown) {
      free(data);
      data = NULL;
    } else {
      data = grown;
      cap *= 2;
    }
  }
  if (data && ferror(f)) {
    check_report(__FILE__, __LINE__, "cannot read %s", path);
    free(data);
    data = NULL;
  }
  fclose(f);
  return data;
}

/* Replays every regular file of `dir` (sorted, dot files skipped) through `t`; returns how many.
 * A missing folder holds no inputs. */
static int replay_dir(const fuzz_target *t, const char *dir) {
  DIR *d = opendir(dir);
  if (!d) return 0;
  char **names = NULL;
  size_t n = 0, cap = 0;
  for (struct dirent *e; (e = readdir(d)) != NULL;) {
    if (e->d_name[0] == '.' || !strcmp(e->d_name, "README.md")) continue;
    if (n == cap) {
      cap = cap ? cap * 2 : 64;
      char **grown = realloc(names, cap * sizeof *names);
      if (!grown) break;
      names = grown;
    }
    names[n] = strdup(e->d_name);
    if (names[n]) n++;
  }
  closedir(d);
  if (n) qsort(names, n, sizeof *names, compare_names);
  int replayed = 0;
  for (size_t i = 0; i < n; i++) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, names[i]);
    size_t size;
    uint8_t *data = read_input(path, &size);
    if (data) {
      long before = violations;
      current_input = path;
#ifdef CQ_FUZZ_SANITIZED
      fprintf(stderr, "test_fuzz_regressions: replaying %s\n", path);
#endif
      t->one(data, size);
      current_input = "";
      if (violations == before) check_passed++;
      replayed++;
      free(data);
    }
    free(names[i]);
  }
  free(names);
  return replayed;
}

int main(void) {
  install_crash_reporting();
  cq_fuzz_violation_hook = record_violation;
  cq_set_warning_handler(cq_fuzz_quiet_warning, NULL);
  setenv("CQ_FUZZ_TMPDIR", CQ_TEST_TMP_DIR, 1);
  for (size_t i = 0; i < sizeof targets / sizeof targets[0]; i++) {
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/%s", REGRESSIONS_DIR, targets[i].name);
    int regressions = replay_dir(&targets[i], dir);
    snprintf(dir, sizeof dir, "%s/%s", CORPUS_DIR,
             targets[i].seeds ? targets[i].seeds : targets[i].name);
    int seeds = replay_dir(&targets[i], dir);
    CHECK_MSG(seeds > 0, "no seed corpus for %s in %s", targets[i].name, dir);
    printf("fuzz_%s: replayed %d regression inputs and %d seeds\n", targets[i].name, regressions,
           seeds);
  }
  return check_summary("test_fuzz_regressions");
}
