package arcgis_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jobbridge/jobbridge/bridge"
	"github.com/jobbridge/jobbridge/pollers/arcgis"
	"github.com/jobbridge/jobbridge/pollers/arcgis/arcgissim"
	"github.com/jobbridge/jobbridge/pollers/pollkit"
	"github.com/jobbridge/jobbridge/pollers/pollkit/simkit/simtest"
)

const (
	user     = "svc-jobbridge"
	password = "S3cr3t-Pa55w0rd"
)

var t0 = time.Date(2025, 3, 6, 16, 0, 0, 0, time.UTC)

type rig struct {
	sim    *arcgissim.Server
	clock  *pollkit.ManualClock
	poller *arcgis.Poller
	logs   *simtest.LogBuffer
}

// newSim starts a simulator on a manual clock with the test user.
func newSim(t *testing.T, opts arcgissim.Options) (*arcgissim.Server, *pollkit.ManualClock) {
	t.Helper()
	clk := pollkit.NewManualClock(t0)
	opts.Clock = clk
	if opts.Users == nil {
		opts.Users = map[string]string{user: password}
	}
	sim := arcgissim.NewServer(opts)
	t.Cleanup(sim.Close)
	return sim, clk
}

// pollerOptions logs on at the server's generateToken with the test user.
func pollerOptions(sim *arcgissim.Server, f arcgis.Flavor, logs *simtest.LogBuffer) arcgis.Options {
	o := arcgis.Options{
		Instance: "gis", Flavor: f, Username: user, Password: bridge.NewSecret(password), TokenURL: sim.ServerTokenURL(),
		HTTP:   simtest.QuickRetries(),
		Logger: logs.Logger(),
	}
	switch f {
	case arcgis.FlavorMission:
		o.BaseURL = sim.MissionURL()
	case arcgis.FlavorEnterprise:
		o.BaseURL = sim.AdminURL()
	default:
		o.BaseURL = sim.GPTaskURL()
	}
	return o
}

// newRig starts a simulator and a poller of flavour f against it; tweak may
// change the poller options, knowing the simulator and its clock.
func newRig(t *testing.T, f arcgis.Flavor, simOpts arcgissim.Options, tweak func(*arcgis.Options, *rig)) *rig {
	t.Helper()
	sim, clk := newSim(t, simOpts)
	r := &rig{sim: sim, clock: clk, logs: &simtest.LogBuffer{}}
	opts := pollerOptions(sim, f, r.logs)
	if tweak != nil {
		tweak(&opts, r)
	}
	p, err := arcgis.New(opts)
	if err != nil {
		t.Fatalf("arcgis.New: %v", err)
	}
	t.Cleanup(func() { p.Close(context.Background()) })
	r.poller = p
	return r
}

func ref(id string) bridge.JobRef {
	return bridge.JobRef{Vendor: arcgis.Vendor, Instance: "gis", ID: id}
}

func (r *rig) poll(t *testing.T, id string) bridge.Observation {
	t.Helper()
	obs, err := r.poller.Poll(context.Background(), ref(id))
	if err != nil {
		t.Fatalf("Poll(%q): %v", id, err)
	}
	return obs
}

func kindOf(f arcgis.Flavor) arcgissim.Kind {
	switch f {
	case arcgis.FlavorMission:
		return arcgissim.KindMission
	case arcgis.FlavorEnterprise:
		return arcgissim.KindAdmin
	}
	return arcgissim.KindGP
}

var allFlavors = []arcgis.Flavor{arcgis.FlavorMission, arcgis.FlavorEnterprise, arcgis.FlavorGeoprocessing}

