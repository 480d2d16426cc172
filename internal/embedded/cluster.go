package embedded

import (
	"context"
	"fmt"
	"net"
	"slices"

	"github.com/nats-io/nats.go/jetstream"
)

// ReservePorts finds n free loopback ports, holding each open until it has
// them all, so that no two are the same: a cluster's nodes are given each
// other's route ports before any of them listens.
func ReservePorts(n int) ([]int, error) {
	ports := make([]int, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("embedded: reserve a port: %w", err)
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// LoopbackCluster returns the options of the n nodes of cluster on
// loopback: each has a reserved client and route port and the whole route
// list, so nodes started from them at once find each other whichever comes
// up first. Node i is named prefix followed by i+1 and stores under
// store(name). The caller adds what else each node needs (a JetStream
// domain, a logger, its sync setting).
func LoopbackCluster(cluster, prefix string, n int, store func(name string) string) ([]Options, error) {
	ports, err := ReservePorts(2 * n)
	if err != nil {
		return nil, err
	}
	routes := make([]string, n)
	for i := range n {
		routes[i] = fmt.Sprintf("nats-route://127.0.0.1:%d", ports[2*i+1])
	}
	opts := make([]Options, n)
	for i := range n {
		name := fmt.Sprintf("%s%d", prefix, i+1)
		opts[i] = Options{Port: ports[2*i], StoreDir: store(name), Name: name,
			Cluster: &Cluster{Name: cluster, Port: ports[2*i+1], Routes: routes}}
	}
	return opts, nil
}

// Behind says which stream or consumer of js is not yet served in full by
// the nodes that run — no leader among them, or a replica on one of them
// not current — or "" when none is. running says whether the node of that
// name runs (nil: every node does). It is what to wait on before taking
// the next node of a cluster down, or measuring on it.
func Behind(ctx context.Context, js jetstream.JetStream, running func(node string) bool) (string, error) {
	up := func(n string) bool { return running == nil || running(n) }
	lagging := func(what, leader string, replicas []*jetstream.PeerInfo) string {
		if leader == "" || !up(leader) {
			return what + ": no leader"
		}
		if i := slices.IndexFunc(replicas, func(p *jetstream.PeerInfo) bool { return up(p.Name) && !p.Current }); i >= 0 {
			return what + ": " + replicas[i].Name + " not current"
		}
		return ""
	}
	streams := js.ListStreams(ctx)
	for info := range streams.Info() {
		name := "stream " + info.Config.Name
		if info.Cluster == nil {
			return name + ": no cluster information", nil
		}
		if b := lagging(name, info.Cluster.Leader, info.Cluster.Replicas); b != "" {
			return b, nil
		}
		if len(info.Cluster.Replicas) < info.Config.Replicas-1 {
			return name + ": replicas not placed yet", nil
		}
		s, err := js.Stream(ctx, info.Config.Name)
		if err != nil {
			return "", err
		}
		consumers := s.ListConsumers(ctx)
		for ci := range consumers.Info() {
			what := "consumer " + info.Config.Name + "/" + ci.Name
			if ci.Cluster == nil {
				return what + ": no cluster information", nil
			}
			if b := lagging(what, ci.Cluster.Leader, ci.Cluster.Replicas); b != "" {
				return b, nil
			}
		}
		if err := consumers.Err(); err != nil {
			return "", err
		}
	}
	return "", streams.Err()
}
