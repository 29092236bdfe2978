/* Reader for golden-data case files (tests/data/golden/NAME/cases.txt), written by the generators in
 * tools/golden/ from PyTorch.
 *
 * Format: line based, '#' starts a comment line. A case starts with "case NAME" and ends with "end";
 * between them every line is "KEY VALUE..." (the value is the rest of the line after one space).
 * Keys may repeat (e.g. several "input" lines). Floats are written as Python's repr of the float32
 * value widened to double, so strtod followed by a float cast restores the exact bits. */
#ifndef CQ_TEST_GOLDEN_H
#define CQ_TEST_GOLDEN_H

#include <stddef.h>
#include <stdint.h>

typedef struct golden_entry {
  char *key;
  char *value;
} golden_entry;

typedef struct golden_case {
  char *name;
  golden_entry *entries;
  int count;
} golden_case;

typedef struct golden_file {
  golden_case *cases;
  int count;
  char *dir; /* folder of the file, for resolving relative paths in values */
} golden_file;

/* Loads the file; returns 0 on success, prints a message and returns -1 on failure. */
int golden_load(const char *path, golden_file *out);
void golden_free(golden_file *g);

/* First value of `key` in the case, or NULL. */
const char *golden_get(const golden_case *c, const char *key);
/* n-th (0-based) value of `key`, or NULL. */
const char *golden_get_nth(const golden_case *c, const char *key, int n);
/* Parses a space-separated list of floats (float32) / integers into a new malloc'd array; returns
 * the count (or -1 on a parse error). */
int golden_parse_floats(const char *value, float **out);
int golden_parse_ints(const char *value, int64_t **out);
/* dir + "/" + relative into buf. */
char *golden_path(const golden_file *g, const char *relative, char *buf, size_t cap);

#endif
