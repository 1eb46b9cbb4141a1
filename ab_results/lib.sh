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
#   free_port, wait_http PORT PATH, cpu_ticks PID
#   ab_docroot, ab_cpu OUT BIN [ARGS], ab_strace OUT BIN [ARGS]   the A/B scripts of issue 10
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
