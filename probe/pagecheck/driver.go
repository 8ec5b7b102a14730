package pagecheck

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
)

// dbconn runs statements on the driver connection itself (inside sql.Conn.Raw): the whole check
// happens in one Raw call, so that a fault while reading a memory-mapped page (the file shrank
// under us) leaves no database/sql state behind that could hang a later Close.
type dbconn struct {
	dc   any // the driver connection
	ctx  context.Context
	q    driver.QueryerContext
	e    driver.ExecerContext
	read driver.StmtQueryContext
	rs   driver.Stmt
	raw  *rawReader // single-page reads on the raw handle, when there is one
}

func newDBConn(ctx context.Context, dc any) (*dbconn, error) {
	q, ok1 := dc.(driver.QueryerContext)
	e, ok2 := dc.(driver.ExecerContext)
	p, ok3 := dc.(driver.ConnPrepareContext)
	if !ok1 || !ok2 || !ok3 {
		return nil, fmt.Errorf("%w: driver connection %T", ErrUnsupported, dc)
	}
	d := &dbconn{dc: dc, ctx: ctx, q: q, e: e}
	if h, tls := handle(dc); h != 0 {
		raw, err := newRawReader(h, tls)
		if err != nil {
			return nil, err
		}
		d.raw = raw
		return d, nil
	}
	return d, d.prepare(p)
}

func (d *dbconn) prepare(p driver.ConnPrepareContext) error {
	st, err := p.PrepareContext(d.ctx, "SELECT data FROM sqlite_dbpage WHERE pgno = ?")
	if err != nil {
		return err
	}
	sq, ok := st.(driver.StmtQueryContext)
	if !ok {
		st.Close()
		return fmt.Errorf("%w: driver statement %T", ErrUnsupported, st)
	}
	d.rs, d.read = st, sq
	return nil
}

func (d *dbconn) close() {
	if d.raw != nil {
		d.raw.close()
	}
	if d.rs != nil {
		d.rs.Close()
	}
}

func named(args []any) []driver.NamedValue {
	nv := make([]driver.NamedValue, len(args))
	for i, a := range args {
		if s, ok := a.(string); ok {
			nv[i] = driver.NamedValue{Ordinal: i + 1, Value: s}
			continue
		}
		nv[i] = driver.NamedValue{Ordinal: i + 1, Value: a}
	}
	return nv
}

func (d *dbconn) exec(q string) error {
	_, err := d.e.ExecContext(d.ctx, q, nil)
	return err
}

// all runs a query and returns every row.
func (d *dbconn) all(q string, args ...any) ([][]driver.Value, error) {
	rows, err := d.q.QueryContext(d.ctx, q, named(args))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out [][]driver.Value
	for {
		r := make([]driver.Value, len(rows.Columns()))
		if err := rows.Next(r); errors.Is(err, io.EOF) {
			return out, nil
		} else if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
}

// readPage reads one page through SQLite.
func (d *dbconn) readPage(n uint32) ([]byte, error) {
	if d.raw != nil {
		return d.raw.read(n)
	}
	rows, err := d.read.QueryContext(d.ctx, []driver.NamedValue{{Ordinal: 1, Value: int64(n)}})
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	v := make([]driver.Value, 1)
	if err := rows.Next(v); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("page %d: no such page", n)
		}
		return nil, err
	}
	b, _ := v[0].([]byte)
	return b, nil
}

func num(v driver.Value) int64 {
	switch x := v.(type) {
	case int64:
		return x
	case bool:
		if x {
			return 1
		}
	case float64:
		return int64(x)
	}
	return 0
}

func str(v driver.Value) string {
	switch x := v.(type) {
	case string:
		return x
	case []byte:
		return string(x)
	}
	return ""
}
