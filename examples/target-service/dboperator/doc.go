// Package dboperator is the logic of the sample target service: a domain's
// database operator, a NATS micro service that acts only after Writ has
// granted the action and the grant has been redeemed.
//
// Each endpoint (restart on prod/*, deploy on staging/*) takes a Command —
// the grant, a holder proof of possession, the resource and the
// parameters — checks that the resource is one it operates on, redeems the
// grant for exactly that action, resource and parameters, and only then
// performs the action (here simulated: a log line and a counter). Every
// refusal answers with a code (the redeem package's, or CodeBadRequest /
// CodeOutOfScope for a call that never reached redemption) and performs
// nothing.
//
// NewCommand and Call are the holder's side: prove possession of a grant
// and send it to an endpoint.
package dboperator
