package bridge

import (
	"encoding/json"
	"fmt"
	"hash/maphash"
	"sync"
	"time"
)

// The tracker keeps, per job, the last state that JetStream acknowledged (the
// committed record) and the events detected after it that are still waiting
// for their ack (the pending queue). Detection compares an observation with
// the newest of the two, so a transition seen while NATS is down is queued,
// not lost, and is not detected twice.
//
// Durability is a snapshot plus a log: committed records are written to a KV
// bucket in the background (see snapshot.go), and the event stream itself is
// the log. A restarted bridge loads the snapshot and replays the stream from
// the snapshot's checkpoint, so it knows every event that was acknowledged
// before the crash, even those whose record never reached KV.

// trackerShards spreads the record map over several locks so that polls of
// different jobs and publish acks rarely contend.
const trackerShards = 64

// Record is what the tracker knows of one job, as stored in the state bucket.
type Record struct {
	State      State     `json:"state"`
	Native     string    `json:"native,omitempty"`
	Seq        uint64    `json:"seq"`
	FP         uint64    `json:"fp"`
	ProgressFP uint64    `json:"pfp,omitempty"`
	ChangedAt  time.Time `json:"changedAt"`
	StreamSeq  uint64    `json:"streamSeq,omitempty"`
	// Stalled is set once a stalled event was published, so it is sent once
	// per quiet spell.
	Stalled bool `json:"stalled,omitempty"`
	// Vanished and DeadlineMissed are sent at most once per job.
	Vanished       bool `json:"vanished,omitempty"`
	DeadlineMissed bool `json:"deadlineMissed,omitempty"`
}

type trackedJob struct {
	committed Record
	known     bool // committed holds a record (from KV, replay or an ack)
	pending   []*Event
	inFlight  bool
	dirty     bool
}

// head returns the newest view of the job: the last pending event if any,
// else the committed record.
func (t *trackedJob) head() (Record, bool) {
	if n := len(t.pending); n > 0 {
		ev := t.pending[n-1]
		r := t.committed
		r.State, r.Native, r.Seq, r.FP, r.ProgressFP = ev.State, ev.Native, ev.Seq, ev.Fingerprint, ev.ProgressFP
		if ev.Kind == KindTransition {
			r.ChangedAt, r.Stalled = ev.ObservedAt, false
		}
		switch ev.Kind {
		case KindStalled:
			r.Stalled = true
		case KindVanished:
			r.Vanished = true
		case KindDeadlineMissed:
			r.DeadlineMissed = true
		}
		return r, true
	}
	return t.committed, t.known
}

type trackerShard struct {
	mu   sync.Mutex
	jobs map[string]*trackedJob
}

// Tracker holds per-job state. It is safe for concurrent use.
type Tracker struct {
	seed   maphash.Seed
	shards [trackerShards]trackerShard
}

// NewTracker returns an empty tracker.
func NewTracker() *Tracker {
	t := &Tracker{seed: maphash.MakeSeed()}
	for i := range t.shards {
		t.shards[i].jobs = make(map[string]*trackedJob)
	}
	return t
}

func (t *Tracker) shard(key string) *trackerShard {
	return &t.shards[maphash.String(t.seed, key)%trackerShards]
}

// DetectOptions carry per-watch settings that shape detection.
type DetectOptions struct {
	Labels       map[string]string
	StalledAfter time.Duration
	// Key is obs.Job.Key() when the caller already has it (the scheduler
	// does): one string per job shared by scheduler, tracker and events.
	Key string
}

