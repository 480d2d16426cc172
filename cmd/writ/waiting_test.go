package main

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The notice speaks once a wait has lasted its quiet period, once however
// many operations wait, and says when they all stop waiting; a wait that
// ends sooner says nothing.
func TestWaitNotice(t *testing.T) {
	var out syncBuffer
	n := newWaitNotice(&out)
	n.quiet = 20 * time.Millisecond

	short := n.Waiting("a replica to catch up")
	short()
	a := n.Waiting("stream leader election") // the barrier: announced after the short one ended
	b := n.Waiting("the connection to NATS")
	require.Eventually(t, func() bool { return out.String() != "" }, 5*time.Second, time.Millisecond)
	assert.Equal(t, "waiting for the cluster (stream leader election)…\n", out.String(), "the short wait said nothing")
	a()
	a() // twice is once
	assert.NotContains(t, out.String(), "answers again", "one operation still waits")
	b()
	assert.Equal(t, "waiting for the cluster (stream leader election)…\nthe cluster answers again\n", out.String())

	// The next wait is announced again.
	c := n.Waiting("an answer from the stream")
	require.Eventually(t, func() bool { return strings.Count(out.String(), "waiting") == 2 }, 5*time.Second, time.Millisecond)
	c()
	assert.True(t, strings.HasSuffix(out.String(), "waiting for the cluster (an answer from the stream)…\nthe cluster answers again\n"), out.String())
}
