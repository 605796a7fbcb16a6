package tso_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/jobbridge/jobbridge/bridge"
	"github.com/jobbridge/jobbridge/pollers/pollkit"
	"github.com/jobbridge/jobbridge/pollers/pollkit/simkit/simtest"
	"github.com/jobbridge/jobbridge/pollers/tso"
	"github.com/jobbridge/jobbridge/pollers/tso/tsosim"
)

const (
	user     = "ops"
	password = "S3cr3t-Pa55w0rd"
)

var t0 = time.Date(2025, 3, 6, 16, 0, 0, 0, time.UTC)

type rig struct {
	sim    *tsosim.Server
	clock  *tsosim.ManualClock
	poller *tso.Poller
	logs   *simtest.LogBuffer
}

// newRig starts a simulator on a manual clock and a poller against it.
// tweak may change the poller options before New.
func newRig(t *testing.T, simOpts tsosim.Options, tweak func(*tso.Options)) *rig {
	t.Helper()
	clk := tsosim.NewManualClock(t0)
	simOpts.Clock = clk
	if simOpts.Users == nil {
		simOpts.Users = map[string]string{user: password}
	}
	sim := tsosim.NewServer(simOpts)
	t.Cleanup(sim.Close)
	logs := &simtest.LogBuffer{}
	opts := tso.Options{
		Instance: "prod",
		BaseURL:  sim.URL,
		Username: user,
		Password: bridge.NewSecret(password),
		HTTP:     simtest.QuickRetries(),
		Logger:   logs.Logger(),
	}
	if tweak != nil {
		tweak(&opts)
	}
	p, err := tso.New(opts)
	if err != nil {
		t.Fatalf("tso.New: %v", err)
	}
	t.Cleanup(func() { p.Close(context.Background()) })
	return &rig{sim: sim, clock: clk, poller: p, logs: logs}
}

func ref(id string) bridge.JobRef { return bridge.JobRef{Vendor: tso.Vendor, Instance: "prod", ID: id} }

func (r *rig) poll(t *testing.T, id string) bridge.Observation {
	t.Helper()
	obs, err := r.poller.Poll(context.Background(), ref(id))
	if err != nil {
		t.Fatalf("Poll(%q): %v", id, err)
	}
	return obs
}

func TestEveryMappingRowReachedByAScript(t *testing.T) {
	r := newRig(t, tsosim.Options{}, nil)
	rows := tso.StatusTable().Rows()
	script := make([]tsosim.Step, len(rows))
	for i, row := range rows {
		script[i] = tsosim.Step{Status: row.Native, For: time.Minute}
	}
	r.sim.AddJob("walker", script)
	for i, row := range rows {
		obs := r.poll(t, "walker")
		if obs.Native != row.Native || obs.State != row.State || obs.SubState != row.SubState {
			t.Errorf("step %d: observed %q → %s/%q, want %q → %s/%q", i, obs.Native, obs.State, obs.SubState, row.Native, row.State, row.SubState)
		}
		r.clock.Advance(time.Minute)
	}
	// The simulator's ground truth saw the same walk.
	h := r.sim.History()
	if len(h) != len(rows) {
		t.Fatalf("history has %d changes, want %d", len(h), len(rows))
	}
	for i, c := range h {
		if c.Status != rows[i].Native || !c.At.Equal(t0.Add(time.Duration(i)*time.Minute)) {
			t.Errorf("history %d = %+v", i, c)
		}
	}
	// Unknown statuses from the vendor map to unknown, verbatim.
	r.sim.AddJob("odd", []tsosim.Step{{Status: "Terminated"}})
	if obs := r.poll(t, "odd"); obs.State != bridge.StateUnknown || obs.Native != "Terminated" {
		t.Errorf("unknown status: %+v", obs)
	}
}

