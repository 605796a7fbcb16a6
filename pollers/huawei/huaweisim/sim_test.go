package huaweisim

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2025, 3, 6, 16, 0, 0, 0, time.UTC)

const (
	user = "ops"
	pass = "S3cr3t"
)

func newSim(t *testing.T, opts Options) (*Server, *ManualClock) {
	t.Helper()
	clk := NewManualClock(t0)
	opts.Clock = clk
	if opts.Users == nil {
		opts.Users = map[string]string{user: pass}
	}
	s := NewServer(opts)
	t.Cleanup(s.Close)
	return s, clk
}

type answer struct {
	code   int
	header http.Header
	body   []byte
	obj    map[string]any
}

func do(t *testing.T, method, u, tok string, body string) answer {
	t.Helper()
	req, err := http.NewRequest(method, u, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if tok != "" {
		req.Header.Set("X-Auth-Token", tok)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	a := answer{code: resp.StatusCode, header: resp.Header, body: b}
	_ = json.Unmarshal(b, &a.obj)
	return a
}

func tokenBody(name, password, domain, projectID, projectName string) string {
	scope := map[string]string{}
	if projectID != "" {
		scope["id"] = projectID
	} else {
		scope["name"] = projectName
	}
	b, _ := json.Marshal(map[string]any{"auth": map[string]any{
		"identity": map[string]any{"methods": []string{"password"}, "password": map[string]any{
			"user": map[string]any{"name": name, "password": password, "domain": map[string]string{"name": domain}}}},
		"scope": map[string]any{"project": scope},
	}})
	return string(b)
}

func login(t *testing.T, s *Server) string {
	t.Helper()
	a := do(t, "POST", s.URL+"/v3/auth/tokens", "", tokenBody(user, pass, DefaultDomain, DefaultProjectID, ""))
	if a.code != http.StatusCreated || a.header.Get("X-Subject-Token") == "" {
		t.Fatalf("login: %d %s", a.code, a.body)
	}
	return a.header.Get("X-Subject-Token")
}

func jobURL(s *Server, version, id string, query string) string {
	u := s.URL + "/" + version + "/" + s.ProjectID() + "/cas/jobs/" + id
	if query != "" {
		u += "?" + query
	}
	return u
}

func TestTokenIssueAndExpiry(t *testing.T) {
	s, clk := newSim(t, Options{TokenTTL: time.Hour})
	s.AddJob(Job{ID: "j"})
	a := do(t, "POST", s.URL+"/v3/auth/tokens", "", tokenBody(user, pass, DefaultDomain, "", DefaultProjectName))
	if a.code != http.StatusCreated {
		t.Fatalf("scope by name: %d %s", a.code, a.body)
	}
	tok := a.header.Get("X-Subject-Token")
	var body struct {
		Token struct {
			ExpiresAt string `json:"expires_at"`
			IssuedAt  string `json:"issued_at"`
			Project   struct{ ID, Name string }
		}
	}
	if err := json.Unmarshal(a.body, &body); err != nil {
		t.Fatal(err)
	}
	if body.Token.ExpiresAt != "2025-03-06T17:00:00.000000Z" || body.Token.IssuedAt != "2025-03-06T16:00:00.000000Z" || body.Token.Project.ID != DefaultProjectID || body.Token.Project.Name != DefaultProjectName {
		t.Fatalf("token body %s", a.body)
	}
	if strings.Contains(string(a.body), tok) {
		t.Fatal("the token is in the body; Huawei sends it only in X-Subject-Token")
	}
	if a := do(t, "GET", jobURL(s, "v2", "j", ""), tok, ""); a.code != 200 {
		t.Fatalf("with a fresh token: %d %s", a.code, a.body)
	}
	clk.Advance(time.Hour)
	a = do(t, "GET", jobURL(s, "v2", "j", ""), tok, "")
	if a.code != 401 || a.obj["error_code"] != CodeAuthInfo || !strings.Contains(a.obj["error_msg"].(string), "token expires") {
		t.Fatalf("expired token: %d %s", a.code, a.body)
	}
	a = do(t, "GET", jobURL(s, "v2", "j", ""), "", "")
	if a.code != 401 || !strings.Contains(a.obj["error_msg"].(string), "x-auth-token not found") {
		t.Fatalf("no token: %d %s", a.code, a.body)
	}
	if st := s.Stats(); st.Logins != 1 || st.Unauthorized != 2 {
		t.Fatalf("stats %+v", st)
	}
}

func TestLoginRefusals(t *testing.T) {
	s, _ := newSim(t, Options{})
	for name, body := range map[string]string{
		"wrong password": tokenBody(user, "nope", DefaultDomain, DefaultProjectID, ""),
		"wrong domain":   tokenBody(user, pass, "other", DefaultProjectID, ""),
		"unknown user":   tokenBody("who", pass, DefaultDomain, DefaultProjectID, ""),
	} {
		a := do(t, "POST", s.URL+"/v3/auth/tokens", "", body)
		inner, _ := a.obj["error"].(map[string]any)
		if a.code != 401 || inner["code"] != float64(401) || inner["message"] == "" || a.header.Get("X-Subject-Token") != "" {
			t.Errorf("%s: %d %s; want IAM's 401 envelope and no token", name, a.code, a.body)
		}
		if strings.Contains(string(a.body), pass) {
			t.Errorf("%s: the password is echoed", name)
		}
	}
	a := do(t, "POST", s.URL+"/v3/auth/tokens", "", tokenBody(user, pass, DefaultDomain, "ffffffffffffffffffffffffffffffff", ""))
	if a.code != 400 {
		t.Errorf("unknown project: %d %s", a.code, a.body)
	}
	if a := do(t, "POST", s.URL+"/v3/auth/tokens", "", "{"); a.code != 400 {
		t.Errorf("bad body: %d", a.code)
	}
	if st := s.Stats(); st.FailedLogins != 4 || st.Logins != 0 {
		t.Errorf("stats %+v", st)
	}
}

func TestJobPayloadV2AndV3(t *testing.T) {
	s, clk := newSim(t, Options{})
	s.AddJob(Job{ID: "j", Script: []Step{{Status: "RUNNING", For: time.Minute}, {Status: "FAILED"}}, Tasks: []Task{
		{ID: "t1", Type: "echo", Script: []Step{{Status: "SUCCEEDED"}}},
		{ID: "t2", Script: []Step{{Status: "RUNNING", For: time.Minute}, {Status: "FAILED", Messages: `{"Message":"ECC00011"}`}}},
	}})
	tok := login(t, s)
	clk.Advance(30 * time.Second)
	v2 := do(t, "GET", jobURL(s, "v2", "j", ""), tok, "")
	for _, key := range []string{`"EXECUTION_STATUS":"RUNNING"`, `"JOB_ID":"j"`, `"TASK_ID":"t1"`, `"TASK_STATUS":"SUCCEEDED"`, `"task_count":2`, `"CREATED_AT":"2025-03-06T16:00:00.000Z"`, `"LAST_HEALTH_CHECK":"2025-03-06T16:00:30.000Z"`, `"MESSAGES":"{}"`} {
		if !bytes.Contains(v2.body, []byte(key)) {
			t.Errorf("v2 body lacks %s: %s", key, v2.body)
		}
	}
	clk.Advance(time.Minute)
	v3 := do(t, "GET", jobURL(s, "v3", "j", ""), tok, "")
	for _, key := range []string{`"execution_status":"FAILED"`, `"task_id":"t2"`, `"task_status":"FAILED"`, `"messages":"{\"Message\":\"ECC00011\"}"`, `"last_health_check":"2025-03-06T16:01:00.000Z"`} {
		if !bytes.Contains(v3.body, []byte(key)) {
			t.Errorf("v3 body lacks %s: %s", key, v3.body)
		}
	}
	if bytes.Contains(v3.body, []byte("EXECUTION_STATUS")) {
		t.Errorf("v3 uses v2 keys: %s", v3.body)
	}
}

func TestPagingHonoursLimitOffsetDesc(t *testing.T) {
	s, clk := newSim(t, Options{MaxLimit: 50})
	var tasks []Task
	for i := range 7 {
		tasks = append(tasks, Task{ID: "t" + string(rune('a'+i)), Script: []Step{{Status: "RUNNING"}}})
	}
	tasks = append(tasks, Task{ID: "late", After: time.Minute, Script: []Step{{Status: "SUBMITTED"}}})
	s.AddJob(Job{ID: "j", Tasks: tasks})
	tok := login(t, s)
	ids := func(a answer) (out []string, count float64) {
		for _, t := range a.obj["tasks"].([]any) {
			out = append(out, t.(map[string]any)["TASK_ID"].(string))
		}
		return out, a.obj["task_count"].(float64)
	}
	for _, c := range []struct {
		query string
		want  string
	}{
		{"", "ta tb tc td te tf tg"},
		{"limit=3&offset=0", "ta tb tc"},
		{"limit=3&offset=3", "td te tf"},
		{"limit=3&offset=6", "tg"},
		{"limit=3&offset=9", ""},
		{"limit=2&offset=0&desc=true", "tg tf"},
	} {
		got, n := ids(do(t, "GET", jobURL(s, "v2", "j", c.query), tok, ""))
		if strings.Join(got, " ") != c.want || n != 7 {
			t.Errorf("%q: tasks %v count %v, want %q of 7", c.query, got, n, c.want)
		}
	}
	clk.Advance(time.Minute)
	if _, n := ids(do(t, "GET", jobURL(s, "v2", "j", "limit=1"), tok, "")); n != 8 {
		t.Errorf("after the late task is created: count %v", n)
	}
	for _, q := range []string{"limit=0", "limit=51", "limit=x", "offset=-1", "desc=maybe"} {
		a := do(t, "GET", jobURL(s, "v2", "j", q), tok, "")
		if a.code != 400 || a.obj["error_code"] != CodeInvalidParam {
			t.Errorf("%q: %d %s", q, a.code, a.body)
		}
	}
	qs := s.Queries()
	if len(qs) != 7 || qs[1] != (Query{JobID: "j", Version: "v2", Limit: 3, Offset: 0}) || qs[0].Limit != -1 {
		t.Errorf("queries %+v", qs)
	}
}

func TestErrorEnvelopesAndNotFound(t *testing.T) {
	for _, env := range []Envelope{EnvelopeFlat, EnvelopeNested, EnvelopeCamel} {
		s, clk := newSim(t, Options{Envelope: env})
		s.AddJob(Job{ID: "gone", GoneAfter: time.Minute})
		s.AddJob(Job{ID: "removed"})
		tok := login(t, s)
		if a := do(t, "GET", jobURL(s, "v2", "gone", ""), tok, ""); a.code != 200 {
			t.Fatalf("%s: before retention ends: %d", env, a.code)
		}
		clk.Advance(time.Minute)
		s.RemoveJob("removed")
		for _, id := range []string{"gone", "removed", "never"} {
			a := do(t, "GET", jobURL(s, "v2", id, ""), tok, "")
			var code any
			switch env {
			case EnvelopeFlat:
				code = a.obj["error_code"]
			case EnvelopeNested:
				code = a.obj["error"].(map[string]any)["code"]
			case EnvelopeCamel:
				code = a.obj["errorCode"]
			}
			if a.code != 404 || code != CodeJobNotFound {
				t.Errorf("%s %s: %d %s", env, id, a.code, a.body)
			}
		}
		if a := do(t, "GET", jobURL(s, "v2", "", ""), tok, ""); a.code != 400 || !bytes.Contains(a.body, []byte(CodeJobIDEmpty)) {
			t.Errorf("%s empty id: %d %s", env, a.code, a.body)
		}
		// Gateway errors keep the gateway's own envelope.
		if a := do(t, "GET", s.URL+"/v4/x/cas/jobs/j", tok, ""); a.code != 404 || a.obj["error_code"] != CodeAPINotFound {
			t.Errorf("%s unknown API: %d %s", env, a.code, a.body)
		}
		if st := s.Stats(); st.NotFound != 3 {
			t.Errorf("%s: stats %+v", env, st)
		}
	}
}

func TestTokenOfAnotherProjectIsRefused(t *testing.T) {
	s, _ := newSim(t, Options{})
	s.AddJob(Job{ID: "j"})
	tok := login(t, s)
	a := do(t, "GET", s.URL+"/v2/ffffffffffffffffffffffffffffffff/cas/jobs/j", tok, "")
	if a.code != 403 {
		t.Fatalf("%d %s", a.code, a.body)
	}
}

func TestFaults(t *testing.T) {
	s, clk := newSim(t, Options{})
	s.AddJob(Job{ID: "j"})
	tok := login(t, s)
	s.Throttle(2)
	for range 2 {
		a := do(t, "GET", jobURL(s, "v2", "j", ""), tok, "")
		if a.code != 429 || a.obj["error_code"] != CodeThrottled || !strings.Contains(a.obj["error_msg"].(string), "throttling threshold") {
			t.Fatalf("throttled: %d %s", a.code, a.body)
		}
	}
	if a := do(t, "GET", jobURL(s, "v2", "j", ""), tok, ""); a.code != 200 {
		t.Fatalf("after the burst: %d", a.code)
	}
	s.InjectFault(Fault{Kind: FaultStatus, Status: 503, Endpoint: EndpointJob, At: time.Minute})
	if a := do(t, "GET", jobURL(s, "v2", "j", ""), tok, ""); a.code != 200 {
		t.Fatalf("a fault scheduled for later fired now: %d", a.code)
	}
	clk.Advance(time.Minute)
	if a := do(t, "POST", s.URL+"/v3/auth/tokens", "", tokenBody(user, pass, DefaultDomain, DefaultProjectID, "")); a.code != 201 {
		t.Fatalf("a job-only fault hit IAM: %d", a.code)
	}
	if a := do(t, "GET", jobURL(s, "v2", "j", ""), tok, ""); a.code != 503 {
		t.Fatalf("scheduled 503: %d", a.code)
	}
	s.InjectFault(Fault{Kind: FaultMalformed})
	if a := do(t, "GET", jobURL(s, "v2", "j", ""), tok, ""); a.code != 200 || json.Valid(a.body) {
		t.Fatalf("malformed: %d %s", a.code, a.body)
	}
	s.InjectFault(Fault{Kind: FaultHTML})
	if a := do(t, "GET", jobURL(s, "v2", "j", ""), tok, ""); a.code != 200 || !bytes.HasPrefix(a.body, []byte("<!DOCTYPE")) {
		t.Fatalf("html: %d %s", a.code, a.body)
	}
	s.InjectFault(Fault{Kind: FaultDelay, Delay: 150 * time.Millisecond})
	start := time.Now()
	if a := do(t, "GET", jobURL(s, "v2", "j", ""), tok, ""); a.code != 200 || time.Since(start) < 150*time.Millisecond {
		t.Fatalf("delay: %d after %v", a.code, time.Since(start))
	}
	s.InjectFault(Fault{Kind: FaultExpireTokens})
	if a := do(t, "GET", jobURL(s, "v2", "j", ""), tok, ""); a.code != 401 {
		t.Fatalf("revoked token: %d", a.code)
	}
	if st := s.Stats(); st.Throttled != 2 || st.Faults != 6 {
		t.Fatalf("stats %+v", st)
	}
	for _, f := range []Fault{{Kind: "boom"}, {Kind: FaultDelay}, {Kind: FaultStatus, Status: 42}, {Kind: FaultHTML, Endpoint: "x"}, {Kind: FaultHTML, Count: -1}} {
		if s.InjectFault(f) == nil {
			t.Errorf("fault %+v accepted", f)
		}
	}
}

func TestHistoryIsGroundTruth(t *testing.T) {
	s, clk := newSim(t, Options{})
	s.AddJob(Job{ID: "j", Script: []Step{{Status: "SUBMITTED", For: time.Minute}, {Status: "RUNNING", For: 2 * time.Minute}, {Status: "SUCCEEDED"}},
		Tasks: []Task{
			{ID: "a", Script: []Step{{Status: "RUNNING", For: 2 * time.Minute}, {Status: "SUCCEEDED"}}},
			{ID: "b", After: 2 * time.Minute, Script: []Step{{Status: "RUNNING", For: time.Minute}, {Status: "RUNNING", For: time.Minute}, {Status: "SKIPPED"}}},
		}})
	clk.Advance(time.Minute)
	if h := s.History(); len(h) != 3 {
		t.Fatalf("after 1m: %+v", h)
	}
	clk.Advance(time.Hour)
	want := []Change{
		{"j", "", "SUBMITTED", t0},
		{"j", "a", "RUNNING", t0},
		{"j", "", "RUNNING", t0.Add(time.Minute)},
		{"j", "a", "SUCCEEDED", t0.Add(2 * time.Minute)},
		{"j", "b", "RUNNING", t0.Add(2 * time.Minute)},
		{"j", "", "SUCCEEDED", t0.Add(3 * time.Minute)},
		{"j", "b", "SKIPPED", t0.Add(4 * time.Minute)},
	}
	h := s.History()
	if len(h) != len(want) {
		t.Fatalf("history %+v", h)
	}
	for i := range want {
		if h[i] != want[i] {
			t.Errorf("history[%d] = %+v, want %+v", i, h[i], want[i])
		}
	}
}

func TestEpochTimes(t *testing.T) {
	s, _ := newSim(t, Options{EpochTimes: true})
	s.AddJob(Job{ID: "j", Tasks: []Task{{ID: "t", Script: []Step{{Status: "SUCCEEDED"}}}}})
	a := do(t, "GET", jobURL(s, "v2", "j", ""), login(t, s), "")
	if !bytes.Contains(a.body, []byte(`"CREATED_AT":"1741276800000"`)) {
		t.Fatalf("%s", a.body)
	}
}

func TestHostileJobIDs(t *testing.T) {
	s, _ := newSim(t, Options{})
	tok := login(t, s)
	for _, id := range []string{"a/b", "..", "100%", "q?x", "日本"} {
		s.AddJob(Job{ID: id})
		esc := strings.NewReplacer("/", "%2F", "%", "%25", "?", "%3F", ".", "%2E").Replace(id)
		a := do(t, "GET", jobURL(s, "v2", esc, ""), tok, "")
		if a.code != 200 || a.obj["job"].(map[string]any)["JOB_ID"] != id {
			t.Errorf("%q: %d %s", id, a.code, a.body)
		}
	}
}

func TestInvalidOptionsAndJobs(t *testing.T) {
	for _, o := range []Options{{Envelope: "xml"}, {TokenTTL: -1}, {DefaultScript: []Step{{Status: "A"}, {Status: "B"}}}} {
		if _, err := newServer(o); err == nil {
			t.Errorf("options %+v accepted", o)
		}
	}
	s, _ := newSim(t, Options{})
	for _, j := range []Job{
		{},
		{ID: "x", Tasks: []Task{{ID: "t"}}},
		{ID: "y", Tasks: []Task{{ID: "t", Script: []Step{{Status: "A"}}}, {ID: "t", Script: []Step{{Status: "A"}}}}},
		{ID: "z", GoneAfter: -time.Second},
	} {
		if s.AddJobSpec(j) == nil {
			t.Errorf("job %+v accepted", j)
		}
	}
	s.AddJob(Job{ID: "dup"})
	if s.AddJobSpec(Job{ID: "dup"}) == nil {
		t.Error("duplicate job accepted")
	}
}

func TestExampleScenarioLoadsAndServes(t *testing.T) {
	f, err := os.Open("testdata/example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	opts, err := LoadScenario(f)
	if err != nil {
		t.Fatal(err)
	}
	if len(opts.Jobs) != 2 || len(opts.Faults) != 6 || opts.Users["jobbridge"] != "change-me" {
		t.Fatalf("%+v", opts)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, "127.0.0.1:0", opts) }()
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"", "jobs: [{id: a, script: [{status: X}, {status: Y}]}]", "typo: 1", "faults: [{kind: nope}]"} {
		if _, err := LoadScenario(strings.NewReader(bad)); err == nil {
			t.Errorf("scenario %q accepted", bad)
		}
	}
}
