#!/usr/bin/env bash
# Runs invalidator against a throwaway local PostgreSQL 15 and Redis with the
# demo schema, changes some rows and shows the keys going and the messages
# arriving. Installs what is missing (Debian packages), keeps everything
# under .demo/ and stops it all on exit.
#
#   demo/demo.sh          run the scenario, then keep streaming until Ctrl-C
#   demo/demo.sh --once   run the scenario and stop (used by `make test`)
#
# DEMO_DIR, DEMO_PG_PORT, DEMO_REDIS_PORT and DEMO_HTTP_PORT move it, so a
# second demo can run beside a first one. A running demo is never touched.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
DEMO=${DEMO_DIR:-$ROOT/.demo}
PGBIN=/usr/lib/postgresql/15/bin
PGPORT=${DEMO_PG_PORT:-54329}
REDISPORT=${DEMO_REDIS_PORT:-63799}
HTTPPORT=${DEMO_HTTP_PORT:-19187}
ONCE=false
[ "${1:-}" = "--once" ] && ONCE=true

# Bold headings on a terminal only: no escape codes in a redirected log.
if [ -t 1 ] && [ -z "${NO_COLOR:-}" ]; then
  say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
else
  say() { printf '\n== %s\n' "$*"; }
fi
die() { printf 'demo: %s\n' "$@" >&2; exit 1; }

RUNAS=""
# PostgreSQL refuses to run as root: use the postgres user of the package
[ "$(id -u)" -eq 0 ] && RUNAS="runuser -u postgres --"

# --- never touch a running demo -------------------------------------------------
others="DEMO_DIR=/tmp/demo2 DEMO_PG_PORT=$((PGPORT + 1)) DEMO_REDIS_PORT=$((REDISPORT + 1)) DEMO_HTTP_PORT=$((HTTPPORT + 1)) make demo"
if [ -f "$DEMO/demo.pid" ] && kill -0 "$(cat "$DEMO/demo.pid")" 2>/dev/null; then
  die "a demo is already running (pid $(cat "$DEMO/demo.pid"), in $DEMO): PostgreSQL on 127.0.0.1:$PGPORT, Redis on 127.0.0.1:$REDISPORT, HTTP on 127.0.0.1:$HTTPPORT." \
    "Use it (source $DEMO/env for its INVALIDATOR_* variables), stop it with Ctrl-C where it runs, or start a second one beside it:" \
    "  $others"
fi
if [ -f "$DEMO/pg/data/postmaster.pid" ]; then # a demo killed without its cleanup left PostgreSQL running
  $RUNAS "$PGBIN/pg_ctl" -D "$DEMO/pg/data" -m fast -w stop >/dev/null 2>&1 || true
fi
for port in "$PGPORT" "$REDISPORT" "$HTTPPORT"; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    die "port $port on 127.0.0.1 is in use (by another demo or program); DEMO_PG_PORT, DEMO_REDIS_PORT and DEMO_HTTP_PORT choose others, e.g." \
      "  $others"
  fi
done

