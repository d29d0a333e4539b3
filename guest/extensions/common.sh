# Helpers for compiling C extensions (and the C libraries they need) into
# python.wasm.  Sourced by guest/build-python.sh after CPython is configured,
# with these set: wasi_cc wasi_ar wasi_ranlib wasi_cflags src out deps
# pybuild python_src fetch_source.
#
# An extension script (guest/extensions/NAME.sh) builds its libraries into
# $deps (headers in $deps/include, archives in $deps/lib), compiles the
# extension's own sources against the GUEST's headers (CPython's Include/ and
# the wasm build's pyconfig.h: never the host's /usr/include, and no
# -fstack-protector, which the host's sysconfig would add), archives the
# objects, and registers each module's init function:
#
#     ext_begin NAME                      # skip everything if up to date
#     ext_configure LIB SRC [configure args]; ext_make LIB [targets]
#     ext_cmake LIB SRC [-D options]      # CMake projects: configure+build+install
#     ext_cmake_target LIB SRC TARGET [cmake args]  # one target of a CMake project, built
#     ext_compile NAME "CFLAGS $ext_sjlj_cflags" FILE...  # code using setjmp
#     ext_compile NAME "CFLAGS" FILE...   # -> objects in $ext_dir/obj-NAME
#     ext_archive NAME LIB...             # lib archives to link after it
#     ext_register DOTTED.NAME PyInit_sym  # one line per module
#     ext_end NAME
#
# build-python.sh then turns the registrations into a table appended with
# PyImport_AppendInittab before CPython starts (extensions-inittab.c), and
# links every archive into python.wasm.  Dotted names (lxml.etree) are found
# by the meta-path finder in _capsule_runner.py (the built-in importer only
# looks at top-level names).

ext_dir="$out/extensions"
mkdir -p "$ext_dir"
# What the extension modules are compiled with: CPython's own flags for
# extensions (-fwrapv -DNDEBUG), the guest's headers, the libraries' headers.
ext_cflags="$wasi_cflags -fwrapv -DNDEBUG -I$pybuild -I$python_src/Include -I$deps/include"

