package helix_test

import (
	"context"
	"errors"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jobbridge/jobbridge/bridge"
	"github.com/jobbridge/jobbridge/pollers/helix"
	"github.com/jobbridge/jobbridge/pollers/helix/helixsim"
	"github.com/jobbridge/jobbridge/pollers/pollkit"
	"github.com/jobbridge/jobbridge/pollers/pollkit/simkit/simtest"
)

const (
	accessKey = "AK-jobbridge"
	secretKey = "S3cr3t-Acc3ss-K3y"
	apiKey    = "onprem-API-key-0123456789"
)

var t0 = time.Date(2022, 9, 8, 14, 0, 0, 0, time.UTC)

type rig struct {
	sim    *helixsim.Server
	clock  *pollkit.ManualClock
	poller *helix.Poller
	logs   *simtest.LogBuffer
}

// newRig starts a simulator on a manual clock and a poller against it that
// shares the clock. tweak may change the poller options before New.
func newRig(t *testing.T, simOpts helixsim.Options, tweak func(*helix.Options)) *rig {
	t.Helper()
	clk := pollkit.NewManualClock(t0)
	simOpts.Clock = clk
	if simOpts.AccessKeys == nil {
		simOpts.AccessKeys = []helixsim.AccessKey{{ID: accessKey, Secret: secretKey}}
	}
	sim := helixsim.NewServer(simOpts)
	t.Cleanup(sim.Close)
	logs := &simtest.LogBuffer{}
	opts := helix.Options{
		Instance:  "co",
		BaseURL:   sim.URL,
		AccessKey: accessKey,
		SecretKey: bridge.NewSecret(secretKey),
		HTTP:      simtest.QuickRetries(),
		Logger:    logs.Logger(),
		Now:       clk.Now,
	}
	if tweak != nil {
		tweak(&opts)
	}
	p, err := helix.New(opts)
	if err != nil {
		t.Fatalf("helix.New: %v", err)
	}
	t.Cleanup(func() { p.Close(context.Background()) })
	return &rig{sim: sim, clock: clk, poller: p, logs: logs}
}

func ref(id int) bridge.JobRef {
	return bridge.JobRef{Vendor: helix.Vendor, Instance: "co", ID: strconv.Itoa(id)}
}

func (r *rig) poll(t *testing.T, id int) bridge.Observation {
	t.Helper()
	obs, err := r.poller.Poll(context.Background(), ref(id))
	if err != nil {
		t.Fatalf("Poll(%d): %v", id, err)
	}
	return obs
}

func (r *rig) noSecretsLogged(t *testing.T) {
	t.Helper()
	logs := r.logs.String()
	for _, s := range []string{secretKey, apiKey, "eyJ"} {
		if strings.Contains(logs, s) {
			t.Fatalf("the log holds a secret or a JWT (%q…)", s[:3])
		}
	}
}

