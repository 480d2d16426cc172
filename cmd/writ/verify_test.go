package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/writ-dev/writ/audit"
	"github.com/writ-dev/writ/events"
)

// The auditor's commands end to end: a checkpoint on demand, a verify
// that passes, an evidence bundle verified offline and refused once
// changed, and a verify that fails once the stream loses a message.
func TestAuditVerifyCheckpointAndBundle(t *testing.T) {
	dir, url := serve(t)
	common := []string{"--dir", dir, "--server", url}
	cmd := func(args ...string) []string { return append(args, common...) }
	creds := func(name string) string { return filepath.Join(dir, "creds", name+".creds") }

	_, errOut, err := writ(t, cmd("request", "--creds", creds("deploy-bot"), "--action", "deploy", "--resource", "staging/web", "--wait")...)
	require.NoError(t, err, errOut)
	out, errOut, err := writ(t, cmd("request", "--creds", creds("carol"), "--action", "restart", "--resource", "prod/api")...)
	require.NoError(t, err, errOut)
	id := strings.TrimSpace(out)
	require.Eventually(t, func() bool {
		out, _, err := writ(t, cmd("approvals", "watch", "--once", "--creds", creds("alice"))...)
		return err == nil && strings.Contains(out, id)
	}, 10*time.Second, 50*time.Millisecond, "the request waits for approvers")
	_, errOut, err = writ(t, cmd("approve", id, "--creds", creds("alice"))...)
	require.NoError(t, err, errOut)
	_, errOut, err = writ(t, cmd("approve", id, "--creds", creds("bob"))...)
	require.NoError(t, err, errOut)

	require.Eventually(t, func() bool { // granted: nothing more to come
		out, _, err := writ(t, cmd("audit", "export", "--request", id)...)
		return err == nil && strings.Contains(out, `"status":"granted"`)
	}, 20*time.Second, 50*time.Millisecond)
	out, errOut, err = writ(t, cmd("audit", "checkpoint")...)
	require.NoError(t, err, errOut)
	assert.Contains(t, out, "checkpoint made at #")

	out, errOut, err = writ(t, cmd("audit", "verify")...)
	require.NoError(t, err, out+errOut)
	assert.Contains(t, out, "OK: everything holds")
	out, _, err = writ(t, cmd("audit", "verify", "--json")...)
	require.NoError(t, err)
	var rep audit.Report
	require.NoError(t, json.Unmarshal([]byte(out), &rep))
	assert.True(t, rep.OK())
	assert.EqualValues(t, 2, rep.Requests)
	assert.GreaterOrEqual(t, rep.Checkpoints, uint64(1))

	out, errOut, err = writ(t, cmd("audit", "export", "--bundle", "--request", id)...)
	require.NoError(t, err, errOut)
	path := filepath.Join(t.TempDir(), "evidence.json")
	require.NoError(t, os.WriteFile(path, []byte(out), 0o600))
	// Offline: no server, only the file and the trust bundle.
	out, errOut, err = writ(t, "audit", "verify", "--bundle", path, "--dir", dir)
	require.NoError(t, err, out+errOut)
	assert.Contains(t, out, "OK: everything holds")
	out, _, err = writ(t, "audit", "verify", "--bundle", path, "--dir", filepath.Join(t.TempDir(), "none"))
	require.NoError(t, err, "with the keys it carries")
	assert.Contains(t, out, "keys the bundle carries")

	var e audit.Evidence
	require.NoError(t, json.Unmarshal(mustRead(t, path), &e))
	e.Messages[0].Body = []byte(strings.Replace(string(e.Messages[0].Body), `"restart"`, `"restarT"`, 1))
	changed, err := json.Marshal(e)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(path, changed, 0o600))
	out, _, err = writ(t, "audit", "verify", "--bundle", path, "--dir", dir)
	require.Error(t, err)
	assert.Equal(t, exitFindings, exitCode(err), out)

	// The stream refuses deletes. A forged decision published by someone
	// who may publish is refused by the pipeline on the record: reported,
	// not tampering, unless --strict.
	nc, err := operatorConn(t, dir, url)
	require.NoError(t, err)
	defer nc.Close()
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	s, err := js.Stream(context.Background(), "WRIT")
	require.NoError(t, err)
	require.Error(t, s.DeleteMsg(context.Background(), 3), "the audit stream denies deletes")
	forger, _ := nkeys.CreateServer()
	forged, err := events.Seal(events.Draft{Domain: "acme", RequestID: id, Kind: events.KindApproved, Ordinal: "x",
		Source: "writ://acme/approval", Time: time.Now(), Data: &events.Approved{Prev: events.Digest(e.Messages[len(e.Messages)-1].Body)}}, forger)
	require.NoError(t, err)
	_, err = js.PublishMsg(context.Background(), &nats.Msg{Subject: forged.Subject, Data: forged.Body, Header: nats.Header(forged.Header())})
	require.NoError(t, err)
	require.Eventually(t, func() bool { // the refusal lands
		out, _, err := writ(t, cmd("audit", "export", "--request", id)...)
		return err == nil && strings.Contains(out, `"kind":"refused"`)
	}, 10*time.Second, 50*time.Millisecond)
	out, errOut, err = writ(t, cmd("audit", "verify")...)
	require.NoError(t, err, out+errOut)
	assert.Contains(t, out, "warning [refused]")
	assert.Contains(t, out, "approved in acme/"+id)
	assert.Contains(t, out, "OK: everything holds (1 warnings)")
	out, _, err = writ(t, cmd("audit", "verify", "--strict")...)
	require.Error(t, err)
	assert.Equal(t, exitFindings, exitCode(err), "--strict: warnings fail too")
	assert.Contains(t, out, "FAILED")
}