# ext_begin NAME: up to date when its script and outputs are unchanged.
ext_begin() {
    ext_name=$1
    ext_stamp_value=$(cat "$here/extensions/common.sh" "$here/extensions/$1.sh" \
        "$here/extensions/fix-method-signatures.py" "$here"/extensions/sjlj/* | sha256sum | cut -c1-64)
    if [ "$(cat "$ext_dir/$1.stamp" 2>/dev/null)" = "$ext_stamp_value" ] && \
       [ -f "$ext_dir/$1.inittab" ] && [ -f "$ext_dir/$1.link" ]; then
        return 1
    fi
    rm -f "$ext_dir/$1.inittab" "$ext_dir/$1.link" "$ext_dir/$1.stamp"
    rm -rf "$ext_dir/obj-$1"
    # A changed extension changes the link.
    rm -f "$pybuild/python.wasm"
    echo "build-python.sh: building extension $1" >&2
    return 0
}

# ext_configure LIB SRC [configure args]: cross-configures the autotools
# source tree SRC for wasm32-wasi in $ext_dir/LIB, installing into $deps.
# Tarballs older than wasm32-wasi get a config.sub that knows it (xz's, from
# Debian too).  Logs are in $ext_dir/LIB-*.log.
ext_configure() {
    lib=$1 lsrc=$2
    shift 2
    for sub in $(find "$lsrc" -maxdepth 3 -name config.sub); do
        "$sub" wasm32-unknown-wasi >/dev/null 2>&1 || cp "$xz_src/build-aux/config.sub" "$sub"
    done
    rm -rf "$ext_dir/$lib" && mkdir -p "$ext_dir/$lib"
    (cd "$ext_dir/$lib" && \
     CC="$wasi_cc" AR="$wasi_ar" RANLIB="$wasi_ranlib" CFLAGS="$wasi_cflags" \
     CPPFLAGS="-I$deps/include" LDFLAGS="-L$deps/lib" PKG_CONFIG_LIBDIR=/nonexistent \
     "$lsrc/configure" -q --host=wasm32-unknown-wasi --build=x86_64-pc-linux-gnu \
        --prefix="$deps" --disable-shared --enable-static "$@" \
        >"$ext_dir/$lib-configure.log" 2>&1) \
    || { tail -40 "$ext_dir/$lib-configure.log" >&2; exit 1; }
}

# ext_make LIB [make args]: make in the configured tree.  Debian's patches
# touch Makefile.am/configure.ac without regenerating; the autotools are not
# needed (nor installed), so make is told not to rerun them.
ext_make() {
    lib=$1
    shift
    make -s -j"$(nproc)" -C "$ext_dir/$lib" ACLOCAL=: AUTOMAKE=: AUTOCONF=: AUTOHEADER=: "$@" \
        >>"$ext_dir/$lib-make.log" 2>&1 || { tail -40 "$ext_dir/$lib-make.log" >&2; exit 1; }
}

# ext_cmake LIB SRC [-D options]: cross-configures, builds and installs the
# CMake project SRC for wasm32-wasi in $ext_dir/LIB (static, into $deps),
# for libraries whose Debian tarball has no generated configure script
# (libtiff, OpenJPEG).  CMake knows no WASI system; "Generic" with clang's
# target is enough (its checks compile and link small programs against
# wasi-libc), and it searches no host directories, so a library the script
# does not name is not found.  Logs are in $ext_dir/LIB-*.log.
ext_cmake() {
    lib=$1 lsrc=$2
    shift 2
    rm -rf "$ext_dir/$lib" && mkdir -p "$ext_dir/$lib"
    (cd "$ext_dir/$lib" && \
     PKG_CONFIG_LIBDIR=/nonexistent cmake -S "$lsrc" -B . -Wno-dev \
        -DCMAKE_SYSTEM_NAME=Generic -DCMAKE_SYSTEM_PROCESSOR=wasm32 \
        -DCMAKE_C_COMPILER=clang-19 -DCMAKE_C_COMPILER_TARGET=wasm32-wasi \
        -DCMAKE_AR="$(command -v "$wasi_ar")" -DCMAKE_RANLIB="$(command -v "$wasi_ranlib")" \
        -DCMAKE_C_FLAGS="$wasi_cflags -I$deps/include" -DCMAKE_BUILD_TYPE= \
        -DCMAKE_INSTALL_PREFIX="$deps" -DCMAKE_PREFIX_PATH="$deps" \
        -DBUILD_SHARED_LIBS=OFF "$@" >"$ext_dir/$lib-configure.log" 2>&1 && \
     cmake --build . -j"$(nproc)" >"$ext_dir/$lib-make.log" 2>&1 && \
     cmake --install . >>"$ext_dir/$lib-make.log" 2>&1) \
    || { tail -n 40 "$ext_dir/$lib-configure.log" "$ext_dir/$lib-make.log" >&2; exit 1; }
}

# ext_compile NAME "CFLAGS" FILE...: each FILE to an object in $ext_dir/obj-NAME.
ext_compile() {
    name=$1 flags=$2
    shift 2
    mkdir -p "$ext_dir/obj-$name"
    for f in "$@"; do
        o="$ext_dir/obj-$name/$(echo "$f" | sed 's|.*/src/||; s|/|_|g; s|\.c$|.o|')"
        # shellcheck disable=SC2086
        $wasi_cc $ext_cflags $flags -c "$f" -o "$o" || exit 1
    done
}

# ext_archive NAME LIB...: the objects into lib capsule-NAME.a; LIB are the
# library archives (in $deps/lib, without lib/.a) linked after it.
ext_archive() {
    name=$1
    shift
    rm -f "$ext_dir/libcapsule-$name.a"
    $wasi_ar rcs "$ext_dir/libcapsule-$name.a" "$ext_dir/obj-$name"/*.o
    link="$ext_dir/libcapsule-$name.a"
    for l in "$@"; do link="$link $deps/lib/lib$l.a"; done
    echo "$link" >> "$ext_dir/$ext_name.link.new"
}

# ext_register MODULE INITFUNC: MODULE (dotted or not) is built in.
ext_register() {
    echo "$1 $2" >> "$ext_dir/$ext_name.inittab.new"
}

ext_end() {
    mv "$ext_dir/$1.link.new" "$ext_dir/$1.link"
    mv "$ext_dir/$1.inittab.new" "$ext_dir/$1.inittab"
    echo "$ext_stamp_value" > "$ext_dir/$1.stamp"
}

# setjmp/longjmp (libjpeg's and freetype's error handling).  wasi-libc has
# none; code compiled with $ext_sjlj_cflags gets guest/extensions/sjlj/setjmp.h
# and LLVM's Emscripten-style lowering: calls from a function that calls
# setjmp go through the host's env.invoke_* imports, and longjmp unwinds to
# the innermost one (guest/extensions/sjlj/sjlj.c, src/runtime/sjlj.c,
# docs/extensions.md).  Only files that call setjmp or longjmp need the
# flags (a file that calls them without fails to link: setjmp is undefined);
# the others are unwound through like any C frame.  Link the runtime with
# ext_archive NAME ... capsule-sjlj.
ext_sjlj_cflags="-mllvm -enable-emscripten-sjlj -I$here/extensions/sjlj"
sjlj_stamp=$(cat "$here"/extensions/sjlj/* | sha256sum | cut -c1-64)
if [ "$(cat "$deps/sjlj-stamp" 2>/dev/null)" != "$sjlj_stamp" ] || [ ! -f "$deps/lib/libcapsule-sjlj.a" ]; then
    mkdir -p "$ext_dir/sjlj"
    $wasi_cc $wasi_cflags $ext_sjlj_cflags -Wall -Wextra -Werror \
        -c "$here/extensions/sjlj/sjlj.c" -o "$ext_dir/sjlj/sjlj.o"
    rm -f "$deps/lib/libcapsule-sjlj.a"
    $wasi_ar rcs "$deps/lib/libcapsule-sjlj.a" "$ext_dir/sjlj/sjlj.o"
    echo "$sjlj_stamp" > "$deps/sjlj-stamp"
    rm -f "$pybuild/python.wasm"
fi

# ext_cmake_target LIB SRC TARGET [cmake args]: configures the CMake source tree
# SRC for wasm32-wasi in $ext_dir/LIB (static, Release) and builds TARGET.
# The caller copies the archive and headers into $deps; more compiler
# flags (e.g. $ext_sjlj_cflags) go in -DCMAKE_C_FLAGS=.  Logs are in
# $ext_dir/LIB-*.log.  (ext_cmake above installs the whole project instead.)
ext_cmake_target() {
    lib=$1 lsrc=$2 target=$3
    shift 3
    rm -rf "$ext_dir/$lib" && mkdir -p "$ext_dir/$lib"
    (cd "$ext_dir/$lib" && \
     env -u CFLAGS cmake -G "Unix Makefiles" -DCMAKE_SYSTEM_NAME=Generic -DCMAKE_SYSTEM_PROCESSOR=wasm32 \
        -DCMAKE_C_COMPILER=clang-19 -DCMAKE_C_COMPILER_TARGET=wasm32-wasi \
        -DCMAKE_AR="$(command -v "$wasi_ar")" -DCMAKE_RANLIB="$(command -v "$wasi_ranlib")" \
        -DCMAKE_BUILD_TYPE=Release -DCMAKE_C_FLAGS_RELEASE="$wasi_cflags" \
        -DBUILD_SHARED_LIBS=OFF "$@" "$lsrc" >"$ext_dir/$lib-configure.log" 2>&1) \
    || { tail -40 "$ext_dir/$lib-configure.log" >&2; exit 1; }
    make -s -j"$(nproc)" -C "$ext_dir/$lib" "$target" >"$ext_dir/$lib-make.log" 2>&1 \
    || { tail -40 "$ext_dir/$lib-make.log" >&2; exit 1; }
}
