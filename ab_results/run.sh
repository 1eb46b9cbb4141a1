#!/usr/bin/env bash
# Throughput and server CPU per request against httpd's worker count (-w), next to nginx, h2o
# and lighttpd in the same interleaved run; draws ab_results/workers.svg.
#
# Servers: httpd -w W for each W in WORKERS (default 1 2 4 8 16 64), and each peer in PEERS
# that is installed (a missing one is skipped with a message), each with its natural worker
# count on its one core (nginx 1 worker process, h2o num-threads 1, lighttpd one process; the
# configs are lib.sh's start_server). Workloads on a 1 KiB file (/1k.html):
#
#   ab         ab    -c C -n N        a new connection per request (HTTP/1.0)
#   ab-k       ab -k -c C -n N        HTTP/1.0 keep-alive
#   wrk-c100   wrk -t2 -c100  -dWRK_SECS    HTTP/1.1 keep-alive
#   wrk-c1000  wrk -t2 -c1000 -dWRK_SECS    the same with 1000 connections
#
# For each round (ROUNDS), for each workload, for each server (the order rotates by one each
# round): a fresh server pinned to SERVER_CPU on a free loopback port, checked (GET answers 200
# with the file's length), warmed up (ab -k -c 10 -n 2000), then the client pinned to
# CLIENT_CPU while the server's CPU time is read from /proc (utime+stime of its process tree,
# before and after), then its peak RSS (VmHWM summed over its processes), then SIGTERM. Access
# logs are off (httpd -l off) unless LOG=on, which turns every server's log on (to a file).
#
# Output: ab_results/raw/workers-<UTC date>/ holds every client's raw, unedited output under a
# header (commit, date, machine, server and client command lines) with the server's CPU ticks,
# core load and peak RSS in a footer; runs.tsv (one row per run); summary.md (markdown tables:
# req/s and CPU µs per request per server and workload, peak RSS at wrk -c1000; also printed).
# The chart (CHART, default ab_results/workers.svg) is drawn from runs.tsv by the small Cargo
# project in ab_results/chart/ (medians over the rounds; httpd one line per workload against
# -w on a log2 axis, each peer a horizontal line).
#
# Usage: ab_results/run.sh                                   (~20 min on 2 cores, all servers)
#        N=2000 WRK_SECS=2 ROUNDS=1 WORKERS="1 8" CHART=/tmp/w.svg ab_results/run.sh  (smoke)
#        SUMMARY_ONLY=ab_results/raw/workers-DATE ab_results/run.sh   (redo summary and chart)
# Knobs: ROUNDS=3 N=50000 C=100 WRK_SECS=10 WORKERS="1 2 4 8 16 64" PEERS="nginx h2o lighttpd"
#        WORKLOADS="ab ab-k wrk-c100 wrk-c1000" LOG=off FILE_CACHE=64M SERVER_CPU=1 CLIENT_CPU=0
#        CHART=ab_results/workers.svg
# Needs: ab wrk taskset curl python3 cargo (apt-get install apache2-utils wrk), optionally nginx
# h2o lighttpd. Loopback only; every client is bounded by -n / -d and a time limit.
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

ROUNDS=${ROUNDS:-3}
N=${N:-50000}
C=${C:-100}
WRK_SECS=${WRK_SECS:-10}
WORKERS=${WORKERS:-"1 2 4 8 16 64"}
PEERS=${PEERS-"nginx h2o lighttpd"}
WORKLOADS=${WORKLOADS:-"ab ab-k wrk-c100 wrk-c1000"}
LOG=${LOG:-off}
FILE_CACHE=${FILE_CACHE:-64M}
SERVER_CPU=${SERVER_CPU:-1}
CLIENT_CPU=${CLIENT_CPU:-0}
CHART=${CHART:-ab_results/workers.svg}
settings="ROUNDS=$ROUNDS N=$N C=$C WRK_SECS=$WRK_SECS LOG=$LOG FILE_CACHE=$FILE_CACHE SERVER_CPU=$SERVER_CPU CLIENT_CPU=$CLIENT_CPU"

