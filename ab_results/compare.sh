#!/usr/bin/env bash
# httpd next to nginx (required) and h2o and lighttpd (where installed), on this machine, with
# the same workloads, interleaved, server and load generator pinned to different cores.
#
# For each round (ROUNDS, default 3), for each workload, for each server (the order rotates by
# one each round, so no server is always first): start a fresh server on a free 127.0.0.1 port
# under `taskset -c SERVER_CPU`, check the URL answers 200 with the right length, warm it up,
# run the client under `taskset -c CLIENT_CPU`, read the server's CPU time (utime+stime from
# /proc/PID/stat of the server and every descendant: nginx's master and workers; a process's
# line already sums its threads) before and after, stop the server. Workloads:
#
#   ka     ab -k -c 50 -n N       /1k.html   (HTTP/1.0 keep-alive)
#   close  ab    -c 50 -n N       /1k.html   (a new connection per request)
#   big    ab -k -c 4  -n N_BIG   /big.bin   (BIG_MIB MiB, random bytes; MiB/s)
#   wrk    wrk -t2 -c100 -dWRK_SECS /1k.html (HTTP/1.1 keep-alive)   } only if wrk is
#   wrkbig wrk -t1 -c4 -dWRK_SECS /big.bin   (MiB/s)                 } installed
#
# Ratios are paired: a server's value in a round divided by nginx's value for the same workload
# in the same round, so slow drift of the machine cancels; the summary gives their median and
# range. Servers: httpd `-w HTTPD_WORKERS -l FILE`; nginx 1 worker process, sendfile on,
# worker_connections 4096; h2o num-threads 1; lighttpd (one process, server.max-fds 16384).
# LOG=on (default): every server writes an access log to a file;
# LOG=off: no server logs (httpd `-l off`).
# Configs and the docroot (1k.html, big.bin) are generated in a temp dir, removed at the end.
#
# Output: ab_results/raw/compare-<UTC date>/ holds every client's raw output (with the server
# and client command lines, server CPU ticks and core load in a header/footer), runs.tsv (one
# row per run) and summary.md (the markdown tables, also printed).
#
# Usage: ab_results/compare.sh                      (~8 minutes with all four servers)
#        ROUNDS=5 SERVERS="httpd nginx" WORKLOADS="ka wrk" ab_results/compare.sh
#        N=20000 N_BIG=50 WRK_SECS=5 ROUNDS=1 ab_results/compare.sh       (a quick check)
#        SUMMARY_ONLY=ab_results/raw/compare-DATE ab_results/compare.sh    (redo the tables)
# Knobs: ROUNDS=3 N=50000 C=50 N_BIG=100 BIG_MIB=32 WRK_SECS=10 HTTPD_WORKERS=8 LOG=on
#        SERVERS="httpd nginx h2o lighttpd" WORKLOADS="ka close big wrk wrkbig" SERVER_CPU=1 CLIENT_CPU=0
# Needs: ab taskset curl python3 nginx (apt-get install nginx-light apache2-utils), optionally
# wrk h2o lighttpd. Loopback only; every client is bounded by -n / -d and a time limit.
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

ROUNDS=${ROUNDS:-3}
N=${N:-50000}
C=${C:-50}
N_BIG=${N_BIG:-100}
BIG_MIB=${BIG_MIB:-32}
WRK_SECS=${WRK_SECS:-10}
HTTPD_WORKERS=${HTTPD_WORKERS:-8}
LOG=${LOG:-on}
SERVERS=${SERVERS:-"httpd nginx h2o lighttpd"}
WORKLOADS=${WORKLOADS:-"ka close big wrk wrkbig"}
SERVER_CPU=${SERVER_CPU:-1}
CLIENT_CPU=${CLIENT_CPU:-0}
settings="ROUNDS=$ROUNDS N=$N C=$C N_BIG=$N_BIG BIG_MIB=$BIG_MIB WRK_SECS=$WRK_SECS HTTPD_WORKERS=$HTTPD_WORKERS LOG=$LOG SERVER_CPU=$SERVER_CPU CLIENT_CPU=$CLIENT_CPU"

