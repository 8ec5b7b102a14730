#!/usr/bin/env bash
# Acceptance 4 of issue 18: what one periodic verify costs. On a ~350 MB generated WAL board,
# runs watch with --verify-every 10s for DURATION seconds (default 45) and reports the verify
# durations from /metrics (kanban_doctor_verify_duration_seconds) and the CPU used by the watcher
# and its verify children together (utime+stime of the watcher plus its reaped children, from
# /proc/PID/stat); then one verify child on its own under /usr/bin/time (wall, CPU, peak RSS,
# which counts the board's pages mapped from the page cache) and its peak anonymous memory.
#
#   bench/watch_verify.sh
#   KD_BENCH_DIR=/tmp/kdbench DURATION=60 bench/watch_verify.sh
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-45}
work=${KD_BENCH_DIR:-$(mktemp -d /tmp/kd-watch-verify.XXXXXX)}
mkdir -p "$work/root"
board=$work/root/kanban.db
[ -f "$board" ] || go run ./bench/genboard -mb 350 -wal "$board"
go build -o "$work/kanban-doctor" ./cmd/kanban-doctor
cat "$board" >/dev/null
port=$((20000 + RANDOM % 20000))
"$work/kanban-doctor" watch --listen 127.0.0.1:$port --verify-every 10s "$work/root" >"$work/watch.out" &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
tck=$(getconf CLK_TCK)
sleep "$DURATION"
# fields 14-17: utime stime cutime cstime (children reaped by the watcher: its verify children)
read -r u s cu cs < <(awk '{print $14, $15, $16, $17}' "/proc/$pid/stat")
curl -s "http://127.0.0.1:$port/metrics" | awk -v d="$DURATION" -v u="$u" -v s="$s" -v cu="$cu" -v cs="$cs" -v hz="$tck" '
  /^kanban_doctor_verify_duration_seconds_sum/ {sum=$2}
  /^kanban_doctor_verify_duration_seconds_count/ {n=$2}
  END {printf "board %s: %d verifies in %ds, %.0f ms each (wall); watcher %.2f s CPU, its verify children %.2f s CPU: %.2f s CPU per verify\n",
       "350 MB", n, d, 1000*sum/n, (u+s)/hz, (cu+cs)/hz, (cu+cs)/hz/n}'
kill $pid; wait $pid 2>/dev/null || true
/usr/bin/time -f "one verify child: %e s wall, %U s user + %S s sys, peak RSS %M KB (includes the mapped board)" \
  "$work/kanban-doctor" verify --json "$board" >/dev/null
python3 - "$work/kanban-doctor" "$board" <<'PY'
import re, subprocess, sys, time
p = subprocess.Popen([sys.argv[1], "verify", "--json", sys.argv[2]], stdout=subprocess.DEVNULL)
peak = 0
while p.poll() is None:
    try:
        m = re.search(r"RssAnon:\s+(\d+)", open(f"/proc/{p.pid}/status").read())
        peak = max(peak, int(m.group(1)))
    except Exception:
        pass
    time.sleep(0.002)
print(f"one verify child: peak anonymous memory {peak/1024:.1f} MB")
PY
