package hmc

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-stomp/stomp/v3/frame"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jobbridge/jobbridge/bridge"
	"github.com/jobbridge/jobbridge/bridge/benchkit"
	hmcpoll "github.com/jobbridge/jobbridge/pollers/hmc"
	"github.com/jobbridge/jobbridge/pollers/hmc/hmcsim"
	"github.com/jobbridge/jobbridge/pollers/pollkit"
)

// Environment knobs of BenchmarkPushRate.
const (
	// pushRatesEnv lists the completion rates per second, comma-separated
	// (default 100,1000,10000).
	pushRatesEnv = "JOBBRIDGE_BENCH_PUSH_RATES"
	// pushRoundEnv is the length of one round at one rate (default 3s);
	// a round never holds more than maxRoundSamples completions.
	pushRoundEnv = "JOBBRIDGE_BENCH_PUSH_ROUND"
)

const (
	pushRounds      = 3 // per side, alternating
	maxRoundSamples = 3000
)

// BenchmarkPushRate measures the push path under an open-loop load: HMC
// jobs complete at a fixed rate (100, 1,000 and 10,000 per second), each at
// its scheduled time whatever happened to the ones before it, and the
// latency of each is from that scheduled time to the moment its terminal
// event is delivered by a JetStream consumer (so the stream has stored
// it). The path: simulator -> STOMP broker -> notifier -> hint -> poll of
// the job over HTTP -> detect, encode -> publish -> stream -> consumer.
//
// Baseline, same simulator, broker, NATS server and consumer: a bare STOMP
// subscriber on the same session topic that parses each completion as the
// notifier does and publishes an event of the same size with nats.go
// PublishAsync, nothing between. Rounds alternate (ours first in even
// rounds) and each uses its own jobs; the percentiles pool the rounds.
//
// The simulator runs on a manual clock that a sender loop moves along with
// real time, so a job ends exactly at its slot; the sender's own delays
// count as latency on both sides (no coordinated omission).
//
// Reported: p50-ms, p99-ms, p999-ms, max-ms and the bare-* of each,
// p99-ratio (ours over bare), p99-best-round-ms and its bare- (the quietest
// of the rounds), sent/s (completions actually sent per second),
// via-poll (completions a poll other than the hinted one found first),
// sender-stall-ms (the longest the sender loop could not run: a measure of
// how loaded the machine was; latencies near it are the machine's).
// Target: p99 < 10 ms at 1,000/s.
func BenchmarkPushRate(b *testing.B) {
	rates := benchkit.Ints(b, pushRatesEnv, []int{100, 1000, 10000}, 1)
	round := benchkit.Duration(b, pushRoundEnv, 3*time.Second)
	for _, rate := range rates {
		b.Run(fmt.Sprintf("rate=%d", rate), func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				pushRate(b, rate, round)
			}
		})
	}
}

