/* Files that appear whole or not at all: data goes to a temporary file beside the target
 * ("PATH.tmp.XXXXXX", created exclusively, with the replaced file's mode when there is one) and is
 * renamed over PATH only by cq_atomic_commit. An error or an abort removes the temporary file, so a
 * failed save leaves the old file (or nothing) behind. */
#ifndef CQ_IO_ATOMIC_FILE_H
#define CQ_IO_ATOMIC_FILE_H

#include <stdio.h>

#include "cquant/status.h"

typedef struct cq_atomic_file {
  FILE *f;    /* write here */
  char *tmp;  /* temporary path */
  char *path; /* final path */
} cq_atomic_file;

/* CQ_EIO naming the path when the temporary file cannot be created. */
cq_status cq_atomic_open(cq_atomic_file *af, const char *path);
/* Flushes, closes and renames into place; on any failure removes the temporary file (CQ_EIO). */
cq_status cq_atomic_commit(cq_atomic_file *af);
/* Closes and removes the temporary file. Safe on a file that failed to open. */
void cq_atomic_abort(cq_atomic_file *af);

#endif
