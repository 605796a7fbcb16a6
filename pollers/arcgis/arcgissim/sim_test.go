package arcgissim

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jobbridge/jobbridge/pollers/pollkit"
)

var t0 = time.Date(2025, 3, 6, 16, 0, 0, 0, time.UTC)

func newTestServer(t *testing.T, opts Options) (*Server, *pollkit.ManualClock) {
	t.Helper()
	clk := pollkit.NewManualClock(t0)
	opts.Clock = clk
	if opts.Users == nil {
		opts.Users = map[string]string{"ops": "pw"}
	}
	s := NewServer(opts)
	t.Cleanup(s.Close)
	return s, clk
}

type answer struct {
	code   int
	header http.Header
	body   []byte
}

func do(t *testing.T, req *http.Request) answer {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return answer{resp.StatusCode, resp.Header, b}
}

func (a answer) object(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(a.body, &m); err != nil {
		t.Fatalf("not JSON: %s", a.body)
	}
	return m
}

// keys returns the top-level keys of a JSON object in document order.
func keys(t *testing.T, b []byte) []string {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(string(b)))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		t.Fatalf("not an object: %s", b)
	}
	var out []string
	for dec.More() {
		k, _ := dec.Token()
		out = append(out, k.(string))
		var skip json.RawMessage
		dec.Decode(&skip)
	}
	return out
}

func tokenFor(t *testing.T, s *Server, form url.Values) answer {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, s.ServerTokenURL(), strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return do(t, req)
}

func login(t *testing.T, s *Server) string {
	t.Helper()
	a := tokenFor(t, s, url.Values{"username": {"ops"}, "password": {"pw"}, "client": {"requestip"}, "f": {"json"}})
	tok, _ := a.object(t)["token"].(string)
	if tok == "" {
		t.Fatalf("no token: %s", a.body)
	}
	return tok
}

func get(t *testing.T, rawURL, token string) answer {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, rawURL, nil)
	if token != "" {
		req.Header.Set("X-Esri-Authorization", "Bearer "+token)
	}
	return do(t, req)
}

