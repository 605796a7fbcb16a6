// Package examples tests the consumer examples shipped in deploy/examples
// against a real bridge, so that the code users copy keeps working with
// the events the bridge actually publishes.
package examples

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jobbridge/jobbridge/bridge"
	"github.com/jobbridge/jobbridge/bridge/bridgetest"
	"github.com/jobbridge/jobbridge/bridge/natsconn/natstest"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

const jsDir = "js-consumer"

// jsDeps makes sure node can run the example: node and npm must be there
// (a missing tool fails the test, it does not skip it), and the locked
// packages are installed with `npm ci` when node_modules is missing.
func jsDeps(t *testing.T) string {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatalf("node is not on PATH: the JavaScript example needs Node.js 20 or newer and npm (Debian: apt-get install nodejs npm)")
	}
	if _, err := exec.LookPath("npm"); err != nil {
		t.Fatalf("npm is not on PATH: it installs the example's packages (Debian: apt-get install npm)")
	}
	out, err := exec.Command(node, "--version").Output()
	if err != nil {
		t.Fatalf("node --version: %v", err)
	}
	if major, _ := strconv.Atoi(strings.SplitN(strings.TrimPrefix(strings.TrimSpace(string(out)), "v"), ".", 2)[0]); major < 20 {
		t.Fatalf("node %s is too old: the example needs Node.js 20 or newer", strings.TrimSpace(string(out)))
	}
	need := []string{"nats", "cloudevents", "ajv", "ajv-formats"}
	missing := false
	for _, p := range need {
		if _, err := os.Stat(filepath.Join(jsDir, "node_modules", p, "package.json")); err != nil {
			missing = true
		}
	}
	if missing {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "npm", "ci", "--no-audit", "--no-fund")
		cmd.Dir = jsDir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("npm ci in deploy/examples/%s failed (run `make js-deps` to see why): %v\n%s", jsDir, err, out)
		}
	}
	return node
}

// nodeResult is one finished run of consumer.js.
type nodeResult struct {
	code           int
	stdout, stderr string
}

func runConsumer(t *testing.T, node string, args ...string) nodeResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, append([]string{"consumer.js"}, args...)...)
	cmd.Dir = jsDir
	cmd.Env = append(os.Environ(), "NATS_URL=", "NATS_CREDS=", "NATS_USER=", "NATS_TOKEN=")
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	r := nodeResult{stdout: out.String(), stderr: errOut.String()}
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			t.Fatalf("run node consumer.js: %v", err)
		}
		r.code = ee.ExitCode()
	}
	return r
}

// lines returns the output lines that start with prefix.
func lines(out, prefix string) []string {
	var l []string
	for _, s := range strings.Split(out, "\n") {
		if strings.HasPrefix(s, prefix) {
			l = append(l, s)
		}
	}
	return l
}

func ids(okLines []string) []string {
	var out []string
	for _, l := range okLines {
		if i := strings.LastIndex(l, " id="); i >= 0 {
			out = append(out, l[i+4:])
		}
	}
	sort.Strings(out)
	return out
}

