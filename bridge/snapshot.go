package bridge

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// checkpointKey holds the stream sequence up to which the state bucket
// reflects every acknowledged event. Job keys never start with '_' (escaped
// tokens start with a letter, digit, '-' or an escape of a name that
// ValidateName accepted), so it cannot collide with one.
const checkpointKey = "_meta.checkpoint"

type checkpoint struct {
	Stream    string    `json:"stream"`
	StreamSeq uint64    `json:"streamSeq"`
	At        time.Time `json:"at"`
}

// snapshotter writes changed tracker records to the state bucket in the
// background and then advances the checkpoint. Writing after the ack keeps
// KV traffic off the publish path: one write per job per interval, however
// many events the job had in it.
type snapshotter struct {
	js        jetstream.JetStream
	kv        jetstream.KeyValue
	bucket    string
	stream    string
	tracker   *Tracker
	pub       *Publisher
	log       zerolog.Logger
	metrics   *Metrics
	lastCheck uint64
	buf       []dirtyRecord

	// mu serialises flushes (the background loop, a shard hand-over and
	// shutdown) and shard loads.
	mu sync.Mutex
	// With scale-out (shards > 0), only records of shards this replica
	// owns are written, and each owned shard gets its own checkpoint:
	// shardCheckpointPrefix+N. base is the stream's last sequence when the
	// shard was loaded (everything up to it is in the tracker), written
	// what the shard's checkpoint key holds.
	shards    int
	owns      func(shard int) bool
	base      map[int]uint64
	written   map[int]uint64
	writtenAt map[int]time.Time
}

// shardCheckpointPrefix + shard number holds, per shard, the stream
// sequence up to which the state bucket reflects every acknowledged event
// of that shard's jobs (scale-out: each shard moves between replicas on
// its own, each replica's publisher has its own checkpoint).
const shardCheckpointPrefix = "_meta.shard."

// shardCheckpointEvery rewrites an owned shard's checkpoint even without
// new records, so a takeover replays little.
const shardCheckpointEvery = 10 * time.Second

const snapshotChunk = 2000

// flush writes every dirty record and, if all writes were acknowledged,
// the checkpoint computed before the records were collected.
func (s *snapshotter) flush(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	cp := s.pub.Checkpoint()
	s.buf = s.tracker.takeDirty(s.buf[:0])
	var dirtyShards map[int]bool
	if s.shards > 0 {
		// Records of shards this replica no longer owns are someone
		// else's now: writing them could overwrite newer ones.
		dirtyShards = map[int]bool{}
		kept := s.buf[:0]
		for _, r := range s.buf {
			sh := shardOfKey(r.key, s.shards)
			if s.owns(sh) {
				kept = append(kept, r)
				dirtyShards[sh] = true
			}
		}
		s.buf = kept
	}
	var failed []string
	for start := 0; start < len(s.buf); start += snapshotChunk {
		end := min(start+snapshotChunk, len(s.buf))
		failed = append(failed, s.writeChunk(ctx, s.buf[start:end])...)
	}
	if len(failed) > 0 {
		s.tracker.markDirty(failed)
		s.metrics.snapshotWrites.WithLabelValues("failed").Add(float64(len(failed)))
		return fmt.Errorf("snapshot: %d of %d tracker records not written; they are retried and replay covers them meanwhile", len(failed), len(s.buf))
	}
	s.metrics.snapshotWrites.WithLabelValues("ok").Add(float64(len(s.buf)))
	if cap(s.buf) > 4096 {
		s.buf = nil // a burst's buffer would otherwise pin its records
	}
	if s.shards > 0 {
		return s.writeShardCheckpoints(ctx, cp, dirtyShards)
	}
	if cp <= s.lastCheck {
		return nil
	}
	val, _ := json.Marshal(checkpoint{Stream: s.stream, StreamSeq: cp, At: time.Now().UTC()})
	if _, err := s.kv.Put(ctx, checkpointKey, val); err != nil {
		return fmt.Errorf("snapshot: write checkpoint: %w", err)
	}
	s.lastCheck = cp
	return nil
}

