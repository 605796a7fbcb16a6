package registry_test

import (
	"context"
	"encoding/gob"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jobbridge/jobbridge/bridge/benchkit"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/rs/zerolog"

	"github.com/jobbridge/jobbridge/bridge"
	"github.com/jobbridge/jobbridge/bridge/bridgetest"
	"github.com/jobbridge/jobbridge/bridge/config"
	"github.com/jobbridge/jobbridge/pollers/pollkit"
	"github.com/jobbridge/jobbridge/pollers/registry"
)

// Environment knobs of BenchmarkPollRate (and the sizes of BenchmarkPollPath).
const (
	// sizesEnv lists the numbers of watched jobs, comma-separated
	// (default 1000,10000,100000).
	sizesEnv = "JOBBRIDGE_BENCH_SIZES"
	// intervalEnv is the poll interval of every job (default 60s).
	intervalEnv = "JOBBRIDGE_BENCH_INTERVAL"
	// windowEnv is the length of one measured window (default 10s); each
	// side is measured over three.
	windowEnv = "JOBBRIDGE_BENCH_WINDOW"
)

// lagBuckets are the bridge's buckets of jobbridge_scheduling_lag_seconds;
// the bare client's lag goes into the same ones, so both quantiles carry
// the same resolution.
var lagBuckets = prometheus.ExponentialBuckets(0.0005, 2, 18)

// BenchmarkPollRate runs the poll path as a deployment runs it: N watched
// jobs (JOBBRIDGE_BENCH_SIZES, default 1k, 10k and 100k) spread over the five
// vendor simulators, each polled every interval (JOBBRIDGE_BENCH_INTERVAL,
// default 60s, so 100k jobs schedule 1,667 polls/s), every job held in a
// running state so that each poll after the first is "no change".
//
// The watches are added through the KV registry at the scheduled rate over
// one interval, so that their polls are spread as a long-running bridge's
// are; the measurement starts once every job's first event is acknowledged
// and a full interval has passed. Then three windows (JOBBRIDGE_BENCH_WINDOW,
// default 10s) measure achieved polls/s against the scheduled rate, the
// scheduling lag from the bridge's own histogram
// (jobbridge_scheduling_lag_seconds: how late a poll was taken off the
// schedule), process CPU and allocated bytes per poll.
//
// Baseline, same run, same simulators: the bridge is parked (its requests
// wait at a gate in the transport hook, without CPU), and a bare
// net/http client replays the status requests the pollers sent (recorded
// while the watches were added), open loop at the same rate and with the
// same concurrency per simulator, one job every interval/N; its lag is how
// late a request started against its slot, in the same buckets. The bare
// side runs after ours rather than alternating with it: pausing the bridge
// would pile up due polls and spoil the lag it measures. Everything is in
// one process, so the simulators' CPU is on both sides.
//
// The NATS server runs in a child process (the test binary, see TestMain),
// as beside a deployed bridge: memory per job is the growth of the
// bridge's heap in use and RSS from the running bridge with zero watches
// (simulators populated) to every job watched, as BenchmarkPollPath
// measures it but without the server (target <= 2048 B at 100k), and the
// server's RSS growth is reported on its own. CPU per poll counts both
// processes.
//
// Reported: sched-polls/s, polls/s, bare-req/s, rate-ratio (achieved over
// scheduled), ratio (ours achieved over bare achieved), lag-p50-ms,
// lag-p99-ms, bare-lag-p50-ms, bare-lag-p99-ms, lag-p99/interval (target
// < 1), cpu-us/poll, bare-cpu-us/req, cpu-ratio (bare CPU per request over
// ours per poll), alloc-B/poll, heap-B/job, rss-B/job, nats-rss-B/job and
// total-rss-B/job (both processes).
func BenchmarkPollRate(b *testing.B) {
	interval := benchkit.Duration(b, intervalEnv, time.Minute)
	window := benchkit.Duration(b, windowEnv, 10*time.Second)
	for _, n := range benchkit.Ints(b, sizesEnv, []int{1000, 10000, 100000}, 10) {
		b.Run(fmt.Sprintf("jobs=%d", n), func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				pollRate(b, n, interval, window)
			}
		})
	}
}

