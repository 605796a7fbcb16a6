package bridge

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
)

// StreamOptions describe the event stream and the KV buckets.
type StreamOptions struct {
	Name            string        // default JOBS
	SubjectPrefix   string        // default jobs
	Replicas        int           // default 1
	MaxAge          time.Duration // default 7 days
	DuplicateWindow time.Duration // default 2m
	Storage         jetstream.StorageType
	// Manage creates or updates the stream and buckets at start-up. When
	// false they must exist (see deploy/nats) and are left untouched.
	Manage      bool
	StateBucket string // default JOBBRIDGE_STATE
	WatchBucket string // default JOBBRIDGE_WATCHES
}

func (o *StreamOptions) setDefaults() {
	if o.Name == "" {
		o.Name = "JOBS"
	}
	if o.SubjectPrefix == "" {
		o.SubjectPrefix = "jobs"
	}
	if o.Replicas <= 0 {
		o.Replicas = 1
	}
	if o.MaxAge <= 0 {
		o.MaxAge = 7 * 24 * time.Hour
	}
	if o.DuplicateWindow <= 0 {
		o.DuplicateWindow = 2 * time.Minute
	}
	if o.StateBucket == "" {
		o.StateBucket = "JOBBRIDGE_STATE"
	}
	if o.WatchBucket == "" {
		o.WatchBucket = "JOBBRIDGE_WATCHES"
	}
}

// Instance is one configured vendor endpoint and the poller that serves it.
type Instance struct {
	Vendor string
	Name   string
	Poller Poller
	// Interval overrides ScheduleOptions.Interval for this instance.
	Interval time.Duration
	// Concurrency bounds polls in flight to this instance (default 5).
	Concurrency int
	// PushDriven instances learn of changes from push notifications (hints):
	// their jobs skip the fast polling after a change and keep Interval as
	// the safety net.
	PushDriven bool
	// Recurring keeps polling a job after a terminal state, for vendors
	// whose jobs run again (a Helix ETL).
	Recurring bool
	// Labels are added to every event of this instance (a watch's own labels win).
	Labels map[string]string
	// Discover, when the poller is a Discoverer, watches every job it lists,
	// every DiscoverInterval (default 1m).
	Discover         bool
	DiscoverInterval time.Duration
	// OnTerminal, if set, runs after a job's terminal event is acknowledged
	// (the HMC poller deletes the finished job's status there).
	OnTerminal func(ctx context.Context, job JobRef)
}

// Options configure a Bridge.
type Options struct {
	// Conn is the NATS connection; the bridge does not close it.
	Conn      *nats.Conn
	Stream    StreamOptions
	Publish   PublisherOptions
	Schedule  ScheduleOptions
	Encoding  EncoderOptions // Subjects.Prefix is taken from Stream
	Instances []Instance
	// InitialWatches are registered at start-up (from the config file).
	InitialWatches []Watch
	// FlushInterval paces tracker snapshots to KV (default 1s).
	FlushInterval time.Duration
	// ShutdownTimeout bounds the wait for in-flight polls and acks.
	ShutdownTimeout time.Duration
	Logger          zerolog.Logger
	// Registerer receives the metrics (nil: not registered).
	Registerer prometheus.Registerer
	// Cluster shares the watched jobs with other replicas (scale-out).
	Cluster ClusterOptions
	// Singletons run on one replica at a time (see AddSingleton).
	Singletons []Singleton
}

// Singleton is work one replica at a time runs for a vendor instance.
type Singleton struct {
	Kind, Vendor, Instance string
	// Run works until ctx ends (the lease moved or the bridge stops).
	Run func(ctx context.Context)
}

// Bridge ties pollers, tracker, publisher and scheduler together.
type Bridge struct {
	opts     Options
	log      zerolog.Logger
	js       jetstream.JetStream
	pubJS    jetstream.JetStream
	tracker  *Tracker
	encoder  *Encoder
	pub      *Publisher
	sched    *scheduler
	snap     *snapshotter
	registry *Registry
	metrics  *Metrics
	subjects Subjects

	// Scale-out. coord is nil for a single replica, which owns the one
	// shard there is. watches holds every registration (all replicas'
	// jobs, for notifiers and hint forwarding); byShard indexes it; active
	// says which shards' jobs are in the scheduler. All under wmu.
	coord   *coordinator
	nshards int
	wmu     sync.Mutex
	watches map[string]*Watch
	byShard []map[string]struct{}
	active  []bool
	singles []pendingSingleton

	ready chan struct{}
}

type pendingSingleton struct {
	name string
	run  func(ctx context.Context)
}

