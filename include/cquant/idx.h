/* IDX files (the MNIST / Fashion-MNIST format), plain or gzip-compressed.
 *
 * Format: two zero bytes, a type byte (0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32, 0x0D float32,
 * 0x0E float64), the number of dimensions, each dimension as a big-endian uint32, then the data in C
 * order, big-endian. A file starting with the gzip magic (1f 8b) is decompressed on the fly (zlib).
 *
 * cq_idx_load gives a tensor of dtype uint8, int8, int32 (int16 is widened), float32 or float64.
 * A truncated or oversized file, an unknown type byte, zero or more than 8 dimensions, or dimensions
 * beyond CQ_TENSOR_MAX_BYTES are CQ_EFORMAT with a one-line message naming the file. Memory grows
 * only as data actually arrives, so a small compressed file cannot make cquant allocate what its
 * header claims. */
#ifndef CQUANT_IDX_H
#define CQUANT_IDX_H

#include "cquant/status.h"
#include "cquant/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

CQ_API cq_status cq_idx_load(const char *path, cq_tensor **out);

#ifdef __cplusplus
}
#endif
#endif