// Detect compares obs with what the tracker knows of the job and returns the
// changes it makes, with sequence numbers assigned, without changing the
// tracker: the caller encodes them and hands them to Enqueue in order. The
// scheduler polls a job from one worker at a time, so nothing can slip in
// between Detect and Enqueue for the same job.
func (t *Tracker) Detect(obs *Observation, opts DetectOptions) []Change {
	key := opts.Key
	if key == "" {
		key = obs.Job.Key()
	}
	s := t.shard(key)
	s.mu.Lock()
	tj := s.jobs[key]
	var head Record
	var known bool
	if tj != nil {
		head, known = tj.head()
	}
	s.mu.Unlock()

	fp := Fingerprint(obs)
	pfp := ProgressFingerprint(obs.Progress)
	changed := !known || fp != head.FP || (pfp != 0 && pfp != head.ProgressFP)
	stalled := opts.StalledAfter > 0 && !head.Stalled && !head.State.Terminal() &&
		!head.ChangedAt.IsZero() && obs.ObservedAt.Sub(head.ChangedAt) >= opts.StalledAfter
	if !changed && !stalled {
		return nil // the common case: build nothing
	}
	base := Change{Obs: *obs, Key: key, Labels: opts.Labels, Fingerprint: fp, ProgressFP: pfp}
	if known {
		base.PreviousState, base.PreviousNative, base.PreviousFP = head.State, head.Native, head.FP
	}
	switch {
	case !known || fp != head.FP:
		base.Kind = KindTransition
		base.Seq = head.Seq + 1
		return []Change{base}
	case pfp != 0 && pfp != head.ProgressFP:
		base.Kind = KindProgress
		base.Seq = head.Seq + 1
		return []Change{base}
	case stalled:
		base.Kind = KindStalled
		base.Seq = head.Seq + 1
		base.ProgressFP = head.ProgressFP
		base.StalledSince = head.ChangedAt
		return []Change{base}
	}
	return nil
}

// Synthetic returns the change for an event that no observation carries
// (vanished, deadline missed), built on the job's newest known state. It
// returns false when the event was already emitted for this job.
func (t *Tracker) Synthetic(job JobRef, kind EventKind, at time.Time, labels map[string]string) (Change, bool) {
	key := job.Key()
	s := t.shard(key)
	s.mu.Lock()
	var head Record
	if tj := s.jobs[key]; tj != nil {
		head, _ = tj.head()
	}
	s.mu.Unlock()
	if (kind == KindVanished && head.Vanished) || (kind == KindDeadlineMissed && head.DeadlineMissed) {
		return Change{}, false
	}
	state := head.State
	if state == "" {
		state = StateUnknown
	}
	return Change{
		Kind: kind,
		Obs: Observation{
			Job: job, State: state, Native: head.Native, ObservedAt: at, Via: DetectedByPoll,
		},
		PreviousState: head.State, PreviousNative: head.Native, PreviousFP: head.FP,
		Fingerprint: head.FP, ProgressFP: head.ProgressFP, Seq: head.Seq + 1, Labels: labels,
	}, true
}

