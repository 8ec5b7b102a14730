package repair

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"regexp"
	"slices"
	"sort"
	"strings"

	"github.com/kanban-doctor/kanban-doctor/internal/sqlitex"
)

// schemaObj is one row of sqlite_schema.
type schemaObj struct {
	Type, Name, Tbl string
	Root            int64
	SQL             string
}

// fileMeta is what a database header says that a rebuilt file must keep.
type fileMeta struct {
	pageSize    int
	enc         uint32
	userVersion uint32
	appID       uint32
	autoVacuum  int // 0 none, 1 full, 2 incremental
	freeTrunk   uint32
}

func readMeta(p *pager) (fileMeta, error) {
	h, err := p.page(1)
	if err != nil {
		return fileMeta{}, err
	}
	m := fileMeta{pageSize: p.pageSize, enc: p.enc, userVersion: be.Uint32(h[60:]), appID: be.Uint32(h[68:]), freeTrunk: be.Uint32(h[32:])}
	if be.Uint32(h[52:]) != 0 {
		m.autoVacuum = 1
		if be.Uint32(h[64:]) != 0 {
			m.autoVacuum = 2
		}
	}
	return m, nil
}

// column is one column of a table as the rebuilt file declares it.
type column struct {
	Name   string
	Hidden int // 0 normal, 1 virtual-table hidden, 2 generated virtual, 3 generated stored
	PK     int
	Type   string
}

// tableInfo is a table's shape in the rebuilt file.
type tableInfo struct {
	obj          schemaObj
	cols         []column
	stored       []int // indexes into cols of the columns stored in a record, in record order
	ipk          int   // index into cols of the INTEGER PRIMARY KEY (rowid alias), -1 if none
	withoutRowid bool
}

func quote(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

// insertable lists the columns of t that an INSERT may name (not generated ones).
func (t *tableInfo) insertable() []int {
	var out []int
	for i, c := range t.cols {
		if c.Hidden == 0 {
			out = append(out, i)
		}
	}
	return out
}

// salvager rebuilds one database into a fresh file.
type salvager struct {
	src, dst string
	log      *slog.Logger
	objs     []schemaObj
	meta     fileMeta
	out      *sql.Conn
	tables   []*tableInfo
	reports  map[string]*TableReport
	seq      [][2]any // sqlite_sequence rows of the source
	notes    []string
	// unchecked names the objects put in the output that this build cannot open or check (a
	// virtual table whose module modernc's SQLite lacks, such as fts3/fts4).
	unchecked []string
	noModule  []schemaObj
	stmts     map[stmtKey]*preparedInsert
	args      []any // reused by insertRow
}

// salvage reads every row it can from src (a file no other connection has open) and writes a
// fresh database with the same schema to dst (an empty file). Indexes, triggers and views are
// created after the data.
func salvage(ctx context.Context, src, dst string, log *slog.Logger) ([]TableReport, []string, []string, error) {
	s := &salvager{src: src, dst: dst, log: log, reports: map[string]*TableReport{}, stmts: map[stmtKey]*preparedInsert{}}
	// The raw header first, with no SQLite connection to src open.
	p, err := openPager(src)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("%w: %w", ErrUnrecoverable, err)
	}
	s.meta, err = readMeta(p)
	p.Close()
	if err != nil {
		return nil, nil, nil, fmt.Errorf("%w: read page 1: %w", ErrUnrecoverable, err)
	}

	conn, closeOut, err := sqlitex.Conn(ctx, dst, sqlitex.Options{ReadWrite: true, Create: true, BusyTimeout: -1,
		Pragmas: []string{"writable_schema(1)"}})
	if err != nil {
		return nil, nil, nil, err
	}
	defer closeOut()
	s.out = conn
	// The output's file format first: attaching the snapshot fixes the main database's text
	// encoding, and SQLite refuses to attach a UTF-16 database to a UTF-8 one.
	if err := s.setFormat(ctx); err != nil {
		return nil, nil, nil, err
	}
	if err := s.readSchemaSQL(ctx); err != nil {
		s.notes = append(s.notes, "sqlite_schema unreadable through SQLite ("+err.Error()+"): read page by page")
		if err := s.readSchemaPages(); err != nil {
			return nil, s.notes, nil, fmt.Errorf("%w: schema: %w", ErrUnrecoverable, err)
		}
	}
	if err := s.createTables(ctx); err != nil {
		return nil, s.notes, nil, err
	}
	walk, err := s.copyBySQL(ctx)
	if err != nil {
		return nil, s.notes, nil, err
	}
	if _, err := conn.ExecContext(ctx, "BEGIN"); err != nil {
		return nil, s.notes, nil, fmt.Errorf("begin salvage: %w", err)
	}
	if len(walk) > 0 {
		if err := s.copyByPages(ctx, walk); err != nil {
			return nil, s.notes, nil, err
		}
	}
	if err := s.finish(ctx); err != nil {
		return nil, s.notes, nil, err
	}
	for _, pi := range s.stmts {
		pi.st.Close()
	}
	if _, err := conn.ExecContext(ctx, "COMMIT"); err != nil {
		return nil, s.notes, nil, fmt.Errorf("commit salvage: %w", err)
	}
	if err := closeOut(); err != nil {
		return nil, s.notes, nil, err
	}
	var out []TableReport
	for _, t := range s.tables {
		r := s.reports[t.obj.Name]
		r.LostRanges = mergeRanges(r.LostRanges)
		out = append(out, *r)
	}
	return out, s.notes, s.unchecked, nil
}

