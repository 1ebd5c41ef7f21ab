# Language toolchains for the polyglot clients and the load test: Python (venv),
# Go and Node. Each ensure_* installs what is missing (Debian packages, then the
# language's own registry) and is cheap when everything is already there.
# Source it after scripts/lib.sh.
# shellcheck shell=bash

# Tools built with `go install` (protoc plugins, ghz) land here.
WAKE_TOOLS_BIN="$WAKE_ROOT/.wakeline/tools/bin"

# Lowest Go the client module and ghz accept; and the toolchain fetched from the
# Go module proxy (module golang.org/toolchain) when the machine's Go is older.
WAKE_GO_MIN="1.26"
WAKE_GO_TOOLCHAIN="go1.26.8"

# version_at_least HAVE WANT: dotted versions, numerically.
version_at_least() {
  [ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -n 1)" = "$2" ]
}

ensure_python() {
  command -v python3 >/dev/null && python3 -c 'import venv, ensurepip' 2>/dev/null && return 0
  install_debian_packages python3 python3-venv python3-pip
}

# ensure_python_venv DIR REQUIREMENTS: a virtualenv at DIR with exactly the pinned
# requirements (reinstalled only when the requirements file changed).
ensure_python_venv() {
  local dir=$1 requirements=$2 stamp
  ensure_python
  stamp="$dir/.requirements.sha256"
  if [ -x "$dir/bin/python" ] && [ -f "$stamp" ] &&
    [ "$(sha256sum <"$requirements")" = "$(cat "$stamp")" ]; then
    return 0
  fi
  log "creating Python virtualenv $dir"
  python3 -m venv "$dir"
  "$dir/bin/python" -m pip install -q --disable-pip-version-check -r "$requirements"
  sha256sum <"$requirements" >"$stamp"
}

go_version_of() { "$1" env GOVERSION 2>/dev/null | sed 's/^go//'; }

# ensure_go: puts a Go >= WAKE_GO_MIN first on PATH. Uses the machine's Go when
# it is new enough; otherwise installs Debian's golang-go and lets it download
# the pinned toolchain from the Go module proxy (the same module `GOTOOLCHAIN`
# uses), since Debian 12's Go predates the module's requirements.
ensure_go() {
  local go_bin
  [ -d /usr/local/go/bin ] && PATH="$PATH:/usr/local/go/bin"
  PATH="$WAKE_TOOLS_BIN:$PATH"
  export PATH
  if command -v go >/dev/null && version_at_least "$(go_version_of go)" "$WAKE_GO_MIN"; then
    return 0
  fi
  command -v go >/dev/null || install_debian_packages golang-go
  local cache="$WAKE_ROOT/.wakeline/go-toolchain"
  local module="golang.org/toolchain@v0.0.1-$WAKE_GO_TOOLCHAIN.linux-$(dpkg --print-architecture)"
  local dir
  mkdir -p "$cache"
  # From a directory outside any module: an old Go cannot parse newer go.mod files.
  dir=$(cd "$cache" && GOMODCACHE="$cache" GOFLAGS=-modcacherw GO111MODULE=on \
    go mod download -json "$module" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
  [ -n "$dir" ] && [ -f "$dir/bin/go" ] || die "could not fetch $module from the Go module proxy"
  # Module zips carry no executable bits.
  chmod +x "$dir/bin/"* "$dir/pkg/tool/"*/* 2>/dev/null || true
  go_bin="$dir/bin"
  PATH="$go_bin:$PATH"
  export PATH GOTOOLCHAIN=local
  version_at_least "$(go_version_of go)" "$WAKE_GO_MIN" || die "Go $WAKE_GO_MIN or newer is needed"
  log "using Go $(go_version_of go) from $go_bin"
}

# go_tool NAME PACKAGE@VERSION: installs a Go command into WAKE_TOOLS_BIN unless
# that exact version is already there.
go_tool() {
  local name=$1 spec=$2 want have
  want=${spec##*@}
  ensure_go
  if [ -x "$WAKE_TOOLS_BIN/$name" ]; then
    have=$(go version -m "$WAKE_TOOLS_BIN/$name" 2>/dev/null | awk '$1 == "mod" { print $3; exit }')
    [ "$have" = "$want" ] && return 0
  fi
  log "go install $spec"
  mkdir -p "$WAKE_TOOLS_BIN"
  GOBIN="$WAKE_TOOLS_BIN" go install "$spec"
}

# ensure_node: node and npm (Debian's when the machine has none).
ensure_node() {
  if command -v node >/dev/null && command -v npm >/dev/null; then
    return 0
  fi
  install_debian_packages nodejs npm
}

# ensure_electric_client: Electric's TypeScript client for the scripted
# Electric's conformance test (tests/electric/conformance), installed from the
# lock file (npm ci only when it changed since the last install).
ensure_electric_client() {
  local dir="$WAKE_ROOT/tests/electric/conformance"
  ensure_node
  if ! cmp -s "$dir/package-lock.json" "$dir/node_modules/.package-lock.json.installed" 2>/dev/null; then
    log "npm ci in tests/electric/conformance"
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
    cp "$dir/package-lock.json" "$dir/node_modules/.package-lock.json.installed"
  fi
}