// New prepares a bridge: checks options, creates or checks the stream and
// buckets. Nothing is polled until Run.
func New(ctx context.Context, opts Options) (*Bridge, error) {
	if opts.Conn == nil {
		return nil, errors.New("bridge: no NATS connection")
	}
	opts.Stream.setDefaults()
	if opts.FlushInterval <= 0 {
		opts.FlushInterval = time.Second
	}
	if opts.ShutdownTimeout <= 0 {
		opts.ShutdownTimeout = 10 * time.Second
	}
	opts.Publish.setDefaults()
	subjects := Subjects{Prefix: opts.Stream.SubjectPrefix}
	opts.Encoding.Subjects = subjects
	if opts.Encoding.RawCap == 0 {
		opts.Encoding.RawCap = 16 << 10
	}
	enc, err := NewEncoder(opts.Encoding)
	if err != nil {
		return nil, err
	}
	seen := map[[2]string]bool{}
	for _, in := range opts.Instances {
		if err := ValidateName("vendor", in.Vendor); err != nil {
			return nil, err
		}
		if err := ValidateName("instance", in.Name); err != nil {
			return nil, err
		}
		if in.Poller == nil {
			return nil, fmt.Errorf("instance %s/%s has no poller", in.Vendor, in.Name)
		}
		k := [2]string{in.Vendor, in.Name}
		if seen[k] {
			return nil, fmt.Errorf("instance %s/%s is configured twice", in.Vendor, in.Name)
		}
		seen[k] = true
	}
	js, err := jetstream.New(opts.Conn)
	if err != nil {
		return nil, fmt.Errorf("JetStream: %w", err)
	}
	b := &Bridge{
		opts: opts, log: opts.Logger, js: js, encoder: enc,
		tracker: NewTracker(), metrics: NewMetrics(opts.Registerer), subjects: subjects,
		ready: make(chan struct{}), nshards: 1, watches: map[string]*Watch{},
	}
	if opts.Cluster.Enabled {
		opts.Cluster.setDefaults()
		b.opts.Cluster = opts.Cluster
		b.nshards = opts.Cluster.Shards
		b.log = b.log.With().Str("replica", opts.Cluster.ReplicaID).Logger()
	}
	b.byShard = make([]map[string]struct{}, b.nshards)
	for i := range b.byShard {
		b.byShard[i] = map[string]struct{}{}
	}
	b.active = make([]bool, b.nshards)
	for _, sg := range opts.Singletons {
		b.AddSingleton(sg.Kind, sg.Vendor, sg.Instance, sg.Run)
	}
	if err := b.setupStorage(ctx); err != nil {
		return nil, err
	}
	if opts.Cluster.Enabled {
		c, err := openLeases(ctx, js, b.opts.Cluster, opts.Stream, b.log, newClusterMetrics(opts.Registerer))
		if err != nil {
			return nil, err
		}
		c.hooks = leaseHooks{acquire: b.acquireShards, quiesce: b.quiesceShards, drop: b.dropShards, jobs: b.localJobs}
		b.coord = c
		if opts.Conn.Opts.ReconnectBufSize >= 0 {
			// Events queued while disconnected would go out on reconnecting,
			// past the lease check, even after a peer took the shard over.
			b.log.Warn().Msg("scale-out on a NATS connection that buffers publishes while reconnecting: connect with nats.ReconnectBufSize(-1) " +
				"so that a replica cut off longer than cluster.leaseTTL cannot publish stale events after a takeover")
		}
		b.pub.gate = b.publishGate
		b.snap.shards, b.snap.owns = b.nshards, c.owns
		b.snap.base, b.snap.written, b.snap.writtenAt = map[int]uint64{}, map[int]uint64{}, map[int]time.Time{}
	}
	// The scheduler exists from here on, not from Run: notifiers and the
	// watch API may call Hint, Reconcile or WatchesOf while Run starts.
	b.sched = newScheduler(b.opts.Schedule, b.opts.Instances)
	for _, in := range b.sched.insts {
		p := b.metrics.polls
		in.m = instMetrics{
			ok: p.WithLabelValues(in.Vendor, in.Name, "ok"), notFound: p.WithLabelValues(in.Vendor, in.Name, "not_found"),
			malformed: p.WithLabelValues(in.Vendor, in.Name, "malformed"), auth: p.WithLabelValues(in.Vendor, in.Name, "auth"),
			failed: p.WithLabelValues(in.Vendor, in.Name, "error"), duration: b.metrics.pollDuration.WithLabelValues(in.Vendor, in.Name),
		}
	}
	b.sched.poll = b.pollEntry
	b.sched.onDue = b.expire
	b.sched.lag = func(d time.Duration) { b.metrics.schedulingLag.Observe(d.Seconds()) }
	return b, nil
}

// AddSingleton registers work that exactly one replica runs at a time for
// a vendor instance (kind "notify": its push session; "discover": job
// discovery). Without scale-out it runs on this bridge for as long as Run.
// The work must stop when its context ends: with scale-out it ends when
// the lease moves to another replica. Call before Run.
func (b *Bridge) AddSingleton(kind, vendor, instance string, run func(ctx context.Context)) {
	b.singles = append(b.singles, pendingSingleton{name: kind + "." + EscapeToken(vendor) + "." + EscapeToken(instance), run: run})
}

