package hmc

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/jobbridge/jobbridge/bridge"
	"github.com/jobbridge/jobbridge/bridge/backoff"
	hmcpoll "github.com/jobbridge/jobbridge/pollers/hmc"
	"github.com/jobbridge/jobbridge/pollers/hmc/hmcsim"
	"github.com/jobbridge/jobbridge/pollers/pollkit"
)

const (
	user     = "jobbridge"
	password = "pw-1"
	waitLong = 15 * time.Second
)

// fakeHinter records what the notifier asks of the bridge.
type fakeHinter struct {
	mu         sync.Mutex
	watched    map[string]bool
	watches    []bridge.Watch
	hints      []string
	reconciles int
}

func newFakeHinter(ids ...string) *fakeHinter {
	h := &fakeHinter{watched: map[string]bool{}}
	for _, id := range ids {
		h.watched[id] = true
	}
	return h
}

func (h *fakeHinter) Hint(job bridge.JobRef) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.watched[job.ID] {
		return false
	}
	h.hints = append(h.hints, job.ID)
	return true
}

func (h *fakeHinter) Reconcile(vendor, instance string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.reconciles++
	return len(h.watched)
}

func (h *fakeHinter) WatchesOf(vendor, instance string) []bridge.Watch {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]bridge.Watch(nil), h.watches...)
}

func (h *fakeHinter) watch(id, topic string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.watched[id] = true
	w := bridge.Watch{Vendor: hmcpoll.Vendor, Instance: "prod", Job: id}
	if topic != "" {
		w.VendorOptions = map[string]string{NotifyTopicOption: topic}
	}
	h.watches = append(h.watches, w)
}

func (h *fakeHinter) hinted() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.hints...)
}

func (h *fakeHinter) reconciled() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.reconciles
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// waitFor polls cond until it holds or the timeout passes.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func testLogger(t testing.TB) zerolog.Logger {
	lvl := zerolog.WarnLevel
	if l, err := zerolog.ParseLevel(os.Getenv("JOBBRIDGE_TEST_LOG")); err == nil && l != zerolog.NoLevel {
		lvl = l // JOBBRIDGE_TEST_LOG=debug to see the notifier at work
	}
	return zerolog.New(zerolog.NewTestWriter(t)).Level(lvl).With().Timestamp().Logger()
}

// rig is a simulator with a STOMP broker and an HMC poller on it.
type rig struct {
	sim    *hmcsim.Server
	broker *hmcsim.Broker
	poller *hmcpoll.Poller
}

type rigOptions struct {
	TLS   bool
	Mode  hmcpoll.NotificationMode
	Clock hmcsim.Clock // nil: real time
}

func newRig(t testing.TB, o rigOptions) *rig {
	t.Helper()
	sim := hmcsim.NewServer(hmcsim.Options{
		Users: map[string]string{user: password}, TLS: o.TLS, TickEvery: 2 * time.Millisecond, Clock: o.Clock,
		SSEKeepAlive: 50 * time.Millisecond, Logger: testLogger(t),
	})
	t.Cleanup(sim.Close)
	b, err := sim.StartBroker(hmcsim.BrokerOptions{TLS: o.TLS})
	if err != nil {
		t.Fatal(err)
	}
	httpOpts := pollkit.ClientOptions{MaxConcurrent: 32, Backoff: backoff.Policy{Initial: 5 * time.Millisecond, Max: 50 * time.Millisecond}}
	if o.TLS {
		httpOpts.CAFile = writeCA(t, sim.Certificate())
	}
	if o.Mode == "" {
		o.Mode = hmcpoll.NotifySTOMP
	}
	p, err := hmcpoll.New(hmcpoll.Options{
		Instance: "prod", BaseURL: sim.URL, UserID: user, Password: bridge.NewSecret(password),
		HTTP: httpOpts, Notifications: o.Mode, STOMPPort: b.Port(), Logger: testLogger(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close(context.Background()) })
	return &rig{sim: sim, broker: b, poller: p}
}

func writeCA(t testing.TB, cert *x509.Certificate) string {
	f := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(f, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

func tlsFor(cert *x509.Certificate) *tls.Config {
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
}

// options are notifier options for fast tests.
func (r *rig) options(t testing.TB, h Hinter) Options {
	return Options{
		Poller: r.poller, Hinter: h, Instance: "prod", PlainSTOMP: true,
		STOMPAddr: r.broker.Addr(), BaseURL: r.sim.URL,
		HeartBeat: 300 * time.Millisecond, WatchPoll: 20 * time.Millisecond,
		Backoff:          backoff.Policy{Initial: 10 * time.Millisecond, Max: 100 * time.Millisecond},
		DegradedInterval: time.Hour, ConnectTimeout: 5 * time.Second, ReceiptTimeout: 5 * time.Second,
		Logger: testLogger(t),
	}
}

func start(t testing.TB, opts Options) *Notifier {
	t.Helper()
	n, err := Start(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Stop() })
	return n
}

// startJob starts a job in the poller's current session, so its
// completion goes to the topic the notifier subscribed to.
func (r *rig) startJob(t testing.TB, id string, runFor time.Duration) {
	t.Helper()
	s, ok := r.poller.Session()
	if !ok {
		t.Fatal("the poller has no session")
	}
	if _, err := r.sim.StartJob(s.ID.Reveal(), hmcsim.Job{ID: id, Script: []hmcsim.Step{
		{Status: hmcsim.StatusRunning, For: runFor}, {Status: hmcsim.StatusComplete},
	}}); err != nil {
		t.Fatal(err)
	}
}

// checkNoLeak fails if a goroutine of this package is still running: every
// connection's goroutines end with it.
func checkNoLeak(t testing.TB) {
	t.Helper()
	var stacks string
	deadline := time.Now().Add(5 * time.Second)
	for {
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		stacks = ""
		for _, g := range strings.Split(string(buf), "\n\n") {
			if !strings.Contains(g, "testing.tRunner") && (strings.Contains(g, "notifiers/hmc.(*Notifier)") ||
				strings.Contains(g, "notifiers/hmc.(*stompConn)") || strings.Contains(g, "notifiers/hmc.Start")) {
				stacks += g + "\n\n"
			}
		}
		if stacks == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("goroutines of the notifier outlived it:\n%s", stacks)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// jobDone is a job that completes at once.
func jobDone(id string) hmcsim.Job {
	return hmcsim.Job{ID: id, Script: []hmcsim.Step{{Status: hmcsim.StatusRunning, For: time.Millisecond}, {Status: hmcsim.StatusComplete}}}
}

var backoffFast = backoff.Policy{Initial: 10 * time.Millisecond, Max: 100 * time.Millisecond}
