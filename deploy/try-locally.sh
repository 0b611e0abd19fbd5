#!/usr/bin/env bash
# deploy/try-locally.sh [--runs N] [--kill] [--patroni-check] [--keep]
#
# Runs the files of deploy/ on this machine, on loopback addresses standing
# for the production ones (etcd 127.0.0.10, node1 127.0.0.11, node2
# 127.0.0.12, HAProxy 127.0.0.13:8787): one etcd, two Patroni nodes with
# resumable_ws preloaded (synchronous mode), HAProxy in front. Then, N times,
# a client writes through HAProxy while the leader changes (patronictl
# failover; with --kill the leader's Patroni and Postgres are killed with
# SIGKILL instead, as a machine that dies), and checks that it resumed
# through HAProxy with nothing acknowledged lost. Prints one line per run.
#
# Needs Debian's patroni, etcd-server and haproxy, python3-jwt and
# python3-websockets, and resumable_ws installed (make install) in the
# PostgreSQL that pg_config names. Runs Postgres as the postgres user when
# run as root. Everything it starts is stopped at the end.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# From /: Patroni and Postgres run as postgres, who may not enter the
# working directory (a checkout under /root), and Postgres' programs
# chdir back to it.
cd /
runs=3; kill_leader=0; backend=primary_by_healthz; keep=0
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) runs=$2; shift 2 ;;
    --kill) kill_leader=1; shift ;;
    --patroni-check) backend=primary_by_patroni; shift ;;
    --keep) keep=1; shift ;;
    *) echo "usage: $0 [--runs N] [--kill] [--patroni-check] [--keep]" >&2; exit 2 ;;
  esac
done
for tool in patroni patronictl etcd haproxy pg_config curl; do
  command -v "$tool" >/dev/null || { echo "try-locally: needs $tool (apt-get install patroni etcd-server haproxy curl)" >&2; exit 2; }
done
bindir=$(pg_config --bindir)
[ -f "$(pg_config --pkglibdir)/resumable_ws.so" ] \
  || { echo "try-locally: resumable_ws is not installed in $(pg_config --pkglibdir) (make install)" >&2; exit 2; }

work=$(mktemp -d /tmp/rws-try-XXXXXX)
chmod 755 "$work"
as_pg=()
# setpriv execs (runuser would fork): the pid started is the process itself.
if [ "$(id -u)" -eq 0 ]; then as_pg=(setpriv --reuid=postgres --regid=postgres --init-groups); chown postgres: "$work"; fi
pids=()
any_alive() {
  local pid
  for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && return 0; done
  return 1
}
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  # Patroni stops its Postgres first; one stuck (a failed bootstrap does not
  # end at SIGTERM) is killed after 30 s.
  local deadline=$((SECONDS + 30))
  while [ $SECONDS -lt $deadline ] && any_alive; do sleep 0.2; done
  for pid in "${pids[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  # Patroni stops its Postgres when it stops; one killed with SIGKILL does not.
  for n in 1 2; do
    [ -f "$work/node$n/data/postmaster.pid" ] && "${as_pg[@]}" "$bindir/pg_ctl" -D "$work/node$n/data" -m immediate stop >/dev/null 2>&1 || true
  done
  if [ "$keep" -eq 1 ]; then echo "try-locally: kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 1' TERM INT  # cleanup runs on these too

# The production files with loopback addresses and directories of this run.
to_loopback() { sed -e 's#10\.0\.0\.0/24#127.0.0.0/8#g' -e 's/10\.0\.0\.1\([0-9]\)/127.0.0.1\1/g' "$@"; }
for n in 1 2; do
  mkdir -p "$work/node$n/log"
  to_loopback "$here/patroni/node$n.yml" | sed \
    -e "s#/var/lib/postgresql/15/rws#$work/node$n/data#" \
    -e "s#/usr/lib/postgresql/15/bin#$bindir#" \
    -e "s#/var/lib/postgresql/15-rws.pgpass#$work/node$n/pgpass#" \
    -e "s#unix_socket_directories: /var/run/postgresql#unix_socket_directories: $work/node$n#" \
    -e "s#resumable_ws.llm_provider: openai#resumable_ws.llm_provider: echo#" \
    -e "s#^    unix_socket_directories:.*#&\n    logging_collector: 'on'\n    log_directory: $work/node$n/log#" \
    > "$work/node$n.yml"
