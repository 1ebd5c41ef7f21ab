#!/usr/bin/env bash
# Makes local TLS material and bearer tokens for Wakeline (docs/security.md):
#
#   bash scripts/gen-credentials.sh DIR [NAME:ROLE:TENANTS[:EXPIRY] ...]
#
# DIR gets a private CA (ca.pem), a server certificate for localhost and
# 127.0.0.1 (server.pem, server.key), a client certificate for mutual TLS
# (client.pem, client.key), and one random token per principal in
# token.NAME (mode 600) with the token file the services read (tokens: the
# SHA-256 of each token and its principal, role and tenants). TENANTS is a
# comma-separated list or '*'; EXPIRY is RFC 3339. Without principals it
# makes admin:admin:*, runtime:runtime:*, client:client:default and
# runner:runner:default. Existing files are kept, so running it again adds
# principals without changing the others.
set -euo pipefail
dir=${1:?usage: gen-credentials.sh DIR [NAME:ROLE:TENANTS[:EXPIRY] ...]}
shift
principals=("$@")
[ "${#principals[@]}" -eq 0 ] &&
  principals=("admin:admin:*" "runtime:runtime:*" "client:client:default" "runner:runner:default")
command -v openssl >/dev/null || { echo "gen-credentials: openssl is needed" >&2; exit 1; }
mkdir -p "$dir"
chmod 700 "$dir"
cd "$dir"
umask 077

if [ ! -f ca.pem ]; then
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 3650 \
    -subj "/CN=Wakeline local CA" -keyout ca.key -out ca.pem 2>/dev/null
fi
# issue NAME CN EXTENSIONS: a key and a certificate signed by the CA.
issue() {
  local name=$1 cn=$2 ext=$3
  [ -f "$name.pem" ] && return 0
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "/CN=$cn" \
    -keyout "$name.key" -out "$name.csr" 2>/dev/null
  printf '%s\n' "$ext" >"$name.ext"
  openssl x509 -req -in "$name.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -days 825 \
    -extfile "$name.ext" -out "$name.pem" 2>/dev/null
  rm -f "$name.csr" "$name.ext"
}
issue server localhost "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1
extendedKeyUsage=serverAuth"
issue client wakeline-client "extendedKeyUsage=clientAuth"
chmod 644 ca.pem server.pem client.pem

touch tokens
for spec in "${principals[@]}"; do
  IFS=: read -r name role tenants expiry <<<"$spec"
  # RFC 3339 times hold colons: whatever follows the tenants is the expiry.
  expiry=${spec#"$name:$role:$tenants"}
  expiry=${expiry#:}
  [ -n "$name" ] && [ -n "$role" ] && [ -n "$tenants" ] ||
    { echo "gen-credentials: bad principal '$spec' (NAME:ROLE:TENANTS[:EXPIRY])" >&2; exit 2; }
  [ -f "token.$name" ] && continue
  token=$(openssl rand -hex 32)
  printf '%s\n' "$token" >"token.$name"
  hash=$(printf '%s' "$token" | sha256sum | cut -d' ' -f1)
  printf '%s %s %s %s %s\n' "$hash" "$name" "$role" "$tenants" "$expiry" >>tokens
done
echo "credentials in $dir"
