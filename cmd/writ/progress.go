package main

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// Progress bars are for long replays, on a terminal, redrawn at most ten
// times a second.
const (
	progressMin   = 2000 // messages; fewer draw nothing
	progressEvery = 100 * time.Millisecond
)

// progressBar draws a one-line bar on a terminal: how far through the stream
// a scan is, how fast it goes and how long is left. It draws nothing when
// its writer is not a terminal or the total is small, and nothing in the
// first tenth of a second, so that a quick scan does not flash one.
type progressBar struct {
	w     io.Writer
	tty   bool
	now   func() time.Time
	start time.Time
	last  time.Time // when it last drew
	shown bool      // a bar is on the line
}

func newProgressBar(w io.Writer, tty bool, now func() time.Time) *progressBar {
	t := now()
	return &progressBar{w: w, tty: tty, now: now, start: t, last: t}
}

// update says the scan has passed done of total messages.
func (p *progressBar) update(done, total uint64) {
	if !p.tty || total <= progressMin {
		return
	}
	now := p.now()
	if now.Sub(p.last) < progressEvery {
		return
	}
	p.last, p.shown = now, true
	fmt.Fprint(p.w, "\r"+p.render(done, total, now.Sub(p.start))+"\x1b[K")
}

// clear removes the bar, if one is shown.
func (p *progressBar) clear() {
	if p.shown {
		fmt.Fprint(p.w, "\r\x1b[K")
		p.shown = false
	}
}

// above returns a writer for output that shares the terminal with the
// bar: the bar is cleared before anything is written, and drawn again at
// the next update.
func (p *progressBar) above(w io.Writer) io.Writer {
	if !p.tty {
		return w
	}
	return writerFunc(func(b []byte) (int, error) {
		p.clear()
		return w.Write(b)
	})
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(b []byte) (int, error) { return f(b) }

func (p *progressBar) render(done, total uint64, elapsed time.Duration) string {
	const width = 24
	done = min(done, total)
	frac := float64(done) / float64(total)
	filled := int(frac * width)
	bar := strings.Repeat("=", filled)
	if filled < width {
		bar += ">" + strings.Repeat(" ", width-filled-1)
	}
	rate, eta := 0.0, "?"
	if s := elapsed.Seconds(); s > 0 && done > 0 {
		rate = float64(done) / s
		eta = (time.Duration(float64(total-done) / rate * float64(time.Second))).Round(time.Second).String()
	}
	return fmt.Sprintf("[%s] %3d%%  %s/%s events  %s events/s  ETA %s",
		bar, int(frac*100), thousands(done), thousands(total), thousands(uint64(rate)), eta)
}

// thousands writes n with thousands separators: 12,345.
func thousands(n uint64) string {
	s := strconv.FormatUint(n, 10)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}
