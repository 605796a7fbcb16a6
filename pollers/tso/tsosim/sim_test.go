package tsosim

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

var t0 = time.Date(2025, 3, 6, 16, 0, 0, 0, time.UTC)

func newSim(t *testing.T, opts Options) (*Server, *ManualClock) {
	t.Helper()
	clk := NewManualClock(t0)
	if opts.Clock == nil {
		opts.Clock = clk
	}
	if opts.Users == nil {
		opts.Users = map[string]string{"ops": "pw"}
	}
	s := NewServer(opts)
	t.Cleanup(s.Close)
	return s, clk
}

type reply struct {
	code   int
	header http.Header
	body   string
}

func call(t *testing.T, s *Server, method, path, token string, body any) reply {
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
	if token != "" {
		req.Header.Set("Authentication-Token", token)
	}
	resp, err := s.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return reply{resp.StatusCode, resp.Header, string(b)}
}

func login(t *testing.T, s *Server) string {
	t.Helper()
	r := call(t, s, "POST", "/rest/login", "", map[string]string{"username": "ops", "password": "pw"})
	if r.code != 200 || r.header.Get("Authentication-Token") == "" {
		t.Fatalf("login: %d %q", r.code, r.body)
	}
	return r.header.Get("Authentication-Token")
}

func TestLoginAsDocumented(t *testing.T) {
	s, _ := newSim(t, Options{})
	r := call(t, s, "POST", "/rest/login", "", map[string]string{"username": "ops", "password": "pw"})
	if r.code != 200 || strings.TrimSpace(r.body) != `{"login":"true"}` {
		t.Fatalf("login answered %d %q", r.code, r.body)
	}
	tok := r.header.Get("Authentication-Token")
	cookies := strings.Join(r.header.Values("Set-Cookie"), "\n")
	for _, want := range []string{"JSESSIONID=", "Path=/baocdp", "Authentication-Token=" + tok, "Secure", "HttpOnly"} {
		if !strings.Contains(cookies, want) {
			t.Errorf("cookies %q lack %q", cookies, want)
		}
	}
	if r := call(t, s, "POST", "/rest/login", "", map[string]string{"username": "ops", "password": "wrong"}); r.code != 401 {
		t.Errorf("wrong password: %d", r.code)
	}
	if r := call(t, s, "POST", "/rest/login", "", map[string]string{"username": "nobody", "password": ""}); r.code != 401 {
		t.Errorf("unknown user: %d", r.code)
	}
	if st := s.Stats(); st.Logins != 1 || st.FailedLogins != 2 {
		t.Errorf("stats %+v", st)
	}
}

