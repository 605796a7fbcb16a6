//go:build faults

// The fault suite (build tag faults; `make faults` for the full run, a
// bounded run in .ci/run). TestFaults runs `jobbridge run` as a real child
// process against the vendor simulators and a real nats-server process
// that the test owns (built from the module in go.mod, listening on a
// random loopback port: never the machine's shared server), injects one
// kind of fault per row, and compares the stream with the simulators' own
// history (bridgetest.CheckStream). It prints a table of what was tried
// and what was lost, and fails on any row that lost, reordered or
// invented a transition, or whose bridge did not return to its memory and
// goroutine baseline once the fault cleared.
//
// What counts as expected: a state the simulator held for at least
// mustSee (a few poll intervals) while the bridge process was up. Every
// script holds every state far longer than that, so in practice every
// state of every job is expected; only the seconds in which a SIGKILLed
// bridge was down are excused, and a state that lived entirely inside
// them cannot be seen by any poller (see README "Guarantees, and their
// limits").
package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jobbridge/jobbridge/bridge/bridgetest"
	"github.com/jobbridge/jobbridge/pollers/tso/tsosim"
	"github.com/nats-io/nats.go/jetstream"
)

// faultScale is how hard the suite pushes: bounded (CI) by default,
// JOBBRIDGE_FAULTS=full for the counts the issue asks of a full run.
type faultScale struct {
	full          bool
	kills         int // bridge SIGKILLs
	natsRestarts  int // per NATS row (SIGTERM and SIGKILL rows)
	clusterLosses int
	pushCuts      int // per push row
}

func faultScaleFromEnv(t *testing.T) faultScale {
	switch v := os.Getenv("JOBBRIDGE_FAULTS"); v {
	case "full":
		return faultScale{full: true, kills: 24, natsRestarts: 3, clusterLosses: 2, pushCuts: 3}
	case "", "bounded":
		return faultScale{kills: 6, natsRestarts: 2, clusterLosses: 1, pushCuts: 1}
	default:
		t.Fatalf("JOBBRIDGE_FAULTS=%q: want full or bounded (the default)", v)
		return faultScale{}
	}
}

// faultRig is what every row shares: the binaries, built once.
type faultRig struct {
	bridgeBin, natsBin string
	scale              faultScale
	table              *faultTable
}

// TestFaults is the whole suite; its subtests are the table's rows.
func TestFaults(t *testing.T) {
	sc := faultScaleFromEnv(t)
	r := &faultRig{bridgeBin: buildBinary(t), natsBin: buildNATSServer(t), scale: sc, table: &faultTable{}}
	start := time.Now()
	defer func() {
		t.Logf("fault suite (%s run, %s):\n%s", map[bool]string{true: "full", false: "bounded"}[sc.full], time.Since(start).Round(time.Second), r.table)
	}()
	t.Run("BridgeSIGKILL", r.bridgeSIGKILL)
	t.Run("NATSRestart", r.natsRestart)
	t.Run("NATSClusterNodeLoss", r.natsClusterNodeLoss)
	t.Run("VendorFaults", r.vendorFaults)
	t.Run("HMCPush", r.hmcPush)
	t.Run("EmbeddedNATSDisk", r.embeddedDisk)
}

// buildNATSServer compiles nats-server from the module version go.mod
// pins, once per test binary run.
func buildNATSServer(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "nats-server")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/nats-io/nats-server/v2")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build nats-server: %v\n%s", err, out)
	}
	return bin
}

// faultRow is one line of the table.
type faultRow struct {
	fault string
	runs  int
	rep   bridgetest.Report
	leak  string // "n/a" when the bridge process does not survive the fault
	note  string
}

type faultTable struct {
	mu   sync.Mutex
	rows []faultRow
}

func (tb *faultTable) add(r faultRow) {
	tb.mu.Lock()
	tb.rows = append(tb.rows, r)
	tb.mu.Unlock()
}

func (tb *faultTable) String() string {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	var b strings.Builder
	fmt.Fprintf(&b, "| %-46s | %4s | %8s | %9s | %4s | %10s | %5s | %5s | %-40s |\n", "fault", "runs", "expected", "published", "lost", "duplicates", "order", "bogus", "leak check (goroutines, heap MiB)")
	fmt.Fprintf(&b, "|%s|%s|%s|%s|%s|%s|%s|%s|%s|\n", strings.Repeat("-", 48), strings.Repeat("-", 6), strings.Repeat("-", 10), strings.Repeat("-", 11), strings.Repeat("-", 6), strings.Repeat("-", 12), strings.Repeat("-", 7), strings.Repeat("-", 7), strings.Repeat("-", 42))
	for _, r := range tb.rows {
		fmt.Fprintf(&b, "| %-46s | %4d | %8d | %9d | %4d | %10d | %5d | %5d | %-40s |\n", r.fault, r.runs, r.rep.Expected, r.rep.Published,
			len(r.rep.Lost), len(r.rep.Duplicates), len(r.rep.OrderViolations), len(r.rep.Bogus), r.leak)
	}
	for _, r := range tb.rows {
		if r.note != "" {
			fmt.Fprintf(&b, "%s: %s\n", r.fault, r.note)
		}
	}
	return b.String()
}

