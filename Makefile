# Ember: `make demo` runs the bundled example functions, `make test` passes the tests.
BUILD ?= build
FUZZ_BUILD ?= build-fuzz
FUZZ_SECONDS ?= 20
CMAKE_FLAGS ?=

.PHONY: all deps build test unit demo fuzz bench clean

all: build

deps:
	@bash scripts/deps.sh

build: deps
	@cmake -S . -B $(BUILD) -G Ninja $(CMAKE_FLAGS) >/dev/null
	@cmake --build $(BUILD)

test: build
	cd $(BUILD) && ctest --output-on-failure --timeout 600 -j2
	@$(MAKE) --no-print-directory fuzz

# Each libFuzzer target runs FUZZ_SECONDS on its seed corpus (clang build in $(FUZZ_BUILD)).
fuzz: deps
	@cmake -S . -B $(FUZZ_BUILD) -G Ninja -DEMBER_FUZZ=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	  -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ >/dev/null
	@cmake --build $(FUZZ_BUILD)
	@bash tests/fuzz/run.sh $(FUZZ_BUILD)/bin $(FUZZ_SECONDS)

demo: build
	@bash examples/demo.sh $(BUILD)/bin

bench: build
	$(BUILD)/bin/ember-bench boot -n 200

clean:
	rm -rf $(BUILD) $(FUZZ_BUILD)
