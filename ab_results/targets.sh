#!/usr/bin/env bash
# Issue 10's target runs: httpd `-w 8` (the README's command) next to h2o in one interleaved
# run of the team's harness, peer-bench (../shared/tools/peer-bench beside a clone of this
# repository, or PEER_BENCH=path): server pinned to CPU 1, load generator to CPU 0, a fresh
# server per run, ratios httpd/h2o paired by repeat, server CPU per request, peak RSS.
#
#   1. the access log off on both sides (httpd `-l off`, h2o's default): every workload
#      (ab without and with keep-alive, wrk -c100, the 100 MiB file, wrk -c1000, 404);
#   2. the access log on for both (httpd `-l FILE`, `h2o:log=on`): ab -k and wrk -c100;
#   3. peak RSS at wrk -c1000 next to lighttpd (the target: httpd's at most lighttpd's plus
#      the --file-cache bound);
#   4. the connection designs: the build before leader/followers (a poller thread handing
#      ready connections to the workers over a channel; OLD=path), an early leader/followers
#      build that still had `--dispatch poll` (new connections registered in the set by the
#      accept loop; LF=path, built from commit 19f1f3e), and this tree with `--dispatch
#      direct` and `defer`. Skipped unless OLD and LF are given.
#
# Usage: ab_results/targets.sh                    (REPEATS=5; about 22 minutes, 35 with 4.)
#        OLD=/tmp/httpd-d25d642 LF=/tmp/httpd-19f1f3e ab_results/targets.sh
#        ONLY="1 2" REPEATS=3 ab_results/targets.sh
# Output: ab_results/peer-bench/<date>-issue10-{logoff,logon,rss,designs}/ (peer-bench's
# summary.txt, runs.tsv and results.json, unedited) and the console output next to each.
# Needs: ab, wrk, taskset, python3, h2o and lighttpd (Debian: apt-get install -y h2o lighttpd
# apache2-utils wrk). Loopback only (peer-bench uses ports 18000-18099); every run bounded.
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

REPEATS=${REPEATS:-5}
ONLY=${ONLY:-"1 2 3 4"}
PEER_BENCH=${PEER_BENCH:-$LIB_ROOT/../shared/tools/peer-bench}

lib_init
need ab wrk taskset python3 h2o lighttpd -- "apt-get install -y h2o lighttpd apache2-utils wrk"
if [ ! -x "$PEER_BENCH" ]; then
  echo "peer-bench not found at $PEER_BENCH (set PEER_BENCH=path)" >&2
  exit 1
fi
build_httpd
stamp=$(date -u +%Y-%m-%d)
dest=ab_results/peer-bench
mkdir -p "$dest"

# One peer-bench run: NAME, then its arguments. Its summary, runs.tsv and results.json go to
# $dest/$stamp-issue10-NAME/, what it prints to $dest/$stamp-issue10-NAME.txt.
run() {
  local name=$1
  shift
  local out="$dest/$stamp-issue10-$name"
  rm -rf "$out"
  {
    echo "# ab_results/targets.sh ($name), commit $commit, $machine"
    echo "# peer-bench $*"
  } >"$out.txt"
  "$PEER_BENCH" --out "$out" "$@" 2>&1 | tee -a "$out.txt"
}

httpd="$BIN -r {root} -w 8 -a {host} -p {port}"
for step in $ONLY; do
  case $step in
    1) run logoff -r "$REPEATS" -w a,b,c,d,e,g --cmd "httpd=$httpd -l off" h2o httpd ;;
    2) run logon -r "$REPEATS" -w b,c --cmd "httpd-log=$httpd -l {work}/access.log" \
         h2o:log=on httpd-log ;;
    3) run rss -r 3 -w e --cmd "httpd=$httpd -l off" lighttpd httpd ;;
    4)
      if [ -z "${OLD:-}" ] || [ -z "${LF:-}" ]; then
        echo "step 4 skipped: set OLD= (a build of d25d642) and LF= (a build of 19f1f3e)"
        continue
      fi
      run designs -r 3 -w a,b,g \
        --cmd "poller-thread=$OLD -r {root} -w 8 -a {host} -p {port} -l off" \
        --cmd "lf-queue=$LF -r {root} -w 8 -a {host} -p {port} -l off --dispatch direct" \
        --cmd "lf-register=$LF -r {root} -w 8 -a {host} -p {port} -l off --dispatch poll" \
        --cmd "head=$httpd -l off" \
        --cmd "head-defer=$httpd -l off --dispatch defer" \
        h2o poller-thread lf-queue lf-register head head-defer
      ;;
    *) echo "unknown step $step" >&2 ;;
  esac
done
