#!/usr/bin/env bash
# Regenerates docs/listing-1200.png and docs/listing-phone.png: a listing served by the built
# binary from a temporary docroot (a very long name, a big sparse file, directories, dated
# entries), rendered by headless Chromium at 1200x800 and at 390x844 (a phone).
# Needs: chromium (apt-get install chromium). Optional: pngquant and optipng, to shrink the
# PNGs (a 64-colour palette is plenty for text on white).
# Usage: docs/screenshot.sh [QUERY]   e.g. docs/screenshot.sh 'sort=size&order=desc'
# HTTPD_BIN=target/debug/httpd uses that binary instead of building the release one.
set -euo pipefail
cd "$(dirname "$0")/.."
query=${1:-}
command -v chromium >/dev/null || { echo "chromium not found (apt-get install chromium)" >&2; exit 1; }
bin=${HTTPD_BIN:-}
if [ -z "$bin" ]; then
    nice -n 19 cargo build --release --quiet
    bin=target/release/httpd
fi
work=$(mktemp -d)
server=""
cleanup() {
    if [ -n "$server" ]; then kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

root=$work/root
mkdir -p "$root/release-notes" "$root/assets"
long=an-extremely-long-file-name-that-goes-on-and-on-without-any-spaces-to-break-at-because-someone-exported-it-from-a-build-system-$(printf 'x%.0s' {1..60})-final-v2.tar.gz
printf 'x' >"$root/$long"
truncate -s 3400M "$root/ubuntu-24.04-desktop-amd64.iso"
head -c 1260 /dev/zero >"$root/README.md"
head -c 734003 /dev/zero >"$root/photo with spaces & <brackets>.jpg"
printf '{}' >"$root/data.json"
touch -d '2024-02-29 13:37 UTC' "$root/README.md"
touch -d '2019-06-01 08:05 UTC' "$root/ubuntu-24.04-desktop-amd64.iso"
touch -d '2025-12-24 18:00 UTC' "$root/$long"
touch -d '2021-03-14 15:09 UTC' "$root/photo with spaces & <brackets>.jpg"
touch -d '2023-07-04 00:00 UTC' "$root/data.json" "$root/assets"
touch -d '2022-01-01 12:00 UTC' "$root/release-notes"

# Port 0: the server picks a free loopback port and prints it.
"$bin" -r "$root" -a 127.0.0.1 -p 0 --list -l off >"$work/out" 2>"$work/err" &
server=$!
for _ in $(seq 100); do
    grep -q 'listening on' "$work/out" && break
    kill -0 "$server" || { cat "$work/err" >&2; exit 1; }
    sleep 0.1
done
url="$(sed -n 's/^listening on //p' "$work/out" | head -1)/${query:+?$query}"

shot() { # NAME WIDTH HEIGHT
    chromium --headless --no-sandbox --disable-gpu --hide-scrollbars \
        --user-data-dir="$work/profile" --screenshot="docs/$1" \
        --window-size="$2,$3" "$url" 2>/dev/null
    if command -v pngquant >/dev/null; then pngquant --force --skip-if-larger --strip 64 --ext .png "docs/$1" || true; fi
    if command -v optipng >/dev/null; then optipng -quiet -o5 -strip all "docs/$1"; fi
}
shot listing-1200.png 1200 800
shot listing-phone.png 390 844
echo "docs/listing-1200.png and docs/listing-phone.png from $url"