func TestJobShapesFollowTheDocs(t *testing.T) {
	s, clk := newTestServer(t, Options{})
	tok := login(t, s)
	s.MustAddJob(Job{ID: "m", Kind: KindMission, MissionID: "d942", Script: []Step{
		{Status: "EXECUTING", For: time.Minute, Done: 2, Message: "Started mission creation."},
		{Status: "COMPLETED", Done: 5, Message: "Finished."},
	}})
	s.MustAddJob(Job{ID: "a", Kind: KindAdmin, TotalSteps: 3, Script: []Step{
		{Status: "EXECUTING", For: time.Minute, Done: 1, Message: "Stopping the service"},
		{Status: "COMPLETED", Done: 3, Operation: "error", OperationMessages: []string{"service failed to start"}},
	}})
	s.MustAddJob(Job{ID: "e", Kind: KindEnterprise, Username: "serviceAdmin", Script: []Step{
		{Status: "EXECUTING", For: time.Minute}, {Status: "COMPLETED", Operation: "success"},
	}})
	p := 40.0
	s.MustAddJob(Job{ID: "g", Kind: KindGP, Script: []Step{
		{Status: "esriJobExecuting", For: time.Minute, Percent: &p, Message: "Buffering"},
		{Status: "esriJobFailed", Message: "Failed."},
	}})

	m := get(t, s.MissionURL()+"/jobs/m?f=json", tok)
	if got := strings.Join(keys(t, m.body), ","); got != "jobId,messages,startTime,endTime,type,status,username,customAttributes" {
		t.Errorf("mission keys %s", got)
	}
	var mj struct {
		StartTime, EndTime int64
		CustomAttributes   json.RawMessage
		Status             string
	}
	json.Unmarshal(m.body, &mj)
	if got := strings.Join(keys(t, mj.CustomAttributes), ","); got != "stepsCompleted,isCancelled,missionId,messageCodes,totalSteps" {
		t.Errorf("customAttributes keys %s", got)
	}
	if mj.StartTime != t0.UnixMilli() || mj.EndTime != 0 || mj.Status != "EXECUTING" {
		t.Errorf("mission %s", m.body)
	}
	if m.header.Get("Date") != t0.Format(http.TimeFormat) || !strings.HasPrefix(m.header.Get("Content-Type"), "application/json") {
		t.Errorf("headers %v", m.header)
	}

	a := get(t, s.AdminURL()+"/system/jobs/a?f=pjson", tok)
	if got := strings.Join(keys(t, a.body), ","); got != "jobid,status,totalsteps,currentstep,stepInfo" {
		t.Errorf("admin keys %s (no operationResponse while running)", got)
	}
	e := get(t, s.EnterpriseAdminURL()+"/jobs/e?f=json", tok)
	if got := strings.Join(keys(t, e.body), ","); got != "updatedtime,jobid,endtime,starttime,operationURI,status,username" {
		t.Errorf("enterprise admin keys %s", got)
	}
	g := get(t, s.GPTaskURL()+"/jobs/g?f=json", tok)
	if got := strings.Join(keys(t, g.body), ","); got != "jobId,jobStatus,progress,results,inputs,messages" {
		t.Errorf("gp keys %s", got)
	}
	if !strings.Contains(string(g.body), `"progress":{"type":"step","message":"Buffering","percentage":40}`) {
		t.Errorf("gp progress %s", g.body)
	}

	clk.Advance(time.Minute)
	m = get(t, s.MissionURL()+"/jobs/m?f=json", tok)
	json.Unmarshal(m.body, &mj)
	if mj.EndTime != t0.Add(time.Minute).UnixMilli() || !strings.Contains(string(m.body), `"messages":["Started mission creation.","Finished."]`) ||
		!strings.Contains(string(m.body), `"messageCodes":[1500,1501]`) {
		t.Errorf("finished mission %s", m.body)
	}
	a = get(t, s.AdminURL()+"/system/jobs/a?f=json", tok)
	if !strings.Contains(string(a.body), `"status":"COMPLETED","totalsteps":3,"currentstep":3`) ||
		!strings.Contains(string(a.body), `"operationResponse":{"status":"error","messages":["service failed to start"]}`) {
		t.Errorf("admin trap %s", a.body)
	}
	if e = get(t, s.EnterpriseAdminURL()+"/jobs/e?f=json", tok); !strings.Contains(string(e.body), `"result":{"status":"success"}`) {
		t.Errorf("enterprise result %s", e.body)
	}
	g = get(t, s.GPTaskURL()+"/jobs/g?f=json", tok)
	if strings.Contains(string(g.body), "progress") || !strings.Contains(string(g.body), `{"type":"esriJobMessageTypeError","description":"Failed."}`) {
		t.Errorf("failed GP job %s", g.body)
	}
	// Without f=json, ArcGIS serves its HTML page.
	if h := get(t, s.MissionURL()+"/jobs/m", tok); h.code != 200 || !strings.HasPrefix(string(h.body), "<!DOCTYPE html>") {
		t.Errorf("no f: %d %s", h.code, h.body)
	}
	// A job is only found under its own API.
	if x := get(t, s.MissionURL()+"/jobs/g?f=json", tok); x.object(t)["error"] == nil {
		t.Errorf("GP job under mission: %s", x.body)
	}
}

