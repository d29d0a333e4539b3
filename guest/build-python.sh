#!/bin/sh
# Builds the guest: CPython 3.11 for wasm32-wasi, from Debian's source packages,
# with zlib, bzip2, xz (liblzma) and SQLite compiled in.  Everything comes from Debian: the sources
# (apt-get source), clang-19/lld-19, wasi-libc and the wasm32 compiler runtime.
#
# Usage: guest/build-python.sh BUILD_DIR
# Produces BUILD_DIR/guest/python.wasm (and the build tree in BUILD_DIR/guest/cpython),
# with capsule's entries (guest/capsule_entry.c) exported beside _start.
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
bzip2_src=$(fetch_source bzip2 'bzip2-1.*')
xz_src=$(fetch_source xz-utils 'xz-utils-5.*')
here=$(cd "$(dirname "$0")" && pwd)

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

# bzip2 (for _bz2): plain C, like zlib.
if [ ! -f "$deps/lib/libbz2.a" ]; then
    mkdir -p "$out/bzip2"
    for f in blocksort huffman crctable randtable compress decompress bzlib; do
        $wasi_cc $wasi_cflags -D_FILE_OFFSET_BITS=64 -c "$bzip2_src/$f.c" -o "$out/bzip2/$f.o"
    done
    $wasi_ar rcs "$deps/lib/libbz2.a" "$out/bzip2"/*.o
    cp "$bzip2_src/bzlib.h" "$deps/include/"
fi

# liblzma (for _lzma), single-threaded.  Its header for the xz tool's signal
# masking includes <signal.h>, which wasi-libc refuses; liblzma itself never
# uses it, so the wasi target skips that block.
if [ ! -f "$deps/lib/liblzma.a" ]; then
    sed -i 's|^#if !(defined(_WIN32) \&\& !defined(__CYGWIN__))$|& \&\& !defined(__wasi__)|' \
        "$xz_src/src/common/mythread.h"
    mkdir -p "$out/xz"
    (cd "$out/xz" && \
     CC="$wasi_cc" AR="$wasi_ar" RANLIB="$wasi_ranlib" CFLAGS="-O2" \
     "$xz_src/configure" -q --host=wasm32-unknown-wasi --build=x86_64-pc-linux-gnu \
        --disable-threads --disable-shared --enable-static --disable-xz --disable-xzdec \
        --disable-lzmadec --disable-lzmainfo --disable-scripts --disable-doc --disable-nls \
        --disable-lzma-links >"$out/xz-configure.log" 2>&1 && \
     make -s -j"$(nproc)" -C src/liblzma >"$out/xz-make.log" 2>&1) \
    || { tail -30 "$out/xz-configure.log" "$out/xz-make.log"; exit 1; }
    cp "$out/xz/src/liblzma/.libs/liblzma.a" "$deps/lib/"
    cp -r "$xz_src/src/liblzma/api/lzma.h" "$xz_src/src/liblzma/api/lzma" "$deps/include/"
fi

# SQLite: the amalgamation is generated natively (needs tclsh), then compiled
# for WASI.  wasi-libc has no file locking, so SQLite's unix VFS cannot be
# used; SQLITE_OS_OTHER plus guest/sqlite-wasi-vfs.c takes its place: plain
# POSIX I/O, and locks and the WAL index kept in process (several
# connections of one program to one file see each other's commits).
sqlite_flags="-DSQLITE_OS_OTHER=1 -DSQLITE_THREADSAFE=0 -DSQLITE_OMIT_LOAD_EXTENSION \
    -DSQLITE_MAX_MMAP_SIZE=0 -DSQLITE_ENABLE_FTS5 -DSQLITE_ENABLE_MATH_FUNCTIONS"
sqlite_stamp="$sqlite_flags $(sha256sum "$here/sqlite-wasi-vfs.c" | cut -c1-64)"
if [ "$(cat "$deps/sqlite-stamp" 2>/dev/null)" != "$sqlite_stamp" ]; then
    rm -f "$deps/lib/libsqlite3.a"
fi
if [ ! -f "$deps/lib/libsqlite3.a" ]; then
    mkdir -p "$out/sqlite-native"
    if [ ! -f "$out/sqlite-native/sqlite3.c" ]; then
        (cd "$out/sqlite-native" && "$sqlite_src/configure" --quiet >/dev/null && make -s sqlite3.c >/dev/null)
    fi
    rm -rf "$out/sqlite"
    mkdir -p "$out/sqlite"
    $wasi_cc $wasi_cflags $sqlite_flags -c "$out/sqlite-native/sqlite3.c" -o "$out/sqlite/sqlite3.o"
    $wasi_cc $wasi_cflags $sqlite_flags -I"$out/sqlite-native" \
        -c "$here/sqlite-wasi-vfs.c" -o "$out/sqlite/vfs.o"
    $wasi_ar rcs "$deps/lib/libsqlite3.a" "$out/sqlite"/*.o
    cp "$out/sqlite-native/sqlite3.h" "$deps/include/"
    echo "$sqlite_stamp" > "$deps/sqlite-stamp"
    # CPython links the archive: relink it.
    rm -f "$out/cpython/python.wasm"
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
# What configure finds depends on these too (capsule-configure-flags).
configure_libraries="zlib bz2 lzma sqlite3"
# Reconfigure from scratch whenever the flags change.
if [ "$(cat "$pybuild/capsule-configure-flags" 2>/dev/null)" != "$configure_flags $wasi_cflags $configure_libraries" ]; then
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
     BZIP2_CFLAGS="-I$deps/include" BZIP2_LIBS="-L$deps/lib -lbz2" \
     LIBLZMA_CFLAGS="-I$deps/include" LIBLZMA_LIBS="-L$deps/lib -llzma" \
     PKG_CONFIG_LIBDIR=/nonexistent \
     "$python_src/configure" -q $configure_flags >"$out/configure.log" 2>&1) \
    || { tail -30 "$out/configure.log"; exit 1; }
    echo "$configure_flags $wasi_cflags $configure_libraries" > "$pybuild/capsule-configure-flags"
fi
# C extensions compiled in (guest/extensions/*.sh, helpers in common.sh):
# each leaves archives to link ($ext_dir/NAME.link) and the modules it
# defines ($ext_dir/NAME.inittab); extensions-inittab.c registers them all
# with CPython before it starts (a constructor: it runs from _start and from
# capsule_init alike, before Py_Initialize).
. "$here/extensions/common.sh"
extensions="lxml pillow"
for e in $extensions; do . "$here/extensions/$e.sh"; done
inittab_c="$ext_dir/extensions-inittab.c"
{
    echo "/* Generated by guest/build-python.sh from guest/extensions. */"
    echo "#include <Python.h>"
    for e in $extensions; do
        while read -r module init; do echo "extern PyObject *$init(void); /* $module */"; done < "$ext_dir/$e.inittab"
    done
    echo "static struct _inittab capsule_extensions[] = {"
    for e in $extensions; do
        while read -r module init; do echo "    {\"$module\", $init},"; done < "$ext_dir/$e.inittab"
    done
    echo "    {NULL, NULL}"
    echo "};"
    echo "__attribute__((constructor)) static void capsule_register_extensions(void) {"
    echo "    /* Only fails when out of memory; the imports then fail, not the start. */"
    echo "    (void)PyImport_ExtendInittab(capsule_extensions);"
    echo "}"
} > "$inittab_c.new"
if ! cmp -s "$inittab_c.new" "$inittab_c"; then
    mv "$inittab_c.new" "$inittab_c"
    $wasi_cc $wasi_cflags -Wall -Wextra -Werror -I"$pybuild" -I"$python_src/Include" \
        -c "$inittab_c" -o "$ext_dir/extensions-inittab.o"
    rm -f "$pybuild/python.wasm"
