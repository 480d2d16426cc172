package locks_test

import (
	"encoding/hex"
	"regexp"
	"strings"
	"testing"

	"github.com/writ-dev/writ/events"
	"github.com/writ-dev/writ/internal/locks"
)

// kvKey is what a NATS key-value bucket takes as a key.
var kvKey = regexp.MustCompile(`^[-/_=.a-zA-Z0-9]+$`)

// FuzzKey feeds arbitrary lock targets, as lock events carry them, to Key:
// a target it takes has a key the bucket takes, and the key names that
// target alone.
func FuzzKey(f *testing.F) {
	f.Add(events.LockPrincipal, "acme/bob.smith")
	f.Add(events.LockPrincipal, "acme/bob_smith")
	f.Add(events.LockKey, "UDXU4RCSJNZOIQHZNWXHXORDPRTGNJAHAHFRGZNEEJCPQTT2M7NLCNF4")
	f.Add(events.LockDomain, "acme")
	f.Add(events.LockDomain, "acme.>")
	f.Add("principal", "acme/")
	f.Fuzz(func(t *testing.T, typ, name string) {
		k, err := locks.Key(events.LockTarget{Type: typ, Name: name})
		if err != nil {
			return
		}
		if !kvKey.MatchString(k) || strings.HasPrefix(k, ".") || strings.HasSuffix(k, ".") || strings.Contains(k, "..") {
			t.Fatalf("key %q for %s %q", k, typ, name)
		}
		// Read the target back from the key.
		kind, rest, _ := strings.Cut(k, ".")
		back := rest
		if kind == events.LockPrincipal {
			d, n, _ := strings.Cut(rest, ".")
			raw, err := hex.DecodeString(n)
			if err != nil {
				t.Fatalf("key %q: %v", k, err)
			}
			back = d + "/" + string(raw)
		}
		if kind != typ || back != name {
			t.Fatalf("key %q names %s %q, not %s %q", k, kind, back, typ, name)
		}
	})
}