// Enqueue appends encoded events to the job's pending queue. It returns the
// event to send now (the queue's new head when nothing of this job is in
// flight), or nil when an earlier event of the job is still awaiting its ack.
func (t *Tracker) Enqueue(ev *Event) *Event {
	key := ev.key()
	s := t.shard(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	tj := s.jobs[key]
	if tj == nil {
		tj = &trackedJob{}
		s.jobs[key] = tj
	}
	tj.pending = append(tj.pending, ev)
	if tj.inFlight {
		return nil
	}
	tj.inFlight = true
	return tj.pending[0]
}

// Acked commits the job's head event after JetStream acknowledged it and
// returns the job's next pending event to send, if any.
func (t *Tracker) Acked(ev *Event, streamSeq uint64) *Event {
	key := ev.key()
	s := t.shard(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	tj := s.jobs[key]
	if tj == nil || len(tj.pending) == 0 || tj.pending[0] != ev {
		// The job was forgotten while its event was in flight.
		return nil
	}
	tj.pending[0] = nil
	tj.pending = tj.pending[1:]
	if len(tj.pending) == 0 {
		tj.pending = nil
	}
	r := &tj.committed
	r.State, r.Native, r.Seq, r.FP, r.ProgressFP = ev.State, ev.Native, ev.Seq, ev.Fingerprint, ev.ProgressFP
	r.StreamSeq = streamSeq
	switch ev.Kind {
	case KindTransition:
		r.ChangedAt, r.Stalled = ev.ObservedAt, false
	case KindProgress:
		r.Stalled = false
	case KindStalled:
		r.Stalled = true
	case KindVanished:
		r.Vanished = true
	case KindDeadlineMissed:
		r.DeadlineMissed = true
	}
	tj.known, tj.dirty = true, true
	if len(tj.pending) == 0 {
		tj.inFlight = false
		return nil
	}
	return tj.pending[0]
}

// Load installs a record read from the state bucket or rebuilt by replay.
// A record older than what the tracker holds is ignored, so replay and
// snapshot can be applied in any order.
func (t *Tracker) Load(job JobRef, r Record, dirty bool) bool {
	key := job.Key()
	s := t.shard(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	tj := s.jobs[key]
	if tj == nil {
		tj = &trackedJob{}
		s.jobs[key] = tj
	}
	if tj.known && tj.committed.Seq >= r.Seq {
		return false
	}
	tj.committed, tj.known = r, true
	tj.dirty = tj.dirty || dirty
	return true
}

// Committed returns the job's committed record.
func (t *Tracker) Committed(job JobRef) (Record, bool) {
	key := job.Key()
	s := t.shard(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	tj := s.jobs[key]
	if tj == nil || !tj.known {
		return Record{}, false
	}
	return tj.committed, true
}

// Settled reports whether the job has nothing pending or in flight.
func (t *Tracker) Settled(job JobRef) bool {
	key := job.Key()
	s := t.shard(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	tj := s.jobs[key]
	return tj == nil || (len(tj.pending) == 0 && !tj.inFlight)
}

// Forget drops a job (its watch was removed).
func (t *Tracker) Forget(job JobRef) {
	key := job.Key()
	s := t.shard(key)
	s.mu.Lock()
	delete(s.jobs, key)
	s.mu.Unlock()
}

// Pending counts events detected but not yet acknowledged.
func (t *Tracker) Pending() int {
	n := 0
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.Lock()
		for _, tj := range s.jobs {
			n += len(tj.pending)
		}
		s.mu.Unlock()
	}
	return n
}

// Len counts tracked jobs.
func (t *Tracker) Len() int {
	n := 0
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.Lock()
		n += len(s.jobs)
		s.mu.Unlock()
	}
	return n
}

// dirtyRecord is a record to write to the snapshot.
type dirtyRecord struct {
	key    string
	record Record
}

// takeDirty collects committed records changed since the last snapshot and
// clears their dirty flags.
func (t *Tracker) takeDirty(buf []dirtyRecord) []dirtyRecord {
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.Lock()
		for k, tj := range s.jobs {
			if tj.dirty {
				tj.dirty = false
				buf = append(buf, dirtyRecord{key: k, record: tj.committed})
			}
		}
		s.mu.Unlock()
	}
	return buf
}

// markDirty re-flags records whose snapshot write failed.
func (t *Tracker) markDirty(keys []string) {
	for _, k := range keys {
		s := t.shard(k)
		s.mu.Lock()
		if tj := s.jobs[k]; tj != nil {
			tj.dirty = true
		}
		s.mu.Unlock()
	}
}

func encodeRecord(r Record) ([]byte, error) { return json.Marshal(r) }

func decodeRecord(b []byte) (Record, error) {
	var r Record
	if err := json.Unmarshal(b, &r); err != nil {
		return Record{}, fmt.Errorf("decode tracker record: %w", err)
	}
	if !r.State.Valid() {
		return Record{}, fmt.Errorf("decode tracker record: state %q is not canonical", r.State)
	}
	return r, nil
}
