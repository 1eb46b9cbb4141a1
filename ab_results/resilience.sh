#!/usr/bin/env bash
# Resilience figures, httpd next to nginx on the same machine, one after the other:
#
#   1. wrk -t2 -c10000 -d15s --timeout 5s --latency /index.html   (10 000 open connections)
#   2. slowhttptest -H -c 1000 -r 200 -i 10 -l 30 -p 3 /index.html  (1 000 slowloris clients)
#      while a probe fetches /index.html on a new connection every 0.5 s (2 s timeout).
#
# httpd runs as `-w 8 -l LOGFILE` (defaults otherwise: -t 5, --header-timeout 10); nginx
# (Debian nginx-light) with worker_processes auto, worker_connections 20000, sendfile on,
# keepalive_timeout 5s, client_header_timeout 10s and an access log to a file, so both do the
# same work. Raw outputs go to ab_results/raw/resilience-*.txt, the table to
# ab_results/resilience.md.
#
# Usage: ab_results/resilience.sh     (about 3 minutes)
#        SUMMARY_ONLY=1 ab_results/resilience.sh   (rewrite the table from the raw files)
# Needs: apt-get install nginx-light wrk slowhttptest curl. Loopback only, bounded in time.
set -euo pipefail
cd "$(dirname "$0")/.."
for tool in nginx wrk slowhttptest curl; do
  command -v "$tool" >/dev/null || { echo "$tool not found: apt-get install nginx-light wrk slowhttptest curl" >&2; exit 1; }
done
ulimit -n "$(ulimit -Hn)"
[ "$(ulimit -n)" -ge 20000 ] || echo "note: open-file limit $(ulimit -n) < 20000; wrk -c10000 may be cut short" >&2
cargo build --release --quiet
BIN=target/release/httpd
OUT=ab_results/raw
mkdir -p "$OUT"
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
git diff --quiet HEAD -- src Cargo.toml 2>/dev/null || commit="$commit+uncommitted"
tmp=$(mktemp -d)
server_pid=
stop_server() {
  if [ -n "$server_pid" ]; then kill -TERM "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
  server_pid=
}
trap 'stop_server; rm -rf "$tmp"' EXIT

start_httpd() {
  : > "$tmp/stdout"
  "$BIN" -r docroot -w 8 -a 127.0.0.1 -p 0 -l "$tmp/httpd-access.log" > "$tmp/stdout" 2> "$tmp/httpd-stderr" &
  server_pid=$!
  for _ in $(seq 100); do grep -q '^listening on' "$tmp/stdout" && break; sleep 0.1; done
  port=$(sed -n 's/^listening on http:\/\/127\.0\.0\.1:\([0-9]*\)$/\1/p' "$tmp/stdout")
}

start_nginx() {
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  cat > "$tmp/nginx.conf" <<EOF
worker_processes auto;
worker_rlimit_nofile 20000;
pid $tmp/nginx.pid;
error_log $tmp/nginx-error.log warn;
events { worker_connections 20000; }
http {
  access_log $tmp/nginx-access.log;
  sendfile on;
  keepalive_timeout 5s;
  client_header_timeout 10s;
  types { text/html html; text/css css; }
  server { listen 127.0.0.1:$port; root $PWD/docroot; }
}
EOF
  nginx -e "$tmp/nginx-error.log" -c "$tmp/nginx.conf" -g 'daemon off;' &
  server_pid=$!
  for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$port/index.html" && break; sleep 0.1; done
}

header() {
  echo "# commit:  $commit   server: $1   date: $(date -u '+%Y-%m-%dT%H:%M:%SZ')"
  echo "# machine: nproc=$(nproc) kernel=$(uname -r); client and server share the cores"
  echo "# client:  $2"
  echo
}

# A probe: one new connection every 0.5 s while slowhttptest runs; prints "code seconds".
probe() {
  local until=$((SECONDS + $2))
  while [ $SECONDS -lt $until ]; do
    curl -s -o /dev/null -m 2 -w '%{http_code} %{time_total}\n' "http://127.0.0.1:$1/index.html" || echo "000 2.0"
    sleep 0.5
  done
}

