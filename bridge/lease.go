package bridge

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	mrand "math/rand/v2"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
)

// Leases: several replicas share the watch space through a JetStream KV
// bucket, with no consensus of their own. The bucket holds
//
//	config             {"shards": N}, written once; a replica with another N refuses to start
//	replica.<id>       each replica's heartbeat (who it is, what it holds)
//	shard.<n>          the lease of shard n: created by its owner, renewed by
//	                   an update on the expected revision, deleted on hand-over
//	single.<name>      the lease of a per-instance singleton (an HMC push
//	                   session, job discovery), same rules
//
// Expiry is judged by each observer's own monotonic clock: a lease whose
// revision has not changed for LeaseTTL since this replica first saw that
// revision is expired, and may be taken by an update on that revision (so
// only one peer wins). No wall-clock time is compared across machines. The
// owner renews every LeaseTTL/4 and stops publishing a shard's events
// (fences itself) when its last successful renewal was sent more than 3/4
// LeaseTTL ago: the
// revision an observer saw was written after that send, so the owner has
// stopped before anyone can judge the lease expired. Fencing gates
// publishing (publishGate) and stops singletons; polling goes on and what it
// detects is held, to go out if the lease turns out to be still ours.

// ClusterOptions turn on scale-out.
type ClusterOptions struct {
	// Enabled turns leasing on; off, this bridge polls every watched job.
	Enabled bool
	// ReplicaID names this replica (default: host name and a random suffix).
	ReplicaID string
	// Shards splits the watch space (default 64). Fixed per deployment.
	Shards int
	// LeaseBucket is the KV bucket of replicas and leases (default JOBBRIDGE_LEASES).
	LeaseBucket string
	// LeaseTTL is the lifetime of a lease without renewal (default 15s).
	LeaseTTL time.Duration
}

func (o *ClusterOptions) setDefaults() {
	if o.Shards <= 0 {
		o.Shards = DefaultShards
	}
	if o.LeaseBucket == "" {
		o.LeaseBucket = "JOBBRIDGE_LEASES"
	}
	if o.LeaseTTL <= 0 {
		o.LeaseTTL = 15 * time.Second
	}
	if o.ReplicaID == "" {
		o.ReplicaID = DefaultReplicaID()
	}
}

// DefaultReplicaID is the host name (reduced to letters, digits, '-' and
// '_') and a random suffix, so two replicas on one host differ.
func DefaultReplicaID() string {
	host, _ := os.Hostname()
	var b strings.Builder
	for _, r := range host {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' {
			b.WriteRune(r)
		}
		if b.Len() >= 40 {
			break
		}
	}
	if b.Len() == 0 {
		b.WriteString("jobbridge")
	}
	return b.String() + "-" + randomHex(3)
}

func randomHex(n int) string {
	buf := make([]byte, n)
	_, _ = rand.Read(buf)
	return hex.EncodeToString(buf)
}

// Keys of the lease bucket.
const (
	leaseConfigKey     = "config"
	replicaKeyPrefix   = "replica."
	shardKeyPrefix     = "shard."
	singletonKeyPrefix = "single."
)

func shardKey(s int) string { return shardKeyPrefix + strconv.Itoa(s) }

// LeaseRecord is the value of a shard or singleton lease.
type LeaseRecord struct {
	Owner       string `json:"owner"`
	Incarnation string `json:"incarnation"`
	// AcquiredAt and RenewedAt are the owner's wall clock, for people
	// (jobbridge status); expiry never reads them.
	AcquiredAt time.Time `json:"acquiredAt"`
	RenewedAt  time.Time `json:"renewedAt"`
}

// ReplicaRecord is a replica's heartbeat in the lease bucket.
type ReplicaRecord struct {
	ID string `json:"id"`
	// Incarnation differs per process, so a restarted replica with the same
	// ID is told apart from its dead predecessor.
	Incarnation string    `json:"incarnation"`
	Host        string    `json:"host,omitempty"`
	PID         int       `json:"pid,omitempty"`
	StartedAt   time.Time `json:"startedAt"`
	HeartbeatAt time.Time `json:"heartbeatAt"`
	Shards      []int     `json:"shards"`
	Singletons  []string  `json:"singletons,omitempty"`
	Jobs        int       `json:"jobs"`
	LeaseTTL    Duration  `json:"leaseTTL"`
}

