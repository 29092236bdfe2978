# System dependencies. Each is a Debian package; when one is missing the configure step stops and
# names the package to install (`make deps` and `.ci/run` install them all).
include(CheckIncludeFile)

find_library(CQ_LIBM m)
if(NOT CQ_LIBM)
  message(FATAL_ERROR "cquant needs the C math library (Debian package: libc6-dev)")
endif()

find_path(CQ_CJSON_INCLUDE cjson/cJSON.h)
find_library(CQ_CJSON_LIB cjson)
if(NOT CQ_CJSON_INCLUDE OR NOT CQ_CJSON_LIB)
  message(FATAL_ERROR "cquant needs cJSON for safetensors headers (Debian package: libcjson-dev; "
                      "run `make deps`)")
endif()

find_path(CQ_CBLAS_INCLUDE cblas.h PATH_SUFFIXES openblas-pthread openblas)
find_library(CQ_OPENBLAS_LIB openblas)
if(NOT CQ_CBLAS_INCLUDE OR NOT CQ_OPENBLAS_LIB)
  message(FATAL_ERROR "cquant needs OpenBLAS for the float GEMM (Debian package: libopenblas-dev; "
                      "run `make deps`)")
endif()
include_directories(SYSTEM ${CQ_CBLAS_INCLUDE})

find_path(CQ_ZLIB_INCLUDE zlib.h)
find_library(CQ_ZLIB_LIB z)
if(NOT CQ_ZLIB_INCLUDE OR NOT CQ_ZLIB_LIB)
  message(FATAL_ERROR "cquant needs zlib for gzip-compressed IDX files (Debian package: zlib1g-dev; "
                      "run `make deps`)")
endif()

find_package(Threads REQUIRED)

set(THREADS_PREFER_PTHREAD_FLAG ON)
set(CQ_SYSTEM_LIBS ${CQ_CJSON_LIB} ${CQ_OPENBLAS_LIB} ${CQ_ZLIB_LIB} Threads::Threads ${CQ_LIBM})

# ONNX import and export: the C bindings of onnx.proto are generated at build time by protoc-c
# (protobuf-c-compiler) from the onnx.proto that libonnx-dev installs, and linked against
# libprotobuf-c (libprotobuf-c-dev).
find_program(CQ_PROTOC_C NAMES protoc-c protoc-gen-c)
if(NOT CQ_PROTOC_C)
  message(FATAL_ERROR "cquant needs protoc-c to generate the ONNX bindings (Debian package: "
                      "protobuf-c-compiler; run `make deps`)")
endif()
find_path(CQ_PROTOBUF_C_INCLUDE protobuf-c/protobuf-c.h)
find_library(CQ_PROTOBUF_C_LIB protobuf-c)
if(NOT CQ_PROTOBUF_C_INCLUDE OR NOT CQ_PROTOBUF_C_LIB)
  message(FATAL_ERROR "cquant needs libprotobuf-c for ONNX files (Debian package: libprotobuf-c-dev; "
                      "run `make deps`)")
endif()
find_file(CQ_ONNX_PROTO onnx.proto PATH_SUFFIXES onnx)
if(NOT CQ_ONNX_PROTO)
  message(FATAL_ERROR "cquant needs onnx.proto to read ONNX files (Debian package: libonnx-dev; "
                      "run `make deps`)")
endif()
list(APPEND CQ_SYSTEM_LIBS ${CQ_PROTOBUF_C_LIB})

# Optional: oneDNN (Debian package libdnnl-dev), only for the benchmarks in bench/, which compare
# against it in the same process. The library and the tests never need it.
find_path(CQ_DNNL_INCLUDE_DIR dnnl.h PATH_SUFFIXES oneapi/dnnl)
find_library(CQ_DNNL_LIBRARY dnnl)
if(CQ_DNNL_INCLUDE_DIR AND CQ_DNNL_LIBRARY)
  set(CQ_DNNL_FOUND ON)
  message(STATUS "oneDNN found (benchmarks compare against it): ${CQ_DNNL_LIBRARY}")
else()
  set(CQ_DNNL_FOUND OFF)
  message(STATUS "oneDNN not found: benchmarks run without the oneDNN anchor (Debian package libdnnl-dev)")
endif()