func TestPollFollowsRuns(t *testing.T) {
	r := newRig(t, helixsim.Options{}, nil)
	r.sim.MustAddETL(helixsim.ETL{ID: 321, TaskID: 467, Initial: "WAITING", Runs: []helixsim.Run{
		{At: time.Minute, For: time.Minute, ExitCode: "WARNING"},
		{At: 5 * time.Minute, For: time.Minute, ExitCode: "ERROR", Then: "ENDED"},
	}})
	type want struct {
		state            bridge.State
		native, sub, run string
		exit             string
	}
	for i, w := range []want{
		{bridge.StatePending, "WAITING", "scheduled", "", ""},
		{bridge.StateRunning, "RUNNING", "", "", ""},
		{bridge.StateSucceeded, "WAITING", "", "2022-09-08T14:01:00Z", "WARNING"},
		{bridge.StateSucceeded, "WAITING", "", "2022-09-08T14:01:00Z", "WARNING"},
		{bridge.StateSucceeded, "WAITING", "", "2022-09-08T14:01:00Z", "WARNING"},
		// The exit code while running is the previous run's: not reported.
		{bridge.StateRunning, "RUNNING", "", "2022-09-08T14:01:00Z", ""},
		{bridge.StateFailed, "ENDED", "", "2022-09-08T14:05:00Z", "ERROR"},
	} {
		obs := r.poll(t, 321)
		if obs.State != w.state || obs.Native != w.native || obs.SubState != w.sub || obs.RunID != w.run || obs.Outcome["exit_code"] != w.exit {
			t.Fatalf("minute %d: %s %q %q run %q outcome %v; want %+v", i, obs.State, obs.Native, obs.SubState, obs.RunID, obs.Outcome, w)
		}
		if !obs.ObservedAt.Equal(r.clock.Now()) {
			t.Fatalf("ObservedAt %v, want the poller's clock %v", obs.ObservedAt, r.clock.Now())
		}
		r.clock.Advance(time.Minute)
	}
	if st := r.sim.Stats(); st.Logins != 1 {
		t.Fatalf("%d logins for 7 polls within 7 minutes; want one JWT", st.Logins)
	}
	r.noSecretsLogged(t)
}

func TestNeverRunVariantsAndService(t *testing.T) {
	r := newRig(t, helixsim.Options{}, nil)
	for i, style := range []helixsim.EmptyStyle{helixsim.EmptyMissing, helixsim.EmptyNull, helixsim.EmptyString} {
		r.sim.MustAddETL(helixsim.ETL{ID: i + 1, Empty: style})
	}
	r.sim.MustAddETL(helixsim.ETL{ID: 9, Service: true, Initial: "SERVICE_OFF", Steps: []helixsim.ServiceStep{{At: time.Minute, Status: "SERVICE_ON"}}})
	for id := 1; id <= 3; id++ {
		obs := r.poll(t, id)
		if obs.State != bridge.StatePending || obs.SubState != helix.SubStateNeverRun || obs.Native != "" || obs.RunID != "" || obs.Outcome != nil {
			t.Errorf("never-run ETL %d: %+v", id, obs)
		}
	}
	if obs := r.poll(t, 9); obs.State != bridge.StatePending || obs.SubState != helix.SubStateServicePaused {
		t.Errorf("SERVICE_OFF: %+v", obs)
	}
	r.clock.Advance(time.Minute)
	if obs := r.poll(t, 9); obs.State != bridge.StateRunning || obs.SubState != helix.SubStateService || obs.RunID != "2022-09-08T14:01:00Z" || obs.Outcome != nil {
		t.Errorf("SERVICE_ON: %+v", obs)
	}
}

func TestJWTRenewedBeforeItsExpClaim(t *testing.T) {
	r := newRig(t, helixsim.Options{}, nil)
	r.sim.MustAddETL(helixsim.ETL{ID: 1})
	r.poll(t, 1)
	r.clock.Advance(9 * time.Minute)
	r.poll(t, 1)
	if st := r.sim.Stats(); st.Logins != 1 {
		t.Fatalf("renewed too early: %+v", st)
	}
	r.clock.Advance(90 * time.Second) // past two thirds of the 15 minutes
	r.poll(t, 1)
	if st := r.sim.Stats(); st.Logins != 2 || st.Unauthorized != 0 {
		t.Fatalf("want one proactive renewal and no 401: %+v", st)
	}
}