// ReplicaID is this replica's name with scale-out, "" without.
func (b *Bridge) ReplicaID() string {
	if b.coord == nil {
		return ""
	}
	return b.opts.Cluster.ReplicaID
}

// OwnedShards lists the shards this replica polls now (scale-out), or
// [0] for a single replica.
func (b *Bridge) OwnedShards() []int {
	var out []int
	for s := 0; s < b.nshards; s++ {
		if b.owns(s) {
			out = append(out, s)
		}
	}
	return out
}

// LeaseStats counts the writes this replica made to the lease bucket.
func (b *Bridge) LeaseStats() LeaseStats {
	if b.coord == nil {
		return LeaseStats{}
	}
	return LeaseStats{Ops: b.coord.opsCount.Load(), Bytes: b.coord.bytesSent.Load()}
}

// owns reports whether this replica may publish shard s's events now.
func (b *Bridge) owns(s int) bool {
	return b.coord == nil || b.coord.owns(s)
}

// Subjects returns the subject scheme in use.
func (b *Bridge) Subjects() Subjects { return b.subjects }

// Registry returns the watch registry.
func (b *Bridge) Registry() *Registry { return b.registry }

// Ready is closed once recovery is done and polling has started.
func (b *Bridge) Ready() <-chan struct{} { return b.ready }

// Tracker exposes the tracker for status views and tests.
func (b *Bridge) Tracker() *Tracker { return b.tracker }

// PublisherHealthy reports whether the last publishes succeeded.
func (b *Bridge) PublisherHealthy() bool { return b.pub != nil && b.pub.Healthy() }

// PendingEvents counts events waiting for their ack.
func (b *Bridge) PendingEvents() int {
	if b.pub == nil {
		return 0
	}
	return b.pub.Pending()
}

func (b *Bridge) setupStorage(ctx context.Context) error {
	so := b.opts.Stream
	storage := so.Storage
	kvStorage := storage
	if so.Manage {
		cfg := jetstream.StreamConfig{
			Name:        so.Name,
			Description: "jobbridge job events (CloudEvents)",
			Subjects:    []string{so.SubjectPrefix + ".>"},
			Storage:     storage,
			Replicas:    so.Replicas,
			MaxAge:      so.MaxAge,
			Duplicates:  so.DuplicateWindow,
			Retention:   jetstream.LimitsPolicy,
			Discard:     jetstream.DiscardOld,
		}
		if _, err := retryJS(ctx, func(c context.Context) (jetstream.Stream, error) { return b.js.CreateOrUpdateStream(c, cfg) }); err != nil {
			return fmt.Errorf("create or update stream %s on %s.>: %w (if the stream is managed elsewhere, set stream.manage: false)", so.Name, so.SubjectPrefix, err)
		}
		for _, bucket := range []string{so.StateBucket, so.WatchBucket} {
			kcfg := jetstream.KeyValueConfig{Bucket: bucket, History: 1, Storage: kvStorage, Replicas: so.Replicas}
			if _, err := retryJS(ctx, func(c context.Context) (jetstream.KeyValue, error) { return b.js.CreateOrUpdateKeyValue(c, kcfg) }); err != nil {
				return fmt.Errorf("create KV bucket %s: %w", bucket, err)
			}
		}
	} else if _, err := b.js.Stream(ctx, so.Name); err != nil {
		return fmt.Errorf("stream %s: %w (stream.manage is false, so it must exist: see deploy/nats)", so.Name, err)
	}
	stateKV, err := b.js.KeyValue(ctx, so.StateBucket)
	if err != nil {
		return fmt.Errorf("KV bucket %s: %w", so.StateBucket, err)
	}
	watchKV, err := b.js.KeyValue(ctx, so.WatchBucket)
	if err != nil {
		return fmt.Errorf("KV bucket %s: %w", so.WatchBucket, err)
	}
	b.registry = NewRegistry(watchKV)
	pub, err := NewPublisherJS(b.opts.Conn, b.tracker, b.opts.Publish, b.log, b.metrics)
	if err != nil {
		return err
	}
	b.pub = pub
	b.snap = &snapshotter{js: b.js, kv: stateKV, bucket: so.StateBucket, stream: so.Name, tracker: b.tracker,
		pub: b.pub, log: b.log, metrics: b.metrics}
	return nil
}

// retryJS retries a JetStream API call with short attempts: right after a
// server (or cluster) starts, a request may get no reply at all until
// JetStream is ready, and one long timeout would just hang.
func retryJS[T any](ctx context.Context, f func(context.Context) (T, error)) (T, error) {
	var zero T
	var last error
	for attempt := 0; attempt < 15; attempt++ {
		c, cancel := context.WithTimeout(ctx, 2*time.Second)
		v, err := f(c)
		cancel()
		if err == nil {
			return v, nil
		}
		last = err
		if ctx.Err() != nil {
			return zero, ctx.Err()
		}
		var apiErr *jetstream.APIError
		if errors.As(err, &apiErr) && apiErr.Code >= 400 && apiErr.Code < 500 && apiErr.Code != 408 {
			return zero, err // a real refusal: repeating it will not help
		}
		select {
		case <-time.After(time.Duration(attempt+1) * 200 * time.Millisecond):
		case <-ctx.Done():
			return zero, ctx.Err()
		}
	}
	return zero, last
}

