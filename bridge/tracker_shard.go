package bridge

// Helpers for scale-out: a replica that hands a shard over drops the
// shard's records and waits until the shard's events are acknowledged.
// They live apart from tracker.go and use only its fields.

// dropWhere forgets every record whose key matches and returns how many.
// Events of those jobs still in flight are then ignored on ack.
func (t *Tracker) dropWhere(match func(key string) bool) int {
	n := 0
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.Lock()
		for k := range s.jobs {
			if match(k) {
				delete(s.jobs, k)
				n++
			}
		}
		s.mu.Unlock()
	}
	return n
}

// settledWhere reports whether no matching job has events pending or in
// flight.
func (t *Tracker) settledWhere(match func(key string) bool) bool {
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.Lock()
		for k, tj := range s.jobs {
			if (len(tj.pending) > 0 || tj.inFlight) && match(k) {
				s.mu.Unlock()
				return false
			}
		}
		s.mu.Unlock()
	}
	return true
}

// isHead reports whether ev is the event at the head of the job's pending
// queue: the only event of a job the publisher may send. Events are
// compared by identity, which tells a current event from a stale one of
// the same job held since before its records were dropped.
func (t *Tracker) isHead(key string, ev *Event) bool {
	s := t.shard(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	tj := s.jobs[key]
	return tj != nil && len(tj.pending) > 0 && tj.pending[0] == ev
}
