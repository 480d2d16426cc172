package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/errgroup"

	"github.com/writ-dev/writ/events"
	"github.com/writ-dev/writ/history"
	"github.com/writ-dev/writ/identity"
	"github.com/writ-dev/writ/internal/store"
)

// Reach is the domains whose audit streams a client can read: its home,
// and each other domain of its trust bundle whose JetStream answers from
// the client's NATS, across leafnodes. An approver named by another
// domain's flows answers that domain's requests from their own setup.
type Reach struct {
	// Domains are those that answered, the home first, then by name.
	Domains []string
	// Missed are the domains whose JetStream this NATS knows of (a
	// leafnode links them) but that did not answer, each with why: their
	// requests cannot be listed, and an id cannot be told apart from one
	// of theirs. A trusted domain no link reaches is not missed: it is
	// not in reach at all.
	Missed map[string]error
}

// ErrUnread is why a domain is missed: it is linked, and its stream did
// not answer, or said it is not there.
var ErrUnread = errors.New("the stream cannot be read from here")

// reachPatience bounds how long a domain's stream has to answer whether it
// is there; a read's own patience.
const reachPatience = 2 * time.Second

// Reach finds the domains this client can read. Every domain of the trust
// bundle is asked for its audit stream's info at once, through its
// JetStream domain ($JS.<domain>.API, which the principal and reader roles
// may ask, and leafnodes carry): nobody answering at once means no link
// reaches it. A client with no home (one NATS holding every domain's
// requests) reads every domain of its bundle there.
func (c *Client) Reach(ctx context.Context) Reach {
	var others []string
	for d := range c.bundle.Domains {
		if d != c.home {
			others = append(others, d)
		}
	}
	slices.Sort(others)
	out := Reach{Missed: map[string]error{}}
	if c.home == "" {
		out.Domains = others
		return out
	}
	out.Domains = []string{c.home}
	answered := make([]error, len(others))
	var wg sync.WaitGroup
	for i, d := range others {
		wg.Go(func() { answered[i] = c.probe(ctx, d) })
	}
	wg.Wait()
	for i, d := range others {
		switch err := answered[i]; {
		case err == nil:
			out.Domains = append(out.Domains, d)
		case errors.Is(err, nats.ErrNoResponders):
		default:
			out.Missed[d] = err
		}
	}
	return out
}

// probe asks domain d's JetStream for the audit stream's info.
func (c *Client) probe(ctx context.Context, d string) error {
	ctx, cancel := context.WithTimeout(ctx, reachPatience)
	defer cancel()
	m, err := c.nc.RequestWithContext(ctx, store.DomainAPI(d)+".STREAM.INFO."+c.stream, nil)
	switch {
	case errors.Is(err, nats.ErrNoResponders):
		return err
	case errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("%w: no answer within %s", ErrUnread, reachPatience)
	case err != nil:
		return fmt.Errorf("%w: %w", ErrUnread, err)
	}
	var info struct {
		Error *struct {
			Description string `json:"description"`
		} `json:"error"`
	}
	if err := json.Unmarshal(m.Data, &info); err != nil {
		return fmt.Errorf("%w: %w", ErrUnread, err)
	}
	if info.Error != nil {
		return fmt.Errorf("%w: stream %s: %s", ErrUnread, c.stream, info.Error.Description)
	}
	return nil
}

// ErrAmbiguous is returned by FindIn for an id that several domains hold.
var ErrAmbiguous = errors.New("the request id is in several domains")

// AmbiguousError names the domains that hold a request id.
type AmbiguousError struct {
	ID      string
	Domains []string
}

func (e *AmbiguousError) Error() string {
	return fmt.Sprintf("%v: %s is in %s", ErrAmbiguous, e.ID, strings.Join(e.Domains, ", "))
}

func (e *AmbiguousError) Is(target error) bool { return target == ErrAmbiguous }

// ErrNotAnID refuses an id that is not a request id (a UUID).
var ErrNotAnID = history.ErrNotAnID

// FindIn returns the one domain, of domains, whose stream holds a request
// with id: ErrNotFound when none does, an *AmbiguousError (ErrAmbiguous)
// when several do. Ids are chosen by requesters, so a second request with
// the same id in another domain is possible: a vote meant for one must not
// go to the other. A domain that cannot be read fails the search, since it
// may hold the id too.
func (c *Client) FindIn(ctx context.Context, id string, domains []string) (string, error) {
	if err := checkID(id); err != nil {
		return "", err
	}
	held := make([]bool, len(domains))
	g, gctx := errgroup.WithContext(ctx)
	for i, d := range domains {
		g.Go(func() error {
			m, err := c.trail.Reader(d).Last(gctx, events.Subject(d, id, events.KindRequested))
			if err != nil {
				return fmt.Errorf("could not search %s's requests for %s: %w", d, id, err)
			}
			held[i] = m != nil
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return "", err
	}
	var in []string
	for i, d := range domains {
		if held[i] {
			in = append(in, d)
		}
	}
	switch len(in) {
	case 0:
		return "", fmt.Errorf("%w: %s in %s", ErrNotFound, id, strings.Join(domains, ", "))
	case 1:
		return in[0], nil
	}
	return "", &AmbiguousError{ID: id, Domains: in}
}

// PendingIn is Pending over several domains, each read in its own stream
// (see Reach), oldest first: everything that waits for who in one list.
func (c *Client) PendingIn(ctx context.Context, domains []string, who identity.Principal) ([]*Request, error) {
	lists := make([][]*Request, len(domains))
	g, gctx := errgroup.WithContext(ctx)
	for i, d := range domains {
		g.Go(func() error {
			var err error
			if lists[i], err = c.Pending(gctx, d, who); err != nil {
				return fmt.Errorf("pending requests of %s: %w", d, err)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	out := slices.Concat(lists...)
	// Request ids are UUIDv7: in the order they were made.
	slices.SortStableFunc(out, func(a, b *Request) int { return strings.Compare(a.State.ID, b.State.ID) })
	return out, nil
}

// jsFor reaches domain's JetStream as readerFor reads its stream.
func (c *Client) jsFor(domain string) (jetstream.JetStream, error) {
	if c.home != "" && domain != c.home && domain != "*" {
		return jetstream.NewWithDomain(c.nc, domain)
	}
	return c.js, nil
}