func TestEveryMappingRowReachedThroughTheSimulator(t *testing.T) {
	for _, f := range allFlavors {
		t.Run(string(f), func(t *testing.T) {
			r := newRig(t, f, arcgissim.Options{}, nil)
			rows := arcgis.StatusTable(f).Rows()
			script := make([]arcgissim.Step, len(rows))
			for i, row := range rows {
				script[i] = arcgissim.Step{Status: row.Native, For: time.Minute}
			}
			r.sim.MustAddJob(arcgissim.Job{ID: "walker", Kind: kindOf(f), Script: script})
			for i, row := range rows {
				obs := r.poll(t, "walker")
				if obs.Native != row.Native || obs.State != row.State || obs.SubState != row.SubState {
					t.Errorf("step %d: observed %q → %s/%q, want %q → %s/%q", i, obs.Native, obs.State, obs.SubState, row.Native, row.State, row.SubState)
				}
				r.clock.Advance(time.Minute)
			}
			h := r.sim.History()
			if len(h) != len(rows) {
				t.Fatalf("history has %d changes, want %d", len(h), len(rows))
			}
			for i, c := range h {
				if c.Status != rows[i].Native || !c.At.Equal(t0.Add(time.Duration(i)*time.Minute)) {
					t.Errorf("history %d = %+v", i, c)
				}
			}
			if st := r.sim.Stats(); st.TokensIssued != 1 || st.QueryTokens != 0 || st.InvalidToken != 0 {
				t.Errorf("stats %+v: want one token, sent only in the header", st)
			}
		})
	}
}

func TestObservationsFromTheSimulator(t *testing.T) {
	r := newRig(t, arcgis.FlavorMission, arcgissim.Options{}, nil)
	r.sim.MustAddJob(arcgissim.Job{ID: "m", Kind: arcgissim.KindMission, TotalSteps: 5, Script: []arcgissim.Step{
		{Status: "EXECUTING", For: time.Minute, Done: 2, Message: "Creating tracks layers."},
		{Status: "COMPLETED", Done: 5, Cancelled: true, Message: "Cancelled."},
	}})
	obs := r.poll(t, "m")
	if obs.State != bridge.StateRunning || *obs.Progress.StepsDone != 2 || *obs.Progress.StepsTotal != 5 {
		t.Fatalf("%+v", obs)
	}
	if st := obs.Times["startTime"]; !st.Normalized.Equal(t0) {
		t.Errorf("startTime %+v, want the creation %v", st, t0)
	}
	if et := obs.Times["endTime"]; et.Raw != "0" || !et.Normalized.IsZero() {
		t.Errorf("endTime of a running job %+v", et)
	}
	r.clock.Advance(time.Minute)
	obs = r.poll(t, "m")
	if obs.State != bridge.StateCanceled || obs.Native != "COMPLETED" || obs.Outcome[arcgis.OutcomeIsCancelled] != "true" {
		t.Fatalf("cancelled mission job: %+v", obs)
	}
	if et := obs.Times["endTime"]; !et.Normalized.Equal(t0.Add(time.Minute)) {
		t.Errorf("endTime %+v", et)
	}

	// The classic admin trap, and the Enterprise Administrator API's result.
	a := newRig(t, arcgis.FlavorEnterprise, arcgissim.Options{}, nil)
	a.sim.MustAddJob(arcgissim.Job{ID: "trap", Kind: arcgissim.KindAdmin, Script: []arcgissim.Step{
		{Status: "COMPLETED", Done: 3, Operation: "error", OperationMessages: []string{"service failed to start"}},
	}})
	if obs := a.poll(t, "trap"); obs.State != bridge.StateFailed || obs.Native != "COMPLETED" || obs.Outcome[arcgis.OutcomeOperationResponse] != "error" {
		t.Fatalf("COMPLETED with operationResponse error: %+v", obs)
	}
	e := newRig(t, arcgis.FlavorEnterprise, arcgissim.Options{}, func(o *arcgis.Options, r *rig) {
		o.BaseURL, o.JobsPath = r.sim.EnterpriseAdminURL(), "/jobs"
	})
	e.sim.MustAddJob(arcgissim.Job{ID: "ea", Kind: arcgissim.KindEnterprise, Script: []arcgissim.Step{
		{Status: "EXECUTING", For: time.Minute}, {Status: "COMPLETED", Operation: "error"},
	}})
	obs = e.poll(t, "ea")
	if obs.State != bridge.StateRunning || !obs.Times["starttime"].Normalized.Equal(t0) || obs.Times["updatedtime"].Raw == "" {
		t.Fatalf("enterprise admin job: %+v", obs)
	}
	e.clock.Advance(time.Minute)
	if obs := e.poll(t, "ea"); obs.State != bridge.StateFailed || obs.Outcome[arcgis.OutcomeResult] != "error" {
		t.Fatalf("enterprise admin job with result error: %+v", obs)
	}

	g := newRig(t, arcgis.FlavorGeoprocessing, arcgissim.Options{}, nil)
	pct := 40.0
	g.sim.MustAddJob(arcgissim.Job{ID: "g", Kind: arcgissim.KindGP, Script: []arcgissim.Step{
		{Status: "esriJobExecuting", For: time.Minute, Percent: &pct, Message: "Buffering"},
		{Status: "esriJobSucceeded"},
	}})
	obs = g.poll(t, "g")
	if p := obs.Progress; obs.State != bridge.StateRunning || p == nil || *p.Percent != 40 || p.Message != "Buffering" {
		t.Fatalf("GP progress: %+v", obs)
	}
	g.clock.Advance(time.Minute)
	if obs := g.poll(t, "g"); obs.State != bridge.StateSucceeded || obs.Progress != nil {
		t.Fatalf("GP success (no progress outside esriJobExecuting): %+v", obs)
	}
}

