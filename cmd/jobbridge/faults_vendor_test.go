//go:build faults

package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jobbridge/jobbridge/bridge/bridgetest"
	"github.com/jobbridge/jobbridge/pollers/tso/tsosim"
)

// chaosKind is a misbehaviour the simulators do not have, injected by a
// proxy between the bridge and a simulator.
type chaosKind string

const (
	chaosReset       chaosKind = "reset"        // the TCP connection is reset before any answer
	chaosTimeout     chaosKind = "timeout"      // no answer for longer than the instance's timeout
	chaosSlowBody    chaosKind = "slow-body"    // headers at once, then the body a byte every 100ms
	chaosContentType chaosKind = "content-type" // the vendor's body under a wrong Content-Type
	chaosOversize    chaosKind = "oversize"     // 200 with a 4 MiB JSON body (cap 64 KiB) naming a status the job never had
	chaosThrottle    chaosKind = "throttle"     // 429 with Retry-After: 1
)

// chaosProxy forwards to a simulator and, while active, answers a share
// of the requests with its kind of fault.
type chaosProxy struct {
	kind   chaosKind
	rate   float64
	target string // scheme://host:port of the simulator
	srv    *httptest.Server
	client *http.Client
	active atomic.Bool
	hits   atomic.Int64

	mu     sync.Mutex
	served map[string]map[string]bool // job id -> statuses passed on intact
}

func startChaosProxy(t *testing.T, kind chaosKind, rate float64, simURL string) *chaosProxy {
	t.Helper()
	u, err := url.Parse(simURL)
	if err != nil {
		t.Fatal(err)
	}
	p := &chaosProxy{kind: kind, rate: rate, target: u.Scheme + "://" + u.Host, client: &http.Client{Timeout: 30 * time.Second}, served: map[string]map[string]bool{}}
	p.srv = httptest.NewServer(p)
	t.Cleanup(p.srv.Close)
	return p
}

// URL is the proxy's base URL with the simulator's path.
func (p *chaosProxy) URL(simURL string) string {
	u, _ := url.Parse(simURL)
	return p.srv.URL + u.Path
}

func (p *chaosProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !p.active.Load() || rand.Float64() >= p.rate {
		p.forward(w, r, nil)
		return
	}
	p.hits.Add(1)
	switch p.kind {
	case chaosReset:
		conn, _, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		if tc, ok := conn.(*net.TCPConn); ok {
			_ = tc.SetLinger(0) // close sends RST, not FIN
		}
		_ = conn.Close()
	case chaosTimeout:
		select {
		case <-time.After(3 * time.Second):
			p.forward(w, r, nil)
		case <-r.Context().Done():
		}
	case chaosSlowBody:
		p.forward(w, r, func(h http.Header, body []byte) {
			h.Set("Content-Length", fmt.Sprint(len(body)))
			w.WriteHeader(http.StatusOK)
			rc := http.NewResponseController(w)
			for i := range body {
				if _, err := w.Write(body[i : i+1]); err != nil {
					return
				}
				_ = rc.Flush()
				select {
				case <-time.After(100 * time.Millisecond):
				case <-r.Context().Done():
					return
				}
			}
		})
	case chaosContentType:
		p.forward(w, r, func(h http.Header, body []byte) {
			h.Set("Content-Type", []string{"text/plain; charset=iso-8859-1", "application/octet-stream", "text/html"}[rand.IntN(3)])
			w.WriteHeader(http.StatusOK)
			if _, err := w.Write(body); err == nil {
				p.record(r.URL.EscapedPath(), body) // the body itself is intact
			}
		})
	case chaosOversize:
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		_, _ = io.WriteString(w, `{"processName":":Sim:Jobs:Process","name":"Process","status":"HACKED","pad":"`)
		chunk := strings.Repeat("x", 64<<10)
		for i := 0; i < 64; i++ {
			if _, err := io.WriteString(w, chunk); err != nil {
				return
			}
		}
		_, _ = io.WriteString(w, `"}`)
	case chaosThrottle:
		w.Header().Set("Retry-After", "1")
		http.Error(w, "Too Many Requests", http.StatusTooManyRequests)
	}
}