for server in nginx httpd; do
  [ -z "${SUMMARY_ONLY:-}" ] || break
  "start_$server"
  wrk_cmd="wrk -t2 -c10000 -d15s --timeout 5s --latency http://127.0.0.1:$port/index.html"
  { header "$server" "$wrk_cmd"; $wrk_cmd 2>&1 || true; } > "$OUT/resilience-$server-wrk-c10000.txt"
  echo "$server wrk: $(grep -E 'Requests/sec' "$OUT/resilience-$server-wrk-c10000.txt")"
  stop_server
  sleep 2

  "start_$server"
  slow_cmd="slowhttptest -H -c 1000 -r 200 -i 10 -l 30 -p 3 -s 8192 -t GET -u http://127.0.0.1:$port/index.html"
  probe "$port" 32 > "$tmp/probe.txt" &
  probe_pid=$!
  { header "$server" "$slow_cmd"; $slow_cmd 2>&1 | tr '\r' '\n' | sed 's/\x1b\[[0-9;]*[A-Za-z]//g' | grep -v '^\s*$' || true; } > "$OUT/resilience-$server-slowhttptest.txt"
  wait "$probe_pid" || true
  {
    echo
    echo "# probe: GET /index.html on a new connection every 0.5 s during the attack (code seconds)"
    cat "$tmp/probe.txt"
  } >> "$OUT/resilience-$server-slowhttptest.txt"
  echo "$server slowhttptest: $(grep -c '^200 ' "$tmp/probe.txt")/$(wc -l < "$tmp/probe.txt") probes ok"
  stop_server
  sleep 2
done

# Summary.
wrk_field() { # file, pattern -> value
  case "$2" in
    rps) sed -n 's/^Requests\/sec: *\([0-9.]*\).*/\1/p' "$1" ;;
    p99) awk '$1=="99%"{print $2}' "$1" ;;
    errors) grep -q 'Socket errors' "$1" && sed -n 's/.*Socket errors: \(.*\)/\1/p' "$1" || echo none ;;
    non2xx) grep -q 'Non-2xx' "$1" && sed -n 's/.*Non-2xx or 3xx responses: \([0-9]*\).*/\1/p' "$1" || echo 0 ;;
    total) sed -n 's/^ *\([0-9]*\) requests in.*/\1/p' "$1" ;;
  esac
}
probe_stats() { # file -> "ok/total, max s"
  awk '/^# probe/{p=1; next} p && NF==2 {n++; if ($1=="200") ok++; if ($2>m) m=$2} END{printf "%d/%d ok, slowest %.3f s", ok, n, m}' "$1"
}
slow_available() { # "YES in k/n status reports; <how the test ended>"
  local yes all ended
  yes=$(grep -c 'service available: *YES' "$1" || true); all=$(grep -c 'service available:' "$1" || true)
  ended=$(grep -m1 -A1 '^Test ended' "$1" | paste -sd ' ' | sed 's/Exit status: *//')
  echo "available in $yes/$all status reports; $ended"
}
{
  echo "# Resilience: 10 000 connections and 1 000 slowloris clients, httpd next to nginx"
  echo
  echo "Generated by [\`resilience.sh\`](resilience.sh) at commit \`$commit\` on $(date -u '+%Y-%m-%d'),"
  echo "nproc=$(nproc), kernel $(uname -r); client and server share the cores. httpd: \`-w 8\`;"
  echo "nginx: worker_processes auto, worker_connections 20000. Both log to a file. Raw output:"
  echo "\`raw/resilience-*.txt\`."
  echo
  echo "| server | wrk -c10000 req/s | requests | p99 latency | socket errors | non-2xx |"
  echo "|---|---:|---:|---:|---|---:|"
  for server in nginx httpd; do
    f="$OUT/resilience-$server-wrk-c10000.txt"
    echo "| $server | $(wrk_field "$f" rps) | $(wrk_field "$f" total) | $(wrk_field "$f" p99) | $(wrk_field "$f" errors) | $(wrk_field "$f" non2xx) |"
  done
  echo
  echo "| server | slowhttptest -H -c 1000 | probe during the attack |"
  echo "|---|---|---|"
  for server in nginx httpd; do
    f="$OUT/resilience-$server-slowhttptest.txt"
    echo "| $server | $(slow_available "$f") | $(probe_stats "$f") |"
  done
} > ab_results/resilience.md
cat ab_results/resilience.md
