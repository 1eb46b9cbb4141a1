#!/usr/bin/env bash
# Issue 8 attack scenarios against httpd (this checkout, release build), then the slow-reader
# scenarios against nginx for comparison. See README.md next to this file.
#
#   (a) stalled:  8 never-reading conns (SO_RCVBUF 4096, 10 pipelined GET /1m.bin), one batch, 20 s
#   (b) stalled:  same, a new batch every 5 s, 30 s; httpd --send-timeout 5 (nginx send_timeout 5s)
#   (c) steady:   8 conns reading /10m.bin at 30 KB/s each, 20 s
#   (d) race-dir: renameat2(RENAME_EXCHANGE) of root/racedir <-> root/racedir_link (-> outside), 20 s
#   (e) race-file: root/racefile.txt <-> root/racefile_link (-> outside/secret.txt), 20 s
# A probe GETs /small.txt on a fresh connection every 1 s (3 s timeout) during (a)-(c).
# httpd: `target/release/httpd -r DOCROOT -w 8 -p 0 -l ACCESSLOG` (+ --send-timeout 5 in (b)),
# restarted for every scenario. nginx (if installed): worker_processes 1, sendfile on, access
# log off, (a)-(c) only.
#
# Usage: ab_results/attacks/run.sh LABEL      LABEL = before | after | any [a-z0-9_-]+
#        SKIP_NGINX=1 ab_results/attacks/run.sh after     (keep the existing nginx raw files)
#        ONLY="a b" ab_results/attacks/run.sh after       (a subset of scenarios)
# Output: ab_results/raw/issue8-LABEL-<scenario>.txt, ab_results/raw/issue8-nginx-<scenario>.txt,
#         ab_results/raw/issue8-LABEL-summary.md. Loopback only; every step is bounded in time.
set -euo pipefail
label=${1:-}
[[ "$label" =~ ^[a-z0-9_-]+$ && "$label" != nginx ]] || { echo "usage: $0 LABEL (e.g. before, after)" >&2; exit 2; }
here=$(cd "$(dirname "$0")" && pwd)
cd "$here/../.."
ONLY=${ONLY:-a b c d e}
want() { [[ " $ONLY " == *" $1 "* ]]; }

cargo build --release --quiet
BIN=$PWD/target/release/httpd
OUT=$PWD/ab_results/raw
mkdir -p "$OUT"
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
git diff --quiet HEAD -- src Cargo.toml 2>/dev/null || commit="$commit+uncommitted"

tmp=$(mktemp -d)
chmod 755 "$tmp"   # nginx workers (user nobody) must read the docroot
server_pid=
stop_server() {
  [ -n "$server_pid" ] || return 0
  kill -TERM "$server_pid" 2>/dev/null || true
  for _ in $(seq 150); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$server_pid" 2>/dev/null; then
    echo "  (pid $server_pid still up 15 s after SIGTERM: SIGKILL)" >&2
    kill -KILL "$server_pid" 2>/dev/null || true
  fi
  wait "$server_pid" 2>/dev/null || true
  server_pid=
}
trap 'stop_server; rm -rf "$tmp"' EXIT

docroot=$tmp/docroot outside=$tmp/outside
mkdir -p "$docroot" "$outside"
head -c 1048576 /dev/urandom > "$docroot/1m.bin"
head -c 10485760 /dev/urandom > "$docroot/10m.bin"
echo "small file for the probe" > "$docroot/small.txt"
chmod -R a+rX "$docroot" "$outside"

start_httpd() { # extra flags...
  : > "$tmp/stdout"; : > "$tmp/httpd-access.log"
  "$BIN" -r "$docroot" -w 8 -p 0 -l "$tmp/httpd-access.log" "$@" > "$tmp/stdout" 2> "$tmp/httpd-stderr" &
  server_pid=$!
  for _ in $(seq 100); do grep -q '^listening on' "$tmp/stdout" && break; sleep 0.1; done
  port=$(sed -n 's/^listening on http:\/\/127\.0\.0\.1:\([0-9]*\)$/\1/p' "$tmp/stdout")
  [ -n "$port" ] || { echo "httpd did not start:" >&2; cat "$tmp/httpd-stderr" >&2; exit 1; }
  server_cmd="target/release/httpd -r DOCROOT -w 8 -p 0 -l ACCESSLOG $*"
}

start_nginx() { # extra http-level directives
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  mkdir -p "$tmp/nginx"
  cat > "$tmp/nginx/nginx.conf" <<EOF
daemon off;
master_process on;
worker_processes 1;
error_log stderr;
pid $tmp/nginx/nginx.pid;
events {}
http {
  access_log off;
  sendfile on;
  client_body_temp_path $tmp/nginx/client_body;
  proxy_temp_path $tmp/nginx/proxy;
  fastcgi_temp_path $tmp/nginx/fastcgi;
  uwsgi_temp_path $tmp/nginx/uwsgi;
  scgi_temp_path $tmp/nginx/scgi;
  ${1:-}
  server { listen 127.0.0.1:$port; root $docroot; }
}
EOF
  nginx -p "$tmp/nginx" -e stderr -c "$tmp/nginx/nginx.conf" 2> "$tmp/nginx-stderr" &
  server_pid=$!
  for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$port/small.txt" && break; sleep 0.1; done
  curl -sf -o /dev/null "http://127.0.0.1:$port/small.txt" || { echo "nginx did not start:" >&2; cat "$tmp/nginx-stderr" >&2; exit 1; }
  server_cmd="nginx $(nginx -v 2>&1 | sed 's/.*\///'): worker_processes 1; sendfile on; access_log off; ${1:-defaults otherwise}"
}

