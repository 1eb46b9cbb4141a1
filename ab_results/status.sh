#!/usr/bin/env bash
# The status page's cost (issue 11), measured: server CPU per request for a 1 KiB file over
# keep-alive (ab -k -c 50 -n N), httpd -w 8 -l off, one build run three ways, interleaved,
# ROUNDS rounds: without --status ("off": what every request pays for the feature existing),
# with --status /server-status ("on": the counters), and with it while a scraper fetches the
# Prometheus page every second ("scraped"); with OLD= set, also a build without the feature
# ("old", e.g. one built from main: is "off" really free?). Server pinned to CPU 1, ab and the
# scraper to CPU 0.
#
#   ab_results/status.sh           (NEW=/path/to/httpd to measure a given build; OLD, N, ROUNDS)
#
# Raw outputs: ab_results/raw/$TAG-*.txt (TAG=status); the table is printed at the end (and
# saved as ab_results/raw/$TAG-summary.txt). The last scrape of each scraped run is kept in
# ab_results/raw/$TAG-scraped-rR.txt.side.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
lib_init
need ab curl taskset -- "apt-get install apache2-utils curl util-linux"
ab_setup
TAG=${TAG:-status}
summary=$OUT/$TAG-summary.txt
{ echo "# status.sh: commit $commit; $machine; ab -k -c 50 -n $N, 1 KiB, httpd -w 8 -l off, server on CPU 1, ab on CPU 0"
  echo "# binary: $NEW${OLD:+; old: $OLD}"; } > "$summary"
printf '%-8s %-5s %10s %8s %11s %12s\n' run round req/s ticks 'CPU µs/req' 'user µs/req' >> "$summary"

# The scraper: the Prometheus page every second, until stopped (ab_cpu appends the port).
scraper() {
  while :; do
    curl -s -m 2 "http://127.0.0.1:$1/server-status?format=prometheus" > "$tmp/scrape.txt" || true
    sleep 1
  done
}
export -f scraper
export tmp

# run NAME ROUND [ARGS...]: one measured ab run (of $OLD for "old", else $NEW).
run() {
  local name=$1 round=$2 bin=$NEW; shift 2
  [ "$name" = old ] && bin=$OLD
  ab_cpu "$OUT/$TAG-$name-r$round.txt" "$bin" -l off "$@"
  printf '%-8s %-5s %10s %8s %11s %12s\n' "$name" "$round" "$rps" "$ticks" "$us" "$uus" >> "$summary"
}

for round in $(seq "$ROUNDS"); do
  if [ -n "${OLD:-}" ]; then run old "$round"; fi
  run off "$round"
  run on "$round" --status /server-status
  AB_SIDE=(taskset -c 0 bash -c 'scraper "$0"')
  run scraped "$round" --status /server-status
  unset AB_SIDE
  # What the scraper saw last: the counts the run left.
  cp "$tmp/scrape.txt" "$OUT/$TAG-scraped-r$round.txt.side" 2>/dev/null || true
done
cat "$summary"
