#!/bin/sh
# Installs capsule's build and test dependencies from Debian, if missing,
# and the deb-src entry that `apt-get source` needs.  Run as root.
set -eu
packages="gcc make clang-19 lld-19 llvm-19 libclang-rt-19-dev-wasm32 libclang-rt-19-dev wasi-libc wabt tcl
          dpkg-dev python3 python3.11 python3-pytest libcjson-dev libcmocka-dev libseccomp-dev libmicrohttpd-dev
          libcurl4-openssl-dev libzip-dev nettle-dev libsqlite3-dev libzstd-dev libpq-dev postgresql
          python3-pypdf python3-openpyxl python3-markdown python3-bs4
          python3-yaml python3-markupsafe python3-jinja2 python3-xlsxwriter python3-jdcal tzdata
          python3-docx python3-pil python3-lxml
          pkg-config python3-venv man-db bash-completion python3-mypy cmake fonts-dejavu-core"
missing=""
# postgresql: the store's tests start a throwaway server from its binaries
# (tests/store/postgres-server.sh), not the system's cluster.
# pkg-config, python3-venv and man-db are for the installation tests
# (tests/integration/test_install.py: embed.c via pkg-config, the wheel in a
# fresh venv, the man page rendered, the completion run); python3-mypy checks the Python
# binding's types (python/tests).
# cmake cross-builds the guest's CMake-only libraries (libjpeg-turbo,
# freetype, libtiff, OpenJPEG: guest/extensions/pillow.sh); fonts-dejavu-core
# is the TrueType font shipped in the guest image (guest/build-stdlib.sh).
# The python3-* packages are what the dependency tests install into the
# sandbox from /usr/lib/python3/dist-packages (pure Python, from Debian).
# npm installs the MCP interop test peers (tests/interop); Debian's Node is
# only used to run npm, the tests run under the Node 22 it installs.
command -v npm >/dev/null 2>&1 || packages="$packages nodejs npm"
for p in $packages; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if ! grep -rqs "^Types: deb-src" /etc/apt/sources.list.d/ && ! grep -qs "^deb-src" /etc/apt/sources.list; then
    cat > /etc/apt/sources.list.d/capsule-src.sources <<'SRC'
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
    need_update=1
fi
# Installing postgresql would create and start the system's own cluster
# (15/main, on port 5432); the tests need none, so it is not created.
case " $missing " in *" postgresql "*)
    mkdir -p /etc/postgresql-common/createcluster.d
    echo "create_main_cluster = false" > /etc/postgresql-common/createcluster.d/capsule.conf ;;
esac
if [ -n "$missing" ] || [ "${need_update:-0}" = 1 ]; then
    echo "capsule: installing from Debian:$missing" >&2
    apt-get update -qq
    [ -z "$missing" ] || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
fi
