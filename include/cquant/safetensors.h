/* Model weights in the safetensors format, keyed by PyTorch's state-dict names ("0.weight",
 * "1.running_mean"), so weights trained in PyTorch load directly (tools/export_safetensors.py writes
 * them from a torch model).
 *
 * Format: an 8-byte little-endian header length N, N bytes of JSON
 * {"__metadata__": {...}, "NAME": {"dtype": "F32", "shape": [64, 2, 3, 3],
 *  "data_offsets": [BEGIN, END]}, ...}, then the data buffer; offsets are relative to its start.
 * cquant reads F32, F64, F16, BF16, I64, I32, I8 and U8 (converted to the module tensor's dtype, as
 * load_state_dict's copy does) and writes each tensor in its own dtype. Every size in the file is
 * checked against the file length before anything is allocated or copied; a file that does not fit
 * the model (unknown or missing key under `strict`, a shape mismatch) is rejected before any tensor
 * of the model changes. Saving is atomic (temporary file + rename). */
#ifndef CQUANT_SAFETENSORS_H
#define CQUANT_SAFETENSORS_H

#include "cquant/nn.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Loads every tensor of the file into the module's parameter/buffer of the same key. With
 * strict != 0 (PyTorch's default) the file's keys and the model's must match exactly. */
CQ_API cq_status cq_load_safetensors(cq_module *model, const char *path, int strict);
/* Writes the model's state dict (parameters and buffers, state_dict() order). */
CQ_API cq_status cq_save_safetensors(cq_module *model, const char *path);

#ifdef __cplusplus
}
#endif
#endif
