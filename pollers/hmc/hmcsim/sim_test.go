package hmcsim

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jobbridge/jobbridge/pollers/pollkit"
)

var t0 = time.Date(2025, 3, 6, 16, 0, 0, 0, time.UTC)

const (
	user = "jobbridge"
	pass = "pw-1"
)

func newSim(t *testing.T, opts Options) (*Server, *pollkit.ManualClock) {
	t.Helper()
	clk := pollkit.NewManualClock(t0)
	if opts.Clock == nil {
		opts.Clock = clk
	}
	if opts.Users == nil {
		opts.Users = map[string]string{user: pass}
	}
	if opts.TickEvery == 0 {
		opts.TickEvery = -1 // tests call Sync
	}
	s := NewServer(opts)
	t.Cleanup(s.Close)
	return s, clk
}

type reply struct {
	code   int
	header http.Header
	body   string
	obj    map[string]any
}

func call(t *testing.T, s *Server, method, path, session string, body any) reply {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, s.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if session != "" {
		req.Header.Set(SessionHeader, session)
	}
	resp, err := s.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	r := reply{code: resp.StatusCode, header: resp.Header, body: string(b)}
	_ = json.Unmarshal(b, &r.obj)
	return r
}

func logon(t *testing.T, s *Server) map[string]any {
	t.Helper()
	r := call(t, s, "POST", "/api/sessions", "", map[string]string{"userid": user, "password": pass})
	if r.code != 200 {
		t.Fatalf("logon: %d %s", r.code, r.body)
	}
	return r.obj
}

func wantError(t *testing.T, r reply, code, reason int) {
	t.Helper()
	if r.code != code || r.obj["http-status"] != float64(code) || r.obj["reason"] != float64(reason) {
		t.Fatalf("got %d %s; want HTTP %d reason %d in the standard error body", r.code, r.body, code, reason)
	}
	if r.obj["message"] == "" || r.obj["request-method"] == nil {
		t.Fatalf("error body lacks message or request-method: %s", r.body)
	}
}

func TestLogonGivesFreshTopicsPerSession(t *testing.T) {
	s, _ := newSim(t, Options{})
	a, b := logon(t, s), logon(t, s)
	for _, k := range []string{"api-session", "session-credential", "notification-topic", "job-notification-topic"} {
		if a[k] == "" || a[k] == nil || a[k] == b[k] {
			t.Errorf("%s: %v then %v; want a non-empty value new per session", k, a[k], b[k])
		}
	}
	if a["api-major-version"] != float64(4) || a["api-minor-version"] != float64(10) {
		t.Errorf("version %v.%v", a["api-major-version"], a["api-minor-version"])
	}
	if !regexp.MustCompile(`^[a-z0-9]{50}$`).MatchString(a["api-session"].(string)) {
		t.Errorf("api-session %q is not shaped like the vendor's", a["api-session"])
	}
	if a["job-notification-topic"] != a["notification-topic"].(string)+"job" {
		t.Errorf("job topic %v, object topic %v", a["job-notification-topic"], a["notification-topic"])
	}
	r := call(t, s, "GET", "/api/sessions/operations/get-notification-topics", a["api-session"].(string), nil)
	if r.code != 200 || !strings.Contains(r.body, `"topic-type":"job-notification"`) || !strings.Contains(r.body, a["job-notification-topic"].(string)) {
		t.Fatalf("topics: %d %s", r.code, r.body)
	}
	if st := s.Stats(); st.Logons != 2 {
		t.Fatalf("stats %+v", st)
	}
}

func TestLogonRefusals(t *testing.T) {
	s, _ := newSim(t, Options{})
	wantError(t, call(t, s, "POST", "/api/sessions", "", map[string]string{"userid": user, "password": "wrong"}), 403, 0)
	wantError(t, call(t, s, "POST", "/api/sessions", "", map[string]string{"userid": "nobody", "password": pass}), 403, 0)
	wantError(t, call(t, s, "POST", "/api/sessions", "", map[string]string{"userid": user}), 400, 0)
	if st := s.Stats(); st.FailedLogons != 2 || st.Logons != 0 {
		t.Fatalf("stats %+v", st)
	}
}

