package bridgetest

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/jobbridge/jobbridge/bridge"
)

// Truth is one state change as a simulator recorded it (ground truth).
type Truth struct {
	Job    string
	Native string
	At     time.Time
}

// Window is a span of time during which the bridge was running.
type Window struct{ From, To time.Time }

// Report is what CheckStream found. Every slice lists offenders.
type Report struct {
	Jobs, Expected, Published int
	// Lost: a vendor state that lasted long enough while the bridge was up
	// but never reached the stream.
	Lost []string
	// Duplicates: two messages with one event id, or one transition
	// published twice under different ids.
	Duplicates []string
	// OrderViolations: a job's sequence numbers not 1, 2, 3... in stream order.
	OrderViolations []string
	// Bogus: a published native status the vendor never had at that point.
	Bogus []string
}

// OK reports whether nothing was lost, duplicated, reordered or invented.
func (r Report) OK() bool {
	return len(r.Lost)+len(r.Duplicates)+len(r.OrderViolations)+len(r.Bogus) == 0
}

func (r Report) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "jobs=%d expected=%d published=%d lost=%d duplicates=%d order=%d bogus=%d",
		r.Jobs, r.Expected, r.Published, len(r.Lost), len(r.Duplicates), len(r.OrderViolations), len(r.Bogus))
	for _, l := range [][]string{r.Lost, r.Duplicates, r.OrderViolations, r.Bogus} {
		for i, s := range l {
			if i == 5 {
				fmt.Fprintf(&b, "\n  ... %d more", len(l)-5)
				break
			}
			b.WriteString("\n  " + s)
		}
	}
	return b.String()
}

// CheckStream compares the transition events on the stream with the ground
// truth. A state must have been published if it overlapped the bridge's
// up-time by at least mustSee (a few poll intervals): shorter states may be
// missed by any poller, and the check says so rather than hiding it.
func CheckStream(truth []Truth, events []Received, up []Window, mustSee time.Duration) Report {
	var r Report
	byJob := map[string][]Truth{}
	for _, t := range truth {
		byJob[t.Job] = append(byJob[t.Job], t)
	}
	evByJob := map[string][]Received{}
	ids := map[string]string{}
	for _, e := range events {
		if e.Data.Task != "" {
			continue
		}
		id, _ := e.Event["id"].(string)
		if prev, dup := ids[id]; dup {
			r.Duplicates = append(r.Duplicates, fmt.Sprintf("event id %s twice (%s and %s)", id, prev, e.Subject))
		}
		ids[id] = e.Subject
		evByJob[e.Data.Job] = append(evByJob[e.Data.Job], e)
	}
	jobs := make([]string, 0, len(byJob))
	for j := range byJob {
		jobs = append(jobs, j)
	}
	sort.Strings(jobs)
	r.Jobs = len(jobs)
	for _, job := range jobs {
		hist := byJob[job]
		sort.SliceStable(hist, func(i, k int) bool { return hist[i].At.Before(hist[k].At) })
		evs := evByJob[job]
		var trans []Received
		for i, e := range evs {
			if e.Data.Sequence != uint64(i+1) {
				r.OrderViolations = append(r.OrderViolations, fmt.Sprintf("%s: event %d has sequence %d", job, i+1, e.Data.Sequence))
			}
			if e.Data.Kind == bridge.KindTransition {
				trans = append(trans, e)
			}
		}
		r.Published += len(trans)
		// Each published status must match the history in order: walk both.
		h := 0
		for _, e := range trans {
			found := false
			for k := h; k < len(hist); k++ {
				if hist[k].Native == e.Data.Native.Status {
					h, found = k+1, true
					break
				}
			}
			if !found {
				r.Bogus = append(r.Bogus, fmt.Sprintf("%s: published %q (seq %d) out of the vendor's order %v", job, e.Data.Native.Status, e.Data.Sequence, natives(hist)))
			}
		}
		seen := map[string]int{}
		for _, e := range trans {
			seen[e.Data.Native.Status]++
		}
		counted := map[string]int{}
		for _, t := range hist {
			counted[t.Native]++
		}
		for native, n := range seen {
			if n > counted[native] {
				r.Duplicates = append(r.Duplicates, fmt.Sprintf("%s: %q published %d times, the vendor entered it %d times", job, native, n, counted[native]))
			}
		}
		for k, t := range hist {
			end := time.Now()
			if k+1 < len(hist) {
				end = hist[k+1].At
			}
			if overlap(t.At, end, up) < mustSee {
				continue
			}
			r.Expected++
			if seen[t.Native] == 0 {
				r.Lost = append(r.Lost, fmt.Sprintf("%s: %q from %s to %s never published", job, t.Native, t.At.Format("15:04:05.000"), end.Format("15:04:05.000")))
			}
		}
	}
	return r
}

func natives(h []Truth) []string {
	out := make([]string, len(h))
	for i, t := range h {
		out[i] = t.Native
	}
	return out
}

// overlap is how long [from, to) intersects the windows.
func overlap(from, to time.Time, up []Window) time.Duration {
	var d time.Duration
	for _, w := range up {
		a, b := from, to
		if w.From.After(a) {
			a = w.From
		}
		if w.To.Before(b) {
			b = w.To
		}
		if b.After(a) {
			d += b.Sub(a)
		}
	}
	return d
}
