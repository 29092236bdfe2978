/* Shared pieces of the cquant command: exit codes, error printing, JSON output. */
#ifndef CQ_TOOL_CLI_H
#define CQ_TOOL_CLI_H

#include <stdint.h>
#include <stdio.h>

#include "core/strbuf.h"
#include "cquant/cquant.h"

enum { CLI_OK = 0, CLI_FAILED = 1, CLI_USAGE = 2 };

/* Prints "cquant: MESSAGE" on stderr (one line) and returns CLI_FAILED. */
int cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Prints "cquant COMMAND: MESSAGE" and a hint to run --help, returns CLI_USAGE. */
int cli_usage_error(const char *command, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* JSON building on a strbuf. Numbers that JSON cannot hold (NaN, Inf) are written as null. */
void json_string(cq_strbuf *sb, const char *s);
void json_float(cq_strbuf *sb, double v); /* Python repr of the value: round-trips exactly */
void json_float_array(cq_strbuf *sb, const float *v, int64_t n);
void json_int_array(cq_strbuf *sb, const int32_t *v, int64_t n);
/* Writes the finished JSON document plus a newline to stdout; CLI_FAILED on a write error. */
int json_emit(cq_strbuf *sb);

int cmd_observe(int argc, char **argv);
int cmd_demo(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_quantize(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_compare(int argc, char **argv);
int cmd_info(int argc, char **argv);

#endif
