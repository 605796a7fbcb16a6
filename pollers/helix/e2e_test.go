package helix_test

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jobbridge/jobbridge/bridge"
	"github.com/jobbridge/jobbridge/bridge/backoff"
	"github.com/jobbridge/jobbridge/bridge/bridgetest"
	"github.com/jobbridge/jobbridge/bridge/natsconn/natstest"
	"github.com/jobbridge/jobbridge/pollers/helix"
	"github.com/jobbridge/jobbridge/pollers/helix/helixsim"
	"github.com/jobbridge/jobbridge/pollers/pollkit"
)

// e2e runs the simulator (on a manual clock) → the helix poller (on the same
// clock) → a real bridge → JetStream. The bridge polls in real time, every
// 20ms; the test moves the vendor's clock and waits until every ETL was
// polled at the new time before moving it again.
type e2e struct {
	t   *testing.T
	sim *helixsim.Server
	clk *pollkit.ManualClock
	h   *bridgetest.Harness
	ids []int
}

type e2eOptions struct {
	sim      helixsim.Options
	discover bool
	filter   string
}

func startE2E(t *testing.T, o e2eOptions) *e2e {
	t.Helper()
	clk := pollkit.NewManualClock(t0)
	o.sim.Clock = clk
	o.sim.AccessKeys = []helixsim.AccessKey{{ID: accessKey, Secret: secretKey}}
	sim := helixsim.NewServer(o.sim)
	t.Cleanup(sim.Close)
	opts := helix.Options{Instance: "co", BaseURL: sim.URL, AccessKey: accessKey, SecretKey: bridge.NewSecret(secretKey),
		HTTP: pollkit.ClientOptions{Backoff: backoff.Policy{Initial: time.Millisecond, Max: 5 * time.Millisecond}}, Now: clk.Now}
	if o.filter != "" {
		opts.NameFilter = regexp.MustCompile(o.filter)
	}
	p, err := helix.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ns := natstest.RunServer(t, natstest.Options{})
	nc := natstest.Connect(t, ns)
	inst := bridge.Instance{Vendor: helix.Vendor, Name: "co", Poller: p, Recurring: true, Concurrency: 8,
		Discover: o.discover, DiscoverInterval: 50 * time.Millisecond}
	h := bridgetest.StartBridge(t, nc, []bridge.Instance{inst}, func(bo *bridge.Options) {
		// Polls that fail (a literal 204, a vanished ETL) are retried soon.
		bo.Schedule.ErrorBackoff = backoff.Policy{Initial: 5 * time.Millisecond, Max: 40 * time.Millisecond, Multiplier: 2}
		bo.Schedule.NotFoundGrace = time.Hour
	})
	e := &e2e{t: t, sim: sim, clk: clk, h: h}
	for _, etl := range o.sim.ETLs {
		e.ids = append(e.ids, etl.ID)
	}
	return e
}

func (e *e2e) watch(ids ...int) {
	for _, id := range ids {
		e.h.Watch(helix.Vendor, "co", strconv.Itoa(id))
	}
}

// settle waits until each ETL was polled twice more, so at least one whole
// poll saw the vendor at the current clock time.
func (e *e2e) settle(ids ...int) {
	e.t.Helper()
	if len(ids) == 0 {
		ids = e.ids
	}
	before := make([]int, len(ids))
	for i, id := range ids {
		before[i] = e.sim.StatusPolls(id)
	}
	bridgetest.WaitFor(e.t, 10*time.Second, fmt.Sprintf("polls of ETLs %v", ids), func() bool {
		for i, id := range ids {
			if e.sim.StatusPolls(id) < before[i]+2 {
				return false
			}
		}
		return true
	})
}

// to moves the vendor clock to t0+d and settles.
func (e *e2e) to(d time.Duration, ids ...int) {
	e.t.Helper()
	e.clk.Advance(t0.Add(d).Sub(e.clk.Now()))
	e.settle(ids...)
}

// walk moves the clock minute by minute up to t0+d.
func (e *e2e) walk(d time.Duration, ids ...int) {
	e.t.Helper()
	for e.clk.Now().Before(t0.Add(d)) {
		e.to(e.clk.Now().Sub(t0)+time.Minute, ids...)
	}
}

// events waits for exactly n events of an ETL: n arrive, and a few more
// polls later there are still n.
func (e *e2e) events(id, n int) []bridgetest.Received {
	e.t.Helper()
	got := e.h.WaitEvents(strconv.Itoa(id), n, 10*time.Second)
	// A vanished ETL is polled no more: let the others show time passes.
	ids := []int{id}
	if !slices.Contains(e.ids, id) {
		ids = e.ids
	}
	e.settle(ids...)
	e.settle(ids...)
	if again := e.h.EventsFor(strconv.Itoa(id)); len(again) != len(got) {
		got = again
	}
	return got
}