func TestObservationFields(t *testing.T) {
	r := newRig(t, tsosim.Options{}, nil)
	r.sim.AddJobSpec(tsosim.Job{ID: "j", ProcessName: ":Ops:HTTP:Get", Script: []tsosim.Step{
		{Status: "ASSIGNED", For: time.Minute},
		{Status: "COMPLETED", Output: []tsosim.Param{{Name: "status code", Value: "200"}}},
	}})
	r.sim.AddJobSpec(tsosim.Job{ID: "unset", StartUnset: true, Script: []tsosim.Step{{Status: "READY"}}})
	r.clock.Advance(2 * time.Minute)
	before := time.Now()
	obs := r.poll(t, "j")
	if obs.Job != ref("j") || obs.State != bridge.StateSucceeded || obs.Native != "COMPLETED" || obs.Via != bridge.DetectedByPoll {
		t.Fatalf("observation %+v", obs)
	}
	if obs.ObservedAt.Before(before) || time.Since(obs.ObservedAt) > time.Minute {
		t.Errorf("ObservedAt %v is not the receive time", obs.ObservedAt)
	}
	if obs.Outcome["status code"] != "<result>200</result>" || len(obs.Outcome) != 1 {
		t.Errorf("Outcome %v", obs.Outcome)
	}
	st := obs.Times["startTime"]
	if st.Raw != "Thu Mar 06 10:00:00 CST 2025" || !st.Normalized.Equal(t0) {
		t.Errorf("startTime %+v, want the job's creation %v", st, t0)
	}
	if !bytes.Contains(obs.Raw, []byte(`"processName":":Ops:HTTP:Get"`)) {
		t.Errorf("Raw %s", obs.Raw)
	}
	obs = r.poll(t, "unset")
	if st := obs.Times["startTime"]; st.Raw != "Wed Dec 31 17:59:59 CST 1969" || !st.Normalized.IsZero() {
		t.Errorf("unset start %+v: want the raw epoch value, no normalized time", st)
	}
}

func TestServerZoneResolvesAmbiguousCST(t *testing.T) {
	shanghai, err := time.LoadLocation("Asia/Shanghai")
	if err != nil {
		t.Fatalf("tz database: %v", err)
	}
	r := newRig(t, tsosim.Options{Zone: shanghai}, func(o *tso.Options) { o.Zone = shanghai })
	r.sim.AddJob("cn", []tsosim.Step{{Status: "ASSIGNED"}})
	st := r.poll(t, "cn").Times["startTime"]
	if !strings.Contains(st.Raw, " CST ") || !st.Normalized.Equal(t0) {
		t.Fatalf("Shanghai CST %+v, want %v", st, t0)
	}
}

func TestCapitalizedProcessNameAndBaoap(t *testing.T) {
	r := newRig(t, tsosim.Options{Context: "baoap", CapitalizedProcessName: true}, nil)
	r.sim.AddJob("j", []tsosim.Step{{Status: "IN_PROGRESS"}})
	obs := r.poll(t, "j")
	if obs.State != bridge.StateRunning || !bytes.Contains(obs.Raw, []byte(`"ProcessName"`)) {
		t.Fatalf("observation %+v raw %s", obs, obs.Raw)
	}
}

func TestReloginOnTokenExpiry(t *testing.T) {
	r := newRig(t, tsosim.Options{TokenTTL: 5 * time.Minute}, nil)
	r.sim.AddJob("j", []tsosim.Step{{Status: "ASSIGNED"}})
	r.poll(t, "j")
	r.poll(t, "j")
	if st := r.sim.Stats(); st.Logins != 1 {
		t.Fatalf("%d logins for two polls; want one session", st.Logins)
	}
	r.clock.Advance(6 * time.Minute)
	if obs := r.poll(t, "j"); obs.State != bridge.StateRunning {
		t.Fatalf("after expiry: %+v", obs)
	}
	st := r.sim.Stats()
	if st.Logins != 2 || st.Unauthorized != 1 {
		t.Fatalf("after idle expiry: %d logins, %d 401s; want exactly one extra login after one 401", st.Logins, st.Unauthorized)
	}
	if strings.Contains(r.logs.String(), password) {
		t.Fatal("the password is in the log")
	}
}

func TestConcurrentPollsAfterExpiryLogInOnce(t *testing.T) {
	r := newRig(t, tsosim.Options{}, func(o *tso.Options) { o.HTTP.MaxConcurrent = 20 })
	r.sim.AddJob("j", []tsosim.Step{{Status: "ASSIGNED"}})
	r.poll(t, "j")
	r.sim.ExpireTokens()
	simtest.PollConcurrently(t, r.poller, ref("j"), 100)
	if st := r.sim.Stats(); st.Logins != 2 {
		t.Fatalf("%d logins; 100 polls meeting one expired session must cause one re-login", st.Logins)
	}
}

