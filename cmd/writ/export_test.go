package main

import (
	"encoding/csv"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/writ-dev/writ/events"
)

func TestAuditExport(t *testing.T) {
	dir, url := serve(t)
	common := []string{"--dir", dir, "--server", url}
	_, errOut, err := writ(t, append([]string{"request", "--creds", filepath.Join(dir, "creds", "deploy-bot.creds"),
		"--action", "deploy", "--resource", "staging/web", "--wait"}, common...)...)
	require.NoError(t, err, errOut)

	// Junk on a request subject: rejected, and exported as not verified.
	nc, err := operatorConn(t, dir, url)
	require.NoError(t, err)
	defer nc.Close()
	junk := uuid.Must(uuid.NewV7()).String()
	require.NoError(t, nc.Publish("writ.acme."+junk+".requested", []byte(`{"not":"an event"}`)))
	require.Eventually(t, func() bool {
		out, _, err := writ(t, append([]string{"audit", "export", "--request", junk, "--domain", "acme"}, common...)...)
		return err == nil && strings.Count(out, "\n") == 2
	}, 10*time.Second, 50*time.Millisecond)

	out, _, err := writ(t, append([]string{"audit", "export"}, common...)...)
	require.NoError(t, err)
	var recs []exportRecord
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		var r exportRecord
		require.NoError(t, json.Unmarshal([]byte(l), &r), l)
		recs = append(recs, r)
	}
	require.Len(t, recs, 5, "the deploy (3 events), then the junk and its rejection")
	assert.Equal(t, []string{"requested", "allowed", "granted", "none", "rejected"},
		[]string{recs[0].Status, recs[1].Status, recs[2].Status, recs[3].Status, recs[4].Status})
	for i, r := range recs {
		assert.Equal(t, i != 3, r.Verified, "record %d: %s", i, r.Problem)
		assert.NotEmpty(t, r.Event)
	}
	assert.Contains(t, recs[3].Problem, "type-mismatch")
	// Round trip: each exported event is the stored body, byte for byte
	// (its digest), and the CSV says what the JSON lines say.
	for _, r := range recs {
		assert.Equal(t, r.Digest, events.Digest(r.Event), "seq %d", r.Seq)
	}
	out, _, err = writ(t, append([]string{"audit", "export", "--format", "csv"}, common...)...)
	require.NoError(t, err)
	all, err := csv.NewReader(strings.NewReader(out)).ReadAll()
	require.NoError(t, err)
	require.Len(t, all, len(recs)+1)
	for i, r := range recs {
		assert.Equal(t, r.row(), all[i+1])
	}
	assert.Equal(t, "acme/deploy-bot", recs[0].Principal)
	assert.Equal(t, "issuer", recs[2].Role)

	out, _, err = writ(t, append([]string{"audit", "export", "--request", junk, "--domain", "acme", "--format", "csv"}, common...)...)
	require.NoError(t, err)
	rows, err := csv.NewReader(strings.NewReader(out)).ReadAll()
	require.NoError(t, err)
	require.Len(t, rows, 3, "header, the junk, its rejection")
	assert.Equal(t, exportColumns, rows[0])
	assert.Equal(t, "false", rows[1][10], "the junk does not verify")
	assert.Contains(t, rows[1][11], "type-mismatch")
	assert.Equal(t, "rejected", rows[2][9])
	assert.Equal(t, "true", rows[2][10])
}
