package client

import "github.com/writ-dev/writ/internal/fifo"

// seen remembers, for the requests a client lately wrote or read, the last
// stream sequence it knows each has: a read showing less comes from a
// replica of the stream that lags, and is asked for again. It holds at
// most seenMax requests; forgetting the oldest costs only its guarantee.
type seen struct{ c *fifo.Cache[string, uint64] }

const seenMax = 16384

func newSeen() seen { return seen{fifo.New[string, uint64](seenMax)} }

func (s seen) get(domain, id string) uint64 {
	seq, _ := s.c.Get(domain + "/" + id)
	return seq
}

func (s seen) note(domain, id string, seq uint64) {
	s.c.Update(domain+"/"+id, func(old uint64, _ bool) uint64 { return max(old, seq) })
}
