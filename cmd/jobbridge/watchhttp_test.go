package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jobbridge/jobbridge/bridge"
	"github.com/jobbridge/jobbridge/bridge/bridgetest"
	"github.com/jobbridge/jobbridge/bridge/natsconn/natstest"
	"github.com/jobbridge/jobbridge/pollers/tso/tsosim"
)

// TestWatchHTTPOnEveryReplicaAndStatus runs two scale-out replicas in this
// process: a watch added over HTTP on one is read and removed on the other,
// only with the bearer token, and `jobbridge status` shows both replicas.
func TestWatchHTTPOnEveryReplicaAndStatus(t *testing.T) {
	ns := natstest.RunServer(t, natstest.Options{})
	sim, err := tsosim.Listen("127.0.0.1:0", tsosim.Options{Users: map[string]string{"ops": "pw"}})
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Close()
	sim.AddJob("job 1/x", []tsosim.Step{{Status: "ASSIGNED"}})
	t.Setenv("TSO_PW", "pw")
	t.Setenv("HTTP_TOKEN", "t0ken-for-tests")
	var bases []string
	for _, id := range []string{"web-a", "web-b"} {
		dir := t.TempDir()
		port := freePort(t)
		cfg := writeFile(t, dir, "c.yaml", fmt.Sprintf(`
dataDir: %s
log: {level: warn, format: json}
nats: {url: %s}
schedule: {interval: 100ms, fastInterval: 100ms, idleInterval: 100ms}
http: {listen: 127.0.0.1:%d, token: {env: HTTP_TOKEN}}
cluster: {enabled: true, replicaID: %s, shards: 8, leaseTTL: 2s}
instances:
  - name: prod
    vendor: tso
    url: %s
    auth: {username: ops, password: {env: TSO_PW}}
`, dir, ns.ClientURL(), port, id, sim.URL))
		runInProcess(t, cfg, io.Discard)
		bases = append(bases, fmt.Sprintf("http://127.0.0.1:%d", port))
	}
	for _, b := range bases {
		bridgetest.WaitFor(t, 30*time.Second, "ready", func() bool { c, _ := call("GET", b+"/readyz", "", ""); return c == 200 })
	}
	const token = "t0ken-for-tests"
	body := `{"vendor":"tso","instance":"prod","job":"job 1/x","labels":{"team":"ops"}}`
	if c, out := call("POST", bases[0]+"/v1/watches", "", body); c != http.StatusUnauthorized {
		t.Errorf("POST without token: %d %s", c, out)
	}
	if c, out := call("POST", bases[0]+"/v1/watches", "wrong", body); c != http.StatusUnauthorized {
		t.Errorf("POST with a wrong token: %d %s", c, out)
	}
	if c, out := call("POST", bases[0]+"/v1/watches", token, body); c != http.StatusCreated {
		t.Fatalf("POST: %d %s", c, out)
	}
	jobURL := bases[1] + "/v1/watches/tso/prod/" + url.PathEscape("job 1/x")
	if c, out := call("GET", jobURL, token, ""); c != http.StatusOK || !strings.Contains(out, `"team":"ops"`) {
		t.Errorf("GET on the other replica: %d %s", c, out)
	}
	if c, out := call("GET", bases[1]+"/v1/watches?vendor=tso&limit=10", token, ""); c != http.StatusOK || !strings.Contains(out, "job 1/x") {
		t.Errorf("list on the other replica: %d %s", c, out)
	}

	var out bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	bridgetest.WaitFor(t, 30*time.Second, "status shows both replicas sharing the shards", func() bool {
		out.Reset()
		if code := run(ctx, []string{"status", "--nats", ns.ClientURL(), "--json"}, &out, io.Discard); code != 0 {
			return false
		}
		var st bridge.ClusterStatus
		if json.Unmarshal(out.Bytes(), &st) != nil || len(st.Replicas) != 2 || st.Watches != 1 || len(st.Unowned) != 0 {
			return false
		}
		for _, r := range st.Replicas {
			if len(r.LeasedShards) != 4 || r.Stale {
				return false
			}
		}
		return true
	})
	out.Reset()
	if code := run(ctx, []string{"status", "--nats", ns.ClientURL()}, &out, io.Discard); code != 0 {
		t.Fatalf("jobbridge status exited %d", code)
	}
	s := out.String()
	for _, want := range []string{"8 shards, 2 replicas, jobs watched: 1", "web-a", "web-b", "shard.7", "REPLICA", "LEASE"} {
		if !strings.Contains(s, want) {
			t.Errorf("jobbridge status lacks %q:\n%s", want, s)
		}
	}
	t.Logf("jobbridge status:\n%s", s)

	if c, out := call("DELETE", jobURL, token, ""); c != http.StatusOK {
		t.Errorf("DELETE on the other replica: %d %s", c, out)
	}
	if c, _ := call("GET", bases[0]+"/v1/watches/tso/prod/"+url.PathEscape("job 1/x"), token, ""); c != http.StatusNotFound {
		t.Errorf("GET after DELETE: %d", c)
	}
}