// srcURI is the URI that attaches our snapshot read-only, accepting a file shorter than its
// header says (writable_schema on the connection lets SQLite use the file's real size).
func srcURI(path string) string {
	return sqlitex.DSN(path, sqlitex.Options{BusyTimeout: -1})
}

func (s *salvager) attach(ctx context.Context) error {
	if _, err := s.out.ExecContext(ctx, "ATTACH DATABASE ? AS src", srcURI(s.src)); err != nil {
		return fmt.Errorf("attach %s: %w", s.src, err)
	}
	return nil
}

func (s *salvager) detach(ctx context.Context) error {
	if _, err := s.out.ExecContext(ctx, "DETACH DATABASE src"); err != nil {
		return fmt.Errorf("detach %s: %w", s.src, err)
	}
	return nil
}

func (s *salvager) readSchemaSQL(ctx context.Context) error {
	if err := s.attach(ctx); err != nil {
		return err
	}
	defer s.detach(ctx)
	rows, err := s.out.QueryContext(ctx, "SELECT type, name, tbl_name, coalesce(rootpage, 0), coalesce(sql, '') FROM src.sqlite_schema")
	if err != nil {
		return err
	}
	defer rows.Close()
	var objs []schemaObj
	for rows.Next() {
		var o schemaObj
		if err := rows.Scan(&o.Type, &o.Name, &o.Tbl, &o.Root, &o.SQL); err != nil {
			return err
		}
		objs = append(objs, o)
	}
	if err := rows.Err(); err != nil {
		return err
	}
	s.objs = objs
	return nil
}

// readSchemaPages reads sqlite_schema (the table b-tree on page 1) without SQLite.
func (s *salvager) readSchemaPages() error {
	p, err := openPager(s.src)
	if err != nil {
		return err
	}
	defer p.Close()
	w := newWalker(p)
	v := &tableVisitor{maxFields: 5, row: func(_ int64, vals []any) {
		if len(vals) != 5 {
			return
		}
		str := func(x any) string { s, _ := x.(string); return s }
		root, _ := vals[3].(int64)
		s.objs = append(s.objs, schemaObj{Type: str(vals[0]), Name: str(vals[1]), Tbl: str(vals[2]), Root: root, SQL: str(vals[4])})
	}}
	w.walkTable(1, math.MinInt64, math.MaxInt64, 0, v)
	if len(s.objs) == 0 {
		return errors.New("no schema rows could be read")
	}
	if len(v.issues) > 0 {
		s.notes = append(s.notes, fmt.Sprintf("sqlite_schema: %d damaged pages, tables on them are missing from the output", len(v.issues)))
	}
	return nil
}

// setFormat gives the empty output the source's page size, auto-vacuum mode and text encoding.
func (s *salvager) setFormat(ctx context.Context) error {
	encName := map[uint32]string{1: "UTF-8", 2: "UTF-16le", 3: "UTF-16be"}[s.meta.enc]
	if encName == "" {
		encName = "UTF-8"
	}
	for _, q := range []string{
		fmt.Sprintf("PRAGMA page_size=%d", s.meta.pageSize),
		fmt.Sprintf("PRAGMA auto_vacuum=%d", s.meta.autoVacuum),
		fmt.Sprintf("PRAGMA encoding='%s'", encName),
	} {
		if _, err := s.out.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("prepare output %s: %s: %w", s.dst, q, err)
		}
	}
	return nil
}

