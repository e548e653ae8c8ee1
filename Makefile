# Ember: `make demo` runs the bundled example functions, `make test` passes the tests.
BUILD ?= build
FUZZ_BUILD ?= build-fuzz
FUZZ_SECONDS ?= 20
CMAKE_FLAGS ?=

.PHONY: all deps build test fuzz-build demo fuzz bench clean

all: build

deps:
	@bash scripts/deps.sh

build: deps
	@cmake -S . -B $(BUILD) -G Ninja $(CMAKE_FLAGS) >/dev/null
	@cmake --build $(BUILD)

# Unit tests here; VM tests on this host's /dev/kvm, or under
# scripts/kvm-in-qemu where there is none (tests/run.py --help); the fuzzers.
test: build fuzz-build
	@python3 scripts/check-layers
	@python3 tests/run.py --build $(BUILD) --fuzz-bin $(FUZZ_BUILD)/bin --fuzz-seconds $(FUZZ_SECONDS)

# The libFuzzer targets: a clang build in $(FUZZ_BUILD).
fuzz-build: deps
	@cmake -S . -B $(FUZZ_BUILD) -G Ninja -DEMBER_FUZZ=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	  -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ >/dev/null
	@cmake --build $(FUZZ_BUILD)

# Each libFuzzer target runs FUZZ_SECONDS on its seed corpus.
fuzz: fuzz-build
	@bash tests/fuzz/run.sh $(FUZZ_BUILD)/bin $(FUZZ_SECONDS)

demo: build
	@bash examples/demo.sh $(BUILD)/bin

bench: build
	$(BUILD)/bin/ember-bench boot -n 200

clean:
	rm -rf $(BUILD) $(FUZZ_BUILD)
