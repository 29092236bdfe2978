#include "cquant/status.h"

#include <stdio.h>
#include <string.h>

static _Thread_local char last_message[1024];

static const char *const status_names[CQ_STATUS_COUNT] = {
    [CQ_OK] = "ok",
    [CQ_EINVAL] = "invalid argument",
    [CQ_ENOMEM] = "out of memory",
    [CQ_EFORMAT] = "malformed input",
    [CQ_EIO] = "input/output error",
    [CQ_EUNSUPPORTED] = "unsupported",
    [CQ_ESHAPE] = "shape mismatch",
    [CQ_EVALUE] = "invalid value",
    [CQ_ESTATE] = "invalid state",
};

const char *cq_status_str(cq_status status) {
  if ((unsigned)status >= CQ_STATUS_COUNT) return "unknown status";
  return status_names[status];
}

const char *cq_last_error(void) { return last_message; }

/* Messages are one line whatever they quote (a key or a file name read from a file may hold a
 * newline): control characters become \xNN. */
static void make_one_line(void) {
  char out[sizeof last_message];
  size_t o = 0;
  for (const unsigned char *p = (const unsigned char *)last_message; *p && o + 5 < sizeof out; p++) {
    if (*p < 0x20 || *p == 0x7f) {
      o += (size_t)snprintf(out + o, sizeof out - o, "\\x%02x", *p);
    } else {
      out[o++] = (char)*p;
    }
  }
  out[o] = '\0';
  memcpy(last_message, out, o + 1);
}

cq_status cq_fail(cq_status status, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(last_message, sizeof last_message, fmt, ap);
  va_end(ap);
  make_one_line();
  return status;
}

cq_status cq_fail_context(cq_status status, const char *fmt, ...) {
  char prefix[512];
  char old[sizeof last_message];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(prefix, sizeof prefix, fmt, ap);
  va_end(ap);
  memcpy(old, last_message, sizeof old);
  if (old[0] == '\0') snprintf(old, sizeof old, "%s", cq_status_str(status));
  snprintf(last_message, sizeof last_message, "%.400s: %.600s", prefix, old);
  make_one_line();
  return status;
}

static cq_warning_handler warning_handler;
static void *warning_user;

void cq_set_warning_handler(cq_warning_handler handler, void *user) {
  warning_handler = handler;
  warning_user = user;
}

void cq_warn(const char *fmt, ...) {
  char message[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(message, sizeof message, fmt, ap);
  va_end(ap);
  if (warning_handler) {
    warning_handler(message, warning_user);
  } else {
    fprintf(stderr, "cquant: warning: %s\n", message);
  }
}