// detail renders the vendor side of an event for exact assertions.
func detail(r bridgetest.Received) string {
	d := r.Data
	return fmt.Sprintf("%s:%s native=%q sub=%q run=%q exit=%q", d.Kind, d.State, d.Native.Status, d.Native.SubState, d.RunID, d.Outcome["exit_code"])
}

func details(rs []bridgetest.Received) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = detail(r)
	}
	return out
}

func assertLines(t *testing.T, what string, got, want []string) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Fatalf("%s:\n  got  %s\n  want %s", what, strings.Join(got, "\n       "), strings.Join(want, "\n       "))
	}
}

// runEnds returns the last_exec_ts of every run of an ETL that has ended,
// from the simulator's ground truth.
func runEnds(sim *helixsim.Server, id int) []string {
	var out []string
	for _, c := range sim.History() {
		if c.ETL == id && c.RunEnded {
			out = append(out, c.LastExecTS)
		}
	}
	return out
}

func stamp(d time.Duration) string { return t0.Add(d).Format(helixsim.TimestampLayout) }

func TestE2EEveryDocumentedStatus(t *testing.T) {
	m := time.Minute
	e := startE2E(t, e2eOptions{sim: helixsim.Options{ETLs: []helixsim.ETL{
		{ID: 1, Empty: helixsim.EmptyMissing},
		{ID: 2, Empty: helixsim.EmptyNull},
		{ID: 3, Empty: helixsim.EmptyString},
		{ID: 10, Initial: "WAITING", Runs: []helixsim.Run{
			{At: 1 * m, For: 2 * m, ExitCode: "OK"},
			{At: 4 * m, For: m, ExitCode: "WARNING"},
			{At: 6 * m, For: m, ExitCode: "ERROR"},
			{At: 8 * m, For: m, ExitCode: "FAILED", Then: "ENDED"},
			{At: 10 * m, For: m, ExitCode: "OK", Then: "ENDED"},
			{At: 12 * m, For: m, Then: "ABORTED"},
			{At: 14 * m, For: m, ExitCode: helixsim.NoExitCode, Then: "ENDED"},
		}},
		{ID: 20, Service: true, Initial: "SERVICE_OFF", Steps: []helixsim.ServiceStep{
			{At: 2 * m, Status: "SERVICE_ON"}, {At: 5 * m, Status: "SERVICE_OFF"}, {At: 9 * m, Status: "SERVICE_ON"},
		}},
	}}})
	e.watch(1, 2, 3, 10, 20)
	e.settle()
	e.walk(16 * m)

	for _, id := range []int{1, 2, 3} {
		assertLines(t, fmt.Sprintf("never-run ETL %d", id), details(e.events(id, 1)),
			[]string{`transition:pending native="" sub="never-run" run="" exit=""`})
	}
	assertLines(t, "batch ETL 10", details(e.events(10, 15)), []string{
		`transition:pending native="WAITING" sub="scheduled" run="" exit=""`,
		`transition:running native="RUNNING" sub="" run="" exit=""`,
		`transition:succeeded native="WAITING" sub="" run="` + stamp(1*m) + `" exit="OK"`,
		`transition:running native="RUNNING" sub="" run="` + stamp(1*m) + `" exit=""`,
		`transition:succeeded native="WAITING" sub="" run="` + stamp(4*m) + `" exit="WARNING"`,
		`transition:running native="RUNNING" sub="" run="` + stamp(4*m) + `" exit=""`,
		`transition:failed native="WAITING" sub="" run="` + stamp(6*m) + `" exit="ERROR"`,
		`transition:running native="RUNNING" sub="" run="` + stamp(6*m) + `" exit=""`,
		`transition:failed native="ENDED" sub="" run="` + stamp(8*m) + `" exit="FAILED"`,
		`transition:running native="RUNNING" sub="" run="` + stamp(8*m) + `" exit=""`,
		`transition:succeeded native="ENDED" sub="" run="` + stamp(10*m) + `" exit="OK"`,
		`transition:running native="RUNNING" sub="" run="` + stamp(10*m) + `" exit=""`,
		`transition:canceled native="ABORTED" sub="" run="` + stamp(12*m) + `" exit=""`,
		`transition:running native="RUNNING" sub="" run="` + stamp(12*m) + `" exit=""`,
		`transition:unknown native="ENDED" sub="" run="` + stamp(14*m) + `" exit=""`,
	})
	assertLines(t, "service ETL 20", details(e.events(20, 4)), []string{
		`transition:pending native="SERVICE_OFF" sub="service-paused" run="" exit=""`,
		`transition:running native="SERVICE_ON" sub="service" run="` + stamp(2*m) + `" exit=""`,
		`transition:pending native="SERVICE_OFF" sub="service-paused" run="` + stamp(2*m) + `" exit=""`,
		`transition:running native="SERVICE_ON" sub="service" run="` + stamp(9*m) + `" exit=""`,
	})

	// Every run the simulator ended produced exactly one event leaving
	// RUNNING, carrying that run's last_exec_ts.
	var ended []string
	for _, r := range e.h.EventsFor("10") {
		if r.Data.PreviousState == bridge.StateRunning {
			ended = append(ended, r.Data.RunID)
		}
	}
	assertLines(t, "runs ended vs ground truth", ended, runEnds(e.sim, 10))

	// The event carries the vendor's timestamp both ways, and the payload.
	last := e.h.EventsFor("10")[2]
	ts := last.Data.Times["last_exec_ts"]
	if ts.Raw != stamp(time.Minute) || !ts.Normalized.Equal(t0.Add(time.Minute)) || !strings.Contains(string(last.Data.Raw), `"task_id"`) ||
		!last.Data.Terminal || last.Subject != "jobs.helix.co.succeeded.10" {
		t.Fatalf("event %s: times %+v raw %s", last.Subject, ts, last.Data.Raw)
	}
}

