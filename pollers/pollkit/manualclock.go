package pollkit

import (
	"sync"
	"time"
)

// ManualClock is a clock that moves only when told to. Vendor simulators
// run their scripted jobs, token lifetimes and scheduled faults on one, and
// a test hands the same clock's Now to the poller (token expiry) so both
// sides agree on what time it is without sleeping. It is safe for
// concurrent use.
type ManualClock struct {
	mu sync.Mutex
	t  time.Time
}

// NewManualClock returns a clock standing at start.
func NewManualClock(start time.Time) *ManualClock { return &ManualClock{t: start} }

// Now returns the clock's time.
func (c *ManualClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Advance moves the clock forward by d; a negative d is ignored, since the
// simulators' scripts assume time never runs backwards.
func (c *ManualClock) Advance(d time.Duration) {
	if d <= 0 {
		return
	}
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}
