package simkit

import (
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2025, 3, 6, 16, 0, 0, 0, time.UTC)

const (
	epLogin  Endpoint  = "login"
	epStatus Endpoint  = "status"
	kindExp  FaultKind = "expire_tokens"
)

func testVocab() Vocabulary {
	return Vocabulary{
		Kinds:     []FaultKind{FaultStatus, FaultDelay, FaultMalformed, FaultHTML, kindExp},
		Endpoints: []Endpoint{epLogin, epStatus},
	}
}

// vendorFault is a vendor's own fault type that carries more than Fault.
type vendorFault struct {
	Fault
	Code int
}

func (f vendorFault) Base() Fault { return f.Fault }

func mustArm[F Armable](t *testing.T, q *FaultQueue[F], f F, now time.Time) {
	t.Helper()
	if err := q.Arm(f, now); err != nil {
		t.Fatalf("Arm(%+v): %v", f, err)
	}
}

func TestCountIsHowManyRequestsAFaultHits(t *testing.T) {
	q := NewFaultQueue[Fault](t0, testVocab(), nil)
	mustArm(t, q, Fault{Kind: FaultStatus, Status: 503, Count: 3}, t0)
	mustArm(t, q, Fault{Kind: FaultHTML}, t0) // Count 0 means 1
	for i := range 3 {
		f, ok := q.Take(epStatus, t0)
		if !ok || f.Kind != FaultStatus || f.StatusOr(500) != 503 {
			t.Fatalf("request %d: %+v %v, want the status fault", i+1, f, ok)
		}
	}
	if f, ok := q.Take(epStatus, t0); !ok || f.Kind != FaultHTML {
		t.Fatalf("request 4: %+v %v, want the html fault", f, ok)
	}
	if f, ok := q.Take(epStatus, t0); ok {
		t.Fatalf("request 5 hit %+v: every fault is used up", f)
	}
	if n := q.Armed(); n != 0 {
		t.Errorf("%d faults still armed", n)
	}
}

func TestEndpointTargetsOneCall(t *testing.T) {
	q := NewFaultQueue[Fault](t0, testVocab(), nil)
	mustArm(t, q, Fault{Kind: FaultMalformed, Endpoint: epLogin}, t0)
	mustArm(t, q, Fault{Kind: FaultHTML}, t0) // any endpoint
	// A status call skips the login fault and takes the one for any call.
	if f, ok := q.Take(epStatus, t0); !ok || f.Kind != FaultHTML {
		t.Fatalf("status call got %+v %v, want the html fault", f, ok)
	}
	if _, ok := q.Take(epStatus, t0); ok {
		t.Fatal("a second status call was hit by the login fault")
	}
	// An unknown path (EndpointAny) is hit only by faults for any call.
	if _, ok := q.Take(EndpointAny, t0); ok {
		t.Fatal("an unknown path was hit by the login fault")
	}
	if f, ok := q.Take(epLogin, t0); !ok || f.Kind != FaultMalformed {
		t.Fatalf("login got %+v %v, want the malformed fault", f, ok)
	}
}

func TestAtArmsByTheClockFromTheStart(t *testing.T) {
	start := t0
	q := NewFaultQueue[Fault](start, testVocab(), nil)
	// Injected 5 minutes after the start, At still counts from the start.
	mustArm(t, q, Fault{Kind: FaultStatus, At: 10 * time.Minute}, start.Add(5*time.Minute))
	if _, ok := q.Take(epStatus, start.Add(10*time.Minute-time.Nanosecond)); ok {
		t.Fatal("the fault hit before its time")
	}
	if _, ok := q.Take(epStatus, start.Add(10*time.Minute)); !ok {
		t.Fatal("the fault did not hit at its time")
	}
	// Without At a fault arms when it is injected, not at the start.
	mustArm(t, q, Fault{Kind: FaultHTML}, start.Add(20*time.Minute))
	if _, ok := q.Take(epStatus, start.Add(19*time.Minute)); ok {
		t.Fatal("a fault injected at 20m hit a request at 19m")
	}
}

