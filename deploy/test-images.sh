#!/usr/bin/env bash
# Builds the service images from source and runs them, as an operator would
# with `docker compose -f deploy/compose.embedded.yaml up --build`, but with
# Debian's podman (no Docker engine and no container registry here):
#   1. a Debian 12 base image bootstrapped locally with mmdebstrap (kept
#      between runs as localhost/wakeline-debian:bookworm; --rebuild-base
#      makes it again);
#   2. podman builds the secrets, PostgreSQL, registry and runtime images
#      from deploy/Dockerfile and deploy/postgres.Dockerfile on that base,
#      and podman-compose starts deploy/compose.embedded.yaml as it is: the
#      secrets service makes the password, TLS material and tokens, then
#      PostgreSQL, registry --sync=postgres and runtime start;
#   3. waits until every container's health check passes, then the Python
#      client registers a wake, finishes the child's run and receives the
#      wake through a runner, and acks it (clients/python/wake_example.py,
#      over TLS with the CA and tokens from the secrets volume), and both
#      services' /metrics count it;
#   4. SIGTERMs the services and checks they exit 0 after logging
#      event=stopped;
#   5. removes the containers, volumes, network and images it made.
# Prints each step's duration. Exit 0 when every check passed.
#   bash deploy/test-images.sh [--rebuild-base] [--keep]
set -euo pipefail
source "$(dirname "$0")/../scripts/lib.sh"
cd "$WAKE_ROOT"

REBUILD_BASE=0
KEEP=0
for arg in "$@"; do
  case "$arg" in
    --rebuild-base) REBUILD_BASE=1 ;;
    --keep) KEEP=1 ;;
    -h | --help)
      sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'
      exit 0
      ;;
    *) die "unknown argument $arg (--rebuild-base, --keep)" ;;
  esac
done
[ "$(id -u)" = 0 ] || die "podman runs rootful here: run as root"

install_debian_packages podman runc podman-compose mmdebstrap \
  golang-github-containernetworking-plugin-dnsname

BASE_IMAGE=localhost/wakeline-debian:bookworm
PROJECT=wakeline-embedded
COMPOSE=(podman-compose -p "$PROJECT" -f deploy/compose.embedded.yaml)
# container SERVICE: the name of the service's container.
container() { podman ps -a --filter "label=io.podman.compose.project=$PROJECT" \
  --filter "label=com.docker.compose.service=$1" --format '{{.Names}}' | head -n 1; }
WORK=$(mktemp -d /tmp/wakeline-images.XXXXXX)
STEPS=()
step_started=$(date +%s)
script_started=$step_started
# step NAME: records how long the step that just ended took.
step() {
  local now
  now=$(date +%s)
  STEPS+=("$(printf '%-52s %4ss' "$1" $((now - step_started)))")
  step_started=$now
}

# podman's defaults fail on these machines ("setrlimit: Operation not
# permitted" with crun and its default ulimits): runc, explicit ulimits.
# Services find each other by name (postgres, registry) through CNI's
# dnsname plugin (netavark's bridge had no route out here, so builds could
# not reach the Debian mirror).
cat >"$WORK/containers.conf" <<'CONF'
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]

[engine]
runtime = "runc"
CONF
export CONTAINERS_CONF="$WORK/containers.conf"

