/* NumPy .npy reader and writer; the format and the contract are in include/cquant/npy.h.
 *
 * Reading validates everything before it allocates the tensor: the preamble (magic, version, header
 * length), the header dict (parsed as the small subset of Python literals numpy writes), the dtype,
 * and the data size the shape implies against the bytes really present. A regular file is measured
 * with fstat first; a pipe or other stream is checked part by part as it arrives (preamble, header,
 * then exactly the data the header's shape implies, in a buffer growing only as data arrives).
 * Writing produces exactly the bytes numpy 1.24's np.save produces and replaces the target
 * atomically through a temporary file in the same folder. */
#include "cquant/npy.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/alloc.h"
#include "io/atomic_file.h"

#define NPY_MAGIC "\x93NUMPY"
#define NPY_MAGIC_LEN 6
#define NPY_PREAMBLE_MAX 12 /* magic, version, uint32 header length (versions 2 and 3) */
#define NPY_ALIGN 64        /* numpy's ARRAY_ALIGN */
/* numpy pads the dict so the first axis can grow in place to this many digits
 * (GROWTH_AXIS_MAX_DIGITS in numpy/lib/format.py). */
#define NPY_GROWTH_DIGITS 21
/* Largest header accepted. Valid headers for the dtypes cquant reads are a few hundred bytes; the
 * limit only bounds the memory a hostile header length can make the reader allocate. */
#define NPY_MAX_HEADER ((uint32_t)1 << 20)
#define NPY_MAX_NESTING 32 /* brackets in a structured descr that is skipped, not interpreted */
#define NPY_SHAPE_REPR_CAP 256
#define NPY_SHOW_CAP 64 /* bytes of file content quoted in a message */

/* What the preamble and the header dict say. */
typedef struct npy_header {
  int major, minor;
  size_t preamble;   /* magic + version + length field: 10 (version 1) or 12 bytes */
  size_t header_len; /* dict text, padding and newline */
  cq_dtype dtype;
  int swap; /* little-endian data on a big-endian host */
  int ndim;
  int64_t shape[CQ_MAX_DIMS];
  uint64_t data_bytes;
} npy_header;

/* A position in the header text; `base` is the file offset of text[0], for messages. */
typedef struct npy_cursor {
  const char *text;
  size_t len;
  size_t pos;
  size_t base;
  int major;
} npy_cursor;

/* ---- messages -------------------------------------------------------------------------------- */

/* Writes `n` bytes of file content as printable ASCII (other bytes as \xNN, a backslash as \\)
 * into `buf`, cut with "..." when longer than fits, so messages stay on one line whatever the file
 * holds. */
static const char *npy_show(const void *data, size_t n, char *buf, size_t cap) {
  const unsigned char *s = data;
  size_t used = 0;
  for (size_t i = 0; i < n; i++) {
    char piece[5];
    if (s[i] == '\\') {
      memcpy(piece, "\\\\", 3);
    } else if (s[i] >= 0x20 && s[i] < 0x7f) {
      piece[0] = (char)s[i];
      piece[1] = '\0';
    } else {
      snprintf(piece, sizeof piece, "\\x%02x", s[i]);
    }
    size_t len = strlen(piece);
    if (used + len + 4 > cap) { /* keep room for "..." and the terminator */
      memcpy(buf + used, "...", 4);
      return buf;
    }
    memcpy(buf + used, piece, len);
    used += len;
  }
  buf[used] = '\0';
  return buf;
}

/* A path for a message: control characters escaped (a path with a newline must not break the
 * one-line rule), everything else, UTF-8 included, kept. */
static const char *npy_show_path(const char *path, char *buf, size_t cap) {
  size_t used = 0;
  for (const unsigned char *p = (const unsigned char *)path; *p; p++) {
    char piece[5];
    if (*p < 0x20 || *p == 0x7f) {
      snprintf(piece, sizeof piece, "\\x%02x", *p);
    } else {
      piece[0] = (char)*p;
      piece[1] = '\0';
    }
    size_t len = strlen(piece);
    if (used + len + 4 > cap) {
      memcpy(buf + used, "...", 4);
      return buf;
    }
    memcpy(buf + used, piece, len);
    used += len;
  }
  buf[used] = '\0';
  return buf;
}

/* Python's repr of a shape tuple: "()", "(5,)", "(2, 3)". */
static const char *npy_shape_repr(int ndim, const int64_t *shape, char *buf, size_t cap) {
  size_t used = (size_t)snprintf(buf, cap, "(");
  for (int i = 0; i < ndim && used < cap; i++) {
    used += (size_t)snprintf(buf + used, cap - used, "%s%lld", i ? ", " : "", (long long)shape[i]);
  }
  if (used < cap) snprintf(buf + used, cap - used, "%s)", ndim == 1 ? "," : "");
  return buf;
}

/* ---- byte order ------------------------------------------------------------------------------ */

static int npy_host_is_little(void) {
  const uint16_t one = 1;
  unsigned char first;
  memcpy(&first, &one, 1);
  return first == 1;
}

static void npy_swap_bytes(void *data, size_t count, size_t elem) {
  unsigned char *p = data;
  for (size_t i = 0; i < count; i++, p += elem) {
    for (size_t a = 0, b = elem - 1; a < b; a++, b--) {
      unsigned char t = p[a];
      p[a] = p[b];
      p[b] = t;
    }
  }
}