func TestServerErrorBurstIsRetried(t *testing.T) {
	r := newRig(t, tsosim.Options{}, nil)
	r.sim.AddJob("j", []tsosim.Step{{Status: "COMPLETED"}})
	r.sim.InjectFault(tsosim.Fault{Kind: tsosim.FaultStatus, Count: 3, Endpoint: tsosim.EndpointStatus})
	if obs := r.poll(t, "j"); obs.State != bridge.StateSucceeded {
		t.Fatalf("after the burst: %+v", obs)
	}
	if st := r.sim.Stats(); st.Faults != 3 || st.StatusRequests != 1 {
		t.Fatalf("stats %+v", st)
	}

	// A burst longer than the retries is a transient error, not a verdict.
	r.sim.InjectFault(tsosim.Fault{Kind: tsosim.FaultStatus, Status: 503, Count: 10, Endpoint: tsosim.EndpointStatus})
	_, err := r.poller.Poll(context.Background(), ref("j"))
	var se *pollkit.StatusError
	if !errors.As(err, &se) || se.StatusCode != 503 || errors.Is(err, bridge.ErrMalformed) || errors.Is(err, bridge.ErrNotFound) || errors.Is(err, bridge.ErrAuth) {
		t.Fatalf("err = %v; want a transient 503 StatusError", err)
	}
}

func TestLoginServerErrorIsRetried(t *testing.T) {
	r := newRig(t, tsosim.Options{}, nil)
	r.sim.AddJob("j", []tsosim.Step{{Status: "COMPLETED"}})
	r.sim.InjectFault(tsosim.Fault{Kind: tsosim.FaultStatus, Count: 2, Endpoint: tsosim.EndpointLogin})
	r.poll(t, "j")
	if st := r.sim.Stats(); st.Logins != 1 || st.Faults != 2 {
		t.Fatalf("stats %+v", st)
	}
}

func TestSlowReplyIsRetried(t *testing.T) {
	r := newRig(t, tsosim.Options{}, func(o *tso.Options) { o.HTTP.Timeout = 100 * time.Millisecond })
	r.sim.AddJob("j", []tsosim.Step{{Status: "COMPLETED"}})
	r.poll(t, "j") // log in first, so the delay hits a status call
	r.sim.InjectFault(tsosim.Fault{Kind: tsosim.FaultDelay, Delay: 2 * time.Second, Endpoint: tsosim.EndpointStatus})
	if obs := r.poll(t, "j"); obs.State != bridge.StateSucceeded {
		t.Fatalf("%+v", obs)
	}
}

func TestMalformedPayloadsAreErrMalformed(t *testing.T) {
	r := newRig(t, tsosim.Options{}, nil)
	r.sim.AddJob("j", []tsosim.Step{{Status: "COMPLETED"}})
	for _, kind := range []tsosim.FaultKind{tsosim.FaultMalformed, tsosim.FaultHTML} {
		r.sim.InjectFault(tsosim.Fault{Kind: kind, Endpoint: tsosim.EndpointStatus})
		obs, err := r.poller.Poll(context.Background(), ref("j"))
		if !errors.Is(err, bridge.ErrMalformed) {
			t.Errorf("%s: err = %v, want ErrMalformed", kind, err)
		}
		if obs.State != "" {
			t.Errorf("%s: an error came with state %q", kind, obs.State)
		}
	}
	if obs := r.poll(t, "j"); obs.State != bridge.StateSucceeded {
		t.Fatalf("after the faults: %+v", obs)
	}
}

func TestUnknownJobIsErrNotFound(t *testing.T) {
	r := newRig(t, tsosim.Options{}, nil)
	_, err := r.poller.Poll(context.Background(), ref("no-such-job"))
	if !errors.Is(err, bridge.ErrNotFound) || !strings.Contains(err.Error(), "no-such-job") {
		t.Fatalf("err = %v, want ErrNotFound naming the job", err)
	}
	if _, err := r.poller.Poll(context.Background(), ref("")); err == nil || errors.Is(err, bridge.ErrNotFound) {
		t.Fatalf("empty id: err = %v, want a validation error", err)
	}
}

func TestHostileIDsRoundTrip(t *testing.T) {
	r := newRig(t, tsosim.Options{}, nil)
	ids := []string{"a/b", "../status", "q?x=1", "frag#1", "with space", "100%", "%2F", "ünïcødé", "日本語/ジョブ", "semi;colon", "..", ".", "+&=$,", "tab\u00a0nbsp"}
	for _, id := range ids {
		r.sim.AddJobSpec(tsosim.Job{ID: id, Script: []tsosim.Step{{Status: "COMPLETED", Output: []tsosim.Param{{Name: "id", Value: id}}}}})
	}
	for _, id := range ids {
		obs := r.poll(t, id)
		if obs.Job.ID != id || obs.State != bridge.StateSucceeded {
			t.Errorf("%q: observation %+v", id, obs)
		}
		// The simulator echoes the id it decoded, XML-escaped as TSO would.
		want := "<result>" + strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(id) + "</result>"
		if obs.Outcome["id"] != want {
			t.Errorf("%q: server saw %q", id, obs.Outcome["id"])
		}
	}
}

