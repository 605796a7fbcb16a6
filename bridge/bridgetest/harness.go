package bridgetest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jobbridge/jobbridge/bridge"
	"github.com/jobbridge/jobbridge/schemas"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// FastSchedule polls every 20ms so tests see changes quickly.
func FastSchedule() bridge.ScheduleOptions {
	return bridge.ScheduleOptions{
		Interval: 20 * time.Millisecond, FastInterval: 20 * time.Millisecond, IdleInterval: 20 * time.Millisecond,
		RetainAfterTerminal: time.Hour, Workers: 8,
	}
}

// Harness runs a real Bridge on a NATS connection for a test.
type Harness struct {
	T      testing.TB
	NC     *nats.Conn
	JS     jetstream.JetStream
	Bridge *bridge.Bridge

	validator *schemas.Validator
	cancel    context.CancelFunc
	done      chan error
	stopped   bool
}

// StartBridge runs a bridge with the given instances until the test ends
// (or Stop). mutate may adjust the options before the bridge is built.
func StartBridge(tb testing.TB, nc *nats.Conn, instances []bridge.Instance, mutate func(*bridge.Options)) *Harness {
	tb.Helper()
	opts := bridge.Options{
		Conn:          nc,
		Stream:        bridge.StreamOptions{Manage: true, Storage: jetstream.FileStorage},
		Schedule:      FastSchedule(),
		FlushInterval: 50 * time.Millisecond,
		Instances:     instances,
		Logger:        zerolog.New(zerolog.NewTestWriter(tb)).Level(zerolog.WarnLevel),
	}
	if mutate != nil {
		mutate(&opts)
	}
	v, err := schemas.NewValidator()
	if err != nil {
		tb.Fatalf("schema validator: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	b, err := bridge.New(ctx, opts)
	if err != nil {
		cancel()
		tb.Fatalf("bridge.New: %v", err)
	}
	h := &Harness{T: tb, NC: nc, Bridge: b, validator: v, cancel: cancel, done: make(chan error, 1)}
	h.JS, _ = jetstream.New(nc)
	go func() { h.done <- b.Run(ctx) }()
	select {
	case <-b.Ready():
	case err := <-h.done:
		tb.Fatalf("bridge stopped before ready: %v", err)
	case <-time.After(10 * time.Second):
		tb.Fatal("bridge not ready in 10s")
	}
	tb.Cleanup(h.Stop)
	return h
}

// Stop shuts the bridge down gracefully and waits for it.
func (h *Harness) Stop() {
	if h.stopped {
		return
	}
	h.stopped = true
	h.cancel()
	select {
	case err := <-h.done:
		if err != nil {
			h.T.Errorf("bridge Run: %v", err)
		}
	case <-time.After(20 * time.Second):
		h.T.Error("bridge did not stop within 20s")
	}
}

// Watch registers a job.
func (h *Harness) Watch(vendor, instance, id string) {
	h.T.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, _, err := h.Bridge.Registry().Add(ctx, bridge.Watch{Vendor: vendor, Instance: instance, Job: id}); err != nil {
		h.T.Fatalf("watch %s/%s/%s: %v", vendor, instance, id, err)
	}
}

// Events returns every event on the stream, each validated against the
// published JSON Schema (a structured-mode event that fails is a test
// failure).
func (h *Harness) Events() []Received {
	h.T.Helper()
	all := ReadStream(h.T, h.JS, "JOBS")
	for _, r := range all {
		if r.Header.Get("Content-Type") != bridge.StructuredMediaType {
			continue
		}
		if err := h.validator.ValidateEvent(r.Body); err != nil {
			h.T.Errorf("event on %s fails the schema: %v\n%s", r.Subject, err, r.Body)
		}
	}
	return all
}

// EventsFor returns the events of one job (tasks included), in stream order.
func (h *Harness) EventsFor(id string) []Received {
	var out []Received
	for _, r := range h.Events() {
		if r.Data.Job == id {
			out = append(out, r)
		}
	}
	return out
}

// WaitEvents waits until the job has at least n events and returns them.
func (h *Harness) WaitEvents(id string, n int, timeout time.Duration) []Received {
	h.T.Helper()
	var got []Received
	WaitFor(h.T, timeout, fmt.Sprintf("%d events of %s", n, id), func() bool {
		got = h.EventsFor(id)
		return len(got) >= n
	})
	return got
}

// Summary renders events as "kind:state[/task]" strings for exact
// sequence assertions.
func Summary(rs []Received) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		s := string(r.Data.Kind) + ":" + string(r.Data.State)
		if r.Data.Task != "" {
			s += "/" + r.Data.Task
		}
		out[i] = s
	}
	return out
}
