package huawei_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jobbridge/jobbridge/bridge"
	"github.com/jobbridge/jobbridge/pollers/huawei"
	"github.com/jobbridge/jobbridge/pollers/huawei/huaweisim"
	"github.com/jobbridge/jobbridge/pollers/pollkit"
	"github.com/jobbridge/jobbridge/pollers/pollkit/simkit/simtest"
)

const (
	user     = "jobbridge"
	password = "S3cr3t-Pa55w0rd"
)

var t0 = time.Date(2025, 3, 6, 16, 0, 0, 0, time.UTC)

type rig struct {
	sim    *huaweisim.Server
	clock  *huaweisim.ManualClock
	poller *huawei.Poller
	logs   *simtest.LogBuffer
}

// pollerOptions are the options of a poller against sim, with fast retries.
func pollerOptions(sim *huaweisim.Server, clk *huaweisim.ManualClock, logs *simtest.LogBuffer) huawei.Options {
	return huawei.Options{
		Instance:    "ap",
		BaseURL:     sim.URL,
		IAMURL:      sim.URL,
		Username:    user,
		Password:    bridge.NewSecret(password),
		Domain:      huaweisim.DefaultDomain,
		ProjectID:   sim.ProjectID(),
		HTTP:        simtest.QuickRetries(),
		ThrottleMin: 5 * time.Millisecond,
		ThrottleMax: 15 * time.Millisecond,
		Logger:      logs.Logger(),
		Now:         clk.Now,
	}
}

func newRig(t *testing.T, simOpts huaweisim.Options, tweak func(*huawei.Options)) *rig {
	t.Helper()
	clk := huaweisim.NewManualClock(t0)
	simOpts.Clock = clk
	if simOpts.Users == nil {
		simOpts.Users = map[string]string{user: password}
	}
	sim := huaweisim.NewServer(simOpts)
	t.Cleanup(sim.Close)
	logs := &simtest.LogBuffer{}
	opts := pollerOptions(sim, clk, logs)
	if tweak != nil {
		tweak(&opts)
	}
	p, err := huawei.New(opts)
	if err != nil {
		t.Fatalf("huawei.New: %v", err)
	}
	t.Cleanup(func() { p.Close(context.Background()) })
	t.Cleanup(func() {
		if strings.Contains(logs.String(), password) {
			t.Error("the password is in the log")
		}
	})
	return &rig{sim: sim, clock: clk, poller: p, logs: logs}
}

func ref(id string) bridge.JobRef {
	return bridge.JobRef{Vendor: huawei.Vendor, Instance: "ap", ID: id}
}

func (r *rig) poll(t *testing.T, id string) bridge.Observation {
	t.Helper()
	obs, err := r.poller.Poll(context.Background(), ref(id))
	if err != nil {
		t.Fatalf("Poll(%q): %v", id, err)
	}
	return obs
}

func hold(status string) []huaweisim.Step { return []huaweisim.Step{{Status: status}} }