func TestInstantFaultsFireOnceWhenDueAndHitNoRequest(t *testing.T) {
	var fired []time.Time
	q := NewFaultQueue(t0, testVocab(), map[FaultKind]func(Fault, time.Time){
		kindExp: func(_ Fault, due time.Time) { fired = append(fired, due) },
	})
	mustArm(t, q, Fault{Kind: kindExp, At: time.Minute, Count: 5}, t0)
	mustArm(t, q, Fault{Kind: FaultStatus, At: time.Minute}, t0)
	if _, ok := q.Take(epStatus, t0); ok || len(fired) != 0 {
		t.Fatalf("before its time: hit %v, fired %v", ok, fired)
	}
	// Due: the expiry fires (with the time it came due, not now) and the
	// request is hit by the status fault, not by the expiry.
	now := t0.Add(3 * time.Minute)
	if f, ok := q.Take(epStatus, now); !ok || f.Kind != FaultStatus {
		t.Fatalf("got %+v %v, want the status fault", f, ok)
	}
	if len(fired) != 1 || !fired[0].Equal(t0.Add(time.Minute)) {
		t.Fatalf("fired %v, want once at %v", fired, t0.Add(time.Minute))
	}
	q.FireDue(now.Add(time.Hour))
	if _, ok := q.Take(epStatus, now); ok || len(fired) != 1 {
		t.Fatalf("after: hit %v, fired %d times", ok, len(fired))
	}
}

func TestQueueKeepsAVendorsOwnFaultType(t *testing.T) {
	q := NewFaultQueue[vendorFault](t0, testVocab(), nil)
	mustArm(t, q, vendorFault{Fault: Fault{Kind: FaultStatus, Endpoint: epLogin}, Code: 498}, t0)
	if f, ok := q.Take(epLogin, t0); !ok || f.Code != 498 {
		t.Fatalf("got %+v %v, want the fault with its code", f, ok)
	}
	if err := q.Arm(vendorFault{Fault: Fault{Kind: "boom"}}, t0); err == nil {
		t.Fatal("an unknown kind in a vendor's fault was armed")
	}
}

func TestVocabularyRefusesWhatASimulatorCannotApply(t *testing.T) {
	v := testVocab()
	for _, tc := range []struct {
		f    Fault
		want string
	}{
		{Fault{Kind: "boom"}, `unknown fault kind "boom": want status, delay, malformed, html or expire_tokens`},
		{Fault{Kind: FaultStatus, Status: 99}, "fault status 99 is not an HTTP status"},
		{Fault{Kind: FaultStatus, Status: 600}, "fault status 600 is not an HTTP status"},
		{Fault{Kind: FaultDelay}, "a delay fault needs a positive delay"},
		{Fault{Kind: FaultHTML, Endpoint: "logout"}, `unknown endpoint "logout": want login, status or nothing for any`},
		{Fault{Kind: FaultHTML, Count: -1}, "fault count and at must not be negative"},
		{Fault{Kind: FaultHTML, At: -time.Second}, "fault count and at must not be negative"},
	} {
		err := v.Check(tc.f)
		if err == nil || err.Error() != tc.want {
			t.Errorf("Check(%+v) = %v, want %q", tc.f, err, tc.want)
		}
	}
	for _, ok := range []Fault{
		{Kind: FaultStatus},
		{Kind: FaultStatus, Status: 429, Endpoint: epLogin},
		{Kind: FaultDelay, Delay: time.Millisecond},
		{Kind: kindExp, At: time.Hour, Count: 2},
		// A status on a kind that does not use it is the vendor's business.
		{Kind: FaultHTML, Status: 999},
	} {
		if err := v.Check(ok); err != nil {
			t.Errorf("Check(%+v) = %v", ok, err)
		}
	}
	if err := (Vocabulary{Kinds: []FaultKind{FaultStatus}}).Check(Fault{Kind: FaultStatus, Endpoint: epLogin}); err == nil ||
		!strings.Contains(err.Error(), "want nothing for any") {
		t.Errorf("a simulator without endpoints: %v", err)
	}
}
