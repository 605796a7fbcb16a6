package bridge

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jobbridge/jobbridge/bridge/backoff"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
)

// PublisherOptions bound what the publisher holds and how it retries.
type PublisherOptions struct {
	// MaxInFlight bounds events sent and not yet acknowledged (default 1024).
	MaxInFlight int
	// MaxPending bounds events detected and not yet acknowledged, in flight
	// or queued (default 10000). When it is reached, Submit blocks: polling
	// slows down instead of memory growing while NATS is unreachable.
	MaxPending int
	// AckTimeout is how long to wait for one PubAck before sending again
	// (default 5s). The copy carries the same Nats-Msg-Id, so a late first
	// ack and the resend never make two messages.
	AckTimeout time.Duration
	// Retry paces resends while NATS is unreachable.
	Retry backoff.Policy
}

func (o *PublisherOptions) setDefaults() {
	if o.MaxInFlight <= 0 {
		o.MaxInFlight = 1024
	}
	if o.MaxPending <= 0 {
		o.MaxPending = 10000
	}
	if o.MaxPending < o.MaxInFlight {
		o.MaxPending = o.MaxInFlight
	}
	if o.AckTimeout <= 0 {
		o.AckTimeout = 5 * time.Second
	}
	if o.Retry.Initial <= 0 {
		o.Retry = backoff.Policy{Initial: 100 * time.Millisecond, Max: 10 * time.Second, Multiplier: 2, Jitter: 0.2}
	}
}

// JetStreamOptions returns the options the publisher's JetStream context
// must be created with: its ack and error callbacks drive the publisher.
func (p *Publisher) JetStreamOptions() []jetstream.JetStreamOpt {
	return []jetstream.JetStreamOpt{
		jetstream.WithPublishAsyncMaxPending(p.opts.MaxInFlight + 64),
		jetstream.WithPublishAsyncTimeout(p.opts.AckTimeout),
		jetstream.WithPublishAsyncAckHandler(p.onAck),
		jetstream.WithPublishAsyncErrHandler(p.onErr),
	}
}

// Publisher sends events to JetStream: one in flight per job, so a job's
// events are stored in sequence order, many jobs at once, each committed in
// the tracker only after its PubAck.
//
// It runs on nats.go's async-publish callbacks: an ack commits its event and
// sends the job's next one (or the next ready job) from the callback itself,
// so the steady state has no goroutine hand-offs and no timer per message.
type Publisher struct {
	js jetstream.JetStream
	// gate, when set (scale-out), may refuse an event before it is sent:
	// errFenced holds it for a retry, errStale abandons it.
	gate    func(ev *Event) error
	tracker *Tracker
	opts    PublisherOptions
	log     zerolog.Logger
	metrics *Metrics

	slots chan struct{} // one token per pending event (MaxPending)

	mu       sync.Mutex
	ready    []*Event // job heads waiting for an in-flight slot
	inFlight map[*nats.Msg]*Event
	// backoffs are events waiting out a retry delay; they keep their
	// in-flight slot, so a failing NATS gets no more traffic.
	backoffs map[*Event]*time.Timer
	stopped  bool

	// published holds the counter of each event type (fixed set) for
	// fresh and duplicate acks, resolved once: a label lookup per ack shows
	// in the publish-path profile.
	published map[string][2]prometheus.Counter

	highAcked atomic.Uint64
	failing   atomic.Int64 // consecutive failed sends, for health and logs
	// fenced counts sends held back while a scale-out lease was not
	// current; abandoned counts events given up because their job's shard
	// moved to another replica.
	fenced, abandoned atomic.Int64
	lastWarn          atomic.Int64 // unix nanos of the last rate-limited warning
}

// NewPublisher returns a publisher. js must have been created with
// JetStreamOptions; use NewPublisherJS to get both.
func NewPublisher(tracker *Tracker, opts PublisherOptions, log zerolog.Logger, m *Metrics) *Publisher {
	opts.setDefaults()
	published := make(map[string][2]prometheus.Counter)
	for _, t := range EventTypes() {
		published[t] = [2]prometheus.Counter{m.published.WithLabelValues(t, "false"), m.published.WithLabelValues(t, "true")}
	}
	return &Publisher{
		tracker: tracker, opts: opts, log: log, metrics: m, published: published,
		slots:    make(chan struct{}, opts.MaxPending),
		inFlight: make(map[*nats.Msg]*Event, opts.MaxInFlight),
		backoffs: make(map[*Event]*time.Timer),
	}
}

