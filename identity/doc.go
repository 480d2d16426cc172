// Package identity owns who is who: domains and their trust bundle, principals
// (NATS user JWTs issued by a domain's account key, groups in tags), .creds
// files, and the keys of the pipeline's components. It verifies that an
// identity claiming domain D was signed by one of D's own keys — never by any
// other trusted key.
package identity
