package config_test

import (
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/writ-dev/writ/config"
	"github.com/writ-dev/writ/internal/embedded"
)

// FuzzLoad feeds arbitrary writ.json files to Load. Whatever loads serves
// on loopback only, within its limits, and saves and loads back the same.
func FuzzLoad(f *testing.F) {
	def := config.Default("acme")
	b, err := json.Marshal(def)
	require.NoError(f, err)
	f.Add(b)
	ex, err := os.ReadFile(filepath.Join("..", "examples", "writ.json"))
	require.NoError(f, err)
	f.Add(ex)
	f.Add([]byte(`{"domain": "acme", "listen": "0.0.0.0:4222"}`))
	f.Add([]byte(`{"domain": "acme", "grants": {"default_ttl": 5, "max_ttl": "1h"}}`))
	f.Add([]byte(`{"domain": "acme", "federation": {"listen": "127.0.0.1:7422", "spokes": {"beta": "short"}}}`))
	f.Add([]byte(`{"domain": "acme", "federation": {"listen": "127.0.0.1:7422", "spokes": {"beta": ""}}}`))
	f.Add([]byte(`{"domain": "acme", "federation": {"listen": "127.0.0.1:7422", "spokes": ["beta"]}}`))
	f.Add([]byte(`{"domain": "acme", "notify": {"groups": {"sre-leads": [{"url": "http://x", "format": "json"}]}}}`))
	dir, out := f.TempDir(), f.TempDir()
	f.Fuzz(func(t *testing.T, text []byte) {
		require.NoError(t, os.WriteFile(filepath.Join(dir, config.FileName), text, 0o600))
		c, err := config.Load(dir)
		if err != nil {
			if c != nil {
				t.Fatal("a configuration with an error")
			}
			return
		}
		host, _, err := net.SplitHostPort(c.Listen)
		require.NoError(t, err)
		require.True(t, embedded.IsLoopback(host), "listens on %q", c.Listen)
		require.GreaterOrEqual(t, c.Limits.MaxEventBytes, 1024)
		require.LessOrEqual(t, c.Limits.MaxEventBytes, 1<<20)
		require.LessOrEqual(t, c.Grants.DefaultTTL, c.Grants.MaxTTL)
		require.NoError(t, c.Save(out))
		again, err := config.Load(out)
		require.NoError(t, err, "a loaded configuration saves as one that loads")
		x, _ := json.Marshal(c)
		y, _ := json.Marshal(again)
		require.JSONEq(t, string(x), string(y), "saved and loaded back")
	})
}

// TestSaveKeepsAnEmptyKeyPath is the input FuzzLoad found: a configuration
// that sets no redeemer key is saved as one that has the default key.
func TestSaveKeepsAnEmptyKeyPath(t *testing.T) {
	dir, out := t.TempDir(), t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, config.FileName), []byte(`{"domain": "acme", "keys": {"policy": "p.nk",
		"approval": "a.nk", "issuer": "i.nk", "issuer_xkey": "i.xk", "redeemer": ""}}`), 0o600))
	c, err := config.Load(dir)
	require.NoError(t, err)
	require.Empty(t, c.Keys.Redeemer)
	require.NoError(t, c.Save(out))
	again, err := config.Load(out)
	require.NoError(t, err)
	require.Empty(t, again.Keys.Redeemer, "no redeemer key, still")
}