// ClusterConfig is the deployment-wide record under "config".
type ClusterConfig struct {
	Shards int `json:"shards"`
}

// ErrShardMismatch: this replica's shard count differs from the deployment's.
var ErrShardMismatch = errors.New("cluster.shards differs from the deployment's")

// leaseHooks are what the coordinator asks of the bridge.
type leaseHooks struct {
	// acquire loads the shards' state and starts polling their jobs.
	acquire func(ctx context.Context, shards []int)
	// quiesce stops polling the shards' jobs; graceful also waits for their
	// events' acks and writes their records, before the lease is deleted,
	// and returns the shards that did not settle in time: those are polled
	// again and kept (an event landing after the new owner loaded the shard
	// would be missing from its state).
	quiesce func(ctx context.Context, shards []int, graceful bool) (unsettled []int)
	// drop forgets the shards' records once the lease is gone.
	drop func(shards []int)
	// jobs counts the jobs this replica polls (for the heartbeat).
	jobs func() int
}

type heldLease struct {
	rev        uint64
	acquiredAt time.Time
	okSent     time.Duration // monotonic send time of the last successful write
}

// observed is what this replica has seen of one key.
type observed struct {
	present   bool
	rev       uint64
	at        time.Duration // when this revision was first seen
	fresh     bool          // changed while watched (a sign of life)
	owner     string
	inc       string
	freeSince time.Duration
}

type singleton struct {
	name     string
	key      string
	run      func(ctx context.Context)
	held     *heldLease
	cancel   context.CancelFunc
	done     chan struct{}
	deadline atomic.Int64
}

type clusterMetrics struct {
	owned     prometheus.Gauge
	live      prometheus.Gauge
	ops       *prometheus.CounterVec
	bytes     prometheus.Counter
	takeovers prometheus.Counter
	fenced    prometheus.Counter
	// expiryRounds counts rounds run early because a peer's lease ran out.
	expiryRounds prometheus.Counter
}

func newClusterMetrics(reg prometheus.Registerer) *clusterMetrics {
	m := &clusterMetrics{
		owned: prometheus.NewGauge(prometheus.GaugeOpts{Name: "jobbridge_cluster_shards_owned", Help: "Shards this replica holds a lease on."}),
		live:  prometheus.NewGauge(prometheus.GaugeOpts{Name: "jobbridge_cluster_replicas_live", Help: "Replicas this replica sees alive, itself included."}),
		ops: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "jobbridge_cluster_lease_ops_total",
			Help: "Lease bucket writes by operation (create, renew, take, delete, heartbeat) and result (ok, conflict, error)."}, []string{"op", "result"}),
		bytes:     prometheus.NewCounter(prometheus.CounterOpts{Name: "jobbridge_cluster_lease_bytes_total", Help: "Bytes of keys and values written to the lease bucket."}),
		takeovers: prometheus.NewCounter(prometheus.CounterOpts{Name: "jobbridge_cluster_takeovers_total", Help: "Expired leases of another replica taken over."}),
		fenced: prometheus.NewCounter(prometheus.CounterOpts{Name: "jobbridge_cluster_fenced_total",
			Help: "Times a lease could not be renewed in time and this replica stopped publishing its shard's events or stopped its singleton."}),
		expiryRounds: prometheus.NewCounter(prometheus.CounterOpts{Name: "jobbridge_cluster_expiry_rounds_total",
			Help: "Lease rounds run ahead of schedule, at the moment another replica's lease or heartbeat ran out."}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.owned, m.live, m.ops, m.bytes, m.takeovers, m.fenced, m.expiryRounds} {
			reg.MustRegister(c)
		}
	}
	return m
}

// coordinator holds this replica's leases and balances shards with peers.
type coordinator struct {
	opts       ClusterOptions
	kv         jetstream.KeyValue
	log        zerolog.Logger
	inc        string
	base       time.Time
	startedAt  time.Time
	renewEvery time.Duration
	fenceAfter time.Duration
	hooks      leaseHooks
	m          *clusterMetrics

	// deadline[s] is the monotonic offset (ns since base) until which shard
	// s's events may be published; 0 when not held. Read on every publish.
	deadline []atomic.Int64

	mu          sync.Mutex
	view        map[string]*observed
	initialDone bool

	// Loop-owned.
	shards  map[int]*heldLease
	singles []*singleton
	work    context.Context

	opsCount  atomic.Uint64
	bytesSent atomic.Uint64
	// lastFailure is when a write of this replica to the bucket last failed
	// other than by a conflict (monotonic; -1: never). Leases look expired
	// to everyone while the bucket cannot be written (a NATS node lost, a
	// leader election): this replica takes none until it has written
	// successfully for a whole TTL, so their owners, which could not renew
	// either, get the first chance once it works again.
	lastFailure atomic.Int64
}

