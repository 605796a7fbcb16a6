package registry_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jobbridge/jobbridge/bridge/benchkit"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/jobbridge/jobbridge/bridge"
	"github.com/jobbridge/jobbridge/bridge/bridgetest"
	"github.com/jobbridge/jobbridge/bridge/natsconn/natstest"
	"github.com/jobbridge/jobbridge/pollers/pollkit"
	"github.com/jobbridge/jobbridge/pollers/registry"
)

// Environment knobs of BenchmarkPollPath.
const (
	// jobsEnv, when set, runs one size only: how many jobs are watched,
	// spread evenly over the simulators.
	jobsEnv = "JOBBRIDGE_BENCH_JOBS"
	// saturatedSizesEnv lists the sizes, comma-separated (default
	// 1000,10000; 100000 takes some three minutes more).
	saturatedSizesEnv = "JOBBRIDGE_BENCH_SATURATED_SIZES"
	// profDirEnv, when set, names a directory that receives profiles:
	// heap-before.pprof, heap-half.pprof and heap-after.pprof, taken before
	// the watches are added, with half and with all of them tracked, to
	// attribute the bytes per job (go tool pprof -sample_index=inuse_space
	// -base heap-half.pprof heap-after.pprof; run with -memprofilerate=4096
	// for a fine-grained picture, which slows allocation: read that run's
	// throughput with care), and cpu-ours-N.pprof and cpu-bare-N.pprof, one
	// per measured window, so that the bridge's own costs can be told from
	// the simulators' (go test -cpuprofile would mix both sides).
	profDirEnv = "JOBBRIDGE_BENCH_PROFDIR"
)

// BenchmarkPollPath measures the poll path of one bridge tracking many jobs
// (one sub-benchmark per size: JOBBRIDGE_BENCH_SATURATED_SIZES, or one
// size JOBBRIDGE_BENCH_JOBS) spread over the vendor simulators, and, in the same process against the
// same simulators, a bare net/http client replaying the very requests the
// pollers sent.
//
// Every job is held in one running status, so after its first event every
// poll is "no change": the windows measure fetch, parse, mapping and
// detection, not publishing. Scheduling intervals of 1ms keep the bridge
// saturated: it polls as fast as its workers (and each instance's
// concurrency) allow. The simulators speak plain http on 127.0.0.1: with
// connections kept alive, TLS would add the same per-record cost to both
// sides, so it is left out of a throughput comparison.
//
// Rounds alternate ours/bare (and flip the order every round) so machine
// drift hits both sides; while the bare client runs, the bridge's requests
// wait at a gate in the transport hook (no CPU). Everything runs in one
// process, so the simulators' and the NATS server's CPU is in both sides'
// CPU per request: the difference of the two is the bridge's own cost.
//
// Memory per watched job is the growth of heap in use and of RSS (after two
// GCs and FreeOSMemory) from a running bridge with zero watches, simulators
// populated, to the same bridge with every job watched, polled and its first
// event acknowledged, divided by the jobs; the marginal figure is the
// growth over the second half of the jobs only, which leaves out one-time
// costs. Both include what the in-process NATS server keeps for the jobs:
// the watch registry and state bucket entries, the stream's first event per
// job, their indexes and block caches.
//
// Reported: polls/s (ours), bare-req/s, ratio (ours requests/s over bare;
// target >= 0.7), cpu-us/poll, bare-cpu-us/req, overhead-us/poll (the
// difference), cpu-ratio (bare CPU per request over ours: the throughput
// ratio two saturated cores would show, robust to other load on a shared
// machine), alloc-B/poll and bare-alloc-B/req, heap-B/job and rss-B/job
// (target <= 2048), heap-marg-B/job and rss-marg-B/job.
func BenchmarkPollPath(b *testing.B) {
	sizes := benchkit.Ints(b, saturatedSizesEnv, []int{1000, 10000}, 10)
	if v := os.Getenv(jobsEnv); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 10 {
			b.Fatalf("%s=%q: want a number of jobs, at least 10", jobsEnv, v)
		}
		sizes = []int{n}
	}
	for _, n := range sizes {
		b.Run(fmt.Sprintf("jobs=%d", n), func(b *testing.B) { pollPath(b, n) })
	}
}