/* ---- preamble -------------------------------------------------------------------------------- */

/* Parses magic, version and header length from the first `avail` bytes (avail >= min(total, 12)) of
 * an image of `total` bytes, and checks that the header fits inside it. */
static cq_status npy_parse_preamble(const unsigned char *p, size_t avail, uint64_t total,
                                    npy_header *h) {
  char shown[NPY_SHOW_CAP];
  size_t n = avail < NPY_MAGIC_LEN ? avail : NPY_MAGIC_LEN;
  if (memcmp(p, NPY_MAGIC, n) != 0) {
    return cq_fail(CQ_EFORMAT, "not a .npy file: starts with '%s', not the magic '\\x93NUMPY'",
                   npy_show(p, avail < 8 ? avail : 8, shown, sizeof shown));
  }
  if (total < 8) {
    return cq_fail(CQ_EFORMAT,
                   "truncated: %llu bytes, shorter than the 8-byte .npy magic and version",
                   (unsigned long long)total);
  }
  h->major = p[6];
  h->minor = p[7];
  if (h->major < 1 || h->major > 3) {
    return cq_fail(CQ_EFORMAT, "unsupported .npy format version %d.%d (cquant reads 1.x, 2.x, 3.x)",
                   h->major, h->minor);
  }
  h->preamble = h->major == 1 ? 10 : 12;
  if (total < h->preamble) {
    return cq_fail(CQ_EFORMAT,
                   "truncated: %llu bytes, shorter than the %zu-byte version %d preamble",
                   (unsigned long long)total, h->preamble, h->major);
  }
  uint32_t len = (uint32_t)p[8] | (uint32_t)p[9] << 8;
  if (h->major > 1) len |= (uint32_t)p[10] << 16 | (uint32_t)p[11] << 24;
  if (len == 0) return cq_fail(CQ_EFORMAT, "header length is 0 (the header dict is missing)");
  if (len > NPY_MAX_HEADER) {
    return cq_fail(CQ_EFORMAT, "header length %lu exceeds the %lu-byte limit", (unsigned long)len,
                   (unsigned long)NPY_MAX_HEADER);
  }
  if (len > total - h->preamble) {
    return cq_fail(CQ_EFORMAT,
                   "truncated: header length %lu runs past the end (only %llu bytes follow the "
                   "%zu-byte preamble)",
                   (unsigned long)len, (unsigned long long)(total - h->preamble), h->preamble);
  }
  h->header_len = len;
  return CQ_OK;
}

/* ---- header dict ----------------------------------------------------------------------------- */

static int npy_is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

static int npy_is_word(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
         c == '.';
}

static void npy_skip_space(npy_cursor *c) {
  while (c->pos < c->len && npy_is_space(c->text[c->pos])) c->pos++;
}

static int npy_peek(const npy_cursor *c) {
  return c->pos < c->len ? (unsigned char)c->text[c->pos] : -1;
}

/* "'x'", "byte 0xNN" or "the end of the header": what the parser found at the cursor. */
static const char *npy_found(const npy_cursor *c, char *buf, size_t cap) {
  int ch = npy_peek(c);
  if (ch < 0) {
    snprintf(buf, cap, "the end of the header");
  } else if (ch >= 0x20 && ch < 0x7f && ch != '\\') {
    snprintf(buf, cap, "'%c'", ch);
  } else {
    snprintf(buf, cap, "byte 0x%02x", (unsigned)ch);
  }
  return buf;
}

static cq_status npy_syntax(const npy_cursor *c, const char *expected) {
  char found[32];
  return cq_fail(CQ_EFORMAT, "malformed header: expected %s at byte %zu, found %s", expected,
                 c->base + c->pos, npy_found(c, found, sizeof found));
}

/* The word at the cursor (up to a separator), quoted for a message. */
static const char *npy_show_word(const npy_cursor *c, char *buf, size_t cap) {
  size_t end = c->pos;
  while (end < c->len && !npy_is_space(c->text[end]) && c->text[end] != ',' &&
         c->text[end] != '}' && c->text[end] != ')') {
    end++;
  }
  if (end == c->pos) return npy_found(c, buf, cap);
  char shown[NPY_SHOW_CAP];
  snprintf(buf, cap, "'%s'", npy_show(c->text + c->pos, end - c->pos, shown, sizeof shown));
  return buf;
}

/* A Python string literal in single or double quotes; backslash escapes are skipped over (they only
 * make the string not match anything cquant knows). *s and *n receive the raw contents. */
static cq_status npy_parse_string(npy_cursor *c, const char *what, const char **s, size_t *n) {
  int quote = npy_peek(c);
  if (quote != '\'' && quote != '"') return npy_syntax(c, what);
  size_t start = ++c->pos;
  while (c->pos < c->len) {
    char ch = c->text[c->pos];
    if (ch == quote) {
      *s = c->text + start;
      *n = c->pos - start;
      c->pos++;
      return CQ_OK;
    }
    if (ch == '\n' || ch == '\r') break;
    c->pos += ch == '\\' ? 2 : 1;
  }
  return cq_fail(CQ_EFORMAT, "malformed header: the string starting at byte %zu is not terminated",
                 c->base + start - 1);
}