// createTables sets the file format of the output and creates every table (no index yet).
func (s *salvager) createTables(ctx context.Context) error {
	pre := []string{
		"PRAGMA journal_mode=MEMORY",
		"PRAGMA synchronous=OFF",
		fmt.Sprintf("PRAGMA user_version=%d", int32(s.meta.userVersion)),
		fmt.Sprintf("PRAGMA application_id=%d", int32(s.meta.appID)),
	}
	for _, q := range pre {
		if _, err := s.out.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("prepare output %s: %s: %w", s.dst, q, err)
		}
	}
	for i, o := range s.objs {
		if o.Type != "table" || strings.HasPrefix(o.Name, "sqlite_") || o.SQL == "" {
			continue
		}
		before, err := s.mainTables(ctx)
		if err != nil {
			return err
		}
		if _, err := s.out.ExecContext(ctx, o.SQL); err == nil {
			// sqlite_schema's name column may be damaged or disagree with the CREATE text: the
			// table is then known only by its root page.
			if o, err = s.nameByRoot(ctx, o, before); err != nil {
				return err
			}
			s.objs[i] = o
		} else {
			if strings.Contains(err.Error(), "already exists") {
				// A virtual table's shadow table, made when the virtual table was created.
				s.notes = append(s.notes, fmt.Sprintf("table %s already made by a virtual table: rows copied into it", o.Name))
			} else if m := vtabModule.FindStringSubmatch(o.SQL); m != nil && strings.Contains(err.Error(), "no such module") {
				// Its rows live in its shadow tables, which are ordinary tables salvaged like any
				// other; the virtual table itself is put back in the schema at the end, for a
				// SQLite that has the module.
				s.noModule = append(s.noModule, o)
				continue
			} else {
				s.notes = append(s.notes, fmt.Sprintf("table %s: cannot be created (%v): skipped", o.Name, err))
				continue
			}
		}
		if strings.HasPrefix(strings.ToUpper(strings.TrimSpace(o.SQL)), "CREATE VIRTUAL") {
			if m := vtabModule.FindStringSubmatch(o.SQL); m != nil && strings.HasPrefix(strings.ToLower(m[1]), "rtree") {
				// A new R-Tree starts with an empty root node, which would stand in for the
				// copied root (same node number): the shadow tables start empty instead.
				for _, sh := range []string{"_node", "_rowid", "_parent"} {
					if _, err := s.out.ExecContext(ctx, "DELETE FROM main."+quote(o.Name+sh)); err != nil {
						return fmt.Errorf("empty %s%s in output %s: %w", o.Name, sh, s.dst, err)
					}
				}
			}
			s.notes = append(s.notes, fmt.Sprintf("virtual table %s: created; its content lives in its shadow tables", o.Name))
			continue
		}
		t, err := s.tableShape(ctx, o)
		if err != nil {
			return err
		}
		s.tables = append(s.tables, t)
		s.reports[o.Name] = &TableReport{Name: o.Name, WithoutRowid: t.withoutRowid}
	}
	if len(s.tables) == 0 {
		return fmt.Errorf("%w: no table could be read from the schema", ErrUnrecoverable)
	}
	return nil
}

// mainTables lists the tables the output holds now.
func (s *salvager) mainTables(ctx context.Context) (map[string]bool, error) {
	rows, err := s.out.QueryContext(ctx, "SELECT name FROM pragma_table_list WHERE schema='main'")
	if err != nil {
		return nil, fmt.Errorf("list tables of output %s: %w", s.dst, err)
	}
	defer rows.Close()
	names := map[string]bool{}
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			return nil, fmt.Errorf("list tables of output %s: %w", s.dst, err)
		}
		names[n] = true
	}
	return names, rows.Err()
}

// nameByRoot checks that the table o's CREATE text just made is named as sqlite_schema says.
// When it is not (a damaged name column, or a CREATE text naming another table), the new table
// is renamed recovered_table_<rootpage> and its rows are found by its root page.
func (s *salvager) nameByRoot(ctx context.Context, o schemaObj, before map[string]bool) (schemaObj, error) {
	after, err := s.mainTables(ctx)
	if err != nil {
		return o, err
	}
	if after[o.Name] && !before[o.Name] {
		return o, nil
	}
	var made []string
	for n := range after {
		if !before[n] {
			made = append(made, n)
		}
	}
	if len(made) != 1 {
		return o, nil
	}
	name := fmt.Sprintf("recovered_table_%d", o.Root)
	if _, err := s.out.ExecContext(ctx, fmt.Sprintf("ALTER TABLE %s RENAME TO %s", quote(made[0]), quote(name))); err != nil {
		return o, fmt.Errorf("rename table of root page %d in output %s: %w", o.Root, s.dst, err)
	}
	s.notes = append(s.notes, fmt.Sprintf("table on root page %d: sqlite_schema names it %q, its CREATE text %q: written as %s", o.Root, o.Name, made[0], name))
	o.Name = name
	return o, nil
}