func pollPath(b *testing.B, jobs int) {
	const (
		concurrency = 13 // per instance: 5 instances share 65 workers
		window      = 2 * time.Second
		settle      = 300 * time.Millisecond
		rounds      = 7
	)
	// One simulator per vendor, each holding its share of the jobs.
	rigs, configs := startRigs(b, jobs, concurrency)

	// The bridge's instances, built as the daemon builds them, every
	// client's transport wrapped by the recorder.
	rec := newRecorder()
	deps := pollkit.Deps{Env: benchEnv, Logger: zerolog.Nop(), WrapTransport: rec.wrap}
	instances, err := registry.Build(context.Background(), configs, deps)
	if err != nil {
		b.Fatal(err)
	}

	srv := natstest.RunServer(b, natstest.Options{})
	nc, err := nats.Connect(srv.ClientURL()) // TCP, as a deployment would
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(nc.Close)
	reg := prometheus.NewRegistry()
	h := bridgetest.StartBridge(b, nc, instances, func(o *bridge.Options) {
		o.Schedule = bridge.ScheduleOptions{
			Interval: time.Millisecond, FastInterval: time.Millisecond, IdleInterval: time.Millisecond,
			RetainAfterTerminal: time.Hour, Workers: concurrency * len(instances),
		}
		o.FlushInterval = time.Second // the daemon's default
		o.Logger = zerolog.Nop()      // failures are counted from the metrics instead
		o.Registerer = reg
	})

	// Memory before: bridge running, zero watches, simulators populated.
	profDir := os.Getenv(profDirEnv)
	heap0, rss0 := settledMemory(b, profDir, "heap-before.pprof")

	// Watches: registered through the KV registry, as the API would, the
	// vendors interleaved so that both halves below hold the same mix.
	refs := interleaved(rigs)
	// Two halves, memory measured after each: the growth over the second
	// half is the marginal cost of a job, free of one-time costs (buffer
	// pools, block caches, connection buffers) that the first watch brings.
	var addTook, firstTook time.Duration
	track := func(part []bridge.JobRef) {
		rec.resume()
		start := time.Now()
		addWatches(b, h.Bridge.Registry(), part)
		addTook += time.Since(start)
		waitFirstEvents(b, h.Bridge.Tracker(), part, 3*time.Minute)
		firstTook += time.Since(start)
		// A second of steady polling (and a snapshot flush of the new
		// records), then the bridge is parked at the gate for the
		// measurement.
		time.Sleep(1200 * time.Millisecond)
		rec.pause()
		time.Sleep(100 * time.Millisecond)
	}
	track(refs[:jobs/2])
	heapH, rssH := settledMemory(b, profDir, "heap-half.pprof")
	track(refs[jobs/2:])
	heap1, rss1 := settledMemory(b, profDir, "heap-after.pprof")
	heapPerJob := float64(heap1-heap0) / float64(jobs)
	rssPerJob := float64(rss1-rss0) / float64(jobs)
	heapMarginal := float64(heap1-heapH) / float64(jobs-jobs/2)
	rssMarginal := float64(rss1-rssH) / float64(jobs-jobs/2)

	// Record the status requests the pollers send, for the bare client.
	recStart := time.Now()
	rec.recording.Store(true)
	rec.resume()
	bare := newBareClient()
	waitRecorded(b, rec, rigs, time.Minute, 200*time.Millisecond)
	rec.pause()
	rec.recording.Store(false)
	recTook := time.Since(recStart)
	for _, r := range rigs {
		reqs, _ := rec.statusRequests(r)
		bare.addHost(reqs, concurrency)
	}
	defer bare.closeIdle()

	ok0, bad0 := pollCounts(b, reg)
	b.ResetTimer()
	// Per window: requests/s, polls/s, CPU and allocated bytes per poll or
	// request.
	var oursRPS, oursPPS, oursCPU, oursCPUReq, oursAlloc, bareRPS, bareCPU, bareAlloc []float64
	for i := 0; i < b.N; i++ {
		for round := range rounds {
			ours := func() {
				rec.resume()
				time.Sleep(settle)
				stopProfile := cpuProfile(b, profDir, fmt.Sprintf("cpu-ours-%d.pprof", round))
				a0 := allocated()
				r0, p0, c0, t0 := rec.requests.Load(), okPolls(b, reg), benchkit.ProcessCPU(), time.Now()
				time.Sleep(window)
				r1, p1, c1, t1 := rec.requests.Load(), okPolls(b, reg), benchkit.ProcessCPU(), time.Now()
				a1 := allocated()
				stopProfile()
				rec.pause()
				el := t1.Sub(t0).Seconds()
				oursRPS = append(oursRPS, float64(r1-r0)/el)
				oursPPS = append(oursPPS, (p1-p0)/el)
				oursCPU = append(oursCPU, float64(c1-c0)/float64(time.Microsecond)/(p1-p0))
				oursCPUReq = append(oursCPUReq, float64(c1-c0)/float64(time.Microsecond)/float64(r1-r0))
				oursAlloc = append(oursAlloc, float64(a1-a0)/(p1-p0))
			}
			bareRound := func() {
				var stop atomic.Bool
				wg := bare.run(&stop)
				time.Sleep(settle)
				stopProfile := cpuProfile(b, profDir, fmt.Sprintf("cpu-bare-%d.pprof", round))
				a0 := allocated()
				r0, c0, t0 := bare.count.Load(), benchkit.ProcessCPU(), time.Now()
				time.Sleep(window)
				r1, c1, t1 := bare.count.Load(), benchkit.ProcessCPU(), time.Now()
				a1 := allocated()
				stopProfile()
				stop.Store(true)
				wg.Wait()
				el := t1.Sub(t0).Seconds()
				bareRPS = append(bareRPS, float64(r1-r0)/el)
				bareCPU = append(bareCPU, float64(c1-c0)/float64(time.Microsecond)/float64(r1-r0))
				bareAlloc = append(bareAlloc, float64(a1-a0)/float64(r1-r0))
			}
			if round%2 == 0 {
				ours()
				bareRound()
			} else {
				bareRound()
				ours()
			}
		}
	}
	b.StopTimer()
	rec.resume()

	ok1, bad1 := pollCounts(b, reg)
	if fails := bare.fails.Load(); fails > 0 {
		b.Errorf("the bare client had %d failed requests", fails)
	}
	if bad := bad1 - bad0; bad > (ok1-ok0)/1000 {
		b.Errorf("%.0f of %.0f polls failed in the measured windows", bad, ok1-ok0+bad)
	}

	mo, mp, mc := benchkit.Median(oursRPS), benchkit.Median(oursPPS), benchkit.Median(oursCPU)
	mb, mbc := benchkit.Median(bareRPS), benchkit.Median(bareCPU)
	// The ratio pairs each window with the other side's window next to it
	// in time, which cancels most of the load other processes put on a
	// shared machine.
	ratios := make([]float64, len(oursRPS))
	for k := range ratios {
		ratios[k] = oursRPS[k] / bareRPS[k]
	}
	ratio := benchkit.Median(ratios)
	b.ReportMetric(mp, "polls/s")
	b.ReportMetric(mb, "bare-req/s")
	b.ReportMetric(ratio, "ratio")
	b.ReportMetric(mc, "cpu-us/poll")
	b.ReportMetric(mbc, "bare-cpu-us/req")
	b.ReportMetric(mc-mbc, "overhead-us/poll")
	// The CPU ratio is what the throughput ratio would be on an idle
	// machine where both sides are CPU-bound; it is far less disturbed by
	// other processes sharing the cores.
	b.ReportMetric(mbc/benchkit.Median(oursCPUReq), "cpu-ratio")
	b.ReportMetric(benchkit.Median(oursAlloc), "alloc-B/poll")
	b.ReportMetric(benchkit.Median(bareAlloc), "bare-alloc-B/req")
	b.ReportMetric(heapPerJob, "heap-B/job")
	b.ReportMetric(rssPerJob, "rss-B/job")
	b.ReportMetric(heapMarginal, "heap-marg-B/job")
	b.ReportMetric(rssMarginal, "rss-marg-B/job")
	var vendors []string
	for _, r := range rigs {
		vendors = append(vendors, fmt.Sprintf("%s:%d", r.vendor, len(r.ids)))
	}
	b.Logf("poll path, %d jobs (%s), GOMAXPROCS %d: ours %.0f polls/s (%.0f req/s, %.2f req/poll), bare net/http %.0f req/s, ratio %.2f (target >= 0.7), CPU ratio %.2f; "+
		"CPU %.1f us/poll vs bare %.1f us/req (bridge overhead %.1f us/poll); memory %.0f B/job heap, %.0f B/job RSS, marginal %.0f B/job heap, %.0f B/job RSS (target <= 2048, NATS server included); "+
		"medians of %d alternating %v windows; watches added in %v, every first event acked %v after its add began, requests recorded in %v; %.0f polls failed before the windows",
		jobs, strings.Join(vendors, " "), runtime.GOMAXPROCS(0), mp, mo, mo/mp, mb, ratio, mbc/benchkit.Median(oursCPUReq), mc, mbc, mc-mbc, heapPerJob, rssPerJob, heapMarginal, rssMarginal,
		len(oursRPS), window, addTook.Round(time.Millisecond), firstTook.Round(time.Millisecond), recTook.Round(time.Millisecond), bad0)
	b.Logf("windows: ours req/s %v, bare req/s %v, ours cpu-us/poll %v, bare cpu-us/req %v, ours alloc B/poll %v, bare alloc B/req %v",
		rounded(oursRPS), rounded(bareRPS), rounded(oursCPU), rounded(bareCPU), rounded(oursAlloc), rounded(bareAlloc))
}

