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
ONLY=${ONLY:-a b c d e}
want() { [[ " $ONLY " == *" $1 "* ]]; }

# shellcheck source=../lib.sh
. "$here/../lib.sh"
lib_init
build_httpd

docroot=$tmp/docroot outside=$tmp/outside
mkdir -p "$docroot" "$outside"
head -c 1048576 /dev/urandom > "$docroot/1m.bin"
head -c 10485760 /dev/urandom > "$docroot/10m.bin"
echo "small file for the probe" > "$docroot/small.txt"
chmod -R a+rX "$docroot" "$outside"

start_httpd_here() { # extra flags...
  : > "$tmp/httpd-access.log"
  start_httpd -r "$docroot" -w 8 -p 0 -l "$tmp/httpd-access.log" "$@"
  server_cmd="target/release/httpd -r DOCROOT -w 8 -p 0 -l ACCESSLOG $*"
}

start_nginx_here() { # extra http-level directives
  port=$(free_port)
  nginx_conf "$tmp/nginx" "$port" "$docroot" 1 512 "access_log off;" "sendfile on;" ${1:+"$1"}
  start_nginx "$tmp/nginx" "$port" /small.txt
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

run_all "$label" start_httpd_here
if [ -z "${SKIP_NGINX:-}" ]; then
  if command -v nginx >/dev/null; then run_all nginx start_nginx_here
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
