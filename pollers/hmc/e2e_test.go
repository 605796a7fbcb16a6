package hmc_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"

	"github.com/jobbridge/jobbridge/bridge"
	"github.com/jobbridge/jobbridge/bridge/bridgetest"
	"github.com/jobbridge/jobbridge/bridge/config"
	"github.com/jobbridge/jobbridge/bridge/natsconn/natstest"
	"github.com/jobbridge/jobbridge/pollers/hmc"
	"github.com/jobbridge/jobbridge/pollers/hmc/hmcsim"
	"github.com/jobbridge/jobbridge/pollers/pollkit"
)

const waitLong = 15 * time.Second

// sentinel is a job that runs forever, watched by every bridge of these
// tests, so that polls go on after the jobs under test ended: settle counts
// them to know the bridge had every chance to publish something more.
const sentinel = "sentinel"

// countingPoller counts the bridge's polls of the poller it wraps.
type countingPoller struct {
	bridge.Poller
	n     atomic.Int64
	mu    sync.Mutex
	byJob map[string]int
}

func (c *countingPoller) Poll(ctx context.Context, job bridge.JobRef) (bridge.Observation, error) {
	c.n.Add(1)
	c.mu.Lock()
	c.byJob[job.ID]++
	c.mu.Unlock()
	return c.Poller.Poll(ctx, job)
}

func (c *countingPoller) polls(id string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.byJob[id]
}

func (c *countingPoller) Close(ctx context.Context) error {
	return c.Poller.(bridge.Closer).Close(ctx)
}

type e2e struct {
	t     *testing.T
	sim   *hmcsim.Server
	clock *pollkit.ManualClock
	nc    *nats.Conn
	opts  map[string]any
}

func newE2E(t *testing.T, options map[string]any) *e2e {
	t.Helper()
	clk := pollkit.NewManualClock(t0)
	sim := hmcsim.NewServer(hmcsim.Options{Clock: clk, Users: map[string]string{user: password}, TickEvery: -1})
	t.Cleanup(sim.Close)
	sim.MustAddJob(sentinel, hmcsim.Step{Status: "running"})
	ns := natstest.RunServer(t, natstest.Options{})
	return &e2e{t: t, sim: sim, clock: clk, nc: natstest.Connect(t, ns), opts: options}
}

// instance builds the HMC instance the way the CLI does, through FromConfig,
// and wraps its poller to count polls.
func (e *e2e) instance() (bridge.Instance, *hmc.Poller, *countingPoller) {
	e.t.Helper()
	inst := config.Instance{
		Name: "prod", Vendor: hmc.Vendor, URL: e.sim.URL,
		Auth:    config.Auth{Username: user, Password: config.SecretRef{Env: "HMC_PASSWORD"}},
		Options: e.opts,
	}
	deps := pollkit.Deps{
		Env:    func(k string) (string, bool) { return password, k == "HMC_PASSWORD" },
		Logger: zerolog.New(zerolog.NewTestWriter(e.t)).Level(zerolog.WarnLevel),
	}
	bi, err := hmc.FromConfig(context.Background(), inst, deps)
	if err != nil {
		e.t.Fatalf("FromConfig: %v", err)
	}
	p := bi.Poller.(*hmc.Poller)
	cp := &countingPoller{Poller: p, byJob: map[string]int{}}
	bi.Poller = cp
	return bi, p, cp
}

func (e *e2e) start(bi bridge.Instance, mutate func(*bridge.Options)) *bridgetest.Harness {
	e.t.Helper()
	h := bridgetest.StartBridge(e.t, e.nc, []bridge.Instance{bi}, mutate)
	h.Watch(hmc.Vendor, "prod", sentinel)
	return h
}

// settle waits for a few more polls (of the sentinel at least) and for
// their events to be acknowledged, then returns the job's events: whatever
// was going to be published has been.
func settle(h *bridgetest.Harness, cp *countingPoller, id string) []bridgetest.Received {
	h.T.Helper()
	n := cp.n.Load()
	bridgetest.WaitFor(h.T, waitLong, "more polls", func() bool { return cp.n.Load() >= n+10 })
	bridgetest.WaitFor(h.T, waitLong, "acks", func() bool { return h.Bridge.PendingEvents() == 0 })
	return h.EventsFor(id)
}

