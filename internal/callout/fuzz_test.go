package callout_test

import (
	"encoding/base64"
	"errors"
	"strings"
	"testing"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nkeys"

	"github.com/writ-dev/writ/internal/callout"
)

// FuzzParseRequest feeds arbitrary payloads and xkey headers to the
// request parser and the holder check: they refuse, never panic.
func FuzzParseRequest(f *testing.F) {
	srv, _ := nkeys.CreateServer()
	srvPub, _ := srv.PublicKey()
	user, _ := nkeys.CreateUser()
	userPub, _ := user.PublicKey()
	xkey, _ := nkeys.CreateCurveKeys()
	xpub, _ := xkey.PublicKey()
	srvX, _ := nkeys.CreateCurveKeys()
	srvXPub, _ := srvX.PublicKey()

	req := jwt.NewAuthorizationRequestClaims(srvPub)
	req.Audience = "nats-authorization-request"
	req.Server = jwt.ServerID{Name: "t", ID: srvPub, XKey: srvXPub}
	req.UserNkey = userPub
	req.ClientInformation.Nonce = "bm9uY2U"
	sig, _ := user.Sign([]byte("bm9uY2U"))
	req.ConnectOptions = jwt.ConnectOptions{Nkey: userPub, SignedNonce: base64.RawURLEncoding.EncodeToString(sig), Token: "grant"}
	tok, err := req.Encode(srv)
	if err != nil {
		f.Fatal(err)
	}
	sealed, _ := srvX.Seal([]byte(tok), xpub)
	if r, err := callout.ParseRequest([]byte(tok), "", nil); err != nil {
		f.Fatalf("the seed request does not parse: %v", err)
	} else if h, g, err := callout.Holder(r); err != nil || h != userPub || g != "grant" {
		f.Fatalf("the seed's holder: %q %q %v", h, g, err)
	}
	if _, err := callout.ParseRequest(sealed, srvXPub, xkey); err != nil {
		f.Fatalf("the sealed seed does not open: %v", err)
	}
	forged := *req
	other, _ := nkeys.CreateUser()
	bad, _ := other.Sign([]byte("bm9uY2U"))
	forged.ConnectOptions.SignedNonce = base64.RawURLEncoding.EncodeToString(bad)
	if _, _, err := callout.Holder(&forged); !errors.Is(err, callout.ErrBadNonce) {
		f.Fatalf("a nonce signed by another key: %v", err)
	}
	f.Add([]byte(tok), "", false)
	f.Add(sealed, srvXPub, true)
	f.Add([]byte(tok[:len(tok)/2]), "", false)
	f.Add([]byte("eyJ0eXAiOiJKV1QiLCJhbGciOiJlZDI1NTE5LW5rZXkifQ.e30.AA"), "", false)
	f.Add([]byte{}, srvXPub, true)

	f.Fuzz(func(t *testing.T, data []byte, hdr string, useX bool) {
		var kp nkeys.KeyPair
		if useX {
			kp = xkey
		}
		r, err := callout.ParseRequest(data, hdr, kp)
		if err != nil {
			if r != nil {
				t.Fatal("a refused request came back")
			}
			return
		}
		if !nkeys.IsValidPublicUserKey(r.UserNkey) || r.Issuer != r.Server.ID {
			t.Fatalf("accepted a request without a user key or from another issuer: %+v", r)
		}
		_, _, _ = callout.Holder(r)
	})
}

// FuzzSubject checks that a mapped subject is literal and one to one.
func FuzzSubject(f *testing.F) {
	f.Add("deploy", "staging/web")
	f.Add("a.b", "c/d.e")
	f.Add("x", "y//z")
	f.Add("*", ">")
	f.Fuzz(func(t *testing.T, action, resource string) {
		s, err := callout.Subject("act", "acme", action, resource)
		if err != nil {
			return
		}
		if strings.ContainsAny(s, "*> \t\r\n") || strings.Contains(s, "..") {
			t.Fatalf("subject %q is not literal", s)
		}
		toks := strings.Split(s, ".")
		if len(toks) != 3+len(strings.Split(resource, "/")) {
			t.Fatalf("subject %q: wrong token count", s)
		}
		back := strings.ReplaceAll(toks[2], "%2E", ".")
		if back != action {
			t.Fatalf("subject %q does not give back action %q", s, action)
		}
	})
}
