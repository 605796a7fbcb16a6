package hmc_test

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/jobbridge/jobbridge/bridge"
	"github.com/jobbridge/jobbridge/bridge/backoff"
	"github.com/jobbridge/jobbridge/pollers/hmc"
	"github.com/jobbridge/jobbridge/pollers/hmc/hmcsim"
	"github.com/jobbridge/jobbridge/pollers/pollkit"
)

const (
	user     = "jobbridge"
	password = "S3cr3t-Pa55w0rd"
)

var t0 = time.Date(2025, 3, 6, 16, 0, 0, 0, time.UTC)

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type rig struct {
	sim    *hmcsim.Server
	clock  *pollkit.ManualClock
	poller *hmc.Poller
	logs   *syncBuffer
}

// newRig starts a simulator on a manual clock and a poller against it.
// tweak may change the poller options before New.
func newRig(t *testing.T, simOpts hmcsim.Options, tweak func(*hmc.Options)) *rig {
	t.Helper()
	clk := pollkit.NewManualClock(t0)
	simOpts.Clock = clk
	if simOpts.Users == nil {
		simOpts.Users = map[string]string{user: password}
	}
	if simOpts.TickEvery == 0 {
		simOpts.TickEvery = -1
	}
	sim := hmcsim.NewServer(simOpts)
	t.Cleanup(sim.Close)
	logs := &syncBuffer{}
	opts := hmc.Options{
		Instance: "prod",
		BaseURL:  sim.URL,
		UserID:   user,
		Password: bridge.NewSecret(password),
		HTTP: pollkit.ClientOptions{
			Backoff:     backoff.Policy{Initial: time.Millisecond, Max: 5 * time.Millisecond},
			MaxAttempts: 4,
		},
		Logger: zerolog.New(logs).Level(zerolog.DebugLevel),
		Now:    clk.Now,
	}
	if tweak != nil {
		tweak(&opts)
	}
	p, err := hmc.New(opts)
	if err != nil {
		t.Fatalf("hmc.New: %v", err)
	}
	t.Cleanup(func() { p.Close(context.Background()) })
	return &rig{sim: sim, clock: clk, poller: p, logs: logs}
}

func ref(id string) bridge.JobRef { return bridge.JobRef{Vendor: hmc.Vendor, Instance: "prod", ID: id} }

func (r *rig) poll(t *testing.T, id string) bridge.Observation {
	t.Helper()
	obs, err := r.poller.Poll(context.Background(), ref(id))
	if err != nil {
		t.Fatalf("Poll(%q): %v", id, err)
	}
	return obs
}

// noSecrets fails if the password or any session id or credential the
// simulator handed out shows up in the logs.
func (r *rig) noSecrets(t *testing.T, also ...string) {
	t.Helper()
	logs := r.logs.String()
	secrets := append([]string{password}, also...)
	for _, s := range r.sim.Sessions() {
		secrets = append(secrets, s.ID, s.Credential)
	}
	for _, s := range secrets {
		if s != "" && strings.Contains(logs, s) {
			t.Fatalf("a secret is in the log: %q", s)
		}
	}
}

func intp(n int) *int { return &n }

func TestEveryMappingRowReachedByAScript(t *testing.T) {
	r := newRig(t, hmcsim.Options{}, nil)
	r.sim.MustAddJob("walker",
		hmcsim.Step{Status: "running", For: time.Minute},
		hmcsim.Step{Status: "cancel-pending", For: time.Minute},
		hmcsim.Step{Status: "canceled", StatusCode: intp(500), ReasonCode: intp(263)})
	r.sim.MustAddJob("done", hmcsim.Step{Status: "running", For: time.Minute}, hmcsim.Step{Status: "complete"})
	want := map[string]bridge.State{}
	for _, row := range hmc.StatusTable().Rows() {
		want[row.Native] = row.State
	}
	seen := map[string]bool{}
	for range 3 {
		for _, id := range []string{"walker", "done"} {
			obs := r.poll(t, id)
			if obs.State != want[obs.Native] {
				t.Errorf("%s: %q → %s, table says %s", id, obs.Native, obs.State, want[obs.Native])
			}
			if (obs.Native == "cancel-pending") != (obs.SubState == hmc.SubStateCancelPending) {
				t.Errorf("%s: %q with substate %q", id, obs.Native, obs.SubState)
			}
			seen[obs.Native] = true
		}
		r.clock.Advance(time.Minute)
	}
	for native := range want {
		if !seen[native] {
			t.Errorf("no script reached %q", native)
		}
	}
	obs := r.poll(t, "walker")
	if obs.Outcome[hmc.OutcomeStatusCode] != "500" || obs.Outcome[hmc.OutcomeReasonCode] != "263" {
		t.Errorf("canceled outcome %v", obs.Outcome)
	}
	r.sim.MustAddJob("odd", hmcsim.Step{Status: "suspended"})
	if obs := r.poll(t, "odd"); obs.State != bridge.StateUnknown || obs.Native != "suspended" {
		t.Errorf("unknown status: %+v", obs)
	}
}