func TestEveryMappingRowReachedByAScript(t *testing.T) {
	for _, v := range []huawei.APIVersion{huawei.APIv2, huawei.APIv3} {
		t.Run(string(v), func(t *testing.T) {
			r := newRig(t, huaweisim.Options{}, func(o *huawei.Options) { o.APIVersion = v })
			jobRows, taskRows := huawei.JobTable().Rows(), huawei.TaskTable().Rows()
			var jobScript, taskScript []huaweisim.Step
			for _, row := range jobRows {
				jobScript = append(jobScript, huaweisim.Step{Status: row.Native, For: time.Minute})
			}
			for _, row := range taskRows {
				taskScript = append(taskScript, huaweisim.Step{Status: row.Native, For: time.Minute})
			}
			r.sim.AddJob(huaweisim.Job{ID: "walker", Script: jobScript, Tasks: []huaweisim.Task{{ID: "T", Script: taskScript}}})
			for i := range taskRows {
				obs := r.poll(t, "walker")
				jr := jobRows[min(i, len(jobRows)-1)]
				if obs.Native != jr.Native || obs.State != jr.State || obs.SubState != jr.SubState {
					t.Errorf("step %d: job %q → %s/%q, want %+v", i, obs.Native, obs.State, obs.SubState, jr)
				}
				tk := obs.Tasks[0]
				tr := taskRows[i]
				if tk.Native != tr.Native || tk.State != tr.State || tk.SubState != tr.SubState || tk.Job.Task != "T" {
					t.Errorf("step %d: task %q → %s/%q, want %+v", i, tk.Native, tk.State, tk.SubState, tr)
				}
				r.clock.Advance(time.Minute)
			}
			var jobs, tasks int
			for _, c := range r.sim.History() {
				if c.TaskID == "" {
					jobs++
				} else {
					tasks++
				}
			}
			if jobs != len(jobRows) || tasks != len(taskRows) {
				t.Errorf("history: %d job and %d task changes", jobs, tasks)
			}
		})
	}
}

func TestObservationFields(t *testing.T) {
	r := newRig(t, huaweisim.Options{}, nil)
	r.sim.AddJob(huaweisim.Job{ID: "j", Script: hold("RUNNING"), Tasks: []huaweisim.Task{
		{ID: "t1", Script: hold("SUCCEEDED")},
		{ID: "t2", Script: hold("RUNNING")},
	}})
	r.clock.Advance(time.Minute)
	obs := r.poll(t, "j")
	if obs.Job != ref("j") || obs.State != bridge.StateRunning || obs.Via != bridge.DetectedByPoll || !obs.ObservedAt.Equal(t0.Add(time.Minute)) {
		t.Fatalf("%+v", obs)
	}
	if p := obs.Progress; p == nil || *p.StepsDone != 1 || *p.StepsTotal != 2 {
		t.Fatalf("progress %+v", obs.Progress)
	}
	if !bytes.Contains(obs.Raw, []byte(`"EXECUTION_STATUS":"RUNNING"`)) {
		t.Errorf("raw %s", obs.Raw)
	}
	t2 := obs.Tasks[1]
	if t2.Job != (bridge.JobRef{Vendor: huawei.Vendor, Instance: "ap", ID: "j", Task: "t2"}) || !bytes.Contains(t2.Raw, []byte(`"TASK_ID":"t2"`)) {
		t.Errorf("task %+v raw %s", t2.Job, t2.Raw)
	}
	if hc := t2.Times["LAST_HEALTH_CHECK"]; !hc.Normalized.Equal(t0.Add(time.Minute)) {
		t.Errorf("health check %+v", hc)
	}
	if ct := t2.Times["CREATED_AT"]; !ct.Normalized.Equal(t0) {
		t.Errorf("created %+v", ct)
	}
	// A heartbeat moves LAST_HEALTH_CHECK but no state: same fingerprint.
	r.clock.Advance(time.Minute)
	again := r.poll(t, "j")
	if bridge.Fingerprint(&again.Tasks[1]) != bridge.Fingerprint(&t2) || bridge.Fingerprint(&again) != bridge.Fingerprint(&obs) {
		t.Error("a heartbeat changed a fingerprint")
	}
}

func TestEpochTimesAndOtherEnvelopes(t *testing.T) {
	for _, env := range []huaweisim.Envelope{huaweisim.EnvelopeFlat, huaweisim.EnvelopeNested, huaweisim.EnvelopeCamel} {
		r := newRig(t, huaweisim.Options{EpochTimes: true, Envelope: env}, nil)
		r.sim.AddJob(huaweisim.Job{ID: "j", Tasks: []huaweisim.Task{{ID: "t", Script: hold("SUCCEEDED")}}})
		if ct := r.poll(t, "j").Tasks[0].Times["CREATED_AT"]; ct.Raw != fmt.Sprint(t0.UnixMilli()) || !ct.Normalized.Equal(t0) {
			t.Errorf("%s: CREATED_AT %+v", env, ct)
		}
		_, err := r.poller.Poll(context.Background(), ref("nope"))
		if !errors.Is(err, bridge.ErrNotFound) || !strings.Contains(err.Error(), `"nope"`) {
			t.Errorf("%s: err = %v, want ErrNotFound naming the job", env, err)
		}
	}
}

