package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"testing"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2/event"
	"github.com/jobbridge/jobbridge/bridge"
	"github.com/jobbridge/jobbridge/bridge/bridgetest"
	"github.com/jobbridge/jobbridge/bridge/natsconn/natstest"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// The names hold '.', '*', '>' and a space, so a filter that did not escape
// them would select other jobs, or nothing.
const (
	vendor   = "fake"
	instance = "lab.1"
	jobID    = "job.1 >*"
	// other's escaped id is a prefix of jobID's: its events must not leak in.
	otherID = "job"
)

type env struct {
	srv    *server.Server
	h      *bridgetest.Harness
	poller *bridgetest.Poller
}

func start(t *testing.T, mode bridge.WireMode) *env {
	t.Helper()
	srv := natstest.RunServer(t, natstest.Options{})
	p := bridgetest.NewPoller()
	h := bridgetest.StartBridge(t, natstest.Connect(t, srv), []bridge.Instance{{Vendor: vendor, Name: instance, Poller: p}},
		func(o *bridge.Options) { o.Encoding.Mode = mode })
	return &env{srv: srv, h: h, poller: p}
}

// result is one finished jobwait run.
type result struct {
	code           int
	stdout, stderr string
}

// jobwait runs the command in the background; wait for its result with <-.
func (e *env) jobwait(t *testing.T, extra ...string) <-chan result {
	t.Helper()
	args := append([]string{"--server", e.srv.ClientURL(), "--vendor", vendor, "--instance", instance, "--job", jobID}, extra...)
	ch := make(chan result, 1)
	go func() {
		var out, errOut bytes.Buffer
		code := run(context.Background(), args, &out, &errOut, func(string) string { return "" })
		ch <- result{code, out.String(), errOut.String()}
	}()
	return ch
}

func await(t *testing.T, ch <-chan result) result {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(30 * time.Second):
		t.Fatal("jobwait did not return in 30s")
		return result{}
	}
}

// states reads what jobwait's summary lines say after the quoted job id.
func states(out string) []string {
	var s []string
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if line == "" {
			continue
		}
		_, after, ok := strings.Cut(line, strconv.Quote(jobID)+" ")
		if !ok {
			after = "(other job) " + line
		}
		s = append(s, after)
	}
	return s
}

// waitEvents waits until the job (tasks included) has at least n events on
// the stream and returns them. It reads subjects rather than bodies, so it
// works in binary mode too.
func (e *env) waitEvents(t *testing.T, id string, n int) []bridgetest.Received {
	t.Helper()
	subjects := bridge.Subjects{Prefix: "jobs"}
	var got []bridgetest.Received
	bridgetest.WaitFor(t, 30*time.Second, fmt.Sprintf("%d events of %q", n, id), func() bool {
		got = got[:0]
		for _, r := range bridgetest.ReadStream(t, e.h.JS, "JOBS") {
			if job, _, err := subjects.Parse(r.Subject); err == nil && job.ID == id {
				got = append(got, r)
			}
		}
		return len(got) >= n
	})
	return got
}

func (e *env) consumers(t *testing.T) []string {
	t.Helper()
	s, err := e.h.JS.Stream(context.Background(), "JOBS")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	l := s.ListConsumers(context.Background())
	for ci := range l.Info() {
		if strings.HasPrefix(ci.Name, "jobwait-") { // not the harness's readers
			names = append(names, ci.Name)
		}
	}
	if l.Err() != nil {
		t.Fatal(l.Err())
	}
	return names
}