// Run recovers state, registers the initial watches and polls until ctx
// ends, then shuts down gracefully: no new polls, in-flight polls finish,
// pending events are acknowledged (within ShutdownTimeout), the tracker is
// snapshotted, vendor sessions are closed.
func (b *Bridge) Run(ctx context.Context) error {
	if b.coord == nil {
		// One replica owns everything: recover all of it now. With
		// scale-out each shard is loaded when its lease is acquired.
		st, err := b.snap.recoverState(ctx, b.subjects)
		if err != nil {
			return fmt.Errorf("recover tracker state: %w", err)
		}
		b.log.Info().Int("records", st.Records).Int("replayed", st.Replayed).Int("applied", st.Applied).
			Uint64("checkpoint", st.Checkpoint).Dur("took", st.Took).Msg("tracker state recovered")
	}

	if b.coord != nil {
		unsub, err := b.subscribeCluster()
		if err != nil {
			return err
		}
		defer unsub()
	}

	for _, w := range b.opts.InitialWatches {
		if w.Origin == "" {
			w.Origin = "config"
		}
		if _, _, err := b.registry.Add(ctx, w); err != nil {
			b.log.Error().Err(err).Str("job", w.Ref().String()).Msg("cannot register a watch from the configuration; fix the job id in the config file")
		}
	}

	// Publishing outlives ctx so that shutdown can wait for acks.
	defer b.pub.Stop()

	watcher, err := b.registry.kv.WatchAll(ctx)
	if err != nil {
		return fmt.Errorf("watch registry: %w", err)
	}
	initial := make(chan struct{})
	var bg sync.WaitGroup
	bg.Add(1)
	go func() {
		defer bg.Done()
		b.followRegistry(ctx, watcher, initial)
	}()
	select {
	case <-initial:
	case <-ctx.Done():
	}
	if b.coord == nil {
		b.activate([]int{0})
		b.pruneUnwatched()
	}

	schedCtx, stopSched := context.WithCancel(ctx)
	defer stopSched()
	schedDone := make(chan struct{})
	go func() {
		b.sched.run(schedCtx)
		close(schedDone)
	}()
	bg.Add(1)
	go func() {
		defer bg.Done()
		b.snapshotLoop(ctx)
	}()
	for _, in := range b.opts.Instances {
		d, ok := in.Poller.(Discoverer)
		if !in.Discover || !ok {
			continue
		}
		b.AddSingleton("discover", in.Vendor, in.Name, func(ctx context.Context) { b.discoverLoop(ctx, in, d) })
	}
	stopCoord := func() {}
	if b.coord == nil {
		for _, sg := range b.singles {
			bg.Add(1)
			go func() {
				defer bg.Done()
				sg.run(ctx)
			}()
		}
	} else {
		for _, sg := range b.singles {
			b.coord.addSingleton(sg.name, sg.run)
		}
		// Leases are renewed until the very end of the shutdown: the last
		// acks and the final snapshot happen under them.
		coordCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
		coordDone := make(chan struct{})
		stopCoord = func() {
			stop()
			<-coordDone
		}
		defer stopCoord()
		coordReady := make(chan struct{})
		go func() {
			defer close(coordDone)
			b.coord.run(coordCtx, ctx, coordReady)
		}()
		select {
		case <-coordReady:
		case <-ctx.Done():
		}
	}
	close(b.ready)
	b.log.Info().Int("watches", b.sched.size()).Int("instances", len(b.opts.Instances)).Msg("bridge running")

	<-ctx.Done()
	b.log.Info().Msg("shutting down: finishing polls in flight and waiting for acks")
	shutdown, cancel := context.WithTimeout(context.WithoutCancel(ctx), b.opts.ShutdownTimeout)
	defer cancel()
	select {
	case <-schedDone:
	case <-shutdown.Done():
	}
	if err := b.drain(shutdown); err != nil {
		b.log.Warn().Err(err).Msg("shutdown: events left unacknowledged; they are detected again after restart")
	}
	b.pub.Stop()
	bg.Wait()
	_ = watcher.Stop()
	if err := b.snap.flush(shutdown); err != nil {
		b.log.Warn().Err(err).Msg("shutdown: final snapshot incomplete; the next start replays the stream")
	}
	if b.coord != nil {
		stopCoord()
		// Hand the leases back even if the drain used up the shutdown time:
		// otherwise peers wait a TTL for them.
		leaveCtx, cancelLeave := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		b.coord.leave(leaveCtx)
		cancelLeave()
	}
	for _, in := range b.opts.Instances {
		if c, ok := in.Poller.(Closer); ok {
			if err := c.Close(shutdown); err != nil {
				b.log.Warn().Err(err).Str("instance", in.Name).Msg("logging off the vendor failed")
			}
		}
	}
	b.log.Info().Msg("bridge stopped")
	return nil
}

