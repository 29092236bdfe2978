/* NumPy .npy files.
 *
 * Format (numpy.lib.format): the magic "\x93NUMPY", a major/minor version byte pair, a header length
 * (uint16 little-endian for version 1.x, uint32 for 2.x and 3.x), then an ASCII Python-dict header
 * {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), } padded with spaces and a newline so the
 * data starts on a 64-byte (v1: 16-byte) boundary, then the raw C-order data.
 *
 * cquant reads little-endian (or byte-order-free) f4, f8, u1, i1, i4, i8 in C order, versions 1, 2
 * and 3, up to CQ_MAX_DIMS dimensions. Everything else (Fortran order, big-endian, object or
 * structured dtypes, truncated data, trailing garbage, a header that lies about the size, dimensions
 * whose product overflows or exceeds CQ_TENSOR_MAX_BYTES) is CQ_EFORMAT (or CQ_EUNSUPPORTED for a
 * well-formed but unsupported dtype) with a one-line message; nothing is allocated beyond what the
 * file really contains. Writing produces version 1.0 files (2.0 when the header needs it) and is
 * atomic: data goes to a temporary file in the same folder that is renamed over `path` only when
 * complete. */
#ifndef CQUANT_NPY_H
#define CQUANT_NPY_H

#include <stddef.h>

#include "cquant/status.h"
#include "cquant/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Reads a .npy file into a new tensor (caller frees with cq_tensor_free). Messages start with the
 * path. */
CQ_API cq_status cq_npy_load(const char *path, cq_tensor **out);

/* Parses an in-memory .npy image (for fuzzing and embedded data). */
CQ_API cq_status cq_npy_load_buffer(const void *data, size_t size, cq_tensor **out);

/* Writes `tensor` (any cq_dtype; quantization parameters are not stored) atomically to `path`. */
CQ_API cq_status cq_npy_save(const char *path, const cq_tensor *tensor);

#ifdef __cplusplus
}
#endif
#endif
