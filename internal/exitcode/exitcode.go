// Package exitcode holds the one exit-status contract every kanban-doctor command follows.
package exitcode

import (
	"context"
	"errors"
	"fmt"
)

// The exit statuses, documented in the README and in --help. Other programs depend on them.
const (
	OK           = 0 // nothing wrong
	Warning      = 1 // a suspicion that was cleared (transient, false-positive), or duplicates found with --fail-on-duplicates
	Corrupt      = 2 // corruption confirmed
	Inconclusive = 3 // busy, locked, timed out: no verdict could be reached
	Usage        = 4 // bad flags or arguments
	Operational  = 8 // the tool could not do its job: unreadable path, permission, a named file that is not a database
)

// Help is the exit-code table as printed by --help and the README.
const Help = `EXIT CODES:
   0  ok
   1  warning: a suspicion that was cleared (transient, false-positive), duplicates found with --fail-on-duplicates
   2  corruption confirmed
   3  inconclusive: busy, locked or timed out
   4  usage error
   8  operational error: missing or unreadable path, permission denied, a named file that is not
      a SQLite database (a board's kanban.db that is not one is a corrupt board: 2)
   Several boards: corrupt (2) wins over every other status; then 4, 8, 3, 1, 0.`

// Name is a status's word, as the JSON error envelope and the exit table say it.
func Name(code int) string {
	switch code {
	case OK:
		return "ok"
	case Warning:
		return "warning"
	case Corrupt:
		return "corrupt"
	case Inconclusive:
		return "inconclusive"
	case Usage:
		return "usage"
	}
	return "operational"
}

// Error carries an exit status with the error that caused it.
type Error struct {
	Code  int
	Err   error
	Quiet bool // the command already reported; print nothing more
}

func (e *Error) Error() string { return e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

// Wrap attaches an exit status to err. A nil err stays nil.
func Wrap(code int, err error) error {
	if err == nil {
		return nil
	}
	return &Error{Code: code, Err: err}
}

// Status is an exit status for a command that has already printed its result (a verdict).
func Status(code int) error {
	if code == OK {
		return nil
	}
	return &Error{Code: code, Err: fmt.Errorf("exit status %d", code), Quiet: true}
}

// IsQuiet reports whether err should not be printed.
func IsQuiet(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Quiet
}

// Errorf is fmt.Errorf with an exit status.
func Errorf(code int, format string, args ...any) error {
	return &Error{Code: code, Err: fmt.Errorf(format, args...)}
}

// Of maps an error to its exit status: nil is OK, an *Error its own code, a cancelled or timed-out
// context Inconclusive (never corruption), anything else Operational.
func Of(err error) int {
	if err == nil {
		return OK
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return Inconclusive
	}
	return Operational
}

// Worst returns the status a multi-input run exits with: a confirmed corruption on any input wins
// over everything else (an alert on exit 2 must never miss a corrupt board because another input
// failed); after it usage, then operational errors, then Inconclusive < Warning < OK.
func Worst(codes ...int) int {
	rank := func(c int) int {
		switch c {
		case OK:
			return 0
		case Warning:
			return 1
		case Inconclusive:
			return 2
		case Operational:
			return 3
		case Usage:
			return 4
		case Corrupt:
			return 5
		}
		return 3
	}
	w := OK
	for _, c := range codes {
		if rank(c) > rank(w) {
			w = c
		}
	}
	return w
}
