/* libFuzzer harness for the ONNX importer (cq_onnx_load_buffer, and cq_onnx_load on the same bytes).
 *
 * Checks, besides crashes, leaks and undefined behaviour: loading from memory and from a file agree
 * on success or failure; a failure leaves *out NULL with a one-line message; an accepted model
 * prints (cq_module_repr_alloc) and is a graph. Protobuf decoding is bounded (src/io/onnx_proto.c),
 * so a few bytes can never make the importer allocate gigabytes: libFuzzer's -rss_limit_mb catches
 * any path that does. Temporary files go to /dev/shm (see fuzz_common.h). */
#include "fuzz_common.h"

int cq_fuzz_onnx_one(const uint8_t *data, size_t size) {
  cq_module *m = (cq_module *)(uintptr_t)1; /* must come back NULL on failure */
  cq_status st = cq_onnx_load_buffer(data, size, "fuzz.onnx", &m);
  if (st != CQ_OK) {
    cq_fuzz_check_failure("cq_onnx_load_buffer", st);
    if (m) cq_fuzz_violation("cq_onnx_load_buffer failed but left a model behind");
    m = NULL;
  } else if (!m || !cq_is_graph(m)) {
    cq_fuzz_violation("cq_onnx_load_buffer succeeded without a graph");
  } else {
    char *text = cq_module_repr_alloc(m);
    if (!text) cq_fuzz_violation("an accepted model does not print");
    free(text);
  }

  char path[512];
  cq_fuzz_tmp_path(path, sizeof path, "onnx", ".onnx");
  if (cq_fuzz_write_file(path, data, size) == 0) {
    cq_module *fm = NULL;
    cq_status fst = cq_onnx_load(path, &fm);
    if ((fst == CQ_OK) != (st == CQ_OK)) {
      cq_fuzz_violation("cq_onnx_load (%s) and cq_onnx_load_buffer (%s) disagree",
                        cq_status_str(fst), cq_status_str(st));
    } else if (fst != CQ_OK) {
      cq_fuzz_check_failure("cq_onnx_load", fst);
    }
    cq_module_free(fm);
    unlink(path);
  }
  cq_module_free(m);
  return 0;
}

CQ_FUZZ_ENTRY_POINTS(cq_fuzz_onnx_one)
