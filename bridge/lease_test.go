package bridge_test

import (
	"context"
	"encoding/json"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jobbridge/jobbridge/bridge"
	"github.com/jobbridge/jobbridge/bridge/bridgetest"
	"github.com/jobbridge/jobbridge/bridge/natsconn/natstest"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// replica is one scale-out bridge of a test, on its own NATS connection.
type replica struct {
	*bridgetest.Harness
	id string
	nc *nats.Conn
}

type replicaOptions struct {
	shards int
	ttl    time.Duration
	bucket string
	mutate func(*bridge.Options)
}

func startReplica(t testing.TB, url, id string, instances []bridge.Instance, o replicaOptions) *replica {
	t.Helper()
	nc, err := nats.Connect(url, nats.ReconnectWait(100*time.Millisecond), nats.MaxReconnects(-1), nats.Timeout(2*time.Second),
		nats.ReconnectBufSize(-1)) // as natsconn connects a scale-out replica
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	h := bridgetest.StartBridge(t, nc, instances, func(opts *bridge.Options) {
		opts.Cluster = bridge.ClusterOptions{Enabled: true, ReplicaID: id, Shards: o.shards, LeaseTTL: o.ttl, LeaseBucket: o.bucket}
		opts.ShutdownTimeout = 2 * time.Second
		opts.Logger = zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.ErrorLevel).With().Str("replica", id).Logger()
		if o.mutate != nil {
			o.mutate(opts)
		}
	})
	return &replica{Harness: h, id: id, nc: nc}
}

// die simulates a crash: the connection goes at once (no more renewals,
// no more publishes, no hand-over), then the bridge's goroutines end.
func (r *replica) die() {
	r.nc.Close()
	r.Stop()
}

// leaseOwners reads shard -> owner from the lease bucket.
func leaseOwners(t testing.TB, js jetstream.JetStream, bucket string) map[string]string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	kv, err := js.KeyValue(ctx, bucket)
	require.NoError(t, err)
	out := map[string]string{}
	keys, err := kv.ListKeys(ctx)
	require.NoError(t, err)
	for k := range keys.Keys() {
		if !strings.HasPrefix(k, "shard.") {
			continue
		}
		e, err := kv.Get(ctx, k)
		if err != nil {
			continue
		}
		var l bridge.LeaseRecord
		if json.Unmarshal(e.Value(), &l) == nil {
			out[k] = l.Owner
		}
	}
	return out
}

// covered reports whether the replicas' owned shards partition 0..n-1.
func covered(n int, rs ...*replica) bool {
	seen := make([]int, n)
	for _, r := range rs {
		for _, s := range r.Bridge.OwnedShards() {
			seen[s]++
		}
	}
	for _, c := range seen {
		if c != 1 {
			return false
		}
	}
	return true
}