// drain waits for pending events' acks. With scale-out it waits for the
// tracker's pending events only: the publisher may also hold events of jobs
// whose shard moved away, which are never sent (see publishGate).
func (b *Bridge) drain(ctx context.Context) error {
	if b.coord == nil {
		return b.pub.Drain(ctx)
	}
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for b.tracker.Pending() > 0 {
		select {
		case <-ctx.Done():
			return fmt.Errorf("%d events still unacknowledged: %w", b.tracker.Pending(), ctx.Err())
		case <-t.C:
		}
	}
	return nil
}

func (b *Bridge) snapshotLoop(ctx context.Context) {
	t := time.NewTicker(b.opts.FlushInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := b.snap.flush(ctx); err != nil && ctx.Err() == nil {
				b.log.Warn().Err(err).Msg("tracker snapshot")
			}
		}
	}
}

// followRegistry applies registry changes (from any replica, the API, the
// CLI or the config) to the scheduler. initial is closed after the
// registrations present at start-up were applied.
func (b *Bridge) followRegistry(ctx context.Context, w jetstream.KeyWatcher, initial chan struct{}) {
	initialDone := false
	for {
		select {
		case <-ctx.Done():
			if !initialDone {
				close(initial)
			}
			return
		case e, ok := <-w.Updates():
			if !ok {
				if !initialDone {
					close(initial)
				}
				return
			}
			if e == nil {
				if !initialDone {
					initialDone = true
					close(initial)
				}
				continue
			}
			b.applyRegistryEntry(ctx, e)
		}
	}
}

func (b *Bridge) applyRegistryEntry(ctx context.Context, e jetstream.KeyValueEntry) {
	job, err := parseKey(e.Key())
	if err != nil {
		b.log.Warn().Err(err).Msg("ignoring a registry key jobbridge did not write")
		return
	}
	key := e.Key()
	sh := shardOfKey(key, b.nshards)
	if e.Operation() != jetstream.KeyValuePut {
		b.wmu.Lock()
		delete(b.watches, key)
		delete(b.byShard[sh], key)
		// A single replica owns every job, also before its first activation.
		active := b.active[sh] || b.coord == nil
		removed := active && b.sched.remove(job)
		b.wmu.Unlock()
		if removed {
			b.metrics.watches.WithLabelValues(job.Vendor, job.Instance).Dec()
			b.log.Info().Str("job", job.String()).Msg("watch removed")
		}
		// Only the shard's owner clears its record (without scale-out: this
		// bridge); a replica taking the shard later finds no watch for it.
		if active {
			b.tracker.Forget(job)
			if err := b.snap.forget(ctx, job); err != nil {
				b.log.Warn().Err(err).Msg("watch removed")
			}
		}
		return
	}
	w := &Watch{}
	if err := json.Unmarshal(e.Value(), w); err != nil {
		b.log.Warn().Err(err).Str("key", e.Key()).Msg("ignoring a corrupt watch registration; remove it with 'jobbridge watch rm'")
		return
	}
	b.intern(w)
	b.wmu.Lock()
	b.watches[key] = w
	b.byShard[sh][key] = struct{}{}
	if b.active[sh] {
		b.schedAddLocked(key, w)
	}
	b.wmu.Unlock()
}

// intern replaces a decoded watch's vendor, instance and origin with the
// configuration's strings: with 100k watches, a copy of each per job is
// measurable memory.
func (b *Bridge) intern(w *Watch) {
	if in, ok := b.sched.instance(w.Vendor, w.Instance); ok {
		w.Vendor, w.Instance = in.Vendor, in.Name
	}
	for _, o := range [...]string{"config", "api", "cli", "discovery"} {
		if w.Origin == o {
			w.Origin = o
			break
		}
	}
}

// schedAddLocked puts a watch in the scheduler; b.wmu is held.
func (b *Bridge) schedAddLocked(key string, w *Watch) {
	known, created := b.sched.add(w, key)
	if !known {
		b.log.Warn().Str("job", w.Ref().String()).Msg("watch names a vendor instance this bridge has no configuration for; add the instance to the config file")
		return
	}
	if created {
		b.metrics.watches.WithLabelValues(w.Vendor, w.Instance).Inc()
	}
}

// activate starts polling the jobs of shards whose state is loaded.
func (b *Bridge) activate(shards []int) {
	b.wmu.Lock()
	defer b.wmu.Unlock()
	for _, sh := range shards {
		b.active[sh] = true
		for key := range b.byShard[sh] {
			b.schedAddLocked(key, b.watches[key])
		}
	}
}

