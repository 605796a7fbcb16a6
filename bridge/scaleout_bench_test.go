package bridge_test

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/jobbridge/jobbridge/bridge"
	"github.com/jobbridge/jobbridge/bridge/benchkit"
	"github.com/jobbridge/jobbridge/bridge/bridgetest"
	"github.com/jobbridge/jobbridge/bridge/config"
	"github.com/jobbridge/jobbridge/bridge/natsconn/natstest"
	"github.com/jobbridge/jobbridge/pollers/pollkit"
	"github.com/jobbridge/jobbridge/pollers/registry"
	"github.com/jobbridge/jobbridge/pollers/tso/tsosim"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
)

// BenchmarkScaleOutPolls measures poll throughput of 1, 2 and 3 replicas
// sharing the same TSO simulator (real poller, HTTP, parsing) and the same
// NATS, next to a bridge without scale-out ("single"). Jobs are due far
// more often than one process can poll, so polls/s is the capacity. It
// also reports the process CPU (bridges, simulator and NATS server all run
// in this process: cpu-cores is what the whole set-up uses) and the cost of
// the lease traffic: writes to the lease bucket per second and their bytes.
//
//	go test -run '^$' -bench BenchmarkScaleOutPolls -benchtime 1x ./bridge/
//
// JOBBRIDGE_BENCH_JOBS (default 2000) and JOBBRIDGE_BENCH_WINDOW (default
// 5s) size it.
func BenchmarkScaleOutPolls(b *testing.B) {
	jobs := 2000
	if v, err := strconv.Atoi(os.Getenv("JOBBRIDGE_BENCH_JOBS")); err == nil && v > 0 {
		jobs = v
	}
	window := 5 * time.Second
	if v, err := time.ParseDuration(os.Getenv("JOBBRIDGE_BENCH_WINDOW")); err == nil && v > 0 {
		window = v
	}
	for _, m := range []struct {
		name     string
		replicas int
		cluster  bool
	}{{"single", 1, false}, {"replicas=1", 1, true}, {"replicas=2", 2, true}, {"replicas=3", 3, true}} {
		b.Run(m.name, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				benchScaleOut(b, jobs, m.replicas, m.cluster, window)
			}
		})
	}
}

func benchScaleOut(b *testing.B, jobs, replicas int, cluster bool, window time.Duration) {
	b.StopTimer()
	sim := tsosim.NewServer(tsosim.Options{Users: map[string]string{"bench": "bench-pw"}})
	defer sim.Close()
	ids := make([]string, jobs)
	for i := range ids {
		ids[i] = fmt.Sprintf("bench-%06d", i)
		sim.AddJob(ids[i], []tsosim.Step{{Status: "IN_PROGRESS"}})
	}
	srv := natstest.RunServer(b, natstest.Options{})
	const interval = 50 * time.Millisecond // due far more often than polled
	in := config.DefaultInstance()
	in.Name, in.Vendor, in.URL, in.Concurrency = "bench", "tso", sim.URL, 64
	in.Interval = config.Duration(interval)
	in.Auth = config.Auth{Username: "bench", Password: config.SecretRef{Env: "BENCH_PW"}}
	env := func(k string) (string, bool) { return "bench-pw", k == "BENCH_PW" }

	regs := make([]*prometheus.Registry, replicas)
	hs := make([]*bridgetest.Harness, replicas)
	for r := range hs {
		instances, err := registry.Build(context.Background(), []config.Instance{in}, pollkit.Deps{Env: env, Logger: zerolog.Nop()})
		if err != nil {
			b.Fatal(err)
		}
		nc, err := nats.Connect(srv.ClientURL())
		if err != nil {
			b.Fatal(err)
		}
		defer nc.Close()
		regs[r] = prometheus.NewRegistry()
		reg := regs[r]
		hs[r] = bridgetest.StartBridge(b, nc, instances, func(o *bridge.Options) {
			o.Schedule = bridge.ScheduleOptions{Interval: interval, FastInterval: interval, IdleInterval: interval,
				RetainAfterTerminal: time.Hour, Workers: 64}
			o.FlushInterval = time.Second
			o.Logger = zerolog.Nop()
			o.Registerer = reg
			if cluster {
				o.Cluster = bridge.ClusterOptions{Enabled: true, ReplicaID: fmt.Sprintf("bench-%d", r), LeaseTTL: 15 * time.Second}
			}
		})
		defer hs[r].Stop()
	}
	js, _ := jetstream.New(hs[0].NC)
	for _, id := range ids {
		body := fmt.Sprintf(`{"vendor":"tso","instance":"bench","job":%q,"addedAt":"2026-01-01T00:00:00Z"}`, id)
		if _, err := js.PublishAsync("$KV.JOBBRIDGE_WATCHES."+bridge.JobRef{Vendor: "tso", Instance: "bench", ID: id}.Key(), []byte(body)); err != nil {
			b.Fatal(err)
		}
	}
	<-js.PublishAsyncComplete()
	if cluster {
		bridgetest.WaitFor(b, 2*time.Minute, "replicas share the shards", func() bool {
			seen := make([]int, bridge.DefaultShards)
			for _, h := range hs {
				if n := len(h.Bridge.OwnedShards()); n < bridge.DefaultShards/replicas-2 {
					return false
				}
				for _, s := range h.Bridge.OwnedShards() {
					seen[s]++
				}
			}
			for _, c := range seen {
				if c != 1 {
					return false
				}
			}
			return true
		})
	}
	polls := func() float64 {
		sum := 0.0
		for _, reg := range regs {
			sum += gatherCounter(b, reg, "jobbridge_polls_total", map[string]string{"result": "ok"})
		}
		return sum
	}
	bridgetest.WaitFor(b, time.Minute, "every job polled", func() bool { return polls() >= float64(2*jobs) })
	time.Sleep(time.Second) // past the start-up burst

	leases := func() (ops, bytes uint64) {
		for _, h := range hs {
			s := h.Bridge.LeaseStats()
			ops, bytes = ops+s.Ops, bytes+s.Bytes
		}
		return
	}
	p0, c0, t0 := polls(), benchkit.ProcessCPU(), time.Now()
	o0, by0 := leases()
	b.StartTimer()
	time.Sleep(window)
	b.StopTimer()
	p1, c1, el := polls(), benchkit.ProcessCPU(), time.Since(t0)
	o1, by1 := leases()
	n := p1 - p0
	b.ReportMetric(n/el.Seconds(), "polls/s")
	b.ReportMetric((c1-c0).Seconds()/el.Seconds(), "cpu-cores")
	b.ReportMetric(float64((c1-c0).Microseconds())/n, "cpu-µs/poll")
	b.ReportMetric(float64(o1-o0)/el.Seconds(), "lease-ops/s")
	b.ReportMetric(float64(by1-by0)/el.Seconds(), "lease-B/s")
}