// openLeases opens (or creates) the lease bucket and checks the
// deployment's shard count.
func openLeases(ctx context.Context, js jetstream.JetStream, opts ClusterOptions, so StreamOptions, log zerolog.Logger, m *clusterMetrics) (*coordinator, error) {
	if so.Manage {
		kcfg := jetstream.KeyValueConfig{Bucket: opts.LeaseBucket, History: 1, Storage: so.Storage, Replicas: so.Replicas,
			Description: "jobbridge replicas and shard leases"}
		if _, err := retryJS(ctx, func(c context.Context) (jetstream.KeyValue, error) { return js.CreateOrUpdateKeyValue(c, kcfg) }); err != nil {
			return nil, fmt.Errorf("create KV bucket %s: %w", opts.LeaseBucket, err)
		}
	}
	kv, err := js.KeyValue(ctx, opts.LeaseBucket)
	if err != nil {
		return nil, fmt.Errorf("KV bucket %s: %w (stream.manage is false, so it must exist: see deploy/nats)", opts.LeaseBucket, err)
	}
	c := &coordinator{
		opts: opts, kv: kv, log: log.With().Str("replica", opts.ReplicaID).Logger(), inc: randomHex(8),
		base: time.Now(), startedAt: time.Now().UTC(), renewEvery: opts.LeaseTTL / 4, fenceAfter: opts.LeaseTTL * 3 / 4,
		m: m, deadline: make([]atomic.Int64, opts.Shards), view: map[string]*observed{}, shards: map[int]*heldLease{},
	}
	c.lastFailure.Store(-1)
	if err := c.checkConfig(ctx); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *coordinator) checkConfig(ctx context.Context) error {
	val, _ := json.Marshal(ClusterConfig{Shards: c.opts.Shards})
	_, err := c.kv.Create(ctx, leaseConfigKey, val)
	if err == nil || !errors.Is(err, jetstream.ErrKeyExists) {
		if err != nil {
			return fmt.Errorf("record the shard count in %s: %w", c.opts.LeaseBucket, err)
		}
		return nil
	}
	e, err := c.kv.Get(ctx, leaseConfigKey)
	if err != nil {
		return fmt.Errorf("read the shard count from %s: %w", c.opts.LeaseBucket, err)
	}
	var cfg ClusterConfig
	if err := json.Unmarshal(e.Value(), &cfg); err != nil {
		return fmt.Errorf("key %q of bucket %s is not jobbridge's: %w", leaseConfigKey, c.opts.LeaseBucket, err)
	}
	if cfg.Shards != c.opts.Shards {
		return fmt.Errorf("%w: this replica has cluster.shards %d, the deployment in bucket %s uses %d; set cluster.shards: %d on every replica "+
			"(changing it needs every replica stopped and the key %q deleted from the bucket)",
			ErrShardMismatch, c.opts.Shards, c.opts.LeaseBucket, cfg.Shards, cfg.Shards, leaseConfigKey)
	}
	return nil
}

// addSingleton registers work that one replica at a time runs; before run.
func (c *coordinator) addSingleton(name string, run func(ctx context.Context)) {
	c.singles = append(c.singles, &singleton{name: name, key: singletonKeyPrefix + name, run: run})
}

func (c *coordinator) now() time.Duration { return time.Since(c.base) }

// owns reports whether shard s's events may be published now.
func (c *coordinator) owns(s int) bool {
	d := c.deadline[s].Load()
	return d != 0 && int64(c.now()) < d
}

