#!/bin/sh
# Backup of the ~350 MB generated board, side by side (hyperfine): kanban-doctor backup (backup API
# copy, through memory for boards up to 768 MiB, + quick_check of the copy + sha256 + fsync +
# rename) against the C CLI's sqlite3 ".backup", and against the CLI pipeline that gives the same
# guarantees (.backup, quick_check, sha256sum).
#
#   bench/backup.sh            # board in a temp dir, rollback mode
#   KD_BENCH_WAL=1 RUNS=5 KD_BENCH_DIR=/tmp/kdbench bench/backup.sh
set -eu
cd "$(dirname "$0")/.."
work=${KD_BENCH_DIR:-$(mktemp -d)}
board=$work/kanban.db
mkdir -p "$work/kd"
if [ ! -f "$board" ]; then
	go run ./bench/genboard -mb 350 ${KD_BENCH_WAL:+-wal} "$board"
fi
go build -o "$work/kanban-doctor" ./cmd/kanban-doctor
cat "$board" >/dev/null # both start from a warm page cache
clean="rm -f $work/cli.db $work/cli.db-wal $work/cli.db-shm $work/cli.db-journal $work/kd/*"
hyperfine --warmup 1 --runs "${RUNS:-10}" --export-markdown "$work/backup.md" --prepare "$clean" \
	-n 'sqlite3 .backup' "sqlite3 $board '.backup $work/cli.db'" \
	-n 'kanban-doctor backup' "$work/kanban-doctor backup --out $work/kd $board" \
	-n 'sqlite3 .backup + quick_check + sha256sum' \
	"sqlite3 $board '.backup $work/cli.db' && sqlite3 $work/cli.db 'PRAGMA quick_check' && sha256sum $work/cli.db"
eval "$clean"
echo "peak RSS (the in-memory copy, plus the board's pages mapped by the source connection):"
/usr/bin/time -f '  sqlite3 .backup: %M KB' sqlite3 "$board" ".backup $work/cli.db"
/usr/bin/time -f '  kanban-doctor backup: %M KB' "$work/kanban-doctor" backup --out "$work/kd" "$board" >/dev/null
eval "$clean"
echo "results: $work/backup.md"