cleanup() {
  local status=$?
  if [ "$status" != 0 ]; then
    for service in secrets postgres registry runtime; do
      name=$(container "$service" 2>/dev/null || true)
      [ -n "$name" ] && podman logs "$name" >"$WORK/$service.log" 2>&1
    done
  fi
  if [ "$KEEP" = 0 ]; then
    "${COMPOSE[@]}" down -v -t 5 >/dev/null 2>&1 || true
    podman rmi -f "localhost/${PROJECT}_registry" "localhost/${PROJECT}_runtime" \
      "localhost/${PROJECT}_postgres" "localhost/${PROJECT}_secrets" >/dev/null 2>&1 || true
    podman image prune -f >/dev/null 2>&1 || true
  fi
  if [ "$status" = 0 ]; then
    rm -rf "$WORK"
  else
    log "kept $WORK (build and compose logs)"
  fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# 1. The base image.
if [ "$REBUILD_BASE" = 1 ] || ! podman image exists "$BASE_IMAGE"; then
  log "bootstrapping a Debian 12 base image with mmdebstrap"
  mmdebstrap --quiet --variant=minbase bookworm "$WORK/base.tar"
  podman import --quiet "$WORK/base.tar" "$BASE_IMAGE" >/dev/null
  rm -f "$WORK/base.tar"
  step "base image (mmdebstrap, import)"
else
  step "base image (kept from an earlier run)"
fi

# 2. Build and start. Nothing is prepared on the host: the `secrets` service
# makes the database password, TLS material and tokens in its volume.
export WAKELINE_BASE_IMAGE="$BASE_IMAGE" WAKELINE_RUNTIME_IMAGE="$BASE_IMAGE"
export WAKELINE_REGISTRY_PORT WAKELINE_RUNTIME_PORT WAKELINE_REGISTRY_METRICS_PORT \
  WAKELINE_RUNTIME_METRICS_PORT
WAKELINE_REGISTRY_PORT=$(free_port 56051)
WAKELINE_RUNTIME_PORT=$(free_port $((WAKELINE_REGISTRY_PORT + 1)))
WAKELINE_REGISTRY_METRICS_PORT=$(free_port $((WAKELINE_RUNTIME_PORT + 1)))
WAKELINE_RUNTIME_METRICS_PORT=$(free_port $((WAKELINE_REGISTRY_METRICS_PORT + 1)))
# The images under the names podman-compose gives them, built from the same
# Dockerfiles and arguments as compose.embedded.yaml's build sections.
build_image() {  # build_image SERVICE DOCKERFILE [TARGET]
  local service=$1 dockerfile=$2 target=${3:-}
  log "building the $service image ($dockerfile${target:+, target $target})"
  podman build --quiet --tag "localhost/${PROJECT}_$service" --file "$dockerfile" \
    ${target:+--target "$target"} --build-arg "BASE_IMAGE=$BASE_IMAGE" \
    --build-arg "RUNTIME_IMAGE=$BASE_IMAGE" . >"$WORK/build-$service.log" 2>&1 ||
    { tail -n 60 "$WORK/build-$service.log" >&2; die "building the $service image failed"; }
}
build_image secrets deploy/Dockerfile secrets
build_image postgres deploy/postgres.Dockerfile
build_image registry deploy/Dockerfile registry
build_image runtime deploy/Dockerfile runtime
step "images built (secrets, postgres, registry, runtime)"
# podman-compose 1.0.3 starts services in dependency order but does not wait
# for conditions, so the one-shot secrets service runs to completion first
# (compose honours service_completed_successfully itself).
"${COMPOSE[@]}" up -d --no-build secrets >"$WORK/up.log" 2>&1 ||
  { cat "$WORK/up.log" >&2; die "podman-compose up secrets failed"; }
[ "$(podman wait "$(container secrets)")" = 0 ] ||
  { podman logs "$(container secrets)" >&2; die "the secrets service failed"; }
"${COMPOSE[@]}" up -d --no-build >>"$WORK/up.log" 2>&1 ||
  { cat "$WORK/up.log" >&2; die "podman-compose up failed"; }
SECRETS=$(podman volume inspect --format '{{.Mountpoint}}' "${PROJECT}_secrets")
for service in postgres registry runtime; do
  [ -n "$(container "$service")" ] || { cat "$WORK/up.log" >&2; die "podman-compose did not start $service"; }
done

# 3. Health, then a wake end to end.
healthy() { [ "$(podman healthcheck run "$(container "$1")" >/dev/null 2>&1 && echo ok)" = ok ]; }
deadline=$(($(date +%s) + 180))
for service in postgres registry runtime; do
  until healthy "$service"; do
    if [ "$(date +%s)" -gt "$deadline" ]; then
      podman logs "$(container "$service")" 2>&1 | tail -n 40 >&2
      die "$service did not become healthy within 180s (its log is above)"
    fi
    sleep 1
  done
  log "$service is healthy"
done
step "stack up and healthy"

log "generating the Python client's stubs"
bash clients/generate.sh python >"$WORK/generate.log" 2>&1 ||
  { tail -n 30 "$WORK/generate.log" >&2; die "clients/generate.sh python failed"; }
WAKE_REGISTRY_ADDR="127.0.0.1:$WAKELINE_REGISTRY_PORT" WAKE_RUNTIME_ADDR="127.0.0.1:$WAKELINE_RUNTIME_PORT" \
  WAKE_CA_FILE="$SECRETS/credentials/ca.pem" \
  WAKE_CLIENT_TOKEN_FILE="$SECRETS/credentials/token.client" \
  WAKE_RUNNER_TOKEN_FILE="$SECRETS/credentials/token.runner" \
  clients/python/.venv/bin/python clients/python/wake_example.py | tee "$WORK/flow.log"
grep -q "acked" "$WORK/flow.log" || die "the Python client's flow did not end with an ack"
step "a wake end to end (Python client)"

# The services' /metrics saw that wake.
metric() {  # metric PORT NAME: the sample's value, or nothing
  curl -fsS "http://127.0.0.1:$1/metrics" | awk -v name="$2" '$1 == name { print $2 }'
}
registered=$(metric "$WAKELINE_REGISTRY_METRICS_PORT" \
  'wake_rpc_requests_total{method="RegisterWake",service="wake.v1.WakeRegistry"}')
acked=$(metric "$WAKELINE_RUNTIME_METRICS_PORT" 'wake_runtime_claims_total{outcome="acked"}')
log "metrics: RegisterWake calls ${registered:-missing}, claims acked ${acked:-missing}"
[ "${registered:-0}" -ge 1 ] 2>/dev/null || die "registry /metrics did not count the RegisterWake"
[ "${acked:-0}" -ge 1 ] 2>/dev/null || die "runtime /metrics did not count the acked claim"
step "metrics scraped"

# 4. SIGTERM, a clean exit each.
for service in runtime registry; do
  name=$(container "$service")
  stop_started=$(date +%s)
  podman stop -t 30 "$name" >/dev/null
  code=$(podman inspect --format '{{.State.ExitCode}}' "$name")
  log "$service: stopped after $(($(date +%s) - stop_started))s, exit code $code"
  podman logs "$name" 2>&1 | grep -q "event=stopped" ||
    { podman logs "$name" 2>&1 | tail -n 20 >&2; die "$service did not log event=stopped"; }
  [ "$code" = 0 ] || die "$service exited $code after SIGTERM"
  log "$service stopped cleanly (exit 0)"
done
step "SIGTERM: clean exits"

echo
echo "image test: passed"
printf '  %s\n' "${STEPS[@]}"
echo "  total: $(($(date +%s) - script_started))s"
