/* Status codes, error messages and warnings.
 *
 * Every fallible cquant function returns a cq_status. On failure it also records a one-line message
 * (naming the value and the rule it broke) that cq_last_error() returns until the next failure on the
 * same thread. cquant never aborts the process on bad input. */
#ifndef CQUANT_STATUS_H
#define CQUANT_STATUS_H

#include <stdarg.h>

#if defined(_WIN32)
#define CQ_API __declspec(dllexport)
#else
#define CQ_API __attribute__((visibility("default")))
#endif

#ifdef __cplusplus
extern "C" {
#endif

typedef enum cq_status {
  CQ_OK = 0,
  CQ_EINVAL,       /* an argument or option is invalid */
  CQ_ENOMEM,       /* an allocation failed */
  CQ_EFORMAT,      /* a file or buffer is malformed */
  CQ_EIO,          /* a read or write failed */
  CQ_EUNSUPPORTED, /* valid, but not supported by cquant */
  CQ_ESHAPE,       /* tensor shapes do not fit together */
  CQ_EVALUE,       /* a numeric value is not allowed here (NaN, Inf, out of range) */
  CQ_ESTATE,       /* the object is not in a state that allows the call */
  CQ_STATUS_COUNT
} cq_status;

/* Short constant name of a status ("invalid argument", ...). Never NULL. */
CQ_API const char *cq_status_str(cq_status status);

/* The message recorded by the most recent failure on this thread ("" if none). The pointer stays
 * valid until the next failing call on the same thread. */
CQ_API const char *cq_last_error(void);

/* Records a message (printf format) for `status` and returns `status`. Used by the library; callers
 * may use it to report their own failures the same way. */
CQ_API cq_status cq_fail(cq_status status, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Prefixes the current message with "prefix: " (e.g. a file name) and returns `status`. */
CQ_API cq_status cq_fail_context(cq_status status, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Warnings (e.g. "observer saw no data") go to a handler; the default prints "cquant: warning: MSG"
 * on stderr. Pass NULL to restore the default. */
typedef void (*cq_warning_handler)(const char *message, void *user);
CQ_API void cq_set_warning_handler(cq_warning_handler handler, void *user);
CQ_API void cq_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#ifdef __cplusplus
}
#endif
#endif
