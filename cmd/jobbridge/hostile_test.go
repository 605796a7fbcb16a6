package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jobbridge/jobbridge/bridge"
	"github.com/jobbridge/jobbridge/bridge/bridgetest"
	"github.com/jobbridge/jobbridge/bridge/natsconn/natstest"
	"github.com/jobbridge/jobbridge/pollers/tso/tsosim"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// hostileIDs are job ids a vendor may really return (it accepts anything
// its users type) and that are built to break subjects: wildcards, the
// token separator, white space, slashes and percent signs that a URL path
// would mangle, an id that looks like an escape, non-ASCII, and one at the
// length limit. Each must be polled, published under a subject that
// matches it alone, and carried verbatim in the event.
var hostileIDs = []string{
	"*", ">", "a.b.c", "..", "with space", "a/b/../c", "100%25", "_41", "$SYS", "job*>.",
	"ünïcödé-☃", `"quoted" and \back\slashed`, strings.Repeat("L", bridge.MaxJobIDBytes),
}

// TestHostileJobIDsReachTheirOwnSubjectOnly runs the bridge on the TSO
// simulator with hostileIDs and checks every event: the subject parses
// back to the job, a per-job filter selects that job's events and no
// other's, and data.job is the id byte for byte.
func TestHostileJobIDsReachTheirOwnSubjectOnly(t *testing.T) {
	const instance = "p.r*o>d_2E" // wildcards, a dot and a fake escape: escaped like job ids
	h := startHostileRig(t, instance)
	for _, id := range hostileIDs {
		h.sim.AddJob(id, []tsosim.Step{{Status: "READY", For: 300 * time.Millisecond}, {Status: "ASSIGNED", For: 400 * time.Millisecond}, {Status: "COMPLETED"}})
		if _, err := h.bridgeClient.Add(h.ctx, bridge.Watch{Vendor: "tso", Instance: instance, Job: id}); err != nil {
			t.Fatalf("watch %q: %v", id, err)
		}
	}
	bridgetest.WaitFor(t, 60*time.Second, "every hostile job's terminal event", func() bool {
		done := 0
		for _, e := range bridgetest.ReadStream(t, h.js, "JOBS") {
			if e.Data.Terminal {
				done++
			}
		}
		return done == len(hostileIDs)
	})
	events := bridgetest.ReadStream(t, h.js, "JOBS")
	subs := bridge.Subjects{Prefix: "jobs"}
	for _, id := range hostileIDs {
		var mine []string
		for _, e := range events {
			ref, _, err := subs.Parse(e.Subject)
			if err != nil {
				t.Errorf("subject %q does not parse: %v", e.Subject, err)
				continue
			}
			if ref.ID != e.Data.Job || ref.Instance != instance || e.Data.Instance != instance {
				t.Errorf("subject %q names job %q of instance %q; data says job %q of %q", e.Subject, ref.ID, ref.Instance, e.Data.Job, e.Data.Instance)
			}
			if matchesAny(subs.Filters("tso", "prod", "", ""), e.Subject) {
				t.Errorf("a filter for instance prod matches %q", e.Subject)
			}
			if matchesAny(subs.Filters("tso", instance, "", id), e.Subject) != (e.Data.Job == id) {
				t.Errorf("the filters for job %q and the event of job %q on %q disagree", id, e.Data.Job, e.Subject)
			}
			if e.Data.Job == id {
				mine = append(mine, e.Data.Native.Status)
			}
		}
		if !slices.Equal(mine, []string{"READY", "ASSIGNED", "COMPLETED"}) {
			t.Errorf("job %q: published %v, want READY, ASSIGNED, COMPLETED", id, mine)
		}
	}
}

// matchesAny reports whether subject matches one of the NATS filters.
func matchesAny(filters []string, subject string) bool {
	for _, f := range filters {
		if subjectMatches(f, subject) {
			return true
		}
	}
	return false
}

// subjectMatches is NATS subject matching: '*' one token, '>' the rest.
func subjectMatches(filter, subject string) bool {
	ft, st := strings.Split(filter, "."), strings.Split(subject, ".")
	for i, f := range ft {
		if f == ">" {
			return len(st) > i
		}
		if i >= len(st) || (f != "*" && f != st[i]) {
			return false
		}
	}
	return len(ft) == len(st)
}

