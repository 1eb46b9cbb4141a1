#!/usr/bin/env bash
# The access log read by GoAccess (issue 11): httpd -w 8 logs 50 000 requests in Combined Log
# Format (the default `--log-format`) to a file — ab -c 50 on a 1 KiB file, a 404, a HEAD,
# a range and a query with odd bytes, plus a keep-alive run —, then
# `goaccess LOG --log-format=COMBINED` reads it, and this prints the lines written, the
# responses ab counted, and what GoAccess counted as valid and as failed (invalid) lines.
# With LOG_FORMAT=json the log is checked line by line with python3's json module instead.
#
#   ab_results/goaccess.sh          (N=50000; about 1 minute)
#
# Raw output: ab_results/raw/goaccess-FORMAT-summary.txt (and the GoAccess JSON report beside it).
# Needs: ab, curl, goaccess (apt-get install -y apache2-utils curl goaccess). Loopback only.
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"
lib_init
need ab curl goaccess python3 -- "apt-get install -y apache2-utils curl goaccess python3"
build_httpd
N=${N:-50000}
LOG_FORMAT=${LOG_FORMAT:-combined}
ab_docroot
log=$tmp/access.log
start_httpd -r "$root" -w 8 -a 127.0.0.1 -p 0 -l "$log" --log-format "$LOG_FORMAT"
base=http://127.0.0.1:$port
half=$((N / 2))
ab -q -c 50 -n "$half" "$base/index.html" > "$tmp/ab1.txt"
ab -q -k -c 50 -n $((N - half - 4)) "$base/index.html" > "$tmp/ab2.txt"
curl -s -o /dev/null "$base/missing.html"
curl -s -o /dev/null -I "$base/index.html"
curl -s -o /dev/null -r 0-9 "$base/index.html"
curl -s -o /dev/null -A 'odd "agent" \ with quotes' "$base/index.html?q=%22x%22&y=%FF"
stop_server
done1=$(sed -n 's/^Complete requests: *//p' "$tmp/ab1.txt")
done2=$(sed -n 's/^Complete requests: *//p' "$tmp/ab2.txt")
lines=$(wc -l < "$log")
summary=$OUT/goaccess-$LOG_FORMAT-summary.txt
{
  echo "# goaccess.sh: commit $commit; $machine"
  echo "# httpd -w 8 -l LOG --log-format $LOG_FORMAT; ab -c 50 -n $half and ab -k -c 50 -n $((N - half - 4)) on /index.html, then 4 curl requests"
  echo "responses sent (ab complete + 4): $((done1 + done2 + 4))"
  echo "log lines: $lines"
  if [ "$LOG_FORMAT" = json ]; then
    python3 - "$log" <<'EOF'
import json, sys
bad = 0
for line in open(sys.argv[1], 'rb'):
    try:
        json.loads(line)
    except ValueError:
        bad += 1
print(f"lines that are not one JSON object: {bad}")
EOF
  else
    report=$OUT/goaccess-report.json
    goaccess "$log" --log-format=COMBINED --no-global-config -o "$report" 2>&1 | tail -5 || true
    python3 - "$report" <<'EOF'
import json, sys
# GoAccess writes percent-decoded URLs as raw bytes, not always UTF-8 (the query above has
# %FF): decode leniently, only the counts are read.
general = json.loads(open(sys.argv[1], 'rb').read().decode('utf-8', 'replace'))["general"]
print(f"goaccess: total_requests={general['total_requests']} valid_requests={general['valid_requests']} failed_requests={general['failed_requests']}")
EOF
  fi
} | tee "$summary"
