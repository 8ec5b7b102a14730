package reports

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// openPTY opens a real pseudo-terminal pair: the returned slave is a terminal.
func openPTY(t *testing.T) (master, slave *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals here: %v", err)
	}
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		m.Close()
		t.Skipf("unlockpt: %v", err)
	}
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		m.Close()
		t.Skipf("ptsname: %v", err)
	}
	s, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		m.Close()
		t.Skipf("open pts: %v", err)
	}
	t.Cleanup(func() { m.Close(); s.Close() })
	return m, s
}

func TestProgressSilentOffTerminal(t *testing.T) {
	devnull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer devnull.Close()
	var buf bytes.Buffer
	for name, w := range map[string]io.Writer{"buffer": &buf, "/dev/null (a character device, not a terminal)": devnull} {
		if p := NewProgress(w); p != nil {
			t.Errorf("%s: NewProgress = %v, want nil (silent)", name, p)
		}
	}
	var p *Progress // nil is valid and silent
	p.Start("hashing", 100, true)
	p.Add(50)
	p.Done()
	if buf.Len() != 0 {
		t.Errorf("wrote %q off a terminal", buf.String())
	}
}

func TestProgressDrawsOnTerminal(t *testing.T) {
	master, slave := openPTY(t)
	p := NewProgress(slave)
	if p == nil {
		t.Fatal("NewProgress on a pseudo-terminal returned nil")
	}
	p.Start("hashing backups", 1<<20, true)
	p.Add(1 << 19)
	p.Add(1 << 19)
	p.Start("checking backup contents", 3, false) // finishes the first stage
	p.Add(3)
	p.Done()
	slave.Close()
	out, _ := io.ReadAll(master) // ends with EIO once the slave is closed
	s := string(out)
	for _, want := range []string{"hashing backups", "checking backup contents", "(0/3)"} {
		if !strings.Contains(s, want) {
			t.Errorf("terminal output lacks %q: %q", want, s)
		}
	}
}
