# shellcheck shell=bash disable=SC2034  # the globals set here are read by the scripts
# The preamble every benchmark script in ab_results/ shares: go to the repository root, build
# httpd, note the commit and machine, pick loopback ports, start and stop servers, and clean
# up on exit. Source it, don't run it:
#
#   . "$(dirname "$0")/lib.sh"        (from ab_results/;  attacks/ uses "$here/../lib.sh")
#   lib_init                          cd to the root, $OUT, $commit, $machine, $tmp, EXIT trap
#   need ab wrk -- "apt-get install apache2-utils wrk"
#   build_httpd                       cargo build --release; sets $BIN (absolute path)
#   start_httpd -r docroot -w 8 -a 127.0.0.1 -p 0 -l FILE     sets $server_pid and $port
#   stop_server                       SIGTERM $server_pid, wait (SIGKILL after 15 s)
#   nginx_conf DIR PORT ROOT WORKERS CONNS [DIRECTIVE...]; start_nginx DIR PORT PATH
#   start_bg OUT ERR CMD... / stop_pid PID / wait_pid PID      any other background process
#   free_port, wait_http PORT PATH, cpu_ticks PID, peak_rss PID
#   peer_docroot [BIG_MIB]; start_server NAME; server_version NAME     compare.sh and run.sh:
#   core_jiffies CPU, busy_frac A B; measured_client FILE CMD...; parse_ab FILE; parse_wrk FILE
#   ab_setup, ab_docroot, ab_cpu OUT BIN [ARGS], ab_strace OUT BIN [ARGS]   the A/B scripts of issue 10
#
# Only processes this script started are ever signalled: every server is started through
# start_bg, which records its PID, and cleanup stops exactly those.

LIB_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LIB_PIDS=()        # processes started and not yet reaped
server_pid=        # the "current" server of scripts that run one at a time
port=

# cd to the repository root, set $OUT (raw output dir), $commit (short hash, "+uncommitted"
# when src/ or Cargo.toml differ from HEAD, because then the hash does not name the code that
# ran), $machine, and a private $tmp that the EXIT trap removes after stopping our servers.
lib_init() {
  cd "$LIB_ROOT" || exit 1
  OUT=$LIB_ROOT/ab_results/raw
  mkdir -p "$OUT"
  commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
  git diff --quiet HEAD -- src Cargo.toml 2>/dev/null || commit="$commit+uncommitted"
  machine="nproc=$(nproc) kernel=$(uname -r) cpu=\"$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')\""
  tmp=$(mktemp -d)
  chmod 755 "$tmp"   # nginx and h2o workers run as nobody when started by root
  trap lib_cleanup EXIT
  # Run the EXIT trap on ^C / kill too. Bash runs it once the foreground command (a bounded
  # client) has ended; ^C reaches that client at the same time, a kill of the script does not.
  trap 'exit 130' INT TERM
}

lib_cleanup() {
  local p
  for p in "${LIB_PIDS[@]}"; do stop_pid "$p" || true; done
  [ -n "${tmp:-}" ] && rm -rf "$tmp"
  return 0
}