func (s *salvager) tableShape(ctx context.Context, o schemaObj) (*tableInfo, error) {
	t := &tableInfo{obj: o, ipk: -1}
	rows, err := s.out.QueryContext(ctx, "SELECT name, type, pk, hidden FROM pragma_table_xinfo(?)", o.Name)
	if err != nil {
		return nil, fmt.Errorf("read columns of %s: %w", o.Name, err)
	}
	defer rows.Close()
	for rows.Next() {
		var c column
		if err := rows.Scan(&c.Name, &c.Type, &c.PK, &c.Hidden); err != nil {
			return nil, fmt.Errorf("read columns of %s: %w", o.Name, err)
		}
		t.cols = append(t.cols, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read columns of %s: %w", o.Name, err)
	}
	var wr int
	if err := s.out.QueryRowContext(ctx, "SELECT wr FROM pragma_table_list WHERE schema='main' AND name=?", o.Name).Scan(&wr); err != nil {
		return nil, fmt.Errorf("read shape of %s: %w", o.Name, err)
	}
	t.withoutRowid = wr == 1
	npk := 0
	for i, c := range t.cols {
		if c.PK > 0 {
			npk++
			if strings.EqualFold(c.Type, "INTEGER") {
				t.ipk = i
			}
		}
	}
	if npk != 1 || t.withoutRowid {
		t.ipk = -1
	}
	if t.withoutRowid {
		// The record holds the primary key columns first, then the others in table order.
		var pkIndex string
		if err := s.out.QueryRowContext(ctx, "SELECT name FROM pragma_index_list(?) WHERE origin='pk'", o.Name).Scan(&pkIndex); err != nil {
			return nil, fmt.Errorf("read primary key of %s: %w", o.Name, err)
		}
		r, err := s.out.QueryContext(ctx, "SELECT cid FROM pragma_index_xinfo(?) ORDER BY seqno", pkIndex)
		if err != nil {
			return nil, fmt.Errorf("read primary key of %s: %w", o.Name, err)
		}
		defer r.Close()
		for r.Next() {
			var cid int
			if err := r.Scan(&cid); err != nil {
				return nil, err
			}
			if cid >= 0 && t.cols[cid].Hidden != 2 {
				t.stored = append(t.stored, cid)
			}
		}
		if err := r.Err(); err != nil {
			return nil, err
		}
	} else {
		for i, c := range t.cols {
			if c.Hidden != 2 {
				t.stored = append(t.stored, i)
			}
		}
	}
	return t, nil
}

// copyBySQL copies each table with one INSERT ... SELECT through SQLite's own cursor. A table
// whose read fails is rolled back to empty and returned for the page-by-page walk.
func (s *salvager) copyBySQL(ctx context.Context) ([]*tableInfo, error) {
	if err := s.attach(ctx); err != nil {
		return s.tables, nil
	}
	defer s.detach(ctx)
	var walk []*tableInfo
	for _, t := range s.tables {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		r := s.reports[t.obj.Name]
		cols := t.insertable()
		names := make([]string, 0, len(cols)+1)
		if !t.withoutRowid && t.ipk < 0 {
			names = append(names, "_rowid_")
		}
		for _, i := range cols {
			names = append(names, quote(t.cols[i].Name))
		}
		list := strings.Join(names, ", ")
		q := fmt.Sprintf("INSERT OR IGNORE INTO main.%s(%s) SELECT %s FROM src.%s NOT INDEXED", quote(t.obj.Name), list, list, quote(t.obj.Name))
		if _, err := s.out.ExecContext(ctx, "BEGIN"); err != nil {
			return nil, fmt.Errorf("begin copy of %s: %w", t.obj.Name, err)
		}
		res, err := s.out.ExecContext(ctx, q)
		var read int64
		if err == nil {
			err = s.out.QueryRowContext(ctx, fmt.Sprintf("SELECT count(*) FROM src.%s NOT INDEXED", quote(t.obj.Name))).Scan(&read)
		}
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			s.out.ExecContext(context.Background(), "ROLLBACK") // SQLite may have rolled back already
			r.SQLError = err.Error()
			walk = append(walk, t)
			s.log.Debug("cursor read failed: walking pages", "table", t.obj.Name, "err", err)
			continue
		}
		if _, err := s.out.ExecContext(ctx, "COMMIT"); err != nil {
			return nil, fmt.Errorf("commit copy of %s: %w", t.obj.Name, err)
		}
		n, _ := res.RowsAffected()
		r.Method, r.RowsRead, r.RowsWritten = MethodSQL, read, n
	}
	// sqlite_sequence (AUTOINCREMENT high-water marks), so ids of lost rows are never reused.
	if rows, err := s.out.QueryContext(ctx, "SELECT name, seq FROM src.sqlite_sequence"); err == nil {
		for rows.Next() {
			var name string
			var seq int64
			if rows.Scan(&name, &seq) == nil {
				s.seq = append(s.seq, [2]any{name, seq})
			}
		}
		if rows.Err() != nil {
			s.notes = append(s.notes, "sqlite_sequence partly unreadable: AUTOINCREMENT counters rebuilt from the rows")
		}
		rows.Close()
	}
	return walk, nil
}

// stmtKey names a prepared INSERT: the table, how many record fields it binds, and whether the
// rowid is bound.
type stmtKey struct {
	t        *tableInfo
	n        int
	hasRowid bool
}

