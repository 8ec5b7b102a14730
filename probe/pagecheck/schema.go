package pagecheck

import (
	"fmt"
	"strings"
)

// affinity is a column's type affinity, by SQLite's rules on the declared type.
type affinity uint8

const (
	affBlob affinity = iota
	affText
	affNumeric // NUMERIC, INTEGER and REAL: a TEXT value that converts to a number is an error
)

func affinityOf(decl string) affinity {
	t := strings.ToUpper(decl)
	switch {
	case strings.Contains(t, "INT"):
		return affNumeric
	case strings.Contains(t, "CHAR"), strings.Contains(t, "CLOB"), strings.Contains(t, "TEXT"):
		return affText
	case strings.Contains(t, "BLOB"), t == "":
		return affBlob
	}
	return affNumeric // REAL, FLOA, DOUB and anything else
}

// column is one stored column of a rowid table.
type column struct {
	name       string
	store      int // field number in the record; -1 for the INTEGER PRIMARY KEY (the rowid)
	notNull    bool
	hasDefault bool // a non-NULL default: a record too short for this column reads that value
	aff        affinity
}

type index struct {
	name   string
	root   uint32
	cols   []int  // field numbers in the table's record (-1: the rowid)
	desc   []bool // per key column
	unique bool
	nKey   int // key columns (before the rowid)
	tree   int
}

type table struct {
	name    string
	root    uint32
	cols    []column
	indexes []*index
	tree    int
}

// tree is one b-tree (a table or an index) by root page.
type tree struct {
	root  uint32
	index bool
	table *table // owning table
	idx   *index // nil for a table
}

type schema struct {
	tables []*table
	trees  []*tree
}

// errUnsupported says the schema uses something this checker does not judge; SQLite must.
type errUnsupported struct{ why string }

func (e errUnsupported) Error() string { return "not covered by the page check: " + e.why }

func unsupported(format string, args ...any) error {
	return errUnsupported{why: fmt.Sprintf(format, args...)}
}

// loadSchema reads the schema (inside the check's read transaction).
func loadSchema(d *dbconn) (*schema, error) {
	s := &schema{}
	// sqlite_schema itself: five columns, TEXT and INT affinities, none NOT NULL.
	master := &table{name: "sqlite_master", root: 1, cols: []column{
		{name: "type", store: 0, aff: affText}, {name: "name", store: 1, aff: affText},
		{name: "tbl_name", store: 2, aff: affText}, {name: "rootpage", store: 3, aff: affNumeric},
		{name: "sql", store: 4, aff: affText}}}
	s.addTable(master)

	objs, err := d.all(`SELECT type, name, tbl_name, coalesce(rootpage, 0), coalesce(sql, '') FROM sqlite_schema`)
	if err != nil {
		return nil, err
	}
	list, err := d.all(`SELECT name, type, wr, strict FROM pragma_table_list WHERE schema='main'`)
	if err != nil {
		return nil, err
	}
	kinds, wr, strict := map[string]string{}, map[string]bool{}, map[string]bool{}
	for _, r := range list {
		name := str(r[0])
		kinds[name], wr[name], strict[name] = str(r[1]), num(r[2]) != 0, num(r[3]) != 0
	}
	byName := map[string]*table{}
	for _, o := range objs {
		typ, name, root, sqlText := str(o[0]), str(o[1]), num(o[3]), str(o[4])
		if typ != "table" || root <= 0 {
			continue
		}
		switch {
		case kinds[name] != "table" && kinds[name] != "shadow":
			return nil, unsupported("table %q is of kind %q", name, kinds[name])
		case wr[name]:
			return nil, unsupported("WITHOUT ROWID table %q", name)
		case strict[name]:
			return nil, unsupported("STRICT table %q", name)
		case root > 1<<31:
			return nil, unsupported("root page %d", root)
		}
		if strings.Contains(strings.ToUpper(sqlText), "CHECK") {
			return nil, unsupported("table %q may have CHECK constraints", name)
		}
		t, err := loadTable(d, name, uint32(root))
		if err != nil {
			return nil, err
		}
		byName[name] = t
		s.addTable(t)
	}
	for _, o := range objs {
		typ, name, tbl, root := str(o[0]), str(o[1]), str(o[2]), num(o[3])
		if typ != "index" {
			continue
		}
		t := byName[tbl]
		if t == nil || root <= 0 || root > 1<<31 {
			return nil, unsupported("index %q on %q", name, tbl)
		}
		ix, err := loadIndex(d, t, name, uint32(root))
		if err != nil {
			return nil, err
		}
		t.indexes = append(t.indexes, ix)
		s.trees = append(s.trees, &tree{root: ix.root, index: true, table: t, idx: ix})
		ix.tree = len(s.trees) - 1
	}
	return s, nil
}

