package config_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/writ-dev/writ/config"
	"github.com/writ-dev/writ/identity/connect"
)

// TestServerConfRunsARealServer: a nats-server started from the written
// configuration admits the setup's identities only, with their roles'
// rights, in the domain's JetStream domain, writing every event to disk.
func TestServerConfRunsARealServer(t *testing.T) {
	for _, authOnly := range []bool{false, true} {
		t.Run(map[bool]string{false: "whole", true: "included"}[authOnly], func(t *testing.T) {
			dir := t.TempDir()
			cfg, err := config.Init(dir, "acme")
			require.NoError(t, err)
			conf, err := cfg.ServerConf(filepath.Join(t.TempDir(), "js"), authOnly)
			require.NoError(t, err)
			path := filepath.Join(t.TempDir(), "writ.conf")
			require.NoError(t, os.WriteFile(path, conf, 0o644))
			if authOnly {
				main := "include ./writ.conf\nlisten: 127.0.0.1:-1\njetstream { store_dir: \"" + filepath.Join(t.TempDir(), "js") + "\", domain: acme, sync_interval: always }\n"
				path2 := filepath.Join(filepath.Dir(path), "node.conf")
				require.NoError(t, os.WriteFile(path2, []byte(main), 0o644))
				path = path2
			}
			opts, err := server.ProcessConfigFile(path)
			require.NoError(t, err)
			opts.Host, opts.Port, opts.NoSigs, opts.NoLog = "127.0.0.1", -1, true, true
			assert.True(t, opts.SyncAlways, "sync_interval: always")
			assert.Equal(t, "acme", opts.JetStreamDomain)
			ns, err := server.NewServer(opts)
			require.NoError(t, err)
			go ns.Start()
			require.True(t, ns.ReadyForConnections(10*time.Second))
			t.Cleanup(ns.Shutdown)
			url := ns.ClientURL()

			_, err = nats.Connect(url)
			assert.ErrorIs(t, err, nats.ErrAuthorization, "no credentials")

			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			opOpts, err := connect.Creds(cfg.Path(config.OperatorCreds))
			require.NoError(t, err)
			op, err := nats.Connect(url, opOpts...)
			require.NoError(t, err)
			defer op.Close()
			js, err := jetstream.New(op)
			require.NoError(t, err)
			_, err = js.CreateStream(ctx, jetstream.StreamConfig{Name: "WRIT", Subjects: []string{"writ.acme.*.*"}})
			require.NoError(t, err)

			errs := make(chan error, 8)
			carolOpts, err := connect.Creds(cfg.Path("creds/carol.creds"))
			require.NoError(t, err)
			carol, err := nats.Connect(url, append(carolOpts, nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { errs <- err }))...)
			require.NoError(t, err)
			defer carol.Close()
			require.NoError(t, carol.Publish("$JS.API.STREAM.DELETE.WRIT", nil))
			require.NoError(t, carol.Flush())
			select {
			case err := <-errs:
				assert.True(t, errors.Is(err, nats.ErrPermissionViolation), "%v", err)
			case <-time.After(5 * time.Second):
				t.Fatal("the server did not refuse carol's stream delete")
			}
			_, err = js.Stream(ctx, "WRIT")
			assert.NoError(t, err, "the stream is still there")
		})
	}
}
