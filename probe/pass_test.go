package probe

import (
	"context"
	"testing"

	"github.com/kanban-doctor/kanban-doctor/internal/fixture"
	"github.com/kanban-doctor/kanban-doctor/internal/sqlitex"
)

// TestParallelFullCheckAgreesWithIntegrityCheck: on every fixture, the parallel full pass (one
// whole-database quick_check beside integrity_check(T) per table) is ok exactly when one
// whole-database integrity_check is ok, and the class derived from its answer is the same.
func TestParallelFullCheckAgreesWithIntegrityCheck(t *testing.T) {
	all, err := fixture.All()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range all {
		t.Run(f.Name, func(t *testing.T) {
			db, err := f.CopyDir(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			var facts fileFacts
			readHeaderInto(db, &facts) // before the connection exists
			ctx := context.Background()
			c, closeC, err := sqlitex.Conn(ctx, db, sqlitex.Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer closeC()
			whole := runPass(ctx, c, pragmaFor(true, ""))
			par := fullParallel(ctx, c, db, sqlitex.Options{}, 3)
			if whole.ok() != par.ok() || whole.suspicious() != par.suspicious() {
				t.Fatalf("whole %q (ok %v), parallel %q (ok %v)", whole.summary(), whole.ok(), par.summary(), par.ok())
			}
			if whole.ok() {
				return
			}
			cw, _ := classify(ctx, c, facts, whole, false)
			cp, _ := classify(ctx, c, facts, par, false)
			if cw != cp {
				t.Errorf("class from messages: whole %s, parallel %s", cw, cp)
			}
		})
	}
}
