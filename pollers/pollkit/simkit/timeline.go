package simkit

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// Segment is one step of a Timeline and the clock time it begins.
type Segment[S any] struct {
	Start time.Time
	Step  S
}

// Timeline is what one scripted entity (a job, a task, an ETL) shows over
// time: each step holds from its start until the next one's, the last
// forever. Its zero value is empty; a simulator never asks an empty one
// what it shows. It is not safe for concurrent use: the simulator's lock
// guards it.
type Timeline[S any] struct {
	segs []Segment[S]
}

// Scripted lays steps end to end from start, each held for hold(step); the
// last step's hold is ignored.
func Scripted[S any](start time.Time, steps []S, hold func(S) time.Duration) Timeline[S] {
	tl := Timeline[S]{segs: make([]Segment[S], 0, len(steps))}
	t := start
	for _, st := range steps {
		tl.Set(t, st)
		t = t.Add(hold(st))
	}
	return tl
}

// Set makes step the one shown from at on. at must not be before the last
// step's start. A step set at the very instant of the last one replaces it:
// nobody could have seen the earlier one.
func (tl *Timeline[S]) Set(at time.Time, step S) {
	if n := len(tl.segs); n > 0 && tl.segs[n-1].Start.Equal(at) {
		tl.segs[n-1].Step = step
		return
	}
	tl.segs = append(tl.segs, Segment[S]{Start: at, Step: step})
}

// At returns the segment in force at now: the last one begun by then, or
// the first when none has.
func (tl *Timeline[S]) At(now time.Time) Segment[S] {
	past := tl.Until(now)
	return past[len(past)-1]
}

// Until returns the segments begun by now, the first always: the history
// behind what At shows (a job's accumulated messages, say). The caller
// must not change them.
func (tl *Timeline[S]) Until(now time.Time) []Segment[S] {
	n := 1
	for n < len(tl.segs) && !tl.segs[n].Start.After(now) {
		n++
	}
	return tl.segs[:n:n]
}

// First returns the first segment.
func (tl *Timeline[S]) First() Segment[S] { return tl.segs[0] }

// Last returns the last segment, the one that holds forever.
func (tl *Timeline[S]) Last() Segment[S] { return tl.segs[len(tl.segs)-1] }

// Changes returns the segments begun by now that show something new: the
// first, then each whose step a client can tell apart from the one before
// (same reports that it cannot). They are a simulator's ground truth,
// whether or not anyone polled.
func (tl *Timeline[S]) Changes(now time.Time, same func(a, b S) bool) []Segment[S] {
	var out []Segment[S]
	for i, sg := range tl.segs {
		if sg.Start.After(now) {
			break
		}
		if i == 0 || !same(tl.segs[i-1].Step, sg.Step) {
			out = append(out, sg)
		}
	}
	return out
}

// CheckScript refuses a script a Timeline cannot play: no steps, a step
// without a status, or a step other than the last without a positive hold.
func CheckScript[S any](steps []S, status func(S) string, hold func(S) time.Duration) error {
	if len(steps) == 0 {
		return errors.New("the script is empty")
	}
	for i, st := range steps {
		if strings.TrimSpace(status(st)) == "" {
			return fmt.Errorf("script step %d has no status", i+1)
		}
		if i < len(steps)-1 && hold(st) <= 0 {
			return fmt.Errorf("script step %d (%s) needs a positive duration; only the last step may omit it", i+1, status(st))
		}
	}
	return nil
}