header() { # client command
  echo "# commit:  $commit   date: $(date -u '+%Y-%m-%dT%H:%M:%SZ')"
  echo "# machine: nproc=$(nproc) kernel=$(uname -r); client and server share the cores; loadavg at start: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "# server:  $server_cmd"
  echo "# client:  $1"
  echo
}

scenario() { # who(label|nginx) name client-args...
  local who=$1 name=$2; shift 2
  local file="$OUT/issue8-$who-$name.txt"
  local cmd="python3 ab_results/attacks/$*"
  echo "== $who $name: $cmd" >&2
  { header "${cmd//$tmp/TMP}"; timeout 120 python3 "$here/$1" "${@:2}" 2>&1 || echo "# client exited with status $?"; } > "$file"
  sed -i "s|$tmp|TMP|g" "$file"
  grep '^SUMMARY' "$file" >&2 || echo "  (no SUMMARY line)" >&2
}

slow() { echo slow_readers.py --host 127.0.0.1 --port "$port" --conns 8 --rcvbuf 4096 --probe /small.txt --probe-every 1.0 --probe-timeout 3 "$@"; }
race() { echo swap_race.py --host 127.0.0.1 --port "$port" --root "$docroot" --outside "$outside" --clients 2 --duration 20 "$@"; }

run_all() { # who start-fn
  local who=$1 start=$2
  if want a; then
    $start; scenario "$who" a-stalled $(slow --mode stalled --path /1m.bin --pipeline 10 --batch-every 0 --duration 20); stop_server; sleep 1
  fi
  if want b; then
    if [ "$who" = nginx ]; then $start "send_timeout 5s;"; else $start --send-timeout 5; fi
    scenario "$who" b-stalled-batches-sendtimeout5 $(slow --mode stalled --path /1m.bin --pipeline 10 --batch-every 5 --duration 30); stop_server; sleep 1
  fi
  if want c; then
    $start; scenario "$who" c-steady-30kBps $(slow --mode steady --path /10m.bin --pipeline 1 --rate 30000 --duration 20); stop_server; sleep 1
  fi
  [ "$who" = nginx ] && return 0
  if want d; then
    $start; scenario "$who" d-race-dir $(race --mode dir); stop_server; sleep 1
  fi
  if want e; then
    $start; scenario "$who" e-race-file $(race --mode file); stop_server; sleep 1
  fi
}

run_all "$label" start_httpd
if [ -z "${SKIP_NGINX:-}" ]; then
  if command -v nginx >/dev/null; then run_all nginx start_nginx
  else echo "nginx not installed (apt-get install nginx-light): skipping the nginx comparison" >&2; fi
fi

# Summary table from the raw files' SUMMARY lines.
field() { sed -n "s/^SUMMARY.* $2=\([^ ]*\).*/\1/p" "$1"; }
row() { # who scenario description
  local f="$OUT/issue8-$1-$2.txt"
  [ -f "$f" ] || return 0
  case "$2" in
    a-*|b-*) echo "| $2 | $1 | $(field "$f" probes_ok)/$(field "$f" probes_sent) | $(field "$f" lat_ms_min) / $(field "$f" lat_ms_median) / $(field "$f" lat_ms_max) | stalled conns closed by server: $(field "$f" stalled_closed) |" ;;
    c-*) echo "| $2 | $1 | $(field "$f" probes_ok)/$(field "$f" probes_sent) | $(field "$f" lat_ms_min) / $(field "$f" lat_ms_median) / $(field "$f" lat_ms_max) | readers cut off: $(field "$f" steady_cut_off); bytes each: $(field "$f" steady_bytes) |" ;;
    d-*|e-*) echo "| $2 | $1 | - | - | $(field "$f" responses) responses: **$(field "$f" outside) OUTSIDE** (leak), $(field "$f" inside) inside, $(field "$f" s404) 404, $(field "$f" s403) 403, $(field "$f" other) other; $(field "$f" swaps) swaps |" ;;
  esac
}
{
  echo "# Issue 8 attacks: $label (commit $commit, $(date -u '+%Y-%m-%d'), nproc=$(nproc))"
  echo
  echo "| scenario | server | probes answered | probe latency ms min / median / max | other |"
  echo "|---|---|---:|---|---|"
  for s in a-stalled b-stalled-batches-sendtimeout5 c-steady-30kBps d-race-dir e-race-file; do
    row "$label" "$s"; row nginx "$s"
  done
} > "$OUT/issue8-$label-summary.md"
cat "$OUT/issue8-$label-summary.md"