# --- install what is missing ------------------------------------------------
missing=()
[ -x "$PGBIN/postgres" ] || missing+=(postgresql-15)
command -v psql >/dev/null || missing+=(postgresql-client-15)
command -v redis-server >/dev/null || missing+=(redis-server)
command -v curl >/dev/null || missing+=(curl)
command -v make >/dev/null || missing+=(make)
if [ ${#missing[@]} -gt 0 ]; then
  say "installing ${missing[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
export PATH=/usr/local/go/bin:$PATH
command -v go >/dev/null || { echo "Go is needed (https://go.dev/dl); /usr/local/go/bin is searched" >&2; exit 1; }

# --- start PostgreSQL (as a non-root user) and Redis -------------------------
pids=()
cleanup() {
  set +e
  [ -n "${SUB_PID:-}" ] && kill "$SUB_PID" 2>/dev/null && wait "$SUB_PID" 2>/dev/null
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
  [ -f "$DEMO/pg/data/postmaster.pid" ] && $RUNAS "$PGBIN/pg_ctl" -D "$DEMO/pg/data" -m fast -w stop >/dev/null 2>&1
  wait 2>/dev/null
}
trap cleanup EXIT
trap 'exit 0' INT # Ctrl-C is how the demo is stopped: not a failure
trap 'exit 143' TERM

rm -rf "$DEMO"
mkdir -p "$DEMO/pg"
echo $$ >"$DEMO/demo.pid"
if [ -n "$RUNAS" ]; then
  chmod 755 "$DEMO"; chown postgres "$DEMO/pg"
fi
say "starting PostgreSQL 15 on 127.0.0.1:$PGPORT (wal_level=logical) and Redis on 127.0.0.1:$REDISPORT"
$RUNAS "$PGBIN/initdb" -D "$DEMO/pg/data" -U postgres --auth=trust --no-sync >/dev/null
$RUNAS "$PGBIN/pg_ctl" -D "$DEMO/pg/data" -l "$DEMO/pg/log" -w \
  -o "-p $PGPORT -k $DEMO/pg -c listen_addresses=127.0.0.1 -c wal_level=logical" start >/dev/null
redis-server --port "$REDISPORT" --bind 127.0.0.1 --save '' --appendonly no --dir "$DEMO" >"$DEMO/redis.log" 2>&1 &
pids+=($!)
export PGHOST=127.0.0.1 PGPORT PGUSER=postgres PGDATABASE=postgres
rcli() { redis-cli -p "$REDISPORT" "$@"; }
for _ in $(seq 100); do rcli ping >/dev/null 2>&1 && break; sleep 0.1; done
psql -q -v ON_ERROR_STOP=1 -f demo/schema.sql

# --- build and start the daemon -------------------------------------------------
say "building and starting invalidator"
make -s build BIN="$DEMO/invalidator"
# What another shell needs to point a binary at this demo (printed when ready).
cat >"$DEMO/env" <<EOF
export INVALIDATOR_POSTGRES_URL='postgres://postgres@127.0.0.1:$PGPORT/postgres?sslmode=disable'
export INVALIDATOR_REDIS_URL='redis://127.0.0.1:$REDISPORT/0'
export INVALIDATOR_RULES='$ROOT/demo/rules.yaml'
EOF
# shellcheck source=/dev/null
. "$DEMO/env"
export INVALIDATOR_HTTP_ADDR=127.0.0.1:$HTTPPORT
export INVALIDATOR_LOG_FORMAT=console
"$DEMO/invalidator" run >"$DEMO/daemon.log" 2>&1 &
DAEMON=$!
pids+=($DAEMON)
for _ in $(seq 300); do
  curl -fs "http://127.0.0.1:$HTTPPORT/readyz" >/dev/null 2>&1 && break
  kill -0 $DAEMON 2>/dev/null || { cat "$DEMO/daemon.log"; exit 1; }
  sleep 0.1
done
curl -fs "http://127.0.0.1:$HTTPPORT/readyz"
say "the demo is ready; to point the built binary (make build) at it, in another shell:"
sed 's/^/  /' "$DEMO/env"
echo "  bin/invalidator status        # or check, explain, replay --dry-run; the lines are in $DEMO/env"

# --- subscribe like an application instance would ------------------------------
# redis-cli prints a pmessage as four lines (kind, pattern, channel,
# payload): write one line per message, the channel and its JSON.
redis-cli -p "$REDISPORT" psubscribe 'cache:invalidate:*' 2>/dev/null | while IFS= read -r kind; do
  case $kind in
    psubscribe) IFS= read -r pattern; IFS= read -r _; printf 'subscribed to %s\n' "$pattern" ;;
    pmessage) IFS= read -r _; IFS= read -r channel; IFS= read -r payload; printf '%s  %s\n' "$channel" "$payload" ;;
  esac
done >"$DEMO/messages.log" &
SUB_PID=$!
for _ in $(seq 100); do grep -q '^subscribed to' "$DEMO/messages.log" 2>/dev/null && break; sleep 0.05; done

wait_gone() { # key: poll until the daemon has deleted it
  for _ in $(seq 200); do [ "$(rcli exists "$1")" = 0 ] && return 0; sleep 0.05; done
  echo "key $1 was not invalidated" >&2; return 1
}
show() { for k in "$@"; do printf '  %-34s %s\n' "$k" "$(rcli exists "$k" | sed 's/1/cached/;s/0/gone/')"; done; }

say "an application has cached some entries"
rcli set tenant:acme:shard:1:structured '{"title":"Q3 plan"}' >/dev/null
rcli set tenant:acme:vsearch:plan '[1]' >/dev/null
rcli set tenant:globex:shard:1:structured '{"title":"other tenant"}' >/dev/null
rcli set tenant:acme:user:7:profile '{"name":"Ann"}' >/dev/null
show tenant:acme:shard:1:structured tenant:acme:vsearch:plan tenant:globex:shard:1:structured tenant:acme:user:7:profile

say "INSERT a shard and a user, UPDATE the shard's title (psql)"
psql -q -c "INSERT INTO shards VALUES ('acme', 1, 'Q3 plan', '...'); INSERT INTO users VALUES ('acme', 7, 'Ann')"
psql -q -c "UPDATE shards SET title = 'Q4 plan' WHERE tenant_id = 'acme' AND id = 1"
wait_gone tenant:acme:user:7:profile
wait_gone tenant:acme:shard:1:structured
wait_gone tenant:acme:vsearch:plan
show tenant:acme:shard:1:structured tenant:acme:vsearch:plan tenant:globex:shard:1:structured tenant:acme:user:7:profile

say "messages the application instances received"
for _ in $(seq 100); do [ "$(grep -c '"op"' "$DEMO/messages.log")" -ge 3 ] && break; sleep 0.05; done
grep '"op"' "$DEMO/messages.log" | sed 's/^/  /'

say "status"
curl -fs "http://127.0.0.1:$HTTPPORT/status"; echo
[ "$(rcli exists tenant:globex:shard:1:structured)" = 1 ] || { echo "another tenant's key was deleted" >&2; exit 1; }

if $ONCE; then
  say "demo finished: invalidations flowed"
  exit 0
fi
say "still streaming: change rows with  psql -h 127.0.0.1 -p $PGPORT -U postgres  and watch $DEMO/messages.log; source $DEMO/env to point bin/invalidator at it; Ctrl-C stops everything"
tail -n 0 -f "$DEMO/messages.log" &
pids+=($!)
wait $DAEMON