/* Skips a bracketed literal (a structured dtype's list of fields) without interpreting it. */
static cq_status npy_skip_literal(npy_cursor *c) {
  char closers[NPY_MAX_NESTING];
  int depth = 0;
  size_t start = c->pos;
  static const char openers[] = "([{", matching[] = ")]}";
  while (c->pos < c->len) {
    char ch = c->text[c->pos];
    const char *open = ch != '\0' ? strchr(openers, ch) : NULL;
    if (ch == '\'' || ch == '"') {
      const char *s;
      size_t n;
      cq_status st = npy_parse_string(c, "a string", &s, &n);
      if (st != CQ_OK) return st;
      continue;
    }
    if (open) {
      if (depth == NPY_MAX_NESTING) {
        return cq_fail(CQ_EFORMAT, "malformed header: brackets nested deeper than %d at byte %zu",
                       NPY_MAX_NESTING, c->base + c->pos);
      }
      closers[depth++] = matching[open - openers];
    } else if (ch != '\0' && strchr(matching, ch)) {
      if (depth == 0 || closers[depth - 1] != ch) return npy_syntax(c, "a matching bracket");
      if (--depth == 0) {
        c->pos++;
        return CQ_OK;
      }
    } else if ((unsigned char)ch < 0x20 ? !npy_is_space(ch) : (unsigned char)ch >= 0x7f) {
      return npy_syntax(c, "a Python literal");
    }
    c->pos++;
  }
  return cq_fail(CQ_EFORMAT, "malformed header: the list starting at byte %zu is not closed",
                 c->base + start);
}

/* The parsed values, before they are interpreted. */
typedef struct npy_dict {
  int have_descr, have_fortran, have_shape;
  const char *descr; /* raw text of the string, or of the whole list for a structured dtype */
  size_t descr_len;
  int descr_structured;
  int fortran_order;
  int ndim; /* may exceed CQ_MAX_DIMS; only the first CQ_MAX_DIMS are stored */
  int64_t shape[CQ_MAX_DIMS];
} npy_dict;

static cq_status npy_parse_descr(npy_cursor *c, npy_dict *d) {
  int ch = npy_peek(c);
  if (ch == '[') {
    size_t start = c->pos;
    cq_status st = npy_skip_literal(c);
    if (st != CQ_OK) return st;
    d->descr = c->text + start;
    d->descr_len = c->pos - start;
    d->descr_structured = 1;
    return CQ_OK;
  }
  if (ch != '\'' && ch != '"') {
    char word[NPY_SHOW_CAP + 8];
    return cq_fail(CQ_EFORMAT, "'descr' must be a string such as '<f4', found %s at byte %zu",
                   npy_show_word(c, word, sizeof word), c->base + c->pos);
  }
  return npy_parse_string(c, "a string", &d->descr, &d->descr_len);
}

static cq_status npy_parse_fortran(npy_cursor *c, npy_dict *d) {
  size_t end = c->pos;
  while (end < c->len && npy_is_word(c->text[end])) end++;
  size_t n = end - c->pos;
  if (n == 4 && memcmp(c->text + c->pos, "True", 4) == 0) {
    d->fortran_order = 1;
  } else if (n == 5 && memcmp(c->text + c->pos, "False", 5) == 0) {
    d->fortran_order = 0;
  } else {
    char word[NPY_SHOW_CAP + 8];
    return cq_fail(CQ_EFORMAT, "'fortran_order' must be True or False, found %s at byte %zu",
                   npy_show_word(c, word, sizeof word), c->base + c->pos);
  }
  c->pos = end;
  return CQ_OK;
}

/* One dimension: a non-negative decimal integer below 2^63 (Python 2's "L" suffix is accepted in
 * versions 1 and 2, as numpy does). */
static cq_status npy_parse_dim(npy_cursor *c, int index, int64_t *out) {
  char word[NPY_SHOW_CAP + 8];
  size_t start = c->pos;
  int negative = npy_peek(c) == '-';
  if (negative) c->pos++;
  int ch = npy_peek(c);
  if (ch < '0' || ch > '9') {
    c->pos = start;
    return cq_fail(CQ_EFORMAT, "dimension %d of 'shape' must be an integer, found %s at byte %zu",
                   index, npy_show_word(c, word, sizeof word), c->base + start);
  }
  uint64_t value = 0;
  int overflow = 0;
  size_t digits = c->pos;
  while (c->pos < c->len && c->text[c->pos] >= '0' && c->text[c->pos] <= '9') {
    unsigned d = (unsigned)(c->text[c->pos] - '0');
    if (value > ((uint64_t)INT64_MAX - d) / 10) overflow = 1;
    value = value * 10 + d;
    c->pos++;
  }
  int leading_zero = c->text[digits] == '0' && c->pos - digits > 1;
  if (c->major <= 2 && (npy_peek(c) == 'L' || npy_peek(c) == 'l')) c->pos++;
  int bad_tail = c->pos < c->len && npy_is_word(c->text[c->pos]);
  size_t end = c->pos;
  c->pos = start;
  npy_show_word(c, word, sizeof word);
  if (bad_tail || leading_zero) {
    return cq_fail(CQ_EFORMAT,
                   "dimension %d of 'shape' must be a decimal integer, found %s at byte %zu", index,
                   word, c->base + start);
  }
  if (negative && value != 0) {
    return cq_fail(CQ_EFORMAT, "dimension %d of 'shape' is negative (%s)", index, word);
  }
  if (overflow) {
    return cq_fail(CQ_EFORMAT, "dimension %d of 'shape' is too large (%s; the limit is 2^63 - 1)",
                   index, word);
  }
  c->pos = end;
  *out = (int64_t)value;
  return CQ_OK;
}