// TestHostileWatchRequestsAreRefused sends the watch API what an attacker
// or a broken client would: bodies over the size limit and over NATS's
// payload limit, malformed and mistyped JSON, ids that are too long or
// hold control characters, unknown vendors and instances, and requests
// from a NATS user without permission to publish on the API's subjects.
// Each gets a clear error (or never reaches the bridge), nothing is
// registered, and the bridge keeps serving valid requests.
func TestHostileWatchRequestsAreRefused(t *testing.T) {
	h := startHostileRig(t, "prod")
	raw := func(op string, body []byte) (code, desc string, err error) {
		msg, err := h.bridgeConn.RequestWithContext(h.ctx, bridge.WatchSubjectPrefix+"."+op, body)
		if err != nil {
			return "", "", err
		}
		return msg.Header.Get("Nats-Service-Error-Code"), msg.Header.Get("Nats-Service-Error"), nil
	}
	cases := []struct {
		name, op string
		body     []byte
		code     string
	}{
		{"over the 64 KiB limit", "add", []byte(`{"vendor":"tso","instance":"prod","job":"` + strings.Repeat("x", bridge.MaxWatchRequestBytes) + `"}`), "413"},
		{"not JSON", "add", []byte("\x00\xff{{{"), "400"},
		{"truncated JSON", "add", []byte(`{"vendor":"tso","instance":"prod","job":"x`), "400"},
		{"wrong types", "add", []byte(`{"vendor":1,"instance":["prod"],"job":{"id":"x"}}`), "400"},
		{"empty body", "add", nil, "400"},
		{"10 KB job id", "add", []byte(`{"vendor":"tso","instance":"prod","job":"` + strings.Repeat("j", 10<<10) + `"}`), "400"},
		{"invalid UTF-8 in the id", "add", []byte("{\"vendor\":\"tso\",\"instance\":\"prod\",\"job\":\"a\xffb\"}"), "400"},
		{"control characters in the id", "add", []byte(`{"vendor":"tso","instance":"prod","job":"a\u0000b\u001bc"}`), "400"},
		{"wildcard instance", "add", []byte(`{"vendor":"tso","instance":"*","job":"x"}`), "404"},
		{"instance with a space", "add", []byte(`{"vendor":"tso","instance":"pr od","job":"x"}`), "400"},
		{"unknown vendor", "add", []byte(`{"vendor":"nope","instance":"prod","job":"x"}`), "404"},
		{"list filter not JSON", "list", []byte("[[["), "400"},
		{"remove with a 10 KB id", "remove", []byte(`{"vendor":"tso","instance":"prod","job":"` + strings.Repeat("j", 10<<10) + `"}`), "400"},
	}
	for _, c := range cases {
		code, desc, err := raw(c.op, c.body)
		if err != nil {
			t.Errorf("%s: request failed: %v", c.name, err)
			continue
		}
		if code != c.code {
			t.Errorf("%s: error code %q (%s), want %s", c.name, code, desc, c.code)
		}
		if len(desc) > 1024 {
			t.Errorf("%s: the error description is %d bytes: it echoes the request", c.name, len(desc))
		}
	}
	// Over NATS's own max payload: the client refuses to send it.
	if _, _, err := raw("add", make([]byte, 2<<20)); !errors.Is(err, nats.ErrMaxPayload) {
		t.Errorf("a 2 MiB request: %v, want %v", err, nats.ErrMaxPayload)
	}
	// A user without permission to publish on the API never reaches it.
	reader, err := nats.Connect(h.url, nats.UserInfo("reader", "reader-pw"), nats.ErrorHandler(func(*nats.Conn, *nats.Subscription, error) {}))
	if err != nil {
		t.Fatal(err)
	}
	defer reader.Close()
	_, err = bridge.WatchClient{NC: reader, Timeout: 3 * time.Second}.Add(h.ctx, bridge.Watch{Vendor: "tso", Instance: "prod", Job: "sneaky"})
	if err == nil || !strings.Contains(strings.ToLower(err.Error()), "permission") && !errors.Is(err, nats.ErrNoResponders) && !errors.Is(err, nats.ErrTimeout) && !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("an unauthorized add: %v, want a permissions violation", err)
	}
	list, err := h.bridgeClient.List(h.ctx, bridge.ListFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Watches) != 0 {
		t.Fatalf("hostile requests registered watches: %+v", list.Watches)
	}
	// The bridge still serves a valid request, and polls what it adds.
	h.sim.AddJob("after-the-abuse", []tsosim.Step{{Status: "COMPLETED"}})
	if _, err := h.bridgeClient.Add(h.ctx, bridge.Watch{Vendor: "tso", Instance: "prod", Job: "after-the-abuse"}); err != nil {
		t.Fatalf("a valid add after the abuse: %v", err)
	}
	bridgetest.WaitFor(t, 30*time.Second, "the valid job's event", func() bool {
		return len(bridgetest.ReadStream(t, h.js, "JOBS")) == 1
	})
	// The HTTP endpoint: oversized headers and bodies are cut off.
	req, _ := http.NewRequest(http.MethodGet, h.httpBase+"/metrics", nil)
	req.Header.Set("X-Big", strings.Repeat("h", 128<<10))
	if resp, err := http.DefaultClient.Do(req); err == nil {
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
			t.Errorf("128 KiB of headers: %d, want 431", resp.StatusCode)
		}
	}
	resp, err := http.Post(h.httpBase+"/metrics", "application/json", strings.NewReader(strings.Repeat("b", 4<<20)))
	if err == nil {
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusMethodNotAllowed {
			t.Errorf("POST 4 MiB to /metrics: %d, want 405", resp.StatusCode)
		}
	}
	if c, _ := get(h.httpBase+"/readyz", ""); c != 200 {
		t.Errorf("/readyz after the abuse: %d", c)
	}
}