// record adds a row and fails the test when the row lost, reordered or
// invented anything, or saw too little to mean something.
func (r *faultRig) record(t *testing.T, row faultRow, minExpected int) {
	t.Helper()
	r.table.add(row)
	t.Logf("%s (%d runs): %s", row.fault, row.runs, row.rep)
	if !row.rep.OK() {
		t.Errorf("%s: the stream does not match the vendor's history:\n%s", row.fault, row.rep)
	}
	if row.rep.Expected < minExpected {
		t.Errorf("%s: only %d states were observable, want at least %d: the row did not exercise enough transitions", row.fault, row.rep.Expected, minExpected)
	}
}

// bridgeConf is a `jobbridge run` configuration for the suite: fast polls
// so that every scripted state is seen many times over.
type bridgeConf struct {
	dir       string
	natsURL   string // empty: the embedded server
	httpPort  int    // 0: no HTTP endpoint
	replicas  int
	watchAPI  bool
	backoff   time.Duration // schedule.errorBackoffMax; default 500ms
	ackTO     time.Duration // publish.ackTimeout; default 2s
	instances string        // YAML list items under instances:, indented by 2
	extra     string        // more top-level YAML
	storeDir  string        // nats.embedded.storeDir, with the embedded server
}

func (c bridgeConf) write(t *testing.T) string {
	t.Helper()
	return c.writeTo(t, c.dir)
}

// writeTo writes the configuration file into cfgDir (the data directory
// may be a place where no file can go).
func (c bridgeConf) writeTo(t *testing.T, cfgDir string) string {
	t.Helper()
	if c.backoff == 0 {
		c.backoff = 500 * time.Millisecond
	}
	if c.ackTO == 0 {
		c.ackTO = 2 * time.Second
	}
	if c.replicas == 0 {
		c.replicas = 1
	}
	listen := `""`
	if c.httpPort != 0 {
		listen = fmt.Sprintf("127.0.0.1:%d", c.httpPort)
	}
	natsLine := fmt.Sprintf("nats: {url: %q}", c.natsURL)
	if c.natsURL == "" {
		natsLine = fmt.Sprintf("nats: {embedded: {listen: 127.0.0.1:0, storeDir: %q}}", c.storeDir)
	}
	return writeFile(t, cfgDir, "jobbridge.yaml", fmt.Sprintf(`
dataDir: %s
log: {level: info, format: json}
%s
stream: {replicas: %d}
publish: {flushInterval: 200ms, ackTimeout: %s}
schedule: {interval: 50ms, fastInterval: 50ms, idleInterval: 50ms, idleAfter: 1m, jitter: 0.1, errorBackoffMax: %s, retainAfterTerminal: 1h}
http: {listen: %s, pprof: true}
watchAPI: {enabled: %t}
%s
instances:
%s`, c.dir, natsLine, c.replicas, c.ackTO, c.backoff, listen, c.watchAPI, c.extra, c.instances))
}

// tsoInstance is the YAML of a TSO instance on url watching ids.
func tsoInstance(name, url string, ids []string, extra string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "  - name: %s\n    vendor: tso\n    url: %s\n    auth: {username: ops, password: {env: TSO_PASSWORD}}\n%s    jobs:\n", name, url, extra)
	for _, id := range ids {
		b.WriteString("      - " + yamlQuote(id) + "\n")
	}
	return b.String()
}

const tsoPassword = "s3cret-pw"

var (
	tsoRunning  = []string{"ASSIGNED", "PAUSED", "IN_PROGRESS"}
	tsoTerminal = []string{"COMPLETED", "FAILED", "CANCELLED", "COMPENSATED"}
)

