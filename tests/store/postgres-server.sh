#!/bin/sh
# A throwaway PostgreSQL server for the store's tests and benchmark
# (docs/store.md), from Debian's `postgresql` package:
#
#     tests/store/postgres-server.sh start DIR      prints the store URL
#     tests/store/postgres-server.sh restart DIR [fast|immediate]
#     tests/store/postgres-server.sh stop DIR       stops it, removes DIR
#
# The cluster lives in DIR (created if missing), is run by an unprivileged
# user (PostgreSQL refuses root: as root the script creates the system user
# capsule-test and runs the server tools with runuser), listens on a Unix
# socket in DIR only (no TCP), and trusts whoever can reach that socket: DIR
# is mode 0700, so that is its owner and root.  The server runs with
# fsync on, as a real store would.  Every step is bounded by a timeout; a
# failed start stops whatever it started.
set -eu

action=${1:-}
dir=${2:-}
case "$action" in start|stop|restart) ;; *)
    echo "usage: $0 start|stop|restart DIR" >&2; exit 2 ;;
esac
[ -n "$dir" ] || { echo "$0: no DIR" >&2; exit 2; }

bin=${PG_BIN:-}
if [ -z "$bin" ]; then
    for candidate in /usr/lib/postgresql/*/bin; do
        [ -x "$candidate/pg_ctl" ] && bin=$candidate
    done
fi
[ -n "$bin" ] && [ -x "$bin/pg_ctl" ] || {
    echo "$0: PostgreSQL's server binaries are missing (apt-get install postgresql)" >&2; exit 1; }

user=capsule-test
# A prefix for the server's commands (timeout(1) runs programs, not functions).
as_user=""
[ "$(id -u)" != 0 ] || as_user="runuser -u $user --"

data="$dir/data"
log="$dir/server.log"

stop_server() {
    [ -f "$data/postmaster.pid" ] || return 0
    cd "$dir"
    timeout 30 $as_user "$bin/pg_ctl" -D "$data" -m fast -w -t 20 stop >/dev/null 2>&1 && return 0
    timeout 15 $as_user "$bin/pg_ctl" -D "$data" -m immediate -w -t 10 stop >/dev/null 2>&1 && return 0
    # Last resort: the postmaster by its pid (its backends exit when it dies).
    pid=$(head -n 1 "$data/postmaster.pid" 2>/dev/null || true)
    [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null || true
}

case "$action" in
start)
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    data="$dir/data"
    log="$dir/server.log"
    if [ "$(id -u)" = 0 ]; then
        id "$user" >/dev/null 2>&1 ||
            useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin "$user"
        chown "$user" "$dir"
    fi
    chmod 700 "$dir"
    cd "$dir"
    trap 'status=$?; [ $status = 0 ] || { stop_server; cat "$log" >&2 2>/dev/null || true; }' EXIT
    timeout 60 $as_user "$bin/initdb" -D "$data" -U capsule -A trust -E UTF8 --locale=C --no-sync \
        >"$dir/initdb.log" 2>&1 || { cat "$dir/initdb.log" >&2; exit 1; }
    cat >>"$data/postgresql.conf" <<CONF
listen_addresses = ''
unix_socket_directories = '$dir'
fsync = on
synchronous_commit = on
max_connections = 40
shared_buffers = 32MB
CONF
    timeout 60 $as_user "$bin/pg_ctl" -D "$data" -l "$log" -w -t 45 start >/dev/null
    timeout 30 $as_user "$bin/psql" -X -q -h "$dir" -U capsule -d postgres \
        -c "CREATE DATABASE capsule" >/dev/null
    echo "postgresql://capsule@/capsule?host=$dir"
    ;;
restart)
    cd "$dir"
    timeout 60 $as_user "$bin/pg_ctl" -D "$data" -l "$log" -m "${3:-fast}" -w -t 45 restart >/dev/null
    ;;
stop)
    [ -d "$dir" ] || exit 0
    stop_server
    rm -rf "$dir"
    ;;
esac
