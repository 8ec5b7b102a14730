#!/bin/sh
# Verify of the ~350 MB generated board, side by side with the C sqlite3 CLI (hyperfine, one run,
# same warm page cache): `kanban-doctor verify` against `PRAGMA quick_check` (target <= 1.2x) and
# `kanban-doctor verify --full` against `PRAGMA integrity_check` (target <= 1.0x). verify does more
# than the pragma (discovery, header, /proc hazard scan), so its figure includes all of that.
# Then the same four commands interleaved round by round (medians and paired ratios: fairer on a
# shared machine). KD_GO_BENCH=1 adds the Go benchmark of the ways to run the full check.
#
#   bench/verify.sh
#   RUNS=10 KD_BENCH_DIR=/tmp/kdbench KD_BENCH_WAL=1 KD_GO_BENCH=1 bench/verify.sh
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
# On a shared machine hyperfine's back-to-back blocks see different loads: also run the four
# commands interleaved, round after round, and report the median of each and of the paired ratios.
rounds=${RUNS:-10}
t() { s=$(date +%s%N); "$@" >/dev/null 2>&1 || true; echo $((($(date +%s%N) - s) / 1000000)); }
: >"$work/paired.txt"
i=0
while [ $i -lt "$rounds" ]; do
	cq=$(t sqlite3 "$board" 'PRAGMA quick_check')
	kq=$(t "$work/kanban-doctor" verify "$board")
	ci=$(t sqlite3 "$board" 'PRAGMA integrity_check')
	kf=$(t "$work/kanban-doctor" verify --full "$board")
	echo "$cq $kq $ci $kf" >>"$work/paired.txt"
	i=$((i + 1))
done
awk '
function median(a, n,   i, j, t) { for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
	return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2 }
{ n++; cq[n] = $1; kq[n] = $2; ci[n] = $3; kf[n] = $4; rq[n] = $2 / $1; rf[n] = $4 / $3 }
END {
	printf "interleaved, %d rounds, medians: sqlite3 quick_check %d ms, verify %d ms (ratio %.2fx, target <= 1.2x)\n", n, median(cq, n), median(kq, n), median(rq, n)
	printf "                             sqlite3 integrity_check %d ms, verify --full %d ms (ratio %.2fx, target <= 1.0x)\n", median(ci, n), median(kf, n), median(rf, n)
}' "$work/paired.txt"
echo "load after interleaved rounds: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "peak RSS:"
/usr/bin/time -f '  sqlite3 integrity_check: %M KB' sqlite3 "$board" 'PRAGMA integrity_check' >/dev/null
/usr/bin/time -f '  kanban-doctor verify --full: %M KB' "$work/kanban-doctor" verify --full "$board" >/dev/null
if [ -n "${KD_GO_BENCH:-}" ]; then
	KD_BENCH_DB=$board go test ./probe/ -run '^$' -bench FullCheck -benchtime 3x
fi
echo "results: $work/verify.md"
