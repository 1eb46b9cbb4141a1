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
if [ -z "${NEW:-}" ]; then build_httpd; NEW=$BIN; fi
ROUNDS=${ROUNDS:-3}
N=${N:-200000}
root=$tmp/docroot
mkdir -p "$root"
head -c 1024 /dev/zero | tr '\0' 'a' > "$root/index.html"
# PIN=0: neither the server nor ab pinned (the log writer thread of the old build can then
# run beside the workers, as on a real multi-core host).
PIN=${PIN:-1}
HTTPD_PREFIX=(taskset -c 1)
AB=(taskset -c 0 ab)
if [ "$PIN" = 0 ]; then HTTPD_PREFIX=(); AB=(ab); fi
TAG=${TAG:-logbuf}
summary=$OUT/$TAG-summary.txt
{ echo "# logbuf.sh: commit $commit; $machine; ab -k -c 50 -n $N, 1 KiB, httpd -w 8 -l FILE, PIN=$PIN"
  echo "# old: $OLD; new: $NEW"; } > "$summary"
printf '%-8s %-5s %10s %8s %11s %10s %11s\n' binary round req/s ticks 'CPU µs/req' 'log lines' 'writes/req' >> "$summary"

# run NAME BIN ROUND [off]: one measured ab run against BIN with its log to a file (or off).
run() {
  local name=$1 bin=$2 round=$3 to
  local log=$tmp/$name-$round.log out=$OUT/$TAG-$name-r$round.txt
  rm -f "$log"
  to=$log; [ "${4:-}" = off ] && to=off
  BIN=$bin start_httpd -r "$root" -w 8 -a 127.0.0.1 -p 0 -l "$to"
  "${AB[@]}" -q -k -c 50 -n 2000 "http://127.0.0.1:$port/index.html" > /dev/null
  local before after w0 w1
  # syscw: the server's write-family system calls. A 1 KiB reply leaves by send(2), which
  # it does not count, so these are the access log's writes (and the rare stderr line).
  w0=$(awk '/^syscw/ { print $2 }' "/proc/$server_pid/io")
  before=$(cpu_ticks "$server_pid")
  "${AB[@]}" -k -c 50 -n "$N" "http://127.0.0.1:$port/index.html" > "$out" 2>&1
  after=$(cpu_ticks "$server_pid")
  w1=$(awk '/^syscw/ { print $2 }' "/proc/$server_pid/io")
  stop_server
  local rps lines ticks us wpr
  rps=$(sed -n 's/^Requests per second: *\([0-9.]*\).*/\1/p' "$out")
  lines=$( [ -f "$log" ] && wc -l < "$log" || echo 0)
  ticks=$((after - before))
  wpr=$(awk -v w="$((w1 - w0))" -v n="$N" 'BEGIN { printf "%.4f", w / n }')
  us=$(awk -v t="$ticks" -v n="$N" -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.2f", t / hz * 1e6 / n }')
  { echo; echo "server: $bin -w 8 -l ${4:-FILE}"; echo "cpu ticks (utime+stime) during the run: $ticks"; echo "write syscalls (syscw) during the run: $((w1 - w0))"
    echo "log lines after SIGTERM: $lines (expected $((N + 2000)))"; } >> "$out"
  printf '%-8s %-5s %10s %8s %11s %10s %11s\n' "$name" "$round" "$rps" "$ticks" "$us" "$lines" "$wpr" >> "$summary"
}

for round in $(seq "$ROUNDS"); do
  run old "$OLD" "$round"
  run new "$NEW" "$round"
done
# For reference: the new binary with no access log at all.
run new-off "$NEW" 1 off

# strace -c -f of a short run: syscalls per request (the log's write(2)s among them).
for name in old new; do
  bin=$OLD; [ "$name" = new ] && bin=$NEW
  log=$tmp/strace-$name.log
  BIN=$bin start_httpd -r "$root" -w 8 -a 127.0.0.1 -p 0 -l "$log"
  start_bg "$tmp/strace-$name.out" "$OUT/$TAG-strace-$name.txt" strace -c -f -p "$server_pid"
  tracer=$started
  sleep 1   # strace attaches to every thread before the load starts
  "${AB[@]}" -q -k -c 50 -n 20000 "http://127.0.0.1:$port/index.html" > "$tmp/ab-strace-$name.txt"
  stop_pid "$tracer" || true
  stop_server
  echo "(ab -k -c 50 -n 20000 + strace attached: 20000 requests)" >> "$OUT/$TAG-strace-$name.txt"
done
cat "$summary"
