package simkit

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Endpoint names a simulated call, for targeting faults. Each simulator
// declares its own; EndpointAny matches every request, unknown paths
// included.
type Endpoint string

// EndpointAny is a fault's Endpoint when it hits any request.
const EndpointAny Endpoint = ""

// FaultKind says what a fault does to the requests it hits. The kinds
// below are common to the simulators; what each answers with (an HTML page,
// the vendor's error body) is the simulator's own, and a simulator adds
// kinds its vendor has (throttling, errors inside HTTP 200, expiries).
type FaultKind string

// The common fault kinds.
const (
	// FaultStatus answers with Fault.Status (default 500).
	FaultStatus FaultKind = "status"
	// FaultDelay holds the answer for Fault.Delay (real time: see
	// Host.Hold), then answers normally.
	FaultDelay FaultKind = "delay"
	// FaultMalformed answers 200 with truncated JSON.
	FaultMalformed FaultKind = "malformed"
	// FaultHTML answers with an HTML page, as a proxy or SSO page might.
	FaultHTML FaultKind = "html"
)

// Fault is an injected misbehaviour, as a Go caller or a scenario gives it.
type Fault struct {
	Kind FaultKind `yaml:"kind"`
	// Count is how many requests it hits; 0 means 1.
	Count int `yaml:"count"`
	// Status is the HTTP status of a FaultStatus; default 500.
	Status int `yaml:"status"`
	// Delay is the hold of a FaultDelay.
	Delay time.Duration `yaml:"delay"`
	// Endpoint limits the fault to one call; empty means any.
	Endpoint Endpoint `yaml:"endpoint"`
	// At arms the fault this long after the server started, by its Clock;
	// zero arms it at once.
	At time.Duration `yaml:"at"`
}

// Base returns f: Fault is Armable.
func (f Fault) Base() Fault { return f }

// StatusOr returns f.Status, or def when it is not set.
func (f Fault) StatusOr(def int) int {
	if f.Status == 0 {
		return def
	}
	return f.Status
}

// Armable is a simulator's fault type as a FaultQueue sees it: Fault
// itself, or a vendor's own type that carries more (ArcGIS's error code)
// and hands over its Fault part.
type Armable interface {
	Base() Fault
}

// Vocabulary is what a simulator's faults may say, each list in the order
// its error messages name them.
type Vocabulary struct {
	Kinds []FaultKind
	// Endpoints leaves out EndpointAny, which is always allowed.
	Endpoints []Endpoint
}

// Check refuses a fault the simulator cannot apply: an unknown kind or
// endpoint, a status fault whose status is not an HTTP status, a delay
// fault without a positive delay, a negative count or arming time. A
// simulator checks its own kinds' extra fields first.
func (v Vocabulary) Check(f Fault) error {
	switch {
	case !slices.Contains(v.Kinds, f.Kind):
		return fmt.Errorf("unknown fault kind %q: want %s", f.Kind, list(v.Kinds, ""))
	case f.Kind == FaultStatus && f.Status != 0 && (f.Status < 100 || f.Status > 599):
		return fmt.Errorf("fault status %d is not an HTTP status", f.Status)
	case f.Kind == FaultDelay && f.Delay <= 0:
		return errors.New("a delay fault needs a positive delay")
	case f.Endpoint != EndpointAny && !slices.Contains(v.Endpoints, f.Endpoint):
		return fmt.Errorf("unknown endpoint %q: want %s", f.Endpoint, list(v.Endpoints, "nothing for any"))
	case f.Count < 0 || f.At < 0:
		return errors.New("fault count and at must not be negative")
	}
	return nil
}

// list writes "a, b or c", with last as the final alternative when set.
func list[T ~string](xs []T, last string) string {
	names := make([]string, 0, len(xs)+1)
	for _, x := range xs {
		names = append(names, string(x))
	}
	if last != "" {
		names = append(names, last)
	}
	if len(names) < 2 {
		return strings.Join(names, "")
	}
	return strings.Join(names[:len(names)-1], ", ") + " or " + names[len(names)-1]
}

// FaultQueue holds a simulator's armed faults. It is not safe for
// concurrent use: the simulator guards it with the lock that guards what
// its instant faults touch (its tokens, its sessions).
type FaultQueue[F Armable] struct {
	start   time.Time
	vocab   Vocabulary
	instant map[FaultKind]func(f F, due time.Time)
	armed   []*armedFault[F]
}

type armedFault[F Armable] struct {
	fault F
	base  Fault
	at    time.Time
	left  int
}

// NewFaultQueue returns an empty queue for a simulator that started at
// start (by its clock) and whose faults speak vocab. instant maps the
// kinds that hit no request to what they do once due, given the time they
// came due: a token expiry revokes what was issued until then, say.
func NewFaultQueue[F Armable](start time.Time, vocab Vocabulary, instant map[FaultKind]func(f F, due time.Time)) *FaultQueue[F] {
	return &FaultQueue[F]{start: start, vocab: vocab, instant: instant}
}

// Arm checks f against the queue's Vocabulary and adds it, armed at now
// or, when f sets At, at At after the start.
func (q *FaultQueue[F]) Arm(f F, now time.Time) error {
	b := f.Base()
	if err := q.vocab.Check(b); err != nil {
		return err
	}
	af := &armedFault[F]{fault: f, base: b, at: now, left: max(b.Count, 1)}
	if b.At > 0 {
		af.at = q.start.Add(b.At)
	}
	q.armed = append(q.armed, af)
	return nil
}

// FireDue runs the instant faults due by now, once each, and drops them.
func (q *FaultQueue[F]) FireDue(now time.Time) {
	q.keep(func(af *armedFault[F]) bool {
		fire, ok := q.instant[af.base.Kind]
		if !ok || af.at.After(now) {
			return true
		}
		if fire != nil {
			fire(af.fault, af.at)
		}
		return false
	})
}

// Take fires the instant faults due by now, then returns the first fault
// armed by now that targets ep (or any endpoint), using up one of the
// requests it hits.
func (q *FaultQueue[F]) Take(ep Endpoint, now time.Time) (F, bool) {
	q.FireDue(now)
	var hit F
	found := false
	q.keep(func(af *armedFault[F]) bool {
		if !found && !af.at.After(now) && (af.base.Endpoint == EndpointAny || af.base.Endpoint == ep) {
			if _, instant := q.instant[af.base.Kind]; !instant {
				hit, found = af.fault, true
				af.left--
			}
		}
		return af.left > 0
	})
	return hit, found
}

// Armed counts the faults still waiting to fire or to hit a request.
func (q *FaultQueue[F]) Armed() int { return len(q.armed) }

// keep retains the faults for which fn is true, in order.
func (q *FaultQueue[F]) keep(fn func(*armedFault[F]) bool) {
	kept := q.armed[:0]
	for _, af := range q.armed {
		if fn(af) {
			kept = append(kept, af)
		}
	}
	clear(q.armed[len(kept):])
	q.armed = kept
}
