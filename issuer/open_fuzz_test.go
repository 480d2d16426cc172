package issuer_test

import (
	"bytes"
	"encoding/base64"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/writ-dev/writ/issuer"
)

// FuzzOpen feeds arbitrary sealed grants and sender keys, as a granted
// event carries them, to Open with the holder's key: it opens only the
// genuine box from the genuine issuer key, to the genuine token.
func FuzzOpen(f *testing.F) {
	w := newWorld(f)
	token, _, err := w.acme.Mint(w.constraints(f))
	require.NoError(f, err)
	hx, err := issuer.HolderXKey(w.holder, reqID)
	require.NoError(f, err)
	sealed, err := w.acme.Seal(token, pub(f, hx))
	require.NoError(f, err)
	box, err := base64.StdEncoding.DecodeString(sealed)
	require.NoError(f, err)
	got, err := issuer.Open(sealed, w.acme.XKey(), hx)
	require.NoError(f, err)
	require.Equal(f, token, got)
	f.Add(sealed, w.acme.XKey())
	f.Add(sealed, w.other.XKey())
	f.Add(sealed[:len(sealed)/2], w.acme.XKey())
	f.Add("", "")
	f.Fuzz(func(t *testing.T, sealed, from string) {
		got, err := issuer.Open(sealed, from, hx)
		if err != nil {
			return
		}
		ct, _ := base64.StdEncoding.DecodeString(sealed)
		if got != token || from != w.acme.XKey() || !bytes.Equal(ct, box) {
			t.Fatalf("opened %q from %q, sealed %q", got, from, sealed)
		}
	})
}

// TestOpenRefusesAMalformedSenderKey is the input FuzzOpen found: a sender
// key longer than a curve key panics inside nkeys instead of being refused.
func TestOpenRefusesAMalformedSenderKey(t *testing.T) {
	w := newWorld(t)
	hx, err := issuer.HolderXKey(w.holder, reqID)
	require.NoError(t, err)
	_, err = issuer.Open("eGt2MX0000000000000000000000000000000000", strings.Repeat("2", 58), hx)
	require.Error(t, err)
}