# The summary tables, from runs.tsv alone: medians (and ranges) over the rounds.
summarize() {
  awk -F'\t' -v cache="$FILE_CACHE" '
    function med(list,   a, n, i, j, x) {
      n = split(list, a, " "); if (n == 0) return ""
      for (i = 2; i <= n; i++) { x = a[i] + 0; for (j = i - 1; j >= 1 && a[j] + 0 > x; j--) a[j + 1] = a[j]; a[j + 1] = x }
      lo = a[1]; hi = a[n]
      return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
    }
    function k(v) { return v >= 10000 ? sprintf("%.1fk", v / 1000) : v >= 100 ? sprintf("%.0f", v) : sprintf("%.1f", v) }
    function range(m) { return nrounds > 1 ? " (" k(lo) "–" k(hi) ")" : "" }
    function mib(kib) { return sprintf("%.1f", kib / 1024) }
    NR == 1 { for (i = 1; i <= NF; i++) col[$i] = i; next }
    { w = $col["workload"]; s = $col["server"] (($col["server"] == "httpd") ? " -w " $col["workers"] : "")
      key = w SUBSEP s
      if (!(w in seenw)) { seenw[w] = 1; W[++nw] = w }
      if (!(s in seens)) { seens[s] = 1; S[++ns] = s; order[ns] = ($col["server"] == "httpd") ? $col["workers"] + 0 : 1e6 + ns }
      if ($col["req_s"] != "-") rps[key] = rps[key] " " $col["req_s"]; else aborted[key]++
      if ($col["srv_us_per_req"] != "-") us[key] = us[key] " " $col["srv_us_per_req"]
      cb[key] = cb[key] " " $col["client_core_busy"]; own[key] = own[key] " " $col["server_share_of_core"]
      rss[key] = rss[key] " " $col["peak_rss_kib"]
      err[s] += $col["failed"] + $col["non2xx"]
      if (!($col["round"] in rounds)) { rounds[$col["round"]] = 1; nrounds++ } }
    END {
      # httpd rows by worker count, then the peers in the order they ran.
      for (i = 2; i <= ns; i++) { x = S[i]; o = order[i]
        for (j = i - 1; j >= 1 && order[j] > o; j--) { S[j + 1] = S[j]; order[j + 1] = order[j] }
        S[j + 1] = x; order[j + 1] = o }
      hdr = "| server |"; sep = "|---|"
      for (j = 1; j <= nw; j++) { hdr = hdr " " W[j] " |"; sep = sep "---:|" }
      print "**Requests per second**, median" (nrounds > 1 ? " (min–max) over " nrounds " rounds" : " (1 round)") "; `^` = the client core was at least 95 % busy (median), so the load generator, not the server, was the limit:"
      print ""; print hdr; print sep
      for (i = 1; i <= ns; i++) {
        line = "| " S[i] " |"
        for (j = 1; j <= nw; j++) {
          key = W[j] SUBSEP S[i]; m = med(rps[key])
          cell = m == "" ? "-" : k(m) range(m)
          if (m != "" && med(cb[key]) >= 0.95) cell = cell " ^"
          if (aborted[key]) cell = cell " (" aborted[key] " aborted)"
          line = line " " cell " |"
        }
        print line
      }
      print ""; print "**Server CPU per request** (µs: utime+stime of the server process tree ÷ completed requests), median" (nrounds > 1 ? " (min–max)" : "") ", and the median share of its core the server itself used:"
      print ""; print hdr; print sep
      for (i = 1; i <= ns; i++) {
        line = "| " S[i] " |"
        for (j = 1; j <= nw; j++) {
          key = W[j] SUBSEP S[i]; m = med(us[key])
          line = line " " (m == "" ? "-" : k(m) range(m) sprintf(", core %.0f %%", 100 * med(own[key]))) " |"
        }
        print line
      }
      print ""; print "**Peak memory and errors**: peak RSS (VmHWM of the server process tree, MiB) during and after wrk -c1000, median" (nrounds > 1 ? " (min–max)" : "") "; failed + non-2xx responses over every run:"
      print ""; print "| server | peak RSS at wrk -c1000 (MiB) | errors |"; print "|---|---:|---:|"
      for (i = 1; i <= ns; i++) {
        m = med(rss["wrk-c1000" SUBSEP S[i]])
        if (m != "") peak[S[i]] = m
        print "| " S[i] " | " (m == "" ? "-" : mib(m) (nrounds > 1 ? " (" mib(lo) "–" mib(hi) ")" : "")) " | " err[S[i]] + 0 " |"
      }
      if ("lighttpd" in peak) {
        b = cache; u = toupper(substr(b, length(b))); b = b + 0
        b = u == "K" ? b / 1024 : u == "M" ? b : u == "G" ? b * 1024 : b / 1048576
        limit = peak["lighttpd"] / 1024 + b; worst = ""; hi = -1
        for (i = 1; i <= ns; i++) if (S[i] ~ /^httpd/ && (S[i] in peak) && peak[S[i]] > hi) { hi = peak[S[i]]; worst = S[i] }
        if (worst != "")
          printf "\nIssue 10 target: httpd peak RSS at wrk -c1000 ≤ lighttpd (%s MiB) + the file cache bound (`--file-cache %s`, %s MiB) = %s MiB. Highest httpd: %s MiB (%s): %s.\n",
            mib(peak["lighttpd"]), cache, b, sprintf("%.1f", limit), mib(hi), worst, (hi / 1024 <= limit ? "met" : "NOT met")
      }
    }' "$RAW/runs.tsv"
}

