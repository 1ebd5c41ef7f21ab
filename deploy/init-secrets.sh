#!/bin/bash
# The compose deployments' `secrets` service: on first start, makes what the
# other services need in the shared volume (default /secrets) — a database
# password and the connection string built from it, Electric's secret, and a
# local CA, TLS certificates and tokens (scripts/gen-credentials.sh) — and
# keeps whatever is there already, so later starts change nothing and
# secrets an operator put in the volume are used as they are.
set -euo pipefail
dir=${1:-/secrets}
umask 077
mkdir -p "$dir"
[ -s "$dir/db_password" ] || openssl rand -hex 24 >"$dir/db_password"
[ -s "$dir/database_url" ] ||
  printf 'postgresql://wakeline:%s@postgres:5432/wakeline?sslmode=disable\n' \
    "$(cat "$dir/db_password")" >"$dir/database_url"
[ -s "$dir/electric_secret" ] || openssl rand -hex 24 >"$dir/electric_secret"
bash /usr/local/bin/gen-credentials.sh "$dir/credentials" >/dev/null
# The services run as uid 10001. PostgreSQL reads its password once, at its
# first start, as its own user: that file alone is readable by every
# container that mounts the volume (only this deployment's).
chown -R 10001:10001 "$dir/credentials" "$dir/database_url" "$dir/electric_secret"
chmod 444 "$dir/db_password"
chmod 755 "$dir"
echo "secrets ready in $dir"