// deactivate stops polling the jobs of shards (a poll in flight finishes,
// its result dropped once the shard is not owned).
func (b *Bridge) deactivate(shards []int) {
	b.wmu.Lock()
	defer b.wmu.Unlock()
	for _, sh := range shards {
		b.active[sh] = false
		for key := range b.byShard[sh] {
			w := b.watches[key]
			if b.sched.remove(w.Ref()) {
				b.metrics.watches.WithLabelValues(w.Vendor, w.Instance).Dec()
			}
		}
	}
}

// acquireShards loads the state of shards this replica just leased and
// starts polling their jobs. A load that fails is retried a few times;
// polling on partial state could reuse sequence numbers, so until then the
// shards stay idle (their leases renewed), and after that they are handed
// back so that another replica can try.
func (b *Bridge) acquireShards(ctx context.Context, shards []int) {
	for attempt := 0; attempt <= 3; attempt++ {
		if attempt > 0 {
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Duration(attempt) * 500 * time.Millisecond):
			}
		}
		st, err := b.snap.loadShards(ctx, b.subjects, shards)
		if err == nil {
			b.activate(shards)
			b.log.Info().Ints("shards", shards).Int("records", st.Records).Int("replayed", st.Replayed).Int("applied", st.Applied).
				Uint64("checkpoint", st.Checkpoint).Dur("took", st.Took).Msg("shards taken: state loaded, polling their jobs")
			return
		}
		if attempt == 0 {
			b.log.Error().Err(err).Ints("shards", shards).Msg("cannot load the state of acquired shards; retrying")
		}
	}
	b.coord.handBack(ctx, shards, "state could not be loaded")
}

// quiesceShards stops polling shards about to be handed over. graceful
// also waits (briefly) for their events' acks and writes their records; a
// shard whose events are not all acknowledged by then is polled again and
// returned: handing it over now could let its last event land after the
// new owner read the stream.
func (b *Bridge) quiesceShards(ctx context.Context, shards []int, graceful bool) (unsettled []int) {
	b.deactivate(shards)
	if !graceful {
		return nil
	}
	wait, cancel := context.WithTimeout(ctx, min(2*time.Second, b.opts.Cluster.LeaseTTL/4))
	defer cancel()
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for !b.tracker.settledWhere(b.shardSet(shards)) && wait.Err() == nil {
		select {
		case <-wait.Done():
		case <-t.C:
		}
	}
	if wait.Err() != nil {
		var settled []int
		for _, s := range shards {
			if b.tracker.settledWhere(b.shardSet([]int{s})) {
				settled = append(settled, s)
			} else {
				unsettled = append(unsettled, s)
			}
		}
		b.activate(unsettled)
		shards = settled
	}
	if len(shards) > 0 {
		if err := b.snap.flush(ctx); err != nil {
			b.log.Warn().Err(err).Msg("snapshot before a hand-over incomplete; the new owner replays the stream")
		}
	}
	return unsettled
}

// dropShards forgets the records of shards handed over.
func (b *Bridge) dropShards(shards []int) {
	b.tracker.dropWhere(b.shardSet(shards))
	b.snap.dropShards(shards)
}

func (b *Bridge) shardSet(shards []int) func(key string) bool {
	in := make([]bool, b.nshards)
	for _, s := range shards {
		in[s] = true
	}
	return func(key string) bool { return in[shardOfKey(key, b.nshards)] }
}

// localJobs counts the jobs this replica polls.
func (b *Bridge) localJobs() int {
	return b.sched.size()
}

// pruneUnwatched drops tracker records of jobs no longer watched (left over
// from replay or from a removal that happened while the bridge was down).
func (b *Bridge) pruneUnwatched() {
	watched := b.sched.keys()
	for i := range b.tracker.shards {
		s := &b.tracker.shards[i]
		s.mu.Lock()
		for k := range s.jobs {
			// Task records belong to their job's watch.
			base := k
			if job, err := parseKey(k); err == nil && job.Task != "" {
				job.Task = ""
				base = job.Key()
			}
			if _, ok := watched[base]; !ok {
				delete(s.jobs, k)
			}
		}
		s.mu.Unlock()
	}
}

// Hint asks for an immediate poll of a job (a push notification named it).
// It reports whether the job is watched.
func (b *Bridge) Hint(job JobRef) bool { return b.HintVia(job, "") }

// HintVia is Hint from a push channel. The caller marks its own poller
// (ViaMarker) for a job polled here; when another replica polls the job,
// via travels with the forwarded hint and that replica marks its poller.
func (b *Bridge) HintVia(job JobRef, via Detection) bool {
	ok := b.sched.hint(job)
	if !ok && b.coord != nil {
		// Another replica polls it: pass the hint on.
		b.wmu.Lock()
		_, ok = b.watches[job.Key()]
		b.wmu.Unlock()
		if ok {
			b.forward("hint", job, via)
		}
	}
	b.metrics.hints.WithLabelValues(job.Vendor, boolLabel(ok)).Inc()
	return ok
}

