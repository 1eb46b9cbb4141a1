#!/usr/bin/env bash
# The request that borrows from the input buffer (issue 10, "Per request, only the socket"),
# measured: server CPU per request, a 1 KiB file over keep-alive, `-w 8 -l off`, the old
# binary (owned request, format!ed log line, boxed reply) and the new one interleaved, ROUNDS
# rounds each, server pinned to CPU 1 and ab to CPU 0; then heap allocations (memcheck) and
# instructions (callgrind) per request of the whole server under valgrind.
#
#   OLD=/path/to/httpd-from-main ab_results/borrow.sh      (NEW defaults to this tree's build)
#
# Raw outputs: ab_results/raw/$TAG-*.txt (TAG=borrow); the table is printed at the end (and
# saved as ab_results/raw/$TAG-summary.txt).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
lib_init
need ab taskset -- "apt-get install apache2-utils util-linux"
: "${OLD:?set OLD to an httpd binary built from main}"
ab_setup
TAG=${TAG:-borrow}
summary=$OUT/$TAG-summary.txt
{ echo "# borrow.sh: commit $commit; $machine; ab -k -c 50 -n $N, 1 KiB, httpd -w 8 -l off, server on CPU 1, ab on CPU 0"
  echo "# old: $OLD; new: $NEW"; } > "$summary"
printf '%-8s %-5s %10s %8s %11s %12s\n' binary round req/s ticks 'CPU µs/req' 'user µs/req' >> "$summary"

# run NAME BIN ROUND: one measured ab run against BIN; user µs/req is the part of the CPU
# time that is our code rather than the kernel's system calls.
run() {
  local name=$1 bin=$2 round=$3
  ab_cpu "$OUT/$TAG-$name-r$round.txt" "$bin" -l off
  printf '%-8s %-5s %10s %8s %11s %12s\n' "$name" "$round" "$rps" "$ticks" "$us" "$uus" >> "$summary"
}

for round in $(seq "$ROUNDS"); do
  run old "$OLD" "$round"
  run new "$NEW" "$round"
done

# Heap allocations and instructions per request, whole server (every thread, the
# connection's code included), counted by valgrind, which is exact where CPU time is noisy:
# runs of SHORT and LONG keep-alive requests on one connection; the difference divided by
# LONG - SHORT is the cost of one request, start-up and shutdown cancelling out. Valgrind does
# not know openat2(2), so under it the server resolves paths by its component walk (it says
# so in the raw outputs), which adds a VecDeque per lookup (3 per request) to both binaries.
if command -v valgrind > /dev/null; then
  SHORT=${SHORT:-1000} LONG=${LONG:-3000}
  printf '\n%-8s %-9s %8s %12s %12s\n' binary tool requests total 'per request' >> "$summary"
  for tool in memcheck callgrind; do
    for name in old new; do
      bin=$OLD; [ "$name" = new ] && bin=$NEW
      declare -A count=()
      for n in "$SHORT" "$LONG"; do
        out=$OUT/$TAG-$tool-$name-$n.txt
        HTTPD_PREFIX=(valgrind --tool="$tool")
        [ "$tool" = callgrind ] && HTTPD_PREFIX+=(--callgrind-out-file="$tmp/callgrind.out")
        BIN=$bin start_httpd -r "$root" -w 8 -a 127.0.0.1 -p 0 -l off
        err=$(ls -t "$tmp"/httpd-stdout.*.err | head -1)
        ab -q -k -c 1 -n "$n" "http://127.0.0.1:$port/index.html" > "$out.ab" 2>&1
        stop_server
        { cat "$out.ab"; echo; echo "valgrind --tool=$tool (stderr of the server):"; cat "$err"; } > "$out"
        rm -f "$out.ab" "$err" "$tmp/callgrind.out"
        if [ "$tool" = memcheck ]; then
          count[$n]=$(sed -n 's/.*total heap usage: \([0-9,]*\) allocs.*/\1/p' "$out" | tr -d ,)
        else
          count[$n]=$(sed -n 's/.*Collected : \([0-9]*\).*/\1/p' "$out")
        fi
      done
      per=$(awk -v a="${count[$SHORT]}" -v b="${count[$LONG]}" -v s="$SHORT" -v l="$LONG" 'BEGIN { printf "%.2f", (b - a) / (l - s) }')
      what=allocs; [ "$tool" = callgrind ] && what=instructions
      printf '%-8s %-9s %8s %12s %12s\n' "$name" "$what" "$SHORT" "${count[$SHORT]}" "" >> "$summary"
      printf '%-8s %-9s %8s %12s %12s\n' "$name" "$what" "$LONG" "${count[$LONG]}" "$per" >> "$summary"
      unset count
    done
  done
fi
cat "$summary"