# The summary, from runs.tsv alone (awk: median and range per cell, paired ratios per round).
summarize() {
  awk -F'\t' -v servers="${servers[*]}" -v workloads="${workloads[*]}" '
    function med(list,   a, n, i, j, x) {
      n = split(list, a, " "); if (n == 0) return ""
      for (i = 2; i <= n; i++) { x = a[i] + 0; for (j = i - 1; j >= 1 && a[j] + 0 > x; j--) a[j + 1] = a[j]; a[j + 1] = x }
      lo = a[1]; hi = a[n]
      return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
    }
    function k(v) { return v >= 10000 ? sprintf("%.1fk", v / 1000) : v >= 100 ? sprintf("%.0f", v) : sprintf("%.1f", v) }
    NR == 1 { next }
    { key = $2 SUBSEP $3
      if ($4 != "-") { val[key] = val[key] " " $4; byround[$1, $2, $3] = $4 } else aborted[key]++
      if ($11 != "-") us[key] = us[key] " " $11
      err[key] += $7 + $8; req[key] += $6
      if ($9 != "-") ka[key] += $9
      cb[key] = cb[key] " " $12; own[key] = own[key] " " $14
      unit[$2] = $5; rounds[$1] = 1 }
    END {
      ns = split(servers, S, " "); nw = split(workloads, W, " ")
      hdr = "| workload |"; sep = "|---|"
      for (s = 1; s <= ns; s++) { hdr = hdr " " S[s] " |"; sep = sep "---:|" }
      print "**Throughput**, median (min–max) over the rounds; `^` = the client core was at least 95 % busy (median), so the load generator is the limit and ratios are pulled toward 1:"
      print ""; print hdr; print sep
      for (w = 1; w <= nw; w++) {
        line = "| " W[w] " (" unit[W[w]] ") |"
        for (s = 1; s <= ns; s++) {
          key = W[w] SUBSEP S[s]; m = med(val[key])
          cell = m == "" ? "failed" : k(m) " (" k(lo) "–" k(hi) ")"
          if (m != "" && med(cb[key]) >= 0.95) cell = cell " ^"
          if (aborted[key]) cell = cell " (" aborted[key] " aborted)"
          line = line " " cell " |"
        }
        print line
      }
      print ""; print "**Ratio to nginx**, paired by round (a server value ÷ the nginx value of the same round and workload), median (min–max):"
      hdr = "| workload |"; sep = "|---|"
      for (s = 1; s <= ns; s++) if (S[s] != "nginx") { hdr = hdr " " S[s] " ÷ nginx |"; sep = sep "---:|" }
      print ""; print hdr; print sep
      for (w = 1; w <= nw; w++) {
        line = "| " W[w] " |"
        for (s = 1; s <= ns; s++) {
          if (S[s] == "nginx") continue
          list = ""
          for (r in rounds) {
            a = byround[r, W[w], S[s]]; b = byround[r, W[w], "nginx"]
            if (a != "" && b != "" && b > 0) list = list " " a / b
          }
          m = med(list)
          line = line " " (m == "" ? "-" : sprintf("%.2f (%.2f–%.2f)", m, lo, hi)) " |"
        }
        print line
      }
      print ""; print "**Server CPU per request** (µs, utime+stime of the server process tree ÷ completed requests), median, and in brackets that median ÷ the nginx median (lower is better; steadier than req/s when the client core is the limit):"
      hdr = "| workload |"; sep = "|---|"
      for (s = 1; s <= ns; s++) { hdr = hdr " " S[s] " |"; sep = sep "---:|" }
      print ""; print hdr; print sep
      for (w = 1; w <= nw; w++) {
        line = "| " W[w] " |"
        nm = med(us[W[w] SUBSEP "nginx"])
        for (s = 1; s <= ns; s++) {
          m = med(us[W[w] SUBSEP S[s]]); cell = m == "" ? "-" : k(m)
          if (m != "" && S[s] != "nginx" && nm > 0) cell = cell sprintf(" (%.2f×)", m / nm)
          line = line " " cell " |"
        }
        print line
      }
      print ""; print "**Errors and keep-alive** (failed + non-2xx responses over all rounds; for ab -k, the share of requests ab counted as keep-alive), and the median share of its core that the server itself used (when the core was busier than that, the rest was other load: noise):"
      print ""; print hdr; print sep
      for (w = 1; w <= nw; w++) {
        line = "| " W[w] " |"
        for (s = 1; s <= ns; s++) {
          key = W[w] SUBSEP S[s]
          cell = err[key] + 0 " errors"
          if ((W[w] == "ka" || W[w] == "big") && req[key] > 0) cell = cell sprintf(", %.0f %% keep-alive", 100 * ka[key] / req[key])
          cell = cell sprintf(", core %.0f %%", 100 * med(own[key]))
          line = line " " cell " |"
        }
        print line
      }
    }' "$RAW/runs.tsv"
}

