package bridge_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/jobbridge/jobbridge/bridge"
	"github.com/jobbridge/jobbridge/bridge/benchkit"
	"github.com/jobbridge/jobbridge/bridge/bridgetest"
	"github.com/jobbridge/jobbridge/bridge/natsconn/natstest"
)

// startupSizesEnv lists the numbers of watches of BenchmarkStartup,
// comma-separated (default 1000,10000,100000).
const startupSizesEnv = "JOBBRIDGE_BENCH_STARTUP_SIZES"

// BenchmarkStartup measures a restart with N watches in the KV registry
// and N tracker records in the state bucket (left by a first bridge that
// polled every job once and flushed its snapshot): the time from
// bridge.New to Ready, which covers reading the state bucket, replaying the
// stream past the checkpoint, loading the registry into the scheduler and
// pruning. Baselines, same server, alternating rounds: listing the
// registry's keys (kv.ListKeys), and reading every entry of both buckets
// with a plain KV watcher (the least a restart must read). Reported:
// ready-s, list-keys-s, read-all-s (medians of 3 rounds), ratio (ready over
// read-all) and list-ratio (ready over list-keys).
func BenchmarkStartup(b *testing.B) {
	for _, n := range benchkit.Ints(b, startupSizesEnv, []int{1000, 10000, 100000}, 1) {
		b.Run(fmt.Sprintf("jobs=%d", n), func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				startup(b, n)
			}
		})
	}
}

func startup(b *testing.B, n int) {
	const rounds = 3
	b.StopTimer()
	srv := natstest.RunServer(b, natstest.Options{})
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		b.Fatal(err)
	}
	defer nc.Close()
	p := bridgetest.NewPoller()
	ids := make([]string, n)
	for j := range ids {
		ids[j] = fmt.Sprintf("6b1f2c3d-%04x-4e5f-8a9b-%012d", j%65536, j)
		p.Set(ids[j], bridge.StateRunning, "IN_PROGRESS")
	}
	instances := []bridge.Instance{{Vendor: "hmc", Name: "prod", Poller: p, Concurrency: 64}}
	opts := func(o *bridge.Options) {
		o.Schedule = bridge.ScheduleOptions{Interval: time.Minute, FastInterval: time.Minute, IdleInterval: time.Minute, Workers: 64}
		o.FlushInterval = time.Second
		o.Logger = zerolog.Nop()
	}

	// The state a restart finds: watches, first events, snapshot records.
	h := bridgetest.StartBridge(b, nc, instances, opts)
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(4096))
	if err != nil {
		b.Fatal(err)
	}
	for _, id := range ids {
		w := bridge.Watch{Vendor: "hmc", Instance: "prod", Job: id, Origin: "api", AddedAt: time.Now().UTC()}
		val, _ := json.Marshal(w)
		if _, err := js.PublishAsync("$KV.JOBBRIDGE_WATCHES."+w.Ref().Key(), val, jetstream.WithStallWait(time.Minute)); err != nil {
			b.Fatal(err)
		}
	}
	<-js.PublishAsyncComplete()
	ctx := context.Background()
	state, err := js.KeyValue(ctx, "JOBBRIDGE_STATE")
	if err != nil {
		b.Fatal(err)
	}
	bridgetest.WaitFor(b, 10*time.Minute, "a snapshot record of every job", func() bool {
		st, err := state.Status(ctx)
		return err == nil && st.Values() >= uint64(n)
	})
	h.Stop()

	watches, err := js.KeyValue(ctx, "JOBBRIDGE_WATCHES")
	if err != nil {
		b.Fatal(err)
	}
	var ready, list, readAll []float64
	b.StartTimer()
	for round := range rounds {
		ours := func() {
			o := bridge.Options{Conn: nc, Stream: bridge.StreamOptions{Manage: true, Storage: jetstream.FileStorage}, Instances: instances}
			opts(&o)
			rctx, cancel := context.WithCancel(ctx)
			start := time.Now()
			br, err := bridge.New(rctx, o)
			if err != nil {
				b.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- br.Run(rctx) }()
			select {
			case <-br.Ready():
			case err := <-done:
				b.Fatalf("bridge stopped before ready: %v", err)
			case <-time.After(10 * time.Minute):
				b.Fatal("bridge not ready in 10 minutes")
			}
			ready = append(ready, time.Since(start).Seconds())
			if got := br.Tracker().Len(); got < n {
				b.Errorf("ready with %d tracker records, want %d", got, n)
			}
			cancel()
			if err := <-done; err != nil {
				b.Fatalf("bridge Run: %v", err)
			}
		}
		baseline := func() {
			start := time.Now()
			keys, err := watches.ListKeys(ctx)
			if err != nil {
				b.Fatal(err)
			}
			got := 0
			for range keys.Keys() {
				got++
			}
			list = append(list, time.Since(start).Seconds())
			if got < n {
				b.Fatalf("listed %d keys, want %d", got, n)
			}
			start = time.Now()
			got = readEntries(b, state) + readEntries(b, watches)
			readAll = append(readAll, time.Since(start).Seconds())
			if got < 2*n {
				b.Fatalf("read %d entries, want %d", got, 2*n)
			}
		}
		if round%2 == 0 {
			ours()
			baseline()
		} else {
			baseline()
			ours()
		}
	}
	b.StopTimer()
	r, l, a := benchkit.Median(ready), benchkit.Median(list), benchkit.Median(readAll)
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(r, "ready-s")
	b.ReportMetric(l, "list-keys-s")
	b.ReportMetric(a, "read-all-s")
	b.ReportMetric(r/a, "ratio")
	b.ReportMetric(r/l, "list-ratio")
	b.Logf("start-up with %d watches and %d state records: ready in %.3fs, listing the keys %.3fs, reading both buckets %.3fs (medians of %d alternating rounds: ready %v, list %v, read %v)",
		n, n, r, l, a, rounds, ready, list, readAll)
}

// readEntries reads every entry of a bucket through a watcher, as the
// bridge's recovery does, and counts them.
func readEntries(b *testing.B, kv jetstream.KeyValue) int {
	b.Helper()
	w, err := kv.WatchAll(context.Background(), jetstream.IgnoreDeletes())
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = w.Stop() }()
	n := 0
	for e := range w.Updates() {
		if e == nil {
			return n
		}
		n++
	}
	return n
}
