/* ONNX files as protobuf messages: reading a ModelProto from a file or buffer and writing one back.
 *
 * The bindings (onnx/onnx.pb-c.h, types Onnx__ModelProto, Onnx__NodeProto, ...) are generated at
 * build time from the onnx.proto that Debian's libonnx-dev installs. Decoding runs protobuf-c with
 * an allocator bounded by CQ_ONNX_MAX_DECODED_BYTES, so a malformed file cannot make the decoder
 * take more memory than the bound; every failure is a one-line CQ_EFORMAT / CQ_EIO / CQ_ENOMEM
 * naming the file. Importer and exporter (onnx_import.c, onnx_export.c) build on this. */
#ifndef CQ_IO_ONNX_PROTO_H
#define CQ_IO_ONNX_PROTO_H

#include <stddef.h>
#include <stdint.h>

#include "cquant/status.h"
#include "cquant/tensor.h"
#include "onnx/onnx.pb-c.h"

/* Largest ONNX file accepted (protobuf's own 2 GiB limit) and the most memory its decoding may
 * take (the decoded form of a model is about the size of the file plus per-message overhead). */
#define CQ_ONNX_MAX_FILE_BYTES ((size_t)2 << 30)
#define CQ_ONNX_MAX_DECODED_BYTES ((size_t)6 << 30)

/* Decodes `size` bytes as a ModelProto. `what` names the source in messages ("model.onnx").
 * Free the result with cq_onnx_model_free. */
cq_status cq_onnx_decode(const uint8_t *data, size_t size, const char *what,
                         Onnx__ModelProto **out);
/* Reads and decodes the file at `path` (a regular file, at most CQ_ONNX_MAX_FILE_BYTES). */
cq_status cq_onnx_read_file(const char *path, Onnx__ModelProto **out);
void cq_onnx_model_free(Onnx__ModelProto *model);

/* The declared shapes of the graph inputs that are not initializers (the model's inputs), in
 * order: the first `cap` of them go to ndim[i] and shape[i][0 .. ndim[i] - 1], -1 for a
 * dimension without a fixed value; ndim[i] is -1 for an input that is not a tensor with a shape
 * of at most CQ_MAX_DIMS dimensions. Returns how many inputs there are (also past cap). */
int cq_onnx_input_shapes(const Onnx__ModelProto *model, int cap, int *ndim,
                         int64_t (*shape)[CQ_MAX_DIMS]);

/* Encodes `model` and writes it to `path` whole or not at all (atomic_file.h). */
cq_status cq_onnx_write_file(const Onnx__ModelProto *model, const char *path);

#endif
