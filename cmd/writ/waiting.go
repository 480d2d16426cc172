package main

import (
	"fmt"
	"io"
	"sync"
	"time"
)

// waitQuiet is how long a client command waits for the cluster before it
// says so: a leader election takes seconds, a retried read milliseconds.
const waitQuiet = time.Second

// waitNotice is a client command's store.Waiter: once its reads and
// appends have waited for the cluster for waitQuiet, it says so on stderr,
// and says when the cluster answers again. However many reads wait at
// once (a replay reads several histories ahead), it speaks once a wait.
type waitNotice struct {
	w     io.Writer
	quiet time.Duration

	mu     sync.Mutex
	active int    // operations waiting now
	reason string // what the first of them waits for
	timer  *time.Timer
	shown  bool // the wait was announced
}

func newWaitNotice(w io.Writer) *waitNotice { return &waitNotice{w: w, quiet: waitQuiet} }

// Waiting implements store.Waiter.
func (n *waitNotice) Waiting(reason string) func() {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.active++
	if n.active == 1 {
		n.reason = reason
		n.timer = time.AfterFunc(n.quiet, n.announce)
	}
	var once sync.Once
	return func() { once.Do(n.answered) }
}

func (n *waitNotice) announce() {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.active > 0 && !n.shown {
		n.shown = true
		fmt.Fprintf(n.w, "waiting for the cluster (%s)…\n", n.reason)
	}
}

func (n *waitNotice) answered() {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.active--; n.active > 0 {
		return
	}
	n.timer.Stop()
	if n.shown {
		n.shown = false
		fmt.Fprintln(n.w, "the cluster answers again")
	}
}
