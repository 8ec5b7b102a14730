// Package reports renders the result of every kanban-doctor command as text, JSON, Markdown or HTML;
// it formats and never decides.
package reports

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"time"
)

// Tool is the "tool" field of every JSON document.
const Tool = "kanban-doctor"

// version is set at link time (-ldflags "-X .../reports.version=v1.2.3"); otherwise the module
// version from build info, else "dev".
var version = ""

// Version is this build's version.
func Version() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}

// revision is set at link time (-ldflags "-X .../reports.revision=abc123"), for builds made
// without the VCS data Go stamps (a container build from a source tarball).
var revision = ""

// Revision is the VCS revision this binary was built from: the link-time value, else the
// vcs.revision Go stamps into a build made in a git checkout (with "-dirty" when it had
// uncommitted changes), else "unknown".
func Revision() string {
	if revision != "" {
		return revision
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	rev, dirty := "", false
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if rev == "" {
		return "unknown"
	}
	if dirty {
		rev += "-dirty"
	}
	return rev
}

// Now is the clock used for generated_at (tests pin it).
var Now = func() time.Time { return time.Now().UTC() }

// JSON writes v as one JSON document whose first fields are tool, version, command and
// generated_at, followed by v's own fields. v must marshal to a JSON object.
func JSON(w io.Writer, command string, v any) error {
	body, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode %s result: %w", command, err)
	}
	body = bytes.TrimSpace(body)
	if len(body) < 2 || body[0] != '{' {
		return fmt.Errorf("encode %s result: not a JSON object", command)
	}
	head, _ := json.Marshal(struct {
		Tool        string `json:"tool"`
		Version     string `json:"version"`
		Command     string `json:"command"`
		GeneratedAt string `json:"generated_at"`
	}{Tool, Version(), command, Now().Format(time.RFC3339)})
	var buf bytes.Buffer
	buf.Write(head[:len(head)-1])
	if len(body) > 2 {
		buf.WriteByte(',')
		buf.Write(body[1:])
	} else {
		buf.WriteByte('}')
	}
	var out bytes.Buffer
	if err := json.Indent(&out, buf.Bytes(), "", "  "); err != nil {
		return fmt.Errorf("encode %s result: %w", command, err)
	}
	out.WriteByte('\n')
	_, err = w.Write(out.Bytes())
	return err
}

// Color reports whether w is a terminal that should get colour: never with NO_COLOR set to a
// non-empty value (no-color.org: an empty NO_COLOR does not count) or TERM=dumb, never when w is
// not a character device.
func Color(w io.Writer) bool {
	if !colorAllowed(os.Getenv) {
		return false
	}
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// colorAllowed is what the environment says about colour.
func colorAllowed(getenv func(string) string) bool {
	return getenv("NO_COLOR") == "" && getenv("TERM") != "dumb"
}