func TestStatusPayloadShape(t *testing.T) {
	s, _ := newSim(t, Options{})
	s.AddJobSpec(Job{ID: "j1", ProcessName: ":AutoPilot:HTTP:Get", Script: []Step{{Status: "COMPLETED", Output: []Param{{Name: "status code", Value: "200"}, {Name: "raw", Value: "<x>1</x>"}, {Name: "amp", Value: "a<b&c"}}}}})
	tok := login(t, s)
	r := call(t, s, "GET", "/rest/job/j1/status", tok, nil)
	if r.code != 200 || !strings.HasPrefix(r.header.Get("Content-Type"), "application/json") {
		t.Fatalf("status: %d %s", r.code, r.header.Get("Content-Type"))
	}
	keys := regexp.MustCompile(`"(\w+)":`).FindAllStringSubmatch(r.body, -1)
	var order []string
	for _, k := range keys[:6] {
		order = append(order, k[1])
	}
	if got := strings.Join(order, ","); got != "processName,name,peerId,startTime,status,outputParameters" {
		t.Errorf("key order %s", got)
	}
	var body struct {
		ProcessName, Name, PeerID, StartTime, Status string
		OutputParameters                             []struct{ Name, Value string }
	}
	if err := json.Unmarshal([]byte(r.body), &body); err != nil {
		t.Fatal(err)
	}
	if body.ProcessName != ":AutoPilot:HTTP:Get" || body.Name != "Get" || body.Status != "COMPLETED" || !strings.HasPrefix(body.PeerID, "urn:jxta:uuid-") {
		t.Errorf("body %+v", body)
	}
	if body.StartTime != "Thu Mar 06 10:00:00 CST 2025" {
		t.Errorf("startTime %q, want Java Date.toString() in Chicago time", body.StartTime)
	}
	if strings.Contains(r.body, `\u003c`) {
		t.Errorf("values are HTML-escaped as a Java server would not: %s", r.body)
	}
	want := []string{"<result>200</result>", "<x>1</x>", "<result>a&lt;b&amp;c</result>"}
	for i, w := range want {
		if body.OutputParameters[i].Value != w {
			t.Errorf("output %d = %q, want %q", i, body.OutputParameters[i].Value, w)
		}
	}

	s2, _ := newSim(t, Options{CapitalizedProcessName: true, Zone: time.FixedZone("GMT+05:30", 19800)})
	s2.AddJobSpec(Job{ID: "j", Script: []Step{{Status: "READY"}}, StartUnset: true})
	r = call(t, s2, "GET", "/rest/job/j/status", login(t, s2), nil)
	if !strings.Contains(r.body, `"ProcessName":`) || !strings.Contains(r.body, `"startTime":"Thu Jan 01 05:29:59 GMT+05:30 1970"`) {
		t.Errorf("capitalized/unset-start body: %s", r.body)
	}
}

func TestAuthRequiredAndTokenLifecycle(t *testing.T) {
	s, clk := newSim(t, Options{TokenTTL: 5 * time.Minute})
	s.AddJob("j", []Step{{Status: "ASSIGNED"}})
	if r := call(t, s, "GET", "/rest/job/j/status", "", nil); r.code != 401 {
		t.Fatalf("no token: %d", r.code)
	}
	if r := call(t, s, "GET", "/rest/job/j/status", "forged", nil); r.code != 401 {
		t.Fatalf("forged token: %d", r.code)
	}
	tok := login(t, s)
	clk.Advance(4 * time.Minute)
	if r := call(t, s, "GET", "/rest/job/j/status", tok, nil); r.code != 200 {
		t.Fatalf("within TTL: %d", r.code)
	}
	clk.Advance(4 * time.Minute) // idle time restarts on use
	if r := call(t, s, "GET", "/rest/job/j/status", tok, nil); r.code != 200 {
		t.Fatalf("used 4m ago: %d", r.code)
	}
	clk.Advance(5*time.Minute + time.Second)
	if r := call(t, s, "GET", "/rest/job/j/status", tok, nil); r.code != 401 {
		t.Fatalf("idle past TTL: %d", r.code)
	}

	tok = login(t, s)
	if r := call(t, s, "POST", "/rest/logout", tok, nil); r.code != 200 || strings.TrimSpace(r.body) != `{"logout":"true"}` {
		t.Fatalf("logout: %d %q", r.code, r.body)
	}
	if r := call(t, s, "GET", "/rest/job/j/status", tok, nil); r.code != 401 {
		t.Fatalf("after logout: %d", r.code)
	}
	tok = login(t, s)
	s.ExpireTokens()
	if r := call(t, s, "GET", "/rest/job/j/status", tok, nil); r.code != 401 {
		t.Fatalf("after ExpireTokens: %d", r.code)
	}
	if st := s.Stats(); st.Unauthorized != 5 || st.Logouts != 1 || st.Logins != 3 {
		t.Fatalf("stats %+v", st)
	}
}

