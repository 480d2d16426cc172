// Package config owns an installation's files: the serve configuration, and
// Init, which creates a complete local setup in a directory — a domain and
// its account key, a key per pipeline component, the trust bundle, sample
// identities as .creds files, sample Cedar policies and approval flows.
//
// Validate, here as in every package of Writ, checks and changes nothing:
// a zero value means the setting's default, which is filled in where the
// configuration is used (here Default and Load, NotifyDefaults), so that
// a configuration checked is the one the user wrote. Its error matches a
// sentinel (ErrInvalid) and, here, the Setting of each problem.
package config