// run keeps leases until ctx ends; ready is closed after the first round.
// work is the bridge's own life: once it ends (shutdown begins) singletons
// stop and no lease is taken or handed over, but the held ones are renewed
// until ctx ends, after the last acks and the final snapshot.
func (c *coordinator) run(ctx, work context.Context, ready chan<- struct{}) {
	c.work = work
	w, err := c.kv.WatchAll(ctx)
	var watchDone chan struct{}
	if err != nil {
		c.log.Error().Err(err).Msg("cannot watch the lease bucket; retrying every round")
	} else {
		watchDone = make(chan struct{})
		go func() {
			defer close(watchDone)
			c.follow(ctx, w)
		}()
	}
	// The first round needs the bucket's current content.
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline) && ctx.Err() == nil; {
		c.mu.Lock()
		done := c.initialDone
		c.mu.Unlock()
		if done {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	t := time.NewTicker(c.renewEvery)
	defer t.Stop()
	fence := time.NewTicker(50 * time.Millisecond)
	defer fence.Stop()
	// expiry fires an extra round when a peer's lease or heartbeat runs
	// out before the next regular one: without it a dead replica's shards
	// would wait up to another renewal period (a quarter of the TTL) on
	// top of the TTL.
	expiry := time.NewTimer(time.Hour)
	defer expiry.Stop()
	first := true
	for ctx.Err() == nil {
		if w == nil {
			if w, err = c.kv.WatchAll(ctx); err == nil {
				watchDone = make(chan struct{})
				go func() {
					defer close(watchDone)
					c.follow(ctx, w)
				}()
			}
		}
		c.round(ctx)
		if first {
			close(ready)
			first = false
		}
		expiry.Stop()
		if d, ok := c.nextExpiry(c.snapshotView(), c.now()); ok && d < c.renewEvery {
			expiry.Reset(d)
		}
	wait:
		for {
			select {
			case <-ctx.Done():
				break wait
			case <-t.C:
				break wait
			case <-expiry.C:
				c.m.expiryRounds.Inc()
				break wait
			case <-fence.C:
				if work.Err() != nil {
					for _, s := range c.singles {
						c.stopSingleton(s)
					}
					continue
				}
				c.restartSingletons(work)
			}
		}
	}
	if first {
		close(ready)
	}
	for _, s := range c.singles {
		c.stopSingleton(s)
	}
	if w != nil {
		_ = w.Stop()
		<-watchDone
	}
}

// follow keeps the view of the bucket current.
func (c *coordinator) follow(ctx context.Context, w jetstream.KeyWatcher) {
	for {
		select {
		case <-ctx.Done():
			return
		case e, ok := <-w.Updates():
			if !ok {
				return
			}
			c.mu.Lock()
			if e == nil {
				c.initialDone = true
				c.mu.Unlock()
				continue
			}
			now := c.now()
			o := c.view[e.Key()]
			if o == nil {
				o = &observed{freeSince: now}
				c.view[e.Key()] = o
			}
			if e.Operation() != jetstream.KeyValuePut {
				o.present, o.rev, o.owner, o.inc, o.freeSince = false, e.Revision(), "", "", now
				c.mu.Unlock()
				continue
			}
			if e.Revision() != o.rev || !o.present {
				o.present, o.rev, o.at = true, e.Revision(), now
				o.fresh = c.initialDone
			}
			if strings.HasPrefix(e.Key(), replicaKeyPrefix) {
				var r ReplicaRecord
				if json.Unmarshal(e.Value(), &r) == nil {
					o.owner, o.inc = r.ID, r.Incarnation
					if r.ID == c.opts.ReplicaID && r.Incarnation != c.inc && c.initialDone {
						c.log.Error().Str("other", r.Incarnation).Msg("another running replica uses the same cluster.replicaID; give every replica its own")
					}
				}
			} else {
				var l LeaseRecord
				if json.Unmarshal(e.Value(), &l) == nil {
					o.owner, o.inc = l.Owner, l.Incarnation
				}
			}
			c.mu.Unlock()
		}
	}
}

// write counts one lease-bucket write for the metrics and the benchmark.
func (c *coordinator) write(op, key string, val []byte, err error) {
	c.opsCount.Add(1)
	c.bytesSent.Add(uint64(len(key) + len(val)))
	c.m.bytes.Add(float64(len(key) + len(val)))
	res := "ok"
	switch {
	case err == nil:
	case errors.Is(err, jetstream.ErrKeyExists), errors.Is(err, jetstream.ErrKeyRevisionMismatch):
		res = "conflict"
	default:
		res = "error"
		c.lastFailure.Store(int64(c.now()))
	}
	c.m.ops.WithLabelValues(op, res).Inc()
}

func (c *coordinator) leaseValue(acquired time.Time) []byte {
	b, _ := json.Marshal(LeaseRecord{Owner: c.opts.ReplicaID, Incarnation: c.inc, AcquiredAt: acquired, RenewedAt: time.Now().UTC()})
	return b
}

func (c *coordinator) opCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, max(c.renewEvery/2, 200*time.Millisecond))
}

