#!/usr/bin/env bash
# The open-file cache (issue 10), measured: server CPU per request and system calls per
# request for a 1 KiB file over keep-alive (ab -k -c 50 -n N), httpd -w 8 -l off, the old
# binary (main, no cache) and the new one (cache on by default) interleaved, ROUNDS rounds
# each, plus the new one with --file-cache 0; then `strace -c -f` of each on a short run.
# Server pinned to CPU 1, ab to CPU 0.
#
#   OLD=/path/to/httpd-from-main ab_results/filecache.sh   (NEW defaults to this tree's build)
#
# Raw outputs: ab_results/raw/$TAG-*.txt (TAG=filecache); the table is printed at the end
# (and saved as ab_results/raw/$TAG-summary.txt).
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
HTTPD_PREFIX=(taskset -c 1)
AB=(taskset -c 0 ab)
TAG=${TAG:-filecache}
summary=$OUT/$TAG-summary.txt
{ echo "# filecache.sh: commit $commit; $machine; ab -k -c 50 -n $N, 1 KiB, httpd -w 8 -l off, server on CPU 1, ab on CPU 0"
  echo "# old: $OLD; new: $NEW"; } > "$summary"
printf '%-10s %-5s %10s %8s %11s\n' binary round req/s ticks 'CPU µs/req' >> "$summary"

# run NAME BIN ROUND [ARGS...]: one measured ab run against BIN.
run() {
  local name=$1 bin=$2 round=$3; shift 3
  local out=$OUT/$TAG-$name-r$round.txt
  BIN=$bin start_httpd -r "$root" -w 8 -a 127.0.0.1 -p 0 -l off "$@"
  "${AB[@]}" -q -k -c 50 -n 2000 "http://127.0.0.1:$port/index.html" > /dev/null
  local before after
  before=$(cpu_ticks "$server_pid")
  "${AB[@]}" -k -c 50 -n "$N" "http://127.0.0.1:$port/index.html" > "$out" 2>&1
  after=$(cpu_ticks "$server_pid")
  stop_server
  local rps ticks us
  rps=$(sed -n 's/^Requests per second: *\([0-9.]*\).*/\1/p' "$out")
  ticks=$((after - before))
  us=$(awk -v t="$ticks" -v n="$N" -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.2f", t / hz * 1e6 / n }')
  { echo; echo "server: $bin -w 8 -l off $*"; echo "cpu ticks (utime+stime) during the run: $ticks"; } >> "$out"
  printf '%-10s %-5s %10s %8s %11s\n' "$name" "$round" "$rps" "$ticks" "$us" >> "$summary"
}

for round in $(seq "$ROUNDS"); do
  run old "$OLD" "$round"
  run new "$NEW" "$round"
  run new-off "$NEW" "$round" --file-cache 0
done

# strace -c -f of a short run: system calls per request.
for name in old new; do
  bin=$OLD; [ "$name" = new ] && bin=$NEW
  BIN=$bin start_httpd -r "$root" -w 8 -a 127.0.0.1 -p 0 -l off
  start_bg "$tmp/strace-$name.out" "$OUT/$TAG-strace-$name.txt" strace -c -f -p "$server_pid"
  tracer=$started
  sleep 1   # strace attaches to every thread before the load starts
  "${AB[@]}" -q -k -c 50 -n 20000 "http://127.0.0.1:$port/index.html" > "$tmp/ab-strace-$name.txt"
  stop_pid "$tracer" || true
  stop_server
  echo "(ab -k -c 50 -n 20000 + strace attached: 20000 requests)" >> "$OUT/$TAG-strace-$name.txt"
done
cat "$summary"