/* A tuple of integers: "()", "(5,)", "(2, 3)", "(2, 3,)". "(5)" is the integer 5 in Python, not a
 * tuple, and is rejected as numpy rejects it. */
static cq_status npy_parse_shape(npy_cursor *c, npy_dict *d) {
  if (npy_peek(c) != '(') {
    char word[NPY_SHOW_CAP + 8];
    return cq_fail(CQ_EFORMAT, "'shape' must be a tuple such as (2, 3), found %s at byte %zu",
                   npy_show_word(c, word, sizeof word), c->base + c->pos);
  }
  size_t open = c->pos++;
  d->ndim = 0;
  npy_skip_space(c);
  if (npy_peek(c) == ')') {
    c->pos++;
    return CQ_OK;
  }
  for (;;) {
    int64_t dim = 0;
    cq_status st = npy_parse_dim(c, d->ndim, &dim);
    if (st != CQ_OK) return st;
    if (d->ndim < CQ_MAX_DIMS) d->shape[d->ndim] = dim;
    d->ndim++;
    npy_skip_space(c);
    if (npy_peek(c) == ')') {
      if (d->ndim == 1) {
        char shown[NPY_SHOW_CAP];
        npy_show(c->text + open, c->pos + 1 - open, shown, sizeof shown);
        return cq_fail(CQ_EFORMAT,
                       "'shape' %s is an integer, not a tuple (write (n,) for one dimension)",
                       shown);
      }
      c->pos++;
      return CQ_OK;
    }
    if (npy_peek(c) != ',') return npy_syntax(c, "',' or ')' in 'shape'");
    c->pos++;
    npy_skip_space(c);
    if (npy_peek(c) == ')') {
      c->pos++;
      return CQ_OK;
    }
  }
}

/* One "'key': value" entry. */
static cq_status npy_parse_entry(npy_cursor *c, npy_dict *d) {
  const char *key;
  size_t n;
  char shown[NPY_SHOW_CAP];
  size_t at = c->pos;
  cq_status st = npy_parse_string(c, "a quoted key or '}'", &key, &n);
  if (st != CQ_OK) return st;
  int *seen;
  cq_status (*parse_value)(npy_cursor *, npy_dict *);
  if (n == 5 && memcmp(key, "descr", 5) == 0) {
    seen = &d->have_descr;
    parse_value = npy_parse_descr;
  } else if (n == 13 && memcmp(key, "fortran_order", 13) == 0) {
    seen = &d->have_fortran;
    parse_value = npy_parse_fortran;
  } else if (n == 5 && memcmp(key, "shape", 5) == 0) {
    seen = &d->have_shape;
    parse_value = npy_parse_shape;
  } else {
    return cq_fail(CQ_EFORMAT, "unexpected key '%s' at byte %zu (a .npy header has exactly "
                   "'descr', 'fortran_order' and 'shape')", npy_show(key, n, shown, sizeof shown),
                   c->base + at);
  }
  if (*seen) {
    return cq_fail(CQ_EFORMAT, "duplicate key '%s' at byte %zu", npy_show(key, n, shown,
                   sizeof shown), c->base + at);
  }
  *seen = 1;
  npy_skip_space(c);
  if (npy_peek(c) != ':') return npy_syntax(c, "':' after the key");
  c->pos++;
  npy_skip_space(c);
  return parse_value(c, d);
}

/* Rejects what Python's literal_eval would reject before any syntax is looked at: NUL bytes, and in
 * version 3 (UTF-8) an invalid encoding. */
static cq_status npy_check_encoding(const npy_cursor *c) {
  const unsigned char *s = (const unsigned char *)c->text;
  const void *nul = memchr(s, 0, c->len);
  if (nul) {
    return cq_fail(CQ_EFORMAT, "header contains a NUL byte at byte %zu",
                   c->base + (size_t)((const unsigned char *)nul - s));
  }
  if (c->major != 3) return CQ_OK; /* versions 1 and 2 are latin-1: every byte decodes */
  for (size_t i = 0; i < c->len;) {
    size_t extra = s[i] < 0x80 ? 0 : (s[i] & 0xe0) == 0xc0 ? 1 : (s[i] & 0xf0) == 0xe0 ? 2
                 : (s[i] & 0xf8) == 0xf0 ? 3 : 4;
    int ok = extra < 4 && i + extra < c->len && !(extra == 1 && s[i] < 0xc2) &&
             !(extra == 3 && s[i] > 0xf4);
    for (size_t k = 1; ok && k <= extra; k++) ok = (s[i + k] & 0xc0) == 0x80;
    if (!ok) {
      return cq_fail(CQ_EFORMAT, "version 3 header is not valid UTF-8 (byte 0x%02x at byte %zu)",
                     s[i], c->base + i);
    }
    i += extra + 1;
  }
  return CQ_OK;
}

