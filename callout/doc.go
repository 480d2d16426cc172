// Package callout lets a target domain's NATS server enforce grants itself,
// through auth callout. A client connects to the server presenting its
// grant as the connect token (or as the password) and authenticating with
// the holder's user nkey; the server, which knows no such user, sends an
// authorization request on $SYS.REQ.USER.AUTH; the Responder checks the
// grant and answers with a user JWT that may publish only to the grant's
// action subject and that expires with the grant, or with an error.
//
// # What is checked
//
// The nkey in the CONNECT is the holder key: the Responder verifies its
// signature over the nonce the server sent the client (the server passes
// both in the request but does not check the signature of a user it does
// not know), so a stolen token alone is useless. Then, through
// redeem.Redeemer.RedeemAsHolder: the grant's signature by an issuer
// trusted for this domain, its type and audience, nbf/exp with the
// redeemer's leeway, holder equal to the connecting nkey, not revoked (the
// revocation watcher), present in the audit stream, and not used before:
// connecting consumes the grant exactly as a redemption does (the
// writ-grants-used bucket) and records a redeemed event with the service
// name "nats-callout"; a refusal is recorded with its reason code. A grant
// that is already past its exp (even within the leeway) is refused: the
// connection could not outlive it.
//
// # Subject mapping
//
// A grant allows publishing to exactly one subject:
//
//	<prefix>.<domain>.<action>.<resource segments, one token each>
//
// with prefix "act" by default, the resource path split on "/" and any "."
// inside the action or a segment written "%2E" so that the mapping is one
// to one: action "deploy" on "staging/web" in domain "acme" is
// act.acme.deploy.staging.web; "restart" on "svc/api-v1.2" is
// act.acme.restart.svc.api-v1%2E2. Subject computes it. The user may
// subscribe only to _INBOX.<its user nkey>.> (set nats.CustomInboxPrefix to
// "_INBOX."+nkey to make requests); nothing else, and it may not publish
// anywhere else. The grant's parameters are not enforced by the server:
// the service listening on the subject sees only the message.
//
// # Encryption
//
// With Config.XKey set, requests must come sealed to that curve key (set
// xkey in the server's auth_callout block to its public key) and responses
// are sealed to the server's; a plain request is then refused. Without it
// requests and responses travel signed but in clear, which is fine on
// loopback or TLS.
//
// # Configuring nats-server
//
// Config mode (accounts in the server's configuration): the responder
// connects as AUTH_USER (an nkey user, which also makes the server send a
// nonce to every client, which the holder proof needs); granted users are
// placed in the account named by Config.Account (APP below); Config.Signer
// is the account nkey named as issuer.
//
//	accounts {
//	  AUTH { users: [ { nkey: UAUTHUSERPUBLICKEY... } ] }
//	  APP {}   # where the services listening on act.<domain>.> live too
//	}
//	authorization {
//	  auth_callout {
//	    issuer: ASIGNERPUBLICKEY...      # public key of Config.Signer
//	    account: AUTH
//	    auth_users: [ UAUTHUSERPUBLICKEY... ]
//	    # xkey: XRESPONDERPUBLICKEY...   # optional: Config.XKey's public key
//	  }
//	}
//
// and the responder runs as
//
//	writ callout --dir DIR --server nats://host:4222 --nkey auth-user.nk \
//	    --signer signer.nk --account APP
//
// In operator mode, leave Config.Account empty, let Config.Signer be the
// callout account's key (the granted users are then placed in that
// account), and connect the responder with a user of it (--creds). A client connects with, in Go:
//
//	nats.Connect(url, nats.Nkey(holderPub, holderKey.Sign), nats.Token(grant))
package callout