// NewPublisherJS creates a publisher and its JetStream context on nc.
func NewPublisherJS(nc *nats.Conn, tracker *Tracker, opts PublisherOptions, log zerolog.Logger, m *Metrics) (*Publisher, error) {
	p := NewPublisher(tracker, opts, log, m)
	js, err := jetstream.New(nc, p.JetStreamOptions()...)
	if err != nil {
		return nil, fmt.Errorf("JetStream publisher: %w", err)
	}
	p.js = js
	return p, nil
}

// Submit queues an event of a job. It blocks while MaxPending events are
// waiting for acks (backpressure) and returns ctx's error if ctx ends first;
// the event is then not queued and the tracker is unchanged.
func (p *Publisher) Submit(ctx context.Context, ev *Event) error {
	select {
	case p.slots <- struct{}{}:
	default:
		select {
		case p.slots <- struct{}{}:
		case <-ctx.Done():
			return fmt.Errorf("queue event %s for %s: %w", ev.ID, ev.Job, ctx.Err())
		}
	}
	p.metrics.pending.Inc()
	head := p.tracker.Enqueue(ev)
	if head == nil {
		return nil // an earlier event of the job is in flight; it follows
	}
	p.mu.Lock()
	if p.stopped || len(p.inFlight)+len(p.backoffs) >= p.opts.MaxInFlight {
		p.ready = append(p.ready, head)
		p.mu.Unlock()
		return nil
	}
	p.sendLocked(head)
	p.mu.Unlock()
	return nil
}

// sendLocked publishes ev; p.mu is held. nats.go never blocks here: at most
// MaxInFlight messages are outstanding and its limit is higher.
func (p *Publisher) sendLocked(ev *Event) {
	if ev.attempts == 0 {
		ev.floor = p.highAcked.Load() + 1
	}
	ev.attempts++
	// The first attempt sends the encoded message itself; a resend needs a
	// fresh one, because nats.go sets Reply on what it sends and refuses a
	// message whose Reply is already set.
	msg := ev.Msg
	if ev.attempts > 1 || msg.Reply != "" {
		msg = &nats.Msg{Subject: ev.Msg.Subject, Header: ev.Msg.Header, Data: ev.Msg.Data}
	}
	var err error
	if p.gate != nil {
		err = p.gate(ev)
	}
	if err == nil {
		p.inFlight[msg] = ev
		if _, err = p.js.PublishMsgAsync(msg, jetstream.WithMsgID(ev.ID)); err != nil {
			delete(p.inFlight, msg)
		}
	}
	if err != nil {
		switch {
		case errors.Is(err, errStale):
			p.abandonLocked(ev)
		case errors.Is(err, errFenced):
			// Not a NATS failure: the lease is being renewed or the shard
			// moves away. Retry quietly; once the shard is dropped the event
			// is stale and abandoned, once renewed it goes out.
			p.fenced.Add(1)
			p.scheduleLocked(ev, min(p.opts.Retry.Delay(ev.attempts-1), fencedRetry))
		default:
			p.retryLocked(ev, err)
		}
	}
}

// abandonLocked gives up an event the tracker no longer holds (its job's
// shard moved to another replica, which re-detects and publishes with the
// same ids): it frees its slot and lets the next ready job use the
// in-flight room. p.mu is held.
func (p *Publisher) abandonLocked(ev *Event) {
	p.abandoned.Add(1)
	<-p.slots
	p.metrics.pending.Dec()
	if p.stopped || len(p.ready) == 0 {
		return
	}
	next := p.ready[0]
	p.ready[0] = nil
	p.ready = p.ready[1:]
	p.sendLocked(next)
}

func (p *Publisher) onAck(_ jetstream.JetStream, msg *nats.Msg, ack *jetstream.PubAck) {
	p.mu.Lock()
	ev, ok := p.inFlight[msg]
	if !ok {
		p.mu.Unlock()
		return
	}
	delete(p.inFlight, msg)
	p.mu.Unlock()

	for {
		cur := p.highAcked.Load()
		if ack.Sequence <= cur || p.highAcked.CompareAndSwap(cur, ack.Sequence) {
			break
		}
	}
	if p.failing.Swap(0) > 0 {
		p.log.Info().Str("job", ev.Job.String()).Msg("publishing to JetStream works again")
	}
	<-p.slots
	p.metrics.pending.Dec()
	if c, ok := p.published[ev.Type]; ok {
		dup := 0
		if ack.Duplicate {
			dup = 1
		}
		c[dup].Inc()
	} else {
		p.metrics.published.WithLabelValues(ev.Type, boolLabel(ack.Duplicate)).Inc()
	}
	p.metrics.publishLatency.Observe(time.Since(ev.ObservedAt).Seconds())
	next := p.tracker.Acked(ev, ack.Sequence)

	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopped {
		return
	}
	if next == nil && len(p.ready) > 0 {
		next = p.ready[0]
		p.ready[0] = nil
		p.ready = p.ready[1:]
	}
	if next != nil {
		p.sendLocked(next)
	}
}