func pushRate(b *testing.B, rate int, round time.Duration) {
	b.StopTimer()
	per := min(maxRoundSamples, max(1, int(float64(rate)*round.Seconds())))
	dur := time.Duration(float64(per) / float64(rate) * float64(time.Second))
	base := time.Date(2025, 3, 6, 16, 0, 0, 0, time.UTC)
	clk := pollkit.NewManualClock(base)
	pb := startPushBridge(b, rigOptions{Mode: hmcpoll.NotifySTOMP, Clock: clk}, time.Hour, 32, func(o *Options) {
		// The daemon's defaults: the rig's 20ms watch poll would list
		// thousands of watches 50 times a second.
		o.HeartBeat, o.WatchPoll = DefaultHeartBeat, DefaultWatchPoll
	})
	pb.sim.Sync()
	sess, ok := pb.poller.Session()
	if !ok {
		b.Fatal("the poller has no session")
	}
	arrivals := terminalTimes(b, pb.h.JS)

	// Slots: 2 per round (ours, bare), each with its own jobs ending one
	// every 1/rate of simulated time from the slot's start.
	const gap = time.Second
	slots := 2 * pushRounds
	ids := make([][]string, slots)
	for s := range slots {
		offset := time.Duration(s) * (dur + gap)
		for i := range per {
			id := fmt.Sprintf("s%d-%06d", s, i)
			end := offset + time.Duration(float64(i+1)/float64(rate)*float64(time.Second))
			if _, err := pb.sim.StartJob(sess.ID.Reveal(), hmcsim.Job{ID: id, Script: []hmcsim.Step{{Status: hmcsim.StatusRunning, For: end}, {Status: hmcsim.StatusComplete}}}); err != nil {
				b.Fatal(err)
			}
			ids[s] = append(ids[s], id)
		}
	}
	ours := func(s int) bool { return (s/2)%2 == 0 == (s%2 == 0) } // rounds alternate who goes first
	var watched []string
	for s := range slots {
		if ours(s) {
			watched = append(watched, ids[s]...)
		}
	}
	watchAll(b, pb, watched)
	waitFor(b, 3*time.Minute, "every watched job's running event", func() bool {
		st, err := pb.h.JS.Stream(context.Background(), "JOBS")
		if err != nil {
			return false
		}
		info, err := st.Info(context.Background())
		return err == nil && info.State.Msgs >= uint64(len(watched))
	})
	eventBytes := lastEventSize(b, pb.h.JS)
	// Steady state before the first round: every record snapshotted, and
	// a watch-poll period of the notifier past.
	settleStart := time.Now()
	state, err := pb.h.JS.KeyValue(context.Background(), "JOBBRIDGE_STATE")
	if err != nil {
		b.Fatal(err)
	}
	waitFor(b, 3*time.Minute, "a snapshot record of every watched job", func() bool {
		st, err := state.Status(context.Background())
		return err == nil && st.Values() >= uint64(len(watched))
	})
	snapTook := time.Since(settleStart)
	time.Sleep(DefaultWatchPoll + time.Second)

	var oursLat, bareLat []time.Duration
	var oursP99, bareP99 []float64
	var sent []float64
	byPoll := 0
	var stall time.Duration
	b.StartTimer()
	for s := range slots {
		var bare *bareSubscriber
		if !ours(s) {
			bare = startBareSubscriber(b, pb, sess, eventBytes)
		}
		offset := time.Duration(s) * (dur + gap)
		clk.Advance(base.Add(offset).Sub(clk.Now()))
		lat, took := paceSlot(b, pb, clk, base.Add(offset), dur, rate, ids[s], arrivals, ours(s), &byPoll, &stall)
		if bare != nil {
			bare.stop()
			bareLat = append(bareLat, lat...)
			bareP99 = append(bareP99, millis(percentile(lat, 0.99)))
		} else {
			oursLat = append(oursLat, lat...)
			oursP99 = append(oursP99, millis(percentile(lat, 0.99)))
		}
		sent = append(sent, float64(per)/took.Seconds())
	}
	b.StopTimer()

	b.ReportMetric(0, "ns/op")
	for _, x := range []struct {
		prefix string
		lat    []time.Duration
	}{{"", oursLat}, {"bare-", bareLat}} {
		b.ReportMetric(millis(percentile(x.lat, 0.50)), x.prefix+"p50-ms")
		b.ReportMetric(millis(percentile(x.lat, 0.99)), x.prefix+"p99-ms")
		b.ReportMetric(millis(percentile(x.lat, 0.999)), x.prefix+"p999-ms")
		b.ReportMetric(millis(slices.Max(x.lat)), x.prefix+"max-ms")
	}
	b.ReportMetric(millis(percentile(oursLat, 0.99))/millis(percentile(bareLat, 0.99)), "p99-ratio")
	// The quietest round of each side: what the path does when the
	// machine lets it run (the pooled figures carry every stall).
	b.ReportMetric(slices.Min(oursP99), "p99-best-round-ms")
	b.ReportMetric(slices.Min(bareP99), "bare-p99-best-round-ms")
	b.ReportMetric(slices.Min(sent), "sent/s")
	b.ReportMetric(float64(byPoll), "via-poll")
	b.ReportMetric(millis(stall), "sender-stall-ms")
	b.Logf("push path at %d completions/s, open loop: completion -> terminal event delivered from JetStream p50 %.2f p99 %.2f p99.9 %.2f max %.2f ms; "+
		"bare STOMP -> PublishAsync p50 %.2f p99 %.2f p99.9 %.2f max %.2f ms; p99 ratio %.2f; %d rounds of %d completions per side (%v each, %d B events), per-round p99 ours %.2f bare %.2f; sender reached %.0f/s at worst; %d completions found by a poll other than the hinted one; %d watches, snapshot complete %v after their first events; the sender loop stalled up to %.1f ms",
		rate, millis(percentile(oursLat, 0.5)), millis(percentile(oursLat, 0.99)), millis(percentile(oursLat, 0.999)), millis(slices.Max(oursLat)),
		millis(percentile(bareLat, 0.5)), millis(percentile(bareLat, 0.99)), millis(percentile(bareLat, 0.999)), millis(slices.Max(bareLat)),
		millis(percentile(oursLat, 0.99))/millis(percentile(bareLat, 0.99)), pushRounds, per, dur, eventBytes, oursP99, bareP99, slices.Min(sent), byPoll, len(watched), snapTook.Round(time.Millisecond), millis(stall))
}