// tsoStorm adds n jobs to sim whose state changes are spread over spread:
// job i waits in READY for a share of it, then holds each running state
// for hold to 1.5*hold and ends in a terminal state. Every sixth id is
// built to break subjects (dots, wildcards, spaces, slashes).
func tsoStorm(sim *tsosim.Server, prefix string, n int, spread, hold time.Duration) []string {
	var ids []string
	for i := 0; i < n; i++ {
		id := fmt.Sprintf("%s-%02d", prefix, i)
		if i%6 == 5 {
			id = fmt.Sprintf("%s %02d/with.dots*and>", prefix, i)
		}
		script := []tsosim.Step{{Status: "READY", For: 2*hold + spread*time.Duration(i)/time.Duration(n)}}
		for _, s := range tsoRunning {
			script = append(script, tsosim.Step{Status: s, For: hold + time.Duration(rand.Int64N(int64(hold/2)))})
		}
		script = append(script, tsosim.Step{Status: tsoTerminal[i%len(tsoTerminal)]})
		sim.AddJob(id, script)
		ids = append(ids, id)
	}
	return ids
}

// waitTSOTerminal waits until every job sits in its terminal state, then
// a little more so that the last polls reach the stream.
func waitTSOTerminal(t *testing.T, sim *tsosim.Server, ids []string, timeout time.Duration) {
	t.Helper()
	bridgetest.WaitFor(t, timeout, "every job terminal in the simulator", func() bool { return allTerminal(sim, ids, tsoTerminal) })
	time.Sleep(1500 * time.Millisecond)
}

func tsoTruth(sim *tsosim.Server, shift time.Duration) []bridgetest.Truth {
	var truth []bridgetest.Truth
	for _, ch := range sim.History() {
		truth = append(truth, bridgetest.Truth{Job: ch.JobID, Native: ch.Status, At: ch.At.Add(-shift)})
	}
	return truth
}

// checkEvents compares one instance's events on the stream with truth.
func checkEvents(t *testing.T, natsURL, vendor, instance string, truth []bridgetest.Truth, up []bridgetest.Window, mustSee time.Duration) bridgetest.Report {
	t.Helper()
	js, err := jetstream.New(natsConnect(t, natsURL))
	if err != nil {
		t.Fatal(err)
	}
	var events []bridgetest.Received
	for _, e := range bridgetest.ReadStreamBySeq(t, js, "JOBS") {
		if strings.HasPrefix(e.Subject, "jobs."+vendor+"."+instance+".") {
			events = append(events, e)
		}
	}
	return bridgetest.CheckStream(truth, events, up, mustSee)
}

// procStats is what a bridge's /metrics says about its own process.
type procStats struct {
	goroutines, heapMiB, rssMiB float64
}

// sampleStats scrapes the child's /metrics a few times and keeps the
// smallest of each figure: a GC cycle or a poll in flight inflates one
// scrape, never all of them.
func sampleStats(t *testing.T, httpPort int) procStats {
	t.Helper()
	url := fmt.Sprintf("http://127.0.0.1:%d/metrics", httpPort)
	var best procStats
	for i := 0; i < 5; i++ {
		code, body := get(url, "")
		if code != http.StatusOK {
			t.Fatalf("GET /metrics: %d %.200s", code, body)
		}
		s := procStats{metricSum(body, "go_goroutines"), metricSum(body, "go_memstats_heap_inuse_bytes") / (1 << 20), metricSum(body, "process_resident_memory_bytes") / (1 << 20)}
		if s.goroutines == 0 || s.heapMiB == 0 {
			t.Fatalf("/metrics has no go_goroutines or go_memstats_heap_inuse_bytes:\n%.500s", body)
		}
		if i == 0 || s.goroutines < best.goroutines {
			best.goroutines = s.goroutines
		}
		if i == 0 || s.heapMiB < best.heapMiB {
			best.heapMiB = s.heapMiB
		}
		if i == 0 || s.rssMiB < best.rssMiB {
			best.rssMiB = s.rssMiB
		}
		time.Sleep(200 * time.Millisecond)
	}
	return best
}

// baseline waits until the bridge is in its steady state (n events
// published: every job's first state, so its workers, connections and
// buckets are all up) and samples it: what each sample after a fault is
// compared with.
func baseline(t *testing.T, httpPort, n int) procStats {
	t.Helper()
	url := fmt.Sprintf("http://127.0.0.1:%d/metrics", httpPort)
	bridgetest.WaitFor(t, 60*time.Second, fmt.Sprintf("%d events published before the baseline", n), func() bool {
		_, body := get(url, "")
		return metricSum(body, "jobbridge_events_published_total") >= float64(n)
	})
	time.Sleep(500 * time.Millisecond)
	return sampleStats(t, httpPort)
}

// Leak tolerances: a bridge whose fault has cleared may hold more idle
// keep-alive connections to its vendors than before (two goroutines
// each, at most the instance's concurrency per instance: leakCheck's
// keepAlive), a few more goroutines and a larger heap from the events it
// held, but not a goroutine per fault or an ever-growing heap.
const (
	leakGoroutineSlack = 16
	leakHeapFactor     = 2.0
	leakHeapSlackMiB   = 16.0
)

