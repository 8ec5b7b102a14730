#!/bin/sh
# Repair against the C CLI's ".dump" (final ROLLBACK turned into COMMIT, loaded into a fresh DB with
# sqlite3), side by side:
#  1. rows kept, per fixture of testdata/corrupt (the README table);
#  2. time and rows kept on the ~350 MB generated board with one task_events leaf page zeroed
#     (hyperfine; RUNS=3 by default, the machine may be shared).
#
#   bench/repair_vs_dump.sh              # both parts
#   KD_BENCH_SKIP_BIG=1 bench/repair_vs_dump.sh
#   KD_BENCH_DIR=/tmp/kdbench RUNS=5 bench/repair_vs_dump.sh
set -eu
cd "$(dirname "$0")/.."
work=${KD_BENCH_DIR:-$(mktemp -d)}
mkdir -p "$work"
go build -o "$work/kanban-doctor" ./cmd/kanban-doctor
kd=$work/kanban-doctor
tables="tasks task_links task_comments task_events task_runs task_attachments kanban_notify_subs"

rows() { # rows in the kanban tables of $1 (0 for a table that is missing)
	n=0
	for t in $tables; do
		c=$(sqlite3 "$1" "SELECT count(*) FROM $t" 2>/dev/null || echo 0)
		n=$((n + c))
	done
	echo $n
}

dump_into() { # dump $1 with the CLI, ROLLBACK -> COMMIT, load into $2
	rm -f "$2"
	sqlite3 "$1" .dump 2>/dev/null | sed '$ s/^ROLLBACK; -- due to errors$/COMMIT;/' | sqlite3 "$2" 2>/dev/null || true
}

echo "| fixture | class | repair action | rows kept by repair | rows kept by .dump | difference |"
echo "|---|---|---|---|---|---|"
for dir in testdata/corrupt/*/; do
	name=$(basename "$dir")
	class=$(sed -n 's/^class: //p' "$dir/expect")
	[ "$class" = "not-a-database" ] && continue
	f=$work/fx/$name
	rm -rf "$f" && mkdir -p "$f"
	cp "$dir"/kanban.db* "$f"/
	"$kd" repair --json --out "$f/out.db" "$f/kanban.db" >"$f/repair.json" 2>/dev/null || true
	action=$(sed -n 's/^    "action": "\(.*\)",$/\1/p' "$f/repair.json" | head -1)
	if [ -f "$f/out.db" ]; then ours=$(rows "$f/out.db"); else ours=$(rows "$f/kanban.db"); fi
	rm -rf "$f/d" && mkdir -p "$f/d" && cp "$dir"/kanban.db* "$f/d"/
	dump_into "$f/d/kanban.db" "$f/dump.db"
	theirs=$(rows "$f/dump.db")
	echo "| $name | ${class:-healthy} | $action | $ours | $theirs | $((ours - theirs)) |"
done

[ -n "${KD_BENCH_SKIP_BIG:-}" ] && exit 0
board=$work/big/kanban.db
if [ ! -f "$board.orig" ]; then
	mkdir -p "$work/big"
	go run ./bench/genboard -mb 350 "$board.orig"
fi
cp "$board.orig" "$board"
page=$(sqlite3 "$board" "SELECT pageno FROM dbstat WHERE name='task_events' AND pagetype='leaf' ORDER BY pageno LIMIT 1 OFFSET 5000")
dd if=/dev/zero of="$board" bs=4096 seek=$((page - 1)) count=1 conv=notrunc 2>/dev/null
echo
echo "big board: $(du -m "$board" | cut -f1) MB, task_events leaf page $page zeroed"
cat "$board" >/dev/null
hyperfine --runs "${RUNS:-3}" --export-markdown "$work/repair.md" \
	--prepare "rm -f $work/big/out.db $work/big/dump.db" \
	-n 'kanban-doctor repair' "$kd repair --out $work/big/out.db $board || test \$? -eq 1" \
	-n 'sqlite3 .dump | sqlite3' "sqlite3 $board .dump | sed '\$ s/^ROLLBACK; -- due to errors\$/COMMIT;/' | sqlite3 $work/big/dump.db"
rm -f "$work/big/out.db" "$work/big/dump.db"
/usr/bin/time -f 'kanban-doctor repair: %e s, peak RSS %M KB' "$kd" repair --out "$work/big/out.db" "$board" >"$work/big/report.txt" || true
dump_into "$board" "$work/big/dump.db"
echo "rows kept: repair $(rows "$work/big/out.db"), .dump $(rows "$work/big/dump.db"), original $(rows "$board.orig")"
grep -E 'task_events|total' "$work/big/report.txt"
echo "results: $work/repair.md"
