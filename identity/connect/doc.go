// Package connect makes the options to connect to NATS as a Writ identity:
// its user JWT and key, and the inbox prefix the server lets it hear. It
// is apart from package identity so that the model packages, which use
// identities, do not depend on the NATS client.
package connect
