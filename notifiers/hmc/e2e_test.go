package hmc

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/jobbridge/jobbridge/bridge"
	"github.com/jobbridge/jobbridge/bridge/bridgetest"
	"github.com/jobbridge/jobbridge/bridge/natsconn/natstest"
	hmcpoll "github.com/jobbridge/jobbridge/pollers/hmc"
	"github.com/jobbridge/jobbridge/pollers/hmc/hmcsim"
	"github.com/jobbridge/jobbridge/pollers/pollkit"
)

// pushBridge is a real bridge on an in-process JetStream, polling the
// simulator through the HMC poller (wrapped in a ViaPoller), with the
// notifier hinting it: the wiring cmd/ does.
type pushBridge struct {
	*rig
	h   *bridgetest.Harness
	n   *Notifier
	via *ViaPoller
}

// startPushBridge wires it up. Polls come only at the safety interval
// (FastFor is off, as a push-driven instance needs; see the README).
func startPushBridge(t testing.TB, ro rigOptions, safety time.Duration, concurrency int, mutate func(*Options)) *pushBridge {
	t.Helper()
	mode := ro.Mode
	r := newRig(t, ro)
	ns := natstest.RunServer(t, natstest.Options{})
	nc := natstest.Connect(t, ns)
	via := NewViaPoller(r.poller)
	inst := bridge.Instance{Vendor: hmcpoll.Vendor, Name: "prod", Poller: via, Interval: InstanceInterval(mode, safety), Concurrency: concurrency}
	h := bridgetest.StartBridge(t, nc, []bridge.Instance{inst}, func(o *bridge.Options) {
		o.Schedule.FastFor = time.Nanosecond // no fast phase after a change
		o.Schedule.Workers = 2 * concurrency
		o.Schedule.Jitter = 0
		o.FlushInterval = 500 * time.Millisecond // KV snapshots of 10,000 jobs
	})
	opts := r.options(t, h.Bridge)
	opts.Mode, opts.Marker = mode, via
	if mutate != nil {
		mutate(&opts)
	}
	n := start(t, opts)
	waitFor(t, waitLong, "the push channel", func() bool { return n.Status().Connected })
	return &pushBridge{rig: r, h: h, n: n, via: via}
}

func intp(v int) *int { return &v }

func TestEndToEndSTOMP(t *testing.T) { endToEnd(t, hmcpoll.NotifySTOMP, bridge.DetectedBySTOMP) }
func TestEndToEndSSE(t *testing.T)   { endToEnd(t, hmcpoll.NotifySSE, bridge.DetectedBySSE) }

// endToEnd: a job ending in the simulator is a CloudEvent on JetStream
// within milliseconds, though the safety interval is an hour, with
// detectedBy naming the push channel; one case per way a job ends.
func endToEnd(t *testing.T, mode hmcpoll.NotificationMode, via bridge.Detection) {
	pb := startPushBridge(t, rigOptions{Mode: mode}, time.Hour, 4, nil)
	sess, _ := pb.poller.Session()
	cases := []struct {
		id    string
		end   hmcsim.Step
		state bridge.State
	}{
		{"ok", hmcsim.Step{Status: hmcsim.StatusComplete}, bridge.StateSucceeded},
		{"err", hmcsim.Step{Status: hmcsim.StatusComplete, StatusCode: intp(500), ReasonCode: intp(263)}, bridge.StateFailed},
		{"cancel", hmcsim.Step{Status: hmcsim.StatusCanceled, StatusCode: intp(500), ReasonCode: intp(0)}, bridge.StateCanceled},
	}
	for _, c := range cases {
		if _, err := pb.sim.StartJob(sess.ID.Reveal(), hmcsim.Job{ID: c.id, Script: []hmcsim.Step{{Status: hmcsim.StatusRunning, For: 1500 * time.Millisecond}, c.end}}); err != nil {
			t.Fatal(err)
		}
		pb.h.Watch(hmcpoll.Vendor, "prod", c.id)
	}
	// The bridge spreads first polls over up to a second; the jobs run
	// longer than that, so the first poll sees them running.
	for _, c := range cases {
		got := pb.h.WaitEvents(c.id, 2, waitLong)
		if s := bridgetest.Summary(got); !slices.Equal(s, []string{"transition:running", "transition:" + string(c.state)}) {
			t.Fatalf("%s: events %v", c.id, s)
		}
		if got[0].Data.DetectedBy != bridge.DetectedByPoll || got[1].Data.DetectedBy != via {
			t.Fatalf("%s: detectedBy %s then %s, want poll then %s", c.id, got[0].Data.DetectedBy, got[1].Data.DetectedBy, via)
		}
		if d := got[1].Data.DetectedAt.Sub(got[0].Data.DetectedAt); d > 5*time.Second {
			t.Fatalf("%s: the end took %s to be seen with an hour's safety interval", c.id, d)
		}
	}
	time.Sleep(100 * time.Millisecond)
	for _, c := range cases {
		if n := len(pb.h.EventsFor(c.id)); n != 2 {
			t.Fatalf("%s: %d events, want exactly 2", c.id, n)
		}
	}
}

