# Thin wrapper over CMake: `make` builds, `make test` runs every test, `make demo` runs the demo.
BUILD ?= build
CMAKE ?= cmake
JOBS ?= $(shell nproc 2>/dev/null || echo 2)

.PHONY: all test demo install deps clean golden bench test-sanitize fuzz fuzz-build test-aarch64 \
	bench-aarch64 test-valgrind test-tsan

all: $(BUILD)/Makefile
	$(CMAKE) --build $(BUILD) -j $(JOBS)

$(BUILD)/Makefile:
	$(CMAKE) -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release

test: all
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

# The whole suite again under AddressSanitizer + UndefinedBehaviorSanitizer (CMake option
# CQ_SANITIZE) in its own build folder; any report, leaks included, fails the test that caused it.
SANITIZE_BUILD ?= build-sanitize
SANITIZE_ENV = ASAN_OPTIONS=detect_leaks=1:strict_string_checks=1:check_initialization_order=1:detect_stack_use_after_return=1 \
	UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1

test-sanitize:
	$(CMAKE) -S . -B $(SANITIZE_BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCQ_SANITIZE=ON
	$(CMAKE) --build $(SANITIZE_BUILD) -j $(JOBS)
	cd $(SANITIZE_BUILD) && $(SANITIZE_ENV) ctest --output-on-failure -j $(JOBS)

# The tests that run work on several threads (the pool itself, GEMM, convolutions, Quantize and
# add, whole models at 1-3 threads) under ThreadSanitizer in their own build folder: any race
# report fails the run.
TSAN_BUILD ?= build-tsan
TSAN_TESTS ?= test_core test_determinism test_qgemm test_qconv_kernels test_qmodules \
	test_channels_last
TSAN_FLAGS = -fsanitize=thread

test-tsan:
	$(CMAKE) -S . -B $(TSAN_BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_FLAGS="$(TSAN_FLAGS)" \
	  -DCMAKE_EXE_LINKER_FLAGS="$(TSAN_FLAGS)" -DCMAKE_SHARED_LINKER_FLAGS="$(TSAN_FLAGS)"
	$(CMAKE) --build $(TSAN_BUILD) -j $(JOBS) --target $(TSAN_TESTS)
	@set -e; for t in $(TSAN_TESTS); do echo "== tsan $$t"; \
	  (cd $(TSAN_BUILD) && TSAN_OPTIONS=halt_on_error=1 ./$$t > /dev/null); done; \
	  echo "tsan: $(words $(TSAN_TESTS)) tests clean"

# A representative subset under valgrind's memcheck (the file readers, ONNX in and out, graph mode,
# a static model end to end, the fuzz regressions): any invalid access, uninitialised use or leak
# fails it. valgrind does not model AVX-512, so the kernels run their AVX2 forms here (CPUID as
# valgrind reports it); the AVX-512 and AMX forms are covered by make test and test-sanitize.
VALGRIND_TESTS ?= test_npy test_idx test_safetensors test_onnx_import test_onnx_export \
	test_graph_mode test_qstatic test_fuzz_regressions
VALGRIND ?= valgrind --quiet --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite,indirect

test-valgrind: all
	@set -e; for t in $(VALGRIND_TESTS); do echo "== valgrind $$t"; \
	  (cd $(BUILD) && $(VALGRIND) ./$$t > /dev/null); done; echo "valgrind: $(words $(VALGRIND_TESTS)) tests clean"

# The whole suite cross-built for AArch64 (cmake/aarch64-linux-gnu.cmake: Debian's
# gcc-aarch64-linux-gnu and arm64 multiarch libraries, `CQ_ARM_DEPS=1 make deps`) and run under
# qemu-user. `-cpu max` has the ARMv8.2 dot product: the whole suite runs with neondot as the
# default kernel set, and every test that compares kernel sets runs scalar, neon and neondot
# against the reference. `-cpu cortex-a53` has NEON only: the kernel and quantized-model tests
# (AARCH64_NEON_TESTS) run again with neon as the default set. Before each run the tool reports
# which set it picked. cli_demo (whole models trained and timed: over 15 minutes under emulation)
# is left to the native suite; its kernels and models are the ones the other tests cover.
AARCH64_BUILD ?= build-aarch64
AARCH64_EMU = $(CURDIR)/cmake/qemu-aarch64.sh
AARCH64_NEON_TESTS ?= test_qgemm|test_qconv_kernels|test_requant|test_qlinear_golden|test_qmodules|test_qstatic|test_qdynamic|test_graph_mode

test-aarch64:
	$(CMAKE) -S . -B $(AARCH64_BUILD) -DCMAKE_TOOLCHAIN_FILE=$(CURDIR)/cmake/aarch64-linux-gnu.cmake \
	  -DCMAKE_BUILD_TYPE=Release
	$(CMAKE) --build $(AARCH64_BUILD) -j $(JOBS)
	@set -e; for cpu in max cortex-a53; do \
	  isa=$$(CQ_QEMU_CPU=$$cpu $(AARCH64_EMU) $(AARCH64_BUILD)/cquant bench --op linear \
	    --shape 4,64,16 --reps 1 --min-ms 0 --threads 1 | sed -n 's/.*"isa": "\([a-z0-9]*\)".*/\1/p'); \
	  if [ $$cpu = max ]; then filter="-E cli_demo"; else filter="-R $(AARCH64_NEON_TESTS)"; fi; \
	  echo "== AArch64 under qemu-aarch64 -cpu $$cpu: kernel set $$isa, ctest $$filter"; \
	  (cd $(AARCH64_BUILD) && CQ_QEMU_CPU=$$cpu ctest --output-on-failure -j $(JOBS) $$filter); \
	done

# Instruction counts of the AArch64 GEMM kernels under emulation (scalar, neon, neondot), the
# speed figure available without ARM hardware; needs the build of test-aarch64.
bench-aarch64:
	bash bench/bench_qgemm_arm.sh $(AARCH64_BUILD)

# libFuzzer harnesses (fuzz/fuzz_*.c; needs clang and its runtime: Debian's clang, libclang-rt-14-dev),
# built with ASan + UBSan in their own folder, then each run for FUZZ_SECONDS from the seed corpus
# in fuzz/corpus/NAME. Crashes land in $(FUZZ_BUILD)/crashes/NAME and fail the target.
FUZZ_BUILD ?= build-fuzz
FUZZ_CC ?= clang
FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?= npy idx safetensors observe onnx onnx_run

fuzz-build:
	$(CMAKE) -S fuzz -B $(FUZZ_BUILD) -DCMAKE_C_COMPILER=$(FUZZ_CC) -DCMAKE_BUILD_TYPE=RelWithDebInfo
	$(CMAKE) --build $(FUZZ_BUILD) -j $(JOBS) --target $(addprefix fuzz_,$(FUZZ_TARGETS))

fuzz: fuzz-build
	./fuzz/run.sh $(FUZZ_BUILD) $(FUZZ_SECONDS) $(FUZZ_TARGETS)

demo: all
	./$(BUILD)/cquant demo --report $(BUILD)/demo-report.html

install: all
	$(CMAKE) --install $(BUILD) $(if $(PREFIX),--prefix $(PREFIX),)

# Benchmarks against the anchors on this machine (oneDNN, PyTorch). Needs libdnnl-dev
# (CQ_BENCH_DEPS=1 make deps) and python3-torch; never part of `make test`.
bench: all
	$(CMAKE) --build $(BUILD) --target bench
	/usr/bin/python3 bench/histogram_vs_torch.py --bench $(BUILD)/bench_histogram
	/usr/bin/python3 bench/float_model_vs_torch.py --bench $(BUILD)/bench_float_model

# Installs the Debian packages the build needs (run as root).
deps:
	./tools/install-deps.sh

# Regenerates the golden data from PyTorch 1.13 (needs Debian's python3-torch).
golden:
	./tools/golden/generate_all.sh

clean:
	rm -rf $(BUILD)
