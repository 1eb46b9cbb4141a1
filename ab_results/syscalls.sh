#!/usr/bin/env bash
# Where the time goes (issue 10): system calls per request of httpd -w 8 -l off and of h2o
# (one thread, no access log), each pinned to CPU 1, under `wrk -t2 -c100 -d5s` on a 1 KiB
# file (load pinned to CPU 0), counted by `strace -c -f` attached to the running server, and
# the server's context switches per request from /proc/PID/task/*/status in a run without
# strace. strace slows every system call, so read the counts per request, not the times.
#
#   ab_results/syscalls.sh          (about 1 minute)
#
# Raw output: ab_results/raw/syscalls-{httpd,h2o}.txt and ab_results/raw/syscalls-summary.txt.
# Needs: wrk, strace, h2o, taskset (apt-get install -y wrk strace h2o). Loopback only.
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"
lib_init
need wrk strace h2o taskset -- "apt-get install -y wrk strace h2o"
build_httpd
SERVER_CPU=${SERVER_CPU:-1}
CLIENT_CPU=${CLIENT_CPU:-0}
HTTPD_WORKERS=${HTTPD_WORKERS:-8}
LOG=off
peer_docroot ""   # no big file
summary=$OUT/syscalls-summary.txt
{
  echo "# syscalls.sh: commit $commit; $machine"
  echo "# wrk -t2 -c100 -d5s /1k.html (pinned to CPU $CLIENT_CPU); server pinned to CPU $SERVER_CPU; httpd -w $HTTPD_WORKERS -l off; h2o num-threads 1, no access log"
} > "$summary"

# Voluntary + involuntary context switches of every thread of PID.
switches() {
  cat /proc/"$1"/task/*/status | awk '/^voluntary_ctxt/ { v += $2 } /^nonvoluntary_ctxt/ { n += $2 } END { print v, n }'
}

for name in httpd h2o; do
  # Context switches, without strace.
  start_server "$name"
  taskset -c "$CLIENT_CPU" wrk -t2 -c100 -d1s "http://127.0.0.1:$port/1k.html" > /dev/null
  read -r v0 n0 < <(switches "$server_pid")
  reqs=$(taskset -c "$CLIENT_CPU" wrk -t2 -c100 -d5s "http://127.0.0.1:$port/1k.html" \
    | awk '/requests in/ { print $1 }')
  read -r v1 n1 < <(switches "$server_pid")
  stop_server
  # System calls, with strace attached to every thread.
  start_server "$name"
  out=$OUT/syscalls-$name.txt
  start_bg "$tmp/strace-$name.out" "$out" strace -c -f -p "$server_pid"
  tracer=$started
  sleep 1   # strace attaches to every thread before the load starts
  traced=$(taskset -c "$CLIENT_CPU" wrk -t2 -c100 -d5s "http://127.0.0.1:$port/1k.html" \
    | awk '/requests in/ { print $1 }')
  stop_pid "$tracer" || true
  stop_server
  {
    echo
    echo "== $name: $reqs requests without strace: voluntary switches $((v1 - v0)), involuntary $((n1 - n0))"
    awk -v r="$reqs" -v v=$((v1 - v0)) -v n=$((n1 - n0)) \
      'BEGIN { printf "   per request: voluntary %.4f, involuntary %.4f\n", v / r, n / r }'
    echo "== $name: $traced requests under strace -c -f; calls per request:"
    # Columns: % time, seconds, usecs/call, calls, [errors], syscall.
    awk -v r="$traced" '$NF ~ /^[a-z_0-9]+$/ && $4 ~ /^[0-9]+$/ && $NF != "total" {
        printf "   %-16s %8.3f\n", $NF, $4 / r }' "$out"
  } | tee -a "$summary"
done