func TestPagingFetchesEveryPage(t *testing.T) {
	r := newRig(t, huaweisim.Options{}, func(o *huawei.Options) { o.TaskPageSize = 4 })
	var tasks []huaweisim.Task
	for i := range 10 {
		tasks = append(tasks, huaweisim.Task{ID: fmt.Sprintf("t%02d", i), Script: hold("SUCCEEDED")})
	}
	r.sim.AddJob(huaweisim.Job{ID: "j", Script: hold("SUCCEEDED"), Tasks: tasks})
	obs := r.poll(t, "j")
	if len(obs.Tasks) != 10 || obs.Tasks[9].Job.Task != "t09" || *obs.Progress.StepsTotal != 10 {
		t.Fatalf("%d tasks", len(obs.Tasks))
	}
	var got []string
	for _, q := range r.sim.Queries() {
		got = append(got, fmt.Sprintf("%s %d+%d", q.Version, q.Offset, q.Limit))
	}
	if strings.Join(got, ", ") != "v2 0+4, v2 4+4, v2 8+4" {
		t.Errorf("queries %v", got)
	}
	// An exact multiple of the page size needs no empty extra page.
	r.sim.AddJob(huaweisim.Job{ID: "k", Tasks: tasks[:8]})
	r.poll(t, "k")
	if n := len(r.sim.Queries()); n != 5 {
		t.Errorf("%d queries after an 8-task job in pages of 4, want 5", n)
	}
}

func TestPagingIsBounded(t *testing.T) {
	r := newRig(t, huaweisim.Options{}, func(o *huawei.Options) { o.TaskPageSize = 2; o.MaxTaskPages = 3 })
	var tasks []huaweisim.Task
	for i := range 9 {
		tasks = append(tasks, huaweisim.Task{ID: fmt.Sprintf("t%d", i), Script: hold("RUNNING")})
	}
	r.sim.AddJob(huaweisim.Job{ID: "j", Script: hold("RUNNING"), Tasks: tasks})
	obs := r.poll(t, "j")
	if len(obs.Tasks) != 6 || *obs.Progress.StepsTotal != 9 || len(r.sim.Queries()) != 3 {
		t.Fatalf("%d tasks, total %d, %d queries", len(obs.Tasks), *obs.Progress.StepsTotal, len(r.sim.Queries()))
	}
	if !strings.Contains(r.logs.String(), "maxTaskPages") {
		t.Error("the cap is not logged")
	}
}

func TestTokenLifecycle(t *testing.T) {
	r := newRig(t, huaweisim.Options{TokenTTL: 3 * time.Hour}, nil)
	r.sim.AddJob(huaweisim.Job{ID: "j", Script: hold("RUNNING")})
	r.poll(t, "j")
	r.poll(t, "j")
	if st := r.sim.Stats(); st.Logins != 1 {
		t.Fatalf("%d logins for two polls", st.Logins)
	}
	// Renewed after two thirds of its lifetime, before it expires: no 401.
	r.clock.Advance(2*time.Hour + time.Minute)
	r.poll(t, "j")
	if st := r.sim.Stats(); st.Logins != 2 || st.Unauthorized != 0 {
		t.Fatalf("after 2h of 3h: %+v", st)
	}
	// Revoked (a password change): one 401, one renewal, and the poll succeeds.
	r.sim.ExpireTokens()
	if obs := r.poll(t, "j"); obs.State != bridge.StateRunning {
		t.Fatal(obs)
	}
	if st := r.sim.Stats(); st.Logins != 3 || st.Unauthorized != 1 {
		t.Fatalf("after revocation: %+v", st)
	}
}