// Reconcile polls every watched job of one instance now: after a push
// channel reconnects, messages sent while it was down are gone.
func (b *Bridge) Reconcile(vendor, instance string) int {
	n := b.sched.hintInstance(vendor, instance)
	if b.coord != nil {
		b.forward("reconcile", JobRef{Vendor: vendor, Instance: instance}, "")
		n = len(b.WatchesOf(vendor, instance))
	}
	return n
}

// expire ends the watch of a job whose retention after its terminal event
// (or vanishing) is over.
func (b *Bridge) expire(e *entry) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if !b.tracker.Settled(e.job) {
		return // its last events are not acknowledged yet; try again later
	}
	if err := b.registry.Remove(ctx, e.job); err != nil && !errors.Is(err, ErrWatchNotFound) {
		b.log.Warn().Err(err).Str("job", e.job.String()).Msg("cannot remove a finished watch; retrying in a minute")
		return
	}
	b.sched.remove(e.job)
}

func (b *Bridge) labelsFor(e *entry, w *Watch) map[string]string {
	if len(e.inst.Labels) == 0 {
		return w.Labels
	}
	if len(w.Labels) == 0 {
		return e.inst.Labels
	}
	out := make(map[string]string, len(e.inst.Labels)+len(w.Labels))
	for k, v := range e.inst.Labels {
		out[k] = v
	}
	for k, v := range w.Labels {
		out[k] = v
	}
	return out
}

// pollEntry polls one job and publishes what changed.
func (b *Bridge) pollEntry(ctx context.Context, e *entry) pollResult {
	// A fenced shard (lease not renewed in time) is still polled: what it
	// detects is held by the publisher's gate (publishGate) and goes out if the
	// lease turns out to be still ours, as events do while NATS is down.
	job := e.job
	start := time.Now()
	obs, err := e.inst.Poller.Poll(ctx, job)
	e.inst.m.duration.Observe(time.Since(start).Seconds())
	if err == nil {
		err = b.checkObservation(&obs, job, start)
	}
	if err != nil {
		return b.pollFailed(ctx, e, err)
	}
	e.inst.m.ok.Inc()
	e.seen = true
	e.notFoundStreak = 0
	e.firstNotFound = time.Time{}

	w := e.watch.Load()
	labels := b.labelsFor(e, w)
	stalled := b.opts.Schedule.StalledAfter
	if w.StalledAfter > 0 {
		stalled = time.Duration(w.StalledAfter)
	}
	// A job is finished for polling only when its tasks are too: a task may
	// still be running when the job's own status turns terminal.
	res := pollResult{terminal: obs.State.Terminal()}
	for i := range obs.Tasks {
		if !obs.Tasks[i].State.Terminal() {
			res.terminal = false
		}
	}
	changes := b.tracker.Detect(&obs, DetectOptions{Labels: labels, StalledAfter: stalled, Key: e.key})
	for i := range obs.Tasks {
		t := &obs.Tasks[i]
		changes = append(changes, b.tracker.Detect(t, DetectOptions{Labels: labels})...)
	}
	if d := w.Deadline; d != nil && !obs.State.Terminal() && start.After(*d) {
		if c, ok := b.tracker.Synthetic(job, KindDeadlineMissed, start, labels); ok {
			c.Deadline = *d
			changes = append(changes, c)
		}
	}
	for i := range changes {
		if changes[i].Kind == KindTransition {
			res.changed = true
		}
		if err := b.submit(ctx, &changes[i]); err != nil {
			res.err = err
			return res
		}
	}
	if res.terminal && res.changed && e.inst.OnTerminal != nil {
		go b.afterTerminal(ctx, e.inst.OnTerminal, job)
	}
	return res
}