func (s *snapshotter) writeChunk(ctx context.Context, recs []dirtyRecord) []string {
	futures := make([]jetstream.PubAckFuture, len(recs))
	var failed []string
	for i, r := range recs {
		val, err := encodeRecord(r.record)
		if err == nil {
			futures[i], err = s.js.PublishAsync("$KV."+s.bucket+"."+r.key, val)
		}
		if err != nil {
			failed = append(failed, r.key)
		}
	}
	timeout := time.NewTimer(10 * time.Second)
	defer timeout.Stop()
	for i, f := range futures {
		if f == nil {
			continue
		}
		select {
		case <-f.Ok():
		case <-f.Err():
			failed = append(failed, recs[i].key)
		case <-timeout.C:
			for _, r := range recs[i:] {
				failed = append(failed, r.key)
			}
			return failed
		case <-ctx.Done():
			for _, r := range recs[i:] {
				failed = append(failed, r.key)
			}
			return failed
		}
	}
	return failed
}

// writeShardCheckpoints advances the checkpoint of every owned shard that
// had records written now or whose checkpoint is getting old. A shard's
// checkpoint is max(base, cp): events up to base were loaded (and written)
// when the shard was taken, this replica's events up to cp are acknowledged
// and written, and nobody else publishes the shard's events meanwhile.
func (s *snapshotter) writeShardCheckpoints(ctx context.Context, cp uint64, dirty map[int]bool) error {
	now := time.Now()
	var firstErr error
	for sh := 0; sh < s.shards; sh++ {
		if !s.owns(sh) {
			continue
		}
		v := max(s.base[sh], cp)
		if v <= s.written[sh] || (!dirty[sh] && now.Sub(s.writtenAt[sh]) < shardCheckpointEvery) {
			continue
		}
		val, _ := json.Marshal(checkpoint{Stream: s.stream, StreamSeq: v, At: now.UTC()})
		if _, err := s.kv.Put(ctx, shardCheckpointPrefix+strconv.Itoa(sh), val); err != nil {
			if firstErr == nil {
				firstErr = fmt.Errorf("snapshot: write checkpoint of shard %d: %w", sh, err)
			}
			continue
		}
		s.written[sh], s.writtenAt[sh] = v, now
	}
	return firstErr
}

// loadShards brings the tracker up to date for shards this replica has
// just taken: their records from the state bucket, then the events stored
// after the oldest of their checkpoints (a dead owner's last events may be
// missing from its snapshot). Replayed records are written back on the
// next flush, with the shards' new checkpoints.
//
// It takes every job of the shards, watched here yet or not. This
// replica's view of the registry can lag (a watch added a moment ago on
// another replica): a record or event skipped for that reason would restart
// the job's sequence once its watch arrives, and the shard's checkpoint,
// advanced past the skipped event, would hide it from the next owner too
// (seen as sequence 1 twice in the scale-out test). A removed watch's
// record costs a few hundred bytes until its shard's owner purges it.
func (s *snapshotter) loadShards(ctx context.Context, subjects Subjects, shards []int) (RecoveryStats, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	start := time.Now()
	var st RecoveryStats
	want := make([]bool, s.shards)
	for _, sh := range shards {
		want[sh] = true
	}
	cps := map[int]uint64{}
	var global uint64
	err := s.readBucket(ctx, func(e jetstream.KeyValueEntry) {
		key := e.Key()
		if strings.HasPrefix(key, "_") {
			var cp checkpoint
			if json.Unmarshal(e.Value(), &cp) != nil || cp.Stream != s.stream {
				return
			}
			if key == checkpointKey {
				global = cp.StreamSeq
			} else if n, err := strconv.Atoi(strings.TrimPrefix(key, shardCheckpointPrefix)); err == nil && n >= 0 && n < s.shards && want[n] {
				cps[n] = cp.StreamSeq
			}
			return
		}
		if want[shardOfKey(key, s.shards)] && s.loadRecord(e) {
			st.Records++
		}
	})
	if err != nil {
		return st, err
	}
	// A shard without its own checkpoint falls back to the single-replica
	// one (a deployment that just turned scale-out on), else to the start.
	from := uint64(math.MaxUint64)
	for _, sh := range shards {
		cp, ok := cps[sh]
		if !ok {
			cp = global
		}
		from = min(from, cp)
	}
	st.Checkpoint = from
	replayed, applied, last, err := s.replay(ctx, subjects, from+1, func(job JobRef) bool {
		return want[ShardOf(job, s.shards)]
	})
	st.Replayed, st.Applied = replayed, applied
	if err != nil {
		return st, err
	}
	for _, sh := range shards {
		s.base[sh] = last
		s.written[sh] = cps[sh]
		s.writtenAt[sh] = time.Time{}
	}
	st.Took = time.Since(start)
	return st, nil
}

