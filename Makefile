# Thin wrapper over CMake: `make` builds, `make test` runs every test, `make demo` runs the demo.
BUILD ?= build
CMAKE ?= cmake
JOBS ?= $(shell nproc 2>/dev/null || echo 2)

.PHONY: all test demo install deps clean golden bench test-sanitize fuzz fuzz-build

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

# libFuzzer harnesses (fuzz/fuzz_*.c; needs clang and its runtime: Debian's clang, libclang-rt-14-dev),
# built with ASan + UBSan in their own folder, then each run for FUZZ_SECONDS from the seed corpus
# in fuzz/corpus/NAME. Crashes land in $(FUZZ_BUILD)/crashes/NAME and fail the target.
FUZZ_BUILD ?= build-fuzz
FUZZ_CC ?= clang
FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?= npy idx safetensors observe

fuzz-build:
	$(CMAKE) -S fuzz -B $(FUZZ_BUILD) -DCMAKE_C_COMPILER=$(FUZZ_CC) -DCMAKE_BUILD_TYPE=RelWithDebInfo
	$(CMAKE) --build $(FUZZ_BUILD) -j $(JOBS) --target $(addprefix fuzz_,$(FUZZ_TARGETS))

fuzz: fuzz-build
	./fuzz/run.sh $(FUZZ_BUILD) $(FUZZ_SECONDS) $(FUZZ_TARGETS)

demo: all
	./$(BUILD)/cquant demo

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