# need TOOL... [-- HINT]: exit with the hint if a tool is missing.
need() {
  local tools=() hint=
  while [ $# -gt 0 ]; do
    if [ "$1" = -- ]; then hint=$2; break; fi
    tools+=("$1"); shift
  done
  local t
  for t in "${tools[@]}"; do
    command -v "$t" >/dev/null || { echo "$t not found${hint:+: $hint}" >&2; exit 1; }
  done
}

build_httpd() {
  cargo build --release --quiet
  BIN=$LIB_ROOT/target/release/httpd
}

# A TCP port on 127.0.0.1 that nothing listens on right now (the kernel's choice for port 0).
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# start_bg STDOUT STDERR CMD...: run CMD in the background, record its PID in $started and in
# the cleanup list. STDERR "-" sends it to STDOUT's file.
start_bg() {
  local so=$1 se=$2; shift 2
  if [ "$se" = - ]; then "$@" > "$so" 2>&1 & else "$@" > "$so" 2> "$se" & fi
  started=$!
  LIB_PIDS+=("$started")
}

# wait_pid PID: wait for a process start_bg started to end by itself; drop it from the cleanup
# list (a reaped PID may be reused, so cleanup must not signal it). Returns its exit status.
wait_pid() {
  local pid=$1 rc=0 i keep=()
  for i in "${LIB_PIDS[@]}"; do [ "$i" = "$pid" ] || keep+=("$i"); done
  LIB_PIDS=("${keep[@]}")
  wait "$pid" 2>/dev/null || rc=$?
  return "$rc"
}

# stop_pid PID: SIGTERM, wait up to 15 s, then SIGKILL; reap it and drop it from the cleanup
# list. Returns the process's exit status (restart.sh records it).
stop_pid() {
  local pid=$1 i
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
      echo "  (pid $pid still up 15 s after SIGTERM: SIGKILL)" >&2
      kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  wait_pid "$pid"
}

stop_server() {
  [ -n "$server_pid" ] || return 0
  stop_pid "$server_pid" || true
  server_pid=
}

# start_httpd ARGS...: start "$BIN" ARGS (give it -p; -p 0 lets the kernel pick), wait for its
# "listening on" line, set $server_pid/$started and $port. ${HTTPD_PREFIX[@]} goes in front of
# the command (compare.sh pins it with taskset). stdout/stderr go to $tmp/httpd-*.$server_pid.
start_httpd() {
  local so=$tmp/httpd-stdout.$$.$RANDOM
  : > "$so"
  start_bg "$so" "$so.err" ${HTTPD_PREFIX[@]+"${HTTPD_PREFIX[@]}"} "$BIN" "$@"
  server_pid=$started
  local _
  for _ in $(seq 100); do grep -q '^listening on' "$so" && break; kill -0 "$started" 2>/dev/null || break; sleep 0.1; done
  port=$(sed -n 's/^listening on http:\/\/127\.0\.0\.1:\([0-9]*\)$/\1/p' "$so")
  [ -n "$port" ] || { echo "httpd did not start:" >&2; cat "$so.err" >&2; exit 1; }
}

# wait_http PORT PATH: wait (up to 10 s) until GET PATH answers 200, while $started lives.
wait_http() {
  local _
  for _ in $(seq 100); do
    curl -sf -o /dev/null -m 2 "http://127.0.0.1:$1$2" && return 0
    kill -0 "$started" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}

# nginx_conf DIR PORT ROOT WORKERS CONNECTIONS [HTTP-DIRECTIVE...]: write DIR/nginx.conf, a
# complete config that keeps every file nginx writes (pid, error log, temp paths) inside DIR
# and listens on 127.0.0.1:PORT only. Run it with: nginx -p DIR -e DIR/error.log -c DIR/nginx.conf
nginx_conf() {
  local dir=$1 port=$2 root=$3 workers=$4 conns=$5; shift 5
  local user=""
  [ "$(id -u)" = 0 ] && user="user nobody nogroup;"   # the workers' default group "nobody" may not exist
  mkdir -p "$dir"
  {
    echo "$user"
    echo "daemon off;"
    echo "worker_processes $workers;"
    # Above nginx's usual 1024 descriptors, let each worker raise its own limit to match.
    [ "$conns" -gt 1024 ] && echo "worker_rlimit_nofile $conns;"
    echo "pid $dir/nginx.pid;"
    echo "error_log $dir/error.log warn;"
    echo "events { worker_connections $conns; }"
    echo "http {"
    echo "  types { text/html html; text/css css; text/plain txt; application/octet-stream bin; }"
    echo "  default_type application/octet-stream;"
    echo "  client_body_temp_path $dir/client_body; proxy_temp_path $dir/proxy; fastcgi_temp_path $dir/fastcgi;"
    echo "  uwsgi_temp_path $dir/uwsgi; scgi_temp_path $dir/scgi;"
    local d
    for d in "$@"; do echo "  $d"; done
    echo "  server { listen 127.0.0.1:$port; root $root; }"
    echo "}"
  } > "$dir/nginx.conf"
}

# start_nginx DIR PORT PROBE-PATH: start nginx on a config written by nginx_conf, wait until
# it serves PROBE-PATH, set $server_pid. ${NGINX_PREFIX[@]} goes in front (taskset).
start_nginx() {
  local dir=$1
  start_bg "$dir/stdout" "$dir/stderr" ${NGINX_PREFIX[@]+"${NGINX_PREFIX[@]}"} nginx -p "$dir" -e "$dir/error.log" -c "$dir/nginx.conf"
  server_pid=$started
  wait_http "$2" "$3" || { echo "nginx did not start:" >&2; cat "$dir/stderr" "$dir/error.log" >&2 2>/dev/null; exit 1; }
  port=$2
}

# cpu_ticks PID: utime+stime (clock ticks) of PID and all its descendants. For a process,
# /proc/PID/stat already sums its threads (live and exited), so this counts httpd's worker and
# poller threads; nginx's worker processes are its children, found through their ppid. The
# fields are read after the last ")" because a command name may contain spaces.
cpu_ticks() {
  { cat /proc/[0-9]*/stat 2>/dev/null || true; } | awk -v root="$1" '
    { pid = $1; rest = $0; sub(/^.*\) /, "", rest); split(rest, f, " ")
      parent[pid] = f[2]; ticks[pid] = f[12] + f[13] }
    END {
      mine[root] = 1
      do { grew = 0
           for (p in parent) if (!(p in mine) && (parent[p] in mine)) { mine[p] = 1; grew = 1 }
      } while (grew)
      for (p in mine) total += ticks[p]
      print total + 0
    }'
}

