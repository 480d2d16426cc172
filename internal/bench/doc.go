// Package bench measures Writ's automated approval path against the bare
// JetStream limit and against the cryptographic floor, in the same run, on
// the same server settings: what `writ bench` runs.
//
// The limit is a relay with as many persisted hops as the path it stands
// for and no Writ code: a requester publishes to a stream, durable pull
// consumers (with the pipeline's consumer settings) each take a message,
// publish the next and ack, and the requester, subscribed to the last
// subject, is done when that arrives. The floor is the same relay with the
// cryptography Writ must do at each hop (floor.go says which): each
// message signed by its producer and verified by the hop that takes it,
// the grant minted, sealed to the requester and opened; what Writ costs
// beyond it is its design, not its security. Writ's figures are end to
// end, as a requester sees them: from publishing a signed request to
// holding the unsealed grant. All three run sequentially (latency) and with
// many requests in flight (throughput), across in-process Writ replicas
// each on its own connection, and all are driven by the same load loop,
// bounded in count and in time.
//
// The server is one embedded nats-server, a cluster of them on loopback
// (Options.Cluster: replicas, requesters and the relay's consumers each
// prefer a node of their own), or the caller's. On the caller's it can
// also bench a pipeline served there already (Options.Setup), from
// outside the serving process, to see what a long run costs that process.
package bench