func TestWaitsForSuccessInBothWireModes(t *testing.T) {
	for _, mode := range []bridge.WireMode{bridge.WireStructured, bridge.WireBinary} {
		t.Run(string(mode), func(t *testing.T) {
			e := start(t, mode)
			e.poller.Set(jobID, bridge.StatePending, "Queued")
			e.poller.Set(otherID, bridge.StateRunning, "Running")
			e.h.Watch(vendor, instance, jobID)
			e.h.Watch(vendor, instance, otherID)
			e.waitEvents(t, jobID, 1)

			ch := e.jobwait(t, "--timeout", "60s")
			e.poller.Set(otherID, bridge.StateFailed, "Error")
			e.waitEvents(t, otherID, 2)
			e.poller.Set(jobID, bridge.StateRunning, "Running")
			e.waitEvents(t, jobID, 2)
			select {
			case r := <-ch:
				t.Fatalf("jobwait returned before the job ended: %+v", r)
			case <-time.After(200 * time.Millisecond):
			}
			e.poller.Set(jobID, bridge.StateSucceeded, "Completed")

			r := await(t, ch)
			if r.code != 0 {
				t.Fatalf("exit %d, want 0\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
			}
			want := []string{`pending native="Queued"`, `running native="Running"`, `succeeded native="Completed"`}
			if got := states(r.stdout); strings.Join(got, "|") != strings.Join(want, "|") {
				t.Fatalf("printed %q, want %q", got, want)
			}
			for i, line := range strings.Split(strings.TrimSpace(r.stdout), "\n") {
				if !strings.Contains(line, fmt.Sprintf(" seq=%d %q ", i+1, jobID)) {
					t.Errorf("line %d %q: want job %q and seq=%d", i, line, jobID, i+1)
				}
			}
			if !strings.Contains(r.stderr, `ended: succeeded (native "Completed")`) {
				t.Errorf("stderr %q does not state the outcome", r.stderr)
			}
			if c := e.consumers(t); len(c) != 0 {
				t.Errorf("consumers left behind: %v", c)
			}
		})
	}
}

func TestExitsOneForFailedCanceledVanished(t *testing.T) {
	cases := []struct {
		name  string
		end   func(e *env)
		state string
	}{
		{"failed", func(e *env) { e.poller.Set(jobID, bridge.StateFailed, "Error") }, "failed"},
		{"canceled", func(e *env) { e.poller.Set(jobID, bridge.StateCanceled, "Aborted") }, "canceled"},
		{"vanished", func(e *env) { e.poller.Delete(jobID) }, "vanished running"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := start(t, bridge.WireStructured)
			e.poller.Set(jobID, bridge.StateRunning, "Running")
			e.h.Watch(vendor, instance, jobID)
			e.waitEvents(t, jobID, 1)
			// The end is on the stream before jobwait starts: DeliverAll
			// must find it.
			tc.end(e)
			e.waitEvents(t, jobID, 2)

			r := await(t, e.jobwait(t, "--timeout", "20s", "--json"))
			if r.code != 1 {
				t.Fatalf("exit %d, want 1\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
			}
			lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
			if len(lines) != 2 {
				t.Fatalf("want 2 JSON events, got:\n%s", r.stdout)
			}
			var last struct {
				Type string           `json:"type"`
				Data bridge.EventData `json:"data"`
			}
			if err := json.Unmarshal([]byte(lines[1]), &last); err != nil {
				t.Fatalf("--json line is not JSON: %v\n%s", err, lines[1])
			}
			if got := strings.TrimSpace(string(last.Data.Kind) + " " + string(last.Data.State)); !strings.HasSuffix(got, tc.state) {
				t.Errorf("last event %s %q, want %q", last.Type, got, tc.state)
			}
		})
	}
}

func TestTaskEndDoesNotEndTheWait(t *testing.T) {
	e := start(t, bridge.WireStructured)
	task := func(state bridge.State) []bridge.Observation {
		return []bridge.Observation{{Job: bridge.JobRef{Task: "step 1"}, State: state, Native: string(state)}}
	}
	e.poller.SetObservation(jobID, bridge.Observation{State: bridge.StateRunning, Native: "Running", Tasks: task(bridge.StateRunning)})
	e.h.Watch(vendor, instance, jobID)
	e.waitEvents(t, jobID, 2)
	e.poller.SetObservation(jobID, bridge.Observation{State: bridge.StateRunning, Native: "Running", Tasks: task(bridge.StateSucceeded)})
	e.waitEvents(t, jobID, 3)

	ch := e.jobwait(t, "--timeout", "60s")
	select {
	case r := <-ch:
		t.Fatalf("a task's end ended the wait: %+v", r)
	case <-time.After(500 * time.Millisecond):
	}
	e.poller.SetObservation(jobID, bridge.Observation{State: bridge.StateFailed, Native: "Error", Tasks: task(bridge.StateSucceeded)})
	r := await(t, ch)
	if r.code != 1 {
		t.Fatalf("exit %d, want 1\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
	if n := strings.Count(r.stdout, "\n"); n != 4 {
		t.Errorf("want 4 events (job and task, running and ended), got %d:\n%s", n, r.stdout)
	}
}

func TestTimeoutKeepsTheConsumerAndARerunResumes(t *testing.T) {
	e := start(t, bridge.WireStructured)
	e.poller.Set(jobID, bridge.StatePending, "Queued")
	e.h.Watch(vendor, instance, jobID)
	e.waitEvents(t, jobID, 1)
	e.poller.Set(jobID, bridge.StateRunning, "Running")
	e.waitEvents(t, jobID, 2)

	r := await(t, e.jobwait(t, "--timeout", "2s"))
	if r.code != exitTimeout {
		t.Fatalf("exit %d, want %d\nstderr:\n%s", r.code, exitTimeout, r.stderr)
	}
	if got := states(r.stdout); len(got) != 2 {
		t.Fatalf("first run printed %q, want pending and running", got)
	}
	if c := e.consumers(t); len(c) != 1 {
		t.Fatalf("after a timeout the durable consumer must stay for a re-run; have %v", c)
	}

	e.poller.Set(jobID, bridge.StateSucceeded, "Completed")
	e.waitEvents(t, jobID, 3)
	r = await(t, e.jobwait(t, "--timeout", "20s"))
	if r.code != 0 {
		t.Fatalf("exit %d, want 0\nstderr:\n%s", r.code, r.stderr)
	}
	// The durable resumes after the first run's acks.
	if got := states(r.stdout); len(got) != 1 || !strings.HasPrefix(got[0], "succeeded") {
		t.Fatalf("re-run printed %q, want only the succeeded event", got)
	}
}

// TestDropsCopiesAndOlderSequences puts on the stream what a crashed or
// lagging bridge can leave there: a re-published event outside the
// duplicate window (same CloudEvents id) and an older event of the job.
func TestDropsCopiesAndOlderSequences(t *testing.T) {
	e := start(t, bridge.WireStructured)
	e.poller.Set(jobID, bridge.StatePending, "Queued")
	e.h.Watch(vendor, instance, jobID)
	e.waitEvents(t, jobID, 1)
	e.poller.Set(jobID, bridge.StateRunning, "Running")
	evs := e.waitEvents(t, jobID, 2)

	ctx := context.Background()
	republish := func(r bridgetest.Received, msgID string, body []byte) {
		t.Helper()
		m := &nats.Msg{Subject: r.Subject, Header: nats.Header{}, Data: body}
		for k, v := range r.Header {
			m.Header[k] = v
		}
		m.Header.Set(nats.MsgIdHdr, msgID) // a new id: JetStream keeps it
		if _, err := e.h.JS.PublishMsg(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	republish(evs[1], "copy-of-running", evs[1].Body)
	stale := bytes.Replace(evs[0].Body, []byte(evs[0].Event["id"].(string)), []byte(strings.Repeat("ab", 16)), 1)
	republish(evs[0], "stale-pending", stale)
	e.poller.Set(jobID, bridge.StateSucceeded, "Completed")
	if got := len(e.waitEvents(t, jobID, 5)); got != 5 {
		t.Fatalf("stream holds %d events of the job, want 5", got)
	}

	r := await(t, e.jobwait(t, "--timeout", "20s"))
	if r.code != 0 {
		t.Fatalf("exit %d\nstderr:\n%s", r.code, r.stderr)
	}
	want := []string{`pending native="Queued"`, `running native="Running"`, `succeeded native="Completed"`}
	if got := states(r.stdout); strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("printed %q, want %q", got, want)
	}
}

func TestNotAnEventIsSkipped(t *testing.T) {
	e := start(t, bridge.WireStructured)
	e.poller.Set(jobID, bridge.StateRunning, "Running")
	e.h.Watch(vendor, instance, jobID)
	evs := e.waitEvents(t, jobID, 1)
	if _, err := e.h.JS.Publish(context.Background(), evs[0].Subject, []byte("not json")); err != nil {
		t.Fatal(err)
	}
	e.poller.Set(jobID, bridge.StateSucceeded, "Completed")
	e.waitEvents(t, jobID, 2)
	r := await(t, e.jobwait(t, "--timeout", "20s"))
	if r.code != 0 || !strings.Contains(r.stderr, "skipping message") {
		t.Fatalf("exit %d, want 0 and a warning\nstderr:\n%s", r.code, r.stderr)
	}
}

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"--vendor", "tso", "--instance", "prod"},                                   // no job
		{"--vendor", "tso", "--job", "1"},                                           // no instance
		{"--vendor", "tso", "--instance", "prod", "--job", "1", "stray"},            // argument
		{"--vendor", "tso", "--instance", "prod", "--job", "1", "--prefix", "a..b"}, // bad prefix
		{"--vendor", "tso", "--instance", "prod", "--job", "1", "--timeout", "-1s"},
	} {
		var out, errOut bytes.Buffer
		if code := run(context.Background(), args, &out, &errOut, func(string) string { return "" }); code != exitError {
			t.Errorf("%q: exit %d, want %d", args, code, exitError)
		}
		if errOut.Len() == 0 {
			t.Errorf("%q: no message", args)
		}
	}
	var out, errOut bytes.Buffer
	if code := run(context.Background(), []string{"-h"}, &out, &errOut, func(string) string { return "" }); code != 0 {
		t.Errorf("-h: exit %d", code)
	}
}

func TestConnectionErrorSaysWhatToSet(t *testing.T) {
	var out, errOut bytes.Buffer
	getenv := func(k string) string {
		if k == "NATS_URL" {
			return "nats://127.0.0.1:1" // nothing listens on port 1
		}
		return ""
	}
	code := run(context.Background(), []string{"--vendor", "v", "--instance", "i", "--job", "j"}, &out, &errOut, getenv)
	if code != exitError || !strings.Contains(errOut.String(), "NATS_URL") {
		t.Fatalf("exit %d, stderr %q", code, errOut.String())
	}
}

func TestFilterAndVerdict(t *testing.T) {
	mk := func(source, id, key string, seq uint64) event {
		ev := event{ce: cloudevents.New()}
		ev.ce.SetSource(source)
		ev.ce.SetID(id)
		ev.key, ev.seq = source+"\x00"+key, seq
		return ev
	}
	f := newFilter()
	steps := []struct {
		ev   event
		want bool
	}{
		{mk("/s/a", "1", "job", 1), true},
		{mk("/s/a", "1", "job", 1), false},     // same id
		{mk("/s/b", "1", "job", 1), true},      // same id, other source
		{mk("/s/a", "2", "job", 1), false},     // not newer
		{mk("/s/a", "3", "job.task", 1), true}, // a task counts on its own
		{mk("/s/a", "4", "job", 3), true},      // gaps are fine
		{mk("/s/a", "5", "job", 2), false},     // older
	}
	for i, s := range steps {
		if got := f.fresh(s.ev); got != s.want {
			t.Errorf("step %d: fresh=%v, want %v", i, got, s.want)
		}
	}

	verdicts := []struct {
		d    bridge.EventData
		code int
		done bool
	}{
		{bridge.EventData{Kind: bridge.KindTransition, State: bridge.StateRunning}, 0, false},
		{bridge.EventData{Kind: bridge.KindTransition, State: bridge.StateSucceeded, Terminal: true}, 0, true},
		{bridge.EventData{Kind: bridge.KindTransition, State: bridge.StateFailed, Terminal: true}, 1, true},
		{bridge.EventData{Kind: bridge.KindTransition, State: bridge.StateCanceled, Terminal: true}, 1, true},
		{bridge.EventData{Kind: bridge.KindVanished, State: bridge.StateRunning}, 1, true},
		{bridge.EventData{Kind: bridge.KindStalled, State: bridge.StateRunning}, 0, false},
		{bridge.EventData{Kind: bridge.KindTransition, State: bridge.StateSucceeded, Terminal: true, Task: "t"}, 0, false},
	}
	for _, v := range verdicts {
		code, done := verdict(v.d)
		if code != v.code || done != v.done {
			t.Errorf("%+v: got (%d, %v), want (%d, %v)", v.d, code, done, v.code, v.done)
		}
	}
}

// TestDurableNameIsStable: a re-run must bind the same consumer, and two
// jobs must not share one.
func TestDurableNameIsStable(t *testing.T) {
	s := bridge.Subjects{Prefix: "jobs"}
	a := durableName("JOBS", s.Filters("v", "i", "", "a.b"))
	if a != durableName("JOBS", s.Filters("v", "i", "", "a.b")) {
		t.Error("name changes between runs")
	}
	if a == durableName("JOBS", s.Filters("v", "i", "", "a_b")) || a == durableName("JOBS2", s.Filters("v", "i", "", "a.b")) {
		t.Error("two jobs share a consumer name")
	}
	if strings.ContainsAny(a, ".*> ") {
		t.Errorf("%q is not a valid consumer name", a)
	}
}

// FuzzDecode: no message, however broken, panics the decoder, and what it
// accepts has what the filter and the verdict rely on.
func FuzzDecode(f *testing.F) {
	f.Add([]byte(`{"specversion":"1.0","id":"0123456789abcdef0123456789abcdef","source":"/jobbridge/tso/prod","type":"io.jobbridge.job.succeeded","subject":"42","time":"2026-01-02T03:04:05.123456789Z","datacontenttype":"application/json","dataschema":"urn:jobbridge:schema:job-event:v1","sequence":"00000000000000000003","jobvendor":"tso","jobinstance":"prod","jobstate":"succeeded","partitionkey":"tso.prod.42","data":{"vendor":"tso","instance":"prod","job":"42","kind":"transition","state":"succeeded","terminal":true,"native":{"status":"Completed"},"detectedAt":"2026-01-02T03:04:05.123456789Z","detectedBy":"poll","sequence":3}}`), false, "")
	f.Add([]byte(`{"vendor":"tso","instance":"prod","job":"42","kind":"vanished","state":"running","terminal":false,"native":{"status":"Running"},"sequence":2}`), true, "00000000000000000002")
	f.Add([]byte(`not json`), false, "")
	f.Add([]byte(`{"specversion":"1.0","id":"x","source":"/s","type":"t","sequence":"-1","data":null}`), false, "")
	f.Fuzz(func(t *testing.T, body []byte, binary bool, seq string) {
		h := nats.Header{"Content-Type": {bridge.StructuredMediaType}}
		if binary {
			h = nats.Header{"ce-specversion": {"1.0"}, "ce-id": {"a%20b"}, "ce-source": {"/jobbridge/tso/prod"},
				"ce-type": {"io.jobbridge.job.running"}, "ce-time": {"2026-01-02T03:04:05Z"}, "ce-sequence": {seq}}
		}
		ev, err := decode(h, body)
		if err != nil {
			return
		}
		if ev.seq == 0 || ev.ce.ID() == "" || ev.key == "" {
			t.Fatalf("accepted an event without sequence, id or key: %+v", ev)
		}
		verdict(ev.data)
		_ = printEvent(io.Discard, ev, true)
		_ = printEvent(io.Discard, ev, false)
	})
}
