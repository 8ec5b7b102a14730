#!/bin/sh
# Verify of the ~350 MB generated board, side by side with the C sqlite3 CLI (hyperfine, one run,
# same warm page cache): `kanban-doctor verify` against `PRAGMA quick_check` (target <= 1.2x) and
# `kanban-doctor verify --full` against `PRAGMA integrity_check` (target <= 1.0x). verify does more
# than the pragma (discovery, header, /proc hazard scan), so its figure includes all of that.
# Also runs the Go benchmark of the three ways to run the full check (serial, per-table, split).
#
#   bench/verify.sh
#   RUNS=10 KD_BENCH_DIR=/tmp/kdbench KD_BENCH_WAL=1 bench/verify.sh
set -eu
cd "$(dirname "$0")/.."
work=${KD_BENCH_DIR:-$(mktemp -d)}
mkdir -p "$work"
board=$work/kanban.db
if [ ! -f "$board" ]; then
	go run ./bench/genboard -mb 350 ${KD_BENCH_WAL:+-wal} "$board"
fi
go build -o "$work/kanban-doctor" ./cmd/kanban-doctor
cat "$board" >/dev/null
echo "cores: $(nproc), load: $(cut -d' ' -f1-3 /proc/loadavg)"
hyperfine -N --warmup 1 --runs "${RUNS:-10}" --export-markdown "$work/verify.md" \
	-n 'sqlite3 PRAGMA quick_check' "sqlite3 $board 'PRAGMA quick_check'" \
	-n 'kanban-doctor verify' "$work/kanban-doctor verify $board" \
	-n 'sqlite3 PRAGMA integrity_check' "sqlite3 $board 'PRAGMA integrity_check'" \
	-n 'kanban-doctor verify --full' "$work/kanban-doctor verify --full $board"
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "peak RSS:"
/usr/bin/time -f '  sqlite3 integrity_check: %M KB' sqlite3 "$board" 'PRAGMA integrity_check' >/dev/null
/usr/bin/time -f '  kanban-doctor verify --full: %M KB' "$work/kanban-doctor" verify --full "$board" >/dev/null
KD_BENCH_DB=$board go test ./probe/ -run '^$' -bench FullCheck -benchtime 3x
echo "results: $work/verify.md"
