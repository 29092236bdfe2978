/* cquant demo: the seed's examples computed by cquant, next to what the seed (PyTorch 1.13) prints.
 *
 * Part 1 is the seed's observer example: two 3x4 batches through MinMaxObserver,
 * MovingAverageMinMaxObserver and HistogramObserver, printed as PyTorch prints
 * `obs.__class__.__name__, obs.calculate_qparams()`. The exit status is 1 if any line differs from
 * the seed's. */
#include <string.h>

#include "cli.h"
#include "core/pyformat.h"

/* The two inputs exactly as the seed prints them (torch.distributions.normal samples, 4 decimals). */
static const float seed_inputs[2][12] = {
    {-0.0590f, 1.1674f, 0.7119f, -1.1270f, -1.3974f, 0.5077f, -0.5601f, 0.0683f, -0.0929f, 0.9473f,
     0.7159f, -0.4574f},
    {-0.0236f, -0.7599f, 1.0290f, 0.8914f, -1.1727f, -1.2556f, -0.2271f, 0.9568f, -0.2500f, 1.4579f,
     1.4707f, 0.4043f},
};

/* What the seed prints for each observer. */
static const struct {
  cq_observer_kind kind;
  const char *seed_line;
} seed_observers[] = {
    {CQ_OBSERVER_MINMAX, "MinMaxObserver (tensor([0.0112]), tensor([124], dtype=torch.int32))"},
    {CQ_OBSERVER_MOVING_AVERAGE_MINMAX,
     "MovingAverageMinMaxObserver (tensor([0.0101]), tensor([139], dtype=torch.int32))"},
    {CQ_OBSERVER_HISTOGRAM,
     "HistogramObserver (tensor([0.0100]), tensor([106], dtype=torch.int32))"},
};

/* Formats "Name (tensor([scale]), tensor([zp], dtype=torch.int32))" as the seed's print does. */
static void format_qparams_line(cq_strbuf *sb, cq_observer_kind kind, const cq_qparams *qp) {
  cq_strbuf_appendf(sb, "%s (", cq_observer_class_name(kind));
  cq_format_torch_tensor_1d(sb, qp->scale, qp->count);
  cq_strbuf_append(sb, ", ");
  int64_t zp[1] = {qp->zero_point[0]};
  cq_format_torch_int_tensor_1d(sb, zp, 1, "torch.int32");
  cq_strbuf_append(sb, ")");
}

static int observer_example(void) {
  int64_t shape[2] = {3, 4};
  int mismatches = 0;
  printf("The seed's observer example: two 3x4 batches, default observers\n\n");
  printf("  %-74s %s\n", "cquant", "matches the seed");
  for (size_t i = 0; i < sizeof seed_observers / sizeof seed_observers[0]; i++) {
    cq_observer_config cfg = cq_observer_defaults(seed_observers[i].kind);
    cq_observer *obs = NULL;
    cq_qparams qp;
    memset(&qp, 0, sizeof qp);
    cq_status st = cq_observer_create(&cfg, &obs);
    for (int b = 0; b < 2 && st == CQ_OK; b++) {
      st = cq_observer_update(obs, seed_inputs[b], 2, shape);
    }
    if (st == CQ_OK) st = cq_observer_qparams(obs, &qp);
    if (st != CQ_OK) {
      cq_observer_free(obs);
      return cli_error("demo: %s", cq_last_error());
    }
    cq_strbuf line;
    cq_strbuf_init(&line);
    format_qparams_line(&line, seed_observers[i].kind, &qp);
    int same = strcmp(cq_strbuf_str(&line), seed_observers[i].seed_line) == 0;
    mismatches += !same;
    printf("  %-74s %s\n", cq_strbuf_str(&line), same ? "yes" : "NO");
    char repr[256];
    cq_observer_repr(obs, repr, sizeof repr);
    printf("      %s\n", repr);
    cq_strbuf_release(&line);
    cq_qparams_release(&qp);
    cq_observer_free(obs);
  }
  printf("\n");
  if (mismatches) return cli_error("demo: %d observer(s) differ from the seed", mismatches);
  return CLI_OK;
}

int cmd_demo(int argc, char **argv) {
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
      printf("usage: cquant demo\n\nRuns the seed's examples with cquant and shows PyTorch's "
             "results beside them.\n");
      return CLI_OK;
    }
    return cli_usage_error("demo", "unknown argument '%s'", argv[i]);
  }
  return observer_example();
}
