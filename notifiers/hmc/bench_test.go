package hmc

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jobbridge/jobbridge/bridge"
	"github.com/jobbridge/jobbridge/bridge/bridgetest"
	"github.com/jobbridge/jobbridge/bridge/natsconn/natstest"
	hmcpoll "github.com/jobbridge/jobbridge/pollers/hmc"
	"github.com/jobbridge/jobbridge/pollers/hmc/hmcsim"
	"github.com/jobbridge/jobbridge/pollers/pollkit"
)

// terminalTimes reports when each job's terminal event is delivered by a
// JetStream consumer, i.e. once the stream has stored (acknowledged) it.
func terminalTimes(tb testing.TB, js jetstream.JetStream) <-chan arrival {
	ctx := context.Background()
	var cons jetstream.Consumer
	var err error
	for i := 0; i < 50; i++ { // the bridge creates the stream
		if cons, err = js.OrderedConsumer(ctx, "JOBS", jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverNewPolicy}); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		tb.Fatal(err)
	}
	out := make(chan arrival, 4096)
	cc, err := cons.Consume(func(m jetstream.Msg) {
		at := time.Now()
		var ev struct {
			Data bridge.EventData `json:"data"`
		}
		if json.Unmarshal(m.Data(), &ev) == nil && ev.Data.Terminal {
			out <- arrival{job: ev.Data.Job, at: at, via: ev.Data.DetectedBy}
		}
	})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(cc.Stop)
	return out
}

type arrival struct {
	job string
	at  time.Time
	via bridge.Detection
}

func percentile(d []time.Duration, p float64) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[min(len(s)-1, int(float64(len(s))*p))]
}

// BenchmarkPushLatency measures, from a job's completion in the simulator
// to its terminal event stored on JetStream: push (STOMP) with the safety
// interval far away, beside polling at the bridge's default interval (10s)
// with no push channel. It reports p50 and p99 in milliseconds.
func BenchmarkPushLatency(b *testing.B) {
	b.Run("stomp", benchSTOMP)
	b.Run("poll-10s", benchPoll)
}

func benchSTOMP(b *testing.B) {
	samples := max(b.N, 300)
	clk := pollkit.NewManualClock(time.Date(2025, 3, 6, 16, 0, 0, 0, time.UTC))
	pb := startPushBridge(b, rigOptions{Mode: hmcpoll.NotifySTOMP, Clock: clk}, time.Hour, 8, func(o *Options) { o.HeartBeat = 5 * time.Second })
	pb.sim.Sync()
	sess, _ := pb.poller.Session()
	arrivals := terminalTimes(b, pb.h.JS)
	// Job i ends at (i+1)s simulated: each step of the clock ends one.
	for i := 0; i < samples; i++ {
		id := fmt.Sprintf("p%05d", i)
		if _, err := pb.sim.StartJob(sess.ID.Reveal(), hmcsim.Job{ID: id, Script: []hmcsim.Step{{Status: hmcsim.StatusRunning, For: time.Duration(i+1) * time.Second}, {Status: hmcsim.StatusComplete}}}); err != nil {
			b.Fatal(err)
		}
		if _, _, err := pb.h.Bridge.Registry().Add(context.Background(), bridge.Watch{Vendor: hmcpoll.Vendor, Instance: "prod", Job: id}); err != nil {
			b.Fatal(err)
		}
	}
	waitFor(b, time.Minute, "every running event", func() bool {
		st, _ := pb.h.JS.Stream(context.Background(), "JOBS")
		info, err := st.Info(context.Background())
		return err == nil && info.State.Msgs >= uint64(samples)
	})
	lat := make([]time.Duration, 0, samples)
	b.ResetTimer()
	for i := 0; i < samples; i++ {
		t0 := time.Now()
		clk.Advance(time.Second)
		pb.sim.Sync() // the completion: the broker sends the message now
		a := <-arrivals
		if a.job != fmt.Sprintf("p%05d", i) || a.via != bridge.DetectedBySTOMP {
			b.Fatalf("sample %d: got %s via %s", i, a.job, a.via)
		}
		lat = append(lat, a.at.Sub(t0))
	}
	b.StopTimer()
	report(b, "stomp", lat)
}

func benchPoll(b *testing.B) {
	const jobs, interval = 100, 10 * time.Second // the bridge's default Interval
	r := newRig(b, rigOptions{Mode: hmcpoll.NotifyNone})
	ns := natstest.RunServer(b, natstest.Options{})
	nc := natstest.Connect(b, ns)
	inst := bridge.Instance{Vendor: hmcpoll.Vendor, Name: "prod", Poller: r.poller, Concurrency: 8}
	h := bridgetest.StartBridge(b, nc, []bridge.Instance{inst}, func(o *bridge.Options) {
		o.Schedule = bridge.ScheduleOptions{FastFor: time.Nanosecond, RetainAfterTerminal: time.Hour} // defaults otherwise: 10s, jitter 0.1
	})
	arrivals := terminalTimes(b, h.JS)
	// Completions spread over two intervals, after every first poll.
	start := time.Now().Add(2 * time.Second)
	ends := map[string]time.Time{}
	for i := 0; i < jobs; i++ {
		id := fmt.Sprintf("q%03d", i)
		end := start.Add(time.Duration(rand.Int64N(int64(2 * interval))))
		ends[id] = end
		if _, err := r.sim.AddJob(hmcsim.Job{ID: id, Script: []hmcsim.Step{{Status: hmcsim.StatusRunning, For: time.Until(end)}, {Status: hmcsim.StatusComplete}}}); err != nil {
			b.Fatal(err)
		}
		h.Watch(hmcpoll.Vendor, "prod", id)
	}
	lat := make([]time.Duration, 0, jobs)
	b.ResetTimer()
	timeout := time.After(4 * interval)
	for len(lat) < jobs {
		select {
		case a := <-arrivals:
			lat = append(lat, a.at.Sub(ends[a.job]))
		case <-timeout:
			b.Fatalf("%d of %d jobs seen", len(lat), jobs)
		}
	}
	b.StopTimer()
	report(b, "poll every 10s", lat)
}

var reportMu sync.Mutex

func report(b *testing.B, what string, lat []time.Duration) {
	p50, p99 := percentile(lat, 0.50), percentile(lat, 0.99)
	b.ReportMetric(float64(p50.Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(p99.Microseconds())/1000, "p99-ms")
	b.ReportMetric(0, "ns/op")
	reportMu.Lock()
	defer reportMu.Unlock()
	fmt.Printf("completion -> JetStream ack, %-15s n=%-4d p50 %9.3f ms   p99 %9.3f ms   max %9.3f ms\n",
		what, len(lat), float64(p50.Microseconds())/1000, float64(p99.Microseconds())/1000, float64(slices.Max(lat).Microseconds())/1000)
}