func TestConcurrentPollsAfterRevocationLogInOnce(t *testing.T) {
	r := newRig(t, huaweisim.Options{}, func(o *huawei.Options) { o.HTTP.MaxConcurrent = 20 })
	r.sim.AddJob(huaweisim.Job{ID: "j", Script: hold("RUNNING")})
	r.poll(t, "j")
	r.sim.ExpireTokens()
	simtest.PollConcurrently(t, r.poller, ref("j"), 50)
	if st := r.sim.Stats(); st.Logins != 2 {
		t.Fatalf("%d logins", st.Logins)
	}
}

func TestWrongPasswordIsErrAuthWithoutHammering(t *testing.T) {
	r := newRig(t, huaweisim.Options{}, func(o *huawei.Options) { o.Password = bridge.NewSecret("wrong-" + password) })
	r.sim.AddJob(huaweisim.Job{ID: "j"})
	for range 5 {
		_, err := r.poller.Poll(context.Background(), ref("j"))
		if !errors.Is(err, bridge.ErrAuth) || !strings.Contains(err.Error(), "check auth.username, auth.password and auth.domain") ||
			!strings.Contains(err.Error(), "The username or password is wrong.") {
			t.Fatalf("err = %v", err)
		}
		if strings.Contains(err.Error(), password) {
			t.Fatal("the error repeats the password")
		}
	}
	if st := r.sim.Stats(); st.FailedLogins != 1 {
		t.Fatalf("%d failed logins for 5 polls", st.FailedLogins)
	}
}

func TestProjectScopeByName(t *testing.T) {
	r := newRig(t, huaweisim.Options{}, func(o *huawei.Options) { o.ProjectID = ""; o.Region = huaweisim.DefaultProjectName })
	r.sim.AddJob(huaweisim.Job{ID: "j", Script: hold("RUNNING")})
	if obs := r.poll(t, "j"); obs.State != bridge.StateRunning {
		t.Fatal(obs)
	}
	// A project name IAM does not know is a configuration error.
	r = newRig(t, huaweisim.Options{}, func(o *huawei.Options) { o.ProjectID = ""; o.ProjectName = "eu-west-0" })
	_, err := r.poller.Poll(context.Background(), ref("j"))
	if !errors.Is(err, bridge.ErrAuth) || !strings.Contains(err.Error(), "project name eu-west-0") {
		t.Fatalf("err = %v", err)
	}
	// projectID and a project name that disagree.
	r = newRig(t, huaweisim.Options{}, func(o *huawei.Options) { o.ProjectName = "eu-west-0" })
	_, err = r.poller.Poll(context.Background(), ref("j"))
	if !errors.Is(err, bridge.ErrAuth) || !strings.Contains(err.Error(), "make them agree") {
		t.Fatalf("err = %v", err)
	}
}

func TestThrottlingIsRetriedAfterAJitteredWait(t *testing.T) {
	r := newRig(t, huaweisim.Options{}, func(o *huawei.Options) { o.ThrottleMin, o.ThrottleMax = 40*time.Millisecond, 60*time.Millisecond })
	r.sim.AddJob(huaweisim.Job{ID: "j", Script: hold("RUNNING")})
	r.poll(t, "j")
	r.sim.Throttle(3)
	start := time.Now()
	if obs := r.poll(t, "j"); obs.State != bridge.StateRunning {
		t.Fatal(obs)
	}
	if d := time.Since(start); d < 120*time.Millisecond {
		t.Errorf("three throttled answers retried within %v; each retry must wait ThrottleMin", d)
	}
	if st := r.sim.Stats(); st.Throttled != 3 || st.JobRequests != 2 {
		t.Fatalf("stats %+v", st)
	}
	// Longer than the attempts: a transient error, never a verdict.
	r.sim.Throttle(4) // = MaxAttempts
	_, err := r.poller.Poll(context.Background(), ref("j"))
	var se *pollkit.StatusError
	if !errors.As(err, &se) || se.StatusCode != 429 || errors.Is(err, bridge.ErrMalformed) || errors.Is(err, bridge.ErrNotFound) || errors.Is(err, bridge.ErrAuth) ||
		!strings.Contains(err.Error(), "APIG.0308") {
		t.Fatalf("err = %v; want a transient 429 naming APIG.0308", err)
	}
	// The login is throttled too, and retried the same way.
	r.sim.ExpireTokens()
	r.sim.InjectFault(huaweisim.Fault{Kind: huaweisim.FaultThrottle, Count: 2, Endpoint: huaweisim.EndpointIAM})
	if obs := r.poll(t, "j"); obs.State != bridge.StateRunning {
		t.Fatal(obs)
	}
	if st := r.sim.Stats(); st.Throttled != 9 || st.Logins != 2 {
		t.Fatalf("stats %+v", st)
	}
}