func TestStatusCodesThroughTheSimulator(t *testing.T) {
	r := newRig(t, hmcsim.Options{}, nil)
	cases := []struct {
		step hmcsim.Step
		want bridge.State
	}{
		{hmcsim.Step{StatusCode: intp(200)}, bridge.StateSucceeded},
		{hmcsim.Step{StatusCode: intp(204)}, bridge.StateSucceeded},
		{hmcsim.Step{StatusCode: intp(299)}, bridge.StateSucceeded},
		{hmcsim.Step{StatusCode: intp(300), ReasonCode: intp(1)}, bridge.StateFailed},
		{hmcsim.Step{StatusCode: intp(400), ReasonCode: intp(1)}, bridge.StateFailed},
		{hmcsim.Step{StatusCode: intp(500), ReasonCode: intp(263)}, bridge.StateFailed},
		{hmcsim.Step{NoStatusCode: true}, bridge.StateFailed},
	}
	for i, c := range cases {
		id := fmt.Sprintf("job-%d", i)
		c.step.Status = "complete"
		c.step.Results = map[string]any{"message": "m" + id}
		r.sim.MustAddJob(id, c.step)
		obs := r.poll(t, id)
		if obs.State != c.want {
			t.Errorf("%+v → %s, want %s", c.step, obs.State, c.want)
		}
		if c.step.StatusCode != nil && obs.Outcome[hmc.OutcomeStatusCode] != fmt.Sprint(*c.step.StatusCode) {
			t.Errorf("%+v: outcome %v", c.step, obs.Outcome)
		}
		if _, has := obs.Outcome[hmc.OutcomeReasonCode]; has != (c.step.ReasonCode != nil) {
			t.Errorf("%+v: outcome %v", c.step, obs.Outcome)
		}
		if !bytes.Contains(obs.Raw, []byte(`"job-results":{"message":"m`+id+`"}`)) {
			t.Errorf("job-results not in Raw: %s", obs.Raw)
		}
	}
}

