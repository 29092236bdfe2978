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
