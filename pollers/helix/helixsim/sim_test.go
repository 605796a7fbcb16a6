package helixsim_test

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jobbridge/jobbridge/pollers/helix/helixsim"
	"github.com/jobbridge/jobbridge/pollers/pollkit"
)

var t0 = time.Date(2022, 9, 8, 14, 56, 0, 0, time.UTC)

type client struct {
	t   *testing.T
	sim *helixsim.Server
	jwt string
}

func newSim(t *testing.T, opts helixsim.Options) (*helixsim.Server, *pollkit.ManualClock) {
	t.Helper()
	clk := pollkit.NewManualClock(t0)
	opts.Clock = clk
	s := helixsim.NewServer(opts)
	t.Cleanup(s.Close)
	return s, clk
}

func do(t *testing.T, method, url, token string, body string) (int, http.Header, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, b
}

func (c *client) login(key, secret string) int {
	c.t.Helper()
	code, _, b := do(c.t, "POST", c.sim.PortalURL+helixsim.LoginPath, "", fmt.Sprintf(`{"access_key":%q,"access_secret_key":%q}`, key, secret))
	if code == 200 {
		var out struct {
			JWT string `json:"json_web_token"`
		}
		if err := json.Unmarshal(b, &out); err != nil || out.JWT == "" {
			c.t.Fatalf("login answer %s", b)
		}
		c.jwt = out.JWT
	}
	return code
}

func (c *client) status(id string) (int, string) {
	c.t.Helper()
	code, _, b := do(c.t, "GET", c.sim.URL+helixsim.ETLsPath+id+"/status", c.jwt, "")
	return code, string(b)
}