// One junk publish to a granted request's decision subject: the auditor
// refuses it on the record, and verify reports it and exits 0, with
// --since too (exit 7 with --strict). Then the whole trail expires under
// a max age an operator set (nats stream edit WRIT --max-age=1s): the
// empty stream fails, never "OK".
func TestAuditVerifyJunkAndEmptiedStream(t *testing.T) {
	dir, url := serve(t)
	common := []string{"--dir", dir, "--server", url}
	cmd := func(args ...string) []string { return append(args, common...) }
	out, errOut, err := writ(t, cmd("request", "--creds", filepath.Join(dir, "creds", "deploy-bot.creds"), "--action", "deploy", "--resource", "staging/web", "--wait", "--json")...)
	require.NoError(t, err, errOut)
	var o outcome
	require.NoError(t, json.Unmarshal([]byte(out), &o))
	require.Equal(t, "granted", o.Status)

	nc, err := operatorConn(t, dir, url)
	require.NoError(t, err)
	defer nc.Close()
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	_, err = js.Publish(t.Context(), "writ.acme."+o.RequestID+".granted", []byte("junk"))
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		out, _, err := writ(t, cmd("audit", "export", "--request", o.RequestID)...)
		return err == nil && strings.Contains(out, `"kind":"refused"`)
	}, 10*time.Second, 50*time.Millisecond, "the auditor refuses the junk")
	for _, args := range [][]string{{"audit", "verify"}, {"audit", "verify", "--since", "1s"}} {
		out, errOut, err = writ(t, cmd(args...)...)
		require.NoError(t, err, out+errOut)
		assert.Contains(t, out, "warning [refused]")
		assert.Contains(t, out, "granted in acme/"+o.RequestID)
		assert.Contains(t, out, "OK: everything holds")
	}
	_, _, err = writ(t, cmd("audit", "verify", "--strict")...)
	assert.Equal(t, exitFindings, exitCode(err))

	s, err := js.Stream(t.Context(), "WRIT")
	require.NoError(t, err)
	cfg := s.CachedInfo().Config
	cfg.MaxAge, cfg.Duplicates = time.Second, time.Second
	_, err = js.UpdateStream(t.Context(), cfg)
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		info, err := s.Info(t.Context())
		return err == nil && info.State.Msgs == 0
	}, 10*time.Second, 50*time.Millisecond)
	out, _, err = writ(t, cmd("audit", "verify")...)
	require.Error(t, err)
	assert.Equal(t, exitFindings, exitCode(err), out)
	assert.Contains(t, out, "error [truncation]")
	assert.Contains(t, out, "holds no message")
	assert.Contains(t, out, "FAILED")
	assert.NotContains(t, out, "OK")
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	return b
}