// dropShards forgets the checkpoint bookkeeping of shards handed over.
func (s *snapshotter) dropShards(shards []int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, sh := range shards {
		delete(s.base, sh)
		delete(s.written, sh)
		delete(s.writtenAt, sh)
	}
}

// forget removes a job's record from the state bucket.
func (s *snapshotter) forget(ctx context.Context, job JobRef) error {
	if err := s.kv.Purge(ctx, job.Key()); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return fmt.Errorf("remove tracker record of %s: %w", job, err)
	}
	return nil
}

// RecoveryStats says what a start-up recovery found.
type RecoveryStats struct {
	Records    int
	Replayed   int
	Applied    int
	Checkpoint uint64
	Took       time.Duration
}

// readBucket calls fn for every entry of the state bucket, in one pass.
func (s *snapshotter) readBucket(ctx context.Context, fn func(jetstream.KeyValueEntry)) error {
	w, err := s.kv.WatchAll(ctx, jetstream.IgnoreDeletes())
	if err != nil {
		return fmt.Errorf("read state bucket %s: %w", s.bucket, err)
	}
	defer func() { _ = w.Stop() }()
	for {
		select {
		case e := <-w.Updates():
			if e == nil {
				return nil
			}
			fn(e)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// loadRecord puts one stored record into the tracker; a key or value that
// jobbridge did not write is skipped with a warning.
func (s *snapshotter) loadRecord(e jetstream.KeyValueEntry) bool {
	job, err := parseKey(e.Key())
	if err != nil {
		s.log.Warn().Err(err).Msg("skipping a state record with a key jobbridge did not write")
		return false
	}
	r, err := decodeRecord(e.Value())
	if err != nil {
		s.log.Warn().Err(err).Str("job", job.String()).Msg("skipping a corrupt state record; the job's next poll starts its history afresh")
		return false
	}
	s.tracker.Load(job, r, false)
	return true
}

// recoverState loads the snapshot into the tracker and replays the events
// stored after its checkpoint, so the tracker knows every acknowledged event
// even if the bridge died before its record reached the bucket.
func (s *snapshotter) recoverState(ctx context.Context, subjects Subjects) (RecoveryStats, error) {
	start := time.Now()
	var st RecoveryStats
	err := s.readBucket(ctx, func(e jetstream.KeyValueEntry) {
		switch {
		case e.Key() == checkpointKey:
			var cp checkpoint
			if json.Unmarshal(e.Value(), &cp) == nil && cp.Stream == s.stream {
				st.Checkpoint = cp.StreamSeq
			}
		case strings.HasPrefix(e.Key(), shardCheckpointPrefix):
			// left by scale-out replicas; the global checkpoint rules here
		case s.loadRecord(e):
			st.Records++
		}
	})
	if err != nil {
		return st, err
	}
	s.lastCheck = st.Checkpoint
	replayed, applied, _, err := s.replay(ctx, subjects, st.Checkpoint+1, nil)
	st.Replayed, st.Applied = replayed, applied
	if err != nil {
		return st, err
	}
	st.Took = time.Since(start)
	return st, nil
}

// replay applies the events stored from sequence from up to the stream's
// last sequence at the call (returned as last) to the tracker, for the
// jobs keep accepts (nil: all).
func (s *snapshotter) replay(ctx context.Context, subjects Subjects, from uint64, keep func(JobRef) bool) (replayed, applied int, last uint64, err error) {
	stream, err := s.js.Stream(ctx, s.stream)
	if err != nil {
		return 0, 0, 0, fmt.Errorf("open stream %s for replay: %w", s.stream, err)
	}
	info, err := stream.Info(ctx)
	if err != nil {
		return 0, 0, 0, fmt.Errorf("stream %s info: %w", s.stream, err)
	}
	last = info.State.LastSeq
	from = max(from, info.State.FirstSeq)
	if info.State.Msgs == 0 || from > last {
		return 0, 0, last, nil
	}
	cons, err := stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{subjects.Prefix + ".>"},
		DeliverPolicy:  jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:    from,
		HeadersOnly:    true,
	})
	if err != nil {
		return 0, 0, last, fmt.Errorf("replay stream %s from %d: %w", s.stream, from, err)
	}
	// Ask for exactly what is left up to the last sequence known at start:
	// a batch larger than what the stream holds would wait out its timeout.
	next := from
	for next <= last {
		want := int(min(last-next+1, 1000))
		batch, err := cons.Fetch(want, jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			return replayed, applied, last, fmt.Errorf("replay stream %s: %w", s.stream, err)
		}
		got := 0
		for m := range batch.Messages() {
			got++
			md, err := m.Metadata()
			if err != nil {
				continue
			}
			next = md.Sequence.Stream + 1
			replayed++
			if s.replayOne(subjects, m.Subject(), m.Headers(), md, keep) {
				applied++
			}
		}
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) {
			return replayed, applied, last, fmt.Errorf("replay stream %s: %w", s.stream, err)
		}
		if got == 0 {
			break // messages expired meanwhile; nothing more to read
		}
	}
	return replayed, applied, last, nil
}

