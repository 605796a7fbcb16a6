// Package bridgetest provides test doubles for the bridge: a poller whose
// jobs' states a test sets directly, helpers to read back what reached
// the event stream, and a TCP proxy that injects network faults.
package bridgetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jobbridge/jobbridge/bridge"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Poller is a bridge.Poller whose answers the test sets per job.
type Poller struct {
	mu    sync.Mutex
	jobs  map[string]bridge.Observation
	errs  map[string]error
	polls map[string]int
}

// NewPoller returns a poller with no jobs: polls answer ErrNotFound.
func NewPoller() *Poller {
	return &Poller{jobs: map[string]bridge.Observation{}, errs: map[string]error{}, polls: map[string]int{}}
}

// Set makes the job answer with this state and native status from now on.
func (p *Poller) Set(id string, state bridge.State, native string) {
	p.SetObservation(id, bridge.Observation{State: state, Native: native})
}

// SetObservation makes the job answer with obs from now on.
func (p *Poller) SetObservation(id string, obs bridge.Observation) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.jobs[id] = obs
	delete(p.errs, id)
}

// Fail makes the job's polls fail with err until the next Set.
func (p *Poller) Fail(id string, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.errs[id] = err
}

// Delete makes the job answer ErrNotFound.
func (p *Poller) Delete(id string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.jobs, id)
	delete(p.errs, id)
}

// Polls returns how often the job was polled.
func (p *Poller) Polls(id string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.polls[id]
}

// Poll implements bridge.Poller.
func (p *Poller) Poll(ctx context.Context, job bridge.JobRef) (bridge.Observation, error) {
	if err := ctx.Err(); err != nil {
		return bridge.Observation{}, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.polls[job.ID]++
	if err := p.errs[job.ID]; err != nil {
		return bridge.Observation{}, err
	}
	obs, ok := p.jobs[job.ID]
	if !ok {
		return bridge.Observation{}, fmt.Errorf("fake %s: %w", job, bridge.ErrNotFound)
	}
	obs.Job = job
	obs.ObservedAt = time.Now()
	if obs.Raw == nil {
		obs.Raw, _ = json.Marshal(map[string]string{"status": obs.Native})
	}
	return obs, nil
}

// Received is one event read back from the stream.
type Received struct {
	Subject   string
	StreamSeq uint64
	Header    nats.Header
	Body      []byte
	Event     map[string]any
	Data      bridge.EventData
}

// openStream opens a stream and reads its state, failing the test if
// either does not work.
func openStream(ctx context.Context, tb testing.TB, js jetstream.JetStream, stream string) (jetstream.Stream, *jetstream.StreamInfo) {
	tb.Helper()
	s, err := js.Stream(ctx, stream)
	if err != nil {
		tb.Fatalf("open stream %s: %v", stream, err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		tb.Fatalf("stream info: %v", err)
	}
	return s, info
}

// ReadStream returns every message of the stream in order.
func ReadStream(tb testing.TB, js jetstream.JetStream, stream string) []Received {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, info := openStream(ctx, tb, js, stream)
	if info.State.Msgs == 0 {
		return nil
	}
	cons, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		tb.Fatalf("consumer: %v", err)
	}
	// Tests call this in polling loops: an ephemeral consumer left to its
	// inactivity timeout per call would pile up to the server's limit.
	defer func() {
		if info := cons.CachedInfo(); info != nil {
			_ = s.DeleteConsumer(context.Background(), info.Name)
		}
	}()
	var out []Received
	for uint64(len(out)) < info.State.Msgs {
		m, err := cons.Next(jetstream.FetchMaxWait(5 * time.Second))
		if err != nil {
			tb.Fatalf("read stream after %d of %d messages: %v", len(out), info.State.Msgs, err)
		}
		md, _ := m.Metadata()
		out = append(out, decodeReceived(m.Subject(), md.Sequence.Stream, m.Headers(), m.Data()))
	}
	return out
}

// decodeReceived parses one stored message as far as it is a CloudEvent.
func decodeReceived(subject string, seq uint64, h nats.Header, body []byte) Received {
	r := Received{Subject: subject, StreamSeq: seq, Header: h, Body: body}
	if err := json.Unmarshal(r.Body, &r.Event); err == nil {
		if d, ok := r.Event["data"]; ok {
			raw, _ := json.Marshal(d)
			_ = json.Unmarshal(raw, &r.Data)
		}
	}
	return r
}

// WaitFor polls cond until it holds or the timeout passes.
func WaitFor(tb testing.TB, timeout time.Duration, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// ErrTransient is a poll failure that is neither not-found nor malformed.
var ErrTransient = errors.New("fake transient failure")
