#!/bin/sh
# render_report.sh renders a kanban-doctor HTML report to a PNG in headless Chromium, for people to
# look at; the README shows the result (docs/report.png).
#
#   bench/render_report.sh                 # demo: build a hermes root after a storm, report it, render
#   bench/render_report.sh REPORT.html [OUT.png]   # render an existing report
#
# The demo root has a default board (a real generated WAL board) with four bursts of identical
# timestamped backups, lone backups of other contents and content-addressed copies, and an "ops"
# board copied from the corrupt fixture testdata/corrupt/index-desync. Debian's chromium is
# installed with apt-get when missing.
set -eu
cd "$(dirname "$0")/.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

if [ $# -ge 1 ]; then
	in=$1
	out=${2:-docs/report.png}
else
	out=docs/report.png
	root=$work/hermes
	mkdir -p "$root/kanban/boards/ops"
	go run ./bench/genboard -tasks 400 -events 4 -wal "$root/kanban.db"
	go run ./bench/genboard -tasks 400 -events 4 -seed 2 "$work/other-2.db"
	go run ./bench/genboard -tasks 400 -events 4 -seed 3 "$work/other-3.db"
	cp testdata/corrupt/index-desync/kanban.db "$root/kanban/boards/ops/kanban.db"
	# backup SECONDS-FROM-START SEQ SOURCE: a timestamped backup as the guard wrote it (local time).
	start=$(date -d '2026-05-10 03:00:00' +%s)
	backup() {
		t=$((start + $1))
		name=$(date -d "@$t" +kanban.db.corrupt.%Y%m%d_%H%M%S)
		[ "$2" -gt 0 ] && name=$name.$2
		cp "$3" "$root/$name.bak"
		touch -d "@$t" "$root/$name.bak"
	}
	burst() { # burst OFFSET COUNT: seven gateways, one backup each per second
		i=0
		while [ $i -lt "$2" ]; do
			backup $(($1 + i / 7)) $((i % 7)) "$root/kanban.db"
			i=$((i + 1))
		done
	}
	burst 0 21
	backup 2400 0 "$work/other-2.db"
	burst 5400 35
	burst 9000 9
	backup 12000 0 "$work/other-3.db"
	burst 14400 14
	# Content-addressed copies (the second naming generation), made later by a newer guard.
	for f in "$root/kanban.db" "$work/other-2.db"; do
		h=$(sha256sum "$f" | cut -c1-16)
		cp "$f" "$root/kanban.db.corrupt.$h.bak"
		touch -d "@$((start + 16000))" "$root/kanban.db.corrupt.$h.bak"
	done
	in=docs/report-example.html
	mkdir -p docs
	go build -o "$work/kanban-doctor" ./cmd/kanban-doctor
	status=0
	"$work/kanban-doctor" report --full --check-contents --html "$in" "$root" || status=$?
	echo "kanban-doctor report exited $status (2: the ops board is corrupt)" >&2
fi

if ! command -v chromium >/dev/null 2>&1; then
	apt-get install -y --no-install-recommends chromium >/dev/null
fi
profile=$(mktemp -d)
abs_in=$(cd "$(dirname "$in")" && pwd)/$(basename "$in")
mkdir -p "$(dirname "$out")"
abs_out=$(cd "$(dirname "$out")" && pwd)/$(basename "$out")
chromium --headless --no-sandbox --disable-gpu --disable-background-networking --no-first-run \
	--hide-scrollbars --user-data-dir="$profile" --screenshot="$abs_out" --window-size=1200,1600 \
	"file://$abs_in" 2>/dev/null || { rm -rf "$profile"; exit 1; }
rm -rf "$profile"
echo "$abs_out"