fi
rm -f "$inittab_c.new"
ext_link="$ext_dir/extensions-inittab.o $(for e in $extensions; do cat "$ext_dir/$e.link"; done | tr '\n' ' ')"

# capsule's entries (capsule_init, capsule_call: guest/capsule_entry.c),
# linked into python.wasm beside CPython's main; relink when they change.
entry="$out/capsule_entry.o"
$wasi_cc $wasi_cflags -Wall -Wextra -Werror -I"$pybuild" -I"$python_src/Include" \
    -c "$here/capsule_entry.c" -o "$entry.new"
if cmp -s "$entry.new" "$entry"; then
    rm "$entry.new"
else
    mv "$entry.new" "$entry"
    rm -f "$pybuild/python.wasm"
fi
# setjmp/longjmp (guest/extensions/common.sh): the env.invoke_<signature>
# imports LLVM made are the only undefined symbols allowed; the host
# provides them (src/runtime/sjlj.c, generated by tools/sjlj-invokes.py,
# which fails on any other "env" import).
sjlj_imports="$ext_dir/sjlj-imports.txt"
# shellcheck disable=SC2086
llvm-nm-19 -u --format=just-symbols $ext_link 2>/dev/null | grep '^invoke_[vijfd][ijfd]*$' | sort -u \
    > "$sjlj_imports.new" || true
if ! cmp -s "$sjlj_imports.new" "$sjlj_imports"; then
    mv "$sjlj_imports.new" "$sjlj_imports"
    rm -f "$pybuild/python.wasm"
fi
rm -f "$sjlj_imports.new"
# The guest's C stack (wasm shadow stack) sits below the data, so overflow
# traps instead of corrupting memory.  CPython's 512 KiB overflows through C
# recursion (repr of nested lists) before the recursion limit; 8 MiB does not.
make -C "$pybuild" -s -j"$(nproc)" \
    LDFLAGS_NODIST="-z stack-size=8388608 -Wl,--stack-first -Wl,--initial-memory=20971520 -Wl,--allow-undefined-file=$sjlj_imports $entry $ext_link" \
    python.wasm pybuilddir.txt >"$out/make.log" 2>&1 || { tail -40 "$out/make.log"; exit 1; }
# The host enters the guest through these (src/runtime/runtime.c).
for export in capsule_init capsule_call; do
    wasm-objdump -x -j Export "$pybuild/python.wasm" | grep -q -e "-> \"$export\"" || \
        { echo "build-python.sh: python.wasm does not export $export" >&2; exit 1; }
done
cp "$pybuild/python.wasm" "$out/python.wasm"
