package dirlock

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// ErrHeld means another process holds the lock.
var ErrHeld = errors.New("the directory is in use by another process")

// Holder is what the lock file says about the process that holds it.
type Holder struct {
	PID     int
	Started time.Time
	Note    string // what the holder does there, e.g. its listen address
}

// HeldError is the refusal of a second process: who holds the lock, as far
// as its file says.
type HeldError struct {
	Path   string
	Holder Holder // zero when the file could not be read
}

func (e *HeldError) Error() string {
	h := e.Holder
	if h.PID == 0 {
		return fmt.Sprintf("%s is held by another process", e.Path)
	}
	s := fmt.Sprintf("held by process %d since %s", h.PID, h.Started.Local().Format(time.DateTime))
	if h.Note != "" {
		s += " (" + h.Note + ")"
	}
	return s
}

func (e *HeldError) Unwrap() error { return ErrHeld }

// Lock is a held lock. Release it when done; the process's end releases it
// too.
type Lock struct {
	f       *os.File
	started time.Time
}

// Acquire takes the lock on dir/name without waiting, writing this
// process's id, the time and note into the file. It fails with a
// *HeldError when another process holds it.
func Acquire(dir, name, note string) (*Lock, error) {
	path := filepath.Join(dir, name)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	if err := tryLock(f); err != nil {
		f.Close()
		if errors.Is(err, errWouldBlock) {
			return nil, &HeldError{Path: path, Holder: readHolder(path)}
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	l := &Lock{f: f, started: time.Now()}
	if err := l.SetNote(note); err != nil {
		unlock(f)
		f.Close()
		return nil, err
	}
	return l, nil
}

// SetNote rewrites what the lock file says the holder does, e.g. the
// address it listens on once it knows it.
func (l *Lock) SetNote(note string) error {
	line := fmt.Sprintf("%d %s %s\n", os.Getpid(), l.started.UTC().Format(time.RFC3339), strings.ReplaceAll(note, "\n", " "))
	err := l.f.Truncate(0)
	if err == nil {
		_, err = l.f.WriteAt([]byte(line), 0)
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", l.f.Name(), err)
	}
	return nil
}

// Release gives the lock up. The file stays (removing it would race with a
// process that just opened it).
func (l *Lock) Release() error {
	if l == nil || l.f == nil {
		return nil
	}
	err := unlock(l.f)
	if cerr := l.f.Close(); err == nil {
		err = cerr
	}
	l.f = nil
	return err
}

// readHolder parses the lock file; a file it cannot parse gives a zero
// Holder (the refusal still stands).
func readHolder(path string) Holder {
	b, err := os.ReadFile(path)
	if err != nil {
		return Holder{}
	}
	fields := strings.SplitN(strings.TrimSpace(string(b)), " ", 3)
	if len(fields) < 2 {
		return Holder{}
	}
	pid, err := strconv.Atoi(fields[0])
	if err != nil || pid <= 0 {
		return Holder{}
	}
	at, err := time.Parse(time.RFC3339, fields[1])
	if err != nil {
		return Holder{}
	}
	h := Holder{PID: pid, Started: at}
	if len(fields) == 3 {
		h.Note = fields[2]
	}
	return h
}
