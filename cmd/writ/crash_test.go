package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/writ-dev/writ/audit"
	"github.com/writ-dev/writ/client"
	"github.com/writ-dev/writ/config"
	"github.com/writ-dev/writ/identity"
	"github.com/writ-dev/writ/internal/store"
	"github.com/writ-dev/writ/request"
)

// TestCrashSoak runs `writ serve` as a process of its own and kills it
// with SIGKILL at random moments while requests arrive — auto-approved
// ones and two-approver ones — restarting it each time. Every request the
// stream acknowledged must end in exactly one outcome, granted, with every
// grant backed by its approvals, and the whole trail must verify. CI runs
// 500 requests; WRIT_SOAK_REQUESTS sets more (the long run:
// 10,000).
func TestCrashSoak(t *testing.T) {
	n := 500
	if v, err := strconv.Atoi(os.Getenv("WRIT_SOAK_REQUESTS")); err == nil && v > 0 {
		n = v
	}
	if testing.Short() {
		n = 100
	}
	bin := filepath.Join(t.TempDir(), "writ")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Stderr = os.Stderr
	require.NoError(t, build.Run())
	dir := filepath.Join(t.TempDir(), "writ")
	_, err := config.Init(dir, "acme")
	require.NoError(t, err)
	port := freeLoopbackPort(t)
	url := fmt.Sprintf("nats://127.0.0.1:%d", port)

	srv := &child{t: t, bin: bin, args: []string{"serve", "--dir", dir, "--port", strconv.Itoa(port), "--log-level", "warn"}}
	srv.start()
	t.Cleanup(srv.kill)

	bundle, err := identity.LoadBundle(filepath.Join(dir, "trust.json"))
	require.NoError(t, err)
	nc, err := operatorConn(t, dir, url, nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond),
		nats.ErrorHandler(func(*nats.Conn, *nats.Subscription, error) {})) // the crashes are the point
	require.NoError(t, err)
	defer nc.Close()
	cl, err := client.New(nc, client.Options{Bundle: bundle, Home: "acme"})
	require.NoError(t, err)
	who := func(name string) *identity.Identity {
		id, err := identity.LoadCreds(filepath.Join(dir, "creds", name+".creds"))
		require.NoError(t, err)
		return id
	}
	bot, carol, alice, bob := who("deploy-bot"), who("carol"), who("alice"), who("bob")

	// Kill and restart at random moments until the load is done.
	done := make(chan struct{})
	var kills atomic.Int64
	var killer sync.WaitGroup
	killer.Go(func() {
		rng := rand.New(rand.NewPCG(1, 2))
		for {
			select {
			case <-done:
				return
			case <-time.After(time.Duration(300+rng.IntN(1200)) * time.Millisecond):
			}
			srv.kill()
			kills.Add(1)
			srv.start()
		}
	})

	// The load: acknowledged requests are the ones Request returned an id
	// for; a failed attempt is tried again as a new request.
	type made struct {
		id     string
		review bool
	}
	var mu sync.Mutex
	var acked, unknown []made
	var refused atomic.Int64
	next := atomic.Int64{}
	deadline := time.Now().Add(max(5*time.Minute, time.Duration(n)*300*time.Millisecond))
	var load sync.WaitGroup
	for range 6 {
		load.Go(func() {
			for time.Now().Before(deadline) {
				i := next.Add(1)
				if i > int64(n) {
					return
				}
				review := i%4 == 0
				who, spec := bot, client.Spec{Domain: "acme", Action: "deploy", Resource: fmt.Sprintf("staging/svc-%d", i)}
				if review {
					who, spec = carol, client.Spec{Domain: "acme", Action: "restart", Resource: fmt.Sprintf("prod/svc-%d", i)}
				}
				for time.Now().Before(deadline) {
					ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
					id, err := cl.Request(ctx, who, spec)
					cancel()
					if err == nil {
						mu.Lock()
						acked = append(acked, made{id: id, review: review})
						mu.Unlock()
						break
					}
					if errors.Is(err, client.ErrOutcomeUnknown) {
						// It may be recorded yet: looked up at the end.
						mu.Lock()
						unknown = append(unknown, made{id: id, review: review})
						mu.Unlock()
						break
					}
					refused.Add(1)
					time.Sleep(50 * time.Millisecond)
				}
			}
		})
	}
	load.Wait()
	// A request whose outcome was unknown is the requester's to look up:
	// recorded (it goes ahead, and must end like any other) or not.
	found := 0
	for _, m := range unknown {
		for time.Now().Before(deadline) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_, err := cl.Load(ctx, "acme", m.id)
			cancel()
			if err == nil {
				acked = append(acked, m)
				found++
				break
			}
			if errors.Is(err, client.ErrNotFound) {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	// Votes for the two-approver requests, also through the crashes.
	vote := func(who *identity.Identity, id string) {
		for time.Now().Before(deadline) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			r, err := cl.Wait(ctx, "acme", id, func(s request.State) bool {
				return s.Status != request.StatusRequested && s.Status != request.StatusNone
			})
			if err == nil {
				if _, voted := votedBy(r.State, who); voted || r.State.Status != request.StatusPending {
					cancel()
					return
				}
				_, err = cl.Vote(ctx, who, "acme", id, client.Vote{Approve: true})
			}
			cancel()
			if err == nil {
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	var voters sync.WaitGroup
	for _, m := range acked {
		if m.review {
			voters.Go(func() { vote(alice, m.id); vote(bob, m.id) })
		}
	}
	voters.Wait()
	close(done)
	killer.Wait()

	// Every acknowledged request ends granted, once.
	for _, m := range acked {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		r, err := cl.Wait(ctx, "acme", m.id, client.Settled)
		cancel()
		if err != nil && r != nil {
			require.NoError(t, err, "request %s (review %v) is still %s; votes: %d", m.id, m.review, r.State.Status, len(r.State.Votes))
		}
		require.NoError(t, err, "request %s", m.id)
		require.Equal(t, request.StatusGranted, r.State.Status, "request %s: %v", m.id, r.Errs)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rep, err := audit.VerifyStream(ctx, store.Reader{NC: nc, Stream: "WRIT"}, audit.Options{Bundle: bundle, Settle: time.Nanosecond}, nil)
	require.NoError(t, err)
	for _, f := range rep.Findings {
		if f.Severity == audit.SeverityError {
			t.Log(f)
		}
	}
	assert.True(t, rep.OK(), "the trail verifies")
	assert.EqualValues(t, len(acked), rep.Requests, "no acknowledged request lost")
	t.Logf("%d requests recorded; %d publishes went unconfirmed (%d of them recorded after all); %d attempts refused while down; %d kills; %d messages verified",
		len(acked), len(unknown), found, refused.Load(), kills.Load(), rep.Messages)
}

func votedBy(s request.State, who *identity.Identity) (request.Vote, bool) {
	for _, v := range s.Votes {
		if v.Voter.Key == who.Principal.Key {
			return v, true
		}
	}
	return request.Vote{}, false
}

// child is `writ serve` as a process of its own.
type child struct {
	t    *testing.T
	bin  string
	args []string
	mu   sync.Mutex
	cmd  *exec.Cmd
}

// start runs it and waits until it serves.
func (c *child) start() {
	c.mu.Lock()
	defer c.mu.Unlock()
	cmd := exec.Command(c.bin, c.args...)
	out, err := cmd.StdoutPipe()
	require.NoError(c.t, err)
	cmd.Stderr = io.Discard
	require.NoError(c.t, cmd.Start())
	c.cmd = cmd
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if strings.Contains(sc.Text(), "Ctrl-C stops") {
				close(ready)
				break
			}
		}
		_, _ = io.Copy(io.Discard, out)
	}()
	select {
	case <-ready:
	case <-time.After(30 * time.Second):
		c.t.Fatal("writ serve did not start")
	}
}

// kill ends it with SIGKILL: no draining, no flushing.
func (c *child) kill() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cmd == nil {
		return
	}
	_ = c.cmd.Process.Signal(syscall.SIGKILL)
	_ = c.cmd.Wait()
	c.cmd = nil
}

func freeLoopbackPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