// insertColumns lists the columns an INSERT of a record with n fields names, in bind order, and
// where each value comes from (-1: the rowid, k >= 0: record field k).
func (t *tableInfo) insertColumns(n int, hasRowid bool) (names []string, from []int) {
	if hasRowid && !t.withoutRowid && t.ipk < 0 {
		names, from = append(names, "_rowid_"), append(from, -1)
	}
	for k := 0; k < n; k++ {
		ci := t.stored[k]
		if t.cols[ci].Hidden != 0 {
			continue
		}
		src := k
		if ci == t.ipk && hasRowid {
			src = -1 // the INTEGER PRIMARY KEY is stored as NULL: its value is the rowid
		}
		names, from = append(names, quote(t.cols[ci].Name)), append(from, src)
	}
	if t.ipk >= 0 && hasRowid && n <= slices.Index(t.stored, t.ipk) {
		names, from = append(names, quote(t.cols[t.ipk].Name)), append(from, -1)
	}
	return names, from
}

type preparedInsert struct {
	st   *sql.Stmt
	from []int
}

// insertRow inserts one decoded record into t; it returns whether a row was written.
func (s *salvager) insertRow(ctx context.Context, t *tableInfo, rowid int64, hasRowid bool, vals []any) (bool, error) {
	key := stmtKey{t, min(len(vals), len(t.stored)), hasRowid}
	pi := s.stmts[key]
	if pi == nil {
		names, from := t.insertColumns(key.n, hasRowid)
		q := fmt.Sprintf("INSERT OR IGNORE INTO main.%s(%s) VALUES(%s)", quote(t.obj.Name), strings.Join(names, ", "),
			strings.TrimSuffix(strings.Repeat("?, ", len(names)), ", "))
		st, err := s.out.PrepareContext(ctx, q)
		if err != nil {
			return false, fmt.Errorf("prepare insert into %s: %w", t.obj.Name, err)
		}
		pi = &preparedInsert{st: st, from: from}
		s.stmts[key] = pi
	}
	args := s.args[:0]
	for _, k := range pi.from {
		if k < 0 {
			args = append(args, rowid)
		} else {
			args = append(args, vals[k])
		}
	}
	s.args = args
	res, err := pi.st.ExecContext(ctx, args...)
	if err != nil {
		return false, fmt.Errorf("insert into %s: %w", t.obj.Name, err)
	}
	k, _ := res.RowsAffected()
	return k > 0, nil
}