func TestJWTWithoutExpAssumesTheLifetime(t *testing.T) {
	r := newRig(t, helixsim.Options{JWTWithoutExp: true, JWTTTL: 5 * time.Minute}, func(o *helix.Options) { o.TokenLifetime = 15 * time.Minute })
	r.sim.MustAddETL(helixsim.ETL{ID: 1})
	r.poll(t, 1)
	// The server's JWT dies after 5 minutes, earlier than assumed: one 401,
	// one re-login, and the poll still succeeds.
	r.clock.Advance(6 * time.Minute)
	r.poll(t, 1)
	if st := r.sim.Stats(); st.Logins != 2 || st.Unauthorized != 1 {
		t.Fatalf("stats %+v", st)
	}

	// With the assumed lifetime shorter than the real one, renewal is early
	// and no 401 is ever seen.
	r2 := newRig(t, helixsim.Options{JWTWithoutExp: true}, func(o *helix.Options) { o.TokenLifetime = 3 * time.Minute })
	r2.sim.MustAddETL(helixsim.ETL{ID: 1})
	for range 10 {
		r2.poll(t, 1)
		r2.clock.Advance(time.Minute)
	}
	if st := r2.sim.Stats(); st.Logins != 5 || st.Unauthorized != 0 {
		t.Fatalf("3-minute assumed lifetime over 10 minutes: %+v; want a renewal every 2 minutes", st)
	}
}

func TestExpClaimInThePastByOurClockDoesNotStormLogins(t *testing.T) {
	// The simulator's clock stands in 2022; the poller uses the real one, so
	// every exp claim is long past for it.
	r := newRig(t, helixsim.Options{}, func(o *helix.Options) { o.Now = time.Now })
	r.sim.MustAddETL(helixsim.ETL{ID: 1})
	for range 5 {
		r.poll(t, 1)
	}
	if st := r.sim.Stats(); st.Logins != 1 {
		t.Fatalf("%d logins for 5 polls with a skewed exp; want the assumed lifetime to hold", st.Logins)
	}
	if !strings.Contains(r.logs.String(), "check NTP") {
		t.Fatal("no warning about the clock disagreement")
	}
}

func TestReloginOnceOn401(t *testing.T) {
	r := newRig(t, helixsim.Options{}, func(o *helix.Options) { o.HTTP.MaxConcurrent = 20 })
	r.sim.MustAddETL(helixsim.ETL{ID: 1})
	r.poll(t, 1)
	r.sim.ExpireTokens()
	simtest.PollConcurrently(t, r.poller, ref(1), 50)
	if st := r.sim.Stats(); st.Logins != 2 {
		t.Fatalf("%d logins; 50 polls meeting one revoked JWT must cause one re-login", st.Logins)
	}
	r.noSecretsLogged(t)
}

func TestWrongSecretIsErrAuthWithoutHammering(t *testing.T) {
	r := newRig(t, helixsim.Options{}, func(o *helix.Options) { o.SecretKey = bridge.NewSecret("wrong-" + secretKey) })
	r.sim.MustAddETL(helixsim.ETL{ID: 1})
	for range 5 {
		_, err := r.poller.Poll(context.Background(), ref(1))
		if !errors.Is(err, bridge.ErrAuth) || !strings.Contains(err.Error(), "auth.secretKey") || strings.Contains(err.Error(), secretKey) {
			t.Fatalf("err = %v, want ErrAuth naming what to check, without the secret", err)
		}
	}
	if st := r.sim.Stats(); st.FailedLogins != 1 {
		t.Fatalf("%d failed logins for 5 polls; the login backoff must hold the rest", st.FailedLogins)
	}
	r.noSecretsLogged(t)
}

func TestTenantID(t *testing.T) {
	keys := []helixsim.AccessKey{{ID: accessKey, Secret: secretKey, TenantID: "1234"}}
	r := newRig(t, helixsim.Options{AccessKeys: keys}, func(o *helix.Options) { o.TenantID = "1234" })
	r.sim.MustAddETL(helixsim.ETL{ID: 1})
	r.poll(t, 1)
	r = newRig(t, helixsim.Options{AccessKeys: keys}, func(o *helix.Options) { o.TenantID = "999" })
	r.sim.MustAddETL(helixsim.ETL{ID: 1})
	if _, err := r.poller.Poll(context.Background(), ref(1)); !errors.Is(err, bridge.ErrAuth) {
		t.Fatalf("wrong tenant: %v", err)
	}
}

