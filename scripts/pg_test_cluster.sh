#!/usr/bin/env bash
# Throwaway PostgreSQL 15 cluster for the test suite.
#
#   scripts/pg_test_cluster.sh with CMD [ARGS...]  start, run CMD with DATABASE_URL set, always stop;
#                                                  exits with CMD's status
#   scripts/pg_test_cluster.sh start               start; print `export DATABASE_URL=...` (eval-able);
#                                                  remembers the cluster in var/pg_test_cluster.env
#   scripts/pg_test_cluster.sh stop                stop the cluster `start` left (no-op if none)
#   scripts/pg_test_cluster.sh sweep               remove orphaned clusters (killed runs)
#
# The cluster lives in a fresh temp dir (${PG_TEST_TMPDIR:-/tmp}/rewards-pgtest.XXXXXX), listens on
# 127.0.0.1 only, on a free port from $PG_TEST_PORT_BASE (54329) upward, plus a unix socket in the
# temp dir. Durability is off (fsync, synchronous_commit, full_page_writes) and auth is trust: it
# is for tests only. It has a superuser role `rewards` owning a database `rewards`.
#
# Binaries: $PG_BINDIR (default /usr/lib/postgresql/15/bin); if missing and we are root on a
# Debian-like system, postgresql-15 is installed with apt-get. PostgreSQL refuses to run as root,
# so as root the server runs as the `postgres` system user ($PG_TEST_OS_USER).
set -euo pipefail

PG_BINDIR="${PG_BINDIR:-/usr/lib/postgresql/15/bin}"
PG_TEST_TMPDIR="${PG_TEST_TMPDIR:-/tmp}"
PG_TEST_PORT_BASE="${PG_TEST_PORT_BASE:-54329}"
PG_TEST_OS_USER="${PG_TEST_OS_USER:-postgres}"
PG_TEST_DB="${PG_TEST_DB:-rewards}"
PG_TEST_ROLE="${PG_TEST_ROLE:-rewards}"
PG_TEST_MAX_CONNECTIONS="${PG_TEST_MAX_CONNECTIONS:-300}"
PREFIX="rewards-pgtest"

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STATE_FILE="${PG_TEST_STATE_FILE:-$REPO_ROOT/var/pg_test_cluster.env}"

log() { printf '[pg_test_cluster] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

is_root() { [ "$(id -u)" -eq 0 ]; }

# Run a command as the OS user that owns the cluster (cwd: a dir that user can read).
as_pg() {
    if is_root; then
        (cd / && runuser -u "$PG_TEST_OS_USER" -- "$@")
    else
        "$@"
    fi
}

ensure_binaries() {
    if [ -x "$PG_BINDIR/pg_ctl" ] && [ -x "$PG_BINDIR/initdb" ] && [ -x "$PG_BINDIR/psql" ]; then
        return 0
    fi
    log "PostgreSQL binaries not found in $PG_BINDIR"
    if is_root && command -v apt-get >/dev/null 2>&1 && [ "$PG_BINDIR" = /usr/lib/postgresql/15/bin ]; then
        log "installing postgresql-15 with apt-get (without a default 'main' cluster)"
        # Don't let the package create and start its own cluster on port 5432.
        mkdir -p /etc/postgresql-common/createcluster.d
        [ -e /etc/postgresql-common/createcluster.d/no-main-cluster.conf ] ||
            echo "create_main_cluster = false" >/etc/postgresql-common/createcluster.d/no-main-cluster.conf
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -q >&2
        apt-get install -y -q --no-install-recommends postgresql-15 >&2
    fi
    [ -x "$PG_BINDIR/pg_ctl" ] || die "no PostgreSQL 15 at $PG_BINDIR; install postgresql-15 or set PG_BINDIR"
}

ensure_os_user() {
    is_root || return 0
    command -v runuser >/dev/null 2>&1 || die "runuser (util-linux) is required when running as root"
    if ! id -u "$PG_TEST_OS_USER" >/dev/null 2>&1; then
        log "creating system user $PG_TEST_OS_USER"
        useradd --system --no-create-home --shell /usr/sbin/nologin "$PG_TEST_OS_USER"
    fi
}

port_in_use() {
    # Something accepts connections on 127.0.0.1:$1?
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# Stop the cluster in temp dir $1 (if running) and remove the dir. Never fails.
destroy_cluster() {
    local dir="$1"
    [ -n "$dir" ] && [ -d "$dir" ] || return 0
    case "$(basename "$dir")" in "$PREFIX".*) ;; *) log "refusing to remove $dir"; return 0 ;; esac
    if [ -f "$dir/data/postmaster.pid" ] && [ -x "$PG_BINDIR/pg_ctl" ]; then
        as_pg "$PG_BINDIR/pg_ctl" -D "$dir/data" -m fast -w -t 60 stop >/dev/null 2>&1 ||
            as_pg "$PG_BINDIR/pg_ctl" -D "$dir/data" -m immediate -w -t 30 stop >/dev/null 2>&1 || true
        # Last resort: the postmaster pid is the first line of postmaster.pid.
        local pid
        pid="$(head -n1 "$dir/data/postmaster.pid" 2>/dev/null || true)"
        if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null &&
            grep -q postgres "/proc/$pid/comm" 2>/dev/null; then
            kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    rm -rf "$dir"
}