func millis(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// watchAll registers the jobs through the registry, a few at a time.
func watchAll(b *testing.B, pb *pushBridge, ids []string) {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, len(ids))
	work := make(chan string)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for id := range work {
				if _, _, err := pb.h.Bridge.Registry().Add(ctx, bridge.Watch{Vendor: hmcpoll.Vendor, Instance: "prod", Job: id}); err != nil {
					errs <- err
				}
			}
		}()
	}
	for _, id := range ids {
		work <- id
	}
	close(work)
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		b.Fatalf("watch: %v", err)
	}
}

// lastEventSize is the size of the newest event on the stream: the bare
// side publishes events as large.
func lastEventSize(b *testing.B, js jetstream.JetStream) int {
	b.Helper()
	st, err := js.Stream(context.Background(), "JOBS")
	if err != nil {
		b.Fatal(err)
	}
	m, err := st.GetLastMsgForSubject(context.Background(), "jobs.>")
	if err != nil {
		b.Fatal(err)
	}
	return len(m.Data)
}

// paceSlot moves the simulator's clock along with real time from start for
// dur, so that job i completes at (i+1)/rate, and collects each job's
// latency from its scheduled time to its terminal event's delivery.
func paceSlot(b *testing.B, pb *pushBridge, clk *pollkit.ManualClock, start time.Time, dur time.Duration, rate int, ids []string,
	arrivals <-chan arrival, ours bool, byPoll *int, stall *time.Duration) (lat []time.Duration, took time.Duration) {
	b.Helper()
	index := make(map[string]int, len(ids))
	for i, id := range ids {
		index[id] = i
	}
	realStart := time.Now()
	last := realStart
	for {
		// The longest gap between two turns of this loop shows how long
		// the process could not run at all (a loaded machine, a GC pause).
		now := time.Now()
		*stall = max(*stall, now.Sub(last))
		last = now
		el := min(now.Sub(realStart), dur)
		clk.Advance(start.Add(el).Sub(clk.Now()))
		pb.sim.Sync()
		if el == dur {
			break
		}
		time.Sleep(100 * time.Microsecond)
	}
	took = time.Since(realStart)
	lat = make([]time.Duration, 0, len(ids))
	seen := make([]bool, len(ids))
	timeout := time.After(2 * time.Minute)
	for len(lat) < len(ids) {
		select {
		case a := <-arrivals:
			i, ok := index[a.job]
			if !ok || seen[i] {
				continue
			}
			if ours && a.via != bridge.DetectedBySTOMP {
				// A poll not caused by the notification found it first
				// (a reconcile after a reconnect): counted, and its
				// latency kept.
				*byPoll++
			}
			seen[i] = true
			due := realStart.Add(time.Duration(float64(i+1) / float64(rate) * float64(time.Second)))
			lat = append(lat, a.at.Sub(due))
		case <-timeout:
			b.Fatalf("%d of %d completions reached the stream within 2 minutes (ours %v)", len(lat), len(ids), ours)
		}
	}
	return lat, took
}