func TestOnPremAPITokenNeedsNoLogin(t *testing.T) {
	r := newRig(t, helixsim.Options{APITokens: []string{apiKey}}, func(o *helix.Options) {
		o.AccessKey, o.SecretKey, o.APIToken = "", bridge.Secret{}, bridge.NewSecret(apiKey)
	})
	r.sim.MustAddETL(helixsim.ETL{ID: 1, Initial: "WAITING"})
	r.clock.Advance(24 * time.Hour) // a static key does not expire on a timer
	if obs := r.poll(t, 1); obs.State != bridge.StatePending {
		t.Fatalf("%+v", obs)
	}
	if st := r.sim.Stats(); st.Logins+st.FailedLogins != 0 || st.Unauthorized != 0 {
		t.Fatalf("an API key must not log in: %+v", st)
	}
	r.noSecretsLogged(t)

	bad := newRig(t, helixsim.Options{APITokens: []string{apiKey}}, func(o *helix.Options) {
		o.AccessKey, o.SecretKey, o.APIToken = "", bridge.Secret{}, bridge.NewSecret("revoked")
	})
	bad.sim.MustAddETL(helixsim.ETL{ID: 1})
	if _, err := bad.poller.Poll(context.Background(), ref(1)); !errors.Is(err, bridge.ErrAuth) {
		t.Fatalf("a refused API key: %v, want ErrAuth", err)
	}
	if st := bad.sim.Stats(); st.Unauthorized != 2 || st.Logins+st.FailedLogins != 0 {
		t.Fatalf("a refused API key: %+v; want the call and one retry", st)
	}
}

