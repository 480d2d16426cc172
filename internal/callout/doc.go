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
// # Revocation and locks reach live connections
//
// A connection lives until its grant expires, unless the grant is revoked
// or its holder locked: the Responder then ends it through the server's
// system account, within a second (measured from 'writ revoke' or 'writ
// lock principal' to the connection's close: tens of milliseconds, see
// the README). It names each user it authorizes UserPrefix + the request
// id (nats-server reports that as the connection's user) and remembers the
// server and client id the authorization request carried. It hears of a
// revocation from the revocation list (pushed, as every redeemer hears of
// it), of a revoked event on the trail (whatever its cause), and of a
// lock from the lock list (principal, key or domain of the grant's
// requester), and sends the server $SYS.REQ.SERVER.<id>.KICK for the
// client. It also lists the servers' connections ($SYS.REQ.SERVER.PING.CONNZ,
// by account and user name): on start, which finds the connections opened
// before a restart or by another responder (a revocation or a lock that
// arrived while none ran takes effect then: the lists keep them), when it
// hears of a revocation of a connection it does not know, on a lock, and
// every Config.SweepEvery. Every live connection is also held against the
// lists every CheckEvery.
//
// The Responder fails closed: it authorizes nothing until its
// system-account connection has listed the connections and been answered
// by a KICK (of a client id no server holds), nor while that connection is
// down; and Run returns ErrCannotEnd if it cannot list and end connections
// at all.
//
// A revoked redeemed grant is recorded like any revocation (a revoked
// event after the redeemed one: request.State.InUse), which 'writ audit
// verify' accepts while the grant had not expired.
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
// is the account nkey named as issuer. Config.System connects as
// SYSTEM_USER, a user of the system account allowed SystemSubjects alone
// (the role access.CalloutSystem; its inbox is _INBOX.<domain>.<its key>):
//
//	accounts {
//	  AUTH { users: [ { nkey: UAUTHUSERPUBLICKEY... } ] }
//	  APP {}   # where the services listening on act.<domain>.> live too
//	  SYS  { users: [ { nkey: USYSTEMUSERPUBLICKEY..., permissions: {
//	    publish:   { allow: ["$SYS.REQ.SERVER.*.CONNZ", "$SYS.REQ.SERVER.*.KICK"] }
//	    subscribe: { allow: ["_INBOX.acme.USYSTEMUSERPUBLICKEY....>"] } } } ] }
//	}
//	system_account: SYS
//	authorization {
//	  auth_callout {
//	    issuer: ASIGNERPUBLICKEY...      # public key of Config.Signer
//	    account: AUTH
//	    auth_users: [ UAUTHUSERPUBLICKEY..., USYSTEMUSERPUBLICKEY... ]
//	    # xkey: XRESPONDERPUBLICKEY...   # optional: Config.XKey's public key
//	  }
//	}
//
// and the responder runs as
//
//	writ callout --dir DIR --server nats://host:4222 --nkey auth-user.nk \
//	    --system-nkey system-user.nk --signer signer.nk --account APP
//
// In operator mode, leave Config.Account empty, let Config.Signer be the
// callout account's key (the granted users are then placed in that
// account), connect the responder with a user of it (--creds), and give it
// a user of the operator's system account with the same rights
// (--system-creds; e.g. nsc add user -a SYS --allow-pub
// '$SYS.REQ.SERVER.*.CONNZ,$SYS.REQ.SERVER.*.KICK' --allow-sub
// '_INBOX.<domain>.<its key>.>'). A client connects with, in Go:
//
//	nats.Connect(url, nats.Nkey(holderPub, holderKey.Sign), nats.Token(grant))
package callout
