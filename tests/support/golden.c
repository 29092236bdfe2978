#include "golden.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *dup_str(const char *s, size_t n) {
  char *p = malloc(n + 1);
  if (!p) return NULL;
  memcpy(p, s, n);
  p[n] = '\0';
  return p;
}

int golden_load(const char *path, golden_file *out) {
  memset(out, 0, sizeof *out);
  FILE *f = fopen(path, "rb");
  if (!f) {
    fprintf(stderr, "golden: cannot open %s\n", path);
    return -1;
  }
  const char *slash = strrchr(path, '/');
  out->dir = slash ? dup_str(path, (size_t)(slash - path)) : dup_str(".", 1);
  char *line = NULL;
  size_t cap = 0;
  ssize_t len;
  golden_case *cur = NULL;
  int lineno = 0;
  while ((len = getline(&line, &cap, f)) >= 0) {
    lineno++;
    while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = '\0';
    if (len == 0 || line[0] == '#') continue;
    char *sp = strchr(line, ' ');
    size_t klen = sp ? (size_t)(sp - line) : (size_t)len;
    const char *value = sp ? sp + 1 : "";
    if (klen == 4 && strncmp(line, "case", 4) == 0) {
      golden_case *cases = realloc(out->cases, sizeof *cases * (size_t)(out->count + 1));
      if (!cases) goto fail;
      out->cases = cases;
      cur = &out->cases[out->count++];
      memset(cur, 0, sizeof *cur);
      cur->name = dup_str(value, strlen(value));
      continue;
    }
    if (klen == 3 && strncmp(line, "end", 3) == 0) {
      cur = NULL;
      continue;
    }
    if (!cur) {
      fprintf(stderr, "golden: %s:%d: entry outside a case\n", path, lineno);
      goto fail;
    }
    golden_entry *e = realloc(cur->entries, sizeof *e * (size_t)(cur->count + 1));
    if (!e) goto fail;
    cur->entries = e;
    cur->entries[cur->count].key = dup_str(line, klen);
    cur->entries[cur->count].value = dup_str(value, strlen(value));
    cur->count++;
  }
  free(line);
  fclose(f);
  return 0;
fail:
  free(line);
  fclose(f);
  golden_free(out);
  return -1;
}

void golden_free(golden_file *g) {
  for (int i = 0; i < g->count; i++) {
    golden_case *c = &g->cases[i];
    for (int j = 0; j < c->count; j++) {
      free(c->entries[j].key);
      free(c->entries[j].value);
    }
    free(c->entries);
    free(c->name);
  }
  free(g->cases);
  free(g->dir);
  memset(g, 0, sizeof *g);
}

const char *golden_get_nth(const golden_case *c, const char *key, int n) {
  for (int i = 0; i < c->count; i++) {
    if (strcmp(c->entries[i].key, key) == 0 && n-- == 0) return c->entries[i].value;
  }
  return NULL;
}

const char *golden_get(const golden_case *c, const char *key) { return golden_get_nth(c, key, 0); }

int golden_parse_floats(const char *value, float **out) {
  int n = 0, cap = 16;
  float *v = malloc(sizeof *v * (size_t)cap);
  if (!v) return -1;
  const char *p = value;
  for (;;) {
    while (*p == ' ') p++;
    if (!*p) break;
    char *end;
    double d = strtod(p, &end);
    if (end == p) {
      free(v);
      return -1;
    }
    if (n == cap) {
      cap *= 2;
      float *nv = realloc(v, sizeof *v * (size_t)cap);
      if (!nv) {
        free(v);
        return -1;
      }
      v = nv;
    }
    v[n++] = (float)d;
    p = end;
  }
  *out = v;
  return n;
}

int golden_parse_ints(const char *value, int64_t **out) {
  int n = 0, cap = 16;
  int64_t *v = malloc(sizeof *v * (size_t)cap);
  if (!v) return -1;
  const char *p = value;
  for (;;) {
    while (*p == ' ') p++;
    if (!*p) break;
    char *end;
    long long x = strtoll(p, &end, 10);
    if (end == p) {
      free(v);
      return -1;
    }
    if (n == cap) {
      cap *= 2;
      int64_t *nv = realloc(v, sizeof *v * (size_t)cap);
      if (!nv) {
        free(v);
        return -1;
      }
      v = nv;
    }
    v[n++] = x;
    p = end;
  }
  *out = v;
  return n;
}

char *golden_path(const golden_file *g, const char *relative, char *buf, size_t cap) {
  snprintf(buf, cap, "%s/%s", g->dir, relative);
  return buf;
}