// copyByPages walks the b-trees of the tables SQLite could not read, then the rest of the file
// for table leaf pages no b-tree reaches (a parent page lost), and counts what was lost.
func (s *salvager) copyByPages(ctx context.Context, tables []*tableInfo) error {
	p, err := openPager(s.src)
	if err != nil {
		return err
	}
	defer p.Close()
	w := newWalker(p)
	w.reached[1] = true
	var ierr error
	w.stop = func() bool { return ierr != nil || ctx.Err() != nil }
	// recovered holds, per table, the rowids adopted from unattached pages (the only rows that can
	// lie inside a lost range); a tree walk never delivers a row inside a range it lost.
	recovered := map[string]map[int64]bool{}
	for _, t := range tables {
		r := s.reports[t.obj.Name]
		r.Method = MethodPages
		got := map[int64]bool{}
		recovered[t.obj.Name] = got
		if t.obj.Root < 1 || t.obj.Root > math.MaxUint32 {
			r.UnreadablePages = append(r.UnreadablePages, PageIssue{Page: 0, Reason: "root page number invalid"})
			r.LostRanges = append(r.LostRanges, LostRange{From: math.MinInt64, To: math.MaxInt64})
			continue
		}
		if t.withoutRowid {
			v := &indexVisitor{maxFields: len(t.stored), entry: func(vals []any) {
				if ierr != nil {
					return
				}
				r.RowsRead++
				ok, err := s.insertRow(ctx, t, 0, false, vals)
				if err != nil {
					ierr = err
				} else if ok {
					r.RowsWritten++
				}
			}}
			w.walkIndex(uint32(t.obj.Root), 0, v)
			r.UnreadablePages = append(r.UnreadablePages, v.issues...)
			r.RejectedCells += v.rejected + v.badCells
			if ierr != nil {
				return ierr
			}
			continue
		}
		v := &tableVisitor{maxFields: len(t.stored), row: func(rowid int64, vals []any) {
			if ierr != nil {
				return
			}
			r.RowsRead++
			ok, err := s.insertRow(ctx, t, rowid, true, vals)
			if err != nil {
				ierr = err
			} else if ok {
				r.RowsWritten++
			}
		}}
		w.walkTable(uint32(t.obj.Root), math.MinInt64, math.MaxInt64, 0, v)
		if ierr != nil {
			return ierr
		}
		r.LostRanges = append(r.LostRanges, v.lost...)
		r.UnreadablePages = append(r.UnreadablePages, v.issues...)
		r.RejectedCells += v.rejected
		r.LostRowids = append(r.LostRowids, v.badRows...)
		if err := ctx.Err(); err != nil {
			return err
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	s.markRest(w, tables)
	if err := s.adoptOrphans(ctx, w, tables, recovered); err != nil {
		return err
	}
	s.countLost(w, tables, recovered)
	return nil
}

// markRest walks every other b-tree and the freelist so the pages they use are known.
func (s *salvager) markRest(w *walker, walked []*tableInfo) {
	done := map[string]bool{}
	for _, t := range walked {
		done[t.obj.Name] = true
	}
	for _, o := range s.objs {
		if o.Root < 2 || o.Root > math.MaxUint32 || done[o.Name] || o.Type == "index" {
			continue
		}
		if strings.Contains(strings.ToUpper(o.SQL), "WITHOUT ROWID") {
			w.walkIndex(uint32(o.Root), 0, &indexVisitor{maxFields: 1 << 16, entry: func([]any) {}})
			continue
		}
		w.walkTable(uint32(o.Root), math.MinInt64, math.MaxInt64, 0, &tableVisitor{maxFields: 1 << 16, row: func(int64, []any) {}})
	}
	w.walkFreelist(s.meta.freeTrunk)
}

// adoptOrphans reads table leaf pages that no b-tree reached. A page's rows are given to a table
// only when every row's rowid falls in one lost range of exactly one table the walk damaged, and
// its records fit that table.
func (s *salvager) adoptOrphans(ctx context.Context, w *walker, tables []*tableInfo, recovered map[string]map[int64]bool) error {
	if s.meta.autoVacuum != 0 {
		return nil // pointer-map pages would need their own accounting
	}
	var candidates []*tableInfo
	for _, t := range tables {
		if !t.withoutRowid && len(s.reports[t.obj.Name].LostRanges) > 0 {
			candidates = append(candidates, t)
		}
	}
	if len(candidates) == 0 {
		return nil
	}
	// Index pages are reached by walking the indexes (their rowids also count what was lost).
	for _, o := range s.objs {
		if o.Type == "index" && o.Root >= 2 && o.Root <= math.MaxUint32 {
			w.walkIndex(uint32(o.Root), 0, &indexVisitor{maxFields: 1 << 16, entry: func([]any) {}})
		}
	}
	for n := uint32(2); n <= w.p.nPages; n++ {
		if w.reached[n] {
			continue
		}
		ids, rows := w.orphanLeaf(n, 1<<16)
		if len(ids) == 0 {
			continue
		}
		var owner *tableInfo
		for _, t := range candidates {
			if fitsLost(t, s.reports[t.obj.Name].LostRanges, ids, rows, recovered[t.obj.Name]) {
				if owner != nil {
					owner = nil
					break
				}
				owner = t
			}
		}
		if owner == nil {
			s.notes = append(s.notes, fmt.Sprintf("page %d: an unattached table leaf with %d rows that fits no single damaged table: left out", n, len(ids)))
			continue
		}
		r := s.reports[owner.obj.Name]
		for i, id := range ids {
			r.RowsRead++
			r.OrphanRows++
			recovered[owner.obj.Name][id] = true
			ok, err := s.insertRow(ctx, owner, id, true, rows[i])
			if err != nil {
				return err
			}
			if ok {
				r.RowsWritten++
			}
		}
		r.OrphanPages = append(r.OrphanPages, n)
	}
	return nil
}

func fitsLost(t *tableInfo, lost []LostRange, ids []int64, rows [][]any, have map[int64]bool) bool {
	for i, id := range ids {
		if len(rows[i]) > len(t.stored) || have[id] {
			return false
		}
		in := false
		for _, lr := range lost {
			if id >= lr.From && id <= lr.To {
				in = true
				break
			}
		}
		if !in {
			return false
		}
	}
	return true
}

// countLost counts the rows known to be lost: rowids that an index of the table still lists in a
// lost range but that were not recovered.
func (s *salvager) countLost(w *walker, tables []*tableInfo, recovered map[string]map[int64]bool) {
	for _, t := range tables {
		r := s.reports[t.obj.Name]
		if t.withoutRowid {
			continue
		}
		lost := map[int64]bool{}
		for _, id := range r.LostRowids {
			lost[id] = true
		}
		if len(r.LostRanges) > 0 {
			for _, o := range s.objs {
				if o.Type != "index" || o.Tbl != t.obj.Name || o.Root < 2 || o.Root > math.MaxUint32 || strings.Contains(strings.ToUpper(o.SQL), " WHERE ") {
					continue
				}
				saved := w.reached
				w.reached = map[uint32]bool{}
				w.walkIndex(uint32(o.Root), 0, &indexVisitor{maxFields: 1 << 16, entry: func(vals []any) {
					id, ok := vals[len(vals)-1].(int64)
					if !ok || recovered[t.obj.Name][id] {
						return
					}
					for _, lr := range r.LostRanges {
						if id >= lr.From && id <= lr.To {
							lost[id] = true
							return
						}
					}
				}})
				w.reached = saved
			}
		}
		r.LostRowids = r.LostRowids[:0]
		for id := range lost {
			r.LostRowids = append(r.LostRowids, id)
		}
		sort.Slice(r.LostRowids, func(i, j int) bool { return r.LostRowids[i] < r.LostRowids[j] })
		r.RowsLostKnown = int64(len(r.LostRowids))
		if len(r.LostRowids) > maxListed {
			r.LostRowids = r.LostRowids[:maxListed]
		}
	}
}

// maxListed caps the rowids listed per table in a report.
const maxListed = 1000

// finish restores AUTOINCREMENT counters and creates indexes, triggers and views.
func (s *salvager) finish(ctx context.Context) error {
	for _, sq := range s.seq {
		if _, err := s.out.ExecContext(ctx, "INSERT INTO sqlite_sequence(name, seq) SELECT ?1, ?2 WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name=?1)", sq[0], sq[1]); err != nil {
			s.notes = append(s.notes, fmt.Sprintf("sqlite_sequence %v: %v", sq[0], err))
			continue
		}
		s.out.ExecContext(ctx, "UPDATE sqlite_sequence SET seq=max(seq, ?2) WHERE name=?1", sq[0], sq[1])
	}
	if err := s.rebuildFTS(ctx); err != nil {
		return err
	}
	if err := s.restoreNoModule(ctx); err != nil {
		return err
	}
	if err := s.rebuildRTrees(ctx); err != nil {
		return err
	}
	for _, typ := range []string{"index", "trigger", "view"} {
		for _, o := range s.objs {
			if o.Type != typ || o.SQL == "" || strings.HasPrefix(o.Name, "sqlite_") {
				continue
			}
			if _, err := s.out.ExecContext(ctx, o.SQL); err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				s.notes = append(s.notes, fmt.Sprintf("%s %s: cannot be created on the salvaged rows (%v): left out", typ, o.Name, err))
			}
		}
	}
	return nil
}

// restoreNoModule puts back, through writable_schema, the schema row of each virtual table whose
// module this build lacks. Its shadow tables were salvaged as ordinary tables under the names the
// module gives them, so a SQLite with the module (the sqlite3 shell) opens it as it was. Its index
// could not be rebuilt or checked here: the result says so and names the command that does.
func (s *salvager) restoreNoModule(ctx context.Context) error {
	if len(s.noModule) == 0 {
		return nil
	}
	for _, o := range s.noModule {
		mod := strings.ToLower(vtabModule.FindStringSubmatch(o.SQL)[1])
		if _, err := s.out.ExecContext(ctx, "INSERT INTO sqlite_schema(type, name, tbl_name, rootpage, sql) VALUES('table', ?1, ?1, 0, ?2)", o.Name, o.SQL); err != nil {
			return fmt.Errorf("put virtual table %s back into the schema of %s: %w", o.Name, s.dst, err)
		}
		what := fmt.Sprintf("%s table %s", mod, o.Name)
		s.unchecked = append(s.unchecked, what)
		fix := ""
		if mod == "fts3" || mod == "fts4" {
			fix = fmt.Sprintf("; rebuild and check it with sqlite3: INSERT INTO %s(%s) VALUES('rebuild'); INSERT INTO %s(%s) VALUES('integrity-check');",
				quote(o.Name), quote(o.Name), quote(o.Name), quote(o.Name))
		}
		s.notes = append(s.notes, fmt.Sprintf("%s: this build of kanban-doctor has no %s module: its shadow tables were salvaged and the table put back in the schema, but its index was copied, not rebuilt, and not checked%s", what, mod, fix))
	}
	var v int64
	if err := s.out.QueryRowContext(ctx, "PRAGMA schema_version").Scan(&v); err != nil {
		return fmt.Errorf("schema version of %s: %w", s.dst, err)
	}
	if _, err := s.out.ExecContext(ctx, fmt.Sprintf("PRAGMA schema_version=%d", v+1)); err != nil {
		return fmt.Errorf("schema version of %s: %w", s.dst, err)
	}
	return nil
}

// rebuildRTrees builds every R-Tree afresh from the entries its copied node tree still reaches. Its
// three shadow tables were salvaged independently, so a lost page of one (the _rowid table, say)
// leaves them disagreeing ("Wrong number of entries in %_rowid table"), which integrity_check of
// older SQLite versions does not see. Every entry the nodes hold is read through the R-Tree,
// the table is dropped and created again, the entries re-inserted, and rtreecheck must say ok.
func (s *salvager) rebuildRTrees(ctx context.Context) error {
	for _, o := range s.objs {
		if o.Type != "table" || o.SQL == "" || s.lacksModule(o.Name) {
			continue
		}
		m := vtabModule.FindStringSubmatch(o.SQL)
		if m == nil || !strings.HasPrefix(strings.ToLower(m[1]), "rtree") {
			continue
		}
		tmp := quote("kd_rtree_" + o.Name)
		steps := []string{
			fmt.Sprintf("CREATE TEMP TABLE %s AS SELECT * FROM main.%s", tmp, quote(o.Name)),
			fmt.Sprintf("DROP TABLE main.%s", quote(o.Name)),
			o.SQL,
			fmt.Sprintf("INSERT INTO main.%s SELECT * FROM temp.%s", quote(o.Name), tmp),
			fmt.Sprintf("DROP TABLE temp.%s", tmp),
		}
		for i, q := range steps {
			if _, err := s.out.ExecContext(ctx, q); err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				if i == 0 {
					// The copied nodes cannot be read as a tree: leave the table as copied;
					// the output's verify and the note say what happened.
					s.notes = append(s.notes, fmt.Sprintf("%s table %s: entries cannot be read through its nodes (%v): the copied shadow tables are kept", m[1], o.Name, err))
					break
				}
				return fmt.Errorf("%s table %s in output %s: rebuild: %s: %w", m[1], o.Name, s.dst, q, err)
			}
		}
		var n int64
		s.out.QueryRowContext(ctx, fmt.Sprintf("SELECT count(*) FROM main.%s", quote(o.Name))).Scan(&n)
		var check string
		if err := s.out.QueryRowContext(ctx, "SELECT rtreecheck(?)", o.Name).Scan(&check); err != nil {
			return fmt.Errorf("%s table %s in output %s: rtreecheck: %w", m[1], o.Name, s.dst, err)
		}
		if check != "ok" {
			return fmt.Errorf("%s table %s in output %s: rebuilt tree fails rtreecheck: %s", m[1], o.Name, s.dst, check)
		}
		s.notes = append(s.notes, fmt.Sprintf("%s table %s: rebuilt from the %d entries its nodes hold, rtreecheck ok", m[1], o.Name, n))
	}
	return nil
}

