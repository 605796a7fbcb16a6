package pollkit

import (
	"sync"
	"testing"
	"time"
)

func TestManualClockMovesOnlyForward(t *testing.T) {
	start := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	c := NewManualClock(start)
	if !c.Now().Equal(start) {
		t.Fatalf("Now = %v, want %v", c.Now(), start)
	}
	c.Advance(90 * time.Second)
	c.Advance(-time.Hour)
	if want := start.Add(90 * time.Second); !c.Now().Equal(want) {
		t.Fatalf("Now = %v, want %v", c.Now(), want)
	}
	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() { c.Advance(time.Second); _ = c.Now() })
	}
	wg.Wait()
	if want := start.Add(140 * time.Second); !c.Now().Equal(want) {
		t.Fatalf("after concurrent advances Now = %v, want %v", c.Now(), want)
	}
}
