#!/bin/sh
# Builds the guest: CPython 3.11 for wasm32-wasi, from Debian's source packages,
# with zlib and SQLite compiled in.  Everything comes from Debian: the sources
# (apt-get source), clang-19/lld-19, wasi-libc and the wasm32 compiler runtime.
#
# Usage: guest/build-python.sh BUILD_DIR
# Produces BUILD_DIR/guest/python.wasm (and the build tree in BUILD_DIR/guest/cpython).
set -eu
# Called from make -j: let the inner make use its own -j, not a jobserver
# it cannot reach.
unset MAKEFLAGS MFLAGS MAKELEVEL

build=$(realpath "$1")
src="$build/src"
out="$build/guest"
mkdir -p "$src" "$out"

# CPython's Tools/wasm recipe wraps the WASI SDK's clang; Debian's clang-19
# with an explicit target is the same compiler; Debian installs wasi-libc
# where that target looks for it.
wasi_cc="clang-19 --target=wasm32-wasi"
wasi_ar="llvm-ar-19"
wasi_ranlib="llvm-ranlib-19"
# clang-19 turns these into errors; CPython 3.11's WASI port predates that.
wasi_cflags="-O2 -Wno-error=int-conversion -Wno-error=incompatible-function-pointer-types"

fetch_source() {  # package directory-glob
    if ! ls -d "$src"/$2 >/dev/null 2>&1; then
        (cd "$src" && apt-get source -qq "$1") >&2
    fi
    ls -d "$src"/$2 | head -n 1
}

python_src=$(fetch_source python3.11 'python3.11-3.11.*')
zlib_src=$(fetch_source zlib 'zlib-1.*')
sqlite_src=$(fetch_source sqlite3 'sqlite3-3.*')

deps="$out/deps"
mkdir -p "$deps/include" "$deps/lib"

# zlib: plain C, no configure needed for a static library.
if [ ! -f "$deps/lib/libz.a" ]; then
    mkdir -p "$out/zlib"
    for f in adler32 compress crc32 deflate gzclose gzlib gzread gzwrite \
             infback inffast inflate inftrees trees uncompr zutil; do
        $wasi_cc $wasi_cflags -D_LARGEFILE64_SOURCE=1 -c "$zlib_src/$f.c" -o "$out/zlib/$f.o"
    done
    $wasi_ar rcs "$deps/lib/libz.a" "$out/zlib"/*.o
    cp "$zlib_src/zlib.h" "$zlib_src/zconf.h" "$deps/include/"
fi

# SQLite: the amalgamation is generated natively (needs tclsh), then compiled
# for WASI.  wasi-libc has no file locking, so SQLite's unix VFS cannot be
# used; SQLITE_OS_OTHER plus guest/sqlite-wasi-vfs.c (plain POSIX I/O, no
# locks: one process owns the sandbox) takes its place.
if [ ! -f "$deps/lib/libsqlite3.a" ]; then
    mkdir -p "$out/sqlite-native"
    if [ ! -f "$out/sqlite-native/sqlite3.c" ]; then
        (cd "$out/sqlite-native" && "$sqlite_src/configure" --quiet >/dev/null && make -s sqlite3.c >/dev/null)
    fi
    sqlite_flags="-DSQLITE_OS_OTHER=1 -DSQLITE_THREADSAFE=0 -DSQLITE_OMIT_LOAD_EXTENSION \
        -DSQLITE_OMIT_WAL -DSQLITE_MAX_MMAP_SIZE=0 \
        -DSQLITE_DEFAULT_LOCKING_MODE=1 -DSQLITE_ENABLE_FTS5 -DSQLITE_ENABLE_MATH_FUNCTIONS"
    mkdir -p "$out/sqlite"
    $wasi_cc $wasi_cflags $sqlite_flags -c "$out/sqlite-native/sqlite3.c" -o "$out/sqlite/sqlite3.o"
    $wasi_cc $wasi_cflags $sqlite_flags -I"$out/sqlite-native" \
        -c "$(dirname "$0")/sqlite-wasi-vfs.c" -o "$out/sqlite/vfs.o"
    $wasi_ar rcs "$deps/lib/libsqlite3.a" "$out/sqlite"/*.o
    cp "$out/sqlite-native/sqlite3.h" "$deps/include/"
fi

# CPython, cross-compiled with the build Python being Debian's own
# python3.11 (same 3.11.x source), as Tools/wasm's recipe does with its own.
# --with-pymalloc: CPython's configure turns its small-object allocator off
# for WASI, so every int, frame and tuple would go through wasi-libc's
# malloc.  It needs no mmap (arenas come from malloc without it).
pybuild="$out/cpython"
configure_flags="--host=wasm32-unknown-wasi --build=x86_64-pc-linux-gnu \
    --with-build-python=/usr/bin/python3.11 --prefix=/usr/local \
    --with-pymalloc --disable-test-modules --without-ensurepip"
# Reconfigure from scratch whenever the flags change.
if [ "$(cat "$pybuild/capsule-configure-flags" 2>/dev/null)" != "$configure_flags $wasi_cflags" ]; then
    rm -rf "$pybuild"
fi
mkdir -p "$pybuild"
if [ ! -f "$pybuild/Makefile" ]; then
    touch "$python_src/Modules/Setup.local"
    (cd "$pybuild" && \
     CONFIG_SITE="$python_src/Tools/wasm/config.site-wasm32-wasi" \
     CC="$wasi_cc" CPP="$wasi_cc -E" AR="$wasi_ar" RANLIB="$wasi_ranlib" \
     CFLAGS="$wasi_cflags" \
     ZLIB_CFLAGS="-I$deps/include" ZLIB_LIBS="-L$deps/lib -lz" \
     LIBSQLITE3_CFLAGS="-I$deps/include" LIBSQLITE3_LIBS="-L$deps/lib -lsqlite3" \
     PKG_CONFIG_LIBDIR=/nonexistent \
     "$python_src/configure" -q $configure_flags >"$out/configure.log" 2>&1) \
    || { tail -30 "$out/configure.log"; exit 1; }
    echo "$configure_flags $wasi_cflags" > "$pybuild/capsule-configure-flags"
fi
# The guest's C stack (wasm shadow stack) sits below the data, so overflow
# traps instead of corrupting memory.  CPython's 512 KiB overflows through C
# recursion (repr of nested lists) before the recursion limit; 8 MiB does not.
make -C "$pybuild" -s -j"$(nproc)" \
    LDFLAGS_NODIST="-z stack-size=8388608 -Wl,--stack-first -Wl,--initial-memory=20971520" \
    python.wasm pybuilddir.txt >"$out/make.log" 2>&1 || { tail -40 "$out/make.log"; exit 1; }
cp "$pybuild/python.wasm" "$out/python.wasm"
