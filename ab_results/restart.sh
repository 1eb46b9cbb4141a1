#!/usr/bin/env bash
# Zero-downtime restarts under load: while ab runs against a port, start a new httpd on the
# same port (SO_REUSEPORT), SIGTERM the old one, wait for it to exit, repeat. Every failed
# request ab counts is a request a restart lost.
#
#   ab -r -c 50 -n 700000 /index.html      with 25 restarts (new connection per request)
#   ab -r -k -c 50 -n 1500000 /index.html  with 10 restarts (keep-alive)
#
# Raw output: ab_results/raw/restart-{close,keepalive}.txt. About 2 minutes.
# Usage: ab_results/restart.sh     Needs: ab (apache2-utils). Loopback only, bounded by -n.
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"
lib_init
need ab -- "apt-get install apache2-utils"
build_httpd
port=$(free_port)

start() { # sets $started: the pid of a new httpd on $port, once it listens
  start_httpd -r docroot -w 4 -a 127.0.0.1 -p "$port" -l /dev/null
}

run() { # kind ab-flags requests cycles
  local kind=$1 flags=$2 n=$3 cycles=$4 file="$OUT/restart-$1.txt" old new exits=""
  start 0; old=$started
  local client="ab -r $flags -c 50 -n $n http://127.0.0.1:$port/index.html"
  start_bg "$tmp/ab.txt" - $client
  local ab_pid=$started
  sleep 0.5
  for i in $(seq "$cycles"); do
    start "$i"; new=$started
    sleep 0.3
    if stop_pid "$old"; then exits="$exits 0"; else exits="$exits $?"; fi
    old=$new
    sleep 0.3
  done
  wait_pid "$ab_pid" || true
  stop_pid "$old" || true
  {
    echo "# commit:  $commit   date: $(date -u '+%Y-%m-%dT%H:%M:%SZ')   kernel: $(uname -r)"
    echo "# server:  target/release/httpd -r docroot -w 4 -a 127.0.0.1 -p $port -l /dev/null, restarted $cycles times"
    echo "#          (start the new one, 0.3 s, SIGTERM the old one, wait for its exit, 0.3 s)"
    echo "# old instances' exit statuses:$exits"
    echo "# client:  $client"
    echo
    cat "$tmp/ab.txt"
  } > "$file"
  echo "$kind: $(grep -E '^(Complete|Failed) requests' "$file" | tr -s ' ' | paste -sd ' ')"
}

run close "" 700000 25
run keepalive "-k" 1500000 10