# peak_rss PID: the peak resident set (VmHWM, KiB) of PID plus that of each of its descendants
# (nginx's workers), summed: pages two processes share count twice, as in any sum of RSS.
peak_rss() {
  local p total=0 kib
  for p in $(tree_pids "$1"); do
    kib=$(awk '/^VmHWM:/ { print $2 }' "/proc/$p/status" 2>/dev/null || true)
    total=$((total + ${kib:-0}))
  done
  echo "$total"
}

# tree_pids PID: PID and its descendants, one a line (through the ppid field of /proc/*/stat).
tree_pids() {
  { cat /proc/[0-9]*/stat 2>/dev/null || true; } | awk -v root="$1" '
    { pid = $1; rest = $0; sub(/^.*\) /, "", rest); split(rest, f, " "); parent[pid] = f[2] }
    END {
      mine[root] = 1
      do { grew = 0
           for (p in parent) if (!(p in mine) && (parent[p] in mine)) { mine[p] = 1; grew = 1 }
      } while (grew)
      for (p in mine) print p
    }'
}

# --- httpd next to its peers, pinned (compare.sh and run.sh) ---------------------------------
# These read: $SERVER_CPU and $CLIENT_CPU (the cores server and client are pinned to), $LOG
# (on: every server logs to a file; off: none does, httpd `-l off`), $HTTPD_WORKERS, and
# HTTPD_EXTRA (an array of further httpd flags, may be unset).

# peer_docroot [BIG_MIB]: $tmp/docroot with a 1 KiB page 1k.html (and, given BIG_MIB, a file
# big.bin of that many MiB of random bytes, read once so it is in the page cache), readable by
# nobody (nginx and h2o workers). Sets $docroot, $small_len and $big_len.
peer_docroot() {
  docroot=$tmp/docroot
  mkdir -p "$docroot"
  { printf '<!doctype html><html><head><title>1k</title></head><body><p>'
    head -c 2000 /dev/zero | tr '\0' 'x'; } | head -c 1005 > "$docroot/1k.html"
  printf '</p></body></html>\n' >> "$docroot/1k.html"
  big_len=
  if [ -n "${1:-}" ]; then
    head -c $(($1 * 1048576)) /dev/urandom > "$docroot/big.bin"
    cat "$docroot/big.bin" > /dev/null
    big_len=$(stat -c %s "$docroot/big.bin")
  fi
  chmod -R a+rX "$docroot"
  small_len=$(stat -c %s "$docroot/1k.html")
}

server_version() {
  case $1 in
    httpd) echo "httpd $commit (target/release/httpd)" ;;
    nginx) nginx -v 2>&1 | head -1 ;;
    h2o) h2o --version 2>&1 | head -1 ;;
    lighttpd) lighttpd -v 2>&1 | head -1 ;;
  esac
}