// storm completes n jobs while the broker connection is cut and restored
// twice. Every job's terminal event must be on the stream exactly once,
// and each within the safety interval of the job's end. The simulator runs
// on a manual clock, so jobs end when the test moves it, after every watch
// is registered and has seen its job running.
func storm(t *testing.T, n int) {
	const (
		safety  = 20 * time.Second
		batches = 20
		step    = 150 * time.Millisecond // real and simulated time between batches
	)
	clk := pollkit.NewManualClock(time.Date(2025, 3, 6, 16, 0, 0, 0, time.UTC))
	pb := startPushBridge(t, rigOptions{Mode: hmcpoll.NotifySTOMP, Clock: clk}, safety, 32, func(o *Options) { o.HeartBeat = 2 * time.Second })
	sess, _ := pb.poller.Session()
	ctx := context.Background()
	per := (n + batches - 1) / batches
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("storm-%05d", i)
		run := time.Duration(i/per+1) * step
		if _, err := pb.sim.StartJob(sess.ID.Reveal(), hmcsim.Job{ID: ids[i], Script: []hmcsim.Step{{Status: hmcsim.StatusRunning, For: run}, {Status: hmcsim.StatusComplete}}}); err != nil {
			t.Fatal(err)
		}
	}
	reg := pb.h.Bridge.Registry()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	work := make(chan string)
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for id := range work {
				var err error
				for try := 0; try < 3; try++ { // a loaded machine times out a KV write now and then
					if _, _, err = reg.Add(ctx, bridge.Watch{Vendor: hmcpoll.Vendor, Instance: "prod", Job: id}); err == nil {
						break
					}
				}
				if err != nil {
					errs <- err
				}
			}
		}()
	}
	regStart := time.Now()
	for _, id := range ids {
		work <- id
	}
	close(work)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	regTook := time.Since(regStart)
	js := pb.h.JS
	count := func() int {
		st, err := js.Stream(ctx, "JOBS")
		if err != nil {
			t.Fatal(err)
		}
		info, err := st.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return int(info.State.Msgs)
	}
	waitFor(t, 60*time.Second, "every job's running event", func() bool { return count() >= n })

	// Jobs end batch by batch; the broker is cut twice meanwhile, and the
	// completions of a cut are lost by the broker and found by the
	// reconcile after the reconnect.
	ends := make(map[string]time.Time, n)
	cuts := map[int]bool{batches / 4: true, batches * 3 / 5: true}
	for b := 1; b <= batches; b++ {
		if cuts[b] {
			// Each cut hits a live connection (a slow machine may still be
			// reconnecting from the last one).
			waitFor(t, 90*time.Second, "a live connection to cut", func() bool { return pb.n.Status().Connected })
			pb.broker.SetRefusing(true)
			if pb.broker.DropConnections() == 0 {
				t.Fatal("no connection to cut")
			}
		}
		if cuts[b-2] {
			pb.broker.SetRefusing(false)
		}
		clk.Advance(step)
		now := time.Now()
		for i := (b - 1) * per; i < min(b*per, n); i++ {
			ends[ids[i]] = now
		}
		time.Sleep(step)
	}
	waitFor(t, 60*time.Second, "every job's terminal event", func() bool { return count() >= 2*n })
	time.Sleep(300 * time.Millisecond) // room for a duplicate to show
	events := bridgetest.ReadStream(t, js, "JOBS")
	seen := map[string]bool{}
	terminal := map[string]int{}
	by := map[bridge.Detection]int{}
	var worst time.Duration
	for _, e := range events {
		id, _ := e.Event["id"].(string)
		if seen[id] {
			t.Fatalf("event id %s twice", id)
		}
		seen[id] = true
		if !e.Data.Terminal {
			continue
		}
		terminal[e.Data.Job]++
		by[e.Data.DetectedBy]++
		lat := e.Data.DetectedAt.Sub(ends[e.Data.Job])
		worst = max(worst, lat)
		// The poll that covers a lost completion is due within the safety
		// interval; running and publishing it on a loaded machine takes a
		// little more (20.08s was seen under the race detector).
		if lat > safety+5*time.Second {
			t.Errorf("%s: published %s after it ended, over the safety interval %s (+5s to run the poll)", e.Data.Job, lat, safety)
		}
	}
	for _, id := range ids {
		if terminal[id] != 1 {
			t.Errorf("%s: %d terminal events, want exactly 1", id, terminal[id])
		}
	}
	if len(events) != 2*n {
		t.Errorf("%d events, want %d (running and the end, once each)", len(events), 2*n)
	}
	bs := pb.broker.Stats()
	t.Logf("%d jobs (registered in %s): %d events; terminal detected by stomp %d, by poll (reconcile) %d; worst end-to-event %s; broker: %d published, %d lost while cut; notifier connects %d, reconciles %d",
		n, regTook.Round(time.Millisecond), len(events), by[bridge.DetectedBySTOMP], by[bridge.DetectedByPoll], worst.Round(time.Millisecond), bs.Published, bs.Unheard, pb.n.Status().Connects, pb.n.Status().Reconciles)
	if bs.Unheard == 0 || by[bridge.DetectedByPoll] == 0 || by[bridge.DetectedBySTOMP] == 0 {
		t.Fatalf("the storm did not exercise both paths: lost %d, by poll %d, by stomp %d", bs.Unheard, by[bridge.DetectedByPoll], by[bridge.DetectedBySTOMP])
	}
	if c := pb.n.Status().Connects; c < 3 {
		t.Fatalf("connects = %d, want at least 3 (two cuts)", c)
	}
}