// forward passes r to the simulator; with edit, edit writes the answer
// (the headers are copied into w's already) instead of a faithful copy.
func (p *chaosProxy) forward(w http.ResponseWriter, r *http.Request, edit func(h http.Header, body []byte)) {
	req, err := http.NewRequestWithContext(r.Context(), r.Method, p.target+r.URL.RequestURI(), r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	req.Header = r.Header.Clone()
	resp, err := p.client.Do(req)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	for k, v := range resp.Header {
		w.Header()[k] = v
	}
	w.Header().Del("Content-Length")
	if edit != nil && resp.StatusCode == http.StatusOK {
		edit(w.Header(), body)
		return
	}
	w.WriteHeader(resp.StatusCode)
	if _, err := w.Write(body); err == nil && edit == nil && resp.StatusCode == http.StatusOK {
		p.record(r.URL.EscapedPath(), body)
	}
}

// record notes the status a job's intact answer carried: the bridge has
// seen it, so it must be on the stream.
func (p *chaosProxy) record(escapedPath string, body []byte) {
	mid, ok := strings.CutPrefix(escapedPath, "/baocdp/rest/job/")
	if !ok {
		return
	}
	mid, ok = strings.CutSuffix(mid, "/status")
	if !ok {
		return
	}
	id, err := url.PathUnescape(mid)
	if err != nil {
		return
	}
	var st struct {
		Status string `json:"status"`
	}
	if json.Unmarshal(body, &st) != nil || st.Status == "" {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.served[id] == nil {
		p.served[id] = map[string]bool{}
	}
	p.served[id][st.Status] = true
}

// seen keeps the states of truth that reached the bridge intact at least
// once, and counts those that never did: a fault that hides a state for
// all of its life hides it from any client, and the stream cannot be
// blamed for it.
func (p *chaosProxy) seen(truth []bridgetest.Truth) ([]bridgetest.Truth, int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []bridgetest.Truth
	hidden := 0
	for _, tr := range truth {
		if p.served[tr.Job][tr.Native] {
			out = append(out, tr)
		} else {
			hidden++
		}
	}
	return out, hidden
}

// skewedClock is a vendor whose clock is off by d.
type skewedClock struct{ d time.Duration }

func (c skewedClock) Now() time.Time { return time.Now().Add(c.d) }

// vendorCase is one vendor-fault row: a TSO simulator of its own, reached
// directly or through a chaos proxy, and what is done to it.
type vendorCase struct {
	name  string // instance name
	fault string // table row
	chaos chaosKind
	rate  float64
	// inject arms a simulator fault; it runs every period while active.
	inject func(sim *tsosim.Server, round int)
	skew   time.Duration
	burst  int // requests an inject hits
	armed  int // faults armed so far

	sim   *tsosim.Server
	proxy *chaosProxy
	ids   []string
}

func (vc *vendorCase) hits() int {
	if vc.chaos != "" {
		return int(vc.proxy.hits.Load())
	}
	if vc.burst == 0 {
		return vc.sim.Stats().Unauthorized // the expiry storm's 401s
	}
	return vc.sim.Stats().Faults
}

// vendorFaults runs one bridge over one instance per vendor fault, all at
// once, each fault active from before the first change until every job
// has ended; the leak check compares the bridge before the faults with
// after they cleared.
func (r *faultRig) vendorFaults(t *testing.T) {
	statusFault := func(kind tsosim.FaultKind, count int) func(*tsosim.Server, int) {
		return func(sim *tsosim.Server, round int) {
			f := tsosim.Fault{Kind: kind, Count: count, Endpoint: tsosim.EndpointStatus}
			if kind == tsosim.FaultStatus {
				f.Status = []int{500, 502, 503, 504}[round%4]
			}
			if err := sim.InjectFault(f); err != nil {
				t.Error(err)
			}
		}
	}
	cases := []*vendorCase{
		{name: "v5xx", fault: "vendor 5xx bursts (500/502/503/504)", inject: statusFault(tsosim.FaultStatus, 6), burst: 6},
		{name: "vtimeout", fault: "vendor timeouts (no answer within 1s)", chaos: chaosTimeout, rate: 0.3},
		{name: "vslow", fault: "vendor very slow bodies (a byte per 100ms)", chaos: chaosSlowBody, rate: 0.3},
		{name: "vreset", fault: "vendor connection resets", chaos: chaosReset, rate: 0.3},
		{name: "vhtml", fault: "vendor HTML error page with 200", inject: statusFault(tsosim.FaultHTML, 4), burst: 4},
		{name: "vtrunc", fault: "vendor truncated/malformed JSON", inject: statusFault(tsosim.FaultMalformed, 4), burst: 4},
		{name: "vctype", fault: "vendor wrong Content-Type", chaos: chaosContentType, rate: 0.3},
		{name: "vhuge", fault: "vendor body far over the size cap (4 MiB)", chaos: chaosOversize, rate: 0.3},
		{name: "vtoken", fault: "vendor token expiry storm (every 200ms)", inject: func(sim *tsosim.Server, _ int) { sim.ExpireTokens() }},
		{name: "vthrottle", fault: "vendor throttling (429, Retry-After: 1)", chaos: chaosThrottle, rate: 0.3},
		{name: "vahead", fault: "vendor clock 3h ahead of the bridge", skew: 3 * time.Hour},
		{name: "vbehind", fault: "vendor clock 26h behind the bridge", skew: -26 * time.Hour},
	}
	t.Setenv("TSO_PASSWORD", tsoPassword)
	var insts strings.Builder
	const hold = 2 * time.Second
	for _, vc := range cases {
		opts := tsosim.Options{Users: map[string]string{"ops": tsoPassword}}
		if vc.skew != 0 {
			opts.Clock = skewedClock{vc.skew}
		}
		vc.sim = tsosim.NewServer(opts)
		defer vc.sim.Close()
		// Every instance goes through a proxy: it injects the faults the
		// simulator lacks, and records which states reached the bridge.
		vc.proxy = startChaosProxy(t, vc.chaos, vc.rate, vc.sim.URL)
		u := vc.proxy.URL(vc.sim.URL)
		// The jobs begin changing after the faults are on (READY holds
		// for twice hold at least, see tsoStorm).
		vc.ids = tsoStorm(vc.sim, vc.name, 8, 2*time.Second, hold)
		insts.WriteString(tsoInstance(vc.name, u, vc.ids, "    interval: 250ms\n    timeout: 1s\n    maxBodyBytes: 65536\n"))
	}
	n := startNATS(t, r.natsBin, natsProcOptions{})
	port := freePort(t)
	cfg := bridgeConf{dir: t.TempDir(), natsURL: n.url, httpPort: port, instances: insts.String()}.write(t)
	c := startChild(t, r.bridgeBin, "run", "--config", cfg)
	from := c.waitReady(t, 60*time.Second)
	waitReadyz(t, port, 200, 30*time.Second)
	base := baseline(t, port, 8*len(cases))

	stop := make(chan struct{})
	var wg sync.WaitGroup
	for _, vc := range cases {
		if vc.chaos != "" {
			vc.proxy.active.Store(true)
		}
		if vc.inject != nil {
			wg.Add(1)
			go func() {
				defer wg.Done()
				tick := time.NewTicker(200 * time.Millisecond)
				defer tick.Stop()
				// Token expiries come every 200ms. 5xx, HTML and truncated
				// bodies come in bursts, the next a second after the last
				// one was used up: a bridge that backs off (as it should)
				// sends fewer requests, and bursts armed regardless would
				// pile up into a vendor that never answers.
				var last time.Time
				for round := 0; ; round++ {
					if vc.name == "vtoken" || (vc.sim.Stats().Faults >= vc.armed && time.Since(last) >= time.Second) {
						vc.inject(vc.sim, round)
						vc.armed += vc.burst
						last = time.Now()
					}
					select {
					case <-stop:
						return
					case <-tick.C:
					}
				}
			}()
		}
	}
	var all []string
	for _, vc := range cases {
		all = append(all, vc.ids...)
	}
	bridgetest.WaitFor(t, 120*time.Second, "every job terminal in its simulator", func() bool {
		for _, vc := range cases {
			if !allTerminal(vc.sim, vc.ids, tsoTerminal) {
				return false
			}
		}
		return true
	})
	// The faults stay on a little longer, then clear; the terminal states
	// must come through either way.
	time.Sleep(time.Second)
	close(stop)
	wg.Wait()
	for _, vc := range cases {
		vc.proxy.active.Store(false)
	}
	time.Sleep(3 * time.Second)
	after := []procStats{sampleStats(t, port)}
	_, metrics := get(fmt.Sprintf("http://127.0.0.1:%d/metrics", port), "")
	leak := leakCheck(t, "vendor faults", port, base, after, 5*len(cases))
	up := []bridgetest.Window{{From: from, To: c.stop(t, 30*time.Second)}}
	for _, vc := range cases {
		truth, hidden := vc.proxy.seen(tsoTruth(vc.sim, vc.skew))
		rep := checkEvents(t, n.url, "tso", vc.name, truth, up, 300*time.Millisecond)
		row := faultRow{fault: vc.fault, runs: vc.hits(), rep: rep, leak: "shared process " + leak}
		row.note = pollResults(metrics, vc.name)
		if hidden > 0 {
			row.note += fmt.Sprintf("; %d of %d states never reached the bridge intact (the fault hid them all their life): not expected", hidden, hidden+len(truth))
		}
		if vc.skew == 0 && row.runs == 0 {
			t.Errorf("%s: no request was hit by the fault", vc.fault)
		}
		if vc.skew != 0 {
			row.runs = 1
		}
		r.record(t, row, len(vc.ids)*3)
	}
}

// pollResults is what an operator sees of one instance in
// jobbridge_polls_total: its polls by result, those that happened.
func pollResults(metrics, instance string) string {
	var parts []string
	for _, res := range []string{"ok", "error", "malformed", "auth", "not_found"} {
		if n := metricSum(metrics, `jobbridge_polls_total\{instance="`+regexp.QuoteMeta(instance)+`",result="`+res+`",vendor="tso"\}`); n > 0 {
			parts = append(parts, fmt.Sprintf("%s %.0f", res, n))
		}
	}
	return "polls " + strings.Join(parts, ", ")
}