func TestRoutingAndErrors(t *testing.T) {
	s, _ := newSim(t, Options{Context: "baoap"})
	if !strings.HasSuffix(s.URL, "/baoap") {
		t.Fatalf("URL %s", s.URL)
	}
	tok := login(t, s)
	for _, c := range []struct {
		method, path string
		code         int
	}{
		{"GET", "/rest/job/nope/status", 404},
		{"POST", "/rest/job/nope/status", 405},
		{"GET", "/rest/login", 405},
		{"GET", "/rest/jobs", 404},
		{"GET", "/rest/job//status", 404},
		{"GET", "/rest/job/a/b/status", 404},
	} {
		if r := call(t, s, c.method, c.path, tok, nil); r.code != c.code {
			t.Errorf("%s %s = %d, want %d", c.method, c.path, r.code, c.code)
		}
	}
	r := call(t, s, "GET", "/rest/job/nope/status", tok, nil)
	if !strings.Contains(r.body, "job ID does not exist") {
		t.Errorf("404 body %q", r.body)
	}
	req, _ := http.NewRequest("GET", strings.TrimSuffix(s.URL, "/baoap")+"/baocdp/rest/login", nil)
	if resp, err := s.Client().Do(req); err != nil || resp.StatusCode != 404 {
		t.Errorf("other context answered %v %v", resp, err)
	}
}

func TestHostileIDsRoundTrip(t *testing.T) {
	s, _ := newSim(t, Options{})
	tok := login(t, s)
	for i, id := range []string{"a/b", "q?x", "f#1", "with space", "100%", "ünï", "..", "semi;colon"} {
		status := []string{"READY", "PENDING", "ASSIGNED", "IN_PROGRESS", "PAUSED", "COMPLETED", "FAILED", "ABORTED"}[i]
		s.AddJob(id, []Step{{Status: status}})
		r := call(t, s, "GET", "/rest/job/"+url.PathEscape(id)+"/status", tok, nil)
		if r.code != 200 || !strings.Contains(r.body, `"status":"`+status+`"`) {
			t.Errorf("%q: %d %s", id, r.code, r.body)
		}
	}
}

func TestHistoryFollowsTheClockNotThePolls(t *testing.T) {
	s, clk := newSim(t, Options{})
	s.AddJob("a", []Step{{Status: "READY", For: time.Minute}, {Status: "ASSIGNED", For: 2 * time.Minute}, {Status: "ASSIGNED", For: time.Minute}, {Status: "COMPLETED"}})
	clk.Advance(30 * time.Second)
	s.AddJob("b", []Step{{Status: "IN_PROGRESS", For: time.Minute}, {Status: "FAILED"}})
	clk.Advance(10 * time.Minute)

	want := []Change{
		{"a", "READY", t0},
		{"b", "IN_PROGRESS", t0.Add(30 * time.Second)},
		{"a", "ASSIGNED", t0.Add(time.Minute)},
		{"b", "FAILED", t0.Add(90 * time.Second)},
		{"a", "COMPLETED", t0.Add(4 * time.Minute)},
	}
	got := s.History()
	if len(got) != len(want) {
		t.Fatalf("History = %v, want %v", got, want)
	}
	for i := range want {
		if got[i].JobID != want[i].JobID || got[i].Status != want[i].Status || !got[i].At.Equal(want[i].At) {
			t.Errorf("change %d = %+v, want %+v", i, got[i], want[i])
		}
	}
	if st := s.Stats(); st.StatusRequests != 0 {
		t.Fatalf("history needed %d polls", st.StatusRequests)
	}
	if st, _ := s.Status("a"); st != "COMPLETED" {
		t.Fatalf("Status(a) = %q", st)
	}
}

func TestHistoryUpToNowOnly(t *testing.T) {
	s, clk := newSim(t, Options{})
	s.AddJob("a", []Step{{Status: "READY", For: time.Minute}, {Status: "COMPLETED"}})
	if h := s.History(); len(h) != 1 {
		t.Fatalf("future change reported: %v", h)
	}
	clk.Advance(time.Minute)
	if h := s.History(); len(h) != 2 || h[1].Status != "COMPLETED" {
		t.Fatalf("change at the boundary missing: %v", h)
	}
}

