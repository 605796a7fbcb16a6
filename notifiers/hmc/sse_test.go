package hmc

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jobbridge/jobbridge/bridge"
	hmcpoll "github.com/jobbridge/jobbridge/pollers/hmc"
)

func sseOptions(t *testing.T, r *rig, h Hinter) Options {
	o := r.options(t, h)
	o.Mode = hmcpoll.NotifySSE
	return o
}

func TestSSECompletionBecomesHint(t *testing.T) {
	r := newRig(t, rigOptions{Mode: hmcpoll.NotifySSE})
	h := newFakeHinter("j1")
	via := NewViaPoller(r.poller)
	opts := sseOptions(t, r, h)
	opts.Marker = via
	n := start(t, opts)
	connected(t, n, h, 1)
	r.startJob(t, "j1", 10*time.Millisecond)
	waitFor(t, waitLong, "a hint for j1", func() bool { return contains(h.hinted(), "j1") })
	obs, err := via.Poll(context.Background(), bridge.JobRef{Vendor: hmcpoll.Vendor, Instance: "prod", ID: "j1"})
	if err != nil || obs.Via != bridge.DetectedBySSE {
		t.Fatalf("hinted poll = %+v, %v; want via sse", obs, err)
	}
	n.Stop()
	if n.sse.lastID == "" {
		t.Fatal("the handled event's id was not kept for Last-Event-ID")
	}
}

func TestSSEReconnectsAfterCleanEOF(t *testing.T) {
	r := newRig(t, rigOptions{Mode: hmcpoll.NotifySSE})
	h := newFakeHinter("lost", "after")
	n := start(t, sseOptions(t, r, h))
	connected(t, n, h, 1)
	for i := 2; i <= 4; i++ { // r3labs' client stops after the first
		if r.sim.DropSSEStreams() != 1 {
			t.Fatal("no open stream to end")
		}
		connected(t, n, h, i)
	}
	if s := r.sim.SSEStats(); s.Created != 1 || s.Opened != 4 {
		t.Fatalf("SSE stats %+v: want the one stream reopened 4 times", s)
	}
	r.startJob(t, "after", time.Millisecond)
	waitFor(t, waitLong, "a hint after reconnects", func() bool { return contains(h.hinted(), "after") })
}

func TestSSEStreamOfDeadSessionIsReplaced(t *testing.T) {
	r := newRig(t, rigOptions{Mode: hmcpoll.NotifySSE})
	h := newFakeHinter("new")
	n := start(t, sseOptions(t, r, h))
	connected(t, n, h, 1)
	first, _ := r.poller.Session()
	// The session ends: its stream closes, reopening answers 403 reason 5
	// (the header) or 404 (the stream), and the notifier logs on again and
	// creates a new stream.
	r.sim.ExpireSessions()
	waitFor(t, waitLong, "a stream on a new session", func() bool {
		s := n.Status()
		return s.Connected && s.SessionGeneration > first.Generation
	})
	if s := r.sim.SSEStats(); s.Created != 2 {
		t.Fatalf("streams created = %d, want 2", s.Created)
	}
	r.startJob(t, "new", time.Millisecond)
	waitFor(t, waitLong, "a hint on the new stream", func() bool { return contains(h.hinted(), "new") })
}

func TestSSE404CreatesNewStream(t *testing.T) {
	r := newRig(t, rigOptions{Mode: hmcpoll.NotifySSE})
	h := newFakeHinter()
	n := start(t, sseOptions(t, r, h))
	connected(t, n, h, 1)
	// Renewing the session behind the notifier's back: the old stream
	// belongs to a dead session.
	sess, _ := r.poller.Session()
	if _, err := r.poller.RenewSession(context.Background(), sess); err != nil {
		t.Fatal(err)
	}
	connected(t, n, h, 2)
	if s := r.sim.SSEStats(); s.Created != 2 {
		t.Fatalf("streams created = %d, want 2", s.Created)
	}
}

func TestSSEStalledStreamHitsIdleTimeout(t *testing.T) {
	r := newRig(t, rigOptions{Mode: hmcpoll.NotifySSE}) // keep-alive every 50ms
	h := newFakeHinter()
	opts := sseOptions(t, r, h)
	opts.SSEIdleTimeout = 300 * time.Millisecond
	n := start(t, opts)
	connected(t, n, h, 1)
	time.Sleep(500 * time.Millisecond)
	if h.reconciled() != 1 {
		t.Fatal("keep-alive comments did not count as activity")
	}
	r.sim.StallSSEStreams()
	connected(t, n, h, 2)
	if !strings.Contains(n.Status().LastError, "silent") {
		t.Fatalf("last error %q", n.Status().LastError)
	}
}