func pollRate(b *testing.B, jobs int, interval, window time.Duration) {
	const (
		concurrency = 13 // per instance, as BenchmarkPollPath
		windows     = 3
	)
	b.StopTimer()
	rigs, configs := startRigs(b, jobs, concurrency)
	for i := range configs {
		configs[i].Interval = config.Duration(interval)
	}
	rec := newRecorder()
	deps := pollkit.Deps{Env: benchEnv, Logger: zerolog.Nop(), WrapTransport: rec.wrap}
	instances, err := registry.Build(context.Background(), configs, deps)
	if err != nil {
		b.Fatal(err)
	}
	np := startNATSProcess(b)
	nc, err := nats.Connect(np.url)
	if err != nil {
		b.Fatal(err)
	}
	defer nc.Close()
	reg := prometheus.NewRegistry()
	h := bridgetest.StartBridge(b, nc, instances, func(o *bridge.Options) {
		o.Schedule = bridge.ScheduleOptions{
			Interval: interval, FastInterval: interval, IdleInterval: interval,
			RetainAfterTerminal: time.Hour, Workers: concurrency * len(instances),
		}
		o.FlushInterval = time.Second
		o.Logger = zerolog.Nop()
		o.Registerer = reg
	})
	// With JOBBRIDGE_BENCH_PROFDIR, heap profiles before and after the
	// watches (go tool pprof -base ...-heap-before.pprof ...-heap-after.pprof).
	profDir := os.Getenv(profDirEnv)
	heap0, rss0 := settledMemory(b, profDir, fmt.Sprintf("rate-%d-heap-before.pprof", jobs))
	nrss0 := np.rss(b)

	refs := interleaved(rigs)
	rec.recording.Store(true)
	addStart := time.Now()
	addPaced(b, nc, refs, interval)
	waitFirstEvents(b, h.Bridge.Tracker(), refs, interval+5*time.Minute)
	firstTook := time.Since(addStart)
	// Every job's status request, kept on disk until the baseline runs so
	// that it is not counted in the memory per job.
	reqFile := filepath.Join(b.TempDir(), "requests.gob")
	saveRequests(b, rec, rigs, reqFile, interval+time.Minute)
	rec.recording.Store(false)
	rec.mu.Lock()
	rec.last = make(map[string]recorded) // clear would keep the buckets
	rec.mu.Unlock()
	// Steady state: one full interval since the first add, then a second
	// for the memory reading to settle.
	if d := interval + time.Second - time.Since(addStart); d > 0 {
		time.Sleep(d)
	}
	heap1, rss1 := settledMemory(b, profDir, fmt.Sprintf("rate-%d-heap-after.pprof", jobs))
	nrss1 := np.rss(b)
	// Let the pause of the forced GCs above (seconds at 100k jobs on a
	// loaded machine) drain before measuring rate and lag.
	time.Sleep(5 * time.Second)

	b.StartTimer()
	var oursPPS, oursCPU, oursAlloc []float64
	lagStart := histogram(b, reg, "jobbridge_scheduling_lag_seconds")
	ok0, bad0 := pollCounts(b, reg)
	for range windows {
		p0, c0, a0, t0 := okPolls(b, reg), benchkit.ProcessCPU()+np.cpu(b), allocated(), time.Now()
		time.Sleep(window)
		p1, c1, a1, t1 := okPolls(b, reg), benchkit.ProcessCPU()+np.cpu(b), allocated(), time.Now()
		oursPPS = append(oursPPS, (p1-p0)/t1.Sub(t0).Seconds())
		oursCPU = append(oursCPU, float64(c1-c0)/float64(time.Microsecond)/(p1-p0))
		oursAlloc = append(oursAlloc, float64(a1-a0)/(p1-p0))
	}
	lagEnd := histogram(b, reg, "jobbridge_scheduling_lag_seconds")
	ok1, bad1 := pollCounts(b, reg)
	b.StopTimer()
	// Park the bridge at the transport gate: stopping it would log its
	// pollers off and void the credentials in the recorded requests.
	rec.pause()
	if bad := bad1 - bad0; bad > (ok1-ok0)/1000 {
		b.Errorf("%.0f of %.0f polls failed in the measured windows", bad, ok1-ok0+bad)
	}
	lag := lagEnd.minus(lagStart)

	// The baseline: the same requests, open loop, same rate.
	reqs := loadRequests(b, reqFile)
	pb := newPacedBare(reqs, len(rigs), concurrency, interval)
	stop := pb.start()
	time.Sleep(2 * time.Second)
	var bareRPS, bareCPU []float64
	pb.lag.reset()
	for range windows {
		r0, c0, t0 := pb.done.Load(), benchkit.ProcessCPU()+np.cpu(b), time.Now()
		time.Sleep(window)
		r1, c1, t1 := pb.done.Load(), benchkit.ProcessCPU()+np.cpu(b), time.Now()
		bareRPS = append(bareRPS, float64(r1-r0)/t1.Sub(t0).Seconds())
		bareCPU = append(bareCPU, float64(c1-c0)/float64(time.Microsecond)/float64(r1-r0))
	}
	bareLag := pb.lag.snapshot()
	stop()
	rec.resume()
	h.Stop()
	if f := pb.fails.Load(); f > 0 {
		b.Errorf("the bare client had %d failed requests", f)
	}

	sched := float64(jobs) / interval.Seconds()
	mp, mb := benchkit.Median(oursPPS), benchkit.Median(bareRPS)
	mc, mbc := benchkit.Median(oursCPU), benchkit.Median(bareCPU)
	lag50, lag99 := lag.quantile(0.50), lag.quantile(0.99)
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(sched, "sched-polls/s")
	b.ReportMetric(mp, "polls/s")
	b.ReportMetric(mb, "bare-req/s")
	b.ReportMetric(mp/sched, "rate-ratio")
	b.ReportMetric(mp/mb, "ratio")
	b.ReportMetric(lag50*1000, "lag-p50-ms")
	b.ReportMetric(lag99*1000, "lag-p99-ms")
	b.ReportMetric(bareLag.quantile(0.50)*1000, "bare-lag-p50-ms")
	b.ReportMetric(bareLag.quantile(0.99)*1000, "bare-lag-p99-ms")
	b.ReportMetric(lag99/interval.Seconds(), "lag-p99/interval")
	b.ReportMetric(mc, "cpu-us/poll")
	b.ReportMetric(mbc, "bare-cpu-us/req")
	b.ReportMetric(mbc/mc, "cpu-ratio")
	b.ReportMetric(benchkit.Median(oursAlloc), "alloc-B/poll")
	b.ReportMetric(float64(heap1-heap0)/float64(jobs), "heap-B/job")
	b.ReportMetric(float64(rss1-rss0)/float64(jobs), "rss-B/job")
	b.ReportMetric(float64(nrss1-nrss0)/float64(jobs), "nats-rss-B/job")
	b.ReportMetric(float64(rss1-rss0+nrss1-nrss0)/float64(jobs), "total-rss-B/job")
	b.Logf("poll rate, %d jobs every %v (%.0f polls/s scheduled), GOMAXPROCS %d: ours %.0f polls/s (%.3f of scheduled), bare %.0f req/s, ratio %.3f; "+
		"lag p50 %.1f ms p99 %.1f ms (bare %.1f / %.1f ms; %d and %d samples, histogram buckets interpolated); CPU %.1f us/poll vs bare %.1f us/req; "+
		"%.0f alloc B/poll; memory %.0f B/job heap, %.0f B/job RSS, NATS server process %.0f B/job RSS; %d windows of %v each side, ours first; watches added paced over %v, every first event acked %v after the first add",
		jobs, interval, sched, runtime.GOMAXPROCS(0), mp, mp/sched, mb, mp/mb, lag50*1000, lag99*1000, bareLag.quantile(0.5)*1000, bareLag.quantile(0.99)*1000,
		lag.count(), bareLag.count(), mc, mbc, benchkit.Median(oursAlloc), float64(heap1-heap0)/float64(jobs), float64(rss1-rss0)/float64(jobs), float64(nrss1-nrss0)/float64(jobs),
		windows, window, interval, firstTook.Round(time.Millisecond))
	b.Logf("windows: ours polls/s %v, bare req/s %v, ours cpu-us/poll %v, bare cpu-us/req %v", rounded(oursPPS), rounded(bareRPS), rounded(oursCPU), rounded(bareCPU))
}