func assertSummary(t *testing.T, id string, got []bridgetest.Received, want ...string) {
	t.Helper()
	if s := bridgetest.Summary(got); !slices.Equal(s, want) {
		t.Fatalf("%s: events %v, want exactly %v", id, s, want)
	}
}

// natives lists the native statuses of the job's transition events.
func natives(rs []bridgetest.Received) []string {
	var out []string
	for _, r := range rs {
		if r.Data.Kind == bridge.KindTransition {
			out = append(out, r.Data.Native.Status)
		}
	}
	return out
}

// truth lists the statuses the simulator's ground truth has for a job.
func truth(sim *hmcsim.Server, id string) []string {
	var out []string
	for _, c := range sim.History() {
		if c.JobID == id && c.Status != "" {
			out = append(out, c.Status)
		}
	}
	return out
}

func TestE2EEveryStatus(t *testing.T) {
	e := newE2E(t, nil)
	run := hmcsim.Step{Status: "running", For: time.Minute}
	jobs := map[string][]hmcsim.Step{
		"ok":        {run, {Status: "complete", StatusCode: intp(200), Results: map[string]any{"message": "started"}}},
		"nocontent": {run, {Status: "complete", StatusCode: intp(204)}},
		"fail":      {run, {Status: "complete", StatusCode: intp(500), ReasonCode: intp(263)}},
		"badreq":    {run, {Status: "complete", StatusCode: intp(409), ReasonCode: intp(1)}},
		"nocode":    {run, {Status: "complete", NoStatusCode: true}},
		"cxl":       {run, {Status: "cancel-pending", For: time.Minute}, {Status: "canceled", StatusCode: intp(500), ReasonCode: intp(263)}},
		"odd":       {run, {Status: "suspended"}},
	}
	ids := slices.Sorted(func(yield func(string) bool) {
		for id := range jobs {
			if !yield(id) {
				return
			}
		}
	})
	for _, id := range ids {
		e.sim.MustAddJob(id, jobs[id]...)
	}
	bi, _, cp := e.instance()
	h := e.start(bi, nil)
	for _, id := range ids {
		h.Watch(hmc.Vendor, "prod", id)
	}
	for _, id := range ids {
		h.WaitEvents(id, 1, waitLong)
	}
	e.clock.Advance(time.Minute)
	for _, id := range ids {
		h.WaitEvents(id, 2, waitLong)
	}
	e.clock.Advance(time.Minute)
	h.WaitEvents("cxl", 3, waitLong)
	settle(h, cp, "cxl")

	want := map[string][]string{
		"ok":        {"transition:running", "transition:succeeded"},
		"nocontent": {"transition:running", "transition:succeeded"},
		"fail":      {"transition:running", "transition:failed"},
		"badreq":    {"transition:running", "transition:failed"},
		"nocode":    {"transition:running", "transition:failed"},
		"cxl":       {"transition:running", "transition:running", "transition:canceled"},
		"odd":       {"transition:running", "transition:unknown"},
	}
	outcomes := map[string]map[string]string{
		"ok":        {"job-status-code": "200"},
		"nocontent": {"job-status-code": "204"},
		"fail":      {"job-status-code": "500", "job-reason-code": "263"},
		"badreq":    {"job-status-code": "409", "job-reason-code": "1"},
		"nocode":    nil,
		"cxl":       {"job-status-code": "500", "job-reason-code": "263"},
		"odd":       nil,
	}
	for _, id := range ids {
		got := h.EventsFor(id)
		assertSummary(t, id, got, want[id]...)
		if n, tr := natives(got), truth(e.sim, id); !slices.Equal(n, tr) {
			t.Errorf("%s: published natives %v, simulator history %v", id, n, tr)
		}
		last := got[len(got)-1].Data
		if len(last.Outcome) != len(outcomes[id]) {
			t.Errorf("%s: outcome %v, want %v", id, last.Outcome, outcomes[id])
		}
		for k, v := range outcomes[id] {
			if last.Outcome[k] != v {
				t.Errorf("%s: outcome %v, want %v", id, last.Outcome, outcomes[id])
			}
		}
		if last.DetectedBy != bridge.DetectedByPoll || last.Vendor != hmc.Vendor || last.Instance != "prod" {
			t.Errorf("%s: %+v", id, last)
		}
	}
	cxl := h.EventsFor("cxl")
	if d := cxl[1].Data; d.Native.Status != "cancel-pending" || d.Native.SubState != hmc.SubStateCancelPending || d.Native.PreviousStatus != "running" || d.Terminal {
		t.Errorf("cancel-pending event %+v", d)
	}
	if d := h.EventsFor("ok")[1].Data; string(d.Raw) != `{"job-results":{"message":"started"},"job-status-code":200,"status":"complete"}` {
		t.Errorf("raw payload %s", d.Raw)
	}
	if st := e.sim.Stats(); st.Logons != 1 || st.Deletes != 0 {
		t.Errorf("stats %+v: one session for everything, and nothing deleted by default", st)
	}
}

