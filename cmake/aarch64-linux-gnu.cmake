# Cross build for AArch64 Linux with Debian's gcc-aarch64-linux-gnu (`make test-aarch64`).
#
# The libraries come from Debian multiarch (dpkg --add-architecture arm64; libcjson-dev:arm64,
# libopenblas-dev:arm64, zlib1g-dev:arm64, libprotobuf-c-dev:arm64; CQ_ARM_DEPS=1
# tools/install-deps.sh installs them): headers in /usr/include and /usr/include/aarch64-linux-gnu,
# libraries in /usr/lib/aarch64-linux-gnu. CMake searches those arch directories itself once it
# knows the library architecture (taken from the cross compiler), and never the x86-64 ones.
# Host programs (protoc-c) and arch-independent files (onnx.proto of libonnx-dev) are found on the
# host as usual: no find root path is set.
#
# Tests run under qemu-user through cmake/qemu-aarch64.sh (CMAKE_CROSSCOMPILING_EMULATOR), whose
# CPU model CQ_QEMU_CPU picks at run time (cortex-a53: NEON only; max: NEON + dot product).
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(CQ_CROSS_TRIPLET aarch64-linux-gnu)

set(CMAKE_C_COMPILER ${CQ_CROSS_TRIPLET}-gcc)
set(CMAKE_LIBRARY_ARCHITECTURE ${CQ_CROSS_TRIPLET})

# Libraries of the arm64 multiarch packages depend on others in the same directory (OpenBLAS on
# libgfortran); the linker must look there to resolve them.
set(CMAKE_EXE_LINKER_FLAGS_INIT "-Wl,-rpath-link,/usr/lib/${CQ_CROSS_TRIPLET}")
set(CMAKE_SHARED_LINKER_FLAGS_INIT "-Wl,-rpath-link,/usr/lib/${CQ_CROSS_TRIPLET}")

set(CMAKE_CROSSCOMPILING_EMULATOR ${CMAKE_CURRENT_LIST_DIR}/qemu-aarch64.sh)
