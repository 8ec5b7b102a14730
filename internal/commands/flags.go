package commands

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v2"
)

// millis is a wait given as a duration ("5s", "1m30s", "250ms"), like every other --timeout, or as
// the older bare number of milliseconds ("5000"), which scripts already pass.
type millis struct{ d time.Duration }

func (m *millis) Set(s string) error {
	s = strings.TrimSpace(s)
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		m.d = time.Duration(n) * time.Millisecond
		return nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("want a duration such as 5s or 2m (or a number of milliseconds)")
	}
	m.d = d
	return nil
}

func (m *millis) String() string {
	if m == nil {
		return ""
	}
	return m.d.String()
}

// busyTimeoutFlag is --busy-timeout with its default.
func busyTimeoutFlag(def time.Duration, usage string) *cli.GenericFlag {
	return &cli.GenericFlag{Name: "busy-timeout", Value: &millis{def}, DefaultText: def.String(), Usage: usage}
}

// busyTimeoutMS reads --busy-timeout as SQLite's milliseconds; a negative wait is a usage error.
func busyTimeoutMS(c *cli.Context) (int, error) {
	m, _ := c.Generic("busy-timeout").(*millis)
	if m == nil {
		return 0, fmt.Errorf("--busy-timeout: not set")
	}
	if m.d < 0 {
		return 0, fmt.Errorf("--busy-timeout must not be negative")
	}
	return int(m.d / time.Millisecond), nil
}
