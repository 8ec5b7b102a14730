// Package testenv gives tests the external tools they use as oracles (the sqlite3 CLI, jdupes):
// skipped on a developer machine that lacks them, a failure in CI, where .ci/run installs them.
package testenv

import (
	"os"
	"os/exec"
	"testing"
)

// Tool returns the path of the named program. When it is missing the test is skipped, unless the
// CI environment variable is set: then a missing oracle is a failure, never a silent skip.
func Tool(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("%s is missing in CI (.ci/run installs the Debian package that provides it)", name)
	}
	t.Skipf("%s not installed", name)
	return ""
}