func TestRealClockScripts(t *testing.T) {
	s := NewServer(Options{})
	defer s.Close()
	s.AddJob("r", []Step{{Status: "READY", For: 20 * time.Millisecond}, {Status: "COMPLETED"}})
	time.Sleep(60 * time.Millisecond)
	h := s.History()
	if len(h) != 2 || h[1].At.Sub(h[0].At) != 20*time.Millisecond {
		t.Fatalf("real-clock history %v", h)
	}
}

func TestFaults(t *testing.T) {
	s, clk := newSim(t, Options{})
	s.AddJob("j", []Step{{Status: "ASSIGNED"}})
	tok := login(t, s)
	get := func() reply { return call(t, s, "GET", "/rest/job/j/status", tok, nil) }

	s.InjectFault(Fault{Kind: FaultStatus, Count: 2, Endpoint: EndpointStatus})
	if a, b, c := get(), get(), get(); a.code != 500 || b.code != 500 || c.code != 200 || !strings.Contains(a.body, "<html>") {
		t.Fatalf("500 burst: %d %d %d", a.code, b.code, c.code)
	}
	s.InjectFault(Fault{Kind: FaultStatus, Status: 503, Endpoint: EndpointLogin})
	if r := get(); r.code != 200 {
		t.Fatalf("a login fault hit a status call: %d", r.code)
	}
	if r := call(t, s, "POST", "/rest/login", "", map[string]string{"username": "ops", "password": "pw"}); r.code != 503 {
		t.Fatalf("login fault: %d", r.code)
	}
	s.InjectFault(Fault{Kind: FaultMalformed})
	if r := get(); r.code != 200 || json.Valid([]byte(r.body)) {
		t.Fatalf("malformed: %d %q", r.code, r.body)
	}
	s.InjectFault(Fault{Kind: FaultHTML})
	if r := get(); r.code != 200 || !strings.HasPrefix(r.body, "<!doctype html>") {
		t.Fatalf("html: %d %q", r.code, r.body)
	}
	s.InjectFault(Fault{Kind: FaultDelay, Delay: 100 * time.Millisecond})
	start := time.Now()
	if r := get(); r.code != 200 || time.Since(start) < 100*time.Millisecond {
		t.Fatalf("delay: %d after %v", r.code, time.Since(start))
	}

	// Scheduled by the clock: armed only once its time has come.
	s.InjectFault(Fault{Kind: FaultExpireTokens, At: time.Hour})
	if r := get(); r.code != 200 {
		t.Fatalf("expiry fired early: %d", r.code)
	}
	clk.Advance(2 * time.Hour)
	if r := get(); r.code != 401 {
		t.Fatalf("scheduled expiry did not fire: %d", r.code)
	}
	tok = login(t, s) // issued after the expiry: unaffected by it
	if r := get(); r.code != 200 {
		t.Fatalf("token issued after the expiry refused: %d", r.code)
	}
	if st := s.Stats(); st.Faults != 6 {
		t.Fatalf("Faults = %d, want 6", st.Faults)
	}
	for _, bad := range []Fault{{Kind: "boom"}, {Kind: FaultDelay}, {Kind: FaultStatus, Status: 42}, {Kind: FaultHTML, Endpoint: "jobs"}, {Kind: FaultHTML, Count: -1}} {
		if err := s.InjectFault(bad); err == nil {
			t.Errorf("fault %+v accepted", bad)
		}
	}
}

func TestDelayFaultEndsOnClose(t *testing.T) {
	s := NewServer(Options{})
	s.InjectFault(Fault{Kind: FaultDelay, Delay: time.Hour})
	done := make(chan struct{})
	go func() {
		defer close(done)
		resp, err := http.Get(s.URL + "/rest/login")
		if err == nil {
			resp.Body.Close()
		}
	}()
	time.Sleep(50 * time.Millisecond)
	s.Close()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close left a delayed request hanging")
	}
}