// startRigs starts one simulator per vendor holding its share of the jobs.
func startRigs(b *testing.B, jobs, concurrency int) ([]*simRig, []config.Instance) {
	b.Helper()
	starters := []func(n, concurrency int) *simRig{startTSO, startHelix, startArcGIS, startHMC, startHuawei}
	var rigs []*simRig
	var configs []config.Instance
	for i, start := range starters {
		n := jobs / len(starters)
		if i < jobs%len(starters) {
			n++
		}
		r := start(n, concurrency)
		b.Cleanup(r.close)
		rigs = append(rigs, r)
		configs = append(configs, r.inst)
	}
	return rigs, configs
}

// interleaved lists every rig's jobs, the vendors interleaved.
func interleaved(rigs []*simRig) []bridge.JobRef {
	var refs []bridge.JobRef
	for i := 0; ; i++ {
		added := false
		for _, r := range rigs {
			if i < len(r.ids) {
				refs = append(refs, bridge.JobRef{Vendor: r.vendor, Instance: r.inst.Name, ID: r.ids[i]})
				added = true
			}
		}
		if !added {
			return refs
		}
	}
}

// addPaced writes the watches into the registry bucket at len(refs) per
// interval, as the registry does (the same key and JSON), asynchronously:
// a round trip per watch could not keep up with 100k per minute.
func addPaced(b *testing.B, nc *nats.Conn, refs []bridge.JobRef, interval time.Duration) {
	b.Helper()
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(4096))
	if err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	next := 0
	for next < len(refs) {
		due := min(len(refs), int(float64(len(refs))*time.Since(start).Seconds()/interval.Seconds())+1)
		for ; next < due; next++ {
			r := refs[next]
			w := bridge.Watch{Vendor: r.Vendor, Instance: r.Instance, Job: r.ID, Origin: "api", AddedAt: time.Now().UTC()}
			val, err := json.Marshal(w)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := js.PublishAsync("$KV.JOBBRIDGE_WATCHES."+r.Key(), val, jetstream.WithStallWait(time.Minute)); err != nil {
				b.Fatalf("add watch %s: %v", r, err)
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(time.Minute):
		b.Fatal("watch registrations not acknowledged within a minute")
	}
}

// waitRecorded waits until every job of the rigs has a recorded status
// request, looking every poll, and fails the benchmark after timeout.
func waitRecorded(b *testing.B, rec *recorder, rigs []*simRig, timeout, poll time.Duration) {
	b.Helper()
	deadline := time.Now().Add(timeout)
	for {
		missing := 0
		for _, r := range rigs {
			_, m := rec.statusRequests(r)
			missing += m
		}
		if missing == 0 {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("%d jobs have no recorded status request after %v", missing, timeout)
		}
		time.Sleep(poll)
	}
}

// saveRequests waits until every job's status request was recorded and
// writes them, rig by rig, to path.
func saveRequests(b *testing.B, rec *recorder, rigs []*simRig, path string, timeout time.Duration) {
	b.Helper()
	waitRecorded(b, rec, rigs, timeout, 500*time.Millisecond)
	var all [][]recorded
	for _, r := range rigs {
		reqs, _ := rec.statusRequests(r)
		all = append(all, reqs)
	}
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	var wire [][]wireRequest
	for _, reqs := range all {
		var w []wireRequest
		for _, x := range reqs {
			w = append(w, wireRequest{Host: x.host, URL: x.url, Header: x.header})
		}
		wire = append(wire, w)
	}
	if err := gob.NewEncoder(f).Encode(wire); err != nil {
		b.Fatal(err)
	}
}

// wireRequest is a recorded request as saved to disk.
type wireRequest struct {
	Host, URL string
	Header    http.Header
}

func loadRequests(b *testing.B, path string) [][]recorded {
	b.Helper()
	f, err := os.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	var wire [][]wireRequest
	if err := gob.NewDecoder(f).Decode(&wire); err != nil {
		b.Fatal(err)
	}
	out := make([][]recorded, len(wire))
	for i, w := range wire {
		for _, x := range w {
			out[i] = append(out[i], recorded{host: x.Host, url: x.URL, header: x.Header})
		}
	}
	return out
}

// pacedBare is the baseline of BenchmarkPollRate: one dispatcher hands the
// request of job i mod N to its simulator's workers at start + i*interval/N,
// the jobs interleaved over the simulators as the watches were.
type pacedBare struct {
	hosts    []bareHost
	order    [][2]int // (host, request) in dispatch order
	interval time.Duration
	done     atomic.Int64
	fails    atomic.Int64
	lag      *lagHist
}

type pacedReq struct {
	req recorded
	due time.Time
}

func newPacedBare(reqs [][]recorded, hosts, concurrency int, interval time.Duration) *pacedBare {
	pb := &pacedBare{interval: interval, lag: newLagHist()}
	for _, r := range reqs {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.MaxIdleConnsPerHost = concurrency
		pb.hosts = append(pb.hosts, bareHost{client: &http.Client{Transport: tr}, reqs: r, concurrency: concurrency})
	}
	for i := 0; ; i++ {
		added := false
		for hi := range pb.hosts {
			if i < len(pb.hosts[hi].reqs) {
				pb.order = append(pb.order, [2]int{hi, i})
				added = true
			}
		}
		if !added {
			break
		}
	}
	return pb
}

// start runs the dispatcher and workers until the returned stop is called.
func (pb *pacedBare) start() (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	queues := make([]chan pacedReq, len(pb.hosts))
	for hi, h := range pb.hosts {
		queues[hi] = make(chan pacedReq, len(h.reqs)+1)
		for range h.concurrency {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					select {
					case <-ctx.Done():
						return
					case x := <-queues[hi]:
						pb.lag.observe(time.Since(x.due))
						if err := bareGet(ctx, h.client, x.req); err != nil {
							if ctx.Err() == nil {
								pb.fails.Add(1)
							}
							continue
						}
						pb.done.Add(1)
					}
				}
			}()
		}
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		step := pb.interval / time.Duration(len(pb.order))
		start := time.Now()
		timer := time.NewTimer(time.Hour)
		defer timer.Stop()
		for i := 0; ; {
			now := time.Now()
			due := start.Add(time.Duration(i) * step)
			for ; !due.After(now); due = start.Add(time.Duration(i) * step) {
				o := pb.order[i%len(pb.order)]
				queues[o[0]] <- pacedReq{req: pb.hosts[o[0]].reqs[o[1]], due: due}
				i++
			}
			// Sleep until the next slot, as the bridge's scheduler does.
			timer.Reset(due.Sub(now))
			select {
			case <-ctx.Done():
				return
			case <-timer.C:
			}
		}
	}()
	return func() {
		cancel()
		wg.Wait()
		for _, h := range pb.hosts {
			h.client.CloseIdleConnections()
		}
	}
}

