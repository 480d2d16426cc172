package store_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// BenchmarkLoadHistory reads one request's history (three events, among
// the stream's last) from streams of growing length, each request's
// events under subjects of its own, bodies the size of Writ's: the cost a
// component pays per message it handles.
func BenchmarkLoadHistory(b *testing.B) {
	body := []byte(strings.Repeat("x", 2500))
	for _, requests := range []int{1000, 10000, 50000} {
		b.Run(fmt.Sprintf("stream_of_%d_requests", requests), func(b *testing.B) {
			js, r := setup(b)
			for i := range requests {
				for _, kind := range []string{"requested", "evaluated", "granted"} {
					_, err := js.PublishAsync(fmt.Sprintf("writ.acme.r%d.%s", i, kind), body)
					require.NoError(b, err)
				}
			}
			<-js.PublishAsyncComplete()
			r.Batch = 0
			for b.Loop() {
				msgs, err := r.Load(b.Context(), fmt.Sprintf("writ.acme.r%d.>", requests-7), 1)
				require.NoError(b, err)
				require.Len(b, msgs, 3)
			}
		})
	}
}