func TestE2EShortRunBetweenPolls(t *testing.T) {
	for _, atStart := range []bool{false, true} {
		t.Run(fmt.Sprintf("stampAtStart=%v", atStart), func(t *testing.T) {
			m, s := time.Minute, time.Second
			e := startE2E(t, e2eOptions{sim: helixsim.Options{StampAtStart: atStart, ETLs: []helixsim.ETL{{ID: 50, Initial: "WAITING", Runs: []helixsim.Run{
				{At: 1 * m, For: m, ExitCode: "OK"},
				{At: 10 * m, For: 20 * s, ExitCode: "OK"},                // same status, same exit code: only last_exec_ts moves
				{At: 20 * m, For: 20 * s, ExitCode: "ERROR"},             // a failure nobody saw running
				{At: 30 * m, For: 20 * s, ExitCode: "WARNING"},           // success with a warning
				{At: 40 * m, For: 20 * s, ExitCode: "OK", Then: "ENDED"}, // not rescheduled
				{At: 50 * m, For: 20 * s, ExitCode: "OK", Then: "ENDED"}, // again: identical but for last_exec_ts
				{At: 60 * m, For: 20 * s, ExitCode: "ERROR", Then: "ENDED"},
			}}}}})
			e.watch(50)
			e.settle()
			e.walk(3 * m) // the first run is seen running
			for _, d := range []time.Duration{9, 11, 19, 21, 29, 31, 39, 41, 49, 51, 59, 61} {
				e.to(d * m) // odd steps jump over a whole run
			}
			got := e.events(50, 9)
			assertLines(t, "events", details(got), []string{
				`transition:pending native="WAITING" sub="scheduled" run="" exit=""`,
				`transition:running native="RUNNING" sub="" run="` + map[bool]string{false: "", true: stamp(m)}[atStart] + `" exit=""`,
				`transition:succeeded native="WAITING" sub="" run="` + stamp(1*m) + `" exit="OK"`,
				`transition:succeeded native="WAITING" sub="" run="` + stamp(10*m) + `" exit="OK"`,
				`transition:failed native="WAITING" sub="" run="` + stamp(20*m) + `" exit="ERROR"`,
				`transition:succeeded native="WAITING" sub="" run="` + stamp(30*m) + `" exit="WARNING"`,
				`transition:succeeded native="ENDED" sub="" run="` + stamp(40*m) + `" exit="OK"`,
				`transition:succeeded native="ENDED" sub="" run="` + stamp(50*m) + `" exit="OK"`,
				`transition:failed native="ENDED" sub="" run="` + stamp(60*m) + `" exit="ERROR"`,
			})
			// Exactly one terminal event per run, for every run of the
			// ground truth, in order.
			var terminal []string
			for _, r := range got {
				if r.Data.Terminal {
					terminal = append(terminal, r.Data.RunID)
				}
			}
			assertLines(t, "terminal events vs runs ended", terminal, runEnds(e.sim, 50))
			// A trapped run's event says where it came from.
			if r := got[3]; r.Data.PreviousState != bridge.StateSucceeded || r.Event["type"] != "io.jobbridge.job.succeeded" {
				t.Fatalf("trapped run event: previous %s type %v", r.Data.PreviousState, r.Event["type"])
			}
		})
	}
}

