# Sourced after scripts/lib.sh by what runs pg_audience on Citus: Citus
# built from the vendored source when it is not installed (Debian's
# archive has none), and a coordinator with two workers as throwaway
# clusters on this machine.

# The Citus source and its build steps sit beside the project
# (../shared/vendor, see its README), or where PG_AUDIENCE_CITUS_VENDOR says.
CITUS_VERSION=13.2.2
CITUS_VENDOR=${PG_AUDIENCE_CITUS_VENDOR:-$ROOT/../shared/vendor}

# Whether Citus can be had here: installed, or its source beside the project.
citus_available() {
    [ -f "$("$PG_CONFIG" --pkglibdir)/citus.so" ] || [ -f "$CITUS_VENDOR/citus-$CITUS_VERSION.tar.gz" ]
}

ensure_citus() {
    if [ -f "$("$PG_CONFIG" --pkglibdir)/citus.so" ]; then
        return
    fi
    local tarball="$CITUS_VENDOR/citus-$CITUS_VERSION.tar.gz"
    if [ ! -f "$tarball" ]; then
        echo "Citus is not installed and its source is not at $tarball (set PG_AUDIENCE_CITUS_VENDOR)" >&2
        return 1
    fi
    # What Citus's build needs (../shared/vendor/README.md).
    install_packages libcurl4-openssl-dev liblz4-dev libzstd-dev libkrb5-dev libssl-dev libicu-dev
    log "building Citus $CITUS_VERSION from $tarball (a few minutes, once)"
    local build
    build=$(mktemp -d)
    tar xzf "$tarball" -C "$build"
    (
        cd "$build/citus-$CITUS_VERSION"
        patch -s -p1 < "$CITUS_VENDOR/citus-$CITUS_VERSION-debian-pg15.20.patch"
        PG_CONFIG="$PG_CONFIG" ./configure >/dev/null
        make -s -j"$(nproc)" >/dev/null 2>&1
        as_root make -s install >/dev/null
    )
    rm -rf "$build"
}

# citus_start BASE_PORT [SERVER_OPTIONS]: a coordinator (cluster citus0, on
# BASE_PORT) and two workers (citus1, citus2, on the next ports), each a
# throwaway cluster under $RUN_DIR with Citus preloaded (unless
# SERVER_OPTIONS name the preloaded libraries, Citus first). The nodes reach
# each other over their Unix sockets, where the clusters trust local
# connections. Leaves PGHOST and PGPORT at the coordinator.
citus_start() {
    local base=$1 extra=${2:--c shared_preload_libraries=citus} i
    for i in 0 1 2; do
        # A node left running by an earlier run has that run's library and
        # settings (a restart would keep its settings): stopped first.
        cluster_stop "citus$i"
        # Citus runs a maintenance worker per database that has it, and the
        # tests make many databases: room for those and pg_cron's jobs. A
        # node that runs a task on its own placement over a connection (as
        # EXPLAIN ANALYZE does) connects to citus.local_hostname, by default
        # localhost over TCP, where these clusters do not listen.
        cluster_start "citus$i" $((base + i)) "$extra -c max_connections=200 -c max_worker_processes=64 -c citus.local_hostname=$RUN_DIR/citus$i/socket"
    done
    export PGHOST="$RUN_DIR/citus0/socket" PGPORT="$base"
}

citus_stop() {
    local i
    for i in 0 1 2; do
        cluster_stop "citus$i"
    done
}

# citus_database NAME BASE_PORT: a database of that name on every node, with
# Citus in it, and the workers joined to the coordinator's.
citus_database() {
    local name=$1 base=$2 i
    for i in 0 1 2; do
        PGHOST="$RUN_DIR/citus$i/socket" PGPORT=$((base + i)) psql -Xq -d postgres \
            -c "DROP DATABASE IF EXISTS \"$name\" WITH (FORCE)" -c "CREATE DATABASE \"$name\""
        PGHOST="$RUN_DIR/citus$i/socket" PGPORT=$((base + i)) psql -Xq -d "$name" -c "CREATE EXTENSION citus"
    done
    psql -Xq -v ON_ERROR_STOP=1 -d "$name" \
        -c "SELECT citus_set_coordinator_host('$RUN_DIR/citus0/socket', $base)" \
        -c "SELECT citus_add_node('$RUN_DIR/citus1/socket', $((base + 1)))" \
        -c "SELECT citus_add_node('$RUN_DIR/citus2/socket', $((base + 2)))" >/dev/null
}
