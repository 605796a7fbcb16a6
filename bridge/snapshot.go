package bridge

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
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
}

const snapshotChunk = 2000

// flush writes every dirty record and, if all writes were acknowledged,
// the checkpoint computed before the records were collected.
func (s *snapshotter) flush(ctx context.Context) error {
	cp := s.pub.Checkpoint()
	s.buf = s.tracker.takeDirty(s.buf[:0])
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

// recoverState loads the snapshot into the tracker and replays the events
// stored after its checkpoint, so the tracker knows every acknowledged event
// even if the bridge died before its record reached the bucket.
func (s *snapshotter) recoverState(ctx context.Context, subjects Subjects) (RecoveryStats, error) {
	start := time.Now()
	var st RecoveryStats
	w, err := s.kv.WatchAll(ctx, jetstream.IgnoreDeletes())
	if err != nil {
		return st, fmt.Errorf("read state bucket %s: %w", s.bucket, err)
	}
	defer func() { _ = w.Stop() }()
loading:
	for {
		select {
		case e := <-w.Updates():
			if e == nil {
				break loading
			}
			if e.Key() == checkpointKey {
				var cp checkpoint
				if json.Unmarshal(e.Value(), &cp) == nil && cp.Stream == s.stream {
					st.Checkpoint = cp.StreamSeq
				}
				continue
			}
			job, err := parseKey(e.Key())
			if err != nil {
				s.log.Warn().Err(err).Msg("skipping a state record with a key jobbridge did not write")
				continue
			}
			r, err := decodeRecord(e.Value())
			if err != nil {
				s.log.Warn().Err(err).Str("job", job.String()).Msg("skipping a corrupt state record; the job's next poll starts its history afresh")
				continue
			}
			s.tracker.Load(job, r, false)
			st.Records++
		case <-ctx.Done():
			return st, ctx.Err()
		}
	}
	s.lastCheck = st.Checkpoint

	stream, err := s.js.Stream(ctx, s.stream)
	if err != nil {
		return st, fmt.Errorf("open stream %s for replay: %w", s.stream, err)
	}
	info, err := stream.Info(ctx)
	if err != nil {
		return st, fmt.Errorf("stream %s info: %w", s.stream, err)
	}
	last := info.State.LastSeq
	from := max(st.Checkpoint+1, info.State.FirstSeq)
	if info.State.Msgs == 0 || from > last {
		st.Took = time.Since(start)
		return st, nil
	}
	cons, err := stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{subjects.Prefix + ".>"},
		DeliverPolicy:  jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:    from,
		HeadersOnly:    true,
	})
	if err != nil {
		return st, fmt.Errorf("replay stream %s from %d: %w", s.stream, from, err)
	}
	// Ask for exactly what is left up to the last sequence known at start:
	// a batch larger than what the stream holds would wait out its timeout.
	next := from
	for next <= last {
		want := int(min(last-next+1, 1000))
		batch, err := cons.Fetch(want, jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			return st, fmt.Errorf("replay stream %s: %w", s.stream, err)
		}
		got := 0
		for m := range batch.Messages() {
			got++
			md, err := m.Metadata()
			if err != nil {
				continue
			}
			next = md.Sequence.Stream + 1
			st.Replayed++
			if s.replayOne(subjects, m.Subject(), m.Headers(), md) {
				st.Applied++
			}
		}
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) {
			return st, fmt.Errorf("replay stream %s: %w", s.stream, err)
		}
		if got == 0 {
			break // messages expired meanwhile; nothing more to read
		}
	}
	st.Took = time.Since(start)
	return st, nil
}

func (s *snapshotter) replayOne(subjects Subjects, subject string, h nats.Header, md *jetstream.MsgMetadata) bool {
	job, token, err := subjects.Parse(subject)
	if err != nil {
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
