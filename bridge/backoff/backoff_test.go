package backoff

import (
	"context"
	"errors"
	"math"
	"testing"
	"time"
)

func TestZeroPolicyDefaults(t *testing.T) {
	p := Policy{}.WithDefaults()
	if p.Initial != DefaultInitial || p.Max != DefaultMax || p.Multiplier != DefaultMultiplier || p.Jitter != DefaultJitter {
		t.Fatalf("zero policy defaults = %+v", p)
	}
	for attempt := 0; attempt < 50; attempt++ {
		d := Policy{}.Delay(attempt)
		if d <= 0 || d > DefaultMax {
			t.Fatalf("zero policy Delay(%d) = %v, want in (0, %v]", attempt, d, DefaultMax)
		}
	}
}

func TestDelayWithoutJitterIsExponentialAndCapped(t *testing.T) {
	p := Policy{Initial: 100 * time.Millisecond, Max: time.Second, Multiplier: 2, Jitter: -1}
	want := []time.Duration{100, 200, 400, 800, 1000, 1000}
	for i, w := range want {
		if got := p.Delay(i); got != w*time.Millisecond {
			t.Errorf("Delay(%d) = %v, want %v", i, got, w*time.Millisecond)
		}
	}
	if got := p.Delay(-3); got != 100*time.Millisecond {
		t.Errorf("Delay(-3) = %v, want the first delay", got)
	}
}

func TestDelayHugeAttemptDoesNotOverflow(t *testing.T) {
	p := Policy{Initial: time.Second, Max: time.Hour, Multiplier: 10, Jitter: -1}
	for _, a := range []int{62, 63, 64, 1000, math.MaxInt32, math.MaxInt} {
		if got := p.Delay(a); got != time.Hour {
			t.Errorf("Delay(%d) = %v, want the cap %v", a, got, time.Hour)
		}
	}
}

func TestEqualJitterBounds(t *testing.T) {
	p := Policy{Initial: time.Second, Max: time.Second}
	lo, hi := time.Duration(math.MaxInt64), time.Duration(0)
	for range 2000 {
		d := p.Delay(0)
		if d < 500*time.Millisecond || d > time.Second {
			t.Fatalf("equal jitter delay %v outside [500ms, 1s]", d)
		}
		lo, hi = min(lo, d), max(hi, d)
	}
	// 2000 uniform draws: the spread must cover most of the range, or the
	// delays are not jittered at all.
	if hi-lo < 400*time.Millisecond {
		t.Fatalf("delays span only %v..%v: jitter is not applied", lo, hi)
	}
}

func TestFullJitterCanGoNearZero(t *testing.T) {
	p := Policy{Initial: time.Second, Max: time.Second, Jitter: 1}
	lo := time.Second
	for range 2000 {
		d := p.Delay(0)
		if d < 0 || d > time.Second {
			t.Fatalf("full jitter delay %v outside [0, 1s]", d)
		}
		lo = min(lo, d)
	}
	if lo > 100*time.Millisecond {
		t.Fatalf("smallest of 2000 full-jitter delays is %v; expected some below 100ms", lo)
	}
}

func TestMaxBelowInitialIsRaised(t *testing.T) {
	p := Policy{Initial: 2 * time.Second, Max: time.Second, Jitter: -1}
	if got := p.Delay(3); got != 2*time.Second {
		t.Fatalf("Delay = %v, want Initial when Max < Initial", got)
	}
}

func TestSleepReturnsOnCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	go func() { time.Sleep(20 * time.Millisecond); cancel() }()
	start := time.Now()
	err := Sleep(ctx, time.Minute)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Sleep err = %v, want context.Canceled", err)
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Fatalf("Sleep took %v after cancel", el)
	}
}

func TestSleepCompletes(t *testing.T) {
	start := time.Now()
	if err := Sleep(context.Background(), 30*time.Millisecond); err != nil {
		t.Fatalf("Sleep: %v", err)
	}
	if el := time.Since(start); el < 30*time.Millisecond {
		t.Fatalf("Sleep returned after %v, want >= 30ms", el)
	}
}

func TestSleepNonPositive(t *testing.T) {
	if err := Sleep(context.Background(), 0); err != nil {
		t.Fatalf("Sleep(0) = %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := Sleep(ctx, -time.Second); !errors.Is(err, context.Canceled) {
		t.Fatalf("Sleep on done ctx = %v, want context.Canceled", err)
	}
	if err := Sleep(ctx, time.Hour); !errors.Is(err, context.Canceled) {
		t.Fatalf("Sleep(1h) on done ctx = %v, want context.Canceled", err)
	}
}
