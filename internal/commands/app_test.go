package commands

import (
	"io"
	"reflect"
	"strings"
	"testing"
)

func TestFlagsFirst(t *testing.T) {
	app := New(io.Discard, io.Discard)
	cases := []struct{ in, want string }{
		{"kd verify DB --json", "kd verify --json DB"},
		{"kd verify DB --timeout 2s A", "kd verify --timeout 2s DB A"},
		{"kd verify DB --timeout=2s", "kd verify --timeout=2s DB"},
		{"kd verify DB --reverify -1", "kd verify --reverify -1 DB"},
		{"kd dedupe-backups DIR --apply --action move --to Q", "kd dedupe-backups --apply --action move --to Q DIR"},
		{"kd verify DB --bogus", "kd verify --bogus DB"},
		{"kd verify -- -odd", "kd verify -- -odd"},
		{"kd verify --json DB -- --weird", "kd verify --json -- DB --weird"},
		{"kd verify DB -- plain", "kd verify DB plain"},
		{"kd verify - --json", "kd verify --json -"},
		{"kd --help", "kd --help"},
		{"kd nosuch DB --json", "kd nosuch DB --json"},
		{"kd", "kd"},
	}
	for _, c := range cases {
		got := flagsFirst(app, strings.Fields(c.in))
		if want := strings.Fields(c.want); !reflect.DeepEqual(got, want) {
			t.Errorf("flagsFirst(%q) = %q, want %q", c.in, got, want)
		}
	}
}
