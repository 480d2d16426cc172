package ops

import (
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/writ-dev/writ/internal/embedded"
)

// FederationReport is a federated domain's leafnode links, as readiness
// tells them.
//
// A spoke not linked to its hub is ready: it serves its own domain's
// requests meanwhile (requesters, approvers and the pipeline all reach its
// own server), and only what crosses to or from other domains waits for the
// link. Taking it out of a load balancer's rotation would turn a hub's
// outage into an outage of every domain. So "federation: not linked" is a
// warning of a 200, and /readyz?require=federation makes it a 503 for
// whoever needs the link (a deployment's check that cross-domain requests
// work).
type FederationReport struct {
	// State is "linked" when every hub the domain dials is linked, else
	// "not linked"; absent for a hub that dials none.
	State string `json:"state,omitempty"`
	// Hubs: each hub the domain dials (host:port) and "linked" or "not
	// linked".
	Hubs map[string]string `json:"hubs,omitempty"`
	// Spokes and SpokesLinked: a hub's spoke domains as configured, and
	// the spoke servers linked to it now. Fewer linked is not a readiness
	// failure: the spokes' own readiness says why.
	Spokes       int  `json:"spokes,omitempty"`
	SpokesLinked *int `json:"spokes_linked,omitempty"`
}

// federation reports the links now, and a "federation: not linked"
// reason for each of the domain's hubs not linked.
func (f *Federation) report(now time.Time) (*FederationReport, []string) {
	r := &FederationReport{}
	var reasons []string
	linked := 0
	for _, l := range f.Links() {
		if !l.Hub {
			if l.Up {
				linked++
			}
			continue
		}
		if r.Hubs == nil {
			r.Hubs, r.State = map[string]string{}, "linked"
		}
		if l.Up {
			r.Hubs[l.Peer] = "linked"
			continue
		}
		r.Hubs[l.Peer], r.State = "not linked", "not linked"
		since := "yet"
		if !l.Since.IsZero() {
			since = fmt.Sprintf("since %s", now.Sub(l.Since).Round(time.Millisecond))
		}
		reasons = append(reasons, fmt.Sprintf("federation: not linked to hub %s %s: this domain serves its own requests; those to and from other domains wait for the link", l.Peer, since))
	}
	if f.Spokes > 0 {
		r.Spokes, r.SpokesLinked = f.Spokes, &linked
	}
	return r, reasons
}

// linkCollector reports each leafnode link when scraped, from the server's
// own counters.
type linkCollector struct {
	links                             func() []embedded.LeafLink
	up, reconnects, msgs, bytes, subs *prometheus.Desc
}

func newLinkCollector(links func() []embedded.LeafLink) *linkCollector {
	// peer: a spoke's hub as host:port, or a hub's spoke by server name;
	// role: what the peer is to this domain.
	labels := []string{"peer", "role"}
	return &linkCollector{
		links:      links,
		up:         prometheus.NewDesc("writ_federation_link_up", "1 while the leafnode link to the peer (a hub this domain dials, or a spoke dialled in) is up, else 0.", labels, nil),
		reconnects: prometheus.NewDesc("writ_federation_link_reconnects_total", "Times the link was established again after its first, since the process started.", labels, nil),
		msgs:       prometheus.NewDesc("writ_federation_link_messages_total", "Messages that crossed the link, in (from the peer) or out, since it was last established.", append(labels, "direction"), nil),
		bytes:      prometheus.NewDesc("writ_federation_link_bytes_total", "Bytes that crossed the link, in (from the peer) or out, since it was last established.", append(labels, "direction"), nil),
		subs:       prometheus.NewDesc("writ_federation_link_subscriptions", "Subscriptions the peer holds on this server over the link: its interest, which decides what crosses.", labels, nil),
	}
}

func (c *linkCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.up, c.reconnects, c.msgs, c.bytes, c.subs} {
		ch <- d
	}
}

func (c *linkCollector) Collect(ch chan<- prometheus.Metric) {
	for _, l := range c.links() {
		role := "spoke"
		if l.Hub {
			role = "hub"
		}
		up := 0.0
		if l.Up {
			up = 1
		}
		ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, up, l.Peer, role)
		ch <- prometheus.MustNewConstMetric(c.reconnects, prometheus.CounterValue, float64(l.Reconnects), l.Peer, role)
		ch <- prometheus.MustNewConstMetric(c.msgs, prometheus.CounterValue, float64(l.InMsgs), l.Peer, role, "in")
		ch <- prometheus.MustNewConstMetric(c.msgs, prometheus.CounterValue, float64(l.OutMsgs), l.Peer, role, "out")
		ch <- prometheus.MustNewConstMetric(c.bytes, prometheus.CounterValue, float64(l.InBytes), l.Peer, role, "in")
		ch <- prometheus.MustNewConstMetric(c.bytes, prometheus.CounterValue, float64(l.OutBytes), l.Peer, role, "out")
		ch <- prometheus.MustNewConstMetric(c.subs, prometheus.GaugeValue, float64(l.Subs), l.Peer, role)
	}
}