// leakCheck compares each sample taken after a fault cleared with the
// baseline taken before the first fault, and says so in the table.
func leakCheck(t *testing.T, fault string, httpPort int, base procStats, after []procStats, keepAlive int) string {
	t.Helper()
	if len(after) == 0 {
		t.Errorf("%s: no sample after the fault cleared", fault)
		return "no sample"
	}
	worst := after[0]
	for _, s := range after {
		if s.goroutines > worst.goroutines {
			worst.goroutines = s.goroutines
		}
		if s.heapMiB > worst.heapMiB {
			worst.heapMiB = s.heapMiB
		}
	}
	t.Logf("%s: baseline %+v, after each fault %+v", fault, base, after)
	for i, s := range after {
		if s.goroutines > base.goroutines+float64(leakGoroutineSlack+2*keepAlive) {
			_, dump := get(fmt.Sprintf("http://127.0.0.1:%d/debug/pprof/goroutine?debug=1", httpPort), "")
			t.Logf("goroutines of the bridge now:\n%s", dump)
			t.Errorf("%s: %.0f goroutines after fault %d cleared, baseline %.0f (tolerance +%d): a goroutine leak", fault, s.goroutines, i+1, base.goroutines, leakGoroutineSlack+2*keepAlive)
		}
		if s.heapMiB > base.heapMiB*leakHeapFactor+leakHeapSlackMiB {
			t.Errorf("%s: heap in use %.1f MiB after fault %d cleared, baseline %.1f MiB (tolerance x%.0f + %.0f MiB): a memory leak", fault, s.heapMiB, i+1, base.heapMiB, leakHeapFactor, leakHeapSlackMiB)
		}
	}
	return fmt.Sprintf("ok: %.0f->%.0f, %.1f->%.1f", base.goroutines, worst.goroutines, base.heapMiB, worst.heapMiB)
}

// waitReadyz waits for the child's /readyz to answer want.
func waitReadyz(t *testing.T, httpPort, want int, timeout time.Duration) {
	t.Helper()
	url := fmt.Sprintf("http://127.0.0.1:%d/readyz", httpPort)
	deadline := time.Now().Add(timeout)
	for {
		c, body := get(url, "")
		if c == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz still %d %q after %s, want %d", c, strings.TrimSpace(body), timeout, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// bridgeSIGKILL kills the bridge at random points while jobs change state,
// restarting it each time, against the test's own nats-server process.
func (r *faultRig) bridgeSIGKILL(t *testing.T) {
	n := startNATS(t, r.natsBin, natsProcOptions{})
	sim := tsosim.NewServer(tsosim.Options{Users: map[string]string{"ops": tsoPassword}})
	defer sim.Close()
	kills := r.scale.kills
	// Each kill cycle takes about 1.5s (up to 1.3s running, then a
	// restart); the storm spreads its changes over all of them.
	ids := tsoStorm(sim, "kill", max(24, 2*kills), time.Duration(kills)*1500*time.Millisecond, 500*time.Millisecond)
	dir := t.TempDir()
	t.Setenv("TSO_PASSWORD", tsoPassword)
	cfg := bridgeConf{dir: dir, natsURL: n.url, instances: tsoInstance("prod", sim.URL, ids, "")}.write(t)

	var up []bridgetest.Window
	c := startChild(t, r.bridgeBin, "run", "--config", cfg)
	from := c.waitReady(t, 60*time.Second)
	var downs []time.Duration
	for k := 0; k < kills; k++ {
		time.Sleep(time.Duration(200+rand.IntN(1100)) * time.Millisecond)
		to := c.kill(t)
		up = append(up, bridgetest.Window{From: from, To: to})
		c = startChild(t, r.bridgeBin, "run", "--config", cfg)
		from = c.waitReady(t, 60*time.Second)
		downs = append(downs, from.Sub(to))
	}
	waitTSOTerminal(t, sim, ids, 90*time.Second)
	up = append(up, bridgetest.Window{From: from, To: c.stop(t, 30*time.Second)})
	rep := checkEvents(t, n.url, "tso", "prod", tsoTruth(sim, 0), up, 300*time.Millisecond)
	var worst time.Duration
	for _, d := range downs {
		worst = max(worst, d)
	}
	r.record(t, faultRow{fault: "bridge SIGKILL at random points, restarted", runs: kills, rep: rep, leak: "n/a (new process each run)",
		note: fmt.Sprintf("longest time down %s; states that lived only while the bridge was down are excused", worst.Round(time.Millisecond))}, len(ids)*4)
}

// ctxT is a context for a test step that must not hang.
func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}