/* The whole header: "{...}" followed by padding and a final newline. */
static cq_status npy_parse_dict(npy_cursor *c, npy_dict *d) {
  memset(d, 0, sizeof *d);
  cq_status st = npy_check_encoding(c);
  if (st != CQ_OK) return st;
  npy_skip_space(c);
  if (npy_peek(c) != '{') return npy_syntax(c, "'{' opening the header dict");
  c->pos++;
  for (;;) {
    npy_skip_space(c);
    if (npy_peek(c) == '}') break;
    st = npy_parse_entry(c, d);
    if (st != CQ_OK) return st;
    npy_skip_space(c);
    if (npy_peek(c) == ',') {
      c->pos++;
      continue;
    }
    if (npy_peek(c) != '}') return npy_syntax(c, "',' or '}' after a value");
    break;
  }
  c->pos++;
  npy_skip_space(c);
  if (c->pos < c->len) return npy_syntax(c, "only padding after the header dict");
  if (c->text[c->len - 1] != '\n') {
    char found[32];
    c->pos = c->len - 1;
    return cq_fail(CQ_EFORMAT, "header is not terminated by a newline (its last byte is %s)",
                   npy_found(c, found, sizeof found));
  }
  const char *missing = !d->have_descr ? "descr" : !d->have_fortran ? "fortran_order"
                      : !d->have_shape ? "shape" : NULL;
  if (missing) return cq_fail(CQ_EFORMAT, "header has no '%s' key", missing);
  return CQ_OK;
}

/* ---- interpretation -------------------------------------------------------------------------- */

/* Maps a descr to a cquant dtype: an optional byte-order character ('<', '=', '|', or for one-byte
 * types also '>') followed by f4, f8, u1, i1, i4 or i8. */
static cq_status npy_resolve_descr(const npy_dict *d, npy_header *h) {
  static const struct {
    const char *code;
    cq_dtype dtype;
  } codes[] = {{"f4", CQ_F32}, {"f8", CQ_F64}, {"u1", CQ_U8},
               {"i1", CQ_S8},  {"i4", CQ_S32}, {"i8", CQ_I64}};
  char shown[NPY_SHOW_CAP];
  npy_show(d->descr, d->descr_len, shown, sizeof shown);
  if (d->descr_structured) {
    return cq_fail(CQ_EUNSUPPORTED, "structured dtype %s is not supported", shown);
  }
  const char *s = d->descr;
  size_t n = d->descr_len;
  char order = '='; /* no byte-order character: native, as numpy reads it */
  if (n > 0 && s[0] != '\0' && strchr("<>=|", s[0])) {
    order = s[0];
    s++;
    n--;
  }
  for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++) {
    if (n != 2 || memcmp(s, codes[i].code, 2) != 0) continue;
    int little = npy_host_is_little();
    if (cq_dtype_get(codes[i].dtype)->size > 1) {
      if (order == '>' || (order != '<' && !little)) {
        return cq_fail(CQ_EUNSUPPORTED, "big-endian dtype '%s' is not supported (cquant reads "
                       "little-endian data)", shown);
      }
      h->swap = order == '<' && !little;
    }
    h->dtype = codes[i].dtype;
    return CQ_OK;
  }
  if (n >= 1 && s[0] == 'O') {
    return cq_fail(CQ_EUNSUPPORTED, "object dtype '%s' is not supported (it holds pickled Python "
                   "objects)", shown);
  }
  return cq_fail(CQ_EUNSUPPORTED, "dtype '%s' is not supported (cquant reads '<f4', '<f8', '|u1', "
                 "'|i1', '<i4', '<i8')", shown);
}

/* Parses and interprets the header text (h->header_len bytes found at file offset h->preamble). */
static cq_status npy_parse_header(const char *text, npy_header *h) {
  npy_cursor c = {text, h->header_len, 0, h->preamble, h->major};
  npy_dict d;
  cq_status st = npy_parse_dict(&c, &d);
  if (st != CQ_OK) return st;
  if (d.ndim > CQ_MAX_DIMS) {
    return cq_fail(CQ_EFORMAT, "'shape' has %d dimensions; cquant reads at most %d", d.ndim,
                   CQ_MAX_DIMS);
  }
  if (d.fortran_order) {
    return cq_fail(CQ_EFORMAT, "fortran_order is True; cquant reads C-order data only "
                   "(save np.ascontiguousarray(a))");
  }
  st = npy_resolve_descr(&d, h);
  if (st != CQ_OK) return st;
  h->ndim = d.ndim;
  memcpy(h->shape, d.shape, sizeof h->shape);
  return CQ_OK;
}

/* Sets h->data_bytes to the size the shape implies, without overflowing and before anything is
 * allocated; a size past CQ_TENSOR_MAX_BYTES is refused. `avail` is the number of data bytes
 * present, for the message (UINT64_MAX when unknown: a stream). */
