package bridge

import (
	"container/heap"
	"context"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jobbridge/jobbridge/bridge/backoff"
	"github.com/prometheus/client_golang/prometheus"
)

// ScheduleOptions shape when jobs are polled.
type ScheduleOptions struct {
	// Interval is the normal poll interval (default 10s).
	Interval time.Duration
	// FastInterval is used for FastFor after a change, when the next change
	// is likely soon (default 2s for 1m).
	FastInterval time.Duration
	FastFor      time.Duration
	// IdleInterval is used once a job has not changed for IdleAfter
	// (default 60s after 10m).
	IdleInterval time.Duration
	IdleAfter    time.Duration
	// Jitter spreads polls by ±Jitter of the interval (default 0.1), so jobs
	// added together do not stay in lock-step.
	Jitter float64
	// ErrorBackoff paces polls of a job whose polls fail.
	ErrorBackoff backoff.Policy
	// RetainAfterTerminal is how long a finished job stays watched before its
	// watch is removed (default 10m).
	RetainAfterTerminal time.Duration
	// StalledAfter emits a stalled event when a job shows no change this long
	// (0: off). A watch may set its own.
	StalledAfter time.Duration
	// NotFoundGrace is how long a job the vendor has never shown may answer
	// "not found" before it is declared vanished (default 10m).
	NotFoundGrace time.Duration
	// Workers bounds concurrent polls over all instances (default 64).
	Workers int
}

func (o *ScheduleOptions) setDefaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&o.Interval, 10*time.Second)
	def(&o.FastInterval, 2*time.Second)
	def(&o.FastFor, time.Minute)
	def(&o.IdleInterval, time.Minute)
	def(&o.IdleAfter, 10*time.Minute)
	def(&o.RetainAfterTerminal, 10*time.Minute)
	def(&o.NotFoundGrace, 10*time.Minute)
	if o.FastInterval > o.Interval {
		o.FastInterval = o.Interval
	}
	if o.IdleInterval < o.Interval {
		o.IdleInterval = o.Interval
	}
	if o.Jitter < 0 || o.Jitter > 0.5 {
		o.Jitter = 0.1
	}
	if o.ErrorBackoff.Initial <= 0 {
		o.ErrorBackoff = backoff.Policy{Initial: time.Second, Max: 5 * time.Minute, Multiplier: 2, Jitter: 0.2}
	}
	if o.Workers <= 0 {
		o.Workers = 64
	}
}

type phase uint8

const (
	phaseWaiting  phase = iota // in the heap, due at some time
	phaseQueued                // popped, waiting for its instance's concurrency
	phaseRunning               // a worker is polling it
	phaseExpiring              // terminal; in the heap until its watch is removed
	phaseRemoved
)

type entry struct {
	job  JobRef
	key  string
	inst *instState
	// watch is shared with the bridge's registry view (one copy per job,
	// not two); an update swaps the pointer while a poll may read it.
	watch atomic.Pointer[Watch]

	due   time.Time
	idx   int
	phase phase
	again bool // a hint arrived while it was running

	failures       int
	lastChange     time.Time
	firstNotFound  time.Time
	notFoundStreak int
	seen           bool
}

type instState struct {
	Instance
	running int
	waiting []*entry
	// Metric series resolved once: a label lookup per poll is measurable.
	m instMetrics
}

type instMetrics struct {
	ok, notFound, malformed, auth, failed prometheus.Counter
	duration                              prometheus.Observer
}

type entryHeap []*entry

func (h entryHeap) Len() int           { return len(h) }
func (h entryHeap) Less(i, j int) bool { return h[i].due.Before(h[j].due) }
func (h entryHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].idx, h[j].idx = i, j
}
func (h *entryHeap) Push(x any) {
	e := x.(*entry)
	e.idx = len(*h)
	*h = append(*h, e)
}
func (h *entryHeap) Pop() any {
	old := *h
	n := len(old)
	e := old[n-1]
	old[n-1] = nil
	e.idx = -1
	*h = old[:n-1]
	return e
}

// pollResult tells the scheduler what a poll found.
type pollResult struct {
	err      error
	changed  bool
	terminal bool
	vanished bool
	notFound bool
}

// scheduler decides when each watched job is polled. One goroutine pops due
// entries off a heap and hands them to a fixed pool of workers; an instance
// never has more than its concurrency in flight.
type scheduler struct {
	opts  ScheduleOptions
	poll  func(ctx context.Context, e *entry) pollResult
	onDue func(e *entry) // called for an expiring entry whose retention ended
	now   func() time.Time
	lag   func(time.Duration)

	mu      sync.Mutex
	entries map[string]*entry
	insts   map[[2]string]*instState
	heap    entryHeap
	busy    int // workers holding an entry
	work    chan *entry
	wake    chan struct{}
}