func TestJSConsumerValidatesBridgeEvents(t *testing.T) {
	node := jsDeps(t)

	srv := natstest.RunServer(t, natstest.Options{})
	p := bridgetest.NewPoller()
	h := bridgetest.StartBridge(t, natstest.Connect(t, srv), []bridge.Instance{{
		Vendor: "fake", Name: "lab.1", Poller: p, Labels: map[string]string{"site": "fra"},
	}}, nil)

	// Events of every kind the schema describes, with ids that need escaping.
	const etl, batch, gone = "etl/42", "batch 7 ü", "gone.1"
	pct := func(v float64) *bridge.Progress { return &bridge.Progress{Percent: &v} }
	times := map[string]bridge.VendorTime{"startTime": {Raw: "1700000000000", Normalized: time.UnixMilli(1700000000000).UTC()}}
	p.Set(etl, bridge.StatePending, "Queued")
	p.SetObservation(batch, bridge.Observation{State: bridge.StateRunning, Native: "Running",
		Tasks: []bridge.Observation{{Job: bridge.JobRef{Task: "t.1"}, State: bridge.StateRunning, Native: "RUNNING"}}})
	p.Set(gone, bridge.StateRunning, "Running")
	for _, id := range []string{etl, batch, gone} {
		h.Watch("fake", "lab.1", id)
	}
	h.WaitEvents(etl, 1, 10*time.Second)
	p.SetObservation(etl, bridge.Observation{State: bridge.StateRunning, Native: "Running", Progress: pct(50), Times: times})
	h.WaitEvents(etl, 2, 10*time.Second)
	p.SetObservation(etl, bridge.Observation{State: bridge.StateRunning, Native: "Running", Progress: pct(80), Times: times})
	h.WaitEvents(etl, 3, 10*time.Second)
	p.SetObservation(etl, bridge.Observation{State: bridge.StateSucceeded, Native: "Completed", Outcome: map[string]string{"exit_code": "0"}, Times: times})
	h.WaitEvents(batch, 2, 10*time.Second)
	p.SetObservation(batch, bridge.Observation{State: bridge.StateFailed, Native: "Error",
		Tasks: []bridge.Observation{{Job: bridge.JobRef{Task: "t.1"}, State: bridge.StateSucceeded, Native: "DONE"}}})
	h.WaitEvents(gone, 1, 10*time.Second)
	p.Delete(gone)
	h.WaitEvents(etl, 4, 10*time.Second)
	h.WaitEvents(batch, 4, 10*time.Second)
	h.WaitEvents(gone, 2, 10*time.Second)

	all := h.Events() // also checks each against the schema with the Go validator
	if len(all) != 10 {
		t.Fatalf("stream holds %d events, want 10: %v", len(all), bridgetest.Summary(all))
	}
	var want []string
	for _, r := range all {
		want = append(want, r.Event["id"].(string))
	}
	sort.Strings(want)
	url := srv.ClientURL()

	t.Run("ordered", func(t *testing.T) {
		r := runConsumer(t, node, "--server", url, "--count", strconv.Itoa(len(all)), "--timeout", "30")
		if r.code != 0 {
			t.Fatalf("exit %d, want 0\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
		}
		ok := lines(r.stdout, "ok ")
		if got := ids(ok); strings.Join(got, ",") != strings.Join(want, ",") {
			t.Fatalf("validated ids %v, want the stream's %v\nstdout:\n%s", got, want, r.stdout)
		}
		if f := lines(r.stdout, "FAIL"); len(f) != 0 {
			t.Fatalf("failures: %v", f)
		}
		if !strings.Contains(r.stdout, `"batch 7 ü/t.1"`) || !strings.Contains(r.stdout, "io.jobbridge.job.vanished") {
			t.Errorf("task or vanished event missing from the output:\n%s", r.stdout)
		}
	})

	t.Run("durable with a filter", func(t *testing.T) {
		r := runConsumer(t, node, "--server", url, "--durable", "audit", "--subject", "jobs.fake.*.failed.>", "--count", "1", "--timeout", "30")
		if r.code != 0 {
			t.Fatalf("exit %d, want 0\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
		}
		ok := lines(r.stdout, "ok ")
		if len(ok) != 1 || !strings.Contains(ok[0], "io.jobbridge.job.failed") || !strings.Contains(ok[0], `"batch 7 ü"`) {
			t.Fatalf("want the one failed event of %q, got:\n%s", batch, r.stdout)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		c, err := h.JS.Consumer(ctx, "JOBS", "audit")
		if err != nil {
			t.Fatalf("durable consumer audit: %v", err)
		}
		info, err := c.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if info.Config.AckPolicy != jetstream.AckExplicitPolicy || info.AckFloor.Consumer != 1 {
			t.Errorf("consumer audit: ack policy %v, ack floor %d; want explicit acks and the event acked", info.Config.AckPolicy, info.AckFloor.Consumer)
		}
	})

	t.Run("an event that breaks the contract fails the run", func(t *testing.T) {
		// A copy of a real event whose sequence is not zero-padded: a valid
		// CloudEvent, but not a valid jobbridge event.
		var ev map[string]any
		if err := json.Unmarshal(all[0].Body, &ev); err != nil {
			t.Fatal(err)
		}
		ev["id"] = strings.Repeat("0", 32)
		ev["sequence"] = "1"
		body, _ := json.Marshal(ev)
		m := &nats.Msg{Subject: all[0].Subject, Data: body, Header: nats.Header{}}
		m.Header.Set("Content-Type", bridge.StructuredMediaType)
		m.Header.Set(nats.MsgIdHdr, "broken")
		if _, err := h.JS.PublishMsg(context.Background(), m); err != nil {
			t.Fatal(err)
		}
		n := len(all) + 1
		r := runConsumer(t, node, "--server", url, "--count", strconv.Itoa(n), "--timeout", "30")
		if r.code != 1 {
			t.Fatalf("exit %d, want 1\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
		}
		fail := lines(r.stdout, "FAIL")
		if len(fail) != 1 || !strings.Contains(fail[0], "/sequence") || len(lines(r.stdout, "ok ")) != len(all) {
			t.Fatalf("want %d ok lines and one FAIL about /sequence, got:\n%s", len(all), r.stdout)
		}
		if !strings.Contains(r.stderr, fmt.Sprintf("%d events, %d valid, 1 invalid", n, len(all))) {
			t.Errorf("summary missing: %s", r.stderr)
		}
	})

	t.Run("missing schemas are reported", func(t *testing.T) {
		r := runConsumer(t, node, "--server", url, "--schemas", t.TempDir(), "--count", "1")
		if r.code != 2 || !strings.Contains(r.stderr, "jobbridge schema job-event-data-v1.json") {
			t.Fatalf("exit %d, stderr %q: want 2 and how to get the schemas", r.code, r.stderr)
		}
	})
}