func TestSessionHeaderRules(t *testing.T) {
	s, clk := newSim(t, Options{SessionIdleTimeout: time.Minute, SessionLifetime: time.Hour})
	s.MustAddJob("j", Step{Status: StatusRunning})
	wantError(t, call(t, s, "GET", "/api/jobs/j", "", nil), 403, 4)
	wantError(t, call(t, s, "GET", "/api/jobs/j", "made-up", nil), 403, 5)

	// Idle timeout: each use refreshes it.
	id := logon(t, s)["api-session"].(string)
	for range 3 {
		clk.Advance(50 * time.Second)
		if r := call(t, s, "GET", "/api/jobs/j", id, nil); r.code != 200 {
			t.Fatalf("within the idle timeout: %d %s", r.code, r.body)
		}
	}
	clk.Advance(61 * time.Second)
	wantError(t, call(t, s, "GET", "/api/jobs/j", id, nil), 403, 5)
	info, _ := s.Session(id)
	if info.Open() || info.CloseReason != ClosedExpired || !info.ClosedAt.Equal(t0.Add(150*time.Second+time.Minute)) {
		t.Fatalf("idle-expired session %+v", info)
	}

	// Lifetime, however busy the session is.
	id = logon(t, s)["api-session"].(string)
	for range 70 {
		clk.Advance(55 * time.Second)
		if r := call(t, s, "GET", "/api/jobs/j", id, nil); r.code != 200 {
			if r.obj["reason"] != float64(5) {
				t.Fatalf("%d %s", r.code, r.body)
			}
			info, _ := s.Session(id)
			if info.OpenedAt.Add(time.Hour).After(clk.Now()) {
				t.Fatalf("session refused before its lifetime: %+v at %v", info, clk.Now())
			}
			return
		}
	}
	t.Fatal("the session outlived its lifetime")
}

func TestLogoffEndsTheSession(t *testing.T) {
	s, _ := newSim(t, Options{})
	id := logon(t, s)["api-session"].(string)
	if r := call(t, s, "DELETE", "/api/sessions/this-session", id, nil); r.code != 204 || r.body != "" {
		t.Fatalf("logoff: %d %q", r.code, r.body)
	}
	wantError(t, call(t, s, "DELETE", "/api/sessions/this-session", id, nil), 403, 5)
	if info, _ := s.Session(id); info.CloseReason != ClosedByLogoff {
		t.Fatalf("%+v", info)
	}
}