func TestErrorsComeInsideHTTP200InTheRightShape(t *testing.T) {
	s, clk := newTestServer(t, Options{})
	s.MustAddJob(Job{ID: "m", Kind: KindMission})
	s.MustAddJob(Job{ID: "a", Kind: KindAdmin})
	check := func(name string, a answer, want string) {
		t.Helper()
		if a.code != 200 || string(a.body) != want {
			t.Errorf("%s: %d %s\n want %s", name, a.code, a.body, want)
		}
	}
	check("499 rest", get(t, s.MissionURL()+"/jobs/m?f=json", ""), `{"error":{"code":499,"message":"Token Required","details":[]}}`)
	check("499 admin", get(t, s.AdminURL()+"/system/jobs/a?f=json", ""),
		`{"status":"error","messages":["Unauthorized access. Token not found. You can generate a token using the 'generateToken' operation."],"code":499}`)
	check("498 unknown", get(t, s.MissionURL()+"/jobs/m?f=json", "forged"), `{"error":{"code":498,"message":"Invalid Token","details":[]}}`)
	tok := login(t, s)
	check("404 rest", get(t, s.MissionURL()+"/jobs/nope?f=json", tok), `{"error":{"code":404,"message":"Job not found.","details":[]}}`)
	check("404 admin", get(t, s.AdminURL()+"/system/jobs/nope?f=json", tok), `{"status":"error","messages":["Job 'nope' does not exist or has been deleted."],"code":404}`)
	check("gp list", get(t, s.GPTaskURL()+"/jobs?f=json", tok), `{"error":{"code":400,"message":"Invalid URL","details":[]}}`)
	clk.Advance(60 * time.Minute)
	check("498 expired", get(t, s.AdminURL()+"/system/jobs/a?f=json", tok), `{"status":"error","messages":["Invalid token."],"code":498}`)
	if st := s.Stats(); st.TokenRequired != 2 || st.InvalidToken != 2 || st.NotFound != 2 || st.JobRequests != 0 {
		t.Errorf("stats %+v", st)
	}
}