func newScheduler(opts ScheduleOptions, instances []Instance) *scheduler {
	opts.setDefaults()
	s := &scheduler{
		opts:    opts,
		now:     time.Now,
		entries: make(map[string]*entry),
		insts:   make(map[[2]string]*instState),
		work:    make(chan *entry, opts.Workers),
		wake:    make(chan struct{}, 1),
		lag:     func(time.Duration) {},
	}
	for _, in := range instances {
		if in.Concurrency <= 0 {
			in.Concurrency = 5
		}
		s.insts[[2]string{in.Vendor, in.Name}] = &instState{Instance: in}
	}
	return s
}

func (s *scheduler) signal() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// instance returns the configured instance for a vendor and name.
func (s *scheduler) instance(vendor, name string) (*instState, bool) {
	in, ok := s.insts[[2]string{vendor, name}]
	return in, ok
}

// add starts watching a job, or updates its options if it is watched. The
// first poll is due at once, spread by jitter. It reports whether the
// job's instance is configured and whether the job was new.
//
// key, when not empty, is the registry's key of the watch: keeping that
// string instead of an equal one saves a string per job. The key the
// watch itself names wins if they differ (an entry written by hand).
func (s *scheduler) add(w *Watch, key string) (known, created bool) {
	job := w.Ref()
	if k := job.Key(); k != key {
		key = k
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	in, ok := s.insts[[2]string{job.Vendor, job.Instance}]
	if !ok {
		return false, false
	}
	if e, ok := s.entries[key]; ok {
		e.watch.Store(w)
		return true, false
	}
	now := s.now()
	// The job's names are the instance's strings: one copy per instance,
	// not per job.
	job.Vendor, job.Instance = in.Vendor, in.Name
	e := &entry{job: job, key: key, inst: in, idx: -1, lastChange: now}
	e.watch.Store(w)
	// The first poll comes at once, spread over up to a second so that a
	// start-up with many watches does not hit the vendor all together.
	e.due = now.Add(time.Duration(rand.Float64() * float64(minDur(time.Second, s.baseInterval(e)))))
	s.entries[key] = e
	heap.Push(&s.heap, e)
	s.signal()
	return true, true
}

// remove stops watching a job. A poll in flight finishes, its result ignored.
func (s *scheduler) remove(job JobRef) bool {
	key := job.Key()
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.entries[key]
	if !ok {
		return false
	}
	delete(s.entries, key)
	if e.idx >= 0 {
		heap.Remove(&s.heap, e.idx)
	}
	if e.phase == phaseQueued {
		w := e.inst.waiting
		for i, x := range w {
			if x == e {
				e.inst.waiting = append(w[:i], w[i+1:]...)
				break
			}
		}
	}
	e.phase = phaseRemoved
	return true
}

// hint makes a job due now. It reports whether the job is watched.
func (s *scheduler) hint(job JobRef) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.entries[job.Key()]
	if !ok {
		return false
	}
	switch e.phase {
	case phaseWaiting:
		e.due = s.now()
		heap.Fix(&s.heap, e.idx)
		s.signal()
	case phaseRunning:
		e.again = true
	}
	return true
}

// hintInstance makes every job of one instance due now (reconciliation).
func (s *scheduler) hintInstance(vendor, instance string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	n := 0
	for _, e := range s.entries {
		if e.job.Vendor != vendor || e.job.Instance != instance {
			continue
		}
		n++
		switch e.phase {
		case phaseWaiting:
			e.due = now
			heap.Fix(&s.heap, e.idx)
		case phaseRunning:
			e.again = true
		}
	}
	s.signal()
	return n
}

func (s *scheduler) size() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.entries)
}

// run dispatches due entries until ctx ends, then waits for the workers.
func (s *scheduler) run(ctx context.Context) {
	var wg sync.WaitGroup
	for i := 0; i < s.opts.Workers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.worker(ctx)
		}()
	}
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		next := s.dispatch()
		if next <= 0 {
			next = time.Hour
		}
		timer.Reset(next)
		select {
		case <-ctx.Done():
			wg.Wait()
			return
		case <-s.wake:
		case <-timer.C:
		}
	}
}

