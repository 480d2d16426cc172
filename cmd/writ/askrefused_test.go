package main

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/writ-dev/writ/client"
	"github.com/writ-dev/writ/events"
	"github.com/writ-dev/writ/request"
)

// A lock or state ask is refused only when the pipeline refused the ask
// itself: junk published under its id, refused by the auditor, is not the
// ask's answer.
func TestAskRefusedMeansTheAsk(t *testing.T) {
	rec := func(seq uint64, d any) events.Record {
		return events.Record{Message: events.Message{Seq: seq}, Data: d}
	}
	ask := rec(5, &events.Lock{})
	junkRefused := rec(10, &events.Refused{RefSeq: 9, Code: "invalid", Reason: "not signed"})
	r := &client.Request{Records: []events.Record{ask, rec(9, nil), junkRefused},
		State: request.State{Answered: map[uint64]string{9: "invalid"}}}
	_, refused := askRefused(r)
	assert.False(t, refused, "junk refused under the ask's id is not the ask refused")

	r.Records = append(r.Records, rec(11, &events.Refused{RefSeq: 5, Code: "forbidden", Reason: "no policy permits it"}))
	r.State.Answered[5] = "forbidden"
	why, refused := askRefused(r)
	assert.True(t, refused)
	assert.Equal(t, "no policy permits it", why, "the reason given for the ask")

	_, refused = askRefused(&client.Request{})
	assert.False(t, refused, "no history: nothing refused")
}