# Remove clusters whose owner is gone: a `with` run that was killed (owner pid dead) or a `start`
# whose state file no longer points at it. Clusters of live runs are left alone.
sweep() {
    local dir owner_pid state_file
    for dir in "$PG_TEST_TMPDIR/$PREFIX".*; do
        [ -d "$dir" ] || continue
        owner_pid="" state_file=""
        if [ -f "$dir/owner" ]; then
            owner_pid="$(sed -n 's/^OWNER_PID=//p' "$dir/owner")"
            state_file="$(sed -n 's/^STATE_FILE=//p' "$dir/owner")"
        elif [ -n "$(find "$dir" -maxdepth 0 -mmin -5 2>/dev/null)" ]; then
            continue # being created right now
        fi
        if [ -n "$owner_pid" ] && kill -0 "$owner_pid" 2>/dev/null; then
            continue
        fi
        if [ -n "$state_file" ] && [ -f "$state_file" ] && grep -qxF "PG_TEST_DIR=$dir" "$state_file"; then
            continue
        fi
        # A cluster another `start` is still creating: its state file is written once it is up.
        if [ -n "$state_file" ] && [ ! -f "$state_file" ] && [ -n "$(find "$dir" -maxdepth 0 -mmin -5 2>/dev/null)" ]; then
            continue
        fi
        log "removing orphaned test cluster $dir"
        destroy_cluster "$dir"
    done
}

