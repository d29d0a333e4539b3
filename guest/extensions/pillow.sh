# Pillow 9.4.0's core (PIL._imaging, with zlib for PNG) and the small C
# helpers (_imagingmath, _imagingmorph), from Debian's source.  Sourced by
# build-python.sh (see common.sh).
#
# With JPEG (libjpeg-turbo) and PIL._imagingft (freetype): their errors
# longjmp, through the setjmp/longjmp support in common.sh.  With TIFF,
# WebP, JPEG 2000 and PIL._imagingcms (lcms2): the "codecs" blocks below.
# Not built: _imagingtk.
pillow_src=$(fetch_source pillow 'pillow-9.*')
libjpeg_src=$(fetch_source libjpeg-turbo 'libjpeg-turbo-2.*')
freetype_src=$(fetch_source freetype 'freetype-2.*')
# --- codecs: libtiff, libwebp, OpenJPEG, lcms2 (issue 14) ---------------
# TIFF (libtiff, with zlib, liblzma, libwebp and libjpeg inside; not
# JBIG, zstd or LERC), WebP (PIL._webp, animated through libwebpmux/demux),
# JPEG 2000 (OpenJPEG) and colour management (PIL._imagingcms, lcms2).  All
# single-threaded; of them only libtiff's JPEG codecs (tif_jpeg.c,
# tif_ojpeg.c) use setjmp/longjmp, as Pillow's own JPEG code does.  libtiff
# and OpenJPEG ship no configure script: CMake.
tiff_src=$(fetch_source tiff 'tiff-4.*')
webp_src=$(fetch_source libwebp 'libwebp-1.*')
openjpeg_src=$(fetch_source openjpeg2 'openjpeg2-2.*')
lcms2_src=$(fetch_source lcms2 'lcms2-2.*')
# --- end codecs ----------------------------------------------------------

