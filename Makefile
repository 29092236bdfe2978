# Thin wrapper over CMake: `make` builds, `make test` runs every test, `make demo` runs the demo.
BUILD ?= build
CMAKE ?= cmake
JOBS ?= $(shell nproc 2>/dev/null || echo 2)

.PHONY: all test demo install deps clean golden bench

all: $(BUILD)/Makefile
	$(CMAKE) --build $(BUILD) -j $(JOBS)

$(BUILD)/Makefile:
	$(CMAKE) -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release

test: all
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

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
