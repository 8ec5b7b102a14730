#!/usr/bin/env bash
# bench/dedupe.sh: kanban-doctor dedupe-backups side by side with jdupes (what users reach for,
# jdupes -r -m for the dry run, jdupes -r -L for hardlinking) on a generated storm, on the same warm directory, in one run.
#
#   bench/dedupe.sh            # ~7,940 backups of ~265 KB in 40 bursts + 20 distinct (~2.1 GB)
#   RUNS=10 KD_BENCH_DIR=/var/tmp/kd bench/dedupe.sh
#   SECTIONS="1 2" bench/dedupe.sh     # only some of the sections below (default: 1 2 3 4)
#   KD_BENCH_DIR=/dev/shm/kd-bench-dedupe SECTIONS=3 bench/dedupe.sh   # the storm on a RAM disk
#
# Section 3 runs on KD_BENCH_DIR's filesystem, which is what users see (on a disk freeing the
# replaced files and the directory updates cost what they cost there; on ext4 mounted with discard
# each freed file waits for the device), and again on /dev/shm (tmpfs) when that is another
# filesystem with room: there only the tool's own work and the kernel's page freeing remain.
#
# Checks: (1) our dry run reports exactly the files jdupes -r reports as duplicates; (2) its wall
# time against jdupes -r (target <= 0.4x); (3) --apply --action hardlink against our dry run on
# fresh copies (target <= 2x), with jdupes -L and a plain rm of the same duplicates as the floor the
# filesystem sets; (4) 100,000 backups in one directory: peak RSS (target < 200 MB) and time
# against 10,000 (linear, no quadratic step).
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${KD_BENCH_DIR:-/tmp/kd-bench-dedupe}
RUNS=${RUNS:-5}
SECTIONS=" ${SECTIONS:-1 2 3 4} "
want() { [[ "$SECTIONS" == *" $1 "* ]]; }
warm() { find "$1" -maxdepth 1 -type f -exec cat {} + > /dev/null; } # both tools read the same cached files
mkdir -p "$WORK"
go build -o "$WORK/kanban-doctor" ./cmd/kanban-doctor
go build -o "$WORK/genstorm" ./bench/genstorm
KD="$WORK/kanban-doctor"
STORM="$WORK/storm"
if [ ! -s "$WORK/storm.json" ]; then
	rm -rf "$STORM"
	"$WORK/genstorm" "$STORM" > "$WORK/storm.json"
fi
echo "machine: $(nproc) cores, $(uname -r); load: $(cut -d' ' -f1-3 /proc/loadavg) (shared with other work)"
echo "filesystem of $WORK: $(findmnt -no FSTYPE,OPTIONS --target "$WORK" 2>/dev/null | head -1)"
echo "jdupes: $(jdupes -v 2>/dev/null | head -1)"
echo "storm: $(cat "$WORK/storm.json") in $STORM ($(du -sh "$STORM" | cut -f1))"
warm "$STORM"

if want 1 || want 3; then
echo
echo "== 1. same duplicates as jdupes -r"
jdupes -r -q "$STORM" | grep -v '^$' | xargs -n1 basename | sort > "$WORK/jdupes.files"
"$KD" dedupe-backups --json "$STORM" > "$WORK/kd.json"
python3 - "$WORK/kd.json" > "$WORK/kd.files" <<'PY'
import json, os, sys
r = json.load(open(sys.argv[1]))
out = []
for g in r["groups"]:
    for f in g["files"]:
        out.append(os.path.basename(f))
        if g.get("wal_hash"): out.append(os.path.basename(f) + "-wal")
        if g.get("shm_hash"): out.append(os.path.basename(f) + "-shm")
print("\n".join(sorted(out)))
PY
python3 - "$WORK/kd.json" "$WORK/kd.dups" <<'PY'
import json, os, sys
r = json.load(open(sys.argv[1]))
with open(sys.argv[2], "w") as o:  # the duplicates an apply acts on (not the kept ones), with companions
    for g in r["groups"]:
        for f in g["files"]:
            if f == g["keep"]: continue
            for s in [""] + (["-wal"] if g.get("wal_hash") else []) + (["-shm"] if g.get("shm_hash") else []):
                o.write(os.path.basename(f) + s + "\n")
print("kanban-doctor: %d groups, %d duplicate units, %d reclaimable bytes (%s)" % (
    len(r["groups"]), r["duplicates"], r["reclaimable_bytes"], r["reclaimable"]))
PY
echo "jdupes -r -m: $(jdupes -r -m -q "$STORM")"
if diff -q "$WORK/jdupes.files" "$WORK/kd.files" > /dev/null; then
	echo "SAME: both list the same $(wc -l < "$WORK/kd.files") files as members of duplicate sets"
