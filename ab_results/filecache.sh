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
ab_setup
TAG=${TAG:-filecache}
summary=$OUT/$TAG-summary.txt
{ echo "# filecache.sh: commit $commit; $machine; ab -k -c 50 -n $N, 1 KiB, httpd -w 8 -l off, server on CPU 1, ab on CPU 0"
  echo "# old: $OLD; new: $NEW"; } > "$summary"
printf '%-10s %-5s %10s %8s %11s\n' binary round req/s ticks 'CPU µs/req' >> "$summary"

# run NAME BIN ROUND [ARGS...]: one measured ab run against BIN.
run() {
  local name=$1 bin=$2 round=$3; shift 3
  ab_cpu "$OUT/$TAG-$name-r$round.txt" "$bin" -l off "$@"
  printf '%-10s %-5s %10s %8s %11s\n' "$name" "$round" "$rps" "$ticks" "$us" >> "$summary"
}

for round in $(seq "$ROUNDS"); do
  run old "$OLD" "$round"
  run new "$NEW" "$round"
  run new-off "$NEW" "$round" --file-cache 0
done

# strace -c -f of a short run: system calls per request.
ab_strace "$OUT/$TAG-strace-old.txt" "$OLD" -l off
ab_strace "$OUT/$TAG-strace-new.txt" "$NEW" -l off
cat "$summary"