func (p *Publisher) onErr(_ jetstream.JetStream, msg *nats.Msg, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	ev, ok := p.inFlight[msg]
	if !ok {
		return
	}
	delete(p.inFlight, msg)
	p.retryLocked(ev, err)
}

// retryLocked sends ev again after a backoff.
func (p *Publisher) retryLocked(ev *Event, err error) {
	p.failing.Add(1)
	p.metrics.publishFailures.Inc()
	p.warnRateLimited(err, ev)
	p.scheduleLocked(ev, p.opts.Retry.Delay(ev.attempts-1))
}

// fencedRetry bounds the wait of an event held by a lease being renewed
// (renewals come every quarter of the lease TTL).
const fencedRetry = 250 * time.Millisecond

// scheduleLocked resends ev after d; it keeps its slot.
func (p *Publisher) scheduleLocked(ev *Event, d time.Duration) {
	if p.stopped {
		return
	}
	p.backoffs[ev] = time.AfterFunc(d, func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		if _, ok := p.backoffs[ev]; !ok || p.stopped {
			return
		}
		delete(p.backoffs, ev)
		p.sendLocked(ev)
	})
}

// Pending returns the number of events waiting for their ack.
func (p *Publisher) Pending() int { return len(p.slots) }

// Healthy reports whether the last sends succeeded.
func (p *Publisher) Healthy() bool { return p.failing.Load() == 0 }

// Checkpoint returns a stream sequence C such that every event this
// publisher stored with a sequence <= C was acknowledged before the call.
// An event not yet acknowledged was first sent after the publisher had seen
// the ack of sequence floor-1, and the server stores in order, so it lands
// above that.
func (p *Publisher) Checkpoint() uint64 {
	c := p.highAcked.Load()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, ev := range p.inFlight {
		c = min(c, ev.floor-1)
	}
	for ev := range p.backoffs {
		c = min(c, ev.floor-1)
	}
	return c
}

// Stop ends sending: nothing more is sent or resent. Events not yet
// acknowledged stay uncommitted and are detected again after a restart.
func (p *Publisher) Stop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stopped = true
	for ev, t := range p.backoffs {
		t.Stop()
		delete(p.backoffs, ev)
	}
}

// warnRateLimited logs a send failure at most once every 10 seconds: an
// outage must not turn into a log storm.
func (p *Publisher) warnRateLimited(err error, ev *Event) {
	now := time.Now().UnixNano()
	last := p.lastWarn.Load()
	if now-last < int64(10*time.Second) || !p.lastWarn.CompareAndSwap(last, now) {
		return
	}
	hint := "check that NATS is reachable and that its JetStream store has room (nats-server logs a full or unwritable store)"
	switch {
	case storeFull(err):
		hint = "the NATS server's JetStream store is full or failing: free space under its store directory or raise its limits"
	case errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, nats.ErrNoResponders):
		hint = "no stream takes this subject: let jobbridge manage the stream (stream.manage: true) or create it as deploy/nats describes"
	}
	p.log.Warn().Err(err).Str("job", ev.Job.String()).Int("pending", p.Pending()).
		Int64("consecutiveFailures", p.failing.Load()).
		Msg("cannot publish to JetStream; holding events and retrying, polling slows when the queue is full: " + hint)
}

// Drain waits until nothing is pending or ctx ends.
func (p *Publisher) Drain(ctx context.Context) error {
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for p.Pending() > 0 {
		select {
		case <-ctx.Done():
			return fmt.Errorf("%d events still unacknowledged: %w", p.Pending(), ctx.Err())
		case <-t.C:
		}
	}
	return nil
}

// storeFull tells the JetStream errors of a full or failing store (codes
// from nats-server's errors.json: insufficient resources, storage resources
// exceeded, stream store failed).
func storeFull(err error) bool {
	var apiErr *jetstream.APIError
	if !errors.As(err, &apiErr) {
		return false
	}
	switch apiErr.ErrorCode {
	case 10023, 10047, 10077:
		return true
	}
	return false
}

func boolLabel(b bool) string {
	if b {
		return "true"
	}
	return "false"
}
