# System dependencies. Each is a Debian package; when one is missing the configure step stops with
# the package to install (`.ci/run` and `make deps` install them).
include(CheckIncludeFile)

find_library(CQ_LIBM m)
if(NOT CQ_LIBM)
  message(FATAL_ERROR "cquant needs the C math library (Debian package: libc6-dev)")
endif()
set(CQ_SYSTEM_LIBS ${CQ_LIBM})