func TestExecute(t *testing.T) {
	s, clk := newSim(t, Options{AsyncResponse: `{"job":{"id":"{id}"}}`})
	tok := login(t, s)
	r := call(t, s, "POST", "/rest/process/"+url.PathEscape(":Mod:Folder:My Proc")+"/execute?mode=async", tok,
		map[string]any{"inputParameters": []map[string]string{{"name": "x", "value": "1"}}})
	var out struct{ Job struct{ ID string } }
	if r.code != 200 || json.Unmarshal([]byte(r.body), &out) != nil || out.Job.ID == "" {
		t.Fatalf("async execute: %d %q", r.code, r.body)
	}
	st := call(t, s, "GET", "/rest/job/"+out.Job.ID+"/status", tok, nil)
	if !strings.Contains(st.body, `"processName":":Mod:Folder:My Proc"`) || !strings.Contains(st.body, `"status":"READY"`) {
		t.Fatalf("new job: %s", st.body)
	}
	clk.Advance(time.Hour)
	if st, _ := s.Status(out.Job.ID); st != "COMPLETED" {
		t.Fatalf("default script ended in %q", st)
	}
	r = call(t, s, "POST", "/rest/process/%3AMod%3AP/execute", tok, nil)
	if r.code != 200 || !strings.Contains(r.body, `"name":"status code"`) || !strings.HasPrefix(r.body, "[") {
		t.Fatalf("sync execute: %d %q", r.code, r.body)
	}
	if r := call(t, s, "POST", "/rest/process/p/execute?mode=later", tok, nil); r.code != 400 {
		t.Fatalf("bad mode: %d", r.code)
	}

	plain, _ := newSim(t, Options{AsyncResponse: "{id}"})
	r = call(t, plain, "POST", "/rest/process/p/execute?mode=async", login(t, plain), nil)
	if r.code != 200 || !strings.HasPrefix(r.header.Get("Content-Type"), "text/plain") || len(r.body) != 32 {
		t.Fatalf("plain-id async: %q %q", r.header.Get("Content-Type"), r.body)
	}
	def, _ := newSim(t, Options{})
	r = call(t, def, "POST", "/rest/process/p/execute?mode=async", login(t, def), nil)
	if !regexp.MustCompile(`^\{"jobId":"[0-9a-f]{32}"\}$`).MatchString(r.body) {
		t.Fatalf("default async response %q", r.body)
	}
}

func TestScriptValidation(t *testing.T) {
	s, _ := newSim(t, Options{})
	for _, j := range []Job{
		{ID: ""},
		{ID: "x", Script: []Step{{Status: "READY"}, {Status: "COMPLETED"}}},
		{ID: "y", Script: []Step{{Status: ""}}},
	} {
		if err := s.AddJobSpec(j); err == nil {
			t.Errorf("job %+v accepted", j)
		}
	}
	s.AddJob("dup", nil)
	if err := s.AddJobSpec(Job{ID: "dup"}); err == nil {
		t.Error("duplicate id accepted")
	}
	defer func() {
		if recover() == nil {
			t.Error("AddJob with a bad script did not panic")
		}
	}()
	s.AddJob("bad", []Step{{Status: "READY"}, {Status: "COMPLETED"}})
}

func TestConcurrentUse(t *testing.T) {
	s, clk := newSim(t, Options{TokenTTL: time.Minute})
	tok := login(t, s)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for k := range 20 {
				id := string(rune('a'+i)) + string(rune('a'+k))
				s.AddJob(id, []Step{{Status: "READY", For: time.Second}, {Status: "COMPLETED"}})
				call(t, s, "GET", "/rest/job/"+id+"/status", tok, nil)
				clk.Advance(10 * time.Millisecond)
				s.History()
				s.Stats()
			}
		})
	}
	wg.Wait()
	clk.Advance(time.Second) // every job's READY second is over
	if n := len(s.History()); n != 8*20*2 {
		t.Fatalf("History has %d changes, want %d", n, 8*20*2)
	}
}

