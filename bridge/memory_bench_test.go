package bridge_test

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strconv"
	"testing"
	"time"

	"github.com/jobbridge/jobbridge/bridge"
	"github.com/jobbridge/jobbridge/bridge/bridgetest"
	"github.com/jobbridge/jobbridge/bridge/natsconn/natstest"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	debug.FreeOSMemory()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}

// BenchmarkWatchedJobMemory registers N watches (JOBBRIDGE_BENCH_JOBS,
// default 100000) on one bridge with a fake poller at a realistic 60s
// interval, waits until every job's first event is acknowledged, and
// reports the bridge's Go heap per watched job. The NATS server runs in the
// same process, so its share (stream and KV caches) is included: the figure
// is an upper bound for the bridge alone.
func BenchmarkWatchedJobMemory(b *testing.B) {
	n := 100000
	if v, err := strconv.Atoi(os.Getenv("JOBBRIDGE_BENCH_JOBS")); err == nil && v > 0 {
		n = v
	}
	for i := 0; i < b.N; i++ {
		srv := natstest.RunServer(b, natstest.Options{})
		nc, err := nats.Connect(srv.ClientURL())
		if err != nil {
			b.Fatal(err)
		}
		p := bridgetest.NewPoller()
		ids := make([]string, n)
		for j := range ids {
			ids[j] = fmt.Sprintf("6b1f2c3d-%04x-4e5f-8a9b-%012d", j%65536, j)
			p.Set(ids[j], bridge.StateRunning, "IN_PROGRESS")
		}
		h := bridgetest.StartBridge(b, nc, []bridge.Instance{{Vendor: "hmc", Name: "prod", Poller: p, Concurrency: 64}}, func(o *bridge.Options) {
			o.Schedule = bridge.ScheduleOptions{Interval: 60 * time.Second, FastInterval: 60 * time.Second, IdleInterval: 60 * time.Second, Workers: 64}
			o.FlushInterval = time.Second
		})
		before := heapInUse()
		// Register through KV directly, many at once: the registry API does
		// one round trip per watch and is not what is measured here.
		js, _ := jetstream.New(nc)
		start := time.Now()
		futs := make([]jetstream.PubAckFuture, 0, 4096)
		for _, id := range ids {
			w := bridge.Watch{Vendor: "hmc", Instance: "prod", Job: id, AddedAt: time.Now().UTC()}
			body := []byte(fmt.Sprintf(`{"vendor":"hmc","instance":"prod","job":%q,"addedAt":%q}`, id, w.AddedAt.Format(time.RFC3339Nano)))
			f, err := js.PublishAsync("$KV.JOBBRIDGE_WATCHES."+w.Ref().Key(), body, jetstream.WithStallWait(time.Minute))
			if err != nil {
				b.Fatal(err)
			}
			futs = append(futs, f)
			if len(futs) == cap(futs) {
				<-js.PublishAsyncComplete()
				futs = futs[:0]
			}
		}
		<-js.PublishAsyncComplete()
		stream, _ := js.Stream(context.Background(), "JOBS")
		bridgetest.WaitFor(b, 10*time.Minute, "every job's first event", func() bool {
			info, err := stream.Info(context.Background())
			return err == nil && info.State.Msgs >= uint64(n)
		})
		ready := time.Since(start)
		time.Sleep(2 * time.Second) // a snapshot flush and a quiet scheduler
		after := heapInUse()
		if path := os.Getenv("JOBBRIDGE_BENCH_HEAPPROFILE"); path != "" {
			if f, err := os.Create(path); err == nil {
				_ = pprof.WriteHeapProfile(f)
				f.Close()
			}
		}
		perJob := float64(after-before) / float64(n)
		b.ReportMetric(perJob, "heap-B/job")
		b.ReportMetric(ready.Seconds(), "s-to-first-events")
		b.Logf("%d watched jobs: %.0f B of heap per job (NATS server included), first events for all in %s", n, perJob, ready.Round(time.Millisecond))
		h.Stop()
		nc.Close()
	}
}