// afterTerminal waits for the terminal event's ack, then runs the hook.
func (b *Bridge) afterTerminal(ctx context.Context, hook func(context.Context, JobRef), job JobRef) {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for !b.tracker.Settled(job) {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
	hook(ctx, job)
}

func (b *Bridge) submit(ctx context.Context, c *Change) error {
	b.metrics.changes.WithLabelValues(c.Obs.Job.Vendor, string(c.Kind)).Inc()
	ev, err := b.encoder.Encode(c)
	if err != nil {
		b.metrics.encodeFailures.Inc()
		b.log.Error().Err(err).Str("job", c.Obs.Job.String()).Msg("dropping a change that cannot be encoded; this is a jobbridge bug, please report it")
		return nil
	}
	return b.pub.Submit(ctx, ev)
}

// checkObservation refuses observations a poller should never return, so a
// poller bug cannot become a bogus transition.
func (b *Bridge) checkObservation(obs *Observation, job JobRef, polledAt time.Time) error {
	if !obs.State.Valid() {
		return fmt.Errorf("%w: poller returned state %q for %s", ErrMalformed, obs.State, job)
	}
	obs.Job = job
	if obs.ObservedAt.IsZero() {
		obs.ObservedAt = polledAt
	}
	if obs.Via == "" {
		obs.Via = DetectedByPoll
	}
	for i := range obs.Tasks {
		t := &obs.Tasks[i]
		if !t.State.Valid() || t.Job.Task == "" {
			return fmt.Errorf("%w: poller returned a task without id or with state %q for %s", ErrMalformed, t.State, job)
		}
		task := t.Job.Task
		t.Job = job
		t.Job.Task = task
		if err := ValidateJobID(task); err != nil {
			return fmt.Errorf("%w: task id of %s: %v", ErrMalformed, job, err)
		}
		if t.ObservedAt.IsZero() {
			t.ObservedAt = obs.ObservedAt
		}
		if t.Via == "" {
			t.Via = obs.Via
		}
	}
	return nil
}

func (b *Bridge) pollFailed(ctx context.Context, e *entry, err error) pollResult {
	job := e.job
	res := pollResult{err: err}
	ev := b.log.Warn()
	switch {
	case errors.Is(err, ErrNotFound):
		e.inst.m.notFound.Inc()
		res.notFound = true
		now := time.Now()
		if e.notFoundStreak == 0 {
			e.firstNotFound = now
		}
		e.notFoundStreak++
		_, known := b.tracker.Committed(job)
		// Two answers in a row, so one bad gateway reply does not end a watch.
		if (known || e.seen) && e.notFoundStreak >= 2 || now.Sub(e.firstNotFound) >= b.schedNotFoundGrace() {
			if c, ok := b.tracker.Synthetic(job, KindVanished, now, b.labelsFor(e, e.watch.Load())); ok {
				if err := b.submit(ctx, &c); err != nil {
					return res
				}
			}
			res.vanished = true
			b.log.Info().Str("job", job.String()).Msg("job vanished at the vendor; watch ends")
			return res
		}
		ev = b.log.Debug()
	case errors.Is(err, ErrMalformed):
		e.inst.m.malformed.Inc()
	case errors.Is(err, ErrAuth):
		e.inst.m.auth.Inc()
		ev = b.log.Error()
	case ctx.Err() != nil:
		return res
	default:
		e.inst.m.failed.Inc()
	}
	ev.Err(err).Str("job", job.String()).Int("failures", e.failures+1).Msg("poll failed; the job's state is unchanged and it is polled again with backoff")
	return res
}

func (b *Bridge) schedNotFoundGrace() time.Duration {
	return b.sched.opts.NotFoundGrace
}

// CheckInstance reports whether a vendor instance is configured on this
// bridge, with an error that lists the configured ones.
func (b *Bridge) CheckInstance(vendor, instance string) error {
	var names []string
	for _, in := range b.opts.Instances {
		if in.Vendor == vendor && in.Name == instance {
			return nil
		}
		names = append(names, in.Vendor+"/"+in.Name)
	}
	return fmt.Errorf("no instance %s/%s is configured; configured: %v", vendor, instance, names)
}

// discoverLoop registers every job a vendor lists. Jobs that disappear from
// the list are not removed here: their watch ends through the vanished or
// terminal path, after their last event.
func (b *Bridge) discoverLoop(ctx context.Context, in Instance, d Discoverer) {
	every := in.DiscoverInterval
	if every <= 0 {
		every = time.Minute
	}
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		ids, err := d.Discover(ctx)
		if err != nil {
			if ctx.Err() == nil {
				b.log.Warn().Err(err).Str("vendor", in.Vendor).Str("instance", in.Name).Msg("job discovery failed; retrying next round")
			}
		}
		added := 0
		for _, id := range ids {
			if ctx.Err() != nil {
				return
			}
			w := Watch{Vendor: in.Vendor, Instance: in.Name, Job: id, Origin: "discovery"}
			if b.sched.watched(w.Ref().Key()) {
				continue
			}
			if _, created, err := b.registry.Add(ctx, w); err != nil {
				b.log.Warn().Err(err).Str("job", w.Ref().String()).Msg("discovered job not registered")
			} else if created {
				added++
			}
		}
		if added > 0 {
			b.log.Info().Str("vendor", in.Vendor).Str("instance", in.Name).Int("added", added).Msg("discovered jobs")
		}
		t.Reset(every)
	}
}

// WatchesOf returns the current watches of one instance (a snapshot), for
// notifiers that subscribe per job.
// With scale-out it lists the jobs of every replica: the replica holding
// an HMC's push session subscribes for all of them.
func (b *Bridge) WatchesOf(vendor, instance string) []Watch {
	b.wmu.Lock()
	defer b.wmu.Unlock()
	var out []Watch
	for _, w := range b.watches {
		if w.Vendor == vendor && w.Instance == instance {
			out = append(out, *w)
		}
	}
	return out
}
