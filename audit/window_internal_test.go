package audit

import (
	"fmt"
	"testing"
	"time"

	"github.com/writ-dev/writ/events"
)

// The verifier's window gives the same root at every size it still reaches
// as a tree built afresh, however often leaves moved into the lagging tree.
func TestTreeAtMatchesAFreshTree(t *testing.T) {
	v := NewVerifier(Options{Window: 8})
	fresh := NewTree()
	roots := map[uint64]string{}
	for i := uint64(1); i <= 300; i++ {
		m := events.Message{Subject: "writ.acme.x.requested", Seq: i, Time: time.Unix(int64(i), 0), Body: []byte(fmt.Sprint(i))}
		_ = fresh.Append(m)
		roots[fresh.Size()], _ = fresh.Root()
		v.addLeaf(m)
		for size := v.lag.Size(); size <= v.tree.Size(); size++ {
			if size == 0 {
				continue
			}
			tr, ok := v.treeAt(size)
			if !ok {
				t.Fatalf("size %d out of reach at %d leaves", size, i)
			}
			if r, _ := tr.Root(); r != roots[size] {
				t.Fatalf("at %d leaves, the root of %d differs", i, size)
			}
		}
	}
}