# SUMMARY_ONLY=DIR: rewrite DIR/summary.md's tables from DIR/runs.tsv (keeping its header).
if [ -n "${SUMMARY_ONLY:-}" ]; then
  RAW=$SUMMARY_ONLY
  mapfile -t servers < <(awk -F'\t' 'NR > 1 && $1 == 1 && !seen[$3]++ { print $3 }' "$RAW/runs.tsv")
  mapfile -t workloads < <(awk -F'\t' 'NR > 1 && $1 == 1 && !seen[$2]++ { print $2 }' "$RAW/runs.tsv")
  { sed '/^\*\*Throughput\*\*/,$d' "$RAW/summary.md"; summarize; } > "$RAW/summary.md.new"
  mv "$RAW/summary.md.new" "$RAW/summary.md"
  cat "$RAW/summary.md"
  exit 0
fi

lib_init
need ab taskset curl python3 nginx -- "apt-get install -y nginx-light apache2-utils curl (and wrk h2o lighttpd for the optional parts)"
[ "$LOG" = on ] || [ "$LOG" = off ] || { echo "LOG must be on or off" >&2; exit 2; }
[ "$SERVER_CPU" != "$CLIENT_CPU" ] || { echo "SERVER_CPU and CLIENT_CPU must differ" >&2; exit 2; }
[ "$(nproc)" -gt "$(( SERVER_CPU > CLIENT_CPU ? SERVER_CPU : CLIENT_CPU ))" ] ||
  { echo "this machine has $(nproc) CPU(s); SERVER_CPU=$SERVER_CPU CLIENT_CPU=$CLIENT_CPU need more" >&2; exit 2; }

# Which servers and workloads run: nginx is the baseline and must be there; a missing peer or
# wrk is skipped with a message, not an error.
servers=()
for s in $SERVERS; do
  case $s in
    httpd|nginx) servers+=("$s") ;;
    h2o|lighttpd)
      if command -v "$s" >/dev/null; then servers+=("$s")
      else echo "note: $s not installed (apt-get install $s): skipping it" >&2; fi ;;
    *) echo "unknown server $s (httpd nginx h2o lighttpd)" >&2; exit 2 ;;
  esac
done
[[ " ${servers[*]} " == *" nginx "* ]] || { echo "nginx is the baseline: keep it in SERVERS" >&2; exit 2; }
workloads=()
for w in $WORKLOADS; do
  case $w in
    ka|close|big) workloads+=("$w") ;;
    wrk|wrkbig)
      if command -v wrk >/dev/null; then workloads+=("$w")
      else echo "note: wrk not installed (apt-get install wrk): skipping the $w workload" >&2; fi ;;
    *) echo "unknown workload $w (ka close big wrk wrkbig)" >&2; exit 2 ;;
  esac
done

[[ " ${servers[*]} " == *" httpd "* ]] && build_httpd
stamp=$(date -u '+%Y-%m-%dT%H%M%SZ')
RAW=$OUT/compare-$stamp
mkdir -p "$RAW"
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

# The docroot: a 1 KiB page and a BIG_MIB MiB file of random bytes (lib.sh: peer_docroot).
peer_docroot "$BIG_MIB"

# Servers: lib.sh's start_server (their configs are there) and server_version.

# The client's command line for a workload (without the taskset prefix).
client_cmd() { # workload port
  local url=http://127.0.0.1:$2
  case $1 in
    ka) echo "ab -k -r -c $C -t 300 -n $N -s 10 $url/1k.html" ;;
    close) echo "ab -r -c $C -t 300 -n $N -s 10 $url/1k.html" ;;
    big) echo "ab -k -r -c 4 -t 300 -n $N_BIG -s 30 $url/big.bin" ;;
    wrk) echo "wrk -t2 -c100 -d${WRK_SECS}s --timeout 5s --latency $url/1k.html" ;;
    wrkbig) echo "wrk -t1 -c4 -d${WRK_SECS}s --timeout 30s --latency $url/big.bin" ;;
  esac
}

