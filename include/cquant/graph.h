/* Graph: a module whose forward runs an explicit dataflow of nodes (residual connections, concat,
 * imported graphs).
 *
 * A graph has `ninputs` inputs and a list of nodes. Every node calls one child module of the graph
 * on earlier values and defines new values from its outputs. Values are small integers: the graph
 * inputs are 0 .. ninputs-1, and each node's outputs get the next free numbers, returned by
 * cq_graph_add_node. The graph outputs are declared with cq_graph_set_outputs.
 *
 * The modules the nodes call are ordinary named children of the graph, so printing, the state dict
 * (keys "linear.weight"), cq_module_find and cq_module_replace see them. Passing NULL as the module
 * of a node reuses the child already registered under that name: one ReLU called twice, as a
 * PyTorch forward() may call self.relu twice, or children registered up front with
 * cq_module_add_child so that they print in the order PyTorch's __init__ created them.
 *
 * Example, y = relu(linear(x) + x):
 *
 *     cq_module *g, *lin, *add, *relu;
 *     cq_graph(&g, 1);
 *     cq_linear(&lin, 6, 6, 1); cq_add(&add); cq_relu(&relu);
 *     int h, s, y, x = 0;
 *     cq_graph_add_node(g, "linear", lin, 1, &x, 1, &h);
 *     int hx[2] = {h, x};
 *     cq_graph_add_node(g, "skip_add", add, 2, hx, 1, &s);
 *     cq_graph_add_node(g, "relu", relu, 1, &s, 1, &y);
 *     cq_graph_set_outputs(g, 1, &y);
 *     cq_graph_set_name(g, "ResBlock");
 *
 * prints as PyTorch prints a custom nn.Module subclass:
 *
 *     ResBlock(
 *       (linear): Linear(in_features=6, out_features=6, bias=True)
 *       (skip_add): FloatFunctional(
 *         (activation_post_process): Identity()
 *       )
 *       (relu): ReLU()
 *     )
 *
 * The functional ops (cq_add, cq_cat in modules.h) are modules of PyTorch's class FloatFunctional,
 * which is what eager-mode quantization requires a model to use for additions and concatenations;
 * their output passes through their "activation_post_process" child (Identity until an observer is
 * put there). cq_functional_op tells them apart.
 *
 * Gradients flow through a graph without further work: the graph itself records nothing, its
 * children's calls are on the tape, and a value used by several nodes receives the sum of their
 * gradients. */
#ifndef CQUANT_GRAPH_H
#define CQUANT_GRAPH_H

#include "cquant/nn.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A new, empty graph taking `ninputs` inputs (1 .. 8), printed as "Graph(...)". */
CQ_API cq_status cq_graph(cq_module **out, int ninputs);

/* Appends a node named `name` that calls `module` (ownership moves to the graph, which registers it
 * as its child `name`; the module is freed when the call fails) or, when `module` is NULL, the
 * child already registered as `name`. The node reads the values `inputs[0 .. nin-1]`, which must be
 * defined already (graph inputs or outputs of earlier nodes), and defines `nout` new values whose
 * numbers are written to `outputs` (may be NULL: the numbers are always consecutive, starting at
 * cq_graph_num_values before the call). nin and nout must be within what the module accepts.
 * CQ_EINVAL with a message for an undefined value, an unknown name, a duplicate name with a
 * non-NULL module, or a wrong count; the graph is unchanged then. */
CQ_API cq_status cq_graph_add_node(cq_module *g, const char *name, cq_module *module, int nin,
                                   const int *inputs, int nout, int *outputs);

/* Declares the graph outputs (1 .. 8 defined values; a value may appear twice, and a graph input
 * may be an output). Replaces an earlier declaration. */
CQ_API cq_status cq_graph_set_outputs(cq_module *g, int n, const int *values);

/* The class name the graph prints as and names in error messages ("M" prints "M(\n  (fc): ...").
 * Default "Graph". A Python class name is expected; CQ_EINVAL when empty or containing spaces or
 * parentheses. */
CQ_API cq_status cq_graph_set_name(cq_module *g, const char *class_name);

/* ---- introspection (for passes that rewrite or export graphs) ----------------------------------- */

/* Nonzero when m was made by cq_graph. */
CQ_API int cq_is_graph(const cq_module *m);
CQ_API int cq_graph_num_inputs(const cq_module *g);
CQ_API int cq_graph_num_values(const cq_module *g);
CQ_API int cq_graph_num_nodes(const cq_module *g);

typedef struct cq_graph_node_info {
  const char *name;   /* the child's name */
  cq_module *module;  /* the child called (after cq_module_replace, the replacement) */
  int nin, nout;
  const int *inputs;  /* nin value numbers */
  const int *outputs; /* nout value numbers */
} cq_graph_node_info;

/* Fills *info for node `index` (0-based, in execution order); pointers stay valid until the graph
 * changes. CQ_EINVAL for a bad index or a module that is not a graph. */
CQ_API cq_status cq_graph_node(const cq_module *g, int index, cq_graph_node_info *info);
/* The declared outputs (*values points into the graph; *n is 0 when none were declared). */
CQ_API cq_status cq_graph_outputs(const cq_module *g, int *n, const int **values);

/* ---- editing (for passes) ----------------------------------------------------------------------- */

/* Like cq_graph_add_node, but the node runs before the node now at position `before` (0 .. number
 * of nodes); its inputs must be defined before that position. Its outputs get new value numbers
 * (cq_graph_num_values before the call, consecutive), which later nodes can be rewired to read. */
CQ_API cq_status cq_graph_insert_node(cq_module *g, int before, const char *name, cq_module *module,
                                      int nin, const int *inputs, int nout, int *outputs);
/* Makes input `slot` of node `index` read `value` (defined before that node). */
CQ_API cq_status cq_graph_set_node_input(cq_module *g, int index, int slot, int value);
/* Turns a Sequential into the equivalent graph in place (nodes "0", "1", ... in a chain, same
 * children, same state dict), as torch.fx.symbolic_trace does. */
CQ_API cq_status cq_graph_from_sequential(cq_module *seq);

/* Runs a graph like cq_module_forward and calls `visit` after every node with its name, module
 * and outputs (owned by ctx): the hook a numeric suite uses to compare layers. A non-OK status from
 * visit stops the run and is returned. */
typedef cq_status (*cq_graph_visit_fn)(const char *node_name, cq_module *module, int nout,
                                       cq_tensor *const *outputs, void *user);
CQ_API cq_status cq_graph_forward_visit(cq_module *g, cq_ctx *ctx, int nin, cq_tensor *const *in,
                                        int nout, cq_tensor **out, cq_graph_visit_fn visit,
                                        void *user);

/* Runs a graph like cq_module_forward and adds the wall time of every node, in seconds, to
 * node_seconds[k] (k: the node's execution index, cq_graph_num_nodes entries), so that the times
 * of many runs accumulate: a per-layer profile. The nodes run exactly as in a plain forward
 * (same layouts, same outputs); a node's time includes the layout conversion of its inputs when
 * it needs one. */
CQ_API cq_status cq_graph_forward_profile(cq_module *g, cq_ctx *ctx, int nin, cq_tensor *const *in,
                                          int nout, cq_tensor **out, double *node_seconds);

/* For modules made by cq_add / cq_mul / cq_cat: "add", "mul" or "cat" (with the concatenation dim
 * in *dim when dim is non-NULL); NULL for every other module. */
CQ_API const char *cq_functional_op(const cq_module *m, int *dim);

#ifdef __cplusplus
}
#endif
#endif
