package bridge

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// gateJS plays the scale-out publish gate, answering as decide says, and
// a JetStream that records what it was sent, so a test can ack it.
type gateJS struct {
	jetstream.JetStream
	mu       sync.Mutex
	decide   func(call int) error
	calls    int
	accepted []*nats.Msg
}

func (g *gateJS) gate(*Event) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.calls++
	return g.decide(g.calls)
}

func (g *gateJS) PublishMsgAsync(msg *nats.Msg, _ ...jetstream.PublishOpt) (jetstream.PubAckFuture, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.accepted = append(g.accepted, msg)
	return nil, nil
}

func (g *gateJS) take() []*nats.Msg {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := g.accepted
	g.accepted = nil
	return out
}

func fenceTestEvent(t *testing.T, tr *Tracker, id string) *Event {
	t.Helper()
	enc, err := NewEncoder(EncoderOptions{Subjects: Subjects{Prefix: "jobs"}})
	if err != nil {
		t.Fatal(err)
	}
	obs := Observation{Job: JobRef{Vendor: "tso", Instance: "prod", ID: id}, State: StateRunning, Native: "ASSIGNED", ObservedAt: time.Now()}
	changes := tr.Detect(&obs, DetectOptions{})
	if len(changes) != 1 {
		t.Fatalf("%d changes", len(changes))
	}
	ev, err := enc.Encode(&changes[0])
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

// TestStaleEventsAreAbandonedAndFencedOnesWait: an event the scale-out gate
// calls stale (its shard moved away) frees its slot at once instead of
// holding it, and the job waiting for room goes out; an event held by a
// lease being renewed is resent until the gate lets it through, without
// the publisher reporting NATS as failing.
func TestStaleEventsAreAbandonedAndFencedOnesWait(t *testing.T) {
	tr := NewTracker()
	g := &gateJS{}
	p := NewPublisher(tr, PublisherOptions{MaxInFlight: 1, MaxPending: 4}, zerolog.Nop(), NewMetrics(nil))
	p.js, p.gate = g, g.gate
	ctx := context.Background()

	// Stale: refused once, never resent; the next job takes the room.
	g.decide = func(call int) error {
		if call == 1 {
			return errStale
		}
		return nil
	}
	if err := p.Submit(ctx, fenceTestEvent(t, tr, "moved")); err != nil {
		t.Fatal(err)
	}
	if err := p.Submit(ctx, fenceTestEvent(t, tr, "kept")); err != nil {
		t.Fatal(err)
	}
	if got := p.Pending(); got != 1 {
		t.Fatalf("pending %d after a stale event, want 1 (its slot freed)", got)
	}
	acc := g.take()
	if len(acc) != 1 || acc[0].Header.Get(HeaderSequence) == "" {
		t.Fatalf("accepted %d messages, want the waiting job's one", len(acc))
	}
	p.onAck(nil, acc[0], &jetstream.PubAck{Stream: "JOBS", Sequence: 1})
	if p.Pending() != 0 || !p.Healthy() || p.abandoned.Load() != 1 {
		t.Fatalf("pending %d healthy %v abandoned %d; want 0 true 1", p.Pending(), p.Healthy(), p.abandoned.Load())
	}
	time.Sleep(3 * fencedRetry)
	if n := len(g.take()); n != 0 {
		t.Fatalf("the stale event was sent again (%d)", n)
	}

	// Fenced: refused three times, then the lease is current again.
	g.mu.Lock()
	g.calls = 0
	g.decide = func(call int) error {
		if call <= 3 {
			return errFenced
		}
		return nil
	}
	g.mu.Unlock()
	if err := p.Submit(ctx, fenceTestEvent(t, tr, "held")); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	var sent []*nats.Msg
	for len(sent) == 0 && time.Now().Before(deadline) {
		if !p.Healthy() {
			t.Fatal("a fenced send made the publisher unhealthy: /readyz would page someone for a lease renewal")
		}
		time.Sleep(20 * time.Millisecond)
		sent = g.take()
	}
	if len(sent) != 1 {
		t.Fatalf("the fenced event was not sent once the lease was current (%d)", len(sent))
	}
	p.onAck(nil, sent[0], &jetstream.PubAck{Stream: "JOBS", Sequence: 2})
	if p.Pending() != 0 || p.fenced.Load() != 3 {
		t.Fatalf("pending %d fenced %d; want 0 and 3", p.Pending(), p.fenced.Load())
	}
	p.Stop()
}