func (s *schema) addTable(t *table) {
	s.tables = append(s.tables, t)
	s.trees = append(s.trees, &tree{root: t.root, table: t})
	t.tree = len(s.trees) - 1
}

func loadTable(d *dbconn, name string, root uint32) (*table, error) {
	t := &table{name: name, root: root}
	rows, err := d.all(`SELECT cid, name, type, "notnull", dflt_value IS NOT NULL AND upper(dflt_value) <> 'NULL', pk, hidden FROM pragma_table_xinfo(?)`, name)
	if err != nil {
		return nil, err
	}
	decls := make([]string, len(rows))
	ipk, npk := -1, 0
	for i, r := range rows {
		if num(r[6]) != 0 {
			return nil, unsupported("table %q has hidden or generated columns", name)
		}
		decls[i] = str(r[2])
		t.cols = append(t.cols, column{name: str(r[1]), store: int(num(r[0])), notNull: num(r[3]) != 0,
			hasDefault: num(r[4]) != 0, aff: affinityOf(decls[i])})
		if num(r[5]) > 0 {
			npk++
			if strings.EqualFold(strings.TrimSpace(decls[i]), "INTEGER") {
				ipk = i
			}
		}
	}
	// The INTEGER PRIMARY KEY is the rowid: a single-column key declared exactly INTEGER with no
	// index of its own ("INTEGER PRIMARY KEY DESC" keeps an index and is an ordinary column).
	if npk == 1 && ipk >= 0 {
		pk, err := d.all(`SELECT count(*) FROM pragma_index_list(?) WHERE origin='pk'`, name)
		if err != nil {
			return nil, err
		}
		if len(pk) == 1 && num(pk[0][0]) == 0 {
			t.cols[ipk].store = -1
		}
	}
	return t, nil
}

func loadIndex(d *dbconn, t *table, name string, root uint32) (*index, error) {
	ix := &index{name: name, root: root}
	l, err := d.all(`SELECT "unique", partial FROM pragma_index_list(?) WHERE name = ?`, t.name, name)
	if err != nil {
		return nil, err
	}
	if len(l) != 1 {
		return nil, unsupported("index %q not listed for %q", name, t.name)
	}
	ix.unique = num(l[0][0]) != 0
	if num(l[0][1]) != 0 {
		return nil, unsupported("partial index %q", name)
	}
	rows, err := d.all(`SELECT cid, "desc", coll, key FROM pragma_index_xinfo(?) ORDER BY seqno`, name)
	if err != nil {
		return nil, err
	}
	for _, r := range rows {
		cid := int(num(r[0]))
		if num(r[3]) == 0 {
			if cid != -1 {
				return nil, unsupported("index %q stores extra columns", name)
			}
			continue // the rowid, always last
		}
		if cid < 0 || cid >= len(t.cols) {
			return nil, unsupported("expression index %q", name)
		}
		if coll := str(r[2]); !strings.EqualFold(coll, "BINARY") {
			return nil, unsupported("index %q uses collation %s", name, coll)
		}
		ix.cols = append(ix.cols, t.cols[cid].store)
		ix.desc = append(ix.desc, num(r[1]) != 0)
	}
	ix.nKey = len(ix.cols)
	if ix.nKey == 0 {
		return nil, unsupported("index %q has no key columns", name)
	}
	return ix, nil
}
