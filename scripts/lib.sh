# Shared shell helpers for run.sh, test.sh and the load test. Source it.
# shellcheck shell=bash

WAKE_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# Debian packages the build needs (also installed by deploy/Dockerfile's
# build stage), and those the product and the tests need besides.
WAKE_BUILD_PACKAGES=(
  bazel-bootstrap g++ make
  protobuf-compiler protobuf-compiler-grpc libprotobuf-dev libgrpc++-dev
  libabsl-dev libpqxx-dev libpq-dev libgtest-dev libgmock-dev libbenchmark-dev
  libcurl4-openssl-dev nlohmann-json3-dev prometheus-cpp-dev libssl-dev openssl
  ca-certificates
)
WAKE_DEBIAN_PACKAGES=(
  "${WAKE_BUILD_PACKAGES[@]}"
  clang-14 libfuzzer-14-dev
  postgresql-15 postgresql-client-15
  curl procps
)

log() { printf '[wakeline] %s\n' "$*" >&2; }
die() { printf '[wakeline] error: %s\n' "$*" >&2; exit 1; }

# Installs whatever of WAKE_DEBIAN_PACKAGES (and the arguments) is missing
# (needs root or sudo).
install_debian_packages() { install_packages "${WAKE_DEBIAN_PACKAGES[@]}" "$@"; }

# Installs only what the build needs.
install_build_packages() { install_packages "${WAKE_BUILD_PACKAGES[@]}"; }

install_packages() {
  local missing=()
  local pkg
  for pkg in "$@"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
      missing+=("$pkg")
    fi
  done
  [ "${#missing[@]}" -eq 0 ] && return 0
  log "installing Debian packages: ${missing[*]}"
  local sudo=""
  if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null || die "need root or sudo to install: ${missing[*]}"
    sudo="sudo"
  fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
}

pg_bin_dir() {
  local dir
  dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  [ -n "$dir" ] || die "PostgreSQL server binaries not found under /usr/lib/postgresql"
  echo "$dir"
}

# PostgreSQL refuses to run as root: as root, run its tools as 'postgres'.
as_pg_user() {
  if [ "$(id -u)" = 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

# port_in_use PORT: something listens on it, or any TCP socket holds it as its
# local port. The second matters because these ports lie in Linux's
# ephemeral range (32768-60999): an outgoing connection (ghz, libpq, ...) can
# own one, and a server binding it then fails with "Address already in use".
port_in_use() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
  awk -v port="$(printf ':%04X' "$1")" \
    'FNR > 1 && substr($2, length($2) - 4) == port { found = 1 } END { exit !found }' \
    /proc/net/tcp /proc/net/tcp6 2>/dev/null
}

# First free loopback TCP port at or above $1.
free_port() {
  local port=$1
  while port_in_use "$port"; do port=$((port + 1)); done
  echo "$port"
}

# init_cluster DIR: a fresh cluster with logical replication on, owned by the
# user that will run it; trust auth on loopback only.
init_cluster() {
  local dir=$1 bin
  bin=$(pg_bin_dir)
  mkdir -p "$dir"
  [ "$(id -u)" = 0 ] && chown postgres:postgres "$dir"
  chmod 700 "$dir"
  as_pg_user "$bin/initdb" -D "$dir" -U postgres --auth=trust --encoding=UTF8 --no-locale >/dev/null
  cat >>"$dir/postgresql.conf" <<CONF

# --- wakeline ---
listen_addresses = '127.0.0.1'
# start_cluster adds a Unix socket in the data directory when its path fits.
unix_socket_directories = ''
wal_level = logical
max_wal_senders = 64
max_replication_slots = 64
max_connections = 400
shared_buffers = 512MB
synchronous_commit = on
log_min_messages = warning
log_line_prefix = '%m [%p] '
CONF
}

# start_cluster DIR PORT: starts and waits until it accepts connections, on
# 127.0.0.1:PORT and, when its path fits, on a Unix socket in DIR (see
# cluster_url).
start_cluster() {
  local dir=$1 port=$2 bin sockets=""
  bin=$(pg_bin_dir)
  cluster_socket_fits "$dir" "$port" && sockets=$dir
  as_pg_user "$bin/pg_ctl" -D "$dir" -l "$dir/server.log" \
    -o "-p $port -c unix_socket_directories=$sockets" -w -t 60 start >/dev/null ||
    { cat "$dir/server.log" >&2; die "PostgreSQL did not start (log above)"; }
}

# cluster_socket_fits DIR PORT: true when DIR can hold the cluster's socket:
# a path well under the 107 bytes a Unix socket may have, of plain characters
# (it passes through pg_ctl's shell command line unquoted).
cluster_socket_fits() {
  local socket="$1/.s.PGSQL.$2"
  [ "${#socket}" -le 100 ] && [[ "$1" =~ ^[A-Za-z0-9_./-]+$ ]]
}

# cluster_url DIR PORT DB: the connection URL for the services and tools
# started next to a cluster from start_cluster: its Unix socket when it has
# one, else loopback TCP. The socket costs Postgres and the registry less
# per message than TCP, which matters most for the replication stream (one
# message per changed row, each sent on its own); on 2 cores it carried
# about 19% more one-wake-per-stream traffic end to end (tests/bench).
cluster_url() {
  local dir=$1 port=$2 db=$3
  if [ -S "$dir/.s.PGSQL.$port" ]; then
    echo "postgresql://postgres@/$db?host=$dir&port=$port"
  else
    echo "postgresql://postgres@127.0.0.1:$port/$db"
  fi
}

stop_cluster() {
  local dir=$1 bin
  bin=$(pg_bin_dir)
  [ -f "$dir/postmaster.pid" ] || return 0
  as_pg_user "$bin/pg_ctl" -D "$dir" -m fast -w -t 60 stop >/dev/null 2>&1 || true
}

# A directory the 'postgres' user can reach (when we are root).
pg_can_use_dir() {
  [ "$(id -u)" != 0 ] && return 0
  local parent
  parent=$(dirname "$1")
  mkdir -p "$parent"
  runuser -u postgres -- test -x "$parent" 2>/dev/null
}

bazel_cmd() { (cd "$WAKE_ROOT" && bazel "$@"); }
