#!/bin/sh
# render_report.sh renders a kanban-doctor HTML report to a PNG in headless Chromium, for people to
# look at (the README shows the result).
#
#   bench/render_report.sh [REPORT.html] [OUT.png]
#
# With no REPORT it renders the golden report (reports/testdata/golden/report.html, the pinned
# fixture with a storm of three bursts). Installs Debian's chromium with apt-get when missing.
set -eu
cd "$(dirname "$0")/.."
in=${1:-reports/testdata/golden/report.html}
out=${2:-docs/report.png}
if ! command -v chromium >/dev/null 2>&1; then
	apt-get install -y --no-install-recommends chromium >/dev/null
fi
profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT
abs_in=$(cd "$(dirname "$in")" && pwd)/$(basename "$in")
abs_out=$(mkdir -p "$(dirname "$out")" && cd "$(dirname "$out")" && pwd)/$(basename "$out")
chromium --headless --no-sandbox --disable-gpu --disable-background-networking --no-first-run \
	--hide-scrollbars --user-data-dir="$profile" --screenshot="$abs_out" --window-size=1200,1600 \
	"file://$abs_in" 2>/dev/null
echo "$abs_out"