// TestHostileNamesInConfigurationAreRefused: instance names that cannot
// be shown or carried (spaces, control characters, overlong) and job ids
// that cannot be carried (control characters, over the length limit) stop
// `jobbridge validate` with a message naming them. Wildcards and dots are
// allowed in instance names: they are escaped in subjects like job ids
// (TestHostileJobIDsReachTheirOwnSubjectOnly runs an instance so named).
func TestHostileNamesInConfigurationAreRefused(t *testing.T) {
	dir := t.TempDir()
	cases := []struct{ name, instance, job, want string }{
		{"instance with a space", "pr od", "j", "instance"},
		{"instance with a control character", "pr\x01od", "j", "instance"},
		{"overlong instance", strings.Repeat("i", 200), "j", "instance"},
		{"job id with a control character", "prod", "a\x1bb", "job"},
		{"10 KB job id", "prod", strings.Repeat("j", 10<<10), "job"},
	}
	for _, c := range cases {
		cfg := writeFile(t, dir, "c.yaml", fmt.Sprintf(`
instances:
  - name: %s
    vendor: tso
    url: https://tso.example.com/baocdp
    auth: {username: ops, password: {env: TSO_PW}}
    jobs: [%s]
`, yamlQuote(c.instance), yamlQuote(c.job)))
		t.Setenv("TSO_PW", "pw")
		var out, errs syncBuffer
		code := run(context.Background(), []string{"validate", "--config", cfg}, &out, &errs)
		if code == 0 {
			t.Errorf("%s: validate accepted it:\n%s", c.name, out.String())
			continue
		}
		if msg := strings.ToLower(errs.String() + out.String()); !strings.Contains(msg, c.want) {
			t.Errorf("%s: the error does not name the %s:\n%s", c.name, c.want, msg)
		}
	}
}

// hostileRig is a bridge (in this process) on a NATS server with two
// users: bridge, which may do anything, and reader, which may only read
// events.
type hostileRig struct {
	ctx          context.Context
	url          string
	sim          *tsosim.Server
	bridgeConn   *nats.Conn
	bridgeClient bridge.WatchClient
	js           jetstream.JetStream
	httpBase     string
}

func startHostileRig(t *testing.T, instance string) *hostileRig {
	t.Helper()
	ns := natstest.StartServer(t, &server.Options{JetStream: true,
		Users: []*server.User{
			{Username: "bridge", Password: "bridge-pw"},
			{Username: "reader", Password: "reader-pw", Permissions: &server.Permissions{
				Publish:   &server.SubjectPermission{Allow: []string{"$JS.API.>", "_INBOX.>"}, Deny: []string{bridge.WatchSubjectPrefix + ".>"}},
				Subscribe: &server.SubjectPermission{Allow: []string{"jobs.>", "_INBOX.>"}},
			}},
		}})
	sim := tsosim.NewServer(tsosim.Options{Users: map[string]string{"ops": "pw"}})
	t.Cleanup(sim.Close)
	t.Setenv("TSO_PW", "pw")
	t.Setenv("NATS_PW", "bridge-pw")
	httpPort := freePort(t)
	dir := t.TempDir()
	cfg := writeFile(t, dir, "c.yaml", fmt.Sprintf(`
dataDir: %s
log: {level: warn, format: json}
nats: {url: %s, user: bridge, password: {env: NATS_PW}}
watchAPI: {enabled: true}
schedule: {interval: 100ms, fastInterval: 100ms, idleInterval: 100ms}
http: {listen: 127.0.0.1:%d}
instances:
  - name: %s
    vendor: tso
    url: %s
    auth: {username: ops, password: {env: TSO_PW}}
`, dir, ns.ClientURL(), httpPort, yamlQuote(instance), sim.URL))
	runInProcess(t, cfg, io.Discard)
	nc, err := nats.Connect(ns.ClientURL(), nats.UserInfo("bridge", "bridge-pw"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	h := &hostileRig{ctx: ctx, url: ns.ClientURL(), sim: sim, bridgeConn: nc, bridgeClient: bridge.WatchClient{NC: nc, Timeout: 10 * time.Second}, js: js,
		httpBase: fmt.Sprintf("http://127.0.0.1:%d", httpPort)}
	bridgetest.WaitFor(t, 30*time.Second, "the watch API", func() bool {
		_, err := h.bridgeClient.List(ctx, bridge.ListFilter{})
		return err == nil
	})
	return h
}