func TestLoadScenarioExample(t *testing.T) {
	f, err := os.Open("testdata/example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	opts, err := LoadScenario(f)
	if err != nil {
		t.Fatal(err)
	}
	if opts.Context != "baocdp" || opts.TokenTTL != 30*time.Minute || opts.Users["ops"] != "change-me" || len(opts.Jobs) != 3 || len(opts.Faults) != 5 {
		t.Fatalf("scenario options %+v", opts)
	}
	if opts.Zone == nil || opts.Zone.String() != "America/Chicago" {
		t.Fatalf("zone %v", opts.Zone)
	}
	clk := NewManualClock(t0)
	opts.Clock = clk
	s := NewServer(opts)
	defer s.Close()
	tok := func() string {
		r := call(t, s, "POST", "/rest/login", "", map[string]string{"username": "ops", "password": "change-me"})
		return r.header.Get("Authentication-Token")
	}()
	r := call(t, s, "GET", "/rest/job/"+url.PathEscape("ticket 42/rollback?")+"/status", tok, nil)
	if r.code != 200 || !strings.Contains(r.body, `"status":"ASSIGNED"`) {
		t.Fatalf("scenario job: %d %s", r.code, r.body)
	}
	clk.Advance(21 * time.Second) // the 503 burst is armed at 20s
	if r := call(t, s, "GET", "/rest/job/nightly-backup/status", tok, nil); r.code != 503 {
		t.Fatalf("scheduled 503: %d", r.code)
	}
	clk.Advance(time.Minute)
	if h := s.History(); len(h) < 8 {
		t.Fatalf("history %v", h)
	}
}

func TestLoadScenarioErrors(t *testing.T) {
	for name, doc := range map[string]string{
		"empty":          ``,
		"unknown key":    "jobs:\n  - id: a\n    scirpt: []\n",
		"bad duration":   "defaultScript:\n  - {status: READY, for: 5}\n  - {status: COMPLETED}\n",
		"bad zone":       "zone: Mars/Olympus\n",
		"bad fault":      "faults:\n  - {kind: explode}\n",
		"bad context":    "context: baoxx\n",
		"duplicate job":  "jobs:\n  - {id: a}\n  - {id: a}\n",
		"step w/o time":  "jobs:\n  - id: a\n    script: [{status: READY}, {status: COMPLETED}]\n",
		"negative ttl":   "tokenTTL: -1s\n",
		"not a document": "[1, 2",
	} {
		if _, err := LoadScenario(strings.NewReader(doc)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	opts, err := LoadScenario(strings.NewReader(`{"jobs":[{"id":"j","script":[{"status":"READY","for":"1s"},{"status":"COMPLETED"}]}],"faults":[{"kind":"html","at":"5s"}]}`))
	if err != nil || len(opts.Jobs) != 1 || opts.Jobs[0].Script[0].For != time.Second || opts.Faults[0].At != 5*time.Second {
		t.Fatalf("JSON scenario: %+v %v", opts, err)
	}
}

func TestServeStandalone(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, "127.0.0.1:0", Options{}) }()
	time.Sleep(50 * time.Millisecond)
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Serve: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return after cancel")
	}
	if err := Serve(context.Background(), "256.0.0.1:0", Options{}); err == nil {
		t.Fatal("Serve on a bad address returned nil")
	}
	if err := Serve(context.Background(), "127.0.0.1:0", Options{Context: "nope"}); err == nil {
		t.Fatal("Serve with bad options returned nil")
	}
}

func TestListenServesOnTheGivenAddress(t *testing.T) {
	s, err := Listen("127.0.0.1:0", Options{Users: map[string]string{"ops": "pw"}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if !strings.HasPrefix(s.URL, "http://127.0.0.1:") {
		t.Fatalf("URL %s", s.URL)
	}
	login(t, s)
}
