/* Number formatting the way Python and PyTorch print them, so reprs match PyTorch's text.
 *
 * cq_format_pyfloat: Python's repr(float) of a double: the shortest decimal string that round-trips,
 * fixed notation when the decimal exponent is in [-4, 16), otherwise "1e-05" style; "inf", "-inf",
 * "nan"; integral values end in ".0".
 * cq_format_torch_tensor_1d: torch's tensor formatter (precision 4, linewidth 80) for a 1-D float
 * tensor, "tensor([...])", wrapping continuation lines after `indent` + 8 spaces like torch
 * (indent = extra indentation torch would have had before "tensor(", normally 0). */
#ifndef CQ_CORE_PYFORMAT_H
#define CQ_CORE_PYFORMAT_H

#include <stddef.h>
#include <stdint.h>

#include "core/strbuf.h"

#define CQ_PYFLOAT_BUFSIZE 32

char *cq_format_pyfloat(double value, char buf[CQ_PYFLOAT_BUFSIZE]);
void cq_strbuf_append_pyfloat(cq_strbuf *sb, double value);
/* Python's repr of the float literal a user most likely wrote for a float32 argument: the shortest
 * decimal that rounds to the same float32 (so 0.1f prints "0.1", as nn.Hardtanh(-0.1, 0.1) does). */
void cq_strbuf_append_pyfloat_f32(cq_strbuf *sb, float value);
void cq_format_torch_tensor_1d(cq_strbuf *sb, const float *values, int64_t n);
void cq_format_torch_int_tensor_1d(cq_strbuf *sb, const int64_t *values, int64_t n,
                                   const char *dtype_suffix);

/* Appends `text` with every line after the first indented by `indent` spaces (torch's _addindent). */
void cq_strbuf_append_indented(cq_strbuf *sb, const char *text, int indent);
/* nn.Module.__repr__ of a module without children: "Name(extra)" when extra is one line, else
 * "Name(\n  extra-lines-indented-by-2\n)"; "Name()" when extra is empty. */
void cq_format_leaf_repr(cq_strbuf *sb, const char *name, const char *extra);

#endif
