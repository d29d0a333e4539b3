#!/bin/sh
# Builds BUILD/capsule_VERSION-1_ARCH.deb from `make install PREFIX=/usr`
# into a staging root, with dpkg-deb (no debhelper: the build is make's,
# and the package is the install target plus Debian's metadata).
#   sh packaging/build-deb.sh BUILD VERSION      (make deb)
set -eu
build=$1
version=$2
arch=$(dpkg --print-architecture)
top=$(pwd)
work=$top/$build/deb
stage=$work/root
rm -rf "$work"
mkdir -p "$stage/DEBIAN" "$work/source/debian"

make --no-print-directory install DESTDIR="$stage" PREFIX=/usr >/dev/null

# Debian policy: stripped binaries (the build keeps -g), compressed manual
# pages and changelog, a copyright file.
strip --strip-unneeded --remove-section=.comment --remove-section=.note \
    "$stage/usr/bin/capsule" "$stage/usr/lib/libcapsule.so.$version"
strip --strip-debug --remove-section=.comment "$stage/usr/lib/libcapsule.a"
gzip -9n "$stage/usr/share/man/man1/capsule.1"
doc=$stage/usr/share/doc/capsule
install -d "$doc"
install -m 644 packaging/debian/copyright "$doc/copyright"
# The maintainer, as Debian's tools take it (DEBFULLNAME, DEBEMAIL).
maintainer="${DEBFULLNAME:-capsule maintainers} <${DEBEMAIL:-capsule@example.org}>"
sed "s/@MAINTAINER@/$maintainer/" packaging/debian/changelog | gzip -9n > "$doc/changelog.Debian.gz"
install -d "$stage/usr/share/lintian/overrides"
install -m 644 packaging/debian/lintian-overrides "$stage/usr/share/lintian/overrides/capsule"
find "$stage/usr" -type d -exec chmod 755 {} +

# Dependencies from the ELF files, as debhelper would: dpkg-shlibdeps wants
# a debian/control beside it.
printf 'Source: capsule\n\nPackage: capsule\nArchitecture: any\n' > "$work/source/debian/control"
depends=$(cd "$work/source" && dpkg-shlibdeps -O -e"$stage/usr/bin/capsule" \
              -e"$stage/usr/lib/libcapsule.so.$version" 2>/dev/null | sed -n 's/^shlibs:Depends=//p')
[ -n "$depends" ] || { echo "build-deb: dpkg-shlibdeps found no dependencies" >&2; exit 1; }
# The libraries capsule dlopens when first needed (src/libraries/): not in
# the ELF's NEEDED list, so dpkg-shlibdeps cannot see them.
depends="$depends, libcurl4, libmicrohttpd12, libpq5, libsqlite3-0, libzip4"

size=$(du -sk --exclude=DEBIAN "$stage" | cut -f1)
sed -e "s/@VERSION@/$version/" -e "s/@ARCH@/$arch/" -e "s/@DEPENDS@/$depends/" \
    -e "s/@SIZE@/$size/" -e "s/@MAINTAINER@/$maintainer/" packaging/debian/control.in > "$stage/DEBIAN/control"
# The shared library: its shlibs entry, and ldconfig run by dpkg's trigger.
echo "libcapsule 0 capsule (>= $version)" > "$stage/DEBIAN/shlibs"
echo "activate-noawait ldconfig" > "$stage/DEBIAN/triggers"
chmod 644 "$stage/DEBIAN/shlibs" "$stage/DEBIAN/triggers"
(cd "$stage" && find usr -type f -print0 | sort -z | xargs -0 md5sum) > "$stage/DEBIAN/md5sums"
chmod 644 "$stage/DEBIAN/md5sums"

package=$build/capsule_${version}-1_${arch}.deb
# gzip: 8 s here against 115 s for xz -6 (20 MB against 15 MB); dpkg and
# apt take either.  DEB_COMPRESSION="-Zxz -z6" for the smaller file.
dpkg-deb --root-owner-group ${DEB_COMPRESSION:--Zgzip -z6} --build "$stage" "$package" >/dev/null
echo "$package"
