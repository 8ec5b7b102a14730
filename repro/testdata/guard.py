#!/usr/bin/env python3
"""Reference kanban guard, scored by `kanban-doctor repro` through exec: and exec-serve:.

    guard.py [--no-reindex] [--keep N] [--log FILE] DB    one check, answered by the exit status
    guard.py --serve [--no-reindex] [--keep N] [--log FILE]  one check per request line on stdin

Each check is a fresh probe connection running PRAGMA integrity_check. The answer follows the
harness's contract: exit 0 / "healthy", exit 2 / "corrupt", exit 3 / "inconclusive" (busy, locked,
I/O: not corruption). A corrupt verdict writes a content-addressed backup beside the database
(<db>.corrupt.<16 hex of sha256>.bak, a consistent copy made with SQLite's backup API, written
only if absent), keeps the newest --keep (default 10) and deletes the older ones with their
companions. When every finding is index-only ("row N missing from index X", "wrong # of entries
in index X") it runs REINDEX on those indexes unless --no-reindex. Every backup written and pruned
and every REINDEX is a line of the log (default: guard.log in the board's directory).

The harness names the cell's scenario in KANBAN_DOCTOR_SCENARIO; a guard's author applies the
same in-process mechanism in the guard's own process: lock-drop runs a thread that opens and
closes the database's files (closing a descriptor drops every POSIX lock of this process on that
file), immutable opens the probe with immutable=1.
"""
import argparse
import hashlib
import json
import os
import re
import sqlite3
import sys
import threading
import time

INDEX_ONLY = re.compile(r"^(row \d+ missing from index|wrong # of entries in index|non-unique entry in index) (\S+)")
BACKUP = re.compile(r"\.corrupt\.[0-9a-f]{16}\.bak$")
CORRUPT_CODES = (11, 26)  # SQLITE_CORRUPT, SQLITE_NOTADB (primary codes)


class Guard:
    def __init__(self, db, reindex=True, keep=10, log=None):
        self.db = db
        self.reindex = reindex
        self.keep = keep
        self.log_path = log or os.path.join(os.path.dirname(os.path.abspath(db)), "guard.log")
        self.scenario = os.environ.get("KANBAN_DOCTOR_SCENARIO", "")
        if self.scenario == "lock-drop":
            threading.Thread(target=self.lock_drop, daemon=True).start()

    def log(self, line):
        with open(self.log_path, "a") as f:
            f.write(line + "\n")

    def lock_drop(self):
        # What hashing the live database for a backup name does, in the guard's own process.
        while True:
            for p in (self.db + "-shm", self.db, self.db + "-wal"):
                try:
                    fd = os.open(p, os.O_RDONLY)
                    os.read(fd, 512)
                    os.close(fd)
                except OSError:
                    pass
            time.sleep(0.0002)

    def connect(self, mode="ro"):
        uri = "file:%s?mode=%s" % (self.db, mode)
        if self.scenario == "immutable" and mode == "ro":
            uri += "&immutable=1"
        return sqlite3.connect(uri, uri=True, timeout=5, isolation_level=None)

    def integrity(self):
        """Returns (verdict, findings or message)."""
        try:
            con = self.connect()
            try:
                lines = []
                for (row,) in con.execute("PRAGMA integrity_check"):
                    lines += [l for l in row.split("\n") if l and not l.startswith("*** in database")]
            finally:
                con.close()
        except sqlite3.DatabaseError as e:
            code = getattr(e, "sqlite_errorcode", 0) or 0
            if code & 0xFF in CORRUPT_CODES or (code == 0 and "malformed" in str(e)):
                return "corrupt", [str(e)]
            return "inconclusive", [str(e)]  # busy, locked, I/O: not corruption
        if lines == ["ok"]:
            return "healthy", lines
        return "corrupt", lines

    def check(self):
        verdict, lines = self.integrity()
        if verdict != "corrupt":
            return verdict, lines[0] if lines else verdict
        self.backup()
        indexes = [m.group(2) for m in map(INDEX_ONLY.match, lines) if m]
        if self.reindex and indexes and len(indexes) == len(lines):
            return "corrupt", self.repair(sorted(set(indexes)), lines[0])
        return "corrupt", lines[0]

    def repair(self, indexes, finding):
        try:
            con = self.connect("rw")
            try:
                for ix in indexes:
                    con.execute('REINDEX "%s"' % ix.replace('"', '""'))
            finally:
                con.close()
        except sqlite3.Error as e:
            self.log("reindex %s failed: %s" % (",".join(indexes), e))
            return "%s; REINDEX failed: %s" % (finding, e)
        after, _ = self.integrity()
        self.log("reindex %s: %s" % (",".join(indexes), after))
        return "%s; repaired by REINDEX %s (now %s)" % (finding, ",".join(indexes), after)

    def backup(self):
        d = os.path.dirname(os.path.abspath(self.db))
        tmp = os.path.join(d, ".guard-tmp-%d.db" % os.getpid())
        try:
            src = self.connect()
            dst = sqlite3.connect(tmp)
            try:
                src.backup(dst)
            finally:
                dst.close()
                src.close()
            h = hashlib.sha256()
            with open(tmp, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
            name = os.path.join(d, "%s.corrupt.%s.bak" % (os.path.basename(self.db), h.hexdigest()[:16]))
            try:
                os.link(tmp, name)  # never replaces: one backup per content
                self.log("written " + os.path.basename(name))
            except FileExistsError:
                pass
        except (sqlite3.Error, OSError) as e:
            self.log("backup failed: %s" % e)
            return
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        self.prune(d)

    def prune(self, d):
        base = os.path.basename(self.db)
        units = []
        for n in os.listdir(d):
            if n.startswith(base + ".corrupt.") and BACKUP.search(n):
                try:
                    units.append((os.stat(os.path.join(d, n)).st_mtime_ns, n))
                except FileNotFoundError:
                    pass
        units.sort(reverse=True)
        for _, n in units[self.keep:]:
            for suf in ("", "-wal", "-shm"):
                try:
                    os.unlink(os.path.join(d, n + suf))
                    if suf == "":
                        self.log("pruned " + n)
                except FileNotFoundError:
                    pass


EXIT = {"healthy": 0, "corrupt": 2, "inconclusive": 3}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("db", nargs="?")
    ap.add_argument("--serve", action="store_true")
    ap.add_argument("--no-reindex", action="store_true")
    ap.add_argument("--keep", type=int, default=10)
    ap.add_argument("--log")
    a = ap.parse_args()
    db = a.db or os.environ.get("KANBAN_DOCTOR_DB")
    if not db:
        print("guard: no database given", file=sys.stderr)
        return 4
    guard = Guard(db, reindex=not a.no_reindex, keep=a.keep, log=a.log)
    if not a.serve:
        verdict, message = guard.check()
        print(message)
        return EXIT[verdict]
    for line in sys.stdin:
        req = json.loads(line)
        if req.get("db") and req["db"] != guard.db:
            guard.db = req["db"]
        verdict, message = guard.check()
        sys.stdout.write(json.dumps({"verdict": verdict, "message": message}) + "\n")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