// addWatches registers every job, a few at a time: each Add is a KV
// round trip.
func addWatches(b *testing.B, reg *bridge.Registry, refs []bridge.JobRef) {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	var next atomic.Int64
	errs := make(chan error, 16)
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= len(refs) {
					return
				}
				r := refs[i]
				if _, _, err := reg.Add(ctx, bridge.Watch{Vendor: r.Vendor, Instance: r.Instance, Job: r.ID}); err != nil {
					select {
					case errs <- err:
					default:
					}
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		b.Fatalf("add watch: %v", err)
	}
}

// waitFirstEvents waits until every job's first event is acknowledged.
func waitFirstEvents(b *testing.B, tr *bridge.Tracker, refs []bridge.JobRef, timeout time.Duration) {
	b.Helper()
	left := slices.Clone(refs)
	deadline := time.Now().Add(timeout)
	for {
		left = slices.DeleteFunc(left, func(r bridge.JobRef) bool {
			_, known := tr.Committed(r)
			return known
		})
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("%d of %d jobs have no acknowledged first event after %v (e.g. %s)", len(left), len(refs), timeout, left[0])
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// settledMemory returns heap in use and RSS after garbage is collected and
// returned to the OS, and writes a heap profile to dir/name when dir is set.
func settledMemory(b *testing.B, dir, name string) (heap, rss int64) {
	b.Helper()
	runtime.GC()
	runtime.GC()
	debug.FreeOSMemory()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	rss, err := rssBytes()
	if err != nil {
		b.Fatal(err)
	}
	if dir != "" {
		f, err := os.Create(filepath.Join(dir, name))
		if err != nil {
			b.Fatal(err)
		}
		if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
			b.Fatal(err)
		}
		if err := f.Close(); err != nil {
			b.Fatal(err)
		}
	}
	return int64(ms.HeapInuse), rss
}

// allocated is the number of heap bytes allocated so far.
func allocated() uint64 {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.TotalAlloc
}

// cpuProfile profiles the CPU into dir/name until the returned function
// is called; without dir it does nothing.
func cpuProfile(b *testing.B, dir, name string) (stop func()) {
	b.Helper()
	if dir == "" {
		return func() {}
	}
	f, err := os.Create(filepath.Join(dir, name))
	if err != nil {
		b.Fatal(err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		b.Fatalf("%v (do not combine %s with -cpuprofile)", err, profDirEnv)
	}
	return func() {
		pprof.StopCPUProfile()
		if err := f.Close(); err != nil {
			b.Fatal(err)
		}
	}
}

// pollCounts sums the bridge's poll counter: successful polls and the rest.
func pollCounts(b *testing.B, reg *prometheus.Registry) (ok, bad float64) {
	b.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		b.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "jobbridge_polls_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			result := ""
			for _, l := range m.GetLabel() {
				if l.GetName() == "result" {
					result = l.GetValue()
				}
			}
			if result == "ok" {
				ok += m.GetCounter().GetValue()
			} else {
				bad += m.GetCounter().GetValue()
			}
		}
	}
	return ok, bad
}

func okPolls(b *testing.B, reg *prometheus.Registry) float64 {
	ok, _ := pollCounts(b, reg)
	return ok
}

func rounded(v []float64) []string {
	out := make([]string, len(v))
	for i, x := range v {
		out[i] = strconv.FormatFloat(x, 'f', 1, 64)
	}
	return out
}