func TestWrongPasswordIsErrAuthWithoutHammering(t *testing.T) {
	r := newRig(t, tsosim.Options{}, func(o *tso.Options) { o.Password = bridge.NewSecret("wrong-" + password) })
	r.sim.AddJob("j", []tsosim.Step{{Status: "COMPLETED"}})
	for range 5 {
		_, err := r.poller.Poll(context.Background(), ref("j"))
		if !errors.Is(err, bridge.ErrAuth) || !strings.Contains(err.Error(), "check Username and Password") {
			t.Fatalf("err = %v, want ErrAuth telling the user to check the credentials", err)
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

func TestCloseLogsOut(t *testing.T) {
	r := newRig(t, tsosim.Options{}, nil)
	r.sim.AddJob("j", []tsosim.Step{{Status: "COMPLETED"}})
	if err := r.poller.Close(context.Background()); err != nil {
		t.Fatalf("Close without a session: %v", err)
	}
	if st := r.sim.Stats(); st.Logouts != 0 || st.Requests != 0 {
		t.Fatalf("Close without a session sent requests: %+v", st)
	}
	r.poll(t, "j")
	if err := r.poller.Close(context.Background()); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if st := r.sim.Stats(); st.Logouts != 1 {
		t.Fatalf("Logouts = %d", st.Logouts)
	}
	r.poll(t, "j") // a Poll after Close opens a new session
	r.sim.ExpireTokens()
	if err := r.poller.Close(context.Background()); err != nil {
		t.Fatalf("Close of an expired session: %v", err)
	}
	if st := r.sim.Stats(); st.Logins != 2 {
		t.Fatalf("Logins = %d", st.Logins)
	}
}

func TestTLSWithSimulatorCA(t *testing.T) {
	clk := tsosim.NewManualClock(t0)
	sim := tsosim.NewServer(tsosim.Options{TLS: true, Clock: clk, Users: map[string]string{user: password}})
	defer sim.Close()
	sim.AddJob("j", []tsosim.Step{{Status: "COMPLETED"}})
	caFile := simtest.WriteCA(t, sim.Certificate())
	mk := func(ca string) *tso.Poller {
		p, err := tso.New(tso.Options{Instance: "tls", BaseURL: sim.URL, Username: user, Password: bridge.NewSecret(password),
			HTTP: pollkit.ClientOptions{CAFile: ca, MaxAttempts: 1}})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	if obs, err := mk(caFile).Poll(context.Background(), ref("j")); err != nil || obs.State != bridge.StateSucceeded {
		t.Fatalf("with the CA file: %+v %v", obs, err)
	}
	_, err := mk("").Poll(context.Background(), ref("j"))
	if err == nil || !strings.Contains(err.Error(), "CAFile") {
		t.Fatalf("without the CA file: err = %v, want advice to set CAFile", err)
	}
}

func TestPollAfterAsyncExecute(t *testing.T) {
	r := newRig(t, tsosim.Options{}, nil)
	obs := r.poll(t, mustCreate(t, r)) // a job created through the vendor API is pollable
	if obs.State != bridge.StatePending || obs.Native != "READY" || !bytes.Contains(obs.Raw, []byte(`"processName":":Ops:Demo"`)) {
		t.Fatalf("new job: %+v raw %s", obs, obs.Raw)
	}
	r.clock.Advance(time.Hour)
	if obs := r.poll(t, obs.Job.ID); obs.State != bridge.StateSucceeded {
		t.Fatalf("after its default script: %+v", obs)
	}
}

// mustCreate starts a process the way a TSO client would and returns the job
// id from the (simulated) async response.
func mustCreate(t *testing.T, r *rig) string {
	t.Helper()
	login, _ := http.NewRequest("POST", r.sim.URL+"/rest/login", strings.NewReader(`{"username":"`+user+`","password":"`+password+`"}`))
	resp, err := http.DefaultClient.Do(login)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	req, _ := http.NewRequest("POST", r.sim.URL+"/rest/process/%3AOps%3ADemo/execute?mode=async", strings.NewReader(`{"inputParameters":[]}`))
	req.Header.Set("Authentication-Token", resp.Header.Get("Authentication-Token"))
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	id, ok := strings.CutPrefix(strings.TrimSpace(string(b)), `{"jobId":"`)
	if !ok || resp.StatusCode != 200 {
		t.Fatalf("execute: %d %s", resp.StatusCode, b)
	}
	return strings.TrimSuffix(id, `"}`)
}