static cq_status npy_shape_bytes(npy_header *h, uint64_t avail) {
  const cq_dtype_info *info = cq_dtype_get(h->dtype);
  uint64_t numel = 1;
  int empty = 0;
  for (int i = 0; i < h->ndim; i++) empty |= h->shape[i] == 0;
  if (!empty) {
    uint64_t limit = CQ_TENSOR_MAX_BYTES / info->size;
    for (int i = 0; i < h->ndim; i++) {
      uint64_t dim = (uint64_t)h->shape[i];
      if (dim > limit || numel > limit / dim) {
        char shape[NPY_SHAPE_REPR_CAP], holds[64] = "read from a stream";
        npy_shape_repr(h->ndim, h->shape, shape, sizeof shape);
        if (avail != UINT64_MAX) {
          snprintf(holds, sizeof holds, "the file holds %llu data bytes",
                   (unsigned long long)avail);
        }
        return cq_fail(CQ_EFORMAT, "shape %s %s exceeds the %llu-byte tensor limit (%s)", shape,
                       info->name, (unsigned long long)CQ_TENSOR_MAX_BYTES, holds);
      }
      numel *= dim;
    }
  } else {
    numel = 0;
  }
  h->data_bytes = numel * info->size;
  return CQ_OK;
}

/* Checks that the data the shape implies is exactly the `avail` bytes that follow the header,
 * without overflowing and before anything is allocated. */
static cq_status npy_check_data(npy_header *h, uint64_t avail) {
  cq_status st = npy_shape_bytes(h, avail);
  if (st != CQ_OK) return st;
  const cq_dtype_info *info = cq_dtype_get(h->dtype);
  char shape[NPY_SHAPE_REPR_CAP];
  npy_shape_repr(h->ndim, h->shape, shape, sizeof shape);
  if (h->data_bytes > avail) {
    return cq_fail(CQ_EFORMAT, "truncated: header says shape %s %s = %llu bytes but only %llu "
                   "bytes follow", shape, info->name, (unsigned long long)h->data_bytes,
                   (unsigned long long)avail);
  }
  if (h->data_bytes < avail) {
    return cq_fail(CQ_EFORMAT, "%llu trailing bytes: header says shape %s %s = %llu bytes but "
                   "%llu bytes follow", (unsigned long long)(avail - h->data_bytes), shape,
                   info->name, (unsigned long long)h->data_bytes, (unsigned long long)avail);
  }
  return CQ_OK;
}

/* ---- loading --------------------------------------------------------------------------------- */

static cq_status npy_load_memory(const unsigned char *p, size_t size, cq_tensor **out) {
  npy_header h = {0};
  cq_status st = npy_parse_preamble(p, size < NPY_PREAMBLE_MAX ? size : NPY_PREAMBLE_MAX, size, &h);
  if (st == CQ_OK) st = npy_parse_header((const char *)p + h.preamble, &h);
  if (st == CQ_OK) st = npy_check_data(&h, size - h.preamble - h.header_len);
  if (st == CQ_OK) st = cq_tensor_create(out, h.dtype, h.ndim, h.shape);
  if (st != CQ_OK) return st;
  if (h.data_bytes) memcpy((*out)->data, p + h.preamble + h.header_len, h.data_bytes);
  if (h.swap) {
    size_t elem = cq_dtype_get(h.dtype)->size;
    npy_swap_bytes((*out)->data, h.data_bytes / elem, elem);
  }
  return CQ_OK;
}

cq_status cq_npy_load_buffer(const void *data, size_t size, cq_tensor **out) {
  if (!out) return cq_fail(CQ_EINVAL, "cq_npy_load_buffer: out is NULL");
  *out = NULL;
  if (!data && size) return cq_fail(CQ_EINVAL, "cq_npy_load_buffer: data is NULL (size %zu)", size);
  static const unsigned char nothing[1];
  return npy_load_memory(data ? data : nothing, size, out);
}

/* Reads exactly `n` bytes; a short read is an I/O error or a file that changed while being read. */
static cq_status npy_read_exact(FILE *f, void *buf, size_t n, const char *what) {
  if (fread(buf, 1, n, f) == n) return CQ_OK;
  if (ferror(f)) return cq_fail(CQ_EIO, "cannot read the %s: %s", what, strerror(errno));
  return cq_fail(CQ_EIO, "the file shrank while its %s was being read", what);
}

/* Reads up to `n` bytes into buf; *got < n only at the end of the stream. */
static cq_status npy_read_some(FILE *f, void *buf, size_t n, size_t *got) {
  *got = n ? fread(buf, 1, n, f) : 0;
  if (*got < n && ferror(f)) return cq_fail(CQ_EIO, "cannot read: %s", strerror(errno));
  return CQ_OK;
}

/* Reads the preamble of a stream and parses it as soon as its bytes arrive: 10 bytes, 2 more for
 * versions 2 and 3. A stream that ends inside the preamble is that long; otherwise its length is
 * unknown, and the header length bounds what is read next. */
static cq_status npy_stream_preamble(FILE *f, npy_header *h) {
  unsigned char pre[NPY_PREAMBLE_MAX];
  size_t got, more = 0;
  cq_status st = npy_read_some(f, pre, 10, &got);
  if (st != CQ_OK) return st;
  const int long_preamble =
      got == 10 && memcmp(pre, NPY_MAGIC, NPY_MAGIC_LEN) == 0 && (pre[6] == 2 || pre[6] == 3);
  if (long_preamble) {
    st = npy_read_some(f, pre + 10, 2, &more);
    if (st != CQ_OK) return st;
    got += more;
  }
  const size_t need = long_preamble ? 12 : 10;
  return npy_parse_preamble(pre, got, got < need ? (uint64_t)got : UINT64_MAX, h);
}

