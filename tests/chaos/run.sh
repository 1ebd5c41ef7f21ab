#!/usr/bin/env bash
# Chaos run: the real registry-service and runtime-service on a throwaway
# PostgreSQL cluster (removed afterwards), while wakes are produced and the
# processes are killed. Two registry replicas (--sync=postgres, one database),
# two runtimes (each following one registry through a proxy the driver can
# cut), runner processes on both runtimes that ack every claim after 0-50 ms.
# During production it SIGKILLs and restarts registries, runtimes and
# runners at random times, restarts PostgreSQL once (pg_ctl restart -m
# immediate) and cuts one runtime-registry link for a few seconds. Then it
# waits for every wake to be acked and prints: wakes produced, delivered,
# acked, lost, duplicated productions, double acks, each fault with its time,
# and the elapsed time.
#
#   bash tests/chaos/run.sh            full run: 10,000 wakes over 120 s, 14 faults
#   bash tests/chaos/run.sh --smoke    CI: about 60 s in all, 1,500 wakes, one fault of each kind
#
# Options (defaults: full / smoke):
#   --wakes N              wakes to produce (10000 / 1500)
#   --duration S           seconds of production; faults fall inside it (120 / 30)
#   --drain S              seconds to wait afterwards for every wake to be acked (120 / 20)
#   --seed N               seed of the workload and the fault plan (default: random,
#                          printed first). The same seed repeats both; timings differ.
#   --registry-kills N --runtime-kills N --runner-kills N --postgres-restarts N
#   --proxy-cuts N         how many faults of each kind (3 3 6 1 1 / 1 1 1 1 1)
#   --keep                 keep the work directory (service logs, runner records)
#                          even when the run passed; it is always kept when it failed
# Sabotage, to see the harness fail (these runs must report losses):
#   --never-ack F          runners hold a fraction F of their claims and never ack them
#   --no-runtime-restart   killed runtimes stay down (use with --runtime-kills 2)
#
# Exit status: 0 nothing lost and nothing produced twice; 1 something was;
# 2 the run could not be carried out (startup failed, calls abandoned, ...).
set -euo pipefail
source "$(dirname "$0")/../../scripts/lib.sh"
cd "$WAKE_ROOT"

MODE=full
WAKES="" DURATION="" DRAIN="" SEED="" KEEP=0
REGISTRY_KILLS="" RUNTIME_KILLS="" RUNNER_KILLS="" PG_RESTARTS="" PROXY_CUTS=""
SABOTAGE=()
while [ $# -gt 0 ]; do
  case "$1" in
    --smoke) MODE=smoke ;;
    --wakes) WAKES=$2; shift ;;
    --duration) DURATION=$2; shift ;;
    --drain) DRAIN=$2; shift ;;
    --seed) SEED=$2; shift ;;
    --registry-kills) REGISTRY_KILLS=$2; shift ;;
    --runtime-kills) RUNTIME_KILLS=$2; shift ;;
    --runner-kills) RUNNER_KILLS=$2; shift ;;
    --postgres-restarts) PG_RESTARTS=$2; shift ;;
    --proxy-cuts) PROXY_CUTS=$2; shift ;;
    --keep) KEEP=1 ;;
    --never-ack) SABOTAGE+=("--never-ack-fraction=$2"); shift ;;
    --no-runtime-restart) SABOTAGE+=("--no-runtime-restart") ;;
    -h | --help) awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"; exit 0 ;;
    *) die "unknown argument '$1' (see --help)" ;;
  esac
  shift
done
if [ "$MODE" = smoke ]; then
  WAKES=${WAKES:-1500} DURATION=${DURATION:-30} DRAIN=${DRAIN:-20}
  REGISTRY_KILLS=${REGISTRY_KILLS:-1} RUNTIME_KILLS=${RUNTIME_KILLS:-1}
  RUNNER_KILLS=${RUNNER_KILLS:-1} PG_RESTARTS=${PG_RESTARTS:-1} PROXY_CUTS=${PROXY_CUTS:-1}
else
  WAKES=${WAKES:-10000} DURATION=${DURATION:-120} DRAIN=${DRAIN:-120}
  REGISTRY_KILLS=${REGISTRY_KILLS:-3} RUNTIME_KILLS=${RUNTIME_KILLS:-3}
  RUNNER_KILLS=${RUNNER_KILLS:-6} PG_RESTARTS=${PG_RESTARTS:-1} PROXY_CUTS=${PROXY_CUTS:-1}
