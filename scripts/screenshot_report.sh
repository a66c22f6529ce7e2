#!/usr/bin/env bash
# Renders an analyze_squad HTML report (or any local HTML page) to PNG with headless Chromium.
#   scripts/screenshot_report.sh <report.html> <out.png> [width,height]
# Chromium runs offline with a throw-away profile: no network, sync, updates or first-run pages.
set -euo pipefail

if [[ $# -lt 2 ]]; then
  echo "usage: $0 <report.html> <out.png> [width,height]" >&2
  exit 2
fi
page="$1"
output="$2"
size="${3:-1400,2000}"
if [[ ! -f "$page" ]]; then
  echo "error: report not found: $page" >&2
  exit 2
fi
browser="$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)"
if [[ -z "$browser" ]]; then
  echo "error: no chromium on PATH (Debian: apt-get install chromium)" >&2
  exit 2
fi

profile="$(mktemp -d)"
trap 'rm -rf "$profile"' EXIT
output_abs="$(cd "$(dirname "$output")" && pwd)/$(basename "$output")"
"$browser" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
  --disable-background-networking --disable-component-update --disable-sync \
  --hide-scrollbars --user-data-dir="$profile" --screenshot="$output_abs" --window-size="$size" \
  "file://$(cd "$(dirname "$page")" && pwd)/$(basename "$page")" >/dev/null 2>&1
if [[ ! -s "$output_abs" ]]; then
  echo "error: chromium wrote no screenshot to $output_abs" >&2
  exit 1
fi
echo "$output_abs"