// vtabModule matches the module a CREATE VIRTUAL TABLE statement names.
var vtabModule = regexp.MustCompile(`(?is)^\s*CREATE\s+VIRTUAL\s+TABLE\s.*?\bUSING\s+(\w+)`)

// rebuildFTS builds every full-text index afresh from its content (its own _content shadow
// table, or the external content table) instead of keeping the copied index: an index page lost
// or damaged in the source would otherwise leave rows that search cannot find, and shadow
// tables whose pages were walked need not agree with each other.
func (s *salvager) rebuildFTS(ctx context.Context) error {
	for _, o := range s.objs {
		if o.Type != "table" || o.SQL == "" {
			continue
		}
		m := vtabModule.FindStringSubmatch(o.SQL)
		if m == nil {
			continue
		}
		switch strings.ToLower(m[1]) {
		case "fts3", "fts4", "fts5":
		default:
			continue
		}
		if s.lacksModule(o.Name) {
			continue
		}
		q := fmt.Sprintf("INSERT INTO %s(%s) VALUES('rebuild')", quote(o.Name), quote(o.Name))
		if _, err := s.out.ExecContext(ctx, q); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			s.notes = append(s.notes, fmt.Sprintf("%s table %s: index cannot be rebuilt (%v): the copied index is kept", m[1], o.Name, err))
			continue
		}
		// The fresh index must agree with its content before anything is published.
		check := fmt.Sprintf("INSERT INTO %s(%s) VALUES('integrity-check')", quote(o.Name), quote(o.Name))
		if strings.EqualFold(m[1], "fts5") {
			check = fmt.Sprintf("INSERT INTO %s(%s, rank) VALUES('integrity-check', 1)", quote(o.Name), quote(o.Name))
		}
		if _, err := s.out.ExecContext(ctx, check); err != nil {
			return fmt.Errorf("%s table %s in output %s: rebuilt index fails its integrity-check: %w", m[1], o.Name, s.dst, err)
		}
		s.notes = append(s.notes, fmt.Sprintf("%s table %s: index rebuilt from its content, integrity-check ok", m[1], o.Name))
	}
	return nil
}

// mergeRanges sorts and merges overlapping lost ranges.
func mergeRanges(rs []LostRange) []LostRange {
	if len(rs) < 2 {
		return rs
	}
	sort.Slice(rs, func(i, j int) bool { return rs[i].From < rs[j].From })
	out := []LostRange{rs[0]}
	for _, r := range rs[1:] {
		last := &out[len(out)-1]
		if r.From <= last.To || last.To != math.MaxInt64 && r.From == last.To+1 {
			last.To = max(last.To, r.To)
			continue
		}
		out = append(out, r)
	}
	return out
}

func (s *salvager) lacksModule(name string) bool {
	for _, o := range s.noModule {
		if o.Name == name {
			return true
		}
	}
	return false
}
