#include "io/atomic_file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/alloc.h"

static char *dup_path(const char *s) {
  size_t n = strlen(s) + 1;
  char *p = cq_malloc_for(n, "a file name");
  if (p) memcpy(p, s, n);
  return p;
}

/* Exclusive creation of PATH.tmp.XXXXXX with a pseudo-random suffix; -1 with errno on failure. */
static int open_temp(const char *path, char *tmp, size_t cap) {
  static const char alphabet[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
  static unsigned long counter;
  struct timespec now;
  clock_gettime(CLOCK_REALTIME, &now);
  uint64_t state = (uint64_t)getpid() << 32 ^ (uint64_t)now.tv_nsec ^ (uint64_t)now.tv_sec << 20;
  for (int attempt = 0; attempt < 100; attempt++) {
    state += 0x9e3779b97f4a7c15ull * (__atomic_fetch_add(&counter, 1, __ATOMIC_RELAXED) + 1);
    uint64_t x = state;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    x ^= x >> 31;
    char suffix[7];
    for (int i = 0; i < 6; i++, x /= 62) suffix[i] = alphabet[x % 62];
    suffix[6] = '\0';
    snprintf(tmp, cap, "%s.tmp.%s", path, suffix);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd >= 0) {
      struct stat old;
      /* best effort: keep the mode of the file being replaced */
      if (stat(path, &old) == 0 && S_ISREG(old.st_mode)) (void)fchmod(fd, old.st_mode & 07777);
      return fd;
    }
    if (errno != EEXIST) return -1;
  }
  return -1;
}

cq_status cq_atomic_open(cq_atomic_file *af, const char *path) {
  memset(af, 0, sizeof *af);
  size_t cap = strlen(path) + sizeof ".tmp.XXXXXX";
  af->path = dup_path(path);
  af->tmp = cq_malloc_for(cap, "a temporary file name");
  if (!af->path || !af->tmp) {
    cq_atomic_abort(af);
    return cq_fail_context(CQ_ENOMEM, "%s", path);
  }
  int fd = open_temp(path, af->tmp, cap);
  if (fd < 0) {
    cq_status st = cq_fail(CQ_EIO, "%s: cannot create a temporary file beside it: %s", path,
                           strerror(errno));
    cq_free(af->tmp);
    af->tmp = NULL;
    cq_atomic_abort(af);
    return st;
  }
  af->f = fdopen(fd, "wb");
  if (!af->f) {
    cq_status st = cq_fail(CQ_EIO, "%s: cannot open the temporary file: %s", path, strerror(errno));
    close(fd);
    cq_atomic_abort(af);
    return st;
  }
  return CQ_OK;
}

cq_status cq_atomic_commit(cq_atomic_file *af) {
  cq_status st = CQ_OK;
  int ok = fflush(af->f) == 0 && !ferror(af->f);
  int err = errno;
  if (fclose(af->f) != 0 && ok) {
    ok = 0;
    err = errno;
  }
  af->f = NULL;
  if (!ok) {
    st = cq_fail(CQ_EIO, "%s: cannot write: %s", af->path, strerror(err));
  } else if (rename(af->tmp, af->path) != 0) {
    st = cq_fail(CQ_EIO, "%s: cannot move the temporary file into place: %s", af->path,
                 strerror(errno));
  } else {
    cq_free(af->tmp);
    af->tmp = NULL;
  }
  cq_atomic_abort(af);
  return st;
}

void cq_atomic_abort(cq_atomic_file *af) {
  if (af->f) fclose(af->f);
  if (af->tmp) unlink(af->tmp);
  cq_free(af->tmp);
  cq_free(af->path);
  memset(af, 0, sizeof *af);
}