fi
for value in "$WAKES" "$DURATION" "$DRAIN" "$REGISTRY_KILLS" "$RUNTIME_KILLS" "$RUNNER_KILLS" \
  "$PG_RESTARTS" "$PROXY_CUTS" ${SEED:+"$SEED"}; do
  [[ "$value" =~ ^[0-9]+$ ]] || die "expected a whole number, got '$value' (see --help)"
done
SEED=${SEED:-$(( $(od -An -N4 -tu4 /dev/urandom) ))}
log "chaos run ($MODE), seed $SEED: repeat it with --seed $SEED"
BEGAN=$(date +%s%N)

install_debian_packages
log "building the services and the chaos driver and runner"
bazel_cmd build //registry-service //runtime-service //tests/chaos:chaos_driver \
  //tests/chaos:chaos_runner >&2

WORK=$(mktemp -d /tmp/wakeline-chaos.XXXXXX)
DRIVER_PID=""
DRIVER_PGID=""
STATUS=2
cleanup() {
  if [ -n "$DRIVER_PID" ] && kill -0 "$DRIVER_PID" 2>/dev/null; then
    # The driver stops its processes when told; then its process group (it is
    # the group's leader: setsid below) is killed in case anything is left.
    kill -TERM "$DRIVER_PID" 2>/dev/null || true
    for _ in $(seq 1 300); do
      kill -0 "$DRIVER_PID" 2>/dev/null || break
      sleep 0.1
    done
  fi
  if [ -n "$DRIVER_PGID" ]; then
    # Normally empty by now; not if the driver itself crashed.
    kill -KILL -- "-$DRIVER_PGID" 2>/dev/null || true
    wait "$DRIVER_PGID" 2>/dev/null || true
  fi
  stop_cluster "$WORK/pg"
  rm -rf "$WORK/pg" "$WORK/bin"
  if [ "$STATUS" = 0 ] && [ "$KEEP" = 0 ]; then
    rm -rf "$WORK"
  else
    log "logs and runner records kept in $WORK"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
[ "$(id -u)" = 0 ] && chmod 755 "$WORK"

mkdir -p "$WORK/bin"
cp -f "$WAKE_ROOT/bazel-bin/registry-service/registry-service" \
  "$WAKE_ROOT/bazel-bin/runtime-service/runtime-service" \
  "$WAKE_ROOT/bazel-bin/tests/chaos/chaos_driver" \
  "$WAKE_ROOT/bazel-bin/tests/chaos/chaos_runner" "$WORK/bin/"

init_cluster "$WORK/pg"
PG_PORT=$(free_port 57632)
start_cluster "$WORK/pg" "$PG_PORT"
"$(pg_bin_dir)/psql" -h 127.0.0.1 -p "$PG_PORT" -U postgres -qAt -d postgres \
  -c "CREATE DATABASE chaos"
DATABASE_URL="postgresql://postgres@127.0.0.1:$PG_PORT/chaos"
log "PostgreSQL at $DATABASE_URL"
# pg_ctl restart reuses the options the server was started with (postmaster.opts).
PG_RESTART="$(pg_bin_dir)/pg_ctl -D $WORK/pg -l $WORK/pg/server.log -m immediate -w -t 60 restart"
[ "$(id -u)" = 0 ] && PG_RESTART="runuser -u postgres -- $PG_RESTART"
PG_RESTART="$PG_RESTART >>$WORK/postgres-restart.log 2>&1"

# Its own session and process group, so cleanup can end everything it started.
setsid "$WORK/bin/chaos_driver" --mode="$MODE" --work-dir="$WORK" --bin-dir="$WORK/bin" \
  --database-url="$DATABASE_URL" --postgres-restart-command="$PG_RESTART" \
  --wakes="$WAKES" --duration="$DURATION" --drain-timeout="$DRAIN" --seed="$SEED" \
  --registry-kills="$REGISTRY_KILLS" --runtime-kills="$RUNTIME_KILLS" \
  --runner-kills="$RUNNER_KILLS" --postgres-restarts="$PG_RESTARTS" \
  --proxy-cuts="$PROXY_CUTS" "${SABOTAGE[@]}" &
DRIVER_PID=$!
DRIVER_PGID=$DRIVER_PID
set +e
wait "$DRIVER_PID"
STATUS=$?
set -e
DRIVER_PID=""
echo "chaos run ($MODE) took $(( ($(date +%s%N) - BEGAN) / 1000000 )) ms in all" \
  "(build, cluster, services, production, drain); exit status $STATUS; seed $SEED"
exit "$STATUS"
