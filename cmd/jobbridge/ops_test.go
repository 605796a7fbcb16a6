package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jobbridge/jobbridge/bridge/bridgetest"
	"github.com/jobbridge/jobbridge/bridge/natsconn/natstest"
	"github.com/jobbridge/jobbridge/pollers/tso/tsosim"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// runInProcess runs `jobbridge run` in this process until the test ends.
func runInProcess(t *testing.T, cfgPath string, stderr io.Writer) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	go func() { done <- run(ctx, []string{"run", "--config", cfgPath}, io.Discard, stderr) }()
	t.Cleanup(func() {
		cancel()
		select {
		case code := <-done:
			if code != 0 {
				t.Errorf("jobbridge run exited %d", code)
			}
		case <-time.After(30 * time.Second):
			t.Error("jobbridge run did not stop")
		}
	})
}

func get(url, token string) (int, string) { return call(http.MethodGet, url, token, "") }

// call sends one HTTP request, with the bearer token when given, and
// returns the status code and body (or the transport error's text).
func call(method, u, token, body string) (int, string) {
	req, _ := http.NewRequest(method, u, strings.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// metricSum adds up every sample of a metric family in a scrape.
func metricSum(body, name string) float64 {
	re := regexp.MustCompile(`(?m)^` + name + `(\{[^}]*\})? ([0-9.e+-]+)$`)
	sum := 0.0
	for _, m := range re.FindAllStringSubmatch(body, -1) {
		v, _ := strconv.ParseFloat(m[2], 64)
		sum += v
	}
	return sum
}

// TestMetricsMoveAndReadinessFollowsNATS scrapes /metrics of a running
// bridge and stops its NATS server: /readyz must turn 503 and back to 200
// when NATS returns, and the counters must move while jobs change.
func TestMetricsMoveAndReadinessFollowsNATS(t *testing.T) {
	dir := t.TempDir()
	storeDir := t.TempDir()
	ns := natstest.RunServer(t, natstest.Options{StoreDir: storeDir})
	natsPort := ns.Addr().(*net.TCPAddr).Port
	sim, err := tsosim.Listen("127.0.0.1:0", tsosim.Options{Users: map[string]string{"ops": "pw"}})
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Close()
	for i := 0; i < 5; i++ {
		sim.AddJob(fmt.Sprint("m", i), []tsosim.Step{{Status: "READY", For: 300 * time.Millisecond}, {Status: "ASSIGNED", For: 600 * time.Millisecond}, {Status: "COMPLETED"}})
	}
	httpPort := freePort(t)
	t.Setenv("TSO_PW", "pw")
	cfg := writeFile(t, dir, "c.yaml", fmt.Sprintf(`
dataDir: %s
log: {level: warn, format: json}
nats: {url: %s}
publish: {ackTimeout: 500ms}
schedule: {interval: 100ms, fastInterval: 100ms, idleInterval: 100ms}
http: {listen: 127.0.0.1:%d}
instances:
  - name: prod
    vendor: tso
    url: %s
    auth: {username: ops, password: {env: TSO_PW}}
    jobs: [m0, m1, m2, m3, m4]
`, dir, ns.ClientURL(), httpPort, sim.URL))
	runInProcess(t, cfg, io.Discard)
	base := fmt.Sprintf("http://127.0.0.1:%d", httpPort)
	bridgetest.WaitFor(t, 10*time.Second, "/readyz 200", func() bool { c, _ := get(base+"/readyz", ""); return c == 200 })
	_, first := get(base+"/metrics", "")
	bridgetest.WaitFor(t, 10*time.Second, "all jobs terminal", func() bool {
		_, body := get(base+"/metrics", "")
		return metricSum(body, "jobbridge_events_published_total") >= 15
	})
	_, second := get(base+"/metrics", "")
	for _, name := range []string{"jobbridge_polls_total", "jobbridge_events_published_total", "jobbridge_changes_detected_total", "jobbridge_poll_duration_seconds_count", "jobbridge_publish_latency_seconds_count"} {
		if metricSum(second, name) <= metricSum(first, name) {
			t.Errorf("%s did not move: %v then %v", name, metricSum(first, name), metricSum(second, name))
		}
	}
	if !strings.Contains(second, `jobbridge_watches{instance="prod",vendor="tso"} 5`) {
		t.Errorf("watch gauge missing:\n%s", second)
	}
	if c, _ := get(base+"/healthz", ""); c != 200 {
		t.Errorf("/healthz = %d", c)
	}
	if c, body := get(base+"/schemas/job-event-v1.json", ""); c != 200 || !strings.Contains(body, "urn:jobbridge:schema:cloudevent:v1") {
		t.Errorf("/schemas/job-event-v1.json = %d %.80s", c, body)
	}
	if c, _ := get(base+"/debug/pprof/", ""); c != 404 {
		t.Errorf("pprof must be off by default, got %d", c)
	}

	ns.Shutdown()
	ns.WaitForShutdown()
	bridgetest.WaitFor(t, 10*time.Second, "/readyz 503 with NATS down", func() bool { c, _ := get(base+"/readyz", ""); return c == 503 })
	if c, _ := get(base+"/healthz", ""); c != 200 {
		t.Errorf("/healthz must stay 200 while NATS is down, got %d", c)
	}
	natstest.RunServer(t, natstest.Options{StoreDir: storeDir, Port: natsPort})
	bridgetest.WaitFor(t, 15*time.Second, "/readyz 200 after NATS returns", func() bool { c, _ := get(base+"/readyz", ""); return c == 200 })
}

// TestSecretsNeverReachLogsOrEvents runs the bridge at debug level with
// every kind of credential set, one vendor instance with a wrong password
// (so failures are logged), and searches all output and every event.
func TestSecretsNeverReachLogsOrEvents(t *testing.T) {
	const (
		natsToken = "nats-TOKEN-0815-secret"
		tsoPW     = "tso-PASSWORD-4711-secret"
		wrongPW   = "wrong-PASSWORD-1234-secret"
		httpToken = "http-TOKEN-9999-secret"
	)
	ns := natstest.StartServer(t, &server.Options{JetStream: true, Authorization: natsToken})
	sim, err := tsosim.Listen("127.0.0.1:0", tsosim.Options{Users: map[string]string{"ops": tsoPW}})
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Close()
	sim.AddJob("s1", []tsosim.Step{{Status: "ASSIGNED", For: 300 * time.Millisecond}, {Status: "COMPLETED"}})
	dir := t.TempDir()
	t.Setenv("NATS_TOKEN", natsToken)
	t.Setenv("TSO_PW", tsoPW)
	t.Setenv("WRONG_PW", wrongPW)
	t.Setenv("HTTP_TOKEN", httpToken)
	httpPort := freePort(t)
	cfg := writeFile(t, dir, "c.yaml", fmt.Sprintf(`
dataDir: %s
log: {level: debug, format: json}
nats: {url: %s, token: {env: NATS_TOKEN}}
schedule: {interval: 100ms, fastInterval: 100ms, idleInterval: 100ms, errorBackoffMax: 200ms}
http: {listen: 127.0.0.1:%d, token: {env: HTTP_TOKEN}}
instances:
  - name: good
    vendor: tso
    url: %s
    auth: {username: ops, password: {env: TSO_PW}}
    jobs: [s1]
  - name: bad
    vendor: tso
    url: %s
    auth: {username: ops, password: {env: WRONG_PW}}
    jobs: [s1]
`, dir, ns.ClientURL(), httpPort, sim.URL, sim.URL))
	var logs syncBuffer
	runInProcess(t, cfg, &logs)
	base := fmt.Sprintf("http://127.0.0.1:%d", httpPort)
	bridgetest.WaitFor(t, 10*time.Second, "/metrics with token", func() bool { c, _ := get(base+"/metrics", httpToken); return c == 200 })
	if c, _ := get(base+"/metrics", ""); c != 401 {
		t.Errorf("/metrics without the token = %d, want 401", c)
	}
	if c, _ := get(base+"/metrics", "wrong"); c != 401 {
		t.Errorf("/metrics with a wrong token = %d, want 401", c)
	}
	bridgetest.WaitFor(t, 10*time.Second, "the bad instance's auth failure logged", func() bool {
		return strings.Contains(logs.String(), "vendor rejected the credentials")
	})
	nc, err := nats.Connect(ns.ClientURL(), nats.Token(natsToken))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	bridgetest.WaitFor(t, 10*time.Second, "good job terminal", func() bool {
		for _, e := range bridgetest.ReadStream(t, js, "JOBS") {
			if e.Data.Instance == "good" && e.Data.Terminal {
				return true
			}
		}
		return false
	})
	var all strings.Builder
	all.WriteString(logs.String())
	for _, e := range bridgetest.ReadStream(t, js, "JOBS") {
		all.Write(e.Body)
		for k, v := range e.Header {
			all.WriteString(k + strings.Join(v, ","))
		}
	}
	_, metrics := get(base+"/metrics", httpToken)
	all.WriteString(metrics)
	for _, secret := range []string{natsToken, tsoPW, wrongPW, httpToken} {
		if strings.Contains(all.String(), secret) {
			t.Errorf("secret %q appears in logs, events or metrics", secret)
		}
	}
	if !strings.Contains(logs.String(), `"level":"debug"`) {
		t.Error("the run did not log at debug level; the test would prove nothing")
	}
}