else
	echo "DIFFERENT duplicate sets:"; diff "$WORK/jdupes.files" "$WORK/kd.files" | head; exit 1
fi
fi

ratio() { # ratio JSON: mean of command 2 / mean of command 1
	python3 -c 'import json,sys; r=json.load(open(sys.argv[1]))["results"]; print("%.2fx" % (r[1]["mean"]/r[0]["mean"]))' "$1"
}

if want 2; then
echo
echo "== 2. dry run vs jdupes -r, warm, side by side (target <= 0.4x)"
hyperfine -N --warmup 1 --runs "$RUNS" --export-json "$WORK/dry.json" \
	"jdupes -r -q $STORM" "$KD dedupe-backups $STORM"
echo "dedupe-backups / jdupes = $(ratio "$WORK/dry.json")"
fi

# apply_vs_dry DIR: section 3 on fresh warm copies of the storm in DIR.
apply_vs_dry() {
	local copy="$1/copy" json="$1/apply.json"
	echo "-- in $1: $(findmnt -no FSTYPE,OPTIONS --target "$1" 2>/dev/null | head -1)"
	hyperfine --runs "${APPLY_RUNS:-5}" --export-json "$json" \
		--prepare "rm -rf $copy && cp -a $STORM $copy && sync && find $copy -type f -exec cat {} + > /dev/null" \
		"$KD dedupe-backups $copy" \
		"$KD dedupe-backups --apply --action hardlink $copy" \
		"jdupes -r -q -L $copy" \
		"cd $copy && xargs -a $WORK/kd.dups rm -f" > /dev/null
	python3 - "$json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))["results"]
dry, apply, jd, rm = r
span = lambda x: "median %.2f s, mean %.2f s (%.2f-%.2f, %d runs)" % (x["median"], x["mean"], x["min"], x["max"], len(x["times"]))
print("dry run             %s" % span(dry))
print("apply --hardlink    %s" % span(apply))
print("jdupes -r -L        %s" % span(jd))
print("rm of the same dups %s" % span(rm))
print("apply hardlink / dry run = %.2fx (medians; means %.2fx; best %.2fx, worst %.2fx of the mean dry run); jdupes -L / dry run = %.2fx; rm / dry run = %.2fx" % (
    apply["median"] / dry["median"], apply["mean"] / dry["mean"], apply["min"] / dry["mean"], apply["max"] / dry["mean"],
    jd["median"] / dry["median"], rm["median"] / dry["median"]))
PY
	rm -rf "$copy"
}

if want 3; then
echo
echo "== 3. --apply --action hardlink vs our dry run, each on a fresh warm copy (target <= 2x)"
apply_vs_dry "$WORK"
# The same on a RAM disk, where nothing but the tool's own work and the kernel's page freeing
# remains (skipped when WORK is one already, or /dev/shm is not a tmpfs with room for two storms).
RAM=/dev/shm/kd-bench-dedupe-ram
if [ "$(findmnt -no FSTYPE --target "$WORK" | head -1)" != tmpfs ] && [ "$(findmnt -no FSTYPE --target /dev/shm 2>/dev/null | head -1)" = tmpfs ] &&
	[ "$(df --output=avail -B1 /dev/shm | tail -1)" -gt $((5 << 30)) ]; then
	rm -rf "$RAM" && mkdir -p "$RAM"
	( STORM_SAVED=$STORM; STORM="$RAM/storm"; cp -a "$STORM_SAVED" "$STORM"; apply_vs_dry "$RAM" )
	rm -rf "$RAM"
fi
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
fi

want 4 || exit 0
echo
echo "== 4. 100,000 backups in one directory (small boards: page size 512, 1 task)"
for n in 10 100; do
	D="$WORK/flat$n"
	if [ ! -s "$D.json" ]; then
		rm -rf "$D"
		"$WORK/genstorm" -bursts "$n" -per-burst 999 -distinct "$n" -tasks 1 -page-size 512 "$D" > "$D.json"
	fi
	warm "$D"
	echo "storm: $(cat "$D.json") ($(du -sh "$D" | cut -f1))"
	for mode in "" "--apply --action hardlink"; do
		[ -n "$mode" ] && { rm -rf "$D.copy"; cp -a "$D" "$D.copy"; sync; warm "$D.copy"; }
		target="$D"; [ -n "$mode" ] && target="$D.copy"
		/usr/bin/time -v "$KD" dedupe-backups --json $mode "$target" 2> "$WORK/time.txt" > /dev/null || true
		printf '  %-28s wall %s, max RSS %s MB\n' "${mode:-dry run}" \
			"$(grep 'Elapsed (wall' "$WORK/time.txt" | awk '{print $NF}')" \
			"$(awk '/Maximum resident/ {printf "%.1f", $NF/1024}' "$WORK/time.txt")"
	done
	rm -rf "$D.copy"
done
