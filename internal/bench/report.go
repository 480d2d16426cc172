package bench

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Report is a run's settings and every figure it measured. As JSON,
// durations are in nanoseconds and throughputs in requests per second.
type Report struct {
	Settings Settings `json:"settings"`
	Phases   []Phase  `json:"phases"`
	// Errors counts the measured requests that failed, over every phase.
	Errors int `json:"errors"`
	// Incomplete says why the run stopped before its last phase ("" when
	// it did not).
	Incomplete string `json:"incomplete,omitempty"`
}

// How the server writes to disk.
const (
	SyncAlways  = "always"  // every message before it is acknowledged
	SyncDefault = "default" // the NATS default: flushed in the background
	SyncServer  = "server"  // a server of the caller's: its own setting
)

// Settings say what was measured, and where.
type Settings struct {
	Server string `json:"server"` // "embedded", or the URL given
	// Cluster is the number of embedded nodes, when they were a cluster.
	Cluster int `json:"cluster,omitempty"`
	// Setup, Domain and Stream say which served pipeline was measured,
	// when its replicas ran elsewhere (Replicas and Components are then
	// empty: they are the serving process's).
	Setup          string    `json:"setup,omitempty"`
	Domain         string    `json:"domain,omitempty"`
	Stream         string    `json:"stream,omitempty"`
	Storage        string    `json:"storage"`
	Sync           string    `json:"sync"` // SyncAlways, SyncDefault or SyncServer
	StreamReplicas int       `json:"stream_replicas"`
	Replicas       []int     `json:"replicas"` // Writ replicas of the concurrent phases
	Requests       int       `json:"requests"` // a phase and path
	Inflight       int       `json:"inflight"`
	Warmup         int       `json:"warmup"`
	Review         bool      `json:"review"`
	Components     []string  `json:"components"` // what each Writ replica runs
	Workers        int       `json:"workers"`    // handlers per consumer and replica, Writ's and the relay's
	RelayPayload   int       `json:"relay_payload_bytes"`
	Go             string    `json:"go"`
	NATSServer     string    `json:"nats_server"`
	GOMAXPROCS     int       `json:"gomaxprocs"`
	NumCPU         int       `json:"num_cpu"`
	Started        time.Time `json:"started"`
}

// Phase is one load, on the limit, on the floor and on Writ.
type Phase struct {
	Name      string  `json:"name"` // sequential, concurrent or review
	Replicas  int     `json:"replicas"`
	Inflight  int     `json:"inflight"`
	Hops      int     `json:"hops"`       // persisted audit events of one Writ request
	LimitHops int     `json:"limit_hops"` // persisted messages of one relay request
	FloorHops int     `json:"floor_hops"` // persisted messages of one floor request
	Limit     *Result `json:"limit,omitempty"`
	// Floor is the relay with the cryptography Writ must do at each hop
	// (floor.go): what a design that signs and checks every event costs.
	Floor *Result `json:"floor,omitempty"`
	Writ  *Result `json:"writ,omitempty"`
	Ratio *Ratio  `json:"ratio,omitempty"` // Writ over the limit
	// FloorRatio is Writ over the floor.
	FloorRatio *Ratio `json:"floor_ratio,omitempty"`
}

// Ratio is Writ's figures over the limit's, or the floor's: above 1 for
// latencies, below 1 for throughput, the nearer 1 the less Writ costs.
type Ratio struct {
	Throughput float64 `json:"throughput"`
	Min        float64 `json:"min"`
	P50        float64 `json:"p50"`
	P90        float64 `json:"p90"`
	P99        float64 `json:"p99"`
	P999       float64 `json:"p99_9"`
	Max        float64 `json:"max"`
	Mean       float64 `json:"mean"`
}