// renew updates a held lease on its revision. lost is true when another
// replica changed or deleted it: the lease is gone for good.
func (c *coordinator) renew(ctx context.Context, key string, h *heldLease) (lost bool) {
	val := c.leaseValue(h.acquiredAt)
	sent := c.now()
	octx, cancel := c.opCtx(ctx)
	rev, err := c.kv.Update(octx, key, val, h.rev)
	cancel()
	c.write("renew", key, val, err)
	if err == nil {
		h.rev, h.okSent = rev, sent
		return false
	}
	if errors.Is(err, jetstream.ErrKeyRevisionMismatch) || errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyExists) {
		return true
	}
	if ctx.Err() == nil {
		c.log.Warn().Err(err).Str("lease", key).Dur("sinceRenewal", c.now()-h.okSent).
			Msg("cannot renew a lease; polling of its jobs stops if this lasts 3/4 of cluster.leaseTTL")
	}
	return false
}

// acquire creates a free lease or takes an expired one on its revision.
func (c *coordinator) acquire(ctx context.Context, key string, o observed) *heldLease {
	now := time.Now().UTC()
	val := c.leaseValue(now)
	sent := c.now()
	octx, cancel := c.opCtx(ctx)
	defer cancel()
	var rev uint64
	var err error
	op := "create"
	if o.present {
		op = "take"
		rev, err = c.kv.Update(octx, key, val, o.rev)
	} else {
		rev, err = c.kv.Create(octx, key, val)
	}
	c.write(op, key, val, err)
	if err != nil {
		return nil
	}
	if op == "take" && o.owner != c.opts.ReplicaID {
		c.m.takeovers.Inc()
		c.log.Info().Str("lease", key).Str("from", o.owner).Msg("took over an expired lease")
	}
	return &heldLease{rev: rev, acquiredAt: now, okSent: sent}
}

func (c *coordinator) release(ctx context.Context, key string, h *heldLease) {
	octx, cancel := c.opCtx(ctx)
	err := c.kv.Delete(octx, key, jetstream.LastRevision(h.rev))
	cancel()
	c.write("delete", key, nil, err)
	if err != nil && ctx.Err() == nil {
		// Our idea of the revision can be stale (a renewal the server
		// applied but whose answer timed out here): delete what is stored
		// if it is still this process's lease, so a peer need not wait a TTL.
		err = c.releaseIfOurs(ctx, key)
	}
	if err != nil && ctx.Err() == nil {
		c.log.Warn().Err(err).Str("lease", key).Msg("cannot delete a lease on hand-over; peers take it when it expires")
	}
}

func (c *coordinator) releaseIfOurs(ctx context.Context, key string) error {
	octx, cancel := c.opCtx(ctx)
	defer cancel()
	e, err := c.kv.Get(octx, key)
	if err != nil {
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			return nil
		}
		return err
	}
	var l LeaseRecord
	if json.Unmarshal(e.Value(), &l) != nil || l.Owner != c.opts.ReplicaID || l.Incarnation != c.inc {
		return nil // another replica's now: nothing of ours to hand back
	}
	err = c.kv.Delete(octx, key, jetstream.LastRevision(e.Revision()))
	c.write("delete", key, nil, err)
	return err
}

func (c *coordinator) heartbeat(ctx context.Context) {
	shards := make([]int, 0, len(c.shards))
	for s := range c.shards {
		shards = append(shards, s)
	}
	sort.Ints(shards)
	var singles []string
	for _, s := range c.singles {
		if s.held != nil {
			singles = append(singles, s.name)
		}
	}
	host, _ := os.Hostname()
	jobs := 0
	if c.hooks.jobs != nil {
		jobs = c.hooks.jobs()
	}
	val, _ := json.Marshal(ReplicaRecord{ID: c.opts.ReplicaID, Incarnation: c.inc, Host: host, PID: os.Getpid(),
		StartedAt: c.startedAt, HeartbeatAt: time.Now().UTC(), Shards: shards, Singletons: singles, Jobs: jobs, LeaseTTL: Duration(c.opts.LeaseTTL)})
	key := replicaKeyPrefix + c.opts.ReplicaID
	octx, cancel := c.opCtx(ctx)
	_, err := c.kv.Put(octx, key, val)
	cancel()
	c.write("heartbeat", key, val, err)
}