# start_server NAME: a fresh server (httpd nginx h2o lighttpd) on $docroot, pinned to
# $SERVER_CPU, on a free loopback port, answering /1k.html; sets $server_pid, $port and
# $server_cmd (its command line and config, for the raw files' header). Peers run with their
# natural worker count on their one core: nginx 1 worker process (sendfile on,
# worker_connections 4096), h2o num-threads 1 (max-connections 4096), lighttpd one process
# (server.max-fds 16384).
start_server() {
  local name=$1 dir
  dir=$(mktemp -d "$tmp/$name.XXXX")
  chmod 777 "$dir"   # h2o and nginx workers may write their logs here as nobody
  local pin=(taskset -c "$SERVER_CPU")
  case $name in
    httpd)
      local log=off
      [ "$LOG" = on ] && log=$dir/access.log
      HTTPD_PREFIX=("${pin[@]}")
      start_httpd -r "$docroot" -w "$HTTPD_WORKERS" -a 127.0.0.1 -p 0 -l "$log" ${HTTPD_EXTRA[@]+"${HTTPD_EXTRA[@]}"}
      server_cmd="taskset -c $SERVER_CPU target/release/httpd -r DOCROOT -w $HTTPD_WORKERS -a 127.0.0.1 -p $port -l $([ "$LOG" = on ] && echo ACCESS_LOG || echo off)${HTTPD_EXTRA[*]+ ${HTTPD_EXTRA[*]}}"
      ;;
    nginx)
      port=$(free_port)
      local access="access_log off;"
      [ "$LOG" = on ] && access="access_log $dir/access.log;"
      nginx_conf "$dir" "$port" "$docroot" 1 4096 "sendfile on;" "$access"
      NGINX_PREFIX=("${pin[@]}")
      start_nginx "$dir" "$port" /1k.html
      server_cmd="taskset -c $SERVER_CPU nginx -c CONF: worker_processes 1; worker_connections 4096; sendfile on; $access"
      ;;
    h2o)
      port=$(free_port)
      {
        [ "$(id -u)" = 0 ] && echo "user: nobody"   # h2o refuses to run as root
        echo "num-threads: 1"
        echo "max-connections: 4096"
        echo "error-log: $dir/error.log"
        echo "pid-file: $dir/h2o.pid"
        [ "$LOG" = on ] && echo "access-log: $dir/access.log"
        echo "listen:"
        echo "  host: 127.0.0.1"
        echo "  port: $port"
        echo "hosts:"
        echo "  default:"
        echo "    paths:"
        echo "      /:"
        echo "        file.dir: $docroot"
      } > "$dir/h2o.conf"
      start_bg "$dir/stdout" "$dir/stderr" "${pin[@]}" h2o -c "$dir/h2o.conf"
      server_pid=$started
      server_cmd="taskset -c $SERVER_CPU h2o -c CONF: num-threads 1; max-connections 4096; access log $LOG"
      ;;
    lighttpd)
      port=$(free_port)
      {
        echo "server.document-root = \"$docroot\""
        echo "server.bind = \"127.0.0.1\""
        echo "server.port = $port"
        echo "server.errorlog = \"$dir/error.log\""
        echo "server.max-fds = 16384"
        echo 'mimetype.assign = (".html" => "text/html", ".bin" => "application/octet-stream")'
        if [ "$LOG" = on ]; then
          echo 'server.modules += ("mod_accesslog")'
          echo "accesslog.filename = \"$dir/access.log\""
        fi
      } > "$dir/lighttpd.conf"
      start_bg "$dir/stdout" "$dir/stderr" "${pin[@]}" lighttpd -D -f "$dir/lighttpd.conf"
      server_pid=$started
      server_cmd="taskset -c $SERVER_CPU lighttpd -D -f CONF: one process; server.max-fds 16384; access log $LOG"
      ;;
    *) echo "start_server: unknown server $name" >&2; exit 2 ;;
  esac
  wait_http "$port" /1k.html || { echo "$name did not start:" >&2; cat "$dir"/std* "$dir"/error.log >&2 2>/dev/null; exit 1; }
}

# Per-CPU busy and total jiffies from /proc/stat: "busy total" for cpuN.
core_jiffies() {
  awk -v c="cpu$1" '$1 == c { t = 0; for (i = 2; i <= NF; i++) t += $i; print t - $5 - $6, t }' /proc/stat
}
busy_frac() { # "busy0 total0" "busy1 total1" -> fraction busy
  awk -v a="$1" -v b="$2" 'BEGIN { split(a, x, " "); split(b, y, " ");
    d = y[2] - x[2]; printf "%.2f", (d > 0 ? (y[1] - x[1]) / d : 0) }'
}

