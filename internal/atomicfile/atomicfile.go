// Package atomicfile writes files so that a final name only ever holds complete, synced content.
package atomicfile

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// TempMarker is part of every temporary file name this package creates, so leftovers from a killed
// process are recognisable (see IsTemp and CleanTemps).
const TempMarker = ".kdtmp-"

// File is a temporary file that becomes the final name on Commit. Abort (or a crash) leaves the
// final name untouched.
type File struct {
	*os.File
	final string
	done  bool
}

// Create opens a temporary file in the same directory as final (so rename is atomic).
func Create(final string, perm os.FileMode) (*File, error) {
	dir, base := filepath.Split(final)
	if dir == "" {
		dir = "."
	}
	var rnd [6]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return nil, fmt.Errorf("create temp for %s: %w", final, err)
	}
	tmp := filepath.Join(dir, "."+base+TempMarker+hex.EncodeToString(rnd[:]))
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		var pe *os.PathError // name the directory the user can act on, not our temp name
		if errors.As(err, &pe) {
			return nil, fmt.Errorf("create %s: cannot create a file in %s: %w", final, filepath.Clean(dir), pe.Err)
		}
		return nil, fmt.Errorf("create temp for %s: %w", final, err)
	}
	return &File{File: f, final: final}, nil
}

// TempPath is the temporary file's name.
func (f *File) TempPath() string { return f.File.Name() }

// Retarget changes the final name before Commit, for names that depend on the content (a hash).
// The new name must be in the same directory, so the rename stays atomic.
func (f *File) Retarget(final string) error {
	if filepath.Clean(filepath.Dir(final)) != filepath.Clean(filepath.Dir(f.final)) {
		return fmt.Errorf("retarget %s: not in the directory of %s", final, f.final)
	}
	f.final = final
	return nil
}

// Commit fsyncs the data, renames it over the final name and fsyncs the directory.
func (f *File) Commit() error {
	tmp, err := f.finish()
	if err != nil {
		return err
	}
	return Publish(tmp, f.final)
}

// CommitNoReplace is Commit that refuses to replace an existing final name: it links the temp file
// to the final name (failing with os.ErrExist if present), then removes the temp name.
func (f *File) CommitNoReplace() error {
	tmp, err := f.finish()
	if err != nil {
		return err
	}
	if err := os.Link(tmp, f.final); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("publish %s: %w", f.final, err)
	}
	if err := os.Remove(tmp); err != nil {
		return fmt.Errorf("remove %s: %w", tmp, err)
	}
	return SyncDir(filepath.Dir(f.final))
}

// finish syncs and closes the temporary file once, removing it on failure, and returns its name.
func (f *File) finish() (string, error) {
	if f.done {
		return "", fmt.Errorf("commit %s: already finished", f.final)
	}
	f.done = true
	tmp := f.File.Name()
	if err := f.File.Sync(); err != nil {
		f.File.Close()
		os.Remove(tmp)
		return "", fmt.Errorf("sync %s: %w", tmp, err)
	}
	if err := f.File.Close(); err != nil {
		os.Remove(tmp)
		return "", fmt.Errorf("close %s: %w", tmp, err)
	}
	return tmp, nil
}

// Abort removes the temporary file. It is safe to call after Commit.
func (f *File) Abort() {
	if f.done {
		return
	}
	f.done = true
	f.File.Close()
	os.Remove(f.File.Name())
}

// Publish renames a complete, already-synced temporary file over final and fsyncs the directory.
func Publish(tmp, final string) error {
	if err := os.Rename(tmp, final); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("rename %s: %w", final, err)
	}
	return SyncDir(filepath.Dir(final))
}

// WriteFile writes data to name atomically.
func WriteFile(name string, data []byte, perm os.FileMode) error {
	return WriteFrom(name, perm, func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	})
}

// WriteFrom writes what fill produces to name atomically.
func WriteFrom(name string, perm os.FileMode, fill func(io.Writer) error) error {
	f, err := Create(name, perm)
	if err != nil {
		return err
	}
	if err := fill(f); err != nil {
		f.Abort()
		return fmt.Errorf("write %s: %w", name, err)
	}
	return f.Commit()
}

// SyncDir fsyncs a directory so a rename or unlink in it is durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync dir %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync dir %s: %w", dir, err)
	}
	return nil
}

// IsTemp reports whether a base name is one of this package's temporary files.
func IsTemp(base string) bool {
	return strings.HasPrefix(base, ".") && strings.Contains(base, TempMarker)
}

// CleanTemps removes leftover temporary files in dir whose final name starts with prefix (a
// killed run's debris) and returns their names. Only regular files are removed.
func CleanTemps(dir, prefix string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("clean temps in %s: %w", dir, err)
	}
	var removed []string
	for _, e := range entries {
		n := e.Name()
		if !IsTemp(n) || !strings.HasPrefix(n, "."+prefix) || !e.Type().IsRegular() {
			continue
		}
		p := filepath.Join(dir, n)
		if err := os.Remove(p); err == nil {
			removed = append(removed, p)
		}
	}
	return removed, nil
}