// snapshotView copies the observations under the lock.
func (c *coordinator) snapshotView() map[string]observed {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]observed, len(c.view))
	for k, o := range c.view {
		out[k] = *o
	}
	return out
}

// liveReplicas counts replicas with a sign of life within the TTL, this one
// included. A heartbeat only counts once it was seen to change: a key left
// by a dead replica is not mistaken for a live one.
func (c *coordinator) liveReplicas(view map[string]observed, now time.Duration) int {
	n := 1
	for k, o := range view {
		if !strings.HasPrefix(k, replicaKeyPrefix) || k == replicaKeyPrefix+c.opts.ReplicaID {
			continue
		}
		if o.present && o.fresh && now-o.at < c.opts.LeaseTTL {
			n++
		}
	}
	return n
}

// claimable sorts the leases of keys this replica does not hold into free
// (absent) and expired (unchanged for the TTL, or left by this replica).
// orphaned lists those free or expired for more than two rounds.
func (c *coordinator) claimable(view map[string]observed, keys []string, now time.Duration, held func(string) bool) (free, expired, orphaned []string) {
	f := c.lastFailure.Load()
	canJudge := f < 0 || now-time.Duration(f) >= c.opts.LeaseTTL
	for _, k := range keys {
		if held(k) {
			continue
		}
		o, ok := view[k]
		if !ok {
			o = observed{freeSince: 0}
		}
		switch {
		case !o.present:
			free = append(free, k)
			if now-o.freeSince >= 2*c.renewEvery {
				orphaned = append(orphaned, k)
			}
		case o.owner == c.opts.ReplicaID && o.inc == c.inc:
			expired = append(expired, k) // ours, lost track of (a failed delete)
		case canJudge && now-o.at >= c.opts.LeaseTTL:
			expired = append(expired, k)
			if now-o.at >= c.opts.LeaseTTL+2*c.renewEvery {
				orphaned = append(orphaned, k)
			}
		}
	}
	mrand.Shuffle(len(free), func(i, j int) { free[i], free[j] = free[j], free[i] })
	mrand.Shuffle(len(expired), func(i, j int) { expired[i], expired[j] = expired[j], expired[i] })
	return free, expired, orphaned
}

// nextExpiry is how long until the first lease or heartbeat of another
// replica, as this replica sees it, has been unchanged for the TTL, or
// until this replica may judge expiry again after a failed write. ok is
// false when there is nothing to wait for. A live peer renews every
// quarter TTL, so only a dead or cut-off one is ever due before the next
// regular round.
func (c *coordinator) nextExpiry(view map[string]observed, now time.Duration) (d time.Duration, ok bool) {
	const margin = time.Millisecond // judge strictly after the TTL has passed
	consider := func(at time.Duration) {
		if left := max(at-now, 0) + margin; !ok || left < d {
			d, ok = left, true
		}
	}
	if f := c.lastFailure.Load(); f >= 0 && now-time.Duration(f) < c.opts.LeaseTTL {
		consider(time.Duration(f) + c.opts.LeaseTTL)
	}
	for k, o := range view {
		if !o.present || (o.owner == c.opts.ReplicaID && o.inc == c.inc) || now-o.at >= c.opts.LeaseTTL {
			continue // absent, ours, or already judged expired by the round just run
		}
		if strings.HasPrefix(k, replicaKeyPrefix) && !o.fresh {
			continue // a heartbeat never seen to change counts as dead already
		}
		consider(o.at + c.opts.LeaseTTL)
	}
	return d, ok
}

func (c *coordinator) setDeadline(s int, h *heldLease) {
	c.deadline[s].Store(int64(h.okSent + c.fenceAfter))
}

