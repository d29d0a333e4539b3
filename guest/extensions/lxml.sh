# lxml 4.9.2 (lxml.etree, lxml.objectify) with libxml2 and libxslt/libexslt,
# all from Debian's sources.  Sourced by build-python.sh (see common.sh).
#
# libxml2 is built without its HTTP and FTP clients (no network code in the
# guest at all, whatever a document or resolver asks for), without threads
# (the guest has none), dynamic modules, ICU and lzma.  zlib is the guest's
# own (build-python.sh's libz.a, which Pillow and CPython's zlib use too):
# libxml2 then reads and writes gzip-compressed documents.  libxslt keeps
# its profiler (lxml's C declares xsltGetProfileInformation) but no crypto
# (libgcrypt) and no plugins (dlopen).  lxml's tarball ships Cython's
# generated C (etree.c, objectify.c); the other modules lxml compiles with
# Cython (builder, _elementpath, sax, html.diff, html.clean) are used as the
# pure Python they are written in.
libxml2_src=$(fetch_source libxml2 'libxml2-2.*')
libxslt_src=$(fetch_source libxslt 'libxslt-1.*')
lxml_src=$(fetch_source lxml 'lxml-4.*')

if ext_begin lxml; then
    rm -f "$deps/lib/libxml2.a" "$deps/lib/libxslt.a" "$deps/lib/libexslt.a"
    # With zlib, libxml2 opens "-" as gzdopen(dup(fileno(stdin))); WASI has
    # no dup, so here it fails (EBADF), gzdopen(-1) gives NULL and libxml2
    # falls back to its plain stdin reader.
    printf '#include <errno.h>\nstatic inline int dup(int fd) { (void)fd; errno = EBADF; return -1; }\n' \
        > "$ext_dir/libxml2-nodup.h"
    ext_configure libxml2 "$libxml2_src" --without-threads --without-http --without-ftp \
        --without-python --with-zlib="$deps" --without-lzma --without-modules --without-icu \
        --without-debug --without-history \
        "CPPFLAGS=-I$deps/include -I$libxml2_src -include $ext_dir/libxml2-nodup.h"
    # wasi-libc's iconv (musl's) writes "UTF16" big-endian with no
    # byte-order mark, where glibc's writes a mark and little-endian, as
    # libxml2's own "UTF-16" does; Python's bytes.decode('utf-16') then
    # swaps every character.  "UTF16" gets libxml2's own handler, which is
    # found before iconv is asked (the build directory's copy of
    # encoding.c is compiled instead of the source's; -I$libxml2_src above
    # finds its private headers).
    sed 's/^\( *\)xmlNewCharEncodingHandler("UTF-16", UTF16LEToUTF8, UTF8ToUTF16);$/&\
\1xmlNewCharEncodingHandler("UTF16", UTF16LEToUTF8, UTF8ToUTF16);/' \
        "$libxml2_src/encoding.c" > "$ext_dir/libxml2/encoding.c"
    grep -q '"UTF16", UTF16LEToUTF8' "$ext_dir/libxml2/encoding.c" \
        || { echo "lxml.sh: encoding.c did not take the UTF16 handler" >&2; exit 1; }
    ext_make libxml2 libxml2.la
    ext_make libxml2 install-libLTLIBRARIES install-binSCRIPTS
    ext_make libxml2/include install
    ext_configure libxslt "$libxslt_src" --without-python --without-crypto --without-plugins \
        --without-debug --without-debugger --with-libxml-prefix="$deps"
    ext_make libxslt/libxslt install
    ext_make libxslt/libexslt install

    ext_compile lxml "-DCYTHON_CLINE_IN_TRACEBACK=0 -I$deps/include/libxml2 \
        -I$lxml_src/src/lxml/includes -I$lxml_src/src/lxml -Wno-incompatible-pointer-types \
        -Wno-deprecated-declarations" \
        "$lxml_src/src/lxml/etree.c" "$lxml_src/src/lxml/objectify.c"
    ext_archive lxml exslt xslt xml2 z
    ext_register lxml.etree PyInit_etree
    ext_register lxml.objectify PyInit_objectify
    ext_end lxml
fi
