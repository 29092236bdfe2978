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

find_package(Threads REQUIRED)

set(CQ_SYSTEM_LIBS ${CQ_CJSON_LIB} Threads::Threads ${CQ_LIBM})