func TestGenerateToken(t *testing.T) {
	s, clk := newTestServer(t, Options{MaxTokenExpiration: 2 * time.Hour})
	base := url.Values{"username": {"ops"}, "password": {"pw"}, "f": {"json"}}
	with := func(kv ...string) url.Values {
		v := url.Values{}
		for k, vs := range base {
			v[k] = vs
		}
		for i := 0; i < len(kv); i += 2 {
			v.Set(kv[i], kv[i+1])
		}
		return v
	}
	refused := func(a answer, detail string) {
		t.Helper()
		if !strings.Contains(string(a.body), `"code":400,"message":"Unable to generate token.","details":["`+detail) {
			t.Errorf("want refusal %q, got %s", detail, a.body)
		}
	}
	refused(tokenFor(t, s, with("password", "wrong", "client", "requestip")), "Invalid username or password.")
	refused(tokenFor(t, s, with()), "'referer' must be specified") // client defaults to referer
	refused(tokenFor(t, s, with("client", "ip", "ip", "not-an-ip")), "'ip' must be")
	refused(tokenFor(t, s, with("client", "requestip", "expiration", "-3")), "Invalid expiration.")
	refused(do(t, mustReq(http.NewRequest(http.MethodGet, s.ServerTokenURL()+"?"+with("client", "requestip").Encode(), nil))), "The generateToken operation must be called with POST.")
	if h := tokenFor(t, s, with("client", "requestip", "f", "html")); !strings.HasPrefix(string(h.body), "<!DOCTYPE html>") {
		t.Errorf("f=html: %s", h.body)
	}

	a := tokenFor(t, s, with("client", "requestip", "expiration", "600"))
	if got := strings.Join(keys(t, a.body), ","); got != "token,expires" {
		t.Errorf("server token keys %s", got)
	}
	if exp := int64(a.object(t)["expires"].(float64)); exp != t0.Add(2*time.Hour).UnixMilli() {
		t.Errorf("expires %d: want the 2h cap", exp)
	}
	if a.header.Get("Date") != t0.Format(http.TimeFormat) {
		t.Errorf("Date %q", a.header.Get("Date"))
	}
	req, _ := http.NewRequest(http.MethodPost, s.PortalTokenURL(), strings.NewReader(with("client", "referer", "referer", "https://app").Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	p := do(t, req)
	if got := strings.Join(keys(t, p.body), ","); got != "token,expires,ssl" || p.object(t)["ssl"] != false {
		t.Errorf("portal token %s", p.body)
	}
	ptok := p.object(t)["token"].(string)
	if st := s.Stats(); st.TokensIssued != 2 || st.FailedLogins != 5 {
		t.Errorf("stats %+v", st)
	}

	// Binding: a referer token needs its Referer.
	s.MustAddJob(Job{ID: "j", Kind: KindGP})
	r, _ := http.NewRequest(http.MethodGet, s.GPTaskURL()+"/jobs/j?f=json", nil)
	r.Header.Set("Authorization", "Bearer "+ptok)
	if a := do(t, r); !strings.Contains(string(a.body), `"code":498`) {
		t.Errorf("referer token without Referer: %s", a.body)
	}
	r.Header.Set("Referer", "https://app")
	if a := do(t, r); a.object(t)["jobStatus"] == nil {
		t.Errorf("referer token with Referer: %s", a.body)
	}
	// A token in the query string works, and is counted.
	if a := get(t, s.GPTaskURL()+"/jobs/j?f=json&token="+login(t, s), ""); a.object(t)["jobStatus"] == nil || s.Stats().QueryTokens != 1 {
		t.Errorf("query token: %s %+v", a.body, s.Stats())
	}
	clk.Advance(2 * time.Hour)
	if a := do(t, r); !strings.Contains(string(a.body), `"code":498`) {
		t.Errorf("expired token: %s", a.body)
	}
}

func mustReq(r *http.Request, err error) *http.Request {
	if err != nil {
		panic(err)
	}
	return r
}

func TestStaticAndAnonymous(t *testing.T) {
	s, _ := newTestServer(t, Options{StaticTokens: []string{"forever"}})
	s.MustAddJob(Job{ID: "j", Kind: KindMission})
	s.ExpireTokens()
	if a := get(t, s.MissionURL()+"/jobs/j?f=json", "forever"); a.object(t)["status"] != "SUBMITTED" {
		t.Errorf("static token: %s", a.body)
	}
	o, _ := newTestServer(t, Options{Anonymous: true})
	o.MustAddJob(Job{ID: "j", Kind: KindMission})
	if a := get(t, o.MissionURL()+"/jobs/j?f=json", ""); a.object(t)["status"] != "SUBMITTED" {
		t.Errorf("anonymous: %s", a.body)
	}
	if a := get(t, o.MissionURL()+"/jobs/j?f=json", "forged"); !strings.Contains(string(a.body), `"code":498`) {
		t.Errorf("a forged token on an open service: %s", a.body)
	}
}

func TestListsAndSubmit(t *testing.T) {
	s, clk := newTestServer(t, Options{})
	tok := login(t, s)
	s.MustAddJob(Job{ID: "m1", Kind: KindMission, PurgeAfter: time.Minute})
	s.MustAddJob(Job{ID: "m2", Kind: KindMission})
	s.MustAddJob(Job{ID: "a1", Kind: KindAdmin})
	if a := get(t, s.MissionURL()+"/jobs?f=json", tok); string(a.body) != `{"asyncJobs":["m1","m2"]}` {
		t.Errorf("mission list %s", a.body)
	}
	if a := get(t, s.AdminURL()+"/system/jobs?f=json", tok); string(a.body) != `{"jobs":["a1"]}` {
		t.Errorf("admin list %s", a.body)
	}
	if a := get(t, s.EnterpriseAdminURL()+"/jobs?f=json", tok); string(a.body) != `{"jobs":[]}` {
		t.Errorf("enterprise list %s", a.body)
	}
	clk.Advance(time.Minute)
	if a := get(t, s.MissionURL()+"/jobs?f=json", tok); string(a.body) != `{"asyncJobs":["m2"]}` {
		t.Errorf("after the purge %s", a.body)
	}
	sub := get(t, s.GPTaskURL()+"/submitJob?f=json&Input_Features=x", tok).object(t)
	id, _ := sub["jobId"].(string)
	if id == "" || sub["jobStatus"] != "esriJobSubmitted" {
		t.Fatalf("submitJob %v", sub)
	}
	clk.Advance(10 * time.Second)
	if j := get(t, s.GPTaskURL()+"/jobs/"+id+"?f=json", tok).object(t); j["jobStatus"] != "esriJobSucceeded" {
		t.Errorf("submitted job after its script: %v", j)
	}
	if st := s.Stats(); st.Submitted != 1 || st.ListRequests != 4 {
		t.Errorf("stats %+v", st)
	}
}

func TestHistory(t *testing.T) {
	s, clk := newTestServer(t, Options{})
	p1, p2 := 10.0, 60.0
	s.MustAddJob(Job{ID: "g", Kind: KindGP, PurgeAfter: 5 * time.Minute, Script: []Step{
		{Status: "esriJobSubmitted", For: time.Minute},
		{Status: "esriJobExecuting", For: time.Minute, Percent: &p1},
		{Status: "esriJobExecuting", For: time.Minute, Percent: &p1}, // nothing visible changes
		{Status: "esriJobExecuting", For: 5 * time.Minute, Percent: &p2},
		{Status: "esriJobSucceeded"}, // after the purge: never seen
	}})
	clk.Advance(time.Minute)
	s.MustAddJob(Job{ID: "m", Kind: KindMission, Script: []Step{
		{Status: "EXECUTING", For: time.Minute, Done: 1},
		{Status: "EXECUTING", For: time.Minute, Done: 1, Cancelled: true},
		{Status: "COMPLETED", Done: 1, Cancelled: true},
	}})
	clk.Advance(time.Hour)
	var got []string
	for _, c := range s.History() {
		e := c.JobID + ":" + c.Status
		if c.Percent != nil {
			e += fmt.Sprintf("@%g", *c.Percent)
		}
		if c.Cancelled {
			e += "/cancelled"
		}
		if c.Removed {
			e += "/removed"
		}
		got = append(got, e+"@"+c.At.Sub(t0).String())
	}
	want := []string{
		"g:esriJobSubmitted@0s", "g:esriJobExecuting@10@1m0s", "m:EXECUTING@1m0s", "m:EXECUTING/cancelled@2m0s",
		"g:esriJobExecuting@60@3m0s", "m:COMPLETED/cancelled@3m0s", "g:esriJobExecuting@60/removed@5m0s",
	}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("history\n got  %v\n want %v", got, want)
	}
	if _, ok := s.Status("g"); ok {
		t.Error("a purged job still has a status")
	}
	if st, ok := s.Status("m"); !ok || st != "COMPLETED" {
		t.Errorf("status %q %v", st, ok)
	}
}

func TestFaults(t *testing.T) {
	s, clk := newTestServer(t, Options{})
	tok := login(t, s)
	s.MustAddJob(Job{ID: "j", Kind: KindMission})
	url := s.MissionURL() + "/jobs/j?f=json"
	for _, c := range []struct {
		f    Fault
		code int
		body string
	}{
		{Fault{Kind: FaultStatus, Status: 503}, 503, "<!DOCTYPE html>"},
		{Fault{Kind: FaultMalformed}, 200, `{"jobId":"j0","status":"EXEC`},
		{Fault{Kind: FaultHTML}, 200, "<!DOCTYPE html>"},
		{Fault{Kind: FaultVendorError}, 200, `{"error":{"code":500,"message":"An unexpected error occurred."`},
		{Fault{Kind: FaultVendorError, Code: 503, Endpoint: EndpointJob}, 200, `{"error":{"code":503`},
	} {
		if err := s.InjectFault(c.f); err != nil {
			t.Fatal(err)
		}
		if a := get(t, url, tok); a.code != c.code || !strings.HasPrefix(string(a.body), c.body) {
			t.Errorf("%+v: %d %s", c.f, a.code, a.body)
		}
	}
	// Targeted, counted and scheduled.
	s.InjectFault(Fault{Kind: FaultStatus, Endpoint: EndpointToken, Count: 2})
	s.InjectFault(Fault{Kind: FaultExpireTokens, At: 10 * time.Minute})
	if a := get(t, url, tok); a.code != 200 || a.object(t)["status"] == nil {
		t.Errorf("a token fault hit a job request: %s", a.body)
	}
	clk.Advance(10 * time.Minute)
	if a := get(t, url, tok); !strings.Contains(string(a.body), `"code":498`) {
		t.Errorf("after the scheduled expiry: %s", a.body)
	}
	for i := range 3 {
		a := tokenFor(t, s, url_("ops", "pw"))
		if (i < 2) != (a.code == 500) {
			t.Errorf("token request %d: %d", i, a.code)
		}
	}
	start := time.Now()
	s.InjectFault(Fault{Kind: FaultDelay, Delay: 150 * time.Millisecond})
	get(t, url, tok)
	if time.Since(start) < 150*time.Millisecond {
		t.Error("the delay fault did not delay")
	}
	if st := s.Stats(); st.Faults != 8 {
		t.Errorf("faults %d", st.Faults)
	}
	for _, bad := range []Fault{{Kind: "boom"}, {Kind: FaultDelay}, {Kind: FaultStatus, Status: 700}, {Kind: FaultHTML, Endpoint: "x"}, {Kind: FaultHTML, Count: -1}} {
		if s.InjectFault(bad) == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
}

func url_(user, pw string) url.Values {
	return url.Values{"username": {user}, "password": {pw}, "client": {"requestip"}, "f": {"json"}}
}

func TestAddJobValidates(t *testing.T) {
	s, _ := newTestServer(t, Options{})
	for _, j := range []Job{
		{Kind: KindMission},
		{ID: "x"},
		{ID: "x", Kind: "arcgis-online"},
		{ID: "x", Kind: KindGP, Script: []Step{{Status: ""}}},
		{ID: "x", Kind: KindGP, Script: []Step{{Status: "esriJobNew"}, {Status: "esriJobSucceeded"}}},
		{ID: "x", Kind: KindGP, Script: []Step{{Status: "esriJobNew", Done: -1}}},
		{ID: "x", Kind: KindGP, PurgeAfter: -time.Second},
	} {
		if s.AddJob(j) == nil {
			t.Errorf("%+v accepted", j)
		}
	}
	s.MustAddJob(Job{ID: "x", Kind: KindGP})
	if s.AddJob(Job{ID: "x", Kind: KindMission}) == nil {
		t.Error("duplicate id accepted")
	}
	for _, k := range []Kind{KindMission, KindAdmin, KindEnterprise, KindGP} {
		if checkScript(DefaultScript(k)) != nil {
			t.Errorf("default script of %s is invalid", k)
		}
	}
}

func TestScenarioExample(t *testing.T) {
	f, err := os.Open("testdata/example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	opts, err := LoadScenario(f)
	if err != nil {
		t.Fatal(err)
	}
	if len(opts.Jobs) != 5 || len(opts.Faults) != 6 || opts.Users["svc-jobbridge"] != "change-me" || len(opts.StaticTokens) != 1 {
		t.Fatalf("scenario %+v", opts)
	}
	clk := pollkit.NewManualClock(t0)
	opts.Clock = clk
	s := NewServer(opts)
	defer s.Close()
	clk.Advance(15 * time.Second) // the trap job has finished; no fault is armed yet
	if a := get(t, s.AdminURL()+"/system/jobs/jcbdbf7aa-385e-417a-b629-29a310895b9b?f=json", "long-lived-demo-token"); !strings.Contains(string(a.body), `"operationResponse":{"status":"error"`) {
		t.Errorf("the trap job: %s", a.body)
	}
	clk.Advance(10 * time.Second)
	if a := get(t, s.MissionURL()+"/jobs/mission-cancelled?f=json", "long-lived-demo-token"); !strings.Contains(string(a.body), `"code":500`) {
		t.Errorf("the scheduled error 500: %s", a.body)
	}
	for _, bad := range []string{
		``, `users: {a: b}` + "\n" + `typo: 1`, `jobs: [{id: x, kind: online}]`, `faults: [{kind: boom}]`, `maxTokenExpiration: -1m`,
		`jobs: [{id: x, kind: gp, script: [{status: a}, {status: b}]}]`,
	} {
		if _, err := LoadScenario(strings.NewReader(bad)); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestServeStopsWithItsContext(t *testing.T) {
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
	if _, err := Listen("127.0.0.1:0", Options{MaxTokenExpiration: time.Second}); err == nil {
		t.Error("a sub-minute token cap accepted")
	}
}