// dispatch hands every due entry it can to the workers and returns how long
// until the next entry is due (0 when the heap is empty or workers are full).
func (s *scheduler) dispatch() time.Duration {
	var expired []*entry
	defer func() {
		for _, e := range expired {
			s.onDue(e)
		}
	}()
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	for len(s.heap) > 0 {
		e := s.heap[0]
		if e.due.After(now) {
			return e.due.Sub(now)
		}
		if e.phase == phaseExpiring {
			heap.Pop(&s.heap)
			// Keep it due again later in case the removal fails.
			e.due = now.Add(time.Minute)
			heap.Push(&s.heap, e)
			expired = append(expired, e)
			continue
		}
		if s.busy >= s.opts.Workers {
			return 0 // a finishing worker signals
		}
		heap.Pop(&s.heap)
		if e.inst.running >= e.inst.Concurrency {
			// Its lag is recorded when its poll starts (finish): a job
			// waiting for its instance's concurrency is late too.
			e.phase = phaseQueued
			e.inst.waiting = append(e.inst.waiting, e)
			continue
		}
		e.inst.running++
		e.phase = phaseRunning
		s.busy++
		s.lag(now.Sub(e.due))
		s.work <- e // never blocks: busy < Workers == cap(work)
	}
	return 0
}

func (s *scheduler) worker(ctx context.Context) {
	for {
		var e *entry
		select {
		case e = <-s.work:
		case <-ctx.Done():
			return
		}
		for e != nil {
			res := s.poll(ctx, e)
			if ctx.Err() != nil {
				return
			}
			e = s.finish(e, res)
		}
	}
}

// finish reschedules a polled entry and returns the next entry of the same
// instance that was waiting for a concurrency slot, which the worker takes
// over without going back through the dispatcher.
func (s *scheduler) finish(e *entry, res pollResult) *entry {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	in := e.inst
	if e.phase != phaseRemoved {
		s.reschedule(e, res, now)
	}
	if len(in.waiting) > 0 {
		next := in.waiting[0]
		in.waiting[0] = nil
		in.waiting = in.waiting[1:]
		next.phase = phaseRunning
		s.lag(now.Sub(next.due))
		return next
	}
	in.running--
	s.busy--
	s.signal()
	return nil
}

func (s *scheduler) reschedule(e *entry, res pollResult, now time.Time) {
	base := s.baseInterval(e)
	var d time.Duration
	switch {
	case res.vanished:
		e.phase = phaseExpiring
		e.due = now
		heap.Push(&s.heap, e)
		return
	case res.err != nil && !res.notFound:
		e.failures++
		d = maxDur(base, s.opts.ErrorBackoff.Delay(e.failures-1))
	case res.terminal && !e.inst.Recurring:
		e.failures = 0
		e.phase = phaseExpiring
		e.due = now.Add(s.opts.RetainAfterTerminal)
		heap.Push(&s.heap, e)
		return
	default:
		e.failures = 0
		if res.changed {
			e.lastChange = now
		}
		quiet := now.Sub(e.lastChange)
		switch {
		case quiet < s.opts.FastFor && !e.inst.PushDriven:
			d = minDur(s.opts.FastInterval, base)
		case quiet >= s.opts.IdleAfter:
			d = maxDur(s.opts.IdleInterval, base)
		default:
			d = base
		}
		if res.notFound {
			d = minDur(d, s.opts.FastInterval)
		}
	}
	if e.again {
		e.again = false
		d = 0
	} else {
		d = s.jittered(d)
	}
	e.phase = phaseWaiting
	e.due = now.Add(d)
	heap.Push(&s.heap, e)
}

func (s *scheduler) baseInterval(e *entry) time.Duration {
	if w := e.watch.Load(); w.Interval > 0 {
		return time.Duration(w.Interval)
	}
	if e.inst.Interval > 0 {
		return e.inst.Interval
	}
	return s.opts.Interval
}

func (s *scheduler) jittered(d time.Duration) time.Duration {
	if s.opts.Jitter == 0 || d <= 0 {
		return d
	}
	f := 1 + s.opts.Jitter*(2*rand.Float64()-1)
	return time.Duration(float64(d) * f)
}

func minDur(a, b time.Duration) time.Duration {
	if a < b {
		return a
	}
	return b
}

func maxDur(a, b time.Duration) time.Duration {
	if a > b {
		return a
	}
	return b
}

// watched reports whether a job key is watched.
// poller returns an instance's poller (nil if none); insts is fixed at
// construction, so no lock is needed.
func (s *scheduler) poller(vendor, instance string) Poller {
	if in := s.insts[[2]string{vendor, instance}]; in != nil {
		return in.Poller
	}
	return nil
}

func (s *scheduler) watched(key string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.entries[key]
	return ok
}

// keys returns the set of watched job keys.
func (s *scheduler) keys() map[string]struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]struct{}, len(s.entries))
	for k := range s.entries {
		out[k] = struct{}{}
	}
	return out
}
