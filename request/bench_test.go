package request_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/writ-dev/writ/request"
)

// Fold of the two histories of the automated path that end granted, built
// as Inspect hands them over (chained, with verified principals), so that
// only the fold is measured.
func BenchmarkFold(b *testing.B) {
	p := newPeople(b)
	auto := newHistory(b)
	auto.add(requested(&p.carol, 600))
	auto.add(allowed(600))
	auto.add(granted(p.carol.Key, 10*time.Minute))

	two := newHistory(b)
	two.add(requested(&p.carol, 0))
	two.add(review(1800))
	two.add(two.vote(&p.alice, true, ""))
	two.add(two.vote(&p.bob, true, "ok"))
	two.add(approved(p.alice, p.bob))
	two.add(granted(p.carol.Key, 30*time.Minute))

	for _, c := range []struct {
		name string
		h    *history
	}{{"auto-approved", auto}, {"two-approvers", two}} {
		require.Equal(b, request.StatusGranted, c.h.fold().Status)
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, errs := request.Fold(c.h.records); errs != nil {
					b.Fatal(errs)
				}
			}
		})
	}
}
