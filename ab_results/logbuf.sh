#!/usr/bin/env bash
# The access log without a thread hop (issue 10), measured: server CPU per request with the
# log on, a 1 KiB file over keep-alive, the old binary (writer thread) and the new one (each
# worker writes its own buffer) interleaved, ROUNDS rounds each; then `strace -c -f` of each
# on a short run, for the log's write(2)s per request. Server pinned to CPU 1, ab to CPU 0.
#
#   OLD=/path/to/httpd-from-main ab_results/logbuf.sh      (NEW defaults to this tree's build)
#   OLD=... PIN=0 TAG=logbuf-unpinned ab_results/logbuf.sh  (nothing pinned)
#
# Raw outputs: ab_results/raw/$TAG-*.txt (TAG=logbuf); the table is printed at the end (and
# saved as ab_results/raw/$TAG-summary.txt).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
lib_init
need ab strace taskset -- "apt-get install apache2-utils strace util-linux"
: "${OLD:?set OLD to an httpd binary built from main}"
ab_setup
# PIN=0: neither the server nor ab pinned (the log writer thread of the old build can then
# run beside the workers, as on a real multi-core host).
PIN=${PIN:-1}
if [ "$PIN" = 0 ]; then HTTPD_PREFIX=(); AB=(ab); fi
TAG=${TAG:-logbuf}
summary=$OUT/$TAG-summary.txt
{ echo "# logbuf.sh: commit $commit; $machine; ab -k -c 50 -n $N, 1 KiB, httpd -w 8 -l FILE, PIN=$PIN"
  echo "# old: $OLD; new: $NEW"; } > "$summary"
printf '%-8s %-5s %10s %8s %11s %10s %11s\n' binary round req/s ticks 'CPU µs/req' 'log lines' 'writes/req' >> "$summary"

# run NAME BIN ROUND [off]: one measured ab run against BIN with its log to a file (or off).
# Its write syscalls are the access log's (and the rare stderr line).
run() {
  local name=$1 bin=$2 round=$3 to
  local log=$tmp/$name-$round.log out=$OUT/$TAG-$name-r$round.txt
  rm -f "$log"
  to=$log; [ "${4:-}" = off ] && to=off
  ab_cpu "$out" "$bin" -l "$to"
  local lines wpr
  lines=$( [ -f "$log" ] && wc -l < "$log" || echo 0)
  wpr=$(awk -v w="$writes" -v n="$N" 'BEGIN { printf "%.4f", w / n }')
  echo "log lines after SIGTERM: $lines (expected $((N + 2000)))" >> "$out"
  printf '%-8s %-5s %10s %8s %11s %10s %11s\n' "$name" "$round" "$rps" "$ticks" "$us" "$lines" "$wpr" >> "$summary"
}

for round in $(seq "$ROUNDS"); do
  run old "$OLD" "$round"
  run new "$NEW" "$round"
done
# For reference: the new binary with no access log at all.
run new-off "$NEW" 1 off

# strace -c -f of a short run: syscalls per request (the log's write(2)s among them).
ab_strace "$OUT/$TAG-strace-old.txt" "$OLD" -l "$tmp/strace-old.log"
ab_strace "$OUT/$TAG-strace-new.txt" "$NEW" -l "$tmp/strace-new.log"
cat "$summary"
