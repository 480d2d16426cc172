package client

import "sync"

// seen remembers, for the requests a client lately wrote or read, the last
// stream sequence it knows each has: a read showing less comes from a
// replica of the stream that lags, and is asked for again. It holds at
// most seenMax requests; past that it forgets one at random, which costs
// only that request's guarantee.
type seen struct {
	mu sync.Mutex
	m  map[string]uint64
}

const seenMax = 16384

func (s *seen) get(domain, id string) uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.m[domain+"/"+id]
}

func (s *seen) note(domain, id string, seq uint64) {
	k := domain + "/" + id
	s.mu.Lock()
	defer s.mu.Unlock()
	if seq <= s.m[k] {
		return
	}
	if _, ok := s.m[k]; !ok && len(s.m) >= seenMax {
		for old := range s.m {
			delete(s.m, old)
			break
		}
	}
	s.m[k] = seq
}
