#!/usr/bin/env bash
# Generates the client stubs from proto/ (the proto root: `import "wake/v1/...`):
#   clients/python/gen       grpcio-tools (messages, .pyi types, gRPC stubs)
#   clients/go/gen           protoc-gen-go + protoc-gen-go-grpc
#   clients/typescript/gen   ts-proto (typed messages and @grpc/grpc-js clients)
# One protoc for all three: the one bundled with the pinned grpcio-tools.
# Installs what it needs (virtualenv, Go plugins, npm packages) and can be run
# again at any time; generated code is not committed.
#   bash clients/generate.sh [python] [go] [typescript]   (default: all)
set -euo pipefail
source "$(dirname "$0")/../scripts/lib.sh"
source "$WAKE_ROOT/scripts/toolchains.sh"

CLIENTS="$WAKE_ROOT/clients"
PROTO_ROOT="$WAKE_ROOT/proto"
PROTOS=(wake/v1/registry.proto wake/v1/runtime.proto)
PY_VENV="$CLIENTS/python/.venv"

# Plugin versions; keep protoc-gen-go in step with google.golang.org/protobuf
# in clients/go/go.mod.
PROTOC_GEN_GO="google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12"
PROTOC_GEN_GO_GRPC="google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.6.2"

languages=("$@")
[ "${#languages[@]}" -eq 0 ] && languages=(python go typescript)

protoc() {
  "$PY_VENV/bin/python" -m grpc_tools.protoc -I"$PROTO_ROOT" "$@" "${PROTOS[@]}"
}

# fresh_dir DIR: an empty output directory.
fresh_dir() {
  rm -rf "$1"
  mkdir -p "$1"
}

gen_python() {
  fresh_dir "$CLIENTS/python/gen"
  protoc --python_out="$CLIENTS/python/gen" --pyi_out="$CLIENTS/python/gen" \
    --grpc_python_out="$CLIENTS/python/gen"
  log "generated Python stubs in clients/python/gen"
}

gen_go() {
  go_tool protoc-gen-go "$PROTOC_GEN_GO"
  go_tool protoc-gen-go-grpc "$PROTOC_GEN_GO_GRPC"
  fresh_dir "$CLIENTS/go/gen"
  protoc --plugin=protoc-gen-go="$WAKE_TOOLS_BIN/protoc-gen-go" \
    --plugin=protoc-gen-go-grpc="$WAKE_TOOLS_BIN/protoc-gen-go-grpc" \
    --go_out="$CLIENTS/go" --go_opt=module=wakeline/clients/go \
    --go-grpc_out="$CLIENTS/go" --go-grpc_opt=module=wakeline/clients/go
  log "generated Go stubs in clients/go/gen"
}

gen_typescript() {
  ensure_node
  local dir="$CLIENTS/typescript"
  # npm ci only when the lock file changed since the last install.
  if ! cmp -s "$dir/package-lock.json" "$dir/node_modules/.package-lock.json.installed" 2>/dev/null; then
    log "npm ci in clients/typescript"
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
    cp "$dir/package-lock.json" "$dir/node_modules/.package-lock.json.installed"
  fi
  fresh_dir "$dir/gen"
  protoc --plugin=protoc-gen-ts_proto="$dir/node_modules/.bin/protoc-gen-ts_proto" \
    --ts_proto_out="$dir/gen" \
    --ts_proto_opt=outputServices=grpc-js,env=node,esModuleInterop=true,useDate=true,forceLong=number,oneof=unions-value,useOptionals=messages
  log "generated TypeScript stubs in clients/typescript/gen"
}

# Every language uses the pinned protoc from grpcio-tools.
ensure_python_venv "$PY_VENV" "$CLIENTS/python/requirements.txt"
for language in "${languages[@]}"; do
  case "$language" in
    python) gen_python ;;
    go) gen_go ;;
    typescript | ts) gen_typescript ;;
    *) die "unknown language '$language' (python, go, typescript)" ;;
  esac
done
