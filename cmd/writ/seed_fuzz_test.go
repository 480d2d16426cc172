package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/nats-io/nkeys"

	"github.com/writ-dev/writ/identity"
)

// FuzzReadSeed feeds arbitrary key files to readSeed (writ callout's
// --signer, --xkey and --nkey: plain seeds, .nk files, .creds files).
// Whatever it reads is a key pair whose seed reads back as the same key.
func FuzzReadSeed(f *testing.F) {
	for _, create := range []func() (nkeys.KeyPair, error){nkeys.CreateAccount, nkeys.CreateUser, nkeys.CreateCurveKeys} {
		kp, err := create()
		if err != nil {
			f.Fatal(err)
		}
		seed, _ := kp.Seed()
		f.Add(seed)
		f.Add(append([]byte("# a comment\n  "), seed...))
	}
	account, _ := nkeys.CreateAccount()
	creds, err := identity.IssueUser(account, identity.UserSpec{Domain: "acme", Name: "callout"})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(creds)
	f.Add([]byte("-----BEGIN USER NKEY SEED-----\nSU\n------END USER NKEY SEED------\n"))
	path := filepath.Join(f.TempDir(), "key")
	f.Fuzz(func(t *testing.T, text []byte) {
		if err := os.WriteFile(path, text, 0o600); err != nil {
			t.Fatal(err)
		}
		kp, err := readSeed(path)
		if err != nil {
			return
		}
		pub, err := kp.PublicKey()
		if err != nil {
			t.Fatalf("read a key with no public key: %v", err)
		}
		seed, err := kp.Seed()
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, seed, 0o600); err != nil {
			t.Fatal(err)
		}
		again, err := readSeed(path)
		if err != nil {
			t.Fatalf("its own seed does not read back: %v", err)
		}
		if p, _ := again.PublicKey(); p != pub {
			t.Fatalf("seed of %s reads back as %s", pub, p)
		}
	})
}