# measured_client FILE LIMIT CMD...: run CMD pinned to $CLIENT_CPU (killed after LIMIT seconds),
# its output appended to FILE, while reading the server's CPU ticks and both cores' load; then
# append those to FILE. Sets $ticks (server utime+stime, its whole process tree), $cb and $sb
# (share of the client's and the server's core that was busy) and $share (the server's own
# share of its core: the rest of $sb was someone else's, i.e. noise), and $rss (peak_rss of
# the server, KiB, read after the client ended and before the server is stopped).
measured_client() {
  local file=$1 limit=$2; shift 2
  local c0 c1 s0 s1 t0 t1
  c0=$(core_jiffies "$CLIENT_CPU"); s0=$(core_jiffies "$SERVER_CPU"); t0=$(cpu_ticks "$server_pid")
  timeout "$limit" taskset -c "$CLIENT_CPU" "$@" >> "$file" 2>&1 || echo "# client exited with status $?" >> "$file"
  t1=$(cpu_ticks "$server_pid"); c1=$(core_jiffies "$CLIENT_CPU"); s1=$(core_jiffies "$SERVER_CPU")
  rss=$(peak_rss "$server_pid")
  kill -0 "$server_pid" 2>/dev/null || echo "# SERVER DIED during the run" >> "$file"
  ticks=$((t1 - t0))
  cb=$(busy_frac "$c0" "$c1"); sb=$(busy_frac "$s0" "$s1")
  share=$(awk -v t="$ticks" -v a="$s0" -v b="$s1" 'BEGIN { split(a, x, " "); split(b, y, " ");
    d = y[2] - x[2]; printf "%.2f", (d > 0 ? t / d : 0) }')
  {
    echo
    echo "# server CPU ticks (utime+stime, USER_HZ=$(getconf CLK_TCK), server and its descendants) during the run: $ticks"
    echo "# core busy during the run: client core $CLIENT_CPU $cb, server core $SERVER_CPU $sb (server's own share $share)"
    echo "# server peak RSS (VmHWM summed over its processes) after the run: $rss KiB"
  } >> "$file"
}

# parse_ab FILE / parse_wrk FILE: from a client's raw output set $requests, $rps (req/s),
# $failed, $non2xx and $ka (ab's keep-alive requests, "-" without -k and for wrk); a missing
# count is 0, a missing rate "".
parse_ab() {
  requests=$(sed -n 's/^Complete requests: *\([0-9]*\).*/\1/p' "$1")
  rps=$(sed -n 's/^Requests per second: *\([0-9.]*\).*/\1/p' "$1")
  failed=$(sed -n 's/^Failed requests: *\([0-9]*\).*/\1/p' "$1")
  non2xx=$(sed -n 's/^Non-2xx responses: *\([0-9]*\).*/\1/p' "$1")
  ka=$(sed -n 's/^Keep-Alive requests: *\([0-9]*\).*/\1/p' "$1")
  requests=${requests:-0} failed=${failed:-0} non2xx=${non2xx:-0} ka=${ka:--}
}
parse_wrk() {
  requests=$(sed -n 's/^ *\([0-9]*\) requests in.*/\1/p' "$1")
  rps=$(sed -n 's/^Requests\/sec: *\([0-9.]*\).*/\1/p' "$1")
  failed=$(sed -n 's/.*Socket errors: connect \([0-9]*\), read \([0-9]*\), write \([0-9]*\), timeout \([0-9]*\).*/\1 \2 \3 \4/p' "$1" |
           awk '{ print $1 + $2 + $3 + $4 }')
  non2xx=$(sed -n 's/.*Non-2xx or 3xx responses: *\([0-9]*\).*/\1/p' "$1")
  requests=${requests:-0} failed=${failed:-0} non2xx=${non2xx:-0} ka=-
}

# The A/B measurements of issue 10 (borrow.sh, filecache.sh, logbuf.sh) share these. Each sets
# $root (a docroot with a 1 KiB index.html), $N, $AB (the ab command, pinned or not) and
# HTTPD_PREFIX before calling them.
#
# ab_docroot: $tmp/docroot with a 1 KiB index.html; sets $root.
ab_docroot() {
  root=$tmp/docroot
  mkdir -p "$root"
  head -c 1024 /dev/zero | tr '\0' 'a' > "$root/index.html"
}