// bareSubscriber is the baseline: STOMP in, JetStream out, nothing between.
type bareSubscriber struct {
	c    *stompConn
	done chan struct{}
	js   jetstream.JetStream
}

func startBareSubscriber(b *testing.B, pb *pushBridge, sess hmcpoll.Session, eventBytes int) *bareSubscriber {
	b.Helper()
	c, err := dialSTOMP(context.Background(), stompDial{
		Addr: pb.broker.Addr(), Login: sess.ID.Reveal(), Passcode: sess.Credential.Reveal(),
		HeartBeat: 5 * time.Second, Timeout: 5 * time.Second, WriteTimeout: 5 * time.Second, FrameBuffer: 1024,
	})
	if err != nil {
		b.Fatal(err)
	}
	if err := c.write(frame.New(frame.SUBSCRIBE, frame.Id, "bare", frame.Destination, "/topic/"+normalizeTopic(sess.JobNotificationTopic), frame.Ack, frame.AckAuto, frame.Receipt, "bare-sub"), 5*time.Second); err != nil {
		b.Fatal(err)
	}
	select {
	case f := <-c.frames:
		if f.Command != frame.RECEIPT {
			b.Fatalf("bare subscriber: %s to SUBSCRIBE", f.Command)
		}
	case <-time.After(10 * time.Second):
		b.Fatal("bare subscriber: no RECEIPT")
	}
	js, err := jetstream.New(pb.h.NC, jetstream.WithPublishAsyncMaxPending(1024))
	if err != nil {
		b.Fatal(err)
	}
	bs := &bareSubscriber{c: c, done: make(chan struct{}), js: js}
	// The event the consumer reads: the fields it looks at, padded to the
	// size of the bridge's events.
	type data struct {
		Job        string           `json:"job"`
		Terminal   bool             `json:"terminal"`
		DetectedBy bridge.Detection `json:"detectedBy"`
	}
	go func() {
		defer close(bs.done)
		for {
			var f *frame.Frame
			select {
			case <-c.done:
				return
			case f = <-c.frames:
			}
			if f.Command != frame.MESSAGE {
				continue
			}
			comp, ok, err := parseCompletion(f.Header.Contains)
			if err != nil || !ok {
				continue
			}
			body, _ := json.Marshal(struct {
				Data data   `json:"data"`
				Pad  string `json:"pad"`
			}{Data: data{Job: comp.JobID, Terminal: true, DetectedBy: bridge.DetectedBySTOMP}})
			if pad := eventBytes - len(body); pad > 0 {
				body, _ = json.Marshal(struct {
					Data data   `json:"data"`
					Pad  string `json:"pad"`
				}{Data: data{Job: comp.JobID, Terminal: true, DetectedBy: bridge.DetectedBySTOMP}, Pad: strings.Repeat("x", pad)})
			}
			if _, err := js.PublishAsync("jobs.hmc.bare.completed."+comp.JobID, body); err != nil {
				return
			}
		}
	}()
	return bs
}

func (bs *bareSubscriber) stop() {
	bs.c.close()
	<-bs.done
	select {
	case <-bs.js.PublishAsyncComplete():
	case <-time.After(time.Minute):
	}
}