// round renews, takes and hands back leases once.
func (c *coordinator) round(ctx context.Context) {
	c.heartbeat(ctx)
	var lost []int
	for s, h := range c.shards {
		wasOwned := c.owns(s)
		if c.renew(ctx, shardKey(s), h) {
			lost = append(lost, s)
			continue
		}
		c.setDeadline(s, h)
		if wasOwned && !c.owns(s) {
			c.m.fenced.Inc()
			c.log.Warn().Int("shard", s).Msg("lease not renewed in time: holding the shard's events until a renewal succeeds or a peer takes it")
		}
	}
	if len(lost) > 0 {
		sort.Ints(lost)
		for _, s := range lost {
			c.deadline[s].Store(0)
			delete(c.shards, s)
		}
		c.log.Warn().Ints("shards", lost).Msg("another replica took these shards (this one could not renew in time); stopped polling them")
		c.hooks.quiesce(ctx, lost, false)
		c.hooks.drop(lost)
	}
	for _, s := range c.singles {
		if s.held == nil {
			continue
		}
		if c.renew(ctx, s.key, s.held) {
			c.log.Warn().Str("singleton", s.name).Msg("another replica took this lease; stopping here")
			c.stopSingleton(s)
			s.held = nil
			continue
		}
		s.deadline.Store(int64(s.held.okSent + c.fenceAfter))
	}

	if c.stopping() {
		return // renew only: leave hands everything back
	}
	now := c.now()
	view := c.snapshotView()
	live := c.liveReplicas(view, now)
	c.m.live.Set(float64(live))

	keys := make([]string, c.opts.Shards)
	for s := range keys {
		keys[s] = shardKey(s)
	}
	target := int(math.Ceil(float64(c.opts.Shards) / float64(live)))
	free, expired, orphaned := c.claimable(view, keys, now, func(k string) bool { return c.shards[parseShardKey(k)] != nil })
	// Orphans are taken whatever the target; then free and expired leases
	// until the target is met. A lease a peer takes first (a conflict)
	// makes this replica try the next candidate in the same round: when a
	// replica dies, the survivors race for its shards at the same instant,
	// and waiting a round after each lost race would delay the takeover
	// by a quarter TTL per loss.
	need := target - len(c.shards)
	failedBefore := c.lastFailure.Load()
	var got []int
	for _, k := range slices.Concat(orphaned, free, expired) {
		if ctx.Err() != nil {
			return
		}
		if len(got) >= need && !slices.Contains(orphaned, k) {
			continue
		}
		s := parseShardKey(k)
		if c.shards[s] != nil {
			continue // an orphan also listed as free or expired
		}
		if h := c.acquire(ctx, k, view[k]); h != nil {
			c.shards[s] = h
			c.setDeadline(s, h)
			got = append(got, s)
		} else if c.lastFailure.Load() != failedBefore {
			break // the bucket cannot be written: no more tries this round
		}
	}
	if len(got) > 0 {
		sort.Ints(got)
		c.log.Info().Ints("shards", got).Int("held", len(c.shards)).Int("target", target).Int("replicas", live).Msg("acquired shards")
		c.hooks.acquire(ctx, got)
	}
	// Hand surplus back only when nothing is waiting to be taken: a shard
	// released while others are free would just bounce.
	if surplus := len(c.shards) - target; surplus > 0 && len(free) == 0 && len(expired) == 0 {
		held := make([]int, 0, len(c.shards))
		for s := range c.shards {
			held = append(held, s)
		}
		sort.Ints(held)
		c.handBack(ctx, held[len(held)-surplus:], "balancing")
		c.log.Info().Int("held", len(c.shards)).Int("target", target).Int("replicas", live).Msg("handed shards back to balance")
	}
	c.m.owned.Set(float64(len(c.shards)))
	c.balanceSingletons(ctx, view, now, live)
}

// stopping reports whether the bridge is shutting down.
func (c *coordinator) stopping() bool { return c.work != nil && c.work.Err() != nil }

// handBack releases shards gracefully: stop polling, settle, write state,
// delete the leases, forget the records.
func (c *coordinator) handBack(ctx context.Context, shards []int, why string) {
	if len(shards) == 0 {
		return
	}
	if keep := c.hooks.quiesce(ctx, shards, true); len(keep) > 0 {
		c.log.Warn().Ints("shards", keep).Msg("events of these shards are still unacknowledged; keeping them for now")
		shards = slices.DeleteFunc(slices.Clone(shards), func(s int) bool { return slices.Contains(keep, s) })
	}
	for _, s := range shards {
		h := c.shards[s]
		c.deadline[s].Store(0)
		delete(c.shards, s)
		if h != nil {
			c.release(ctx, shardKey(s), h)
		}
	}
	c.hooks.drop(shards)
	c.log.Debug().Ints("shards", shards).Str("why", why).Msg("handed shards back")
}