draw_chart() {
  local note="ab_results/run.sh, commit $commit_run, $date_run; $machine_run; server on CPU $SERVER_CPU, client on CPU $CLIENT_CPU; median of $ROUNDS round(s); access logs $LOG"
  mkdir -p "$(dirname "$CHART")"
  nice -n 19 cargo run --quiet --release --manifest-path "$LIB_ROOT/ab_results/chart/Cargo.toml" -- \
    "$RAW/runs.tsv" "$CHART" "$note"
  echo "chart: $CHART" >&2
}

# SUMMARY_ONLY=DIR: rewrite DIR/summary.md's tables and the chart from DIR/runs.tsv.
if [ -n "${SUMMARY_ONLY:-}" ]; then
  cd "$LIB_ROOT"
  RAW=$SUMMARY_ONLY
  # shellcheck disable=SC1091
  . "$RAW/settings.sh"
  { sed '/^\*\*Requests per second\*\*/,$d' "$RAW/summary.md"; summarize; } > "$RAW/summary.md.new"
  mv "$RAW/summary.md.new" "$RAW/summary.md"
  cat "$RAW/summary.md"
  draw_chart
  exit 0
fi

lib_init
need ab wrk taskset curl python3 cargo -- "apt-get install -y apache2-utils wrk curl (and nginx-light h2o lighttpd for the peers)"
[ "$LOG" = on ] || [ "$LOG" = off ] || { echo "LOG must be on or off" >&2; exit 2; }
[ "$SERVER_CPU" != "$CLIENT_CPU" ] || { echo "SERVER_CPU and CLIENT_CPU must differ" >&2; exit 2; }
[ "$(nproc)" -gt "$(( SERVER_CPU > CLIENT_CPU ? SERVER_CPU : CLIENT_CPU ))" ] ||
  { echo "this machine has $(nproc) CPU(s); SERVER_CPU=$SERVER_CPU CLIENT_CPU=$CLIENT_CPU need more" >&2; exit 2; }

# The servers of a round, "httpd:W" or a peer's name; a missing peer is skipped with a message.
units=() peers=()
for w in $WORKERS; do
  [[ $w =~ ^[1-9][0-9]*$ ]] || { echo "WORKERS: $w is not a worker count" >&2; exit 2; }
  units+=("httpd:$w")
done
for s in $PEERS; do
  case $s in
    nginx|h2o|lighttpd)
      if command -v "$s" >/dev/null; then units+=("$s") peers+=("$s")
      else echo "note: $s not installed (apt-get install ${s/nginx/nginx-light}): skipping it" >&2; fi ;;
    *) echo "unknown peer $s (nginx h2o lighttpd)" >&2; exit 2 ;;
  esac
done
for wl in $WORKLOADS; do
  case $wl in ab|ab-k|wrk-c100|wrk-c1000) ;; *) echo "unknown workload $wl (ab ab-k wrk-c100 wrk-c1000)" >&2; exit 2 ;; esac
done
read -r -a workloads <<< "$WORKLOADS"

build_httpd
stamp=$(date -u '+%Y-%m-%dT%H%M%SZ')
RAW=$OUT/workers-$stamp
mkdir -p "$RAW"
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
peer_docroot ""   # 1k.html only
HTTPD_EXTRA=(--file-cache "$FILE_CACHE")
# What SUMMARY_ONLY and the chart need to know about this run.
commit_run=$commit date_run=$(date -u '+%Y-%m-%d') machine_run="nproc=$(nproc), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')"
declare -p ROUNDS LOG FILE_CACHE SERVER_CPU CLIENT_CPU commit_run date_run machine_run > "$RAW/settings.sh"

# The client's command line for a workload (without the taskset prefix). -t before -n: ab's
# -t sets the request count to 50000, so "-n N -t T" would ignore N.
client_cmd() { # workload port
  local url=http://127.0.0.1:$2/1k.html
  case $1 in
    ab) echo "ab -r -c $C -t 300 -n $N -s 10 $url" ;;
    ab-k) echo "ab -k -r -c $C -t 300 -n $N -s 10 $url" ;;
    wrk-c100) echo "wrk -t2 -c100 -d${WRK_SECS}s --timeout 5s --latency $url" ;;
    wrk-c1000) echo "wrk -t2 -c1000 -d${WRK_SECS}s --timeout 5s --latency $url" ;;
  esac
}

