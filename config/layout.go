package config

import "path/filepath"

// A setup's files, relative to its directory (Config.Path resolves them).
// Secrets live under KeysDir; the identities people and services connect
// with under CredsDir. The component keys' files are the configuration's
// (Keys), by default in KeysDir too.
const (
	KeysDir  = "keys"
	CredsDir = "creds"

	// The domain's account key: it signs the domain's identities.
	AccountSeed = "keys/account.nk"
	// The NATS operator key signs the accounts; the system account is the
	// server's own.
	NATSOperatorSeed = "keys/nats-operator.nk"
	NATSSystemSeed   = "keys/nats-system.nk"
	// The operator identity's creds have every right: kept with the keys,
	// apart from the creds people and services use.
	OperatorCreds = "keys/operator.creds"
	ReaderCreds   = "creds/reader.creds"
	RedeemerCreds = "creds/redeemer.creds"
	// ComponentsCreds hold every component's rights, for 'writ serve
	// --server' replicas (the embedded server's components get their own).
	ComponentsCreds = "creds/components.creds"
)

// PrincipalCreds is where a principal's creds are kept by default: the
// sample identities 'writ init' writes, and those 'writ identity issue'
// writes without --out.
func PrincipalCreds(name string) string { return filepath.Join(CredsDir, name+".creds") }
