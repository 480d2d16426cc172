// Package config owns an installation's files: the serve configuration, and
// Init, which creates a complete local setup in a directory — a domain and
// its account key, a key per pipeline component, the trust bundle, sample
// identities as .creds files, sample Cedar policies and approval flows.
package config