hz=$(getconf CLK_TCK)
printf 'round\tworkload\tserver\tworkers\treq_s\trequests\tfailed\tnon2xx\tkeepalive\tsrv_ticks\tsrv_us_per_req\tclient_core_busy\tserver_core_busy\tserver_share_of_core\tpeak_rss_kib\tfile\n' > "$RAW/runs.tsv"
load_start=$(cut -d' ' -f1-3 /proc/loadavg)
t_start=$SECONDS
nunits=${#units[@]}
total=$((ROUNDS * ${#workloads[@]} * nunits))
i=0
echo "workers: ${units[*]} x ${workloads[*]} x $ROUNDS rounds = $total runs; raw output in ${RAW#"$LIB_ROOT"/}" >&2
for round in $(seq "$ROUNDS"); do
  for wl in "${workloads[@]}"; do
    for k in $(seq 0 $((nunits - 1))); do
      unit=${units[$(((k + round - 1) % nunits))]}
      srv=${unit%%:*} workers=1 label=$srv
      if [ "$srv" = httpd ]; then workers=${unit#httpd:} label=httpd-w$workers; fi
      i=$((i + 1))
      HTTPD_WORKERS=$workers start_server "$srv"
      got=$(curl -s -o /dev/null -w '%{http_code} %{size_download}' "http://127.0.0.1:$port/1k.html")
      [ "$got" = "200 $small_len" ] || { echo "$label: GET /1k.html gave '$got', expected '200 $small_len'" >&2; exit 1; }
      # Warm-up: the first requests of a fresh process fault in code and caches.
      taskset -c "$CLIENT_CPU" ab -k -c 10 -n 2000 -s 10 "http://127.0.0.1:$port/1k.html" > /dev/null 2>&1 || true
      sleep 0.2
      client=$(client_cmd "$wl" "$port")
      file=$RAW/r$round-$wl-$label.txt
      {
        echo "# commit:  $commit   date: $(date -u '+%Y-%m-%dT%H:%M:%SZ')   round $round/$ROUNDS"
        echo "# machine: $machine; loadavg $(cut -d' ' -f1-3 /proc/loadavg)"
        echo "# server:  $server_cmd   ($(server_version "$srv"))"
        echo "# client:  taskset -c $CLIENT_CPU $client"
        echo
      } > "$file"
      # shellcheck disable=SC2086
      measured_client "$file" $((WRK_SECS + 330)) $client
      stop_server
      case $wl in ab*) parse_ab "$file" ;; *) parse_wrk "$file" ;; esac
      grep -qE 'apr_pollset_poll|Test aborted|client exited|SERVER DIED' "$file" && rps=   # an aborted run has no value
      us=$(awk -v t="$ticks" -v n="$requests" -v hz="$hz" 'BEGIN { if (n > 0) printf "%.1f", t * 1e6 / hz / n; else print "-" }')
      printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$wl" "$srv" "$workers" "${rps:--}" \
        "$requests" "$failed" "$non2xx" "$ka" "$ticks" "$us" "$cb" "$sb" "$share" "$rss" "$(basename "$file")" >> "$RAW/runs.tsv"
      printf '[%d/%d] round %d %-9s %-11s %9s req/s  %5s us/req  rss %6s KiB  failed=%s non2xx=%s  client core %s, server core %s (own %s)\n' \
        "$i" "$total" "$round" "$wl" "$label" "${rps:--}" "$us" "$rss" "$failed" "$non2xx" "$cb" "$sb" "$share" >&2
      sleep 1   # let TIME_WAIT and the page cache settle between runs
    done
  done
done
elapsed=$((SECONDS - t_start))

{
  echo "## Worker-count run $stamp"
  echo
  echo "Command: \`$settings WORKERS=\"$WORKERS\" PEERS=\"$PEERS\" WORKLOADS=\"$WORKLOADS\" ab_results/run.sh\`"
  echo "(commit \`$commit\`), $date_run, $elapsed s. Machine: $machine. Server pinned to CPU $SERVER_CPU,"
  echo "client to CPU $CLIENT_CPU; loadavg $load_start at the start, $(cut -d' ' -f1-3 /proc/loadavg) at the end."
  echo "Versions: $(for s in httpd ${peers[@]+"${peers[@]}"}; do printf '%s; ' "$(server_version "$s")"; done)$(ab -V | head -1 | sed 's/^This is //; s/ <.*//'); $(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2)."
  echo "Servers: httpd \`-w W -l $([ "$LOG" = on ] && echo FILE || echo off) --file-cache $FILE_CACHE\`; nginx 1 worker process, \`sendfile on\`;"
  echo "h2o \`num-threads: 1\`; lighttpd one process; access logs $LOG. Every run on a fresh server, warmed up."
  # shellcheck disable=SC2016  # the backquotes are markdown
  echo "Workloads on /1k.html ($small_len bytes): $(for wl in "${workloads[@]}"; do printf '%s = `%s`; ' "$wl" "$(client_cmd "$wl" PORT)"; done)"
  echo
  summarize
} > "$RAW/summary.md"
cat "$RAW/summary.md"
echo >&2
draw_chart
echo "raw output and summary: ${RAW#"$LIB_ROOT"/}/" >&2