# Optional: XNNPACK (Debian package libxnnpack-dev) and the pthreadpool it runs on (libpthreadpool-dev:
# xnnpack.h includes pthreadpool.h, and the benchmarks create the pools), only for the benchmarks in
# bench/, which compare against it in the same process. The library and the tests never need it.
# The benchmarks call the operator API of Debian 12's XNNPACK (0.0~git20220216); a version whose
# signatures differ is reported and left out rather than breaking the build. -DCQ_BENCH_XNNPACK=OFF
# leaves it out even when installed.
option(CQ_BENCH_XNNPACK "Compare the benchmarks against XNNPACK when it is installed" ON)
set(CQ_XNNPACK_FOUND OFF)
if(CQ_BENCH_XNNPACK)
  find_path(CQ_XNNPACK_INCLUDE_DIR xnnpack.h)
  find_library(CQ_XNNPACK_LIBRARY XNNPACK)
  find_path(CQ_PTHREADPOOL_INCLUDE_DIR pthreadpool.h)
  find_library(CQ_PTHREADPOOL_LIBRARY pthreadpool)
  set(cq_xnnpack_missing)
  if(NOT CQ_XNNPACK_INCLUDE_DIR OR NOT CQ_XNNPACK_LIBRARY)
    list(APPEND cq_xnnpack_missing "xnnpack.h and libXNNPACK (Debian package libxnnpack-dev)")
  endif()
  if(NOT CQ_PTHREADPOOL_INCLUDE_DIR OR NOT CQ_PTHREADPOOL_LIBRARY)
    list(APPEND cq_xnnpack_missing "pthreadpool.h and libpthreadpool (Debian package libpthreadpool-dev)")
  endif()
  if(cq_xnnpack_missing)
    list(JOIN cq_xnnpack_missing "; " cq_xnnpack_missing)
    message(STATUS "XNNPACK not found: benchmarks run without the XNNPACK anchor (missing: "
                   "${cq_xnnpack_missing})")
  else()
    # The operators the benchmarks create, with the argument lists they pass.
    include(CheckCSourceCompiles)
    set(CMAKE_REQUIRED_INCLUDES ${CQ_XNNPACK_INCLUDE_DIR} ${CQ_PTHREADPOOL_INCLUDE_DIR})
    set(CMAKE_REQUIRED_LIBRARIES ${CQ_XNNPACK_LIBRARY} ${CQ_PTHREADPOOL_LIBRARY})
    set(CMAKE_REQUIRED_QUIET ON)
    check_c_source_compiles([=[
#include <stdint.h>
#include <pthreadpool.h>
#include <xnnpack.h>
int main(void) {
  xnn_operator_t op = 0;
  const uint8_t k[1] = {0};
  const int8_t ks[1] = {0};
  const float s[1] = {1.0f}, f[1] = {0.0f};
  pthreadpool_t pool = pthreadpool_create(1);
  int r = xnn_initialize(0) == xnn_status_success;
  r += xnn_create_fully_connected_nc_qu8(1, 1, 1, 1, 0, 1.0f, 0, 1.0f, k, 0, 0, 1.0f, 0, 255, 0, &op);
  r += xnn_setup_fully_connected_nc_qu8(op, 1, k, 0, pool);
  r += xnn_create_convolution2d_nhwc_qu8(0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1.0f, 0,
                                         1.0f, k, 0, 0, 1.0f, 0, 255, 0, &op);
  r += xnn_setup_convolution2d_nhwc_qu8(op, 1, 1, 1, k, 0, pool);
  r += xnn_create_convolution2d_nhwc_qc8(0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1.0f, s,
                                         ks, 0, 0, 1.0f, -128, 127, 0, &op);
  r += xnn_setup_convolution2d_nhwc_qc8(op, 1, 1, 1, ks, 0, pool);
  r += xnn_create_convolution2d_nhwc_f32(0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, f, f, 0.0f,
                                         1.0f, 0, &op);
  r += xnn_setup_convolution2d_nhwc_f32(op, 1, 1, 1, f, 0, pool);
  r += xnn_run_operator(op, pool) + xnn_delete_operator(op);
  pthreadpool_parallelize_1d(pool, 0, 0, 0, PTHREADPOOL_FLAG_YIELD_WORKERS);
  pthreadpool_destroy(pool);
  return r;
}
]=] CQ_XNNPACK_API_OK)
    unset(CMAKE_REQUIRED_INCLUDES)
    unset(CMAKE_REQUIRED_LIBRARIES)
    unset(CMAKE_REQUIRED_QUIET)
    if(CQ_XNNPACK_API_OK)
      set(CQ_XNNPACK_FOUND ON)
      message(STATUS "XNNPACK found (benchmarks compare against it): ${CQ_XNNPACK_LIBRARY}")
    else()
      message(STATUS "XNNPACK found but its operator API is not the one the benchmarks call "
                     "(Debian 12's libxnnpack-dev): benchmarks run without the XNNPACK anchor")
    endif()
  endif()
else()
  message(STATUS "XNNPACK anchor turned off (CQ_BENCH_XNNPACK=OFF)")
endif()
