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
        "$here/extensions/fix-method-signatures.py" | sha256sum | cut -c1-64)
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
