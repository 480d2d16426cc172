package consumers_test

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/writ-dev/writ/internal/writtest"
)

// A fresh setup's first minutes log nothing alarming: the auditor's first
// round on a stream with nothing in it yet is not a failed checkpoint, and
// the policy set's line carries no request_id (its record is no request).
func TestFreshSetupLogs(t *testing.T) {
	t.Run("auditor on an empty stream", func(t *testing.T) {
		e := writtest.Start(t, writtest.Options{NoServe: true})
		logs := &logRecorder{}
		e.Logger = slog.New(logs)
		e.ServeOnly("auditor") // no policy component: nothing is ever appended
		// The first round's outcome is the barrier: whichever line it
		// logs, nothing else it could log comes before it.
		var first string
		require.Eventually(t, func() bool {
			first = logs.find("nothing to checkpoint yet", "checkpoint failed")
			return first != ""
		}, 10*time.Second, 5*time.Millisecond)
		assert.Contains(t, first, "nothing to checkpoint yet")
		assert.Empty(t, logs.atLeast(slog.LevelWarn), "nothing is wrong with an empty stream")
	})

	t.Run("policy set", func(t *testing.T) {
		e := writtest.Start(t, writtest.Options{NoServe: true})
		logs := &logRecorder{}
		e.Logger = slog.New(logs)
		e.ServeOnly("policy")
		var line string
		require.Eventually(t, func() bool {
			line = logs.find("recorded the policy set")
			return line != ""
		}, 10*time.Second, 5*time.Millisecond)
		assert.NotContains(t, line, "request_id=")
		assert.Contains(t, line, "policy_digest=sha256:")
	})
}

// logRecorder keeps every log record as one line: level, message, attrs.
type logRecorder struct {
	mu    sync.Mutex
	lines []string
	level []slog.Level
}

func (l *logRecorder) Enabled(context.Context, slog.Level) bool { return true }

func (l *logRecorder) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s", r.Level, r.Message)
	r.Attrs(func(a slog.Attr) bool {
		fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
		return true
	})
	l.mu.Lock()
	l.lines, l.level = append(l.lines, b.String()), append(l.level, r.Level)
	l.mu.Unlock()
	return nil
}

func (l *logRecorder) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *logRecorder) WithGroup(string) slog.Handler      { return l }

// find returns the first line holding any of the messages, or "".
func (l *logRecorder) find(msgs ...string) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, line := range l.lines {
		if slices.ContainsFunc(msgs, func(m string) bool { return strings.Contains(line, m) }) {
			return line
		}
	}
	return ""
}

// atLeast returns the lines at level or above.
func (l *logRecorder) atLeast(level slog.Level) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for i, line := range l.lines {
		if l.level[i] >= level {
			out = append(out, line)
		}
	}
	return out
}
