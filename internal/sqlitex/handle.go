package sqlitex

import (
	"reflect"

	"modernc.org/libc"
)

// Handle is the sqlite3* of a modernc driver connection (as sql.Conn.Raw hands it over) and the
// libc thread state the driver uses for it; both are unexported there and read by reflection.
// It returns 0 and nil for anything else. Code that calls SQLite's C API on the handle while it
// can fault mid-statement should use that same thread state: SQLite's connection mutex is
// recursive per thread, so only it can still close the connection afterwards.
func Handle(dc any) (uintptr, *libc.TLS) {
	v := reflect.ValueOf(dc)
	if v.Kind() != reflect.Pointer || v.Elem().Kind() != reflect.Struct {
		return 0, nil
	}
	db, tls := v.Elem().FieldByName("db"), v.Elem().FieldByName("tls")
	if !db.IsValid() || db.Kind() != reflect.Uintptr || db.Uint() == 0 {
		return 0, nil
	}
	if !tls.IsValid() || tls.Type() != reflect.TypeOf((*libc.TLS)(nil)) || tls.IsNil() {
		return uintptr(db.Uint()), nil
	}
	return uintptr(db.Uint()), (*libc.TLS)(tls.UnsafePointer())
}