func TestJobScriptRetentionAndHistory(t *testing.T) {
	s, clk := newSim(t, Options{})
	code, reason := 500, 263
	s.MustAddJob("ok", Step{Status: StatusRunning, For: time.Minute}, Step{Status: StatusComplete, Results: map[string]any{"message": "done"}})
	s.MustAddJob("bad", Step{Status: StatusRunning, For: 2 * time.Minute}, Step{Status: StatusComplete, StatusCode: &code, ReasonCode: &reason})
	s.MustAddJob("cxl", Step{Status: StatusRunning, For: time.Minute}, Step{Status: StatusCancelPending, For: time.Minute}, Step{Status: StatusCanceled, StatusCode: &code, ReasonCode: &reason})
	id := logon(t, s)["api-session"].(string)
	get := func(job string) reply { return call(t, s, "GET", "/api/jobs/"+job, id, nil) }

	if r := get("ok"); r.body != `{"status":"running"}`+"\n" || r.header.Get("Content-Type") != "application/json;charset=UTF-8" {
		t.Fatalf("running job: %q %v", r.body, r.header)
	}
	clk.Advance(90 * time.Second)
	if r := get("ok"); r.body != `{"job-results":{"message":"done"},"job-status-code":200,"status":"complete"}`+"\n" {
		t.Fatalf("complete job: %s (a 2xx job has no reason code)", r.body)
	}
	if r := get("cxl"); r.body != `{"status":"cancel-pending"}`+"\n" {
		t.Fatalf("cancel-pending job: %s", r.body)
	}
	clk.Advance(time.Minute)
	if r := get("bad"); r.body != `{"job-reason-code":263,"job-status-code":500,"status":"complete"}`+"\n" {
		t.Fatalf("failed job: %s", r.body)
	}
	if r := get("cxl"); r.obj["status"] != "canceled" || r.obj["job-status-code"] != float64(500) {
		t.Fatalf("canceled job: %s", r.body)
	}

	// Retention: the status stays at least Retention after the job ended.
	clk.Advance(DefaultRetention - 90*time.Second) // now t0+4h1m: "ok" just expired
	if r := get("bad"); r.code != 200 {
		t.Fatalf("before its retention ended: %d", r.code)
	}
	clk.Advance(time.Hour)
	for _, j := range []string{"ok", "bad", "cxl", "never"} {
		wantError(t, get(j), 404, 1)
	}

	want := []Change{
		{JobID: "ok", Status: StatusRunning, At: t0},
		{JobID: "bad", Status: StatusRunning, At: t0},
		{JobID: "cxl", Status: StatusRunning, At: t0},
		{JobID: "ok", Status: StatusComplete, At: t0.Add(time.Minute)},
		{JobID: "cxl", Status: StatusCancelPending, At: t0.Add(time.Minute)},
		{JobID: "bad", Status: StatusComplete, At: t0.Add(2 * time.Minute)},
		{JobID: "cxl", Status: StatusCanceled, At: t0.Add(2 * time.Minute)},
		{JobID: "ok", Removed: RemovalExpired, At: t0.Add(time.Minute + DefaultRetention)},
		{JobID: "bad", Removed: RemovalExpired, At: t0.Add(2*time.Minute + DefaultRetention)},
		{JobID: "cxl", Removed: RemovalExpired, At: t0.Add(2*time.Minute + DefaultRetention)},
	}
	if got := s.History(); !slices.Equal(got, want) {
		t.Fatalf("history:\n got %+v\nwant %+v", got, want)
	}
}

func TestJobsBelongToTheirUser(t *testing.T) {
	s, _ := newSim(t, Options{Users: map[string]string{user: pass, "other": "x"}})
	if _, err := s.AddJob(Job{ID: "anon", Script: []Step{{Status: StatusRunning}}}); err == nil {
		t.Fatal("a job without a user on a two-user server was accepted")
	}
	if _, err := s.AddJob(Job{ID: "theirs", User: "other", Script: []Step{{Status: StatusRunning}}}); err != nil {
		t.Fatal(err)
	}
	id := logon(t, s)["api-session"].(string)
	wantError(t, call(t, s, "GET", "/api/jobs/theirs", id, nil), 404, 1)
	wantError(t, call(t, s, "DELETE", "/api/jobs/theirs", id, nil), 404, 1)
	other, err := s.OpenSession("other", "x")
	if err != nil {
		t.Fatal(err)
	}
	if r := call(t, s, "GET", "/api/jobs/theirs", other.ID, nil); r.code != 200 {
		t.Fatalf("owner: %d %s", r.code, r.body)
	}
}

