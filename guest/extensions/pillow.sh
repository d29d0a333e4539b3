# Pillow 9.4.0's core (PIL._imaging, with zlib for PNG) and the small C
# helpers (_imagingmath, _imagingmorph), from Debian's source.  Sourced by
# build-python.sh (see common.sh).
#
# With JPEG (libjpeg-turbo) and PIL._imagingft (freetype): their errors
# longjmp, through the setjmp/longjmp support in common.sh.
# Not built: _imagingcms (lcms2), _webp, _imagingtk.  The modules Pillow's Python imports lazily then raise
# ImportError / "decoder jpeg not available", as on a Pillow built without them.
pillow_src=$(fetch_source pillow 'pillow-9.*')
libjpeg_src=$(fetch_source libjpeg-turbo 'libjpeg-turbo-2.*')
freetype_src=$(fetch_source freetype 'freetype-2.*')

if ext_begin pillow; then
    # libjpeg-turbo without SIMD (C only) or TurboJPEG.  libjpeg itself never
    # calls setjmp: Pillow's error_exit longjmps out of it.
    ext_cmake libjpeg "$libjpeg_src" jpeg-static -DWITH_SIMD=0 -DENABLE_SHARED=0 -DWITH_TURBOJPEG=0
    cp "$ext_dir/libjpeg/libjpeg.a" "$deps/lib/"
    cp "$libjpeg_src/jpeglib.h" "$libjpeg_src/jerror.h" "$libjpeg_src/jmorecfg.h" \
        "$ext_dir/libjpeg/jconfig.h" "$deps/include/"
    # freetype: TrueType/OpenType and the other formats it has built in, with
    # the guest's zlib (its own copy would clash with it); no bzip2, png,
    # brotli or harfbuzz (such fonts then fail to load: OSError).  Its
    # validators and rasterizers use setjmp.
    ext_cmake freetype "$freetype_src" freetype -DCMAKE_C_FLAGS="$ext_sjlj_cflags" \
        -DFT_REQUIRE_ZLIB=ON -DZLIB_LIBRARY="$deps/lib/libz.a" -DZLIB_INCLUDE_DIR="$deps/include" \
        -DFT_DISABLE_BZIP2=ON -DFT_DISABLE_PNG=ON -DFT_DISABLE_HARFBUZZ=ON -DFT_DISABLE_BROTLI=ON
    cp "$ext_dir/freetype/libfreetype.a" "$deps/lib/"
    rm -rf "$deps/include/freetype2" && mkdir -p "$deps/include/freetype2"
    cp -r "$freetype_src/include/ft2build.h" "$freetype_src/include/freetype" "$deps/include/freetype2/"
    imaging=$(sed -n '/^_LIB_IMAGING = (/,/^)/p' "$pillow_src/setup.py" | sed -n 's/^ *"\([A-Za-z0-9_]*\)",*/\1/p')
    # The files with Python method tables, with their METH_NOARGS methods
    # given the (self, NULL) signature CPython calls them with (a mismatch
    # traps in wasm; see fix-method-signatures.py).
    fixed="$ext_dir/fixed-pillow/src"
    rm -rf "$fixed"
    python3 "$here/extensions/fix-method-signatures.py" "$fixed" \
        $(for f in _imaging decode encode map display outline path _imagingmath _imagingmorph _imagingft; do
              echo "$pillow_src/src/$f.c"; done)
    files=""
    for f in _imaging decode encode map display outline path; do files="$files $fixed/$f.c"; done
    for f in $imaging; do files="$files $pillow_src/src/libImaging/$f.c"; done
    version=$(sed -n 's/^__version__ = "\(.*\)"/\1/p' "$pillow_src/src/PIL/_version.py")
    # shellcheck disable=SC2086
    ext_compile pillow "-DHAVE_LIBZ -DHAVE_LIBJPEG -DPILLOW_VERSION=\"$version\" $ext_sjlj_cflags
            -I$pillow_src/src -I$pillow_src/src/libImaging -I$deps/include/freetype2" \
        $files "$fixed/_imagingmath.c" "$fixed/_imagingmorph.c" "$fixed/_imagingft.c"
    ext_archive pillow jpeg freetype z capsule-sjlj
    ext_register PIL._imaging PyInit__imaging
    ext_register PIL._imagingmath PyInit__imagingmath
    ext_register PIL._imagingmorph PyInit__imagingmorph
    ext_register PIL._imagingft PyInit__imagingft
    ext_end pillow
fi
