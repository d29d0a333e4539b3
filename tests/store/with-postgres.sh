#!/bin/sh
# Runs COMMAND... with a throwaway PostgreSQL server (postgres-server.sh):
# CAPSULE_TEST_POSTGRES is its URL, CAPSULE_TEST_POSTGRES_DIR its directory.
# The server is stopped and its directory removed when COMMAND ends, however
# it ends (failure, Ctrl-C, TERM); COMMAND's exit status is the script's.
set -eu
[ $# -gt 0 ] || { echo "usage: $0 COMMAND..." >&2; exit 2; }
here=$(dirname "$0")
dir=$(mktemp -d /tmp/capsule-pg-XXXXXX)
trap 'sh "$here/postgres-server.sh" stop "$dir" || true' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
url=$(sh "$here/postgres-server.sh" start "$dir")
export CAPSULE_TEST_POSTGRES="$url" CAPSULE_TEST_POSTGRES_DIR="$dir"
"$@"