func TestDeleteCompletedJobStatus(t *testing.T) {
	s, clk := newSim(t, Options{})
	s.MustAddJob("j", Step{Status: StatusRunning, For: time.Minute}, Step{Status: StatusComplete})
	id := logon(t, s)["api-session"].(string)
	wantError(t, call(t, s, "DELETE", "/api/jobs/j", id, nil), 409, 40)
	clk.Advance(time.Minute)
	if r := call(t, s, "DELETE", "/api/jobs/j", id, nil); r.code != 204 {
		t.Fatalf("delete: %d %s", r.code, r.body)
	}
	wantError(t, call(t, s, "GET", "/api/jobs/j", id, nil), 404, 1)
	wantError(t, call(t, s, "DELETE", "/api/jobs/j", id, nil), 404, 1)
	clk.Advance(DefaultRetention) // a deleted job does not expire as well
	h := s.History()
	if len(h) != 3 || h[2] != (Change{JobID: "j", Removed: RemovalDeleted, At: t0.Add(time.Minute)}) {
		t.Fatalf("history %+v", h)
	}
	if st := s.Stats(); st.Deletes != 1 || st.DeleteConflicts != 1 || st.JobNotFound != 2 {
		t.Fatalf("stats %+v", st)
	}
}

func TestNoticesGoToTheOwningSession(t *testing.T) {
	s, clk := newSim(t, Options{DefaultScript: []Step{{Status: StatusRunning, For: time.Minute}, {Status: StatusComplete}}})
	var mu sync.Mutex
	var got []Notice
	cancel := s.Subscribe(func(n Notice) {
		mu.Lock()
		defer mu.Unlock()
		got = append(got, n)
	})
	defer cancel()
	lo := logon(t, s)
	id := lo["api-session"].(string)
	r := call(t, s, "POST", "/api/partitions/p1/operations/start", id, map[string]any{})
	uri, _ := r.obj["job-uri"].(string)
	if r.code != 202 || !strings.HasPrefix(uri, "/api/jobs/") {
		t.Fatalf("start: %d %s", r.code, r.body)
	}
	anon := s.MustAddJob("anon", Step{Status: StatusRunning, For: 2 * time.Minute}, Step{Status: StatusComplete})
	if r := call(t, s, "GET", uri, id, nil); r.obj["status"] != "running" {
		t.Fatalf("started job: %s", r.body)
	}
	clk.Advance(3 * time.Minute)
	s.ExpireSessions()
	s.Sync()
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 4 {
		t.Fatalf("notices %+v", got)
	}
	if got[0].Kind != NoticeSessionOpened || got[0].Session.ID != id {
		t.Errorf("first notice %+v", got[0])
	}
	jc := got[1]
	if jc.Kind != NoticeJobCompletion || jc.JobURI != uri || jc.Status != StatusComplete || jc.At != t0.Add(time.Minute) ||
		jc.Session.ID != id || jc.Session.JobNotificationTopic != lo["job-notification-topic"] || jc.Session.Credential != lo["session-credential"] {
		t.Errorf("job completion %+v", jc)
	}
	if got[2].Kind != NoticeJobCompletion || got[2].JobID != anon || got[2].Session.ID != "" {
		t.Errorf("a job no session started notifies no session: %+v", got[2])
	}
	if got[3].Kind != NoticeSessionClosed || got[3].Session.CloseReason != ClosedExpired || got[3].At != t0.Add(3*time.Minute) {
		t.Errorf("close notice %+v", got[3])
	}
	if info, ok := s.SessionForTopic(lo["job-notification-topic"].(string)); !ok || info.ID != id || info.Open() {
		t.Errorf("SessionForTopic: %+v %v", info, ok)
	}
	if s.CheckCredential(id, lo["session-credential"].(string)) {
		t.Error("an expired session's credential still checks out")
	}
}

func TestCheckCredential(t *testing.T) {
	s, _ := newSim(t, Options{})
	lo := logon(t, s)
	id, cred := lo["api-session"].(string), lo["session-credential"].(string)
	if !s.CheckCredential(id, cred) || s.CheckCredential(id, "x") || s.CheckCredential(id, "") || s.CheckCredential("x", cred) {
		t.Fatal("CheckCredential")
	}
}

