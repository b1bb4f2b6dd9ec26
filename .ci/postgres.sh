#!/usr/bin/env bash
# Starts a throwaway PostgreSQL cluster on 127.0.0.1:${PGPORT:-54329} as the unprivileged user "postgres"
# (installing Debian's postgresql first if needed) and prints its URL. Used by .ci/run and by developers:
#   export TEST_DATABASE_URL=$(bash .ci/postgres.sh) && npm test
set -euo pipefail
port=${PGPORT:-54329}
if ! ls -d /usr/lib/postgresql/*/bin >/dev/null 2>&1; then
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql; } >&2
fi
bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
data=${PGDATA_DIR:-/tmp/mcp-registry-pg-$port}
run() { if [ "$(id -u)" = 0 ]; then su postgres -s /bin/sh -c "$*"; else sh -c "$*"; fi; }
if ! run "$bin/pg_isready -q -h 127.0.0.1 -p $port"; then
  rm -rf "$data" && mkdir -p "$data"
  [ "$(id -u)" = 0 ] && chown postgres "$data"
  run "$bin/initdb -D $data -A trust -U postgres" >&2
  run "$bin/pg_ctl -D $data -l $data/server.log -w -o '-p $port -k /tmp -c listen_addresses=127.0.0.1 -c max_connections=300 -c fsync=off' start" >&2
fi
echo "postgres://postgres@127.0.0.1:$port/postgres"