// bareGet sends one recorded request and reads the body to the end.
func bareGet(ctx context.Context, c *http.Client, x recorded) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, x.url, nil)
	if err != nil {
		return err
	}
	req.Header = x.header.Clone()
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", x.url, resp.Status)
	}
	return nil
}

// lagHist counts lags in the bridge's scheduling-lag buckets.
type lagHist struct {
	mu sync.Mutex
	h  prometheus.Histogram
}

func newLagHist() *lagHist {
	return &lagHist{h: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "bare_lag_seconds", Buckets: lagBuckets})}
}

func (l *lagHist) observe(d time.Duration) {
	l.mu.Lock()
	l.h.Observe(d.Seconds())
	l.mu.Unlock()
}

func (l *lagHist) reset() {
	l.mu.Lock()
	l.h = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "bare_lag_seconds", Buckets: lagBuckets})
	l.mu.Unlock()
}

func (l *lagHist) snapshot() histSnap {
	l.mu.Lock()
	defer l.mu.Unlock()
	var m dto.Metric
	if err := l.h.Write(&m); err != nil {
		panic(err)
	}
	return snapOf(m.GetHistogram())
}

// histSnap is a histogram's cumulative bucket counts.
type histSnap struct {
	upper []float64
	cum   []uint64
	total uint64
}