// fakeSSE is a stream server for what the simulator does not do.
func fakeSSE(t *testing.T, stream func(w http.ResponseWriter, n int)) (*httptest.Server, *atomic.Int32) {
	var opens atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/api/sessions":
			fmt.Fprint(w, `{"api-session":"s1","session-credential":"c1","job-notification-topic":"u.1job"}`)
		case sseCreatePath:
			fmt.Fprint(w, `{"stream-id":"st"}`)
		case sseOpenPath:
			w.Header().Set("Content-Type", "text/event-stream")
			stream(w, int(opens.Add(1)))
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	return srv, &opens
}

func fakePoller(t *testing.T, url string) *hmcpoll.Poller {
	p, err := hmcpoll.New(hmcpoll.Options{Instance: "prod", BaseURL: url, UserID: user, Password: bridge.NewSecret(password), Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestSSEOversizedEventIsAnErrorNotASilentDrop(t *testing.T) {
	big := strings.Repeat("x", 100<<10) // over r3labs' 64 KiB default
	srv, opens := fakeSSE(t, func(w http.ResponseWriter, n int) {
		fmt.Fprint(w, "event: initial-events-start\ndata: {}\n\nevent: initial-events-end\ndata: {}\n\n")
		fmt.Fprintf(w, "event: property-change\ndata: {\"notification-type\":\"property-change\",\"pad\":%q}\n\n", big)
		fmt.Fprint(w, "event: job-completion\ndata: {\"notification-type\":\"job-completion\",\"job-uri\":\"/api/jobs/after-big\"}\n\n")
		w.(http.Flusher).Flush()
		time.Sleep(2 * time.Second)
	})
	h := newFakeHinter("after-big")
	opts := Options{Poller: fakePoller(t, srv.URL), Hinter: h, Instance: "prod", Mode: hmcpoll.NotifySSE, BaseURL: srv.URL,
		Backoff: backoffFast, Logger: testLogger(t), MaxEventBytes: 16 << 10}
	n := start(t, opts)
	waitFor(t, waitLong, "the size error", func() bool { return strings.Contains(n.Status().LastError, "larger than MaxEventBytes") })
	if contains(h.hinted(), "after-big") {
		t.Fatal("read past an event that broke the cap")
	}
	n.Stop()
	// With a cap that fits, the big event is read and the next one too.
	opts.MaxEventBytes = 1 << 20
	h2 := newFakeHinter("after-big")
	opts.Hinter = h2
	start(t, opts)
	waitFor(t, waitLong, "the hint after a large event", func() bool { return contains(h2.hinted(), "after-big") })
	if opens.Load() < 2 {
		t.Fatal("expected a reopen")
	}
}

func TestSSEWithoutInitialEventsFramingStillReconciles(t *testing.T) {
	srv, _ := fakeSSE(t, func(w http.ResponseWriter, n int) {
		w.(http.Flusher).Flush()
		time.Sleep(3 * time.Second)
	})
	h := newFakeHinter()
	n, err := New(Options{Poller: fakePoller(t, srv.URL), Hinter: h, Instance: "prod", Mode: hmcpoll.NotifySSE, BaseURL: srv.URL, Backoff: backoffFast, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	n.sse.initWait = 50 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go n.Run(ctx)
	waitFor(t, waitLong, "a reconcile without initial-events-end", func() bool { return h.reconciled() == 1 && n.Status().Connected })
	cancel()
	n.Wait()
	checkNoLeak(t)
}

func TestSSEStopLeavesNoGoroutine(t *testing.T) {
	r := newRig(t, rigOptions{Mode: hmcpoll.NotifySSE})
	h := newFakeHinter()
	n, err := Start(context.Background(), sseOptions(t, r, h))
	if err != nil {
		t.Fatal(err)
	}
	connected(t, n, h, 1)
	r.sim.DropSSEStreams()
	connected(t, n, h, 2)
	if err := n.Stop(); err != nil {
		t.Fatal(err)
	}
	checkNoLeak(t)
	waitFor(t, waitLong, "the stream to close", func() bool { return r.sim.OpenSSEStreams() == 0 })
}