if ext_begin pillow; then
    # libjpeg-turbo without SIMD (C only) or TurboJPEG.  libjpeg itself never
    # calls setjmp: Pillow's error_exit longjmps out of it.
    ext_cmake_target libjpeg "$libjpeg_src" jpeg-static -DWITH_SIMD=0 -DENABLE_SHARED=0 -DWITH_TURBOJPEG=0
    cp "$ext_dir/libjpeg/libjpeg.a" "$deps/lib/"
    cp "$libjpeg_src/jpeglib.h" "$libjpeg_src/jerror.h" "$libjpeg_src/jmorecfg.h" \
        "$ext_dir/libjpeg/jconfig.h" "$deps/include/"
    # freetype: TrueType/OpenType and the other formats it has built in, with
    # the guest's zlib (its own copy would clash with it); no bzip2, png,
    # brotli or harfbuzz (such fonts then fail to load: OSError).  Its
    # validators and rasterizers use setjmp.
    ext_cmake_target freetype "$freetype_src" freetype -DCMAKE_C_FLAGS="$ext_sjlj_cflags" \
        -DFT_REQUIRE_ZLIB=ON -DZLIB_LIBRARY="$deps/lib/libz.a" -DZLIB_INCLUDE_DIR="$deps/include" \
        -DFT_DISABLE_BZIP2=ON -DFT_DISABLE_PNG=ON -DFT_DISABLE_HARFBUZZ=ON -DFT_DISABLE_BROTLI=ON
    cp "$ext_dir/freetype/libfreetype.a" "$deps/lib/"
    rm -rf "$deps/include/freetype2" && mkdir -p "$deps/include/freetype2"
    cp -r "$freetype_src/include/ft2build.h" "$freetype_src/include/freetype" "$deps/include/freetype2/"
    # --- codecs: the libraries, and what _imaging is compiled and linked with
    rm -f "$deps/lib/libtiff.a" "$deps/lib/libwebp.a" "$deps/lib/libwebpmux.a" \
        "$deps/lib/libwebpdemux.a" "$deps/lib/libopenjp2.a" "$deps/lib/liblcms2.a"
    ext_configure libwebp "$webp_src" --disable-threading --enable-libwebpmux \
        --enable-libwebpdemux --disable-libwebpdecoder --disable-libwebpextras \
        --disable-gl --disable-sdl --disable-png --disable-jpeg --disable-tiff --disable-gif \
        --disable-wic --disable-sse2 --disable-sse4.1 --disable-neon
    ext_make libwebp/sharpyuv install
    ext_make libwebp/src install
    # JPEG-compressed TIFFs through the libjpeg built above (8-bit only);
    # their errors longjmp, hence the setjmp lowering for libtiff too.
    ext_cmake libtiff "$tiff_src" -Dtiff-tools=OFF -Dtiff-tests=OFF -Dtiff-contrib=OFF \
        -Dtiff-docs=OFF -Dcxx=OFF -Djpeg=ON -Dold-jpeg=ON -Djpeg12=OFF -Djbig=OFF \
        -DCMAKE_C_FLAGS="$wasi_cflags -I$deps/include $ext_sjlj_cflags" \
        -DJPEG_INCLUDE_DIR="$deps/include" -DJPEG_LIBRARY="$deps/lib/libjpeg.a" \
        -Dlerc=OFF -Dzstd=OFF -Dlibdeflate=OFF -Dzlib=ON -Dpixarlog=ON -Dlzma=ON -Dwebp=ON \
        -Dtiff-opengl=OFF -Dld-version-script=OFF \
        -DZLIB_INCLUDE_DIR="$deps/include" -DZLIB_LIBRARY="$deps/lib/libz.a" \
        -DLIBLZMA_INCLUDE_DIR="$deps/include" -DLIBLZMA_LIBRARY="$deps/lib/liblzma.a" \
        -DWebP_INCLUDE_DIR="$deps/include" -DWebP_LIBRARY="$deps/lib/libwebp.a"
    grep -q '^#define JPEG_SUPPORT 1' "$deps/include/tiffconf.h" \
        || { echo "pillow.sh: libtiff was configured without its JPEG codec" >&2; exit 1; }
    # opj_clock (its timing messages) calls getrusage: wasi-libc emulates it
    # with the wall clock, in the library CPython already links.
    ext_cmake openjpeg "$openjpeg_src" -DBUILD_STATIC_LIBS=ON -DBUILD_CODEC=OFF \
        -DBUILD_TESTING=OFF -DBUILD_JPIP=OFF -DBUILD_DOC=OFF \
        -DBUILD_PKGCONFIG_FILES=OFF -DOPJ_USE_THREAD=OFF \
        -DCMAKE_C_FLAGS="$wasi_cflags -D_WASI_EMULATED_PROCESS_CLOCKS"
    ext_configure lcms2 "$lcms2_src" --without-pthreads --without-jpeg --without-tiff \
        --without-zlib "CPPFLAGS=-I$deps/include -DCMS_NO_PTHREADS=1"
    ext_make lcms2/src install
    ext_make lcms2/include install
    openjpeg_include=$(ls -d "$deps"/include/openjpeg-2.* | head -n 1)
    codec_flags="-DHAVE_LIBTIFF -DHAVE_OPENJPEG -I$openjpeg_include"
    codec_libs="tiff webpdemux webpmux webp openjp2 lcms2 lzma"
    # --- end codecs
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
    ext_compile pillow "-DHAVE_LIBZ -DHAVE_LIBJPEG $codec_flags -DPILLOW_VERSION=\"$version\" $ext_sjlj_cflags
            -I$pillow_src/src -I$pillow_src/src/libImaging -I$deps/include/freetype2" \
        $files "$fixed/_imagingmath.c" "$fixed/_imagingmorph.c" "$fixed/_imagingft.c"
    # --- codecs: PIL._webp and PIL._imagingcms, modules of their own.  Two
    # of _webp's METH_NOARGS functions are defined with no parameters at
    # all and registered without a cast (fix-method-signatures.py only
    # follows casts): given CPython's (self, NULL) here.
    python3 "$here/extensions/fix-method-signatures.py" "$fixed" \
        "$pillow_src/src/_webp.c" "$pillow_src/src/_imagingcms.c"
    sed -i 's/^\(WebPDecoder[A-Za-z]*_wrapper\)() {$/\1(PyObject *self, PyObject *args) {/' "$fixed/_webp.c"
    # _webp.c defines its own ImagingSectionEnter/Leave (each module is its
    # own .so natively), which would clash with _imaging's: renamed.
    ext_compile pillow "-DHAVE_WEBPMUX -I$pillow_src/src -DImagingSectionEnter=webp_ImagingSectionEnter \
        -DImagingSectionLeave=webp_ImagingSectionLeave" "$fixed/_webp.c"
    ext_compile pillow "-I$pillow_src/src" "$fixed/_imagingcms.c"
    # --- end codecs
    # shellcheck disable=SC2086
    ext_archive pillow jpeg freetype $codec_libs z capsule-sjlj
    ext_register PIL._imaging PyInit__imaging
    ext_register PIL._imagingmath PyInit__imagingmath
    ext_register PIL._imagingmorph PyInit__imagingmorph
    ext_register PIL._imagingft PyInit__imagingft
    ext_register PIL._webp PyInit__webp  # codecs
    ext_register PIL._imagingcms PyInit__imagingcms  # codecs
    ext_end pillow
fi