/* The data of a stream: exactly h->data_bytes, in a buffer that grows only as data arrives (a
 * header that promises more than the stream holds allocates no more than what came), then nothing
 * after it. */
static cq_status npy_stream_data(FILE *f, const npy_header *h, unsigned char **data) {
  unsigned char *buf = NULL;
  size_t len = 0, cap = 0;
  const size_t want = (size_t)h->data_bytes;
  cq_status st = CQ_OK;
  while (len < want) {
    size_t grown = cap ? cap * 2 : 65536;
    if (grown > want) grown = want;
    unsigned char *p = cq_realloc(buf, grown);
    if (!p) {
      st = cq_fail(CQ_ENOMEM, "out of memory allocating %zu bytes for .npy data", grown);
      break;
    }
    buf = p;
    cap = grown;
    size_t got;
    st = npy_read_some(f, buf + len, cap - len, &got);
    len += got;
    if (st != CQ_OK || len < cap) break;
  }
  char shape[NPY_SHAPE_REPR_CAP];
  npy_shape_repr(h->ndim, h->shape, shape, sizeof shape);
  const char *dtype = cq_dtype_get(h->dtype)->name;
  if (st == CQ_OK && len < want) {
    st = cq_fail(CQ_EFORMAT, "truncated: header says shape %s %s = %llu bytes but only %zu bytes "
                 "follow", shape, dtype, (unsigned long long)h->data_bytes, len);
  }
  if (st == CQ_OK && fgetc(f) != EOF) { /* the rest is not read: the stream may never end */
    st = cq_fail(CQ_EFORMAT, "trailing bytes: header says shape %s %s = %llu bytes but the stream "
                 "goes on", shape, dtype, (unsigned long long)h->data_bytes);
  }
  if (st == CQ_OK && ferror(f)) st = cq_fail(CQ_EIO, "cannot read: %s", strerror(errno));
  if (st != CQ_OK) {
    cq_free(buf);
    return st;
  }
  *data = buf;
  return CQ_OK;
}

/* A pipe or other stream whose size is unknown: each part is checked as soon as it arrives
 * (preamble, header, then the data the header's shape implies), so a stream that is not a .npy
 * file, or one that never ends (/dev/zero), fails without being read to the end. */
static cq_status npy_load_stream(FILE *f, cq_tensor **out) {
  npy_header h = {0};
  cq_status st = npy_stream_preamble(f, &h);
  if (st != CQ_OK) return st;
  char *text = cq_malloc_for(h.header_len, "the .npy header");
  if (!text) return CQ_ENOMEM;
  size_t got;
  st = npy_read_some(f, text, h.header_len, &got);
  if (st == CQ_OK && got < h.header_len) {
    st = cq_fail(CQ_EFORMAT, "truncated: header length %lu runs past the end (only %zu bytes "
                 "follow the %zu-byte preamble)", (unsigned long)h.header_len, got, h.preamble);
  }
  if (st == CQ_OK) st = npy_parse_header(text, &h);
  cq_free(text);
  if (st == CQ_OK) st = npy_shape_bytes(&h, UINT64_MAX);
  unsigned char *data = NULL;
  if (st == CQ_OK) st = npy_stream_data(f, &h, &data);
  if (st != CQ_OK) return st;
  if (!data) return cq_tensor_create(out, h.dtype, h.ndim, h.shape); /* no elements */
  st = cq_tensor_wrap(out, h.dtype, h.ndim, h.shape, data);
  if (st != CQ_OK) {
    cq_free(data);
    return st;
  }
  (*out)->owns_data = 1; /* allocated by cq_realloc, as cq_tensor_create's data is */
  if (h.swap) {
    size_t elem = cq_dtype_get(h.dtype)->size;
    npy_swap_bytes((*out)->data, (size_t)h.data_bytes / elem, elem);
  }
  return CQ_OK;
}

/* A regular file: measure it, read and check the header, then allocate exactly the data it
 * holds. */
static cq_status npy_load_file(FILE *f, cq_tensor **out) {
  struct stat sb;
  if (fstat(fileno(f), &sb) != 0) return cq_fail(CQ_EIO, "cannot stat: %s", strerror(errno));
  if (S_ISDIR(sb.st_mode)) return cq_fail(CQ_EIO, "is a directory, not a .npy file");
  if (!S_ISREG(sb.st_mode)) return npy_load_stream(f, out);
  uint64_t total = (uint64_t)sb.st_size;
  unsigned char pre[NPY_PREAMBLE_MAX];
  size_t avail = total < NPY_PREAMBLE_MAX ? (size_t)total : NPY_PREAMBLE_MAX;
  npy_header h = {0};
  cq_status st = npy_read_exact(f, pre, avail, "preamble");
  if (st == CQ_OK) st = npy_parse_preamble(pre, avail, total, &h);
  if (st != CQ_OK) return st;
  char *text = cq_malloc_for(h.header_len, "the .npy header");
  if (!text) return CQ_ENOMEM;
  if (fseek(f, (long)h.preamble, SEEK_SET) != 0) {
    st = cq_fail(CQ_EIO, "cannot seek: %s", strerror(errno));
  }
  if (st == CQ_OK) st = npy_read_exact(f, text, h.header_len, "header");
  if (st == CQ_OK) st = npy_parse_header(text, &h);
  cq_free(text);
  if (st == CQ_OK) st = npy_check_data(&h, total - h.preamble - h.header_len);
  if (st == CQ_OK) st = cq_tensor_create(out, h.dtype, h.ndim, h.shape);
  if (st != CQ_OK) return st;
  st = npy_read_exact(f, (*out)->data, (size_t)h.data_bytes, "data");
  if (st == CQ_OK && fgetc(f) != EOF) st = cq_fail(CQ_EIO, "the file grew while it was being read");
  if (st != CQ_OK) {
    cq_tensor_free(*out);
    *out = NULL;
    return st;
  }
  if (h.swap) {
    size_t elem = cq_dtype_get(h.dtype)->size;
    npy_swap_bytes((*out)->data, (size_t)h.data_bytes / elem, elem);
  }
  return CQ_OK;
}