# Create and start a cluster. Sets CLUSTER_DIR, CLUSTER_PORT, DATABASE_URL.
# $1: owner line for the sweep (OWNER_PID=... or STATE_FILE=...).
CLUSTER_DIR=""
create_cluster() {
    local owner_line="$1"
    ensure_binaries
    ensure_os_user
    sweep

    [ -d "$PG_TEST_TMPDIR" ] || die "PG_TEST_TMPDIR=$PG_TEST_TMPDIR does not exist"
    CLUSTER_DIR="$(mktemp -d "$PG_TEST_TMPDIR/$PREFIX.XXXXXX")"
    printf '%s\n' "$owner_line" >"$CLUSTER_DIR/owner"
    mkdir "$CLUSTER_DIR/data" "$CLUSTER_DIR/socket"
    : >"$CLUSTER_DIR/postgres.log"
    if is_root; then
        chown -R "$PG_TEST_OS_USER:" "$CLUSTER_DIR"
        chmod 700 "$CLUSTER_DIR/data"
        as_pg test -w "$CLUSTER_DIR/data" ||
            die "$PG_TEST_OS_USER cannot write to $CLUSTER_DIR (set PG_TEST_TMPDIR to a world-traversable dir)"
    fi

    local locale=C
    if locale -a 2>/dev/null | grep -qix 'c\.utf-\?8'; then locale=C.UTF-8; fi
    log "initdb in $CLUSTER_DIR/data"
    if ! as_pg "$PG_BINDIR/initdb" -D "$CLUSTER_DIR/data" -U postgres -E UTF8 --locale="$locale" \
        --auth-local=trust --auth-host=trust --no-sync >"$CLUSTER_DIR/initdb.log" 2>&1; then
        cat "$CLUSTER_DIR/initdb.log" >&2
        die "initdb failed"
    fi

    cat >>"$CLUSTER_DIR/data/postgresql.conf" <<CONF

# --- rewards test cluster (throwaway: no durability) ---
listen_addresses = '127.0.0.1'
unix_socket_directories = '$CLUSTER_DIR/socket'
max_connections = $PG_TEST_MAX_CONNECTIONS
fsync = off
synchronous_commit = off
full_page_writes = off
wal_level = minimal
max_wal_senders = 0
max_parallel_workers_per_gather = 0
timezone = 'UTC'
logging_collector = off
CONF

    local port="$PG_TEST_PORT_BASE" last=$((PG_TEST_PORT_BASE + 100)) started=""
    while [ "$port" -le "$last" ]; do
        if port_in_use "$port"; then
            port=$((port + 1))
            continue
        fi
        log "starting postgres on 127.0.0.1:$port"
        if as_pg "$PG_BINDIR/pg_ctl" -D "$CLUSTER_DIR/data" -l "$CLUSTER_DIR/postgres.log" \
            -o "-p $port" -w -t 60 start >/dev/null 2>&1; then
            started=1
            break
        fi
        if grep -qiE 'could not (bind|create listen socket)|address already in use' "$CLUSTER_DIR/postgres.log"; then
            log "port $port was taken meanwhile; trying the next one"
            : >"$CLUSTER_DIR/postgres.log"
            port=$((port + 1))
            continue
        fi
        break
    done
    if [ -z "$started" ]; then
        log "postgres did not start; log follows"
        cat "$CLUSTER_DIR/postgres.log" >&2 || true
        die "could not start PostgreSQL"
    fi
    CLUSTER_PORT="$port"

    local i
    for i in $(seq 1 60); do
        if "$PG_BINDIR/pg_isready" -q -h 127.0.0.1 -p "$port" -U postgres -d postgres; then break; fi
        if [ "$i" -eq 60 ]; then
            cat "$CLUSTER_DIR/postgres.log" >&2 || true
            die "PostgreSQL not ready after 30s"
        fi
        sleep 0.5
    done

    if ! "$PG_BINDIR/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$port" -U postgres -d postgres \
        -c "CREATE ROLE \"$PG_TEST_ROLE\" LOGIN SUPERUSER" \
        -c "CREATE DATABASE \"$PG_TEST_DB\" OWNER \"$PG_TEST_ROLE\"" >&2; then
        cat "$CLUSTER_DIR/postgres.log" >&2 || true
        die "could not create role/database"
    fi

    DATABASE_URL="postgres://$PG_TEST_ROLE@127.0.0.1:$port/$PG_TEST_DB"
    log "ready: $DATABASE_URL ($("$PG_BINDIR/postgres" --version))"
}

cmd_with() {
    [ $# -gt 0 ] || die "usage: $0 with CMD [ARGS...]"
    trap 'destroy_cluster "$CLUSTER_DIR"; [ -n "$CLUSTER_DIR" ] && log "stopped and removed $CLUSTER_DIR"' EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    trap 'exit 129' HUP
    create_cluster "OWNER_PID=$$"
    export DATABASE_URL
    local status=0
    "$@" || status=$?
    exit "$status"
}

cmd_start() {
    # A cluster left by an earlier `start` without `stop`: get rid of it first.
    cmd_stop
    mkdir -p "$(dirname "$STATE_FILE")"
    trap 'destroy_cluster "$CLUSTER_DIR"' EXIT
    create_cluster "STATE_FILE=$STATE_FILE"
    trap - EXIT
    cat >"$STATE_FILE.tmp" <<STATE
PG_TEST_DIR=$CLUSTER_DIR
PG_TEST_PORT=$CLUSTER_PORT
DATABASE_URL=$DATABASE_URL
STATE
    mv "$STATE_FILE.tmp" "$STATE_FILE"
    printf 'export DATABASE_URL=%s\n' "$DATABASE_URL"
}

cmd_stop() {
    if [ ! -f "$STATE_FILE" ]; then
        return 0
    fi
    local dir
    dir="$(sed -n 's/^PG_TEST_DIR=//p' "$STATE_FILE")"
    if [ -n "$dir" ] && [ -d "$dir" ]; then
        destroy_cluster "$dir"
        log "stopped and removed $dir"
    fi
    rm -f "$STATE_FILE"
}

case "${1:-}" in
with) shift; cmd_with "$@" ;;
start) cmd_start ;;
stop) cmd_stop ;;
sweep) sweep ;;
*)
    sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
    ;;
esac