func TestScheduledSessionExpiry(t *testing.T) {
	s, clk := newSim(t, Options{Faults: []Fault{{Kind: FaultExpireSessions, At: time.Minute}}})
	s.MustAddJob("j", Step{Status: StatusRunning})
	old := logon(t, s)["api-session"].(string)
	clk.Advance(time.Minute)
	wantError(t, call(t, s, "GET", "/api/jobs/j", old, nil), 403, 5)
	fresh := logon(t, s)["api-session"].(string)
	clk.Advance(time.Minute)
	if r := call(t, s, "GET", "/api/jobs/j", fresh, nil); r.code != 200 {
		t.Fatalf("a session opened after the fault: %d", r.code)
	}
}

func TestFaults(t *testing.T) {
	s, clk := newSim(t, Options{})
	s.MustAddJob("j", Step{Status: StatusRunning})
	id := logon(t, s)["api-session"].(string)
	must := func(err error) {
		if err != nil {
			t.Fatal(err)
		}
	}
	must(s.InjectFault(Fault{Kind: FaultStatus, Status: 503, Count: 2, Endpoint: EndpointQueryJob}))
	must(s.InjectFault(Fault{Kind: FaultMalformed, Endpoint: EndpointQueryJob, At: time.Minute}))
	must(s.InjectFault(Fault{Kind: FaultHTML, Endpoint: EndpointLogon}))
	wantError(t, call(t, s, "GET", "/api/jobs/j", id, nil), 503, 0)
	wantError(t, call(t, s, "GET", "/api/jobs/j", id, nil), 503, 0)
	if r := call(t, s, "GET", "/api/jobs/j", id, nil); r.code != 200 {
		t.Fatalf("after the burst: %d", r.code)
	}
	if r := call(t, s, "POST", "/api/sessions", "", map[string]string{"userid": user, "password": pass}); r.code != 200 || !strings.HasPrefix(r.body, "<!doctype html>") {
		t.Fatalf("html fault: %d %s", r.code, r.body)
	}
	clk.Advance(time.Minute)
	if r := call(t, s, "GET", "/api/jobs/j", id, nil); r.code != 200 || json.Valid([]byte(r.body)) {
		t.Fatalf("malformed fault: %d %s", r.code, r.body)
	}
	must(s.InjectFault(Fault{Kind: FaultDelay, Delay: 300 * time.Millisecond}))
	start := time.Now()
	if r := call(t, s, "GET", "/api/version", "", nil); r.code != 200 || r.obj["hmc-version"] != "2.16.0" {
		t.Fatalf("version: %d %s", r.code, r.body)
	}
	if time.Since(start) < 300*time.Millisecond {
		t.Fatal("the delay fault did not delay")
	}
	if st := s.Stats(); st.Faults != 5 {
		t.Fatalf("stats %+v", st)
	}
	for _, bad := range []Fault{{Kind: "nope"}, {Kind: FaultDelay}, {Kind: FaultStatus, Status: 42}, {Kind: FaultStatus, Endpoint: "jobs"}, {Kind: FaultHTML, Count: -1}} {
		if s.InjectFault(bad) == nil {
			t.Errorf("fault %+v accepted", bad)
		}
	}
}

func TestRoutingAndHostileIDs(t *testing.T) {
	s, _ := newSim(t, Options{})
	id := logon(t, s)["api-session"].(string)
	for _, jid := range []string{"a/b", "..", "100%", "with space", "ünï", "q?x=1"} {
		s.MustAddJob(jid, Step{Status: StatusComplete, Results: map[string]any{"id": jid}})
		r := call(t, s, "GET", JobURI(jid), id, nil)
		if r.code != 200 || r.obj["job-results"].(map[string]any)["id"] != jid {
			t.Errorf("%q: %d %s", jid, r.code, r.body)
		}
	}
	wantError(t, call(t, s, "GET", "/api/nothing", id, nil), 404, 0)
	wantError(t, call(t, s, "GET", "/api/jobs/", id, nil), 404, 0)
	r := call(t, s, "PUT", "/api/jobs/x", id, nil)
	wantError(t, r, 405, 0)
	if r.header.Get("Allow") != "GET, DELETE" {
		t.Errorf("Allow %q", r.header.Get("Allow"))
	}
	wantError(t, call(t, s, "GET", "/api/sessions", "", nil), 405, 0)
}

