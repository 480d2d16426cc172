package history

import (
	"context"

	"github.com/writ-dev/writ/events"
)

// LoseAcks makes l's next n appends store their event and then report an
// outcome it did not learn, as when the acknowledgement is lost with a
// server going down.
func LoseAcks(l *Log, n int, lost error) {
	real := l.appendOnce
	l.appendOnce = func(ctx context.Context, out events.Outgoing, last uint64, filter string) (uint64, error) {
		seq, err := real(ctx, out, last, filter)
		if err == nil && n > 0 {
			n--
			return 0, lost
		}
		return seq, err
	}
}

// FailAppends makes l's appends report an outcome they did not learn,
// without storing anything, until n have.
func FailAppends(l *Log, n int, lost error) {
	real := l.appendOnce
	l.appendOnce = func(ctx context.Context, out events.Outgoing, last uint64, filter string) (uint64, error) {
		if n > 0 {
			n--
			return 0, lost
		}
		return real(ctx, out, last, filter)
	}
}

// Note tells l that the history of domain/id holds sequence seq, as an
// append or a read there would.
func Note(l *Log, domain, id string, seq uint64) { l.note(domain, id, seq) }
