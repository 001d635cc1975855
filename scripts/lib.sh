# Shared by scripts/demo and scripts/test: set-up of a fresh machine and a
# throwaway PostgreSQL 15 cluster run by an unprivileged OS user.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PG_BIN=/usr/lib/postgresql/15/bin
# PostgreSQL 15's own: /usr/bin/pg_config is Debian's wrapper, which answers
# for whichever version it picks.
PG_CONFIG=$PG_BIN/pg_config
PG_USER=postgres
RUN_DIR=${PG_AUDIENCE_RUN_DIR:-/var/tmp/pg_audience}
# The pgrx version is pinned once, in Cargo.toml; cargo-pgrx must match it.
PGRX_VERSION=$(sed -n 's/^pgrx = "=\([0-9.]*\)".*/\1/p' "$ROOT/Cargo.toml")

# Bold on a terminal; plain text in a CI log or a file.
if [ -t 2 ]; then
    log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
else
    log() { printf '==> %s\n' "$*" >&2; }
fi

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# install_packages PACKAGE...: installs those of Debian's packages that are
# not installed yet.
install_packages() {
    local p missing=()
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        log "installing ${missing[*]}"
        as_root apt-get update -qq
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
}

ensure_packages() {
    # The build, the server and PgBouncer; then the clients the tests drive:
    # Python's venv, a JDK with pgjdbc (Metabase's driver), and Chromium
    # with its WebDriver for the dashboard's browser test; pg_cron, which
    # the retention test schedules retire_events with.
    install_packages postgresql-15 postgresql-server-dev-15 postgresql-15-cron sudo libclang-dev clang pkg-config pgbouncer \
        python3-venv default-jdk-headless libpostgresql-jdbc-java chromium chromium-driver
}

ensure_cargo_pgrx() {
    if [ "$(cargo pgrx --version 2>/dev/null | awk '{print $2}')" != "$PGRX_VERSION" ]; then
        log "installing cargo-pgrx $PGRX_VERSION (takes a few minutes, once)"
        cargo install cargo-pgrx --version "$PGRX_VERSION" --locked --force
    fi
    if ! grep -q "^pg15 = \"$PG_CONFIG\"" "${PGRX_HOME:-$HOME/.pgrx}/config.toml" 2>/dev/null; then
        log "pointing pgrx at the system PostgreSQL 15"
        cargo pgrx init --pg15 "$PG_CONFIG"
    fi
}

setup_machine() {
    ensure_packages
    ensure_cargo_pgrx
    ensure_python_env
}

# A virtual environment with the pinned Python packages of the client tests
# and of the dashboard, made again when a requirements file changes.
VENV="$RUN_DIR/venv"
ensure_python_env() {
    local want
    want=$(cat "$ROOT/tests/clients/requirements.txt" "$ROOT/dashboard/requirements.txt" | sha256sum | cut -c1-16)
    if [ "$(cat "$VENV/.requirements" 2>/dev/null)" != "$want" ]; then
        log "installing the Python packages of tests/clients and dashboard into $VENV"
        rm -rf "$VENV"
        python3 -m venv "$VENV"
        "$VENV/bin/pip" install -q --disable-pip-version-check \
            -r "$ROOT/tests/clients/requirements.txt" -r "$ROOT/dashboard/requirements.txt"
        echo "$want" > "$VENV/.requirements"
    fi
}

