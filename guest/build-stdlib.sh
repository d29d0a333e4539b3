#!/bin/sh
# Builds the read-only standard library images from the guest build:
#   BUILD_DIR/stdlib.img       Lib/ with .pyc, plus capsule's runner
#   BUILD_DIR/stdlib-tests.img Lib/test, mounted only by the regression tests
# Bytecode is compiled by Debian's python3.11 (same 3.11 magic number as the
# guest) with unchecked hashes, so imports never stat or re-read sources.
set -eu
build=$(realpath "$1")
here=$(dirname "$(realpath "$0")")
python_src=$(ls -d "$build"/src/python3.11-3.11.* | head -n 1)
stage="$build/stdlib"
rm -rf "$stage" "$build/stdlib-tests"
mkdir -p "$stage"
# Left out: GUI, IDE and demo packages that cannot work without a display or
# processes, and each package's own tests (they go to stdlib-tests.img).
(cd "$python_src/Lib" && tar cf - \
    --exclude=./test --exclude=./idlelib --exclude=./tkinter --exclude=./turtledemo \
    --exclude=./ensurepip --exclude='*/tests' --exclude='*/test' --exclude='__pycache__' \
    --exclude=./lib2to3/tests .) | (cd "$stage" && tar xf -)
cp "$build"/guest/cpython/build/lib.wasi-wasm32-3.11/_sysconfigdata_*.py "$stage/"
# Debian's sysconfig patch names the module after the multiarch tuple only.
cp "$stage"/_sysconfigdata__wasi_wasm32-wasi.py "$stage/_sysconfigdata__wasm32-wasi.py"
cp "$here/_capsule_runner.py" "$stage/"
# The guest's own library: capsule.functions (host functions).
rm -rf "$stage/capsule" && cp -r "$here/capsule" "$stage/capsule"
# The pure-Python parts of the extensions compiled into python.wasm
# (guest/extensions): their packages, minus C, Cython and tests, with a
# .dist-info so importlib.metadata knows their versions.
extension_package() {  # source-package-glob package-dir distribution
    package_src=$(ls -d "$build"/src/$1 | head -n 1)
    version=$(echo "$package_src" | sed 's|.*-||')
    rm -rf "$stage/$(basename "$2")"
    (cd "$package_src/$(dirname "$2")" && tar cf - --exclude='*.c' --exclude='*.h' \
        --exclude='*.pyx' --exclude='*.pxd' --exclude='*.pxi' --exclude='*/includes' \
        --exclude='*/tests' --exclude='__pycache__' "$(basename "$2")") | (cd "$stage" && tar xf -)
    mkdir -p "$stage/$3-$version.dist-info"
    printf 'Metadata-Version: 2.1\nName: %s\nVersion: %s\n' "$3" "$version" \
        > "$stage/$3-$version.dist-info/METADATA"
    echo "$(basename "$2")" > "$stage/$3-$version.dist-info/top_level.txt"
    printf 'capsule (built in)\n' > "$stage/$3-$version.dist-info/INSTALLER"
}
extension_package 'lxml-4.*' src/lxml lxml
extension_package 'pillow-9.*' src/PIL Pillow
# A TrueType font for ImageFont.truetype (Debian's fonts-dejavu-core), read
# only in PIL/fonts.  Pillow searches font directories by platform and knows
# none for "wasi": there it looks in PIL/fonts, so truetype("DejaVuSans.ttf",
# 20) finds it, as it finds the system's fonts on Linux.
mkdir -p "$stage/PIL/fonts"
cp /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf "$stage/PIL/fonts/"
python3 - "$stage/PIL/ImageFont.py" <<'PATCH'
import sys
path = sys.argv[1]
text = open(path).read()
anchor = '        elif sys.platform == "darwin":\n'
assert text.count(anchor) == 1, "ImageFont.truetype's font search changed"
text = text.replace(anchor, '        elif sys.platform == "wasi":\n'
                    '            dirs.append(os.path.join(os.path.dirname(__file__), "fonts"))\n' + anchor)
open(path, "w").write(text)
PATCH
# --- codecs: WASI has no dup(), so os.dup raises OSError (ENOTSUP), which
# Pillow's libtiff writer does not expect (it catches io.UnsupportedOperation,
# a BytesIO's answer): catching OSError, it encodes a TIFF saved to a file
# in memory and writes it through the file object, as for a BytesIO.  (Its
# reader already falls back to reading through the file object.)
sed -i '/_fp = os.dup(fp.fileno())/{n;s/except io.UnsupportedOperation:$/except OSError:  # capsule: WASI has no dup()/}' \
    "$stage/PIL/TiffImagePlugin.py"
grep -q "capsule: WASI has no dup" "$stage/PIL/TiffImagePlugin.py" || \
    { echo "build-stdlib.sh: TiffImagePlugin.py's dup fallback not patched" >&2; exit 1; }
# --- end codecs
# getpath looks for lib-dynload to find exec_prefix; modules are static here.
mkdir -p "$stage/lib-dynload"
/usr/bin/python3.11 -m compileall -q -j0 --invalidation-mode unchecked-hash "$stage" >/dev/null
/usr/bin/python3 "$here/../tools/mkimage.py" "$build/stdlib.img" "$stage"

mkdir -p "$build/stdlib-tests/test"
(cd "$python_src/Lib/test" && tar cf - --exclude='__pycache__' .) | (cd "$build/stdlib-tests/test" && tar xf -)
# Tests that live inside their packages; the regression harness adds these
# directories to the packages' __path__.
for package_tests in unittest/test lib2to3/tests; do
    mkdir -p "$build/stdlib-tests/$package_tests"
    (cd "$python_src/Lib/$package_tests" && tar cf - --exclude='__pycache__' .) | \
        (cd "$build/stdlib-tests/$package_tests" && tar xf -)
done
# lib2to3's tests read the grammars beside their package.
cp "$python_src/Lib/lib2to3/Grammar.txt" "$python_src/Lib/lib2to3/PatternGrammar.txt" \
    "$build/stdlib-tests/lib2to3/"
/usr/bin/python3.11 -m compileall -q -j0 --invalidation-mode unchecked-hash "$build/stdlib-tests" >/dev/null || true
/usr/bin/python3 "$here/../tools/mkimage.py" "$build/stdlib-tests.img" "$build/stdlib-tests"

# The IANA time-zone database, from Debian's tzdata, for zoneinfo (mounted
# read-only at /usr/share/zoneinfo, its TZPATH).  Links are stored as the
# files they name.  Left out: `localtime` (the host's own zone, a link out
# of the tree), and the `right/` and `posix/` variants nobody asks for.
/usr/bin/python3 "$here/../tools/mkimage.py" "$build/tzdata.img" /usr/share/zoneinfo \
    --exclude localtime --exclude 'right' --exclude 'posix' --exclude 'posixrules'