func TestE2EReLogonMidRun(t *testing.T) {
	e := newE2E(t, nil)
	e.sim.MustAddJob("j", hmcsim.Step{Status: "running", For: time.Minute}, hmcsim.Step{Status: "complete"})
	bi, p, cp := e.instance()
	sessions, cancel := p.SubscribeSession()
	defer cancel()
	h := e.start(bi, nil)
	h.Watch(hmc.Vendor, "prod", "j")
	h.WaitEvents("j", 1, waitLong)
	first := <-sessions

	e.sim.ExpireSessions()
	bridgetest.WaitFor(t, waitLong, "a re-logon", func() bool { return e.sim.Stats().Logons == 2 })
	var second hmc.Session
	select {
	case second = <-sessions:
	case <-time.After(waitLong):
		t.Fatal("no session change was announced")
	}
	settle(h, cp, "j") // many polls on the new session, none of them a change
	e.clock.Advance(time.Minute)
	h.WaitEvents("j", 2, waitLong)
	got := settle(h, cp, "j")

	assertSummary(t, "j", got, "transition:running", "transition:succeeded")
	if got[1].Data.PreviousState != bridge.StateRunning || got[1].Data.Sequence != 2 {
		t.Errorf("%+v", got[1].Data)
	}
	st := e.sim.Stats()
	if st.Logons != 2 || st.FailedLogons != 0 || st.SessionRejections < 1 {
		t.Fatalf("stats %+v: want exactly one new logon after the 403 reason 5", st)
	}
	if first.Generation != 1 || second.Generation != 2 || second.JobNotificationTopic == first.JobNotificationTopic || second.NotificationTopic == first.NotificationTopic {
		t.Fatalf("session change: %+v → %+v; want new topics", first, second)
	}
	if info, ok := e.sim.SessionForTopic(second.JobNotificationTopic); !ok || !info.Open() || info.ID != second.ID.Reveal() {
		t.Fatalf("the announced topic is not the live session's: %+v", info)
	}
	if info, _ := e.sim.SessionForTopic(first.JobNotificationTopic); info.Open() || info.CloseReason != hmcsim.ClosedExpired {
		t.Fatalf("old session %+v", info)
	}
	if cur, _ := p.Session(); cur.ID.Reveal() != second.ID.Reveal() {
		t.Fatal("Session() is not the announced one")
	}
}

func TestE2EVanishedAfterRetention(t *testing.T) {
	e := newE2E(t, nil)
	e.sim.MustAddJob("j", hmcsim.Step{Status: "running", For: time.Minute}, hmcsim.Step{Status: "complete"})
	bi, _, cp := e.instance()
	h := e.start(bi, func(o *bridge.Options) { o.Schedule.NotFoundGrace = 300 * time.Millisecond })
	h.Watch(hmc.Vendor, "prod", "j")
	h.Watch(hmc.Vendor, "prod", "never-existed")
	h.WaitEvents("j", 1, waitLong)
	// The job ends and its status expires between two polls (the bridge was
	// away longer than the retention interval).
	e.clock.Advance(time.Minute + hmcsim.DefaultRetention + time.Second)
	h.WaitEvents("j", 2, waitLong)
	h.WaitEvents("never-existed", 1, waitLong)
	assertSummary(t, "j", settle(h, cp, "j"), "transition:running", "vanished:running")
	assertSummary(t, "never-existed", h.EventsFor("never-existed"), "vanished:unknown")
	h2 := e.sim.History()
	if last := h2[len(h2)-1]; last.JobID != "j" || last.Removed != hmcsim.RemovalExpired {
		t.Fatalf("history %+v", h2)
	}
}

