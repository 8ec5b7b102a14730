#!/usr/bin/env bash
# Acceptance 5 of issue 5 (and 4 of issue 18): an idle `kanban-doctor watch` costs under 1% of a core and under 50 MB
# resident. Runs the watcher (inotify mode with the metrics listener, and --poll 10s mode) on a
# real hermes-shaped root with three boards and 1,000 existing backups, next to `inotifywait -m`
# (what users reach for instead), idle for DURATION seconds (default 60), and prints CPU% of one
# core (utime+stime from /proc/PID/stat) and VmRSS / VmHWM from /proc/PID/status.
#
#   bench/watch_idle.sh            # DURATION=60
#   DURATION=10 bench/watch_idle.sh
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-60}
work=$(mktemp -d /tmp/kd-watch-idle.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

go build -o "$work/kanban-doctor" ./cmd/kanban-doctor
root=$work/hermes
mkdir -p "$root/kanban/boards/alpha" "$root/kanban/boards/beta"
for d in "$root" "$root/kanban/boards/alpha" "$root/kanban/boards/beta"; do
  go run ./bench/genboard -tasks 500 -wal "$d/kanban.db" 2>/dev/null
done
head -c 200000 /dev/urandom > "$work/blob"
for i in $(seq 1 1000); do cp "$work/blob" "$root/kanban.db.corrupt.20260501_120000.$i.bak"; done

tck=$(getconf CLK_TCK)
ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
mem() { awk '/^VmRSS/{r=$2} /^VmHWM/{h=$2} END{printf "%.1f MB RSS, %.1f MB peak", r/1024, h/1024}' "/proc/$1/status"; }

start() { # name cmd...
  local name=$1; shift
  "$@" >"$work/$name.out" 2>"$work/$name.err" &
  pids+=($!)
  eval "pid_$name=$!"
}
port=$((20000 + RANDOM % 20000))
# Defaults include --verify-every 15m: the start-up verify of the three boards runs during the
# settling sleep below, the next round is 15 minutes away, so the idle window is between verifies.
start watch "$work/kanban-doctor" watch --listen 127.0.0.1:$port --contain --on-storm verify "$root"
start watchpoll "$work/kanban-doctor" watch --poll 10s "$root"
start inotifywait inotifywait -q -m -e create,moved_to "$root" "$root/kanban/boards/alpha" "$root/kanban/boards/beta"
sleep 5 # initial scans and the start-up verifies done
declare -A t0
for n in watch watchpoll inotifywait; do p=pid_$n; t0[$n]=$(ticks "${!p}"); done
echo "idle for ${DURATION}s on $(nproc) cores (machine shared with other jobs)..."
sleep "$DURATION"
printf '%-48s %10s   %s\n' "process" "CPU/core" "memory"
for n in watch watchpoll inotifywait; do
  p=pid_$n
  t1=$(ticks "${!p}")
  cpu=$(awk -v a="${t0[$n]}" -v b="$t1" -v hz="$tck" -v d="$DURATION" 'BEGIN{printf "%.3f%%", (b-a)/hz/d*100}')
  case $n in
    watch) label="kanban-doctor watch (inotify, --listen --contain, --verify-every 15m)";;
    watchpoll) label="kanban-doctor watch --poll 10s";;
    *) label="inotifywait -m";;
  esac
  printf '%-48s %10s   %s\n' "$label" "$cpu" "$(mem "${!p}")"
done
seen=$(grep -c '"event":"rescan"' "$work/watch.out" || true)
echo "watch: $seen initial rescan events (3 boards), $(grep -c backup-created "$work/watch.out" || true) arrivals while idle"
# What the start-up verify round cost (three 500-task boards; see README for a 350 MB board).
curl -s "http://127.0.0.1:$port/metrics" | awk '/^kanban_doctor_verify_duration_seconds_(sum|count)/{split($1,a,"{"); s[a[1]]+=$2} END{printf "start-up verifies: %d, %.0f ms each on average\n", s["kanban_doctor_verify_duration_seconds_count"], 1000*s["kanban_doctor_verify_duration_seconds_sum"]/s["kanban_doctor_verify_duration_seconds_count"]}'