func TestScriptValidation(t *testing.T) {
	c200, c500, r1 := 200, 500, 1
	bad := [][]Step{
		{},
		{{Status: ""}},
		{{Status: StatusRunning}, {Status: StatusComplete}},
		{{Status: StatusComplete, For: time.Second}, {Status: StatusRunning}},
		{{Status: StatusRunning, StatusCode: &c200}},
		{{Status: StatusCanceled}},
		{{Status: StatusComplete, StatusCode: &c500}},
		{{Status: StatusComplete, NoStatusCode: true, StatusCode: &c200}},
	}
	for i, sc := range bad {
		if err := checkScript(sc); err == nil {
			t.Errorf("script %d accepted: %+v", i, sc)
		}
	}
	good := [][]Step{
		{{Status: StatusRunning}},
		{{Status: StatusComplete, NoStatusCode: true}},
		{{Status: "paused", For: time.Second}, {Status: StatusComplete, StatusCode: &c500, ReasonCode: &r1}},
		{{Status: StatusComplete, StatusCode: &c200, ReasonCode: new(int)}}, // the vendor's example
	}
	for i, sc := range good {
		if err := checkScript(sc); err != nil {
			t.Errorf("script %d refused: %v", i, err)
		}
	}
}

func TestTickerDeliversNotices(t *testing.T) {
	clk := pollkit.NewManualClock(t0)
	s := NewServer(Options{Clock: clk, Users: map[string]string{user: pass}, TickEvery: 10 * time.Millisecond})
	defer s.Close()
	got := make(chan Notice, 10)
	s.Subscribe(func(n Notice) { got <- n })
	s.MustAddJob("j", Step{Status: StatusRunning, For: time.Second}, Step{Status: StatusComplete})
	clk.Advance(time.Second)
	select {
	case n := <-got:
		if n.Kind != NoticeJobCompletion || n.JobID != "j" {
			t.Fatalf("%+v", n)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no notice from the ticker")
	}
}

func TestExampleScenario(t *testing.T) {
	f, err := os.Open("testdata/example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	opts, err := LoadScenario(f)
	if err != nil {
		t.Fatal(err)
	}
	if len(opts.Jobs) != 4 || len(opts.Faults) != 5 || opts.Retention != 4*time.Hour || opts.Users["operator"] == "" {
		t.Fatalf("%+v", opts)
	}
	clk := pollkit.NewManualClock(t0)
	opts.Clock, opts.TickEvery = clk, -1
	s := NewServer(opts)
	defer s.Close()
	r := call(t, s, "POST", "/api/sessions", "", map[string]string{"userid": "jobbridge", "password": "change-me"})
	id, _ := r.obj["api-session"].(string)
	clk.Advance(31 * time.Second)
	if info, ok := s.Session(id); !ok || info.Open() || !info.ClosedAt.Equal(t0.Add(25*time.Second)) {
		t.Fatalf("the scheduled session expiry at 25s: %+v", info)
	}
	// The 503 burst armed at 12s hits the first two job queries.
	for _, want := range []int{503, 503, 403} {
		if r := call(t, s, "GET", "/api/jobs/86e44546-107f-11e1-bde0-0010184c8334", id, nil); r.code != want {
			t.Fatalf("got %d, want %d: %s", r.code, want, r.body)
		}
	}

	for _, bad := range []string{"", "jobs: [{id: x, script: [{status: complete, for: 1s}, {status: running}]}]", "retention: 4", "faults: [{kind: expire_tokens}]", "usres: {}"} {
		if _, err := LoadScenario(strings.NewReader(bad)); err == nil {
			t.Errorf("scenario %q accepted", bad)
		}
	}
}

func TestServeStopsWithContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, "127.0.0.1:0", Options{}) }()
	time.Sleep(50 * time.Millisecond)
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return")
	}
}