done
[ ${#as_pg[@]} -eq 0 ] || chown -R postgres: "$work"/node*
secret=$(sed -n 's/^ *resumable_ws.jwt_secret: //p' "$here/patroni/node1.yml")
to_loopback "$here/haproxy/haproxy.cfg" | sed \
  -e '/^ *chroot /d' -e '/^ *user /d' -e '/^ *group /d' -e '/^ *daemon/d' \
  -e "s#^ *stats socket .*#    stats socket $work/haproxy.sock#" \
  -e 's#^ *log /dev/log local0#    log stdout format iso local0 info#' \
  -e 's#bind :8787#bind 127.0.0.13:8787#' -e 's#bind 127.0.0.1:7000#bind 127.0.0.13:7000#' \
  -e "s#maxconn 20000#maxconn 4000#" \
  -e "s#default_backend primary_by_healthz#default_backend $backend#" > "$work/haproxy.cfg"

wait_until() {  # seconds, what, command...
  local deadline=$((SECONDS + $1)) what=$2; shift 2
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || { echo "try-locally: timed out waiting for $what" >&2; exit 1; }
    sleep 0.2
  done
}
http_ok() { [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$1")" = 200 ]; }
leader() { curl -s --max-time 2 http://127.0.0.1$1:8008/primary -o /dev/null -w '%{http_code}' | grep -q 200 && echo "node$1"; }
current_leader() { leader 1 || leader 2; }
start_node() {
  "${as_pg[@]}" patroni "$work/node$1.yml" >>"$work/node$1/patroni.log" 2>&1 &
  pids+=($!); eval "patroni_pid_$1=$!"
}

# etcd, with the variables Debian's unit reads from /etc/default/etcd.
(set -a; . <(to_loopback "$here/etcd/etcd.env" | sed "s#/var/lib/etcd/rws#$work/etcd#"); exec etcd) >"$work/etcd.log" 2>&1 &
pids+=($!)
wait_until 30 "etcd" http_ok http://127.0.0.10:2379/health

started=$SECONDS
start_node 1
wait_until 60 "node1 to lead" http_ok http://127.0.0.11:8008/primary
"${as_pg[@]}" "$bindir/psql" -h "$work/node1" -p 5432 -U postgres -qc "CREATE EXTENSION IF NOT EXISTS resumable_ws"
start_node 2
wait_until 90 "node2 to be a synchronous standby" http_ok http://127.0.0.12:8008/sync
wait_until 30 "node1's worker" http_ok http://127.0.0.11:8787/healthz
echo "try-locally: etcd, node1 (leader) and node2 (synchronous standby) up in $((SECONDS - started)) s; in $work"

haproxy -f "$work/haproxy.cfg" -db >"$work/haproxy.log" 2>&1 &
pids+=($!)
wait_until 10 "HAProxy" http_ok http://127.0.0.13:8787/healthz

status=0
for run in $(seq 1 "$runs"); do
  from=$(current_leader); to=node$((3 - ${from#node}))
  wait_until 60 "$to to be a synchronous standby" http_ok "http://127.0.0.1${to#node}:8008/sync"
  if [ "$kill_leader" -eq 1 ]; then
    n=${from#node}; pid_var=patroni_pid_$n
    # The leader's machine dies: Patroni and every Postgres process at once.
    cmd=(bash -c "kill -9 ${!pid_var} \$(head -1 $work/node$n/data/postmaster.pid) \$(pgrep -P \$(head -1 $work/node$n/data/postmaster.pid))")
  else
    cmd=(patronictl -c "$work/node1.yml" failover --candidate "$to" --force)
  fi
  echo -n "run $run, $from -> $to ($([ "$kill_leader" -eq 1 ] && echo "SIGKILL of $from" || echo "patronictl failover")): "
  /usr/bin/python3 "$here/failover_client.py" ws://127.0.0.13:8787/ws "$secret" -- "${cmd[@]}" || status=1
  if [ "$kill_leader" -eq 1 ]; then  # the dead node comes back and rejoins as a standby
    rm -f "$work/node$n/data/postmaster.pid"
    start_node "$n"
  fi
done
patronictl -c "$work/node1.yml" list 2>/dev/null | sed 's/^/  /'
exit $status
