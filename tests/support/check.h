/* A minimal test harness: CHECK macros count passes and report failures with file:line; each test
 * binary ends with `return check_summary("name");`, which prints "name: N passed, M failed". */
#ifndef CQ_TEST_CHECK_H
#define CQ_TEST_CHECK_H

#include <stdint.h>
#include <stdio.h>
#include <string.h>

extern long check_passed;
extern long check_failed;

void check_report(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
int check_summary(const char *name);
/* Bit pattern of a float, for exact comparisons. */
uint32_t check_f32_bits(float f);

#define CHECK(cond)                                                      \
  do {                                                                   \
    if (cond) {                                                          \
      check_passed++;                                                    \
    } else {                                                             \
      check_report(__FILE__, __LINE__, "CHECK(%s) failed", #cond);       \
    }                                                                    \
  } while (0)

#define CHECK_MSG(cond, ...)                                             \
  do {                                                                   \
    if (cond) {                                                          \
      check_passed++;                                                    \
    } else {                                                             \
      check_report(__FILE__, __LINE__, __VA_ARGS__);                     \
    }                                                                    \
  } while (0)

#define CHECK_INT_EQ(a, b)                                                              \
  do {                                                                                  \
    long long check_a_ = (long long)(a), check_b_ = (long long)(b);                     \
    CHECK_MSG(check_a_ == check_b_, "%s == %s: %lld != %lld", #a, #b, check_a_, check_b_); \
  } while (0)

/* Float equality bit for bit (so -0.0 != 0.0 and NaN == NaN of the same payload). */
#define CHECK_F32_BITS(a, b)                                                           \
  do {                                                                                 \
    float check_a_ = (a), check_b_ = (b);                                              \
    CHECK_MSG(check_f32_bits(check_a_) == check_f32_bits(check_b_),                    \
              "%s == %s bitwise: %.9g (0x%08x) != %.9g (0x%08x)", #a, #b, check_a_,    \
              check_f32_bits(check_a_), check_b_, check_f32_bits(check_b_));           \
  } while (0)

#define CHECK_OK(expr)                                                                  \
  do {                                                                                  \
    cq_status check_st_ = (expr);                                                       \
    CHECK_MSG(check_st_ == CQ_OK, "%s returned %s: %s", #expr, cq_status_str(check_st_), \
              cq_last_error());                                                         \
  } while (0)

#define CHECK_STATUS(expr, want)                                                          \
  do {                                                                                    \
    cq_status check_st_ = (expr);                                                         \
    CHECK_MSG(check_st_ == (want), "%s returned %s, expected %s (%s)", #expr,             \
              cq_status_str(check_st_), cq_status_str(want), cq_last_error());            \
  } while (0)

#define CHECK_STR_EQ(a, b)                                                                \
  do {                                                                                    \
    const char *check_a_ = (a), *check_b_ = (b);                                          \
    CHECK_MSG(strcmp(check_a_, check_b_) == 0, "%s == %s:\n  got:  \"%s\"\n  want: \"%s\"", \
              #a, #b, check_a_, check_b_);                                                \
  } while (0)

#endif