func TestSessionAndSubscription(t *testing.T) {
	r := newRig(t, hmcsim.Options{}, nil)
	if _, ok := r.poller.Session(); ok {
		t.Fatal("a session before any request")
	}
	ch, cancel := r.poller.SubscribeSession()
	defer cancel()
	s, err := r.poller.EnsureSession(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	first := <-ch
	info, ok := r.sim.Session(s.ID.Reveal())
	if !ok || first.ID.Reveal() != info.ID || first.Credential.Reveal() != info.Credential ||
		first.JobNotificationTopic != info.JobNotificationTopic || first.NotificationTopic != info.NotificationTopic ||
		first.Generation != 1 || first.APIMajorVersion != 4 || first.APIMinorVersion != 10 || !first.LoggedOnAt.Equal(t0) {
		t.Fatalf("session %+v, simulator %+v", first, info)
	}
	// Secrets print redacted, however the session is formatted.
	for _, out := range []string{fmt.Sprint(first), fmt.Sprintf("%+v", first), fmt.Sprintf("%#v", first)} {
		if strings.Contains(out, info.ID) || strings.Contains(out, info.Credential) {
			t.Fatalf("a formatted Session shows a secret: %s", out)
		}
	}
	// A late subscriber starts with the current session.
	late, cancelLate := r.poller.SubscribeSession()
	if s := <-late; s.Generation != 1 {
		t.Fatalf("late subscriber got %+v", s)
	}
	cancelLate()
	if _, open := <-late; open {
		t.Fatal("cancel did not close the channel")
	}
	cancelLate() // twice is harmless

	// RenewSession of the current session logs on again and off the old one.
	renewed, err := r.poller.RenewSession(context.Background(), first)
	if err != nil || renewed.Generation != 2 || renewed.JobNotificationTopic == first.JobNotificationTopic {
		t.Fatalf("renewed %+v %v", renewed, err)
	}
	if got := <-ch; got.Generation != 2 {
		t.Fatalf("subscriber got %+v", got)
	}
	if old, _ := r.sim.Session(first.ID.Reveal()); old.CloseReason != hmcsim.ClosedByLogoff {
		t.Fatalf("the replaced session was not logged off: %+v", old)
	}
	// Renewing a session that is no longer current is a no-op.
	if again, err := r.poller.RenewSession(context.Background(), first); err != nil || again.Generation != 2 {
		t.Fatalf("stale renew %+v %v", again, err)
	}
	if st := r.sim.Stats(); st.Logons != 2 {
		t.Fatalf("stats %+v", st)
	}
	r.noSecrets(t)
}

func TestReLogonOnSessionExpiry(t *testing.T) {
	r := newRig(t, hmcsim.Options{SessionIdleTimeout: 5 * time.Minute}, nil)
	ch, cancel := r.poller.SubscribeSession()
	defer cancel()
	r.sim.MustAddJob("j", hmcsim.Step{Status: "running"})
	r.poll(t, "j")
	r.poll(t, "j")
	first := <-ch
	if st := r.sim.Stats(); st.Logons != 1 {
		t.Fatalf("%d logons for two polls; want one session", st.Logons)
	}
	r.clock.Advance(6 * time.Minute)
	if obs := r.poll(t, "j"); obs.State != bridge.StateRunning {
		t.Fatalf("after expiry: %+v", obs)
	}
	st := r.sim.Stats()
	if st.Logons != 2 || st.SessionRejections != 1 {
		t.Fatalf("after idle expiry: %d logons, %d rejections; want exactly one more logon after one 403 reason 5", st.Logons, st.SessionRejections)
	}
	second := <-ch
	cur, _ := r.poller.Session()
	if second.Generation != 2 || cur.ID.Reveal() != second.ID.Reveal() || second.JobNotificationTopic == first.JobNotificationTopic {
		t.Fatalf("after re-logon: first %+v second %+v current %+v", first, second, cur)
	}
	if info, _ := r.sim.SessionForTopic(second.JobNotificationTopic); info.ID != second.ID.Reveal() || !info.Open() {
		t.Fatalf("the new topic is not the new session's: %+v", info)
	}
	r.noSecrets(t)
}

func TestConcurrentPollsAfterExpiryLogOnOnce(t *testing.T) {
	r := newRig(t, hmcsim.Options{}, func(o *hmc.Options) { o.HTTP.MaxConcurrent = 20 })
	r.sim.MustAddJob("j", hmcsim.Step{Status: "running"})
	r.poll(t, "j")
	r.sim.ExpireSessions()
	var wg sync.WaitGroup
	for range 100 {
		wg.Go(func() {
			if _, err := r.poller.Poll(context.Background(), ref("j")); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if st := r.sim.Stats(); st.Logons != 2 {
		t.Fatalf("%d logons; 100 polls meeting one expired session must cause one re-logon", st.Logons)
	}
}

// steppingClock moves one second forward at every reading.
type steppingClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *steppingClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(time.Second)
	return c.t
}

func TestSessionThatStaysInvalidIsErrAuth(t *testing.T) {
	// Every session dies before its first use: the re-logon happens, the
	// retry is refused again, and the poll fails with ErrAuth rather than
	// looping.
	sim := hmcsim.NewServer(hmcsim.Options{Clock: &steppingClock{t: t0}, SessionLifetime: time.Millisecond, TickEvery: -1,
		Users: map[string]string{user: password}})
	defer sim.Close()
	sim.MustAddJob("j", hmcsim.Step{Status: "running"})
	p, err := hmc.New(hmc.Options{Instance: "prod", BaseURL: sim.URL, UserID: user, Password: bridge.NewSecret(password)})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close(context.Background())
	_, err = p.Poll(context.Background(), ref("j"))
	if !errors.Is(err, bridge.ErrAuth) || !strings.Contains(err.Error(), "even with freshly renewed credentials") {
		t.Fatalf("err = %v, want ErrAuth", err)
	}
	if st := sim.Stats(); st.Logons != 2 || st.SessionRejections != 2 {
		t.Fatalf("stats %+v: want the first logon, one renewal, two refusals", st)
	}
}

func TestNotFoundCases(t *testing.T) {
	r := newRig(t, hmcsim.Options{Users: map[string]string{user: password, "other": "x"}}, nil)
	if _, err := r.sim.AddJob(hmcsim.Job{ID: "j", User: user, Script: []hmcsim.Step{{Status: "running", For: time.Minute}, {Status: "complete"}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.sim.AddJob(hmcsim.Job{ID: "theirs", User: "other", Script: []hmcsim.Step{{Status: "running"}}}); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"no-such-job", "theirs"} {
		_, err := r.poller.Poll(context.Background(), ref(id))
		if !errors.Is(err, bridge.ErrNotFound) || !strings.Contains(err.Error(), id) || !strings.Contains(err.Error(), "retention") {
			t.Fatalf("%s: err = %v, want ErrNotFound naming the job", id, err)
		}
	}
	r.clock.Advance(time.Minute + hmcsim.DefaultRetention - time.Second)
	if obs := r.poll(t, "j"); obs.State != bridge.StateSucceeded {
		t.Fatalf("within retention: %+v", obs)
	}
	r.clock.Advance(time.Second)
	if _, err := r.poller.Poll(context.Background(), ref("j")); !errors.Is(err, bridge.ErrNotFound) {
		t.Fatalf("after retention: err = %v, want ErrNotFound", err)
	}
	if _, err := r.poller.Poll(context.Background(), ref("")); err == nil || errors.Is(err, bridge.ErrNotFound) {
		t.Fatalf("empty id: err = %v, want a validation error", err)
	}
}

func TestA404ThatIsNotTheHMCsIsNotVanished(t *testing.T) {
	r := newRig(t, hmcsim.Options{}, nil)
	r.sim.MustAddJob("j", hmcsim.Step{Status: "running"})
	r.poll(t, "j")
	r.sim.InjectFault(hmcsim.Fault{Kind: hmcsim.FaultHTML, Status: 404, Endpoint: hmcsim.EndpointQueryJob})
	_, err := r.poller.Poll(context.Background(), ref("j"))
	if err == nil || errors.Is(err, bridge.ErrNotFound) || !strings.Contains(err.Error(), "check that the URL") {
		t.Fatalf("err = %v; a proxy's 404 must not end the watch", err)
	}
	r.sim.InjectFault(hmcsim.Fault{Kind: hmcsim.FaultStatus, Status: 404, Endpoint: hmcsim.EndpointQueryJob})
	_, err = r.poller.Poll(context.Background(), ref("j"))
	if err == nil || errors.Is(err, bridge.ErrNotFound) || !strings.Contains(err.Error(), "HTTP 404 reason 0") {
		t.Fatalf("err = %v; only reason 1 means no such job", err)
	}
	// A wrong path prefix: the HMC's 404 for a URI it does not serve (here
	// on the logon already) is not "no such job" either.
	wrong := newRig(t, hmcsim.Options{}, func(o *hmc.Options) { o.BaseURL += "/console" })
	wrong.sim.MustAddJob("j", hmcsim.Step{Status: "running"})
	_, err = wrong.poller.Poll(context.Background(), ref("j"))
	if err == nil || errors.Is(err, bridge.ErrNotFound) || !strings.Contains(err.Error(), "HTTP 404") {
		t.Fatalf("err = %v; a 404 with another reason must not end the watch", err)
	}
}

func TestJobURIAccepted(t *testing.T) {
	r := newRig(t, hmcsim.Options{}, nil)
	r.sim.MustAddJob("a b/c", hmcsim.Step{Status: "running"})
	obs := r.poll(t, hmc.JobURI("a b/c"))
	if obs.State != bridge.StateRunning || obs.Job.ID != hmc.JobURI("a b/c") {
		t.Fatalf("%+v", obs)
	}
	if id, ok := hmc.JobIDFromURI(hmcsim.JobURI("a b/c")); !ok || id != "a b/c" {
		t.Fatalf("JobIDFromURI of the simulator's job-uri: %q %v", id, ok)
	}
	for _, bad := range []string{"/api/jobs/", "/api/jobs/a/b", "/api/partitions/x", "x", "/api/jobs/%zz"} {
		if _, ok := hmc.JobIDFromURI(bad); ok {
			t.Errorf("%q taken for a job-uri", bad)
		}
	}
}

func TestHostileIDsRoundTrip(t *testing.T) {
	r := newRig(t, hmcsim.Options{}, nil)
	ids := []string{"a/b", "../status", "q?x=1", "frag#1", "with space", "100%", "%2F", "ünïcødé", "semi;colon", "..", ".", "+&=$,"}
	for _, id := range ids {
		r.sim.MustAddJob(id, hmcsim.Step{Status: "complete", Results: map[string]any{"id": id}})
	}
	for _, id := range ids {
		obs := r.poll(t, id)
		if obs.Job.ID != id || obs.State != bridge.StateSucceeded {
			t.Errorf("%q: observation %+v", id, obs)
		}
		// The simulator echoes the id it decoded from the path.
		var got struct {
			Results struct{ ID string } `json:"job-results"`
		}
		if err := json.Unmarshal(obs.Raw, &got); err != nil || got.Results.ID != id {
			t.Errorf("%q: the server saw job %q (%v)", id, got.Results.ID, err)
		}
	}
}

func TestFaultsAreRetriedOrMalformed(t *testing.T) {
	r := newRig(t, hmcsim.Options{}, func(o *hmc.Options) { o.HTTP.Timeout = 150 * time.Millisecond })
	r.sim.MustAddJob("j", hmcsim.Step{Status: "complete"})
	r.sim.InjectFault(hmcsim.Fault{Kind: hmcsim.FaultStatus, Status: 503, Count: 2, Endpoint: hmcsim.EndpointLogon})
	r.sim.InjectFault(hmcsim.Fault{Kind: hmcsim.FaultStatus, Count: 3, Endpoint: hmcsim.EndpointQueryJob})
	if obs := r.poll(t, "j"); obs.State != bridge.StateSucceeded {
		t.Fatalf("after the bursts: %+v", obs)
	}
	if st := r.sim.Stats(); st.Faults != 5 || st.Logons != 1 || st.JobQueries != 1 {
		t.Fatalf("stats %+v", st)
	}
	r.sim.InjectFault(hmcsim.Fault{Kind: hmcsim.FaultDelay, Delay: 2 * time.Second, Endpoint: hmcsim.EndpointQueryJob})
	if obs := r.poll(t, "j"); obs.State != bridge.StateSucceeded {
		t.Fatalf("after a slow reply: %+v", obs)
	}
	// A burst as long as the retries is a transient error, not a verdict.
	r.sim.InjectFault(hmcsim.Fault{Kind: hmcsim.FaultStatus, Status: 503, Count: 4, Endpoint: hmcsim.EndpointQueryJob})
	_, err := r.poller.Poll(context.Background(), ref("j"))
	var se *pollkit.StatusError
	if !errors.As(err, &se) || se.StatusCode != 503 || errors.Is(err, bridge.ErrMalformed) || errors.Is(err, bridge.ErrNotFound) || errors.Is(err, bridge.ErrAuth) {
		t.Fatalf("err = %v; want a transient 503 StatusError", err)
	}
	for _, kind := range []hmcsim.FaultKind{hmcsim.FaultMalformed, hmcsim.FaultHTML} {
		r.sim.InjectFault(hmcsim.Fault{Kind: kind, Endpoint: hmcsim.EndpointQueryJob})
		obs, err := r.poller.Poll(context.Background(), ref("j"))
		if !errors.Is(err, bridge.ErrMalformed) || obs.State != "" {
			t.Fatalf("%s: %+v %v; want ErrMalformed and no observation", kind, obs, err)
		}
	}
	if obs := r.poll(t, "j"); obs.State != bridge.StateSucceeded {
		t.Fatalf("after the faults: %+v", obs)
	}
}

func TestWrongPasswordIsErrAuthWithoutHammering(t *testing.T) {
	r := newRig(t, hmcsim.Options{}, func(o *hmc.Options) { o.Password = bridge.NewSecret("wrong-" + password) })
	r.sim.MustAddJob("j", hmcsim.Step{Status: "complete"})
	for range 5 {
		_, err := r.poller.Poll(context.Background(), ref("j"))
		if !errors.Is(err, bridge.ErrAuth) || !strings.Contains(err.Error(), "check the userid and password") {
			t.Fatalf("err = %v, want ErrAuth telling the user to check the credentials", err)
		}
		if strings.Contains(err.Error(), password) {
			t.Fatalf("error repeats the password: %v", err)
		}
	}
	if st := r.sim.Stats(); st.FailedLogons != 1 {
		t.Fatalf("%d failed logons for 5 polls; the logon backoff must hold the rest", st.FailedLogons)
	}
	r.noSecrets(t, "wrong-"+password)
}

func TestCloseLogsOff(t *testing.T) {
	r := newRig(t, hmcsim.Options{}, nil)
	r.sim.MustAddJob("j", hmcsim.Step{Status: "complete"})
	if err := r.poller.Close(context.Background()); err != nil {
		t.Fatalf("Close without a session: %v", err)
	}
	if st := r.sim.Stats(); st.Requests != 0 {
		t.Fatalf("Close without a session sent requests: %+v", st)
	}
	ch, cancel := r.poller.SubscribeSession()
	defer cancel()
	r.poll(t, "j")
	s := <-ch
	if err := r.poller.Close(context.Background()); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if got := <-ch; got.Active() || got.Generation != 0 {
		t.Fatalf("after Close the subscriber got %+v, want the zero Session", got)
	}
	if info, _ := r.sim.Session(s.ID.Reveal()); info.CloseReason != hmcsim.ClosedByLogoff {
		t.Fatalf("session %+v", info)
	}
	if _, ok := r.poller.Session(); ok {
		t.Fatal("a session after Close")
	}
	r.poll(t, "j") // a Poll after Close opens a new session
	r.sim.ExpireSessions()
	if err := r.poller.Close(context.Background()); err != nil {
		t.Fatalf("Close of an expired session: %v", err)
	}
	if st := r.sim.Stats(); st.Logons != 2 || st.Logoffs != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestDeleteJob(t *testing.T) {
	r := newRig(t, hmcsim.Options{}, nil)
	r.sim.MustAddJob("j", hmcsim.Step{Status: "running", For: time.Minute}, hmcsim.Step{Status: "complete"})
	ctx := context.Background()
	if err := r.poller.DeleteJob(ctx, "j"); !errors.Is(err, hmc.ErrJobNotEnded) || !strings.Contains(err.Error(), "reason 40") {
		t.Fatalf("running job: err = %v, want ErrJobNotEnded", err)
	}
	r.clock.Advance(time.Minute)
	if err := r.poller.DeleteJob(ctx, "j"); err != nil {
		t.Fatalf("ended job: %v", err)
	}
	if err := r.poller.DeleteJob(ctx, hmc.JobURI("j")); !errors.Is(err, bridge.ErrNotFound) {
		t.Fatalf("deleted job: err = %v, want ErrNotFound", err)
	}
	// Without DeleteCompleted the poller does not pretend: the job is gone.
	if _, err := r.poller.Poll(ctx, ref("j")); !errors.Is(err, bridge.ErrNotFound) {
		t.Fatalf("poll of a deleted job: err = %v", err)
	}
	r.poller.OnTerminal(ctx, ref("j")) // a no-op without DeleteCompleted
	if st := r.sim.Stats(); st.Deletes != 1 || st.DeleteConflicts != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestOnTerminalDeletesAndRemembers(t *testing.T) {
	r := newRig(t, hmcsim.Options{}, func(o *hmc.Options) { o.DeleteCompleted = true })
	r.sim.MustAddJob("j", hmcsim.Step{Status: "running", For: time.Minute}, hmcsim.Step{Status: "complete", StatusCode: intp(500), ReasonCode: intp(1)})
	r.sim.MustAddJob("gone", hmcsim.Step{Status: "complete"})
	r.sim.MustAddJob("odd", hmcsim.Step{Status: "running"})
	ctx := context.Background()
	r.poll(t, "j")
	r.clock.Advance(time.Minute)
	final := r.poll(t, "j")
	r.poller.OnTerminal(ctx, ref("j"))
	if st, ok := r.sim.Status("j"); ok {
		t.Fatalf("the job's status is still there: %s", st)
	}
	queries := r.sim.Stats().JobQueries
	again := r.poll(t, "j")
	if again.State != bridge.StateFailed || again.Native != "complete" || bridge.Fingerprint(&again) != bridge.Fingerprint(&final) ||
		!again.ObservedAt.Equal(final.ObservedAt) || string(again.Raw) != string(final.Raw) {
		t.Fatalf("after delete: %+v, want the terminal observation %+v", again, final)
	}
	if r.sim.Stats().JobQueries != queries {
		t.Fatal("a deleted job was queried again")
	}

	// Gone before we could delete it: remembered all the same.
	r.poll(t, "gone")
	r.clock.Advance(hmcsim.DefaultRetention)
	r.poller.OnTerminal(ctx, ref("gone"))
	if obs := r.poll(t, "gone"); obs.State != bridge.StateSucceeded {
		t.Fatalf("%+v", obs)
	}

	// 409 reason 40 (the HMC contradicts itself): warned, not remembered.
	r.poll(t, "odd")
	r.poller.OnTerminal(ctx, ref("odd"))
	if !strings.Contains(r.logs.String(), "has not ended although it reported an ended status") {
		t.Fatalf("no warning for 409: %s", r.logs.String())
	}
	if obs := r.poll(t, "odd"); obs.State != bridge.StateRunning {
		t.Fatalf("%+v", obs)
	}
	if st := r.sim.Stats(); st.Deletes != 1 || st.DeleteConflicts != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestTLSWithSimulatorCA(t *testing.T) {
	clk := pollkit.NewManualClock(t0)
	sim := hmcsim.NewServer(hmcsim.Options{TLS: true, Clock: clk, Users: map[string]string{user: password}, TickEvery: -1})
	defer sim.Close()
	sim.MustAddJob("j", hmcsim.Step{Status: "complete"})
	caFile := filepath.Join(t.TempDir(), "hmc-ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: sim.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	mk := func(ca string) *hmc.Poller {
		p, err := hmc.New(hmc.Options{Instance: "tls", BaseURL: sim.URL, UserID: user, Password: bridge.NewSecret(password),
			HTTP: pollkit.ClientOptions{CAFile: ca, MaxAttempts: 1}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { p.Close(context.Background()) })
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

func TestNewChecksOptions(t *testing.T) {
	good := hmc.Options{Instance: "prod", BaseURL: "https://hmc.example.com:6794", UserID: "u", Password: bridge.NewSecret("p")}
	p, err := hmc.New(good)
	if err != nil {
		t.Fatal(err)
	}
	if n := p.Notifications(); n != (hmc.Notifications{Mode: hmc.NotifyNone, Host: "hmc.example.com", STOMPPort: 61612}) {
		t.Fatalf("notifications %+v", n)
	}
	for name, tweak := range map[string]func(*hmc.Options){
		"url ending in /api": func(o *hmc.Options) { o.BaseURL = "https://hmc:6794/api/" },
		"no password":        func(o *hmc.Options) { o.Password = bridge.Secret{} },
		"no user":            func(o *hmc.Options) { o.UserID = "" },
		"bad mode":           func(o *hmc.Options) { o.Notifications = "jms" },
		"bad port":           func(o *hmc.Options) { o.STOMPPort = 70000 },
		"no instance":        func(o *hmc.Options) { o.Instance = "" },
		"no url":             func(o *hmc.Options) { o.BaseURL = "" },
	} {
		o := good
		tweak(&o)
		if _, err := hmc.New(o); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