cq_status cq_npy_load(const char *path, cq_tensor **out) {
  if (!out) return cq_fail(CQ_EINVAL, "cq_npy_load: out is NULL");
  *out = NULL;
  if (!path) return cq_fail(CQ_EINVAL, "cq_npy_load: path is NULL");
  char shown[400];
  npy_show_path(path, shown, sizeof shown);
  FILE *f = fopen(path, "rb");
  if (!f) return cq_fail(CQ_EIO, "%s: cannot open: %s", shown, strerror(errno));
  cq_status st = npy_load_file(f, out);
  fclose(f);
  if (st != CQ_OK) return cq_fail_context(st, "%s", shown);
  return CQ_OK;
}

/* ---- saving ---------------------------------------------------------------------------------- */

/* Preamble, dict, padding and newline exactly as numpy 1.24's np.save writes them for version 1.0.
 * With at most 8 dimensions of at most 19 digits the header is under 400 bytes, so version 1.0's
 * 16-bit length always suffices. Returns the byte count written into `buf`. */
static size_t npy_format_header(const cq_tensor *t, char *buf, size_t cap) {
  char shape[NPY_SHAPE_REPR_CAP];
  npy_shape_repr(t->ndim, t->shape, shape, sizeof shape);
  size_t n = 10;
  n += (size_t)snprintf(buf + n, cap - n, "{'descr': '%s', 'fortran_order': False, 'shape': %s, }",
                        cq_dtype_get(t->dtype)->npy_descr, shape);
  if (t->ndim > 0) {
    char first[24];
    int digits = snprintf(first, sizeof first, "%lld", (long long)t->shape[0]);
    for (int i = digits; i < NPY_GROWTH_DIGITS; i++) buf[n++] = ' ';
  }
  size_t pad = NPY_ALIGN - (n + 1) % NPY_ALIGN; /* 1..64, never 0, as numpy computes it */
  memset(buf + n, ' ', pad);
  n += pad;
  buf[n++] = '\n';
  size_t header_len = n - 10;
  memcpy(buf, NPY_MAGIC, NPY_MAGIC_LEN);
  buf[6] = 1;
  buf[7] = 0;
  buf[8] = (char)(header_len & 0xff);
  buf[9] = (char)(header_len >> 8);
  return n;
}

/* Writes the data little-endian (swapping through a small buffer on a big-endian host). */
static int npy_write_data(FILE *f, const cq_tensor *t, size_t bytes) {
  size_t elem = cq_dtype_get(t->dtype)->size;
  if (elem == 1 || npy_host_is_little()) return fwrite(t->data, 1, bytes, f) == bytes;
  unsigned char chunk[4096];
  const unsigned char *p = t->data;
  for (size_t done = 0; done < bytes;) {
    size_t n = bytes - done < sizeof chunk ? bytes - done : sizeof chunk;
    memcpy(chunk, p + done, n);
    npy_swap_bytes(chunk, n / elem, elem);
    if (fwrite(chunk, 1, n, f) != n) return 0;
    done += n;
  }
  return 1;
}

cq_status cq_npy_save(const char *path, const cq_tensor *tensor) {
  if (!path) return cq_fail(CQ_EINVAL, "cq_npy_save: path is NULL");
  char shown[400];
  npy_show_path(path, shown, sizeof shown);
  if (!tensor) return cq_fail(CQ_EINVAL, "%s: cannot save a NULL tensor", shown);
  const cq_dtype_info *info = cq_dtype_get(tensor->dtype);
  if (!info) return cq_fail(CQ_EINVAL, "%s: invalid dtype %d", shown, (int)tensor->dtype);
  int64_t numel;
  cq_status st = cq_shape_numel(tensor->ndim, tensor->shape, info->size, &numel);
  if (st != CQ_OK) return cq_fail_context(st, "%s", shown);
  if (numel > 0 && !tensor->data) {
    return cq_fail(CQ_EINVAL, "%s: tensor data is NULL for %lld elements", shown, (long long)numel);
  }
  char header[512];
  size_t header_bytes = npy_format_header(tensor, header, sizeof header);
  cq_atomic_file af;
  st = cq_atomic_open(&af, path);
  if (st != CQ_OK) return st;
  if (fwrite(header, 1, header_bytes, af.f) != header_bytes ||
      !npy_write_data(af.f, tensor, (size_t)numel * info->size)) {
    st = cq_fail(CQ_EIO, "%s: cannot write: %s", shown, strerror(errno));
    cq_atomic_abort(&af);
    return st;
  }
  st = cq_atomic_commit(&af);
  return st;
}
