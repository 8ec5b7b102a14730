#!/usr/bin/env bash
# bench/report.sh: kanban-doctor report side by side with what users reach for:
# sqlite3 quick_check on the board plus `sha256sum | sort | uniq` over the backups, on a generated
# storm beside a live board, warm page cache, one run.
#
#   bench/report.sh                        # ~7,900 backups of ~256 KB in 40 bursts + 20 distinct (~2.1 GB)
#   RUNS=5 KD_BENCH_DIR=/var/tmp/kd bench/report.sh
#
# Measures: (1) report --json against the pipeline (same distinct-content count asserted);
# (2) report --check-contents against a sqlite3 quick_check of one file per distinct content;
# (3) --html rendering time and page size; (4) peak RSS of each kanban-doctor run.
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${KD_BENCH_DIR:-/tmp/kd-bench-report}
RUNS=${RUNS:-3}
mkdir -p "$WORK"
go build -o "$WORK/kanban-doctor" ./cmd/kanban-doctor
go build -o "$WORK/genstorm" ./bench/genstorm
KD="$WORK/kanban-doctor"
STORM="$WORK/storm"
if [ ! -s "$WORK/storm.json" ]; then
	rm -rf "$STORM"
	"$WORK/genstorm" "$STORM" > "$WORK/storm.json"
	go run ./bench/genboard -mb 64 -wal "$STORM/kanban.db"
fi
echo "machine: $(nproc) cores, $(uname -r); load: $(cut -d' ' -f1-3 /proc/loadavg) (shared with other work)"
echo "sqlite3 $(sqlite3 --version | cut -d' ' -f1); storm: $(cat "$WORK/storm.json") + a $(du -h "$STORM/kanban.db" | cut -f1) live board"
cat "$STORM"/* > /dev/null # warm the page cache for both sides

echo
echo "== 1. report --json vs sqlite3 quick_check + sha256sum | sort | uniq"
"$KD" report --json "$STORM" > "$WORK/report.json" || true
python3 - "$WORK/report.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
b = r["boards"][0]
print(f"report: verdict {b['verdict']}, {b['backups']['units']} units, {b['backups']['distinct_contents']} distinct contents, {len(b['timeline']['bursts'])} bursts")
PY
distinct=$(cd "$STORM" && sha256sum kanban.db.corrupt.*.bak | cut -c1-64 | sort -u | wc -l)
echo "sha256sum | sort -u: $distinct distinct contents"
hyperfine --style basic --runs "$RUNS" --warmup 1 --export-json "$WORK/h1.json" \
	-n 'kanban-doctor report --json' "$KD report --json $STORM > /dev/null" \
	-n 'sqlite3 quick_check + sha256sum|sort|uniq' "sqlite3 $STORM/kanban.db 'pragma quick_check' > /dev/null && (cd $STORM && sha256sum kanban.db.corrupt.*.bak | cut -c1-64 | sort | uniq -c | wc -l) > /dev/null"

echo
echo "== 2. --check-contents vs sqlite3 quick_check of one file per content"
python3 - "$WORK/report.json" > "$WORK/reps.txt" <<'PY'
import json, sys
for c in json.load(open(sys.argv[1]))["boards"][0]["backups"]["contents"]:
    print(c["example"])
PY
hyperfine --style basic --runs "$RUNS" --warmup 1 --export-json "$WORK/h2.json" \
	-n 'kanban-doctor report --check-contents' "$KD report --json --check-contents $STORM > /dev/null" \
	-n 'sqlite3 quick_check per content' "sqlite3 $STORM/kanban.db 'pragma quick_check' > /dev/null; (cd $STORM && sha256sum kanban.db.corrupt.*.bak | cut -c1-64 | sort | uniq -c | wc -l) > /dev/null; while read -r f; do cp \"\$f\" $WORK/copy.db; sqlite3 $WORK/copy.db 'pragma quick_check' > /dev/null; rm -f $WORK/copy.db*; done < $WORK/reps.txt"

echo
echo "== 3. HTML report"
/usr/bin/time -f "report --html: %e s wall, peak RSS %M KiB" "$KD" report --html "$WORK/report.html" "$STORM" > /dev/null || true
echo "page: $(du -h "$WORK/report.html" | cut -f1) ($(grep -c 'class="burst-mark"' "$WORK/report.html") burst marks)"

echo
echo "== 4. peak RSS"
/usr/bin/time -f "report --json: peak RSS %M KiB" "$KD" report --json "$STORM" > /dev/null || true
/usr/bin/time -f "report --json --check-contents: peak RSS %M KiB" "$KD" report --json --check-contents "$STORM" > /dev/null || true