# ab_setup: the common start of the A/B scripts of issue 10 and 11 (logbuf, borrow, filecache,
# status): builds this tree as $NEW unless NEW= names a binary, defaults ROUNDS=3 and
# N=200000, makes the docroot, and pins the server to CPU 1 and ab to CPU 0.
ab_setup() {
  if [ -z "${NEW:-}" ]; then build_httpd; NEW=$BIN; fi
  ROUNDS=${ROUNDS:-3}
  N=${N:-200000}
  ab_docroot
  HTTPD_PREFIX=(taskset -c 1)
  AB=(taskset -c 0 ab)
}

# ab_cpu OUT BIN [HTTPD ARGS...]: starts BIN -r $root -w 8 on a free loopback port with the
# given arguments, warms it up (ab -k -c 50 -n 2000), then measures `ab -k -c 50 -n $N` of
# /index.html (output to OUT) and stops the server. If the array AB_SIDE is set, the command
# `${AB_SIDE[@]} PORT` runs in the background during the measured run (status.sh's scraper). Sets, for that run: $rps, $ticks
# (utime+stime), $us (CPU µs per request), $uus (user-mode µs per request) and $writes
# (write-family system calls, /proc/PID/io syscw; a 1 KiB reply leaves by send(2), which it
# does not count). Appends what the server was and its counters to OUT.
ab_cpu() {
  local out=$1 bin=$2; shift 2
  BIN=$bin start_httpd -r "$root" -w 8 -a 127.0.0.1 -p 0 "$@"
  "${AB[@]}" -q -k -c 50 -n 2000 "http://127.0.0.1:$port/index.html" > /dev/null
  local t0 t1 u0 u1 w0 w1 hz
  hz=$(getconf CLK_TCK)
  t0=$(cpu_ticks "$server_pid"); u0=$(awk '{ sub(/^.*\) /, ""); print $12 }' "/proc/$server_pid/stat")
  w0=$(awk '/^syscw/ { print $2 }' "/proc/$server_pid/io")
  local side=
  if [ -n "${AB_SIDE+x}" ]; then start_bg "$out.side" - "${AB_SIDE[@]}" "$port"; side=$started; fi
  "${AB[@]}" -k -c 50 -n "$N" "http://127.0.0.1:$port/index.html" > "$out" 2>&1
  if [ -n "$side" ]; then stop_pid "$side" || true; fi
  t1=$(cpu_ticks "$server_pid"); u1=$(awk '{ sub(/^.*\) /, ""); print $12 }' "/proc/$server_pid/stat")
  w1=$(awk '/^syscw/ { print $2 }' "/proc/$server_pid/io")
  stop_server
  rps=$(sed -n 's/^Requests per second: *\([0-9.]*\).*/\1/p' "$out")
  ticks=$((t1 - t0)); writes=$((w1 - w0))
  us=$(awk -v t="$ticks" -v n="$N" -v hz="$hz" 'BEGIN { printf "%.2f", t / hz * 1e6 / n }')
  uus=$(awk -v t="$((u1 - u0))" -v n="$N" -v hz="$hz" 'BEGIN { printf "%.2f", t / hz * 1e6 / n }')
  { echo; echo "server: ${HTTPD_PREFIX[*]} $bin -w 8 $*"
    echo "cpu ticks (utime+stime) during the run: $ticks; user ticks: $((u1 - u0)); write syscalls (syscw): $writes"; } >> "$out"
}

# ab_strace OUT BIN [HTTPD ARGS...]: `strace -c -f` of BIN (as ab_cpu starts it) under
# `ab -k -c 50 -n 20000`: system calls per request, into OUT.
ab_strace() {
  local out=$1 bin=$2; shift 2
  BIN=$bin start_httpd -r "$root" -w 8 -a 127.0.0.1 -p 0 "$@"
  start_bg "$tmp/strace.out" "$out" strace -c -f -p "$server_pid"
  local tracer=$started
  sleep 1   # strace attaches to every thread before the load starts
  "${AB[@]}" -q -k -c 50 -n 20000 "http://127.0.0.1:$port/index.html" > "$tmp/ab-strace.txt"
  stop_pid "$tracer" || true
  stop_server
  echo "(ab -k -c 50 -n 20000 + strace attached: 20000 requests)" >> "$out"
}
