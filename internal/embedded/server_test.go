package embedded_test

import (
	"net"
	"testing"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/writ-dev/writ/internal/embedded"
)

func TestStartServesJetStreamOnLoopback(t *testing.T) {
	srv, err := embedded.Start(embedded.Options{Port: -1, StoreDir: t.TempDir()})
	require.NoError(t, err)
	defer srv.Shutdown()
	assert.Regexp(t, `^nats://127\.0\.0\.1:\d+$`, srv.ClientURL())
	nc, err := srv.Connect()
	require.NoError(t, err)
	defer nc.Close()
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	info, err := js.AccountInfo(t.Context())
	require.NoError(t, err)
	assert.NotNil(t, info)
}

func TestStartRefusesATakenPort(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	_, err = embedded.Start(embedded.Options{Port: l.Addr().(*net.TCPAddr).Port, StoreDir: t.TempDir()})
	require.ErrorIs(t, err, embedded.ErrPortInUse)
}

func TestStartNeedsAStore(t *testing.T) {
	_, err := embedded.Start(embedded.Options{Port: -1})
	assert.Error(t, err)
}

// The embedded server has no authentication: it refuses to listen beyond loopback.
func TestStartRefusesANonLoopbackHost(t *testing.T) {
	for _, host := range []string{"0.0.0.0", "::", "192.0.2.1", "example.com"} {
		_, err := embedded.Start(embedded.Options{Host: host, Port: -1, StoreDir: t.TempDir()})
		assert.ErrorIs(t, err, embedded.ErrNotLoopback, host)
	}
	assert.True(t, embedded.IsLoopback("::1"))
	assert.True(t, embedded.IsLoopback("localhost"))
}
