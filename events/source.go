package events

import (
	"net/url"

	"github.com/writ-dev/writ/identity"
)

// An event's CloudEvents source names who produced it, as a URI under the
// writ scheme whose authority is the producer's domain. It is part of the
// wire format (every stored event carries it, and signatures cover it), so
// it is spelled here and nowhere else. Nothing trusts it: the signer
// header, checked against the trust bundle, says who signed.
const sourcePrefix = "writ://"

// ComponentSource is the source of the events a component of domain signs
// in role: "writ://acme/policy", "writ://acme/issuer", "writ://acme/auditor".
func ComponentSource(domain string, role identity.Role) string {
	return sourcePrefix + domain + "/" + string(role)
}

// PrincipalSource is the source of the events a principal of domain signs
// (requests, votes, reviews, locks): "writ://acme/principals/alice".
func PrincipalSource(domain, name string) string {
	return sourcePrefix + domain + "/principals/" + name
}

// RedeemerSource is the source of the redeemed events a target service of
// domain records, the service's name path-escaped:
// "writ://acme/redeemer/db%2Foperator".
func RedeemerSource(domain, service string) string {
	return sourcePrefix + domain + "/redeemer/" + url.PathEscape(service)
}
