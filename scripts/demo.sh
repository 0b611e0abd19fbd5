#!/usr/bin/env bash
# Sets up and starts the resumable_ws demo: a local PostgreSQL 15 cluster
# owned by the postgres user, with the extension preloaded and created, and
# the chat page and WebSocket server on http://localhost:8787/. Run as root
# on Debian 12.
#
#   bash scripts/demo.sh          install, build, (re)start; again: reuses the cluster
#   bash scripts/demo.sh stop     stop the demo cluster
#   bash scripts/demo.sh token    print a fresh client token
set -euo pipefail
cd "$(dirname "$0")/.."

DEMO_DIR=${RWS_DEMO_DIR:-/var/lib/resumable_ws-demo}
PG_PORT=${RWS_DEMO_PG_PORT:-5488}
WS_PORT=${RWS_DEMO_PORT:-8787}
DATA="$DEMO_DIR/data"

# Runs a command as postgres from /: this checkout may be where postgres
# cannot go (a clone in /root, mode 0700), and Postgres' programs want to
# be able to return to their working directory.
as_postgres() { (cd / && runuser -u postgres -- "$@"); }
run_pg() {
  local bindir
  bindir=$(pg_config --bindir)
  as_postgres "$bindir/$1" "${@:2}"
}
psql_demo() { as_postgres psql -X -q -h "$DEMO_DIR" -p "$PG_PORT" -d postgres "$@"; }

pg_running() { command -v pg_config >/dev/null && [ -d "$DATA" ] && run_pg pg_ctl -D "$DATA" status >/dev/null 2>&1; }
step() { echo "==> $*"; }

case "${1:-start}" in
  stop)
    if pg_running; then
      run_pg pg_ctl -D "$DATA" -m fast -w stop >/dev/null
      echo "stopped the demo cluster ($DATA is kept; bash scripts/demo.sh starts it again)"
    else
      echo "the demo cluster is not running"
    fi
    exit 0
    ;;
  token)
    if ! pg_running; then
      echo "the demo is not running; start it first with: bash scripts/demo.sh" >&2
      exit 1
    fi
    token=$(psql_demo -Atc "SELECT resumable_ws.sign_token(gen_random_uuid(), '1 hour')")
    echo "$token"
    echo "page for this user: http://localhost:$WS_PORT/#access_token=$token" >&2
    exit 0
    ;;
  start) ;;
  *) echo "usage: $0 [start|stop|token]" >&2; exit 2 ;;
esac

step "checking the Debian packages the demo needs"
bash scripts/install-deps.sh
step "building the extension"
make -s -j"$(nproc)"
step "installing the extension into PostgreSQL 15"
make -s install

if [ ! -d "$DATA" ]; then
  mkdir -p "$DEMO_DIR"
  chown postgres:postgres "$DEMO_DIR"
  step "initialising a new cluster in $DATA (initdb)"
  run_pg initdb -D "$DATA" -A peer -U postgres -E UTF8 >/dev/null
  cat >> "$DATA/postgresql.conf" <<CONF
# resumable_ws demo
listen_addresses = ''
port = $PG_PORT
unix_socket_directories = '$DEMO_DIR'
shared_preload_libraries = 'resumable_ws'
resumable_ws.listen_addresses = 'localhost'
resumable_ws.port = $WS_PORT
resumable_ws.jwt_secret = '$(head -c 32 /dev/urandom | base64 | tr -d '/+=')'
resumable_ws.anonymous_sign_in = on
CONF
  echo "created the demo cluster in $DATA"
fi
grep -q "resumable_ws_provider.conf" "$DATA/postgresql.conf" ||
  echo "include_if_exists = 'resumable_ws_provider.conf'" >> "$DATA/postgresql.conf"

# Chosen at every start: OpenAI when OPENAI_API_KEY is set, else the offline
# echo provider.
provider=echo
[ -n "${OPENAI_API_KEY:-}" ] && provider=openai
echo "resumable_ws.llm_provider = $provider" > "$DATA/resumable_ws_provider.conf"
chown postgres:postgres "$DATA/resumable_ws_provider.conf"

# A restart loads the library just installed, and hands the key to the
# worker through the postmaster's environment (it is never written to disk).
if pg_running; then
  step "stopping the running demo cluster, to load the library just installed"
  run_pg pg_ctl -D "$DATA" -m fast -w stop >/dev/null
fi
step "starting PostgreSQL (port $PG_PORT) with the extension preloaded"
as_postgres env OPENAI_API_KEY="${OPENAI_API_KEY:-}" \
  "$(pg_config --bindir)/pg_ctl" -D "$DATA" -l "$DEMO_DIR/server.log" -w start >/dev/null
psql_demo -c "SET client_min_messages = warning" -c "CREATE EXTENSION IF NOT EXISTS resumable_ws"

step "waiting for the chat server on port $WS_PORT"
healthy=
for _ in $(seq 100); do
  if curl -fsS "http://localhost:$WS_PORT/healthz" >/dev/null 2>&1; then healthy=1; break; fi
  sleep 0.1
done
if [ -z "$healthy" ]; then
  echo "the server did not come up; see $DEMO_DIR/server.log:" >&2
  tail -n 20 "$DEMO_DIR/server.log" >&2
  exit 1
fi

cat <<INFO

resumable_ws is running (LLM provider: $provider).

  Open the chat:  http://localhost:$WS_PORT/

  WebSocket:      ws://localhost:$WS_PORT/ws?token=<JWT>   (a token: bash scripts/demo.sh token)
  SQL:            runuser -u postgres -- psql -h $DEMO_DIR -p $PG_PORT
  log:            $DEMO_DIR/server.log
  stop:           bash scripts/demo.sh stop
INFO