# Builds the extension and installs it into the system PostgreSQL 15, with the
# install scripts of released versions. Each file is written under a
# temporary name beside its destination and renamed into place: install(1)
# and `cargo pgrx install` remove the old file and write the new one at its
# path, and a session of a running server that loads the library meanwhile
# maps a partial file and crashes, which takes the server through crash
# recovery. A rename swaps the whole file at once.
install_extension() {
    log "building and installing pg_audience ($1 profile)"
    local flag=(--debug) out="$RUN_DIR/package" file files=()
    [ "$1" = release ] && flag=()
    as_root rm -rf "$out"
    (cd "$ROOT" && as_root cargo pgrx package "${flag[@]}" --pg-config "$PG_CONFIG" --out-dir "$out" >/dev/null)
    mapfile -t files < <(cd "$out" && find . -type f -printf '%P\n')
    if [ ! -f "$out$("$PG_CONFIG" --pkglibdir)/pg_audience.so" ] || [ ${#files[@]} -lt 3 ]; then
        echo "cargo pgrx package left no library in $out" >&2
        return 1
    fi
    for file in "${files[@]}"; do
        as_root install -D -m "$([[ $file == *.so ]] && echo 0755 || echo 0644)" "$out/$file" "/$file.new.$$"
        as_root mv -f "/$file.new.$$" "/$file"
    done
    install_released_scripts
}

# cargo pgrx package writes the install script of the version being built and
# copies the update scripts (sql/pg_audience--OLD--NEW.sql). Creating a
# database at a released version, as the upgrade test does, also needs that
# version's own install script: those are kept in sql/released/. The script of
# the version being built is never replaced: it is the one generated from the
# code. A released version whose control parameters differ from today's has
# its own secondary control file (pg_audience--VERSION.control) beside it.
install_released_scripts() {
    local dir current script
    dir="$("$PG_BIN/pg_config" --sharedir)/extension"
    current=$(awk -F'"' '/^version = /{print $2; exit}' "$ROOT/Cargo.toml")
    for script in "$ROOT"/sql/released/pg_audience--*.sql "$ROOT"/sql/released/pg_audience--*.control; do
        if [ -e "$script" ] && [ "$(basename "$script")" != "pg_audience--$current.sql" ]; then
            as_root install -m 0644 "$script" "$dir/"
        fi
    done
}

# cluster_start NAME PORT [SERVER_OPTIONS]: a private cluster under
# $RUN_DIR/NAME, listening on a Unix socket in $RUN_DIR/NAME/socket (and on
# TCP only if SERVER_OPTIONS set listen_addresses).
# SERVER_OPTIONS are extra `-c name=value` settings, used by the benchmark to
# run on the configuration the figures of docs/spec.md §6 were measured with. Sets PGHOST,
# PGPORT, PGUSER.
cluster_start() {
    local name=$1 port=$2 extra=${3:-} dir="$RUN_DIR/$1"
    as_root install -d -o "$PG_USER" -g "$PG_USER" -m 0700 "$dir"
    as_root install -d -o "$PG_USER" -g "$PG_USER" -m 0755 "$dir/socket"
    if ! as_root test -f "$dir/data/PG_VERSION"; then
        log "creating a throwaway cluster in $dir"
        # Trust on the private socket; a password over TCP, where clients
        # that cannot use a socket (pgjdbc) log in.
        as_root sudo -u "$PG_USER" "$PG_BIN/initdb" -D "$dir/data" --auth-local=trust --auth-host=scram-sha-256 --encoding=UTF8 \
            --locale=C.UTF-8 --username="$PG_USER" >/dev/null
    fi
    export PGHOST="$dir/socket" PGPORT="$port" PGUSER="$PG_USER"
    if ! as_root sudo -u "$PG_USER" "$PG_BIN/pg_ctl" -D "$dir/data" status >/dev/null 2>&1; then
        as_root sudo -u "$PG_USER" "$PG_BIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w \
            -o "-c listen_addresses='' -k $dir/socket -p $port -c shared_buffers=256MB $extra" start >/dev/null
    fi
}

cluster_restart() {
    local dir="$RUN_DIR/$1"
    as_root sudo -u "$PG_USER" "$PG_BIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w restart -m fast >/dev/null
}

cluster_stop() {
    local dir="$RUN_DIR/$1"
    as_root sudo -u "$PG_USER" "$PG_BIN/pg_ctl" -D "$dir/data" -w stop -m fast >/dev/null 2>&1 || true
}