func TestReplicasBalanceShardsAndHandThemBackOnStop(t *testing.T) {
	s := natstest.RunServer(t, natstest.Options{})
	o := replicaOptions{shards: 16, ttl: 2 * time.Second, bucket: "LEASES_BAL"}
	a := startReplica(t, s.ClientURL(), "a", nil, o)
	bridgetest.WaitFor(t, 30*time.Second, "a owns every shard", func() bool { return covered(16, a) })
	b := startReplica(t, s.ClientURL(), "b", nil, o)
	c := startReplica(t, s.ClientURL(), "c", nil, o)
	bridgetest.WaitFor(t, 60*time.Second, "three replicas share 16 shards evenly", func() bool {
		if !covered(16, a, b, c) {
			return false
		}
		for _, r := range []*replica{a, b, c} {
			if n := len(r.Bridge.OwnedShards()); n < 4 || n > 6 {
				return false
			}
		}
		return true
	})
	js, _ := jetstream.New(a.nc)
	owners := leaseOwners(t, js, o.bucket)
	require.Len(t, owners, 16)
	for _, s := range c.Bridge.OwnedShards() {
		assert.Equal(t, "c", owners["shard."+itoa(s)])
	}

	// A graceful stop deletes c's leases and its heartbeat before it returns.
	c.Stop()
	owners = leaseOwners(t, js, o.bucket)
	for k, owner := range owners {
		assert.NotEqual(t, "c", owner, "%s still leased by the stopped replica", k)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	kv, _ := js.KeyValue(ctx, o.bucket)
	_, err := kv.Get(ctx, "replica.c")
	assert.ErrorIs(t, err, jetstream.ErrKeyNotFound)
	bridgetest.WaitFor(t, 60*time.Second, "a and b take c's shards", func() bool { return covered(16, a, b) })
}

func TestReplicaWithAnotherShardCountRefusesToStart(t *testing.T) {
	s := natstest.RunServer(t, natstest.Options{})
	nc := natstest.Connect(t, s)
	startReplica(t, s.ClientURL(), "a", nil, replicaOptions{shards: 16, ttl: 2 * time.Second, bucket: "LEASES_N"})
	_, err := bridge.New(context.Background(), bridge.Options{
		Conn: nc, Stream: bridge.StreamOptions{Manage: true},
		Cluster: bridge.ClusterOptions{Enabled: true, ReplicaID: "b", Shards: 8, LeaseBucket: "LEASES_N"},
	})
	require.Error(t, err)
	assert.ErrorIs(t, err, bridge.ErrShardMismatch)
	assert.Contains(t, err.Error(), "cluster.shards: 16")
}

// TestDeadReplicaShardsAreTakenOver kills a replica without hand-over: its
// leases stay in the bucket until they expire, then the survivor takes
// them and polls the dead replica's jobs, continuing their sequences.
func TestDeadReplicaShardsAreTakenOver(t *testing.T) {
	s := natstest.RunServer(t, natstest.Options{})
	p := bridgetest.NewPoller()
	inst := []bridge.Instance{{Vendor: "fake", Name: "test", Poller: p, Concurrency: 4}}
	o := replicaOptions{shards: 8, ttl: 2 * time.Second, bucket: "LEASES_DEAD"}
	a := startReplica(t, s.ClientURL(), "a", inst, o)
	b := startReplica(t, s.ClientURL(), "b", inst, o)
	bridgetest.WaitFor(t, 60*time.Second, "two replicas share the shards", func() bool {
		return covered(8, a, b) && len(a.Bridge.OwnedShards()) == 4
	})
	ids := make([]string, 40)
	for i := range ids {
		ids[i] = "job-" + itoa(i)
		p.Set(ids[i], bridge.StatePending, "READY")
		a.Watch("fake", "test", ids[i])
	}
	waitAllEvents(t, a.JS, ids, 1)
	var onB []string
	for _, id := range ids {
		if slices.Contains(b.Bridge.OwnedShards(), bridge.ShardOf(bridge.JobRef{Vendor: "fake", Instance: "test", ID: id}, 8)) {
			onB = append(onB, id)
		}
	}
	require.NotEmpty(t, onB)
	for _, id := range ids {
		p.Set(id, bridge.StateRunning, "ASSIGNED")
	}
	waitAllEvents(t, a.JS, ids, 2)
	// Settle: b's records reach the state bucket.
	time.Sleep(300 * time.Millisecond)

	killed := time.Now()
	b.die()
	js, _ := jetstream.New(a.nc)
	stale := 0
	for _, owner := range leaseOwners(t, js, o.bucket) {
		if owner == "b" {
			stale++
		}
	}
	assert.Equal(t, 4, stale, "a dead replica's leases stay until they expire")
	for _, id := range onB {
		p.Set(id, bridge.StateSucceeded, "COMPLETED")
	}
	bridgetest.WaitFor(t, 60*time.Second, "a takes every shard", func() bool { return covered(8, a) })
	t.Logf("takeover after %s (lease TTL %s)", time.Since(killed).Round(time.Millisecond), o.ttl)
	waitAllEvents(t, a.JS, onB, 3)
	for _, id := range onB {
		got := a.EventsFor(id) // schema-validated
		assert.Equal(t, []string{"transition:pending", "transition:running", "transition:succeeded"}, bridgetest.Summary(got), id)
		for i, r := range got {
			assert.Equal(t, uint64(i+1), r.Data.Sequence, "%s: sequence continues after the takeover", id)
		}
	}
}

// TestTakeoverComesWhenTheLeaseRunsOut checks that a dead replica's shards
// are taken at the moment their leases expire, not at the survivor's next
// regular round (up to a quarter TTL later). The lag is measured on the
// server's timestamps of the lease writes: the dead replica's last renewal
// and the survivor's first take.
func TestTakeoverComesWhenTheLeaseRunsOut(t *testing.T) {
	s := natstest.RunServer(t, natstest.Options{})
	inst := []bridge.Instance{{Vendor: "fake", Name: "test", Poller: bridgetest.NewPoller(), Concurrency: 4}}
	const ttl = 2 * time.Second
	reg := prometheus.NewRegistry()
	o := replicaOptions{shards: 8, ttl: ttl, bucket: "LEASES_PROMPT"}
	a := startReplica(t, s.ClientURL(), "a", inst, replicaOptions{shards: o.shards, ttl: o.ttl, bucket: o.bucket,
		mutate: func(opts *bridge.Options) { opts.Registerer = reg }})
	b := startReplica(t, s.ClientURL(), "b", inst, o)
	bridgetest.WaitFor(t, 60*time.Second, "two replicas share the shards", func() bool {
		return covered(8, a, b) && len(a.Bridge.OwnedShards()) == 4
	})

	// Record every lease write as the server stamps it.
	js, err := jetstream.New(a.nc)
	require.NoError(t, err)
	kv, err := js.KeyValue(context.Background(), o.bucket)
	require.NoError(t, err)
	w, err := kv.WatchAll(context.Background(), jetstream.UpdatesOnly())
	require.NoError(t, err)
	defer w.Stop()
	type write struct {
		key, owner string
		at         time.Time
	}
	writes := make(chan write, 1024)
	go func() {
		for e := range w.Updates() {
			if e == nil || e.Operation() != jetstream.KeyValuePut || !strings.HasPrefix(e.Key(), "shard.") {
				continue
			}
			var l bridge.LeaseRecord
			if json.Unmarshal(e.Value(), &l) == nil {
				writes <- write{e.Key(), l.Owner, e.Created()}
			}
		}
	}()
	// Let b renew at least once while watched, then kill it.
	time.Sleep(ttl / 2)
	b.die()
	bridgetest.WaitFor(t, 30*time.Second, "a takes every shard", func() bool { return covered(8, a) })
	// Keep a's first takes from being reordered behind the watcher.
	time.Sleep(100 * time.Millisecond)

	var lastB, firstTake time.Time
	bKeys := map[string]bool{}
	for drained := false; !drained; {
		select {
		case wr := <-writes:
			switch {
			case wr.owner == "b":
				bKeys[wr.key] = true
				if wr.at.After(lastB) {
					lastB = wr.at
				}
			case wr.owner == "a" && bKeys[wr.key] && firstTake.IsZero():
				firstTake = wr.at
			}
		default:
			drained = true
		}
	}
	require.False(t, lastB.IsZero(), "b renewed no lease while watched")
	require.False(t, firstTake.IsZero(), "no take of b's shards by a was seen")
	lag := firstTake.Sub(lastB) - ttl
	t.Logf("b's last renewal %s, a's first take %s later: TTL + %s", lastB.Format("15:04:05.000"),
		firstTake.Sub(lastB).Round(time.Millisecond), lag.Round(time.Millisecond))
	assert.GreaterOrEqual(t, lag, time.Duration(0), "a took a lease before it had been unchanged for the TTL")
	// A regular round comes every TTL/4 (500ms); judged at the expiry
	// instant, the take follows the TTL by a few lease writes.
	assert.Less(t, lag, ttl/8, "the take waited for a regular round instead of the lease's expiry")
	assert.GreaterOrEqual(t, gatherCounter(t, reg, "jobbridge_cluster_expiry_rounds_total", nil), 1.0)
}

// TestPartitionedReplicaFencesItselfBeforeTakeover cuts a replica off
// NATS without closing its connection (a network partition): it must stop
// polling its shards before the survivor takes them over.
func TestPartitionedReplicaFencesItselfBeforeTakeover(t *testing.T) {
	pp := startProxiedPair(t, "LEASES_FENCE", "fence-")
	a, b, p, proxy, ids, bShards := pp.a, pp.b, pp.p, pp.proxy, pp.ids, pp.bShards
	proxy.Freeze()
	var fencedAt, takenAt time.Time
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) && (fencedAt.IsZero() || takenAt.IsZero()) {
		now := time.Now()
		if fencedAt.IsZero() && len(b.Bridge.OwnedShards()) == 0 {
			fencedAt = now
			// b, fenced, still polls and detects this; it must never
			// publish it: a will publish another state as sequence 2.
			for _, id := range ids {
				p.Set(id, bridge.StateRunning, "ASSIGNED")
			}
		}
		if takenAt.IsZero() {
			for _, sh := range a.Bridge.OwnedShards() {
				if slices.Contains(bShards, sh) {
					takenAt = now
					// b must be fenced already.
					for _, x := range b.Bridge.OwnedShards() {
						assert.NotEqual(t, sh, x, "shard %d owned by both replicas", sh)
					}
				}
			}
			if !takenAt.IsZero() {
				for _, id := range ids {
					p.Set(id, bridge.StateRunning, "PAUSED")
				}
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	require.False(t, fencedAt.IsZero(), "partitioned replica never fenced itself")
	require.False(t, takenAt.IsZero(), "survivor never took the partitioned replica's shards")
	assert.True(t, fencedAt.Before(takenAt), "fenced at %s, taken over at %s", fencedAt.Format("15:04:05.000"), takenAt.Format("15:04:05.000"))
	t.Logf("fenced %s before takeover", takenAt.Sub(fencedAt).Round(time.Millisecond))
	// a polls b's jobs now; back on NATS, b must publish nothing it held.
	pp.finishAfterTakeover(t, proxy.Thaw, "what the fenced replica saw")
}

// TestCutOffReplicaPublishesNothingStaleAfterReconnecting cuts a replica's
// link to NATS (connections closed and refused, not frozen) while its jobs
// change state twice: it detects both changes before it fences itself, a
// peer takes its shards over and sees only the second. When the link comes
// back, nothing the cut-off replica detected may reach the stream: its
// events would carry the sequence numbers the peer has used, with other
// ids, which no duplicate window can catch. nats.go would flush them from
// its reconnect buffer, so scale-out connects without one.
func TestCutOffReplicaPublishesNothingStaleAfterReconnecting(t *testing.T) {
	const ttl = 2 * time.Second
	pp := startProxiedPair(t, "LEASES_CUT", "cut-")
	a, p, proxy, ids := pp.a, pp.p, pp.proxy, pp.ids
	// Let b's records of READY reach the state bucket, so a starts from them.
	time.Sleep(300 * time.Millisecond)

	proxy.SetRefusing(true)
	proxy.Cut()
	polled := func() map[string]int {
		m := map[string]int{}
		for _, id := range ids {
			m[id] = p.Polls(id)
		}
		return m
	}
	seenBy := func(before map[string]int) func() bool {
		return func() bool {
			for _, id := range ids {
				if p.Polls(id) < before[id]+2 {
					return false
				}
			}
			return true
		}
	}
	// Two changes b detects while it still holds its leases (it fences
	// 3/4 TTL after its last renewal, 1.5s here; polls come every 20ms).
	before := polled()
	for _, id := range ids {
		p.Set(id, bridge.StateRunning, "ASSIGNED")
	}
	bridgetest.WaitFor(t, ttl/2, "b polls every job after the first change", seenBy(before))
	before = polled()
	for _, id := range ids {
		p.Set(id, bridge.StateRunning, "PAUSED")
	}
	bridgetest.WaitFor(t, ttl/2, "b polls every job after the second change", seenBy(before))
	bridgetest.WaitFor(t, 30*time.Second, "a takes b's shards", func() bool { return covered(8, a) })
	pp.finishAfterTakeover(t, func() { proxy.SetRefusing(false) }, "what the cut-off replica detected")
}

// proxiedPair is two scale-out replicas on one server: a connected
// directly, b through a proxy the test can freeze or cut, sharing 8 shards
// with a 2s lease TTL, and 12 jobs on b's shards, each with its first
// event (READY) on the stream.
type proxiedPair struct {
	a, b    *replica
	p       *bridgetest.Poller
	proxy   *bridgetest.TCPProxy
	ids     []string
	bShards []int
}

func startProxiedPair(t *testing.T, bucket, idPrefix string) proxiedPair {
	t.Helper()
	s := natstest.RunServer(t, natstest.Options{})
	pp := proxiedPair{p: bridgetest.NewPoller(), proxy: bridgetest.NewTCPProxy(t, s.Addr().String())}
	o := replicaOptions{shards: 8, ttl: 2 * time.Second, bucket: bucket}
	inst := []bridge.Instance{{Vendor: "fake", Name: "test", Poller: pp.p, Concurrency: 4}}
	pp.a = startReplica(t, s.ClientURL(), "a", inst, o)
	pp.b = startReplica(t, "nats://"+pp.proxy.Addr(), "b", inst, o)
	bridgetest.WaitFor(t, 60*time.Second, "two replicas share the shards", func() bool {
		return covered(8, pp.a, pp.b) && len(pp.b.Bridge.OwnedShards()) == 4
	})
	pp.bShards = pp.b.Bridge.OwnedShards()
	for i := 0; len(pp.ids) < 12; i++ {
		id := idPrefix + itoa(i)
		if slices.Contains(pp.bShards, bridge.ShardOf(bridge.JobRef{Vendor: "fake", Instance: "test", ID: id}, 8)) {
			pp.ids = append(pp.ids, id)
			pp.p.Set(id, bridge.StatePending, "READY")
			pp.a.Watch("fake", "test", id)
		}
	}
	waitAllEvents(t, pp.a.JS, pp.ids, 1)
	return pp
}

// finishAfterTakeover waits for a to publish the state it found after the
// takeover (PAUSED), completes every job, reconnects b and checks that
// each job's stream is exactly READY, PAUSED, COMPLETED as 1, 2, 3: what
// b saw while it was cut off (what) must not reach the stream.
func (pp proxiedPair) finishAfterTakeover(t *testing.T, reconnect func(), what string) {
	t.Helper()
	waitAllEvents(t, pp.a.JS, pp.ids, 2)
	for _, id := range pp.ids {
		pp.p.Set(id, bridge.StateSucceeded, "COMPLETED")
	}
	waitAllEvents(t, pp.a.JS, pp.ids, 3)
	reconnect()
	// Back on NATS, b learns its leases are gone and takes a fair share again.
	bridgetest.WaitFor(t, 60*time.Second, "the replicas share the shards again", func() bool {
		return covered(8, pp.a, pp.b) && len(pp.b.Bridge.OwnedShards()) == 4
	})
	time.Sleep(time.Second) // anything b held or buffered would be out by now
	for _, id := range pp.ids {
		var natives []string
		for i, r := range pp.a.EventsFor(id) {
			natives = append(natives, r.Data.Native.Status)
			assert.Equal(t, uint64(i+1), r.Data.Sequence, id)
		}
		assert.Equal(t, []string{"READY", "PAUSED", "COMPLETED"}, natives, "%s: %s must not reach the stream", id, what)
	}
}

// waitAllEvents waits until every job has at least n events on the stream.
func waitAllEvents(t testing.TB, js jetstream.JetStream, ids []string, n int) {
	t.Helper()
	bridgetest.WaitFor(t, 60*time.Second, "events of every job", func() bool {
		count := map[string]int{}
		for _, r := range bridgetest.ReadStream(t, js, "JOBS") {
			count[r.Data.Job]++
		}
		for _, id := range ids {
			if count[id] < n {
				return false
			}
		}
		return true
	})
}

func itoa(i int) string { return strconv.Itoa(i) }

// TestSingletonRunsOnOneReplicaAtATime is the HMC push session rule: one
// replica at a time runs it, also when the one running it is cut off from
// NATS (it stops before a peer may start it); the new owner reconciles,
// and the reconcile reaches the jobs every replica polls.
func TestSingletonRunsOnOneReplicaAtATime(t *testing.T) {
	s := natstest.RunServer(t, natstest.Options{})
	p := bridgetest.NewPoller()
	inst := []bridge.Instance{{Vendor: "fake", Name: "hmc1", Poller: p, Concurrency: 4}}
	var mu sync.Mutex
	running := map[string]bool{}
	overlap := false
	starts := 0
	proxies := map[string]*bridgetest.TCPProxy{}
	reps := map[string]*replica{}
	for _, id := range []string{"a", "b"} {
		proxies[id] = bridgetest.NewTCPProxy(t, s.Addr().String())
		var self *replica
		assigned := make(chan struct{})
		single := bridge.Singleton{Kind: "notify", Vendor: "fake", Instance: "hmc1", Run: func(ctx context.Context) {
			mu.Lock()
			running[id] = true
			starts++
			for other, on := range running {
				if other != id && on {
					overlap = true
				}
			}
			mu.Unlock()
			select {
			case <-assigned:
				self.Bridge.Reconcile("fake", "hmc1") // as the notifier does on connect
			case <-ctx.Done():
			}
			<-ctx.Done()
			mu.Lock()
			running[id] = false
			mu.Unlock()
		}}
		self = startReplica(t, "nats://"+proxies[id].Addr(), id, inst, replicaOptions{shards: 8, ttl: 2 * time.Second, bucket: "LEASES_SINGLE",
			mutate: func(o *bridge.Options) {
				o.Singletons = []bridge.Singleton{single}
				// Hourly polls: only hints and reconciles poll again.
				o.Schedule = bridge.ScheduleOptions{Interval: time.Hour, FastInterval: time.Hour, IdleInterval: time.Hour, Workers: 4, RetainAfterTerminal: time.Hour}
			}})
		close(assigned)
		reps[id] = self
	}
	owner := func() string {
		mu.Lock()
		defer mu.Unlock()
		n, who := 0, ""
		for id, on := range running {
			if on {
				n++
				who = id
			}
		}
		if n != 1 {
			return ""
		}
		return who
	}
	bridgetest.WaitFor(t, 30*time.Second, "one replica runs the singleton and the shards are shared", func() bool {
		return owner() != "" && covered(8, reps["a"], reps["b"]) && len(reps["a"].Bridge.OwnedShards()) == 4
	})
	ids := make([]string, 16)
	for i := range ids {
		ids[i] = "hmc-job-" + itoa(i)
		p.Set(ids[i], bridge.StateRunning, "running")
		reps["a"].Watch("fake", "hmc1", ids[i])
	}
	waitAllEvents(t, reps["a"].JS, ids, 1)
	first := owner()
	other := map[string]string{"a": "b", "b": "a"}[first]
	before := map[string]int{}
	for _, id := range ids {
		before[id] = p.Polls(id)
	}

	proxies[first].Freeze()
	bridgetest.WaitFor(t, 60*time.Second, "the other replica runs the singleton", func() bool { return owner() == other })
	// The new owner reconciled: every job was polled again, on whichever
	// replica polls it (the frozen one's shards moved to the new owner too).
	bridgetest.WaitFor(t, 30*time.Second, "every job polled again", func() bool {
		for _, id := range ids {
			if p.Polls(id) <= before[id] {
				return false
			}
		}
		return true
	})
	proxies[first].Thaw()
	time.Sleep(time.Second)
	mu.Lock()
	defer mu.Unlock()
	assert.False(t, overlap, "two replicas ran the singleton at once")
	assert.GreaterOrEqual(t, starts, 2)
}