func TestLoginURLForASeparatePortal(t *testing.T) {
	var portal string
	r := newRig(t, helixsim.Options{SeparatePortal: true}, nil)
	portal = r.sim.PortalURL
	r.sim.MustAddETL(helixsim.ETL{ID: 1})
	_, err := r.poller.Poll(context.Background(), ref(1))
	if err == nil || errors.Is(err, bridge.ErrAuth) || !strings.Contains(err.Error(), "404") {
		t.Fatalf("login on the API host of a separate portal: %v; want the 404 reported", err)
	}
	p, err := helix.New(helix.Options{Instance: "co", BaseURL: r.sim.URL, LoginURL: portal, AccessKey: accessKey,
		SecretKey: bridge.NewSecret(secretKey), Now: r.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close(context.Background())
	if obs, err := p.Poll(context.Background(), ref(1)); err != nil || obs.State != bridge.StatePending {
		t.Fatalf("with LoginURL: %+v %v", obs, err)
	}
}

func TestUnknownETLIsErrNotFound(t *testing.T) {
	for _, code := range []int{400, 404} {
		r := newRig(t, helixsim.Options{NotFoundStatus: code}, nil)
		r.sim.MustAddETL(helixsim.ETL{ID: 1})
		for _, id := range []string{"999", "a/b", "..", "x y"} {
			_, err := r.poller.Poll(context.Background(), bridge.JobRef{Vendor: helix.Vendor, Instance: "co", ID: id})
			if !errors.Is(err, bridge.ErrNotFound) || !strings.Contains(err.Error(), id) {
				t.Errorf("HTTP %d, id %q: err = %v, want ErrNotFound naming the ETL", code, id, err)
			}
		}
		r.sim.RemoveETL(1)
		if _, err := r.poller.Poll(context.Background(), ref(1)); !errors.Is(err, bridge.ErrNotFound) {
			t.Errorf("removed ETL: %v", err)
		}
		if st := r.sim.Stats(); st.Faults != 0 || st.Requests != 6 {
			t.Errorf("not-found answers must not be retried: %+v", st)
		}
	}
}

func TestEmptySuccessIsNoObservation(t *testing.T) {
	r := newRig(t, helixsim.Options{Literal204: true}, nil)
	r.sim.MustAddETL(helixsim.ETL{ID: 1, Initial: "WAITING"})
	check := func(what string) {
		t.Helper()
		obs, err := r.poller.Poll(context.Background(), ref(1))
		if !errors.Is(err, helix.ErrNoStatus) || errors.Is(err, bridge.ErrMalformed) || errors.Is(err, bridge.ErrNotFound) || errors.Is(err, bridge.ErrAuth) {
			t.Fatalf("%s: err = %v, want only ErrNoStatus", what, err)
		}
		if obs.State != "" {
			t.Fatalf("%s: an error came with state %q", what, obs.State)
		}
	}
	check("literal 204")
	r.sim.SetLiteral204(false)
	r.sim.InjectFault(helixsim.Fault{Kind: helixsim.FaultEmpty, Endpoint: helixsim.EndpointStatus})
	check("empty 200")
	if obs := r.poll(t, 1); obs.State != bridge.StatePending {
		t.Fatalf("after the faults: %+v", obs)
	}
}

func TestTransientFaults(t *testing.T) {
	r := newRig(t, helixsim.Options{}, func(o *helix.Options) { o.HTTP.Timeout = 200 * time.Millisecond })
	r.sim.MustAddETL(helixsim.ETL{ID: 1, Initial: "WAITING"})
	r.poll(t, 1)
	r.sim.InjectFault(helixsim.Fault{Kind: helixsim.FaultStatus, Count: 3, Endpoint: helixsim.EndpointStatus})
	r.poll(t, 1)
	r.sim.InjectFault(helixsim.Fault{Kind: helixsim.FaultDelay, Delay: 2 * time.Second, Endpoint: helixsim.EndpointStatus})
	r.poll(t, 1)
	r.sim.InjectFault(helixsim.Fault{Kind: helixsim.FaultStatus, Count: 2, Endpoint: helixsim.EndpointLogin})
	r.sim.ExpireTokens()
	r.poll(t, 1)

	r.sim.InjectFault(helixsim.Fault{Kind: helixsim.FaultStatus, Status: 503, Count: 10, Endpoint: helixsim.EndpointStatus})
	_, err := r.poller.Poll(context.Background(), ref(1))
	var se *pollkit.StatusError
	if !errors.As(err, &se) || se.StatusCode != 503 || errors.Is(err, bridge.ErrMalformed) || errors.Is(err, bridge.ErrNotFound) || errors.Is(err, bridge.ErrAuth) {
		t.Fatalf("err = %v; want a transient 503 StatusError", err)
	}
}

func TestMalformedPayloadsAreErrMalformed(t *testing.T) {
	r := newRig(t, helixsim.Options{}, nil)
	r.sim.MustAddETL(helixsim.ETL{ID: 1, Initial: "WAITING"})
	for _, kind := range []helixsim.FaultKind{helixsim.FaultMalformed, helixsim.FaultHTML} {
		r.sim.InjectFault(helixsim.Fault{Kind: kind, Endpoint: helixsim.EndpointStatus})
		obs, err := r.poller.Poll(context.Background(), ref(1))
		if !errors.Is(err, bridge.ErrMalformed) || obs.State != "" {
			t.Errorf("%s: %+v %v, want ErrMalformed and no observation", kind, obs, err)
		}
	}
	r.sim.InjectFault(helixsim.Fault{Kind: helixsim.FaultHTML, Endpoint: helixsim.EndpointLogin})
	r.sim.ExpireTokens()
	if _, err := r.poller.Poll(context.Background(), ref(1)); err == nil || !strings.Contains(err.Error(), "HTML") {
		t.Errorf("an HTML login answer: %v", err)
	}
}

func TestDiscover(t *testing.T) {
	r := newRig(t, helixsim.Options{}, func(o *helix.Options) { o.NameFilter = regexp.MustCompile(`^prod-`) })
	for i, name := range []string{"prod-vmware", "test-vmware", "prod-csv", "preprod-x"} {
		r.sim.MustAddETL(helixsim.ETL{ID: 50 + i, Name: name})
	}
	ids, err := r.poller.Discover(context.Background())
	if err != nil || !slices.Equal(ids, []string{"50", "52"}) {
		t.Fatalf("Discover = %v %v", ids, err)
	}
	all := newRig(t, helixsim.Options{}, nil)
	all.sim.MustAddETL(helixsim.ETL{ID: 7, Name: "x"})
	if ids, err := all.poller.Discover(context.Background()); err != nil || !slices.Equal(ids, []string{"7"}) {
		t.Fatalf("Discover without filter = %v %v", ids, err)
	}
	r.sim.InjectFault(helixsim.Fault{Kind: helixsim.FaultHTML, Endpoint: helixsim.EndpointList})
	if _, err := r.poller.Discover(context.Background()); !errors.Is(err, bridge.ErrMalformed) {
		t.Fatalf("HTML list: %v", err)
	}
}

func TestNewRefusesBadOptions(t *testing.T) {
	base := helix.Options{Instance: "co", BaseURL: "https://co.example.com", AccessKey: "ak", SecretKey: bridge.NewSecret(secretKey)}
	for name, mut := range map[string]func(*helix.Options){
		"both credentials":   func(o *helix.Options) { o.APIToken = bridge.NewSecret("t") },
		"no credentials":     func(o *helix.Options) { o.AccessKey, o.SecretKey = "", bridge.Secret{} },
		"key without secret": func(o *helix.Options) { o.SecretKey = bridge.Secret{} },
		"API path in URL":    func(o *helix.Options) { o.BaseURL = "https://co.example.com/opt/api/v1" },
		"login path":         func(o *helix.Options) { o.LoginURL = "https://portal.example.com/ims/api/v1/access_keys/login" },
		"token with tenant": func(o *helix.Options) {
			o.AccessKey, o.SecretKey, o.APIToken, o.TenantID = "", bridge.Secret{}, bridge.NewSecret("t"), "1"
		},
		"bad instance":      func(o *helix.Options) { o.Instance = "a b" },
		"no URL":            func(o *helix.Options) { o.BaseURL = "" },
		"negative lifetime": func(o *helix.Options) { o.TokenLifetime = -time.Minute },
	} {
		o := base
		mut(&o)
		if _, err := helix.New(o); err == nil {
			t.Errorf("%s: accepted", name)
		} else if strings.Contains(err.Error(), secretKey) {
			t.Errorf("%s: error repeats the secret: %v", name, err)
		}
	}
	o := base
	o.BaseURL = "https://co.example.com/prefix/opt/api/v1"
	if _, err := helix.New(o); err == nil || !strings.Contains(err.Error(), `"https://co.example.com/prefix"`) {
		t.Errorf("API path in URL: %v; want the root suggested", err)
	}
}

func TestTLSWithSimulatorCA(t *testing.T) {
	clk := pollkit.NewManualClock(t0)
	sim := helixsim.NewServer(helixsim.Options{TLS: true, Clock: clk, APITokens: []string{apiKey}, ETLs: []helixsim.ETL{{ID: 1}}})
	defer sim.Close()
	caFile := simtest.WriteCA(t, sim.Certificate())
	mk := func(ca string) *helix.Poller {
		p, err := helix.New(helix.Options{Instance: "tls", BaseURL: sim.URL, APIToken: bridge.NewSecret(apiKey),
			HTTP: pollkit.ClientOptions{CAFile: ca, MaxAttempts: 1}})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	if obs, err := mk(caFile).Poll(context.Background(), ref(1)); err != nil || obs.State != bridge.StatePending {
		t.Fatalf("with the CA file: %+v %v", obs, err)
	}
	if _, err := mk("").Poll(context.Background(), ref(1)); err == nil || !strings.Contains(err.Error(), "CAFile") {
		t.Fatalf("without the CA file: err = %v, want advice to set CAFile", err)
	}
}
