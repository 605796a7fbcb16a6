package bridge

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jobbridge/jobbridge/bridge/benchkit"
	"github.com/jobbridge/jobbridge/bridge/natsconn/natstest"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// BenchmarkPublishPath measures transitions per second from the tracker to
// the JetStream ack (detect, encode as a CloudEvent, per-job ordered async
// publish, commit; the KV snapshotter running beside it) and, in the same
// run against the same server, a bare nats.go JetStream async publish of the
// identical messages with the same Nats-Msg-Ids and in-flight bound. Rounds
// alternate so that drift in the machine affects both sides alike, which
// side goes first alternates too, and a warm-up round is not counted. Reported:
// events/s of each side and their ratio (target >= 0.8), and the process
// CPU per event of each side and their ratio (cpu-ratio), which other load
// on a shared machine moves far less than wall-clock throughput.
func BenchmarkPublishPath(b *testing.B) {
	const (
		jobs     = 5000
		steps    = 4 // transitions per job: pending, running, running(paused), succeeded
		inFlight = 1024
		rounds   = 7
	)
	srv := natstest.RunServer(b, natstest.Options{})
	nc, err := nats.Connect(srv.ClientURL()) // TCP: the in-process pipe is slower
	if err != nil {
		b.Fatal(err)
	}
	defer nc.Close()
	ctx := context.Background()
	js, _ := jetstream.New(nc)
	kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "BENCH_STATE", History: 1})
	if err != nil {
		b.Fatal(err)
	}
	enc, _ := NewEncoder(EncoderOptions{Subjects: Subjects{Prefix: "jobs"}, RawCap: 16 << 10})
	script := []struct {
		state  State
		native string
	}{{StatePending, "READY"}, {StateRunning, "ASSIGNED"}, {StateRunning, "PAUSED"}, {StateSucceeded, "COMPLETED"}}
	raw := []byte(`{"processName":":Demo:Flows:Nightly","name":"Nightly","peerId":"urn:jxta:uuid-5961","startTime":"Mon Nov 23 09:14:02 CST 2026","status":"ASSIGNED","outputParameters":[]}`)

	resetStream := func(tb testing.TB) {
		_ = js.DeleteStream(ctx, "JOBS")
		if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "JOBS", Subjects: []string{"jobs.>"}, Storage: jetstream.FileStorage, Duplicates: 2 * time.Minute}); err != nil {
			tb.Fatal(err)
		}
	}
	observations := func(round int) [][]Observation {
		out := make([][]Observation, steps)
		now := time.Now()
		for s := 0; s < steps; s++ {
			out[s] = make([]Observation, jobs)
			for j := 0; j < jobs; j++ {
				out[s][j] = Observation{
					Job:   JobRef{Vendor: "tso", Instance: "bench", ID: fmt.Sprintf("r%d-job-%05d", round, j)},
					State: script[s].state, Native: script[s].native, Raw: raw, RawJSON: true, ObservedAt: now, Via: DetectedByPoll,
				}
			}
		}
		return out
	}

	var bytesPerEvent int
	// runOurs times the bridge's path over one set of observations and
	// returns events/s and process CPU µs per event.
	runOurs := func(set int) (float64, float64) {
		resetStream(b)
		obs := observations(set)
		tr := NewTracker()
		pub, err := NewPublisherJS(nc, tr, PublisherOptions{MaxInFlight: inFlight, MaxPending: 10000}, zerolog.Nop(), NewMetrics(nil))
		if err != nil {
			b.Fatal(err)
		}
		snap := &snapshotter{js: js, kv: kv, bucket: "BENCH_STATE", stream: "JOBS", tracker: tr, pub: pub, log: zerolog.Nop(), metrics: pub.metrics}
		pctx, stop := context.WithCancel(ctx)
		snapDone := make(chan struct{})
		go func() {
			defer close(snapDone)
			t := time.NewTicker(time.Second)
			defer t.Stop()
			for {
				select {
				case <-pctx.Done():
					return
				case <-t.C:
					_ = snap.flush(pctx)
				}
			}
		}()
		start, startCPU := time.Now(), benchkit.ProcessCPU()
		var sample []byte
		for s := 0; s < steps; s++ {
			for j := range obs[s] {
				for _, c := range tr.Detect(&obs[s][j], DetectOptions{}) {
					ev, err := enc.Encode(&c)
					if err != nil {
						b.Fatal(err)
					}
					if sample == nil {
						sample = ev.Msg.Data
					}
					if err := pub.Submit(ctx, ev); err != nil {
						b.Fatal(err)
					}
				}
			}
		}
		for pub.Pending() > 0 {
			time.Sleep(200 * time.Microsecond)
		}
		elapsed, cpu := time.Since(start), benchkit.ProcessCPU()-startCPU
		stop()
		<-snapDone
		pub.Stop()
		bytesPerEvent = len(sample)
		return float64(jobs*steps) / elapsed.Seconds(), float64(cpu.Microseconds()) / float64(jobs*steps)
	}
	// runRaw times bare nats.go on identical messages (encoded before timing).
	runRaw := func(set int) (float64, float64) {
		resetStream(b)
		obs := observations(set)
		tr := NewTracker()
		var msgs []*nats.Msg
		var ids []string
		for s := 0; s < steps; s++ {
			for j := range obs[s] {
				for _, c := range tr.Detect(&obs[s][j], DetectOptions{}) {
					ev, _ := enc.Encode(&c)
					tr.Enqueue(ev)
					tr.Acked(ev, 0)
					msgs = append(msgs, ev.Msg)
					ids = append(ids, ev.ID)
				}
			}
		}
		rjs, _ := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(inFlight))
		start, startCPU := time.Now(), benchkit.ProcessCPU()
		for k, m := range msgs {
			if _, err := rjs.PublishMsgAsync(m, jetstream.WithMsgID(ids[k]), jetstream.WithStallWait(time.Minute)); err != nil {
				b.Fatal(err)
			}
		}
		select {
		case <-rjs.PublishAsyncComplete():
		case <-time.After(time.Minute):
			b.Fatal("raw publish did not complete")
		}
		elapsed, cpu := time.Since(start), benchkit.ProcessCPU()-startCPU
		return float64(len(msgs)) / elapsed.Seconds(), float64(cpu.Microseconds()) / float64(len(msgs))
	}

	var ours, bare, oursCPU, bareCPU []float64
	for i := 0; i < b.N; i++ {
		// A warm-up round of each side, not counted: the first round of a
		// process pays for heap growth and the file store's first blocks,
		// and fell 0.1 below the others whichever side it was.
		runOurs(1000 + i*100)
		runRaw(1001 + i*100)
		for round := 0; round < rounds; round++ {
			// Which side goes first alternates, so neither always runs
			// right after a stream reset or the other's garbage.
			var o, oc, r, rc float64
			if round%2 == 0 {
				o, oc = runOurs(2*round + i*100)
				r, rc = runRaw(2*round + 1 + i*100)
			} else {
				r, rc = runRaw(2*round + 1 + i*100)
				o, oc = runOurs(2*round + i*100)
			}
			ours, oursCPU = append(ours, o), append(oursCPU, oc)
			bare, bareCPU = append(bare, r), append(bareCPU, rc)
		}
	}
	// The ratio is the median of per-round ratios: each round's two sides
	// run back to back, so load from elsewhere hits both alike.
	var ratios []float64
	for k := range ours {
		ratios = append(ratios, ours[k]/bare[k])
	}
	var cpuRatios []float64
	for k := range oursCPU {
		cpuRatios = append(cpuRatios, bareCPU[k]/oursCPU[k])
	}
	mo, mb, mr := benchkit.Median(ours), benchkit.Median(bare), benchkit.Median(ratios)
	b.ReportMetric(mo, "events/s")
	b.ReportMetric(mb, "raw-events/s")
	b.ReportMetric(mr, "ratio")
	b.ReportMetric(benchkit.Median(oursCPU), "cpu-us/event")
	b.ReportMetric(benchkit.Median(bareCPU), "raw-cpu-us/event")
	b.ReportMetric(benchkit.Median(cpuRatios), "cpu-ratio")
	b.ReportMetric(float64(bytesPerEvent), "bytes/event")
	b.Logf("publish path: ours %.0f events/s, raw nats.go %.0f msgs/s, ratio %.2f (median of %d per-round ratios, rounds of %d events, %d B each; ratios %.2f); "+
		"process CPU per event (client and in-process server) ours %.1f µs, raw %.1f µs, cpu-ratio %.2f (%.2f)",
		mo, mb, mr, len(ours), jobs*steps, bytesPerEvent, ratios, benchkit.Median(oursCPU), benchkit.Median(bareCPU), benchkit.Median(cpuRatios), cpuRatios)
}