// compare is writ over limit (the limit's or the floor's figures), or nil
// when either has nothing to compare.
func compare(limit, writ *Result) *Ratio {
	if limit == nil || writ == nil || limit.OK == 0 || writ.OK == 0 {
		return nil
	}
	l, w := limit.Latency, writ.Latency
	d := func(a, b time.Duration) float64 { return ratio(float64(a), float64(b)) }
	return &Ratio{
		Throughput: ratio(writ.Throughput, limit.Throughput),
		Min:        d(w.Min, l.Min), P50: d(w.P50, l.P50), P90: d(w.P90, l.P90), P99: d(w.P99, l.P99),
		P999: d(w.P999, l.P999), Max: d(w.Max, l.Max), Mean: d(w.Mean, l.Mean),
	}
}

// WriteTable writes the report for people: the settings, then per phase
// the limit's row, the floor's, Writ's, and Writ's ratios to each.
func (r *Report) WriteTable(w io.Writer) error {
	s := r.Settings
	sync := map[string]string{
		SyncAlways: "sync always (every write on disk before its ack)", SyncDefault: "sync NATS default (flushed in the background)",
		SyncServer: "sync as the server is set",
	}[s.Sync]
	var b strings.Builder
	server := s.Server
	if s.Cluster > 0 {
		server = fmt.Sprintf("cluster of %d embedded nodes", s.Cluster)
	}
	fmt.Fprintf(&b, "writ bench: server %s (nats-server %s), %s storage, %s, stream replicas %d\n",
		server, s.NATSServer, strings.ToLower(s.Storage), sync, s.StreamReplicas)
	writ := fmt.Sprintf("Writ replicas %s (%s, %d workers each)", ints(s.Replicas), strings.Join(s.Components, ", "), s.Workers)
	if s.Setup != "" {
		writ = fmt.Sprintf("Writ replicas %s: domain %s, stream %s, setup %s", servedElsewhere, s.Domain, s.Stream, s.Setup)
	}
	fmt.Fprintf(&b, "  %d requests a phase after %d warm-up, %d in flight when concurrent; %s\n",
		s.Requests, s.Warmup, s.Inflight, writ)
	fmt.Fprintf(&b, "  %s, GOMAXPROCS %d (%d CPUs); limit: a bare JetStream relay, %d-byte messages;\n",
		s.Go, s.GOMAXPROCS, s.NumCPU, s.RelayPayload)
	fmt.Fprintf(&b, "  floor: the relay, each hop signing and checking its messages and the grant sealed, as Writ must\n\n")
	rows := [][]string{{"phase", "path", "hops", "ok", "errors", "req/s", "min", "p50", "p90", "p99", "p99.9", "max"}}
	for _, p := range r.Phases {
		name := p.short()
		if p.Inflight > 1 {
			name += fmt.Sprintf(", %d in flight", p.Inflight)
		}
		rows = append(rows, row(name, "limit", p.LimitHops, p.Limit))
		if p.Floor != nil {
			rows = append(rows, row("", "floor", p.FloorHops, p.Floor))
		}
		rows = append(rows, row("", "writ", p.Hops, p.Writ))
		for _, q := range []struct {
			path string
			r    *Ratio
		}{{"writ/limit", p.Ratio}, {"writ/floor", p.FloorRatio}} {
			if q.r != nil {
				rows = append(rows, []string{"", q.path, "", "", "", times(q.r.Throughput),
					times(q.r.Min), times(q.r.P50), times(q.r.P90), times(q.r.P99), times(q.r.P999), times(q.r.Max)})
			}
		}
	}
	if len(r.Phases) > 0 {
		table(&b, rows, 2)
	}
	var slow []string
	for _, p := range r.Phases {
		for _, x := range []struct {
			path string
			res  *Result
		}{{"limit", p.Limit}, {"floor", p.Floor}, {"writ", p.Writ}} {
			if x.res != nil && x.res.SlowConsumers > 0 {
				slow = append(slow, fmt.Sprintf("%s %s: %d", p.short(), x.path, x.res.SlowConsumers))
			}
		}
	}
	if len(slow) > 0 {
		fmt.Fprintf(&b, "\nslow consumers (the NATS client dropped deliveries, which came back after the ack wait): %s\n", strings.Join(slow, "; "))
	}
	if r.Errors > 0 {
		fmt.Fprintf(&b, "\n%d requests failed:\n", r.Errors)
		for _, p := range r.Phases {
			for _, res := range []*Result{p.Limit, p.Floor, p.Writ} {
				if res != nil {
					for _, e := range res.ErrorSamples {
						fmt.Fprintf(&b, "  %s: %s\n", p.Name, e)
					}
				}
			}
		}
	}
	if r.Incomplete != "" {
		fmt.Fprintf(&b, "\nincomplete: %s\n", r.Incomplete)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// short names the phase in the table: "concurrent x2", or, when Writ's
// replicas were served elsewhere, "concurrent, served elsewhere".
func (p Phase) short() string {
	if p.Replicas == 0 {
		return p.Name + ", " + servedElsewhere
	}
	return fmt.Sprintf("%s x%d", p.Name, p.Replicas)
}

// label names the phase in progress and errors: "concurrent, 2 replicas".
func (p Phase) label() string {
	switch p.Replicas {
	case 0:
		return p.Name + ", " + servedElsewhere
	case 1:
		return p.Name + ", 1 replica"
	}
	return fmt.Sprintf("%s, %d replicas", p.Name, p.Replicas)
}

const servedElsewhere = "served elsewhere"

func row(phase, path string, hops int, r *Result) []string {
	out := []string{phase, path, strconv.Itoa(hops)}
	if r == nil {
		return append(out, "-", "-", "-", "-", "-", "-", "-", "-", "-")
	}
	l := r.Latency
	return append(out, strconv.Itoa(r.OK), strconv.Itoa(r.Errors), strconv.FormatFloat(r.Throughput, 'f', 1, 64),
		dur(l.Min), dur(l.P50), dur(l.P90), dur(l.P99), dur(l.P999), dur(l.Max))
}

// table writes rows in columns two spaces apart, the first left of them
// aligned left (names), the others right (figures).
func table(b *strings.Builder, rows [][]string, left int) {
	var width []int
	for _, r := range rows {
		for i, c := range r {
			if i == len(width) {
				width = append(width, 0)
			}
			width[i] = max(width[i], utf8.RuneCountInString(c))
		}
	}
	for _, r := range rows {
		var line strings.Builder
		for i, c := range r {
			pad := strings.Repeat(" ", width[i]-utf8.RuneCountInString(c))
			if i > 0 {
				line.WriteString("  ")
			}
			if i < left {
				line.WriteString(c + pad)
			} else {
				line.WriteString(pad + c)
			}
		}
		b.WriteString(strings.TrimRight(line.String(), " ") + "\n")
	}
}

// dur writes a latency with three significant digits: 812µs, 1.23ms, 12.3ms.
func dur(d time.Duration) string {
	switch {
	case d <= 0:
		return "-"
	case d < time.Millisecond:
		return strconv.FormatFloat(float64(d)/float64(time.Microsecond), 'f', 0, 64) + "µs"
	case d < time.Second:
		return sig3(float64(d)/float64(time.Millisecond)) + "ms"
	}
	return sig3(d.Seconds()) + "s"
}

func sig3(v float64) string {
	switch {
	case v < 10:
		return strconv.FormatFloat(v, 'f', 2, 64)
	case v < 100:
		return strconv.FormatFloat(v, 'f', 1, 64)
	}
	return strconv.FormatFloat(v, 'f', 0, 64)
}

func times(v float64) string {
	if v == 0 {
		return "-"
	}
	return sig3(v) + "x"
}

func ints(xs []int) string {
	s := make([]string, len(xs))
	for i, x := range xs {
		s[i] = strconv.Itoa(x)
	}
	return strings.Join(s, ",")
}