func (s *snapshotter) replayOne(subjects Subjects, subject string, h nats.Header, md *jetstream.MsgMetadata, keep func(JobRef) bool) bool {
	job, token, err := subjects.Parse(subject)
	if err != nil || (keep != nil && !keep(job)) {
		return false
	}
	seq, err := strconv.ParseUint(h.Get(HeaderSequence), 10, 64)
	if err != nil {
		return false // not an event jobbridge wrote
	}
	fps := strings.SplitN(h.Get(HeaderFingerprint), "/", 2)
	if len(fps) != 2 {
		return false
	}
	fp, err1 := strconv.ParseUint(fps[0], 16, 64)
	pfp, err2 := strconv.ParseUint(fps[1], 16, 64)
	if err1 != nil || err2 != nil {
		return false
	}
	r, _ := s.tracker.Committed(job)
	if seq <= r.Seq {
		return false
	}
	kind := EventKind(h.Get(HeaderKind))
	state := State(h.Get(HeaderState))
	if !state.Valid() {
		state = State(token)
	}
	native, _ := PercentDecode(h.Get(HeaderNative))
	r.Seq, r.FP, r.ProgressFP, r.StreamSeq = seq, fp, pfp, md.Sequence.Stream
	if state.Valid() {
		r.State = state
	}
	r.Native = native
	switch kind {
	case KindTransition:
		r.ChangedAt, r.Stalled = md.Timestamp, false
	case KindProgress:
		r.Stalled = false
	case KindStalled:
		r.Stalled = true
	case KindVanished:
		r.Vanished = true
	case KindDeadlineMissed:
		r.DeadlineMissed = true
	}
	return s.tracker.Load(job, r, true)
}