func snapOf(h *dto.Histogram) histSnap {
	var s histSnap
	for _, bk := range h.GetBucket() {
		s.upper = append(s.upper, bk.GetUpperBound())
		s.cum = append(s.cum, bk.GetCumulativeCount())
	}
	s.total = h.GetSampleCount()
	return s
}

// histogram reads a histogram (summed over its label sets) from reg.
func histogram(b *testing.B, reg *prometheus.Registry, name string) histSnap {
	b.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		b.Fatal(err)
	}
	var out histSnap
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			s := snapOf(m.GetHistogram())
			if out.upper == nil {
				out = s
				continue
			}
			for i := range out.cum {
				out.cum[i] += s.cum[i]
			}
			out.total += s.total
		}
	}
	if out.upper == nil {
		b.Fatalf("no histogram %s", name)
	}
	return out
}

func (s histSnap) minus(o histSnap) histSnap {
	d := histSnap{upper: s.upper, cum: make([]uint64, len(s.cum)), total: s.total - o.total}
	for i := range s.cum {
		d.cum[i] = s.cum[i] - o.cum[i]
	}
	return d
}

func (s histSnap) count() uint64 { return s.total }

// quantile interpolates linearly inside the bucket holding the q-quantile,
// as Prometheus' histogram_quantile does; in the +Inf bucket it returns the
// largest finite bound. NaN without samples.
func (s histSnap) quantile(q float64) float64 {
	if s.total == 0 {
		return math.NaN()
	}
	rank := q * float64(s.total)
	lower, below := 0.0, uint64(0)
	for i, up := range s.upper {
		if float64(s.cum[i]) >= rank {
			inBucket := s.cum[i] - below
			if inBucket == 0 {
				return up
			}
			return lower + (up-lower)*(rank-float64(below))/float64(inBucket)
		}
		lower, below = up, s.cum[i]
	}
	return s.upper[len(s.upper)-1]
}