func claims(t *testing.T, jwt string) map[string]any {
	t.Helper()
	parts := strings.Split(jwt, ".")
	if len(parts) != 3 {
		t.Fatalf("JWT %q has %d parts", jwt, len(parts))
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestLoginIssuesAJWTThatExpiresOnTheClock(t *testing.T) {
	sim, clk := newSim(t, helixsim.Options{ETLs: []helixsim.ETL{{ID: 321}}})
	c := &client{t: t, sim: sim}
	if code := c.login("sim-access-key", "wrong"); code != 401 {
		t.Fatalf("wrong secret: %d", code)
	}
	if code, _ := c.status("321"); code != 401 {
		t.Fatalf("no token: %d", code)
	}
	if code := c.login("sim-access-key", "sim-secret-key"); code != 200 {
		t.Fatalf("login: %d", code)
	}
	if exp := claims(t, c.jwt)["exp"]; exp != float64(t0.Add(15*time.Minute).Unix()) {
		t.Fatalf("exp claim %v, want 15 minutes after %v on the simulator's clock", exp, t0)
	}
	if code, body := c.status("321"); code != 200 {
		t.Fatalf("status with a fresh JWT: %d %s", code, body)
	}
	clk.Advance(15 * time.Minute)
	if code, _ := c.status("321"); code != 401 {
		t.Fatalf("status with an expired JWT: %d", code)
	}
	c.login("sim-access-key", "sim-secret-key")
	sim.ExpireTokens()
	if code, _ := c.status("321"); code != 401 {
		t.Fatalf("status with a revoked JWT: %d", code)
	}
	st := sim.Stats()
	if st.Logins != 2 || st.FailedLogins != 1 || st.Unauthorized != 3 {
		t.Fatalf("stats %+v", st)
	}
}

func TestTenantAndJWTWithoutExp(t *testing.T) {
	sim, clk := newSim(t, helixsim.Options{
		AccessKeys:    []helixsim.AccessKey{{ID: "ak", Secret: "sk", TenantID: "1234"}},
		JWTWithoutExp: true, JWTTTL: 5 * time.Minute, ETLs: []helixsim.ETL{{ID: 1}},
	})
	code, _, _ := do(t, "POST", sim.URL+helixsim.LoginPath, "", `{"access_key":"ak","access_secret_key":"sk","tenant_id":"999"}`)
	if code != 401 {
		t.Fatalf("wrong tenant: %d", code)
	}
	c := &client{t: t, sim: sim}
	if code := c.login("ak", "sk"); code != 200 {
		t.Fatalf("login without tenant: %d", code)
	}
	if _, has := claims(t, c.jwt)["exp"]; has {
		t.Fatal("JWTWithoutExp still wrote exp")
	}
	clk.Advance(5 * time.Minute)
	if code, _ := c.status("1"); code != 401 {
		t.Fatalf("the server must still expire the JWT after JWTTTL: %d", code)
	}
}

func TestOnPremAPIToken(t *testing.T) {
	sim, _ := newSim(t, helixsim.Options{APITokens: []string{"onprem-key"}, ETLs: []helixsim.ETL{{ID: 1}}})
	c := &client{t: t, sim: sim, jwt: "onprem-key"}
	if code, _ := c.status("1"); code != 200 {
		t.Fatalf("API key: %d", code)
	}
	if code := c.login("sim-access-key", "sim-secret-key"); code != 401 {
		t.Fatalf("with only API tokens configured, the default access key must not exist: %d", code)
	}
}

func TestStatusPayloadShapes(t *testing.T) {
	sim, clk := newSim(t, helixsim.Options{ETLs: []helixsim.ETL{
		{ID: 321, TaskID: 467, Initial: "WAITING", Runs: []helixsim.Run{{At: time.Minute, For: time.Minute, ExitCode: "ERROR", Then: "ENDED"}}},
		{ID: 1, Empty: helixsim.EmptyMissing},
		{ID: 2, Empty: helixsim.EmptyNull},
		{ID: 3, Empty: helixsim.EmptyString},
		{ID: 4, Service: true, Initial: "SERVICE_OFF", Empty: helixsim.EmptyNull, Steps: []helixsim.ServiceStep{{At: time.Minute, Status: "SERVICE_ON"}}},
	}})
	c := &client{t: t, sim: sim}
	c.login("sim-access-key", "sim-secret-key")
	want := map[string]string{
		"321": `{"status": "WAITING", "task_id": 467}`,
		"1":   `{"task_id": 147}`,
		"2":   `{"status": null, "task_id": 148, "exit_code": null, "last_exec_ts": null}`,
		"3":   `{"status": "", "task_id": 149, "exit_code": "", "last_exec_ts": ""}`,
		"4":   `{"status": "SERVICE_OFF", "task_id": 150, "exit_code": null, "last_exec_ts": null}`,
	}
	for id, w := range want {
		if code, body := c.status(id); code != 200 || body != w {
			t.Errorf("ETL %s: %d %s, want %s", id, code, body, w)
		}
	}
	clk.Advance(90 * time.Second)
	if _, body := c.status("321"); body != `{"status": "RUNNING", "task_id": 467}` {
		t.Errorf("running: %s", body)
	}
	if _, body := c.status("4"); body != `{"status": "SERVICE_ON", "task_id": 150, "exit_code": null, "last_exec_ts": "2022-09-08T14:57:00Z"}` {
		t.Errorf("service on: %s", body)
	}
	clk.Advance(time.Minute)
	// The vendor's first example, down to the task_id that differs from the id.
	if _, body := c.status("321"); body != `{"status": "ENDED", "task_id": 467, "exit_code": "ERROR", "last_exec_ts": "2022-09-08T14:57:00Z"}` {
		t.Errorf("ended: %s", body)
	}
	for _, id := range []string{"999", "abc", "%2e%2e"} {
		if code, body := c.status(id); code != 400 || !strings.Contains(body, "ETL not found") {
			t.Errorf("unknown ETL %s: %d %s, want the documented 400 ETL not found", id, code, body)
		}
	}
}

func TestRunsHistoryAndStampModes(t *testing.T) {
	for _, atStart := range []bool{false, true} {
		t.Run(fmt.Sprintf("stampAtStart=%v", atStart), func(t *testing.T) {
			sim, clk := newSim(t, helixsim.Options{StampAtStart: atStart, ETLs: []helixsim.ETL{{ID: 7, Initial: "WAITING", Runs: []helixsim.Run{
				{At: time.Minute, For: time.Minute},
				{At: 5 * time.Minute, For: 10 * time.Second, ExitCode: "WARNING"},
			}}}})
			clk.Advance(90 * time.Second)
			_, _, ts, _ := sim.Status(7)
			if want := map[bool]string{false: "", true: "2022-09-08T14:57:00Z"}[atStart]; ts != want {
				t.Fatalf("last_exec_ts while running = %q, want %q", ts, want)
			}
			clk.Advance(10 * time.Minute)
			h := sim.History()
			var got []string
			ends := 0
			for _, c := range h {
				got = append(got, fmt.Sprintf("%s %s/%s/%s", c.At.Sub(t0), c.Status, c.ExitCode, c.LastExecTS))
				if c.RunEnded {
					ends++
				}
			}
			runningTS := map[bool][2]string{false: {"", "2022-09-08T14:57:00Z"}, true: {"2022-09-08T14:57:00Z", "2022-09-08T15:01:00Z"}}[atStart]
			runningExit := "OK"
			want := []string{
				"0s WAITING//",
				"1m0s RUNNING//" + runningTS[0],
				"2m0s WAITING/OK/2022-09-08T14:57:00Z",
				"5m0s RUNNING/" + runningExit + "/" + runningTS[1],
				"5m10s WAITING/WARNING/2022-09-08T15:01:00Z",
			}
			if strings.Join(got, "\n") != strings.Join(want, "\n") || ends != 2 {
				t.Fatalf("history:\n%s\nwant:\n%s\n(%d run ends)", strings.Join(got, "\n"), strings.Join(want, "\n"), ends)
			}
		})
	}
}

func TestRunEndpointAndService(t *testing.T) {
	sim, clk := newSim(t, helixsim.Options{RunDuration: time.Minute, ETLs: []helixsim.ETL{{ID: 5}, {ID: 6, Service: true}}})
	c := &client{t: t, sim: sim}
	c.login("sim-access-key", "sim-secret-key")
	code, _, b := do(t, "POST", sim.URL+helixsim.ETLsPath+"5/run", c.jwt, `{"run_execution_properties":{"a":"b"}}`)
	if code != 200 || !strings.Contains(string(b), `"request_status":"OK"`) {
		t.Fatalf("run: %d %s", code, b)
	}
	if st, _, _, _ := sim.Status(5); st != "RUNNING" {
		t.Fatalf("after run: %q", st)
	}
	if _, _, b := do(t, "POST", sim.URL+helixsim.ETLsPath+"5/run", c.jwt, ``); !strings.Contains(string(b), `"ERROR"`) {
		t.Fatalf("a second run while running must be refused: %s", b)
	}
	clk.Advance(time.Minute)
	if st, exit, ts, _ := sim.Status(5); st != "WAITING" || exit != "OK" || ts != "2022-09-08T14:56:00Z" {
		t.Fatalf("after the run: %q %q %q", st, exit, ts)
	}
	if _, _, b := do(t, "POST", sim.URL+helixsim.ETLsPath+"6/run", c.jwt, ``); !strings.Contains(string(b), `"task_execution_request_id":-1`) {
		t.Fatalf("service run: %s", b)
	}
	if st, _, _, _ := sim.Status(6); st != "SERVICE_ON" {
		t.Fatalf("service after run: %q", st)
	}
	if err := sim.SetService(6, "SERVICE_OFF"); err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Second)
	if st, _, _, _ := sim.Status(6); st != "SERVICE_OFF" {
		t.Fatalf("service after SetService: %q", st)
	}
	if err := sim.StartRun(6, time.Second, "", ""); err == nil {
		t.Fatal("StartRun on a service ETL must fail")
	}
}

func TestListAndRemove(t *testing.T) {
	sim, _ := newSim(t, helixsim.Options{ETLs: []helixsim.ETL{{ID: 53, Name: "prod-a"}, {ID: 54, Name: "test-b"}}})
	c := &client{t: t, sim: sim}
	c.login("sim-access-key", "sim-secret-key")
	code, _, b := do(t, "GET", sim.URL+helixsim.ETLsPath, c.jwt, "")
	want := `[{"name":"prod-a","etl_id":53,"run_configurations":[{"name":"Default","active":true,"run_configuration_id":536}]},{"name":"test-b","etl_id":54,"run_configurations":[{"name":"Default","active":true,"run_configuration_id":546}]}]`
	if code != 200 || string(b) != want {
		t.Fatalf("list: %d %s", code, b)
	}
	sim.RemoveETL(53)
	_, _, b = do(t, "GET", sim.URL+"/opt/api/v1/backend/etls", c.jwt, "")
	if strings.Contains(string(b), "prod-a") || !strings.Contains(string(b), "test-b") {
		t.Fatalf("list after removal: %s", b)
	}
	if code, _ := c.status("53"); code != 400 {
		t.Fatalf("removed ETL: %d", code)
	}
}

func TestLiteral204OnTheWire(t *testing.T) {
	sim, _ := newSim(t, helixsim.Options{APITokens: []string{"k"}, Literal204: true, ETLs: []helixsim.ETL{{ID: 1, Initial: "WAITING"}}})
	conn, err := net.Dial("tcp", strings.TrimPrefix(sim.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "GET %s1/status HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer k\r\n\r\n", helixsim.ETLsPath)
	raw, _ := io.ReadAll(bufio.NewReader(conn))
	if !bytes.HasPrefix(raw, []byte("HTTP/1.1 204 OK\r\n")) || !bytes.HasSuffix(raw, []byte(`{"status": "WAITING", "task_id": 147}`)) {
		t.Fatalf("wire bytes %q: want the status line 204 OK and the JSON body", raw)
	}
	// Go's client, like any HTTP client, drops a body after 204.
	code, _, body := do(t, "GET", sim.URL+helixsim.ETLsPath+"1/status", "k", "")
	if code != 204 || len(body) != 0 {
		t.Fatalf("net/http saw %d %q", code, body)
	}
	sim.SetLiteral204(false)
	if code, _, body := do(t, "GET", sim.URL+helixsim.ETLsPath+"1/status", "k", ""); code != 200 || len(body) == 0 {
		t.Fatalf("after SetLiteral204(false): %d %q", code, body)
	}
}

func TestSeparatePortal(t *testing.T) {
	sim, _ := newSim(t, helixsim.Options{SeparatePortal: true})
	if sim.PortalURL == sim.URL {
		t.Fatal("no separate portal URL")
	}
	if code, _, _ := do(t, "POST", sim.URL+helixsim.LoginPath, "", `{"access_key":"sim-access-key","access_secret_key":"sim-secret-key"}`); code != 404 {
		t.Fatalf("login on the API host: %d, want 404", code)
	}
	if code, _, _ := do(t, "POST", sim.PortalURL+helixsim.LoginPath, "", `{"access_key":"sim-access-key","access_secret_key":"sim-secret-key"}`); code != 200 {
		t.Fatalf("login on the portal: %d", code)
	}
	if code, _, _ := do(t, "GET", sim.PortalURL+helixsim.ETLsPath, "", ""); code != 404 {
		t.Fatalf("API on the portal: %d, want 404", code)
	}
}

func TestFaults(t *testing.T) {
	sim, clk := newSim(t, helixsim.Options{APITokens: []string{"k"}, ETLs: []helixsim.ETL{{ID: 1}}})
	get := func() (int, string) {
		code, _, b := do(t, "GET", sim.URL+helixsim.ETLsPath+"1/status", "k", "")
		return code, string(b)
	}
	for _, f := range []helixsim.Fault{
		{Kind: helixsim.FaultStatus, Status: 503, Endpoint: helixsim.EndpointStatus},
		{Kind: helixsim.FaultMalformed, Endpoint: helixsim.EndpointStatus},
		{Kind: helixsim.FaultHTML},
		{Kind: helixsim.FaultEmpty, Endpoint: helixsim.EndpointStatus},
	} {
		if err := sim.InjectFault(f); err != nil {
			t.Fatal(err)
		}
	}
	for i, want := range []struct {
		code int
		body string
	}{{503, "<!doctype html>"}, {200, `{"status": "RUNN`}, {200, "<!DOCTYPE html>"}, {200, ""}, {200, `{"task_id": 147}`}} {
		code, body := get()
		if code != want.code || !strings.HasPrefix(body, want.body) || (want.body == "" && body != "") {
			t.Errorf("request %d: %d %q, want %d %q…", i, code, body, want.code, want.body)
		}
	}
	// A scheduled fault fires on the clock.
	if err := sim.InjectFault(helixsim.Fault{Kind: helixsim.FaultStatus, At: time.Minute, Count: 2}); err != nil {
		t.Fatal(err)
	}
	if code, _ := get(); code != 200 {
		t.Fatalf("fault fired early: %d", code)
	}
	clk.Advance(time.Minute)
	if c1, _ := get(); c1 != 500 {
		t.Fatalf("scheduled fault: %d", c1)
	}
	for _, bad := range []helixsim.Fault{{Kind: "nope"}, {Kind: helixsim.FaultDelay}, {Kind: helixsim.FaultLiteral204}, {Kind: helixsim.FaultHTML, Endpoint: "x"}} {
		if sim.InjectFault(bad) == nil {
			t.Errorf("fault %+v accepted", bad)
		}
	}
}

func TestInvalidETLs(t *testing.T) {
	for name, e := range map[string]helixsim.ETL{
		"zero id":         {ID: 0},
		"overlap":         {ID: 1, Runs: []helixsim.Run{{At: time.Minute, For: time.Minute}, {At: 90 * time.Second, For: time.Second}}},
		"same second":     {ID: 1, Runs: []helixsim.Run{{At: time.Second, For: 100 * time.Millisecond}, {At: 1500 * time.Millisecond, For: 100 * time.Millisecond}}},
		"no duration":     {ID: 1, Runs: []helixsim.Run{{At: time.Second}}},
		"service runs":    {ID: 1, Service: true, Runs: []helixsim.Run{{At: time.Second, For: time.Second}}},
		"batch steps":     {ID: 1, Steps: []helixsim.ServiceStep{{At: time.Second, Status: "SERVICE_ON"}}},
		"bad empty style": {ID: 1, Empty: "nothing"},
	} {
		if _, err := helixsim.Listen("127.0.0.1:0", helixsim.Options{Clock: pollkit.NewManualClock(t0), ETLs: []helixsim.ETL{e}}); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestExampleScenarioLoads(t *testing.T) {
	f, err := os.Open("testdata/example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	opts, err := helixsim.LoadScenario(f)
	if err != nil {
		t.Fatalf("LoadScenario: %v", err)
	}
	if len(opts.ETLs) != 4 || len(opts.Faults) != 6 || opts.AccessKeys[0].TenantID != "1234" || opts.JWTTTL != 15*time.Minute {
		t.Fatalf("loaded %+v", opts)
	}
	clk := pollkit.NewManualClock(t0)
	opts.Clock = clk
	sim := helixsim.NewServer(opts)
	defer sim.Close()
	clk.Advance(10 * time.Minute)
	ends := 0
	for _, c := range sim.History() {
		if c.RunEnded {
			ends++
		}
	}
	if ends != 5 {
		t.Fatalf("%d run ends in the example, want 5", ends)
	}
	for _, bad := range []string{"", "etls: [{id: 1, bogus: true}]", "faults: [{kind: nope}]", "jwtTTL: -1m"} {
		if _, err := helixsim.LoadScenario(strings.NewReader(bad)); err == nil {
			t.Errorf("scenario %q accepted", bad)
		}
	}
}
