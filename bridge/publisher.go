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

// Publisher sends events to JetStream, one in flight per job so a job's
// events are stored in sequence order, many jobs at once, and commits each
// event in the tracker only after its PubAck.
type Publisher struct {
	js      jetstream.JetStream
	tracker *Tracker
	opts    PublisherOptions
	log     zerolog.Logger
	metrics *Metrics

	ready chan *Event   // job heads waiting for a sender
	slots chan struct{} // one token per pending event (MaxPending)

	// highAcked is the highest stream sequence acknowledged so far; floors
	// hold, per sender, highAcked+1 when its current event was first sent
	// (0 when idle). Together they bound from below the stream sequence of
	// anything not yet acknowledged: see Checkpoint.
	highAcked atomic.Uint64
	floors    []atomic.Uint64

	failing  atomic.Int64 // consecutive failed sends, for health and logs
	lastWarn atomic.Int64 // unix nanos of the last rate-limited warning

	wg      sync.WaitGroup
	stopped chan struct{}
}

// NewPublisher returns a publisher; Start launches its senders.
func NewPublisher(js jetstream.JetStream, tracker *Tracker, opts PublisherOptions, log zerolog.Logger, m *Metrics) *Publisher {
	opts.setDefaults()
	return &Publisher{
		js: js, tracker: tracker, opts: opts, log: log, metrics: m,
		ready:   make(chan *Event, opts.MaxPending),
		slots:   make(chan struct{}, opts.MaxPending),
		floors:  make([]atomic.Uint64, opts.MaxInFlight),
		stopped: make(chan struct{}),
	}
}

// Start runs the senders until ctx is done.
func (p *Publisher) Start(ctx context.Context) {
	for i := 0; i < p.opts.MaxInFlight; i++ {
		p.wg.Add(1)
		go p.sender(ctx, i)
	}
	go func() {
		p.wg.Wait()
		close(p.stopped)
	}()
}

// Done is closed when every sender has stopped.
func (p *Publisher) Done() <-chan struct{} { return p.stopped }

// Submit queues an event of a job. It blocks while MaxPending events are
// waiting for acks (backpressure) and returns ctx's error if ctx ends first;
// the event is then not queued and the tracker is unchanged.
func (p *Publisher) Submit(ctx context.Context, ev *Event) error {
	select {
	case p.slots <- struct{}{}:
	case <-ctx.Done():
		return fmt.Errorf("queue event %s for %s: %w", ev.ID, ev.Job, ctx.Err())
	}
	p.metrics.pending.Inc()
	if head := p.tracker.Enqueue(ev); head != nil {
		// The channel holds MaxPending and at most MaxPending events exist,
		// so this never blocks.
		p.ready <- head
	}
	return nil
}

// Pending returns the number of events waiting for their ack.
func (p *Publisher) Pending() int { return len(p.slots) }

// Healthy reports whether the last sends succeeded.
func (p *Publisher) Healthy() bool { return p.failing.Load() == 0 }

// Checkpoint returns a stream sequence C such that every event this
// publisher stored with a sequence <= C was acknowledged before the call.
// An event still in flight was first sent after its sender saw highAcked =
// floor-1, and the server stores messages in order, so it lands above that.
func (p *Publisher) Checkpoint() uint64 {
	c := p.highAcked.Load()
	for i := range p.floors {
		if f := p.floors[i].Load(); f != 0 && f-1 < c {
			c = f - 1
		}
	}
	return c
}

func (p *Publisher) sender(ctx context.Context, slot int) {
	defer p.wg.Done()
	for {
		var ev *Event
		select {
		case ev = <-p.ready:
		case <-ctx.Done():
			return
		}
		for ev != nil {
			p.floors[slot].Store(p.highAcked.Load() + 1)
			ack, err := p.sendUntilAcked(ctx, ev)
			p.floors[slot].Store(0)
			if err != nil {
				return // ctx ended; the event stays pending and uncommitted
			}
			for {
				cur := p.highAcked.Load()
				if ack.Sequence <= cur || p.highAcked.CompareAndSwap(cur, ack.Sequence) {
					break
				}
			}
			<-p.slots
			p.metrics.pending.Dec()
			p.metrics.published.WithLabelValues(ev.Type, boolLabel(ack.Duplicate)).Inc()
			p.metrics.publishLatency.Observe(time.Since(ev.ObservedAt).Seconds())
			ev = p.tracker.Acked(ev, ack.Sequence)
		}
	}
}

// sendUntilAcked publishes ev until JetStream acknowledges it or ctx ends.
func (p *Publisher) sendUntilAcked(ctx context.Context, ev *Event) (*jetstream.PubAck, error) {
	for attempt := 0; ; attempt++ {
		ack, err := p.sendOnce(ctx, ev)
		if err == nil {
			if p.failing.Swap(0) > 0 {
				p.log.Info().Str("job", ev.Job.String()).Msg("publishing to JetStream works again")
			}
			return ack, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		p.failing.Add(1)
		p.metrics.publishFailures.Inc()
		p.warnRateLimited(err, ev)
		if err := backoff.Sleep(ctx, p.opts.Retry.Delay(attempt)); err != nil {
			return nil, err
		}
	}
}

func (p *Publisher) sendOnce(ctx context.Context, ev *Event) (*jetstream.PubAck, error) {
	// A fresh message per attempt: nats.go sets Reply on the one it sends
	// and refuses to send a message whose Reply is already set.
	msg := &nats.Msg{Subject: ev.Msg.Subject, Header: ev.Msg.Header, Data: ev.Msg.Data}
	fut, err := p.js.PublishMsgAsync(msg, jetstream.WithMsgID(ev.ID))
	if err != nil {
		return nil, fmt.Errorf("publish %s: %w", ev.Subject, err)
	}
	timer := time.NewTimer(p.opts.AckTimeout)
	defer timer.Stop()
	select {
	case ack := <-fut.Ok():
		return ack, nil
	case err := <-fut.Err():
		return nil, fmt.Errorf("publish %s: %w", ev.Subject, err)
	case <-timer.C:
		return nil, fmt.Errorf("publish %s: no PubAck within %s: %w", ev.Subject, p.opts.AckTimeout, jetstream.ErrAsyncPublishTimeout)
	case <-ctx.Done():
		return nil, ctx.Err()
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
	hint := "check that NATS is reachable"
	if errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, nats.ErrNoResponders) {
		hint = "no stream takes this subject: let jobbridge manage the stream (stream.manage: true) or create it as deploy/nats describes"
	}
	p.log.Warn().Err(err).Str("job", ev.Job.String()).Int("pending", p.Pending()).
		Int64("consecutiveFailures", p.failing.Load()).
		Msg("cannot publish to JetStream; holding events and retrying, polling slows when the queue is full: " + hint)
}

// Drain waits until nothing is pending or ctx ends.
func (p *Publisher) Drain(ctx context.Context) error {
	t := time.NewTicker(10 * time.Millisecond)
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

func boolLabel(b bool) string {
	if b {
		return "true"
	}
	return "false"
}
