# Pillow 9.4.0's core (PIL._imaging, with zlib for PNG) and the small C
# helpers (_imagingmath, _imagingmorph), from Debian's source.  Sourced by
# build-python.sh (see common.sh).
#
# Not built: JPEG (libjpeg uses setjmp/longjmp, which needs wasm exception
# handling through wasm2c: see docs/extensions.md), _imagingcms (lcms2),
# _webp, _imagingtk.  The modules Pillow's Python imports lazily then raise
# ImportError / "decoder jpeg not available", as on a Pillow built without them.
pillow_src=$(fetch_source pillow 'pillow-9.*')

if ext_begin pillow; then
    imaging=$(sed -n '/^_LIB_IMAGING = (/,/^)/p' "$pillow_src/setup.py" | sed -n 's/^ *"\([A-Za-z0-9_]*\)",*/\1/p')
    # The files with Python method tables, with their METH_NOARGS methods
    # given the (self, NULL) signature CPython calls them with (a mismatch
    # traps in wasm; see fix-method-signatures.py).
    fixed="$ext_dir/fixed-pillow/src"
    rm -rf "$fixed"
    python3 "$here/extensions/fix-method-signatures.py" "$fixed" \
        $(for f in _imaging decode encode map display outline path _imagingmath _imagingmorph; do
              echo "$pillow_src/src/$f.c"; done)
    files=""
    for f in _imaging decode encode map display outline path; do files="$files $fixed/$f.c"; done
    for f in $imaging; do files="$files $pillow_src/src/libImaging/$f.c"; done
    version=$(sed -n 's/^__version__ = "\(.*\)"/\1/p' "$pillow_src/src/PIL/_version.py")
    # shellcheck disable=SC2086
    ext_compile pillow "-DHAVE_LIBZ -DPILLOW_VERSION=\"$version\" -I$pillow_src/src -I$pillow_src/src/libImaging" \
        $files "$fixed/_imagingmath.c" "$fixed/_imagingmorph.c"
    ext_archive pillow z
    ext_register PIL._imaging PyInit__imaging
    ext_register PIL._imagingmath PyInit__imagingmath
    ext_register PIL._imagingmorph PyInit__imagingmorph
    ext_end pillow
fi
