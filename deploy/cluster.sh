#!/usr/bin/env bash
# Runs a small cluster on this machine: N httpd instances on loopback ports, each with its own
# access log and `--health /healthz`, and HAProxy in front of them with deploy/haproxy.cfg
# (the file you would deploy; the addresses reach it through its environment variables).
# Prints the front address, then waits. Ctrl-C, SIGTERM or any exit stops every process it
# started, by PID, and removes its temporary directory.
#
#   deploy/cluster.sh                         # 3 instances on 8081-8083, HAProxy on 8080
#   N=4 FRONT_PORT=9000 ROOT=/srv/www deploy/cluster.sh
#
# Settings (environment):
#   N           instances, 1 to 8 (the server slots in haproxy.cfg)       default 3
#   FRONT_PORT  HAProxy's port on 127.0.0.1                               default 8080
#   BASE_PORT   instance k listens on BASE_PORT+k-1; 0 picks free ports   default 8081
#   ROOT        document root every instance serves                       default docroot
#   WORKERS     worker threads per instance (-w)                          default 4
#   STATS_PORT  if set, HAProxy's stats page on 127.0.0.1:STATS_PORT      default unset
#   HTTPD       the httpd binary           default target/release/httpd (built if missing)
#   KEEP_LOGS   1 keeps the temporary directory with the logs on exit     default 0
#
# While it runs, kill one instance (its PID is printed) and watch HAProxy take it out and
# retry its requests elsewhere; start it again on the same port and it rejoins once two
# health checks pass.
set -euo pipefail
cd "$(dirname "$0")/.."

N=${N:-3}
FRONT_PORT=${FRONT_PORT:-8080}
BASE_PORT=${BASE_PORT:-8081}
ROOT=${ROOT:-docroot}
WORKERS=${WORKERS:-4}
HTTPD=${HTTPD:-target/release/httpd}
KEEP_LOGS=${KEEP_LOGS:-0}
MAX_INSTANCES=8

die() {
  echo "cluster.sh: $*" >&2
  exit 1
}

# Dies unless $2 (the setting named $1) is a whole number from $3 to $4.
check_range() {
  if ! [[ $2 =~ ^[0-9]+$ ]] || ((10#$2 < $3 || 10#$2 > $4)); then
    die "$1=$2: expected a number from $3 to $4"
  fi
}

check_range N "$N" 1 "$MAX_INSTANCES" # deploy/haproxy.cfg has 8 server slots
check_range FRONT_PORT "$FRONT_PORT" 1 65535
check_range BASE_PORT "$BASE_PORT" 0 $((65536 - N))
check_range WORKERS "$WORKERS" 1 1024
# As plain decimal numbers from here on (a leading 0 would read as octal in $((...))).
N=$((10#$N)) FRONT_PORT=$((10#$FRONT_PORT)) BASE_PORT=$((10#$BASE_PORT)) WORKERS=$((10#$WORKERS))
[[ -d $ROOT ]] || die "ROOT=$ROOT: not a directory"
if [[ -n ${STATS_PORT:-} ]]; then
  check_range STATS_PORT "$STATS_PORT" 1 65535
  STATS_PORT=$((10#$STATS_PORT))
fi

# Debian installs haproxy in /usr/sbin, which a normal user's PATH may lack.
HAPROXY=$(PATH="$PATH:/usr/sbin:/usr/local/sbin" command -v haproxy) ||
  die "haproxy not found: install it (apt-get install haproxy)"

if [[ ! -x $HTTPD ]]; then
  echo "cluster.sh: $HTTPD missing, building it (cargo build --release)" >&2
  cargo build --release
fi

# Whether something already listens on 127.0.0.1:PORT. httpd would share a port held by
# another httpd of the same user (SO_REUSEPORT) instead of failing, so check first.
port_taken() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# Each background process gets its own process group (job control on), so a Ctrl-C in the
# terminal reaches this script only, and each process gets exactly one SIGTERM from
# cleanup (a second signal would make httpd exit without draining).
set -m

tmp=$(mktemp -d "${TMPDIR:-/tmp}/httpd-cluster.XXXXXX")
pids=()

# shellcheck disable=SC2317 # reached through the EXIT trap
cleanup() {
  local status=$?
  trap - EXIT INT TERM
  for pid in "${pids[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in "${pids[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  if [[ $KEEP_LOGS == 1 ]]; then
    echo "cluster.sh: stopped; logs kept in $tmp" >&2
  else
    rm -rf "$tmp"
    echo "cluster.sh: stopped" >&2
  fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Waits (up to 10 s) for `listening on http://ADDR` in file $1 from process $2; prints ADDR.
listening_addr() {
  local out=$1 pid=$2 line
  for _ in $(seq 100); do
    line=$(head -n 1 "$out")
    if [[ $line == "listening on http://"* ]]; then
      echo "${line#listening on http://}"
      return 0
    fi
    kill -0 "$pid" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}

addrs=()
for k in $(seq "$N"); do
  port=0
  if ((BASE_PORT != 0)); then
    port=$((BASE_PORT + k - 1))
    port_taken "$port" && die "port $port is in use (set BASE_PORT, or BASE_PORT=0 for free ports)"
  fi
  "$HTTPD" -r "$ROOT" -a 127.0.0.1 -p "$port" -w "$WORKERS" --health /healthz \
    -l "$tmp/httpd$k.access.log" >"$tmp/httpd$k.out" 2>"$tmp/httpd$k.err" &
  pids+=("$!")
  addr=$(listening_addr "$tmp/httpd$k.out" "$!") ||
    die "httpd $k did not start: $(cat "$tmp/httpd$k.err")"
  addrs+=("$addr")
done

# The shipped config reads HTTPD_ADDR1..8: our instances, and empty (left out) for the rest.
for k in $(seq "$MAX_INSTANCES"); do
  export "HTTPD_ADDR$k=${addrs[k - 1]:-}"
done
export HAPROXY_BIND="127.0.0.1:$FRONT_PORT"
if [[ -n ${STATS_PORT:-} ]]; then
  export HAPROXY_STATS="127.0.0.1:$STATS_PORT"
else
  unset HAPROXY_STATS
fi
port_taken "$FRONT_PORT" && die "FRONT_PORT $FRONT_PORT is in use"
"$HAPROXY" -db -f deploy/haproxy.cfg >"$tmp/haproxy.log" 2>&1 &
haproxy_pid=$!
pids+=("$haproxy_pid")
for _ in $(seq 100); do
  port_taken "$FRONT_PORT" && break
  kill -0 "$haproxy_pid" 2>/dev/null || die "haproxy did not start: $(cat "$tmp/haproxy.log")"
  sleep 0.1
done
port_taken "$FRONT_PORT" || die "haproxy is not listening on $FRONT_PORT after 10 s"

for k in $(seq "$N"); do
  echo "httpd $k: http://${addrs[k - 1]} pid ${pids[k - 1]} log $tmp/httpd$k.access.log"
done
echo "haproxy: pid $haproxy_pid log $tmp/haproxy.log${STATS_PORT:+ stats http://127.0.0.1:$STATS_PORT/}"
echo "front http://127.0.0.1:$FRONT_PORT/"
echo "Ctrl-C stops them all."

# Until a signal, or until HAProxy exits by itself (its log says why).
if wait "$haproxy_pid"; then
  status=0
else
  status=$?
fi
echo "cluster.sh: haproxy exited (status $status); see $tmp/haproxy.log" >&2
KEEP_LOGS=1
exit 1
