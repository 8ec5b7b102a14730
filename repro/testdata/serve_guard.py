import json, os, sqlite3, sys, threading, time

db = os.environ["KANBAN_DOCTOR_DB"]
if os.environ.get("KANBAN_DOCTOR_SCENARIO") == "lock-drop":
    def lock_drop():  # the harness's mechanism, in this process: open/close the live files
        while True:
            for p in (db + "-shm", db, db + "-wal"):
                try:
                    os.close(os.open(p, os.O_RDONLY))
                except OSError:
                    pass
            time.sleep(0.0002)
    threading.Thread(target=lock_drop, daemon=True).start()

def check(path):
    try:
        con = sqlite3.connect("file:%s?mode=ro" % path, uri=True, timeout=5)
        try:
            rows = [r[0] for r in con.execute("PRAGMA integrity_check")]
        finally:
            con.close()
    except sqlite3.DatabaseError as e:
        if (getattr(e, "sqlite_errorcode", 0) or 0) & 0xFF in (11, 26):
            return "corrupt", str(e)
        return "inconclusive", str(e)  # busy, locked, I/O
    return ("healthy", "ok") if rows == ["ok"] else ("corrupt", rows[0])

for line in sys.stdin:  # one request per line: {"db": PATH, "check": N}
    verdict, message = check(json.loads(line)["db"])
    print(json.dumps({"verdict": verdict, "message": message}), flush=True)