func withBase(o arcgis.Options, base, jobsPath string) arcgis.Options {
	o.BaseURL, o.JobsPath = base, jobsPath
	return o
}

func TestTokenRenewedBeforeExpiryOnThePollerClock(t *testing.T) {
	// A poller sharing the server's clock renews at two thirds of the
	// lifetime, before ArcGIS ever refuses the token.
	r := newRig(t, arcgis.FlavorMission, arcgissim.Options{}, func(o *arcgis.Options, r *rig) {
		o.TokenExpiration, o.Now = time.Hour, r.clock.Now
	})
	p, clk := r.poller, r.clock
	r.sim.MustAddJob(arcgissim.Job{ID: "j", Kind: arcgissim.KindMission, Script: []arcgissim.Step{{Status: "EXECUTING"}}})
	poll := func() {
		t.Helper()
		if _, err := p.Poll(context.Background(), ref("j")); err != nil {
			t.Fatal(err)
		}
	}
	poll()
	clk.Advance(39 * time.Minute)
	poll()
	if st := r.sim.Stats(); st.TokensIssued != 1 {
		t.Fatalf("renewed too early: %+v", st)
	}
	clk.Advance(2 * time.Minute) // 41 minutes: past two thirds
	poll()
	if st := r.sim.Stats(); st.TokensIssued != 2 || st.InvalidToken != 0 {
		t.Fatalf("stats %+v: want a renewal before expiry and no 498", st)
	}
}

func TestExpiredTokenRenewedOnceOn498(t *testing.T) {
	for _, f := range allFlavors {
		t.Run(string(f), func(t *testing.T) {
			// The poller runs on real time while the server's clock jumps: the
			// token dies on the server first, as with a suspended host.
			r := newRig(t, f, arcgissim.Options{}, nil)
			r.sim.MustAddJob(arcgissim.Job{ID: "j", Kind: kindOf(f), Script: []arcgissim.Step{{Status: arcgis.StatusTable(f).Rows()[1].Native}}})
			r.poll(t, "j")
			r.clock.Advance(61 * time.Minute)
			obs := r.poll(t, "j")
			if obs.State != bridge.StateRunning && obs.State != bridge.StatePending {
				t.Fatalf("after renewal: %+v", obs)
			}
			if st := r.sim.Stats(); st.TokensIssued != 2 || st.InvalidToken != 1 || st.QueryTokens != 0 {
				t.Fatalf("stats %+v: want exactly one 498 and one renewal", st)
			}
			if strings.Contains(r.logs.String(), password) {
				t.Fatal("the password is in the log")
			}
		})
	}
}

func TestConcurrentPollsAfterExpiryGetOneToken(t *testing.T) {
	r := newRig(t, arcgis.FlavorGeoprocessing, arcgissim.Options{}, func(o *arcgis.Options, _ *rig) { o.HTTP.MaxConcurrent = 20 })
	r.sim.MustAddJob(arcgissim.Job{ID: "j", Kind: arcgissim.KindGP, Script: []arcgissim.Step{{Status: "esriJobExecuting"}}})
	r.poll(t, "j")
	r.sim.ExpireTokens()
	simtest.PollConcurrently(t, r.poller, ref("j"), 100)
	if st := r.sim.Stats(); st.TokensIssued != 2 {
		t.Fatalf("%d tokens; 100 polls meeting one expired token must renew it once", st.TokensIssued)
	}
}