func TestServerErrorsAndSlowRepliesAreRetried(t *testing.T) {
	r := newRig(t, huaweisim.Options{}, func(o *huawei.Options) { o.HTTP.Timeout = 100 * time.Millisecond })
	r.sim.AddJob(huaweisim.Job{ID: "j", Script: hold("SUCCEEDED")})
	r.sim.InjectFault(huaweisim.Fault{Kind: huaweisim.FaultStatus, Status: 503, Count: 2, Endpoint: huaweisim.EndpointIAM})
	r.sim.InjectFault(huaweisim.Fault{Kind: huaweisim.FaultStatus, Status: 500, Count: 2, Endpoint: huaweisim.EndpointJob})
	r.poll(t, "j")
	r.sim.InjectFault(huaweisim.Fault{Kind: huaweisim.FaultDelay, Delay: time.Second, Endpoint: huaweisim.EndpointJob})
	r.poll(t, "j")
	if st := r.sim.Stats(); st.Faults != 5 || st.Logins != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestMalformedAnswersAreErrMalformed(t *testing.T) {
	r := newRig(t, huaweisim.Options{}, nil)
	r.sim.AddJob(huaweisim.Job{ID: "j", Script: hold("SUCCEEDED")})
	r.poll(t, "j")
	for _, kind := range []huaweisim.FaultKind{huaweisim.FaultMalformed, huaweisim.FaultHTML} {
		r.sim.InjectFault(huaweisim.Fault{Kind: kind, Endpoint: huaweisim.EndpointJob})
		obs, err := r.poller.Poll(context.Background(), ref("j"))
		if !errors.Is(err, bridge.ErrMalformed) || obs.State != "" {
			t.Errorf("%s: %+v %v", kind, obs, err)
		}
	}
}

func TestMisconfiguredEndpoints(t *testing.T) {
	// A wrong URL path is the gateway's 404, not a vanished job.
	r := newRig(t, huaweisim.Options{}, func(o *huawei.Options) { o.BaseURL = o.BaseURL + "/servicestage" })
	r.sim.AddJob(huaweisim.Job{ID: "j"})
	_, err := r.poller.Poll(context.Background(), ref("j"))
	if !errors.Is(err, bridge.ErrMalformed) || errors.Is(err, bridge.ErrNotFound) || !strings.Contains(err.Error(), "APIG.0101") {
		t.Fatalf("wrong path: %v", err)
	}
	// A token of another project: 403, a permission problem.
	r = newRig(t, huaweisim.Options{}, nil)
	r.sim.AddJob(huaweisim.Job{ID: "j"})
	tweaked := pollerOptions(r.sim, r.clock, r.logs)
	tweaked.ProjectID = "ffffffffffffffffffffffffffffffff"
	p, _ := huawei.New(tweaked)
	if _, err := p.Poll(context.Background(), ref("j")); !errors.Is(err, bridge.ErrAuth) {
		t.Fatalf("unknown project id: %v", err)
	}
	// An IAM URL given with /v3 still works.
	r = newRig(t, huaweisim.Options{}, func(o *huawei.Options) { o.IAMURL += "/v3/" })
	r.sim.AddJob(huaweisim.Job{ID: "j", Script: hold("RUNNING")})
	r.poll(t, "j")
}

func TestHostileIDsRoundTrip(t *testing.T) {
	r := newRig(t, huaweisim.Options{}, nil)
	ids := []string{"a/b", "../x", "q?x=1", "frag#1", "with space", "100%", "%2F", "日本語/ジョブ", "semi;colon", "..", "."}
	for _, id := range ids {
		r.sim.AddJob(huaweisim.Job{ID: id, Script: hold("SUCCEEDED")})
	}
	for _, id := range ids {
		obs := r.poll(t, id)
		if obs.Job.ID != id || !bytes.Contains(obs.Raw, []byte(`"JOB_ID":`)) || obs.State != bridge.StateSucceeded {
			t.Errorf("%q: %+v", id, obs)
		}
	}
	if _, err := r.poller.Poll(context.Background(), ref("")); err == nil || errors.Is(err, bridge.ErrNotFound) {
		t.Fatalf("empty id: %v", err)
	}
}

func TestTLSWithSimulatorCA(t *testing.T) {
	clk := huaweisim.NewManualClock(t0)
	sim := huaweisim.NewServer(huaweisim.Options{TLS: true, Clock: clk, Users: map[string]string{user: password}})
	defer sim.Close()
	sim.AddJob(huaweisim.Job{ID: "j", Script: hold("SUCCEEDED")})
	caFile := simtest.WriteCA(t, sim.Certificate())
	mk := func(ca string) *huawei.Poller {
		o := pollerOptions(sim, clk, &simtest.LogBuffer{})
		o.HTTP = pollkit.ClientOptions{CAFile: ca, MaxAttempts: 1}
		p, err := huawei.New(o)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	if obs, err := mk(caFile).Poll(context.Background(), ref("j")); err != nil || obs.State != bridge.StateSucceeded {
		t.Fatalf("with the CA: %+v %v", obs, err)
	}
	if _, err := mk("").Poll(context.Background(), ref("j")); err == nil || !strings.Contains(err.Error(), "CAFile") {
		t.Fatalf("without the CA: %v", err)
	}
}

func TestNewRejectsBadOptions(t *testing.T) {
	good := huawei.Options{Instance: "ap", BaseURL: "https://servicestage.example.com", Region: "ap-southeast-1",
		Username: "u", Password: bridge.NewSecret("p"), Domain: "d"}
	if _, err := huawei.New(good); err != nil {
		t.Fatalf("good options: %v", err)
	}
	for name, mutate := range map[string]func(*huawei.Options){
		"no instance":      func(o *huawei.Options) { o.Instance = "" },
		"no domain":        func(o *huawei.Options) { o.Domain = "" },
		"no password":      func(o *huawei.Options) { o.Password = bridge.Secret{} },
		"no iam, region":   func(o *huawei.Options) { o.Region = "" },
		"no project":       func(o *huawei.Options) { o.Region = ""; o.IAMURL = "https://iam.example.com" },
		"bad project id":   func(o *huawei.Options) { o.ProjectID = "a/b" },
		"bad version":      func(o *huawei.Options) { o.APIVersion = "v1" },
		"page too large":   func(o *huawei.Options) { o.TaskPageSize = 5000 },
		"negative pages":   func(o *huawei.Options) { o.MaxTaskPages = -1 },
		"throttle range":   func(o *huawei.Options) { o.ThrottleMin, o.ThrottleMax = 2*time.Second, time.Second },
		"bad url":          func(o *huawei.Options) { o.BaseURL = "servicestage" },
		"bad iam url":      func(o *huawei.Options) { o.IAMURL = "ftp://iam" },
		"url with secrets": func(o *huawei.Options) { o.BaseURL = "https://u:p@host" },
	} {
		o := good
		mutate(&o)
		if _, err := huawei.New(o); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
