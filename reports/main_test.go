package reports

import (
	"os"
	"testing"

	"github.com/kanban-doctor/kanban-doctor/internal/reexec"
)

// TestMain lets the probe start its clean confirmation child from this test binary.
func TestMain(m *testing.M) {
	reexec.Init()
	os.Exit(m.Run())
}