func TestWrongPasswordIsErrAuthWithoutHammering(t *testing.T) {
	r := newRig(t, arcgis.FlavorMission, arcgissim.Options{}, func(o *arcgis.Options, _ *rig) { o.Password = bridge.NewSecret("wrong-" + password) })
	r.sim.MustAddJob(arcgissim.Job{ID: "j", Kind: arcgissim.KindMission})
	for range 5 {
		_, err := r.poller.Poll(context.Background(), ref("j"))
		if !errors.Is(err, bridge.ErrAuth) || !strings.Contains(err.Error(), "Invalid username or password") || !strings.Contains(err.Error(), "auth.password") {
			t.Fatalf("err = %v, want ErrAuth with the vendor's reason and what to check", err)
		}
		if strings.Contains(err.Error(), password) {
			t.Fatalf("error repeats the password: %v", err)
		}
	}
	if st := r.sim.Stats(); st.FailedLogins != 1 {
		t.Fatalf("%d failed logins for 5 polls; the login backoff must hold the rest", st.FailedLogins)
	}
	if strings.Contains(r.logs.String(), password) {
		t.Fatal("the password is in the log")
	}
}

func TestRefererBoundTokens(t *testing.T) {
	// A portal token bound to a referer works only when every request
	// carries that Referer.
	r := newRig(t, arcgis.FlavorMission, arcgissim.Options{}, func(o *arcgis.Options, r *rig) {
		o.Referer, o.TokenURL = "https://jobbridge.example.com", r.sim.PortalTokenURL()
	})
	r.sim.MustAddJob(arcgissim.Job{ID: "j", Kind: arcgissim.KindMission})
	if _, err := r.poller.Poll(context.Background(), ref("j")); err != nil {
		t.Fatalf("referer-bound token: %v", err)
	}
	if st := r.sim.Stats(); st.InvalidToken != 0 || st.TokensIssued != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestStaticToken(t *testing.T) {
	sim, _ := newSim(t, arcgissim.Options{StaticTokens: []string{"long-lived"}})
	sim.MustAddJob(arcgissim.Job{ID: "j", Kind: arcgissim.KindGP})
	mk := func(tok string) *arcgis.Poller {
		o := pollerOptions(sim, arcgis.FlavorGeoprocessing, &simtest.LogBuffer{})
		o.Username, o.Password, o.TokenURL, o.Token = "", bridge.Secret{}, "", bridge.NewSecret(tok)
		p, err := arcgis.New(o)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	if _, err := mk("long-lived").Poll(context.Background(), ref("j")); err != nil {
		t.Fatalf("static token: %v", err)
	}
	before := sim.Stats().Requests
	_, err := mk("revoked-token").Poll(context.Background(), ref("j"))
	if !errors.Is(err, bridge.ErrAuth) || !strings.Contains(err.Error(), "update auth.token") || strings.Contains(err.Error(), "revoked-token") {
		t.Fatalf("err = %v, want ErrAuth asking for a new token, without quoting it", err)
	}
	if n := sim.Stats().Requests - before; n != 1 {
		t.Fatalf("%d requests for a refused static token; nothing can renew it, so one", n)
	}
	if st := sim.Stats(); st.TokensIssued != 0 || st.QueryTokens != 0 {
		t.Fatalf("stats %+v", st)
	}
}

func TestNoCredentials(t *testing.T) {
	secured, _ := newSim(t, arcgissim.Options{})
	open, _ := newSim(t, arcgissim.Options{Anonymous: true})
	for _, s := range []*arcgissim.Server{secured, open} {
		s.MustAddJob(arcgissim.Job{ID: "j", Kind: arcgissim.KindGP})
	}
	mk := func(s *arcgissim.Server) *arcgis.Poller {
		p, err := arcgis.New(arcgis.Options{Instance: "gis", Flavor: arcgis.FlavorGeoprocessing, BaseURL: s.GPTaskURL()})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	if _, err := mk(open).Poll(context.Background(), ref("j")); err != nil {
		t.Fatalf("unsecured service: %v", err)
	}
	_, err := mk(secured).Poll(context.Background(), ref("j"))
	if !errors.Is(err, bridge.ErrAuth) || !strings.Contains(err.Error(), "requires a token") {
		t.Fatalf("err = %v, want ErrAuth saying a token is required", err)
	}
	if st := secured.Stats(); st.TokenRequired != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestVendorError500InsideHTTP200IsRetried(t *testing.T) {
	r := newRig(t, arcgis.FlavorMission, arcgissim.Options{}, nil)
	r.sim.MustAddJob(arcgissim.Job{ID: "j", Kind: arcgissim.KindMission, Script: []arcgissim.Step{{Status: "EXECUTING"}}})
	r.poll(t, "j")
	r.sim.InjectFault(arcgissim.Fault{Kind: arcgissim.FaultVendorError, Count: 2, Endpoint: arcgissim.EndpointJob})
	if obs := r.poll(t, "j"); obs.State != bridge.StateRunning {
		t.Fatalf("after two error-500 answers: %+v", obs)
	}
	r.sim.InjectFault(arcgissim.Fault{Kind: arcgissim.FaultVendorError, Code: 503, Count: 10, Endpoint: arcgissim.EndpointJob})
	obs, err := r.poller.Poll(context.Background(), ref("j"))
	var se *pollkit.StatusError
	if !errors.As(err, &se) || !strings.Contains(err.Error(), "ArcGIS error 503") || obs.State != "" ||
		errors.Is(err, bridge.ErrMalformed) || errors.Is(err, bridge.ErrNotFound) || errors.Is(err, bridge.ErrAuth) {
		t.Fatalf("err = %v; want a transient error naming ArcGIS error 503", err)
	}
	if st := r.sim.Stats(); st.Faults != 6 {
		t.Fatalf("faults %d: want 2, then 4 attempts", st.Faults)
	}
}

func TestHTTPFaults(t *testing.T) {
	r := newRig(t, arcgis.FlavorEnterprise, arcgissim.Options{}, func(o *arcgis.Options, _ *rig) { o.HTTP.Timeout = 200 * time.Millisecond })
	r.sim.MustAddJob(arcgissim.Job{ID: "j", Kind: arcgissim.KindAdmin, Script: []arcgissim.Step{{Status: "EXECUTING"}}})
	r.poll(t, "j")

	r.sim.InjectFault(arcgissim.Fault{Kind: arcgissim.FaultStatus, Status: 503, Count: 3, Endpoint: arcgissim.EndpointJob})
	r.poll(t, "j")
	r.sim.InjectFault(arcgissim.Fault{Kind: arcgissim.FaultDelay, Delay: 2 * time.Second, Endpoint: arcgissim.EndpointJob})
	r.poll(t, "j")

	for _, kind := range []arcgissim.FaultKind{arcgissim.FaultMalformed, arcgissim.FaultHTML} {
		r.sim.InjectFault(arcgissim.Fault{Kind: kind, Endpoint: arcgissim.EndpointJob})
		obs, err := r.poller.Poll(context.Background(), ref("j"))
		if !errors.Is(err, bridge.ErrMalformed) || obs.State != "" {
			t.Errorf("%s: err = %v state %q, want ErrMalformed and no observation", kind, err, obs.State)
		}
	}
	// A bare 404 page is a wrong URL, not a vanished job.
	r.sim.InjectFault(arcgissim.Fault{Kind: arcgissim.FaultStatus, Status: 404, Endpoint: arcgissim.EndpointJob})
	_, err := r.poller.Poll(context.Background(), ref("j"))
	var se *pollkit.StatusError
	if errors.Is(err, bridge.ErrNotFound) || !errors.As(err, &se) || se.StatusCode != 404 {
		t.Errorf("bare 404 page: err = %v", err)
	}
	if obs := r.poll(t, "j"); obs.State != bridge.StateRunning {
		t.Fatalf("after the faults: %+v", obs)
	}
}

func TestTokenEndpointFaultsAreRetried(t *testing.T) {
	r := newRig(t, arcgis.FlavorMission, arcgissim.Options{}, nil)
	r.sim.MustAddJob(arcgissim.Job{ID: "j", Kind: arcgissim.KindMission})
	r.sim.InjectFault(arcgissim.Fault{Kind: arcgissim.FaultStatus, Status: 502, Endpoint: arcgissim.EndpointToken})
	r.sim.InjectFault(arcgissim.Fault{Kind: arcgissim.FaultVendorError, Endpoint: arcgissim.EndpointToken})
	r.poll(t, "j")
	if st := r.sim.Stats(); st.TokensIssued != 1 || st.Faults != 2 || st.FailedLogins != 0 {
		t.Fatalf("stats %+v", st)
	}
}

func TestNotFound(t *testing.T) {
	for _, f := range allFlavors {
		r := newRig(t, f, arcgissim.Options{}, nil)
		_, err := r.poller.Poll(context.Background(), ref("no-such-job"))
		if !errors.Is(err, bridge.ErrNotFound) || !strings.Contains(err.Error(), "no-such-job") {
			t.Fatalf("%s: err = %v, want ErrNotFound naming the job", f, err)
		}
		// Purged after its retention.
		r.sim.MustAddJob(arcgissim.Job{ID: "old", Kind: kindOf(f), PurgeAfter: time.Hour})
		r.poll(t, "old")
		r.clock.Advance(time.Hour)
		if _, err := r.poller.Poll(context.Background(), ref("old")); !errors.Is(err, bridge.ErrNotFound) {
			t.Fatalf("%s: purged job: %v", f, err)
		}
	}
	r := newRig(t, arcgis.FlavorMission, arcgissim.Options{}, nil)
	if _, err := r.poller.Poll(context.Background(), ref("")); err == nil || errors.Is(err, bridge.ErrNotFound) {
		t.Fatalf("empty id: err = %v, want a validation error", err)
	}
}

func TestHostileIDsRoundTrip(t *testing.T) {
	ids := []string{"a/b", "../jobs", "q?f=html", "frag#1", "with space", "100%", "%2F", "ünïcødé", "日本語/ジョブ", "semi;colon", "..", ".", "+&=$,", `quote"d`}
	for _, f := range allFlavors {
		r := newRig(t, f, arcgissim.Options{}, nil)
		for _, id := range ids {
			r.sim.MustAddJob(arcgissim.Job{ID: id, Kind: kindOf(f)})
		}
		for _, id := range ids {
			obs := r.poll(t, id)
			var echo map[string]any
			if err := json.Unmarshal(obs.Raw, &echo); err != nil {
				t.Fatal(err)
			}
			got := echo["jobId"]
			if f == arcgis.FlavorEnterprise {
				got = echo["jobid"]
			}
			if obs.Job.ID != id || got != id {
				t.Errorf("%s %q: server saw %v", f, id, got)
			}
		}
	}
}

func TestDiscover(t *testing.T) {
	cases := []struct {
		f        arcgis.Flavor
		base     func(*arcgissim.Server) string
		jobsPath string
		kind     arcgissim.Kind
	}{
		{arcgis.FlavorMission, (*arcgissim.Server).MissionURL, "", arcgissim.KindMission},
		{arcgis.FlavorEnterprise, (*arcgissim.Server).AdminURL, "", arcgissim.KindAdmin},
		{arcgis.FlavorEnterprise, (*arcgissim.Server).EnterpriseAdminURL, "/jobs", arcgissim.KindEnterprise},
	}
	for _, c := range cases {
		sim, clk := newSim(t, arcgissim.Options{})
		p, err := arcgis.New(withBase(pollerOptions(sim, c.f, &simtest.LogBuffer{}), c.base(sim), c.jobsPath))
		if err != nil {
			t.Fatal(err)
		}
		sim.MustAddJob(arcgissim.Job{ID: "a", Kind: c.kind})
		sim.MustAddJob(arcgissim.Job{ID: "b b", Kind: c.kind, PurgeAfter: time.Minute})
		sim.MustAddJob(arcgissim.Job{ID: "other", Kind: arcgissim.KindGP})
		ids, err := p.Discover(context.Background())
		if err != nil || strings.Join(ids, ",") != "a,b b" {
			t.Fatalf("%s %s: ids %q err %v", c.f, c.kind, ids, err)
		}
		clk.Advance(time.Minute)
		if ids, _ = p.Discover(context.Background()); strings.Join(ids, ",") != "a" {
			t.Fatalf("after the purge: %q", ids)
		}
		for _, id := range ids {
			if _, err := p.Poll(context.Background(), ref(id)); err != nil {
				t.Errorf("a discovered job cannot be polled: %v", err)
			}
		}
	}
	r := newRig(t, arcgis.FlavorGeoprocessing, arcgissim.Options{}, nil)
	if _, err := r.poller.Discover(context.Background()); err == nil || !strings.Contains(err.Error(), "do not list their jobs") {
		t.Fatalf("geoprocessing discovery: %v", err)
	}
	if st := r.sim.Stats(); st.Requests != 0 {
		t.Fatal("geoprocessing discovery sent a request")
	}
}

func TestTLSWithPortalTokens(t *testing.T) {
	sim, _ := newSim(t, arcgissim.Options{TLS: true})
	sim.MustAddJob(arcgissim.Job{ID: "j", Kind: arcgissim.KindMission})
	caFile := simtest.WriteCA(t, sim.Certificate())
	logs := &simtest.LogBuffer{}
	mk := func(ca string) *arcgis.Poller {
		o := pollerOptions(sim, arcgis.FlavorMission, logs)
		o.TokenURL = sim.PortalTokenURL()
		o.HTTP = pollkit.ClientOptions{CAFile: ca, MaxAttempts: 1}
		p, err := arcgis.New(o)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	if obs, err := mk(caFile).Poll(context.Background(), ref("j")); err != nil || obs.State != bridge.StatePending {
		t.Fatalf("with the CA file: %+v %v", obs, err)
	}
	if strings.Contains(logs.String(), "ssl=true") {
		t.Error("warned about ssl over https")
	}
	_, err := mk("").Poll(context.Background(), ref("j"))
	if err == nil || !strings.Contains(err.Error(), "CAFile") {
		t.Fatalf("without the CA file: err = %v, want advice to set CAFile", err)
	}
}

func TestCloseDropsTheToken(t *testing.T) {
	r := newRig(t, arcgis.FlavorMission, arcgissim.Options{}, nil)
	r.sim.MustAddJob(arcgissim.Job{ID: "j", Kind: arcgissim.KindMission})
	r.poll(t, "j")
	if err := r.poller.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	r.poll(t, "j")
	if st := r.sim.Stats(); st.TokensIssued != 2 {
		t.Fatalf("tokens %d: a poll after Close gets a new token", st.TokensIssued)
	}
}

func TestNewValidates(t *testing.T) {
	ok := arcgis.Options{Instance: "gis", Flavor: arcgis.FlavorMission, BaseURL: "https://gis.example.com/mission/rest",
		Username: "u", Password: bridge.NewSecret("p"), TokenURL: "https://gis.example.com/portal/sharing/rest/generateToken"}
	if _, err := arcgis.New(ok); err != nil {
		t.Fatalf("valid options: %v", err)
	}
	for name, mut := range map[string]func(*arcgis.Options){
		"no instance":        func(o *arcgis.Options) { o.Instance = "" },
		"no flavor":          func(o *arcgis.Options) { o.Flavor = "" },
		"bad flavor":         func(o *arcgis.Options) { o.Flavor = "online" },
		"no url":             func(o *arcgis.Options) { o.BaseURL = "" },
		"no password":        func(o *arcgis.Options) { o.Password = bridge.Secret{} },
		"no token url":       func(o *arcgis.Options) { o.TokenURL = "" },
		"token url no https": func(o *arcgis.Options) { o.TokenURL = "gis.example.com/generateToken" },
		"token url path":     func(o *arcgis.Options) { o.TokenURL = "https://gis.example.com/portal/sharing/rest" },
		"token url query":    func(o *arcgis.Options) { o.TokenURL = "https://gis.example.com/generateToken?password=hunter2" },
		"token url userinfo": func(o *arcgis.Options) { o.TokenURL = "https://u:hunter2@gis.example.com/generateToken" },
		"both auths":         func(o *arcgis.Options) { o.Token = bridge.NewSecret("t") },
		"password only":      func(o *arcgis.Options) { o.Username = "" },
		"jobs path":          func(o *arcgis.Options) { o.JobsPath = "jobs" },
		"referer newline":    func(o *arcgis.Options) { o.Referer = "https://x\r\nX-Evil: 1" },
		"short expiration":   func(o *arcgis.Options) { o.TokenExpiration = time.Second },
		"password in url":    func(o *arcgis.Options) { o.BaseURL = "https://u:hunter2@gis.example.com/mission/rest" },
	} {
		o := ok
		mut(&o)
		_, err := arcgis.New(o)
		if err == nil {
			t.Errorf("%s: accepted", name)
		} else if strings.Contains(err.Error(), "hunter2") {
			t.Errorf("%s: error repeats the password: %v", name, err)
		}
	}
	static := ok
	static.Username, static.Password, static.TokenURL, static.Token = "", bridge.Secret{}, "", bridge.NewSecret("t")
	if _, err := arcgis.New(static); err != nil {
		t.Errorf("static token: %v", err)
	}
	static.TokenURL = ok.TokenURL
	if _, err := arcgis.New(static); err == nil {
		t.Error("static token with a TokenURL accepted")
	}
}
