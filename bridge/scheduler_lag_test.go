package bridge

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestSchedulingLagCountsTheWaitForConcurrency: the lag metric says how
// late a poll started after it was due, so a job held back by its
// instance's concurrency limit must count as late, not as on time.
func TestSchedulingLagCountsTheWaitForConcurrency(t *testing.T) {
	const pollTakes = 100 * time.Millisecond
	s := newScheduler(ScheduleOptions{Interval: time.Hour, Workers: 4},
		[]Instance{{Vendor: "fake", Name: "one", Concurrency: 1}})
	var mu sync.Mutex
	var lags []time.Duration
	s.lag = func(d time.Duration) {
		mu.Lock()
		lags = append(lags, d)
		mu.Unlock()
	}
	s.poll = func(ctx context.Context, e *entry) pollResult {
		select {
		case <-time.After(pollTakes):
		case <-ctx.Done():
		}
		return pollResult{}
	}
	s.onDue = func(*entry) {}
	for _, id := range []string{"a", "b", "c"} {
		known, _ := s.add(&Watch{Vendor: "fake", Instance: "one", Job: id}, "")
		require.True(t, known)
		s.hint(JobRef{Vendor: "fake", Instance: "one", ID: id}) // all due now
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.run(ctx)
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		n := len(lags)
		mu.Unlock()
		if n >= 3 || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-done

	mu.Lock()
	defer mu.Unlock()
	require.Len(t, lags, 3, "one lag per poll started")
	// One slot: the polls run one after the other, so the last started at
	// least two polls after all three were due.
	late := max(lags[0], lags[1], lags[2])
	assert.GreaterOrEqual(t, late, 2*pollTakes, "lags %v: the wait for the instance's slot is not counted", lags)
}