func (c *coordinator) balanceSingletons(ctx context.Context, view map[string]observed, now time.Duration, live int) {
	if len(c.singles) == 0 {
		return
	}
	keys := make([]string, len(c.singles))
	byKey := map[string]*singleton{}
	heldN := 0
	for i, s := range c.singles {
		keys[i] = s.key
		byKey[s.key] = s
		if s.held != nil {
			heldN++
		}
	}
	target := int(math.Ceil(float64(len(c.singles)) / float64(live)))
	free, expired, orphaned := c.claimable(view, keys, now, func(k string) bool { return byKey[k].held != nil })
	want := orphaned
	if need := target - heldN; need > 0 {
		want = append(append([]string(nil), free...), expired...)
		if len(want) > need {
			want = want[:need]
		}
		for _, k := range orphaned {
			if !slices.Contains(want, k) {
				want = append(want, k)
			}
		}
	}
	for _, k := range want {
		s := byKey[k]
		if h := c.acquire(ctx, k, view[k]); h != nil {
			s.held = h
			s.deadline.Store(int64(h.okSent + c.fenceAfter))
			heldN++
			c.startSingleton(c.work, s)
		}
	}
	if surplus := heldN - target; surplus > 0 && len(free) == 0 && len(expired) == 0 {
		for i := len(c.singles) - 1; i >= 0 && surplus > 0; i-- {
			s := c.singles[i]
			if s.held == nil {
				continue
			}
			c.stopSingleton(s)
			c.release(ctx, s.key, s.held)
			s.held = nil
			surplus--
		}
	}
}

func (c *coordinator) startSingleton(ctx context.Context, s *singleton) {
	sctx, cancel := context.WithCancel(ctx)
	s.cancel, s.done = cancel, make(chan struct{})
	c.log.Info().Str("singleton", s.name).Msg("this replica now runs it")
	go func() {
		defer close(s.done)
		s.run(sctx)
	}()
	// The watchdog fences on its own: the round that renews may itself be
	// stuck on an unreachable NATS.
	go func() {
		for {
			left := time.Duration(s.deadline.Load()) - c.now()
			if left <= 0 {
				c.m.fenced.Inc()
				c.log.Warn().Str("singleton", s.name).Msg("lease not renewed in time: stopped it until a renewal succeeds")
				cancel()
				return
			}
			t := time.NewTimer(left)
			select {
			case <-sctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
		}
	}()
}

func (c *coordinator) stopSingleton(s *singleton) {
	if s.cancel == nil {
		return
	}
	s.cancel()
	<-s.done
	s.cancel, s.done = nil, nil
}

// restartSingletons starts again a singleton the watchdog fenced once its
// lease has been renewed (it was still this replica's).
func (c *coordinator) restartSingletons(ctx context.Context) {
	now := int64(c.now())
	for _, s := range c.singles {
		if s.cancel == nil || s.held == nil || now >= s.deadline.Load() || ctx.Err() != nil {
			continue
		}
		select {
		case <-s.done:
			c.stopSingleton(s)
			c.startSingleton(ctx, s)
		default:
		}
	}
}

// leave hands every lease back at shutdown. The bridge has stopped polling
// and written its state already.
func (c *coordinator) leave(ctx context.Context) {
	held := make([]int, 0, len(c.shards))
	for s := range c.shards {
		held = append(held, s)
	}
	sort.Ints(held)
	for _, s := range held {
		c.deadline[s].Store(0)
		c.release(ctx, shardKey(s), c.shards[s])
		delete(c.shards, s)
	}
	for _, s := range c.singles {
		c.stopSingleton(s)
		if s.held != nil {
			c.release(ctx, s.key, s.held)
			s.held = nil
		}
	}
	key := replicaKeyPrefix + c.opts.ReplicaID
	octx, cancel := c.opCtx(ctx)
	err := c.kv.Delete(octx, key)
	cancel()
	c.write("delete", key, nil, err)
	c.m.owned.Set(0)
	c.log.Info().Ints("shards", held).Msg("handed every lease back")
}

func parseShardKey(k string) int {
	n, err := strconv.Atoi(strings.TrimPrefix(k, shardKeyPrefix))
	if err != nil {
		return -1
	}
	return n
}

// LeaseStats counts this replica's writes to the lease bucket.
type LeaseStats struct {
	Ops, Bytes uint64
}