func TestE2ETokenExpiryMidRun(t *testing.T) {
	e := startE2E(t, e2eOptions{sim: helixsim.Options{ETLs: []helixsim.ETL{
		{ID: 60, Initial: "WAITING", Runs: []helixsim.Run{{At: time.Minute, For: 40 * time.Minute, ExitCode: "OK"}}},
	}}})
	e.watch(60)
	e.settle()
	e.to(2 * time.Minute)
	e.h.WaitEvents("60", 2, 10*time.Second)
	before := e.sim.Stats()
	e.sim.ExpireTokens() // the JWT dies mid-run
	e.settle()
	after := e.sim.Stats()
	if after.Unauthorized-before.Unauthorized != 1 || after.Logins-before.Logins != 1 {
		t.Fatalf("after the JWT was revoked: %d 401s and %d logins; want exactly one of each", after.Unauthorized-before.Unauthorized, after.Logins-before.Logins)
	}
	// Natural expiry never shows: the JWT is renewed before its exp claim.
	for d := 5 * time.Minute; d <= 45*time.Minute; d += 5 * time.Minute {
		e.to(d)
	}
	final := e.sim.Stats()
	if final.Unauthorized != after.Unauthorized || final.Logins < after.Logins+3 {
		t.Fatalf("over 40 minutes: %d more 401s, %d more logins; want none and proactive renewals", final.Unauthorized-after.Unauthorized, final.Logins-after.Logins)
	}
	assertLines(t, "events", bridgetest.Summary(e.events(60, 3)), []string{"transition:pending", "transition:running", "transition:succeeded"})
}

func TestE2ELiteral204IsNoObservation(t *testing.T) {
	e := startE2E(t, e2eOptions{sim: helixsim.Options{ETLs: []helixsim.ETL{
		{ID: 80, Initial: "WAITING", Runs: []helixsim.Run{{At: time.Minute, For: time.Minute, ExitCode: "WARNING"}}},
	}}})
	e.watch(80)
	e.events(80, 1)
	e.sim.SetLiteral204(true)
	e.walk(3 * time.Minute)
	e.settle()
	if got := e.h.EventsFor("80"); len(got) != 1 {
		t.Fatalf("events while the vendor answered 204: %v", bridgetest.Summary(got))
	}
	e.sim.SetLiteral204(false)
	// The run that ended while nothing could be observed still gets its event.
	assertLines(t, "events", details(e.events(80, 2)), []string{
		`transition:pending native="WAITING" sub="scheduled" run="" exit=""`,
		`transition:succeeded native="WAITING" sub="" run="` + stamp(time.Minute) + `" exit="WARNING"`,
	})
}

func TestE2EDiscoveryAndVanishing(t *testing.T) {
	e := startE2E(t, e2eOptions{discover: true, filter: "^prod-", sim: helixsim.Options{ETLs: []helixsim.ETL{
		{ID: 71, Name: "prod-vmware", Initial: "WAITING", Runs: []helixsim.Run{{At: time.Minute, For: time.Minute, ExitCode: "ERROR"}}},
		{ID: 72, Name: "test-vmware", Initial: "WAITING"},
		{ID: 73, Name: "prod-csv"},
	}}})
	e.ids = []int{71, 73}
	e.h.WaitEvents("71", 1, 10*time.Second)
	e.h.WaitEvents("73", 1, 10*time.Second)
	e.walk(2 * time.Minute)
	if err := e.sim.AddETL(helixsim.ETL{ID: 74, Name: "prod-new", Initial: "WAITING"}); err != nil {
		t.Fatal(err)
	}
	e.h.WaitEvents("74", 1, 10*time.Second)
	e.sim.RemoveETL(73)
	e.h.WaitEvents("73", 2, 10*time.Second)
	e.ids = []int{71, 74}
	e.settle()

	assertLines(t, "ETL 71", bridgetest.Summary(e.events(71, 3)), []string{"transition:pending", "transition:running", "transition:failed"})
	assertLines(t, "ETL 73 (deleted)", bridgetest.Summary(e.events(73, 2)), []string{"transition:pending", "vanished:pending"})
	assertLines(t, "ETL 74 (added later)", bridgetest.Summary(e.events(74, 1)), []string{"transition:pending"})
	if got := e.h.EventsFor("72"); len(got) != 0 || e.sim.StatusPolls(72) != 0 {
		t.Fatalf("ETL 72 does not match nameFilter, yet: %d events, %d polls", len(got), e.sim.StatusPolls(72))
	}
	var watched []string
	// 73's watch ends once its vanished event is acknowledged (the bridge
	// retries that removal only every minute), so it is left out here.
	bridgetest.WaitFor(t, 10*time.Second, "discovered watches 71 and 74, never 72", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		ws, _, err := e.h.Bridge.Registry().List(ctx, bridge.ListFilter{Vendor: helix.Vendor})
		if err != nil {
			t.Fatal(err)
		}
		watched = watched[:0]
		for _, w := range ws {
			if w.Origin == "discovery" && w.Job != "73" {
				watched = append(watched, w.Job)
			}
		}
		slices.Sort(watched)
		return slices.Equal(watched, []string{"71", "74"})
	})
}
