// Package backoff owns the one retry-delay rule used across jobbridge: capped
// exponential backoff with jitter, and a context-aware sleep. It has no
// dependencies so that the bridge core, the pollers and the notifiers can all
// share it without import cycles.
package backoff

import (
	"context"
	"math"
	"math/rand/v2"
	"time"
)

// Defaults used for zero fields of a Policy.
const (
	DefaultInitial    = 500 * time.Millisecond
	DefaultMax        = 30 * time.Second
	DefaultMultiplier = 2.0
	DefaultJitter     = 0.5
)

// Policy describes a capped, jittered exponential backoff. The zero value is
// usable: every zero field takes its Default.
//
// The un-jittered delay for attempt n (counting from 0) is
// Initial * Multiplier^n, capped at Max. Jitter is the fraction of that delay
// drawn at random: the delay is uniform in [d*(1-Jitter), d]. The default 0.5
// is "equal jitter": half of the delay is guaranteed and half is random.
// Equal jitter rather than full jitter (Jitter 1) because the callers are
// pollers retrying a vendor that just failed: full jitter may retry almost at
// once, which is what an overloaded on-prem server needs least, while half a
// delay of randomness is plenty to spread many pollers apart.
type Policy struct {
	// Initial is the delay before the first retry.
	Initial time.Duration
	// Max caps every delay, jitter included. A Max below Initial is raised
	// to Initial.
	Max time.Duration
	// Multiplier is the growth factor per attempt; values below 1 mean the
	// default.
	Multiplier float64
	// Jitter is the random fraction of each delay, in (0, 1]. Zero means
	// DefaultJitter; a negative value turns jitter off (for tests and for
	// callers that add their own randomness). Values above 1 are taken as 1.
	Jitter float64
}

// WithDefaults returns p with every zero field replaced by its default.
func (p Policy) WithDefaults() Policy {
	if p.Initial <= 0 {
		p.Initial = DefaultInitial
	}
	if p.Max <= 0 {
		p.Max = DefaultMax
	}
	if p.Max < p.Initial {
		p.Max = p.Initial
	}
	if p.Multiplier < 1 {
		p.Multiplier = DefaultMultiplier
	}
	switch {
	case p.Jitter == 0:
		p.Jitter = DefaultJitter
	case p.Jitter > 1:
		p.Jitter = 1
	}
	return p
}

// Delay returns how long to wait before retry number attempt (0 for the first
// retry). Negative attempts count as 0. Delay is safe for concurrent use.
func (p Policy) Delay(attempt int) time.Duration {
	p = p.WithDefaults()
	if attempt < 0 {
		attempt = 0
	}
	// Float arithmetic cannot overflow into a negative duration the way
	// repeated integer multiplication can; Pow saturates at +Inf instead.
	d := float64(p.Initial) * math.Pow(p.Multiplier, float64(attempt))
	if d > float64(p.Max) || math.IsInf(d, 0) || math.IsNaN(d) {
		d = float64(p.Max)
	}
	if p.Jitter > 0 {
		d -= d * p.Jitter * rand.Float64()
	}
	return time.Duration(d)
}

// Sleep waits for d or until ctx is done, whichever comes first. It returns
// ctx.Err() when ctx ended the wait (also when ctx is already done and d is
// not positive), and nil otherwise.
func Sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