hz=$(getconf CLK_TCK)
printf 'round\tworkload\tserver\tvalue\tunit\trequests\tfailed\tnon2xx\tkeepalive\tsrv_ticks\tsrv_us_per_req\tclient_core_busy\tserver_core_busy\tserver_share_of_core\tfile\n' > "$RAW/runs.tsv"
load_start=$(cut -d' ' -f1-3 /proc/loadavg)
t_start=$SECONDS
nserv=${#servers[@]}
total=$((ROUNDS * ${#workloads[@]} * nserv))
i=0
echo "compare: ${servers[*]} x ${workloads[*]} x $ROUNDS rounds = $total runs; raw output in ${RAW#"$LIB_ROOT"/}" >&2
for round in $(seq "$ROUNDS"); do
  for wl in "${workloads[@]}"; do
    for k in $(seq 0 $((nserv - 1))); do
      srv=${servers[$(((k + round - 1) % nserv))]}
      i=$((i + 1))
      start_server "$srv"
      path=/1k.html want=$small_len
      case $wl in big|wrkbig) path=/big.bin want=$big_len ;; esac
      got=$(curl -s -o /dev/null -w '%{http_code} %{size_download}' "http://127.0.0.1:$port$path")
      [ "$got" = "200 $want" ] || { echo "$srv: GET $path gave '$got', expected '200 $want'" >&2; exit 1; }
      # Warm-up: the first requests of a fresh process fault in code and caches.
      if [ "$path" = /big.bin ]; then
        taskset -c "$CLIENT_CPU" ab -k -c 2 -n 4 -s 30 "http://127.0.0.1:$port$path" > /dev/null 2>&1 || true
      else
        taskset -c "$CLIENT_CPU" ab -k -c 10 -n 2000 -s 10 "http://127.0.0.1:$port$path" > /dev/null 2>&1 || true
      fi
      sleep 0.2
      client=$(client_cmd "$wl" "$port")
      file=$RAW/r$round-$wl-$srv.txt
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
      # Parse the client's output.
      if [ "$wl" = wrk ] || [ "$wl" = wrkbig ]; then
        parse_wrk "$file"
        value=$rps unit=req/s
        if [ "$wl" = wrkbig ]; then   # "N requests in 10.01s, 17.50GB read" (wrk's units are powers of 1024)
          unit=MiB/s
          value=$(sed -n 's/^ *[0-9]* requests in \([0-9.]*\)\(m\{0,1\}s\), \([0-9.]*\)\([KMGT]\{0,1\}B\) read.*/\1 \2 \3 \4/p' "$file" |
                  awk '{ t = $1 * ($2 == "ms" ? 0.001 : 1); m = $4 == "KB" ? 1024 : $4 == "MB" ? 1048576 : $4 == "GB" ? 1073741824 : $4 == "TB" ? 1099511627776 : 1
                         if (t > 0) printf "%.1f", $3 * m / 1048576 / t }')
        fi
      else
        parse_ab "$file"
        value=$rps unit=req/s
        if [ "$wl" = big ]; then
          unit=MiB/s
          value=$(sed -n 's/^Transfer rate: *\([0-9.]*\).*/\1/p' "$file" | awk '{ if ($1 != "") printf "%.1f", $1 / 1024 }')
        fi
      fi
      grep -qE 'apr_pollset_poll|Test aborted|client exited|SERVER DIED' "$file" && value=   # an aborted run has no value
      us=$(awk -v t="$ticks" -v n="$requests" -v hz="$hz" 'BEGIN { if (n > 0) printf "%.1f", t * 1e6 / hz / n; else print "-" }')
      printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$wl" "$srv" "${value:--}" "$unit" \
        "$requests" "$failed" "$non2xx" "$ka" "$ticks" "$us" "$cb" "$sb" "$share" "$(basename "$file")" >> "$RAW/runs.tsv"
      printf '[%d/%d] round %d %-5s %-8s %10s %-5s  %s us/req  failed=%s non2xx=%s  client core %s, server core %s (own %s)\n' \
        "$i" "$total" "$round" "$wl" "$srv" "${value:--}" "$unit" "$us" "$failed" "$non2xx" "$cb" "$sb" "$share" >&2
      sleep 1   # let TIME_WAIT and the page cache settle between runs
    done
  done
done
elapsed=$((SECONDS - t_start))

{
  echo "## Comparison run $stamp"
  echo
  echo "Command: \`$settings SERVERS=\"${servers[*]}\" WORKLOADS=\"${workloads[*]}\" ab_results/compare.sh\`"
  echo "(commit \`$commit\`), $(date -u '+%Y-%m-%d'), $elapsed s. Machine: $machine. Server pinned to CPU $SERVER_CPU,"
  echo "client to CPU $CLIENT_CPU; loadavg $load_start at the start, $(cut -d' ' -f1-3 /proc/loadavg) at the end."
  echo "Versions: $(for s in "${servers[@]}"; do printf '%s; ' "$(server_version "$s")"; done)$(ab -V | head -1 | sed 's/^This is //; s/ <.*//')$(command -v wrk >/dev/null && printf '; %s' "$(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2)")."
  echo "Workloads: ka = \`$(client_cmd ka PORT)\`, close = \`$(client_cmd close PORT)\`,"
  echo "big = \`$(client_cmd big PORT)\` ($BIG_MIB MiB), wrk = \`$(client_cmd wrk PORT)\`,"
  echo "wrkbig = \`$(client_cmd wrkbig PORT)\`; 1k.html is $small_len bytes. Every run on a fresh server."
  echo
  summarize
} > "$RAW/summary.md"
cat "$RAW/summary.md"
echo >&2
echo "raw output and summary: ${RAW#"$LIB_ROOT"/}/" >&2