// TestE2EDeleteCompleted: with deleteCompleted the job's status is deleted
// after its terminal event. A later poll (a bridge restarted within
// RetainAfterTerminal re-polls every watched job) must not report the job
// as vanished: jobbridge deleted it on purpose and its terminal event was
// its last word. The poller answers such polls from what it saw before the
// delete. A new process has no such memory: it then publishes one vanished
// event carrying the terminal state, and never a second one.
func TestE2EDeleteCompleted(t *testing.T) {
	e := newE2E(t, map[string]any{"deleteCompleted": true, "notifications": "stomp"})
	e.sim.MustAddJob("j", hmcsim.Step{Status: "running", For: time.Minute}, hmcsim.Step{Status: "complete", StatusCode: intp(500), ReasonCode: intp(263)})
	e.sim.MustAddJob("k", hmcsim.Step{Status: "running"})
	bi, p, cp := e.instance()
	if bi.OnTerminal == nil || p.Notifications().Mode != hmc.NotifySTOMP || p.Notifications().STOMPPort != hmc.DefaultSTOMPPort {
		t.Fatalf("FromConfig did not wire the options: %+v", p.Notifications())
	}
	h := e.start(bi, nil)
	h.Watch(hmc.Vendor, "prod", "j")
	h.Watch(hmc.Vendor, "prod", "k")
	h.WaitEvents("j", 1, waitLong)
	h.WaitEvents("k", 1, waitLong)
	if st := e.sim.Stats(); st.Deletes != 0 {
		t.Fatalf("a running job was deleted: %+v", st)
	}
	e.clock.Advance(time.Minute)
	h.WaitEvents("j", 2, waitLong)
	bridgetest.WaitFor(t, waitLong, "the delete", func() bool { return e.sim.Stats().Deletes == 1 })
	if _, ok := e.sim.Status("j"); ok {
		t.Fatal("the job's status is still on the HMC")
	}
	hist := e.sim.History()
	if last := hist[len(hist)-1]; last.JobID != "j" || last.Removed != hmcsim.RemovalDeleted {
		t.Fatalf("history %+v", hist)
	}
	assertSummary(t, "j", settle(h, cp, "j"), "transition:running", "transition:failed")
	assertSummary(t, "k", h.EventsFor("k"), "transition:running")
	h.Stop()

	// Restart with the same poller: the job is polled again, nothing new.
	before, beforeJ := cp.n.Load(), cp.polls("j")
	h2 := e.start(bi, nil)
	bridgetest.WaitFor(t, waitLong, "polls after the restart", func() bool { return cp.n.Load() > before+5 })
	assertSummary(t, "j", settle(h2, cp, "j"), "transition:running", "transition:failed")
	if cp.polls("j") == beforeJ {
		t.Fatal("the deleted job was not polled after the restart; the check proved nothing")
	}
	if st := e.sim.Stats(); st.JobNotFound != 0 || st.Deletes != 1 {
		t.Fatalf("stats %+v: the deleted job must be answered from memory, not asked for", st)
	}
	h2.Stop()

	// A new process (fresh poller): one vanished, with the terminal state.
	bi3, _, cp3 := e.instance()
	h3 := e.start(bi3, nil)
	h3.WaitEvents("j", 3, waitLong)
	got := settle(h3, cp3, "j")
	assertSummary(t, "j", got, "transition:running", "transition:failed", "vanished:failed")
	if d := got[2].Data; d.PreviousState != bridge.StateFailed || d.Native.Status != "complete" {
		t.Errorf("vanished event %+v", d)
	}
	h3.Stop()

	// And after yet another restart (the watch may still be registered: the
	// bridge ends it once the vanished event is acknowledged), no second
	// vanished.
	bi4, _, cp4 := e.instance()
	h4 := e.start(bi4, nil)
	assertSummary(t, "j", settle(h4, cp4, "j"), "transition:running", "transition:failed", "vanished:failed")
	if n := cp4.polls("j"); n < 2 {
		// Fine only if the watch is gone: the third bridge ended it once
		// its vanished event was acknowledged, so nothing is left to poll.
		ref := bridge.JobRef{Vendor: bi4.Vendor, Instance: bi4.Name, ID: "j"}
		if _, err := h4.Bridge.Registry().Get(context.Background(), ref); !errors.Is(err, bridge.ErrWatchNotFound) {
			t.Fatalf("the job was polled %d times after the last restart and is still watched (%v); the check of a second vanished proved nothing", n, err)
		}
	}
	assertSummary(t, "k", h4.EventsFor("k"), "transition:running")
}
