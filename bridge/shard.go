package bridge

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/nats-io/nats.go"
)

// Scale-out splits the watch space into shards: a job belongs to the shard
// ShardOf gives, its tasks with it. The hash is FNV-1a over the job's
// escaped key (vendor.instance.job), so every replica, every version and
// the `jobbridge status` command agree on it without talking to each other.

// DefaultShards is the shard count of a deployment that sets none.
const DefaultShards = 64

// ShardOf returns the shard (0..n-1) of a job; a task shares its job's.
func ShardOf(job JobRef, n int) int {
	job.Task = ""
	return shardOfKey(job.Key(), n)
}

// shardOfKey returns the shard of a bucket key (vendor.instance.job, or
// vendor.instance.job.task for a task record).
func shardOfKey(key string, n int) int {
	if n <= 1 {
		return 0
	}
	// Escaped tokens never contain '.', so the job part ends at the third.
	if i := nthIndex(key, '.', 3); i >= 0 {
		key = key[:i]
	}
	const offset, prime = 2166136261, 16777619
	h := uint32(offset)
	for i := 0; i < len(key); i++ {
		h ^= uint32(key[i])
		h *= prime
	}
	return int(h % uint32(n))
}

func nthIndex(s string, c byte, n int) int {
	off := 0
	for k := 0; k < n; k++ {
		i := strings.IndexByte(s[off:], c)
		if i < 0 {
			return -1
		}
		off += i
		if k == n-1 {
			return off
		}
		off++
	}
	return -1
}

// clusterMessage is a hint or reconcile request passed between replicas:
// the replica holding an HMC's push session hears of jobs any replica polls.
type clusterMessage struct {
	From     string `json:"from"`
	Vendor   string `json:"vendor"`
	Instance string `json:"instance"`
	Job      string `json:"job,omitempty"`
	// Via is the push channel a hint came from (stomp, sse), if any.
	Via Detection `json:"via,omitempty"`
}

// clusterSubject is where replicas of one deployment (one lease bucket)
// pass hints: jobbridge.cluster.<bucket>.hint and .reconcile.
func (b *Bridge) clusterSubject(op string) string {
	return "jobbridge.cluster." + b.opts.Cluster.LeaseBucket + "." + op
}

// forward passes a hint (job set) or a reconcile request to the replicas.
func (b *Bridge) forward(op string, job JobRef, via Detection) {
	msg, _ := json.Marshal(clusterMessage{From: b.opts.Cluster.ReplicaID, Vendor: job.Vendor, Instance: job.Instance, Job: job.ID, Via: via})
	if err := b.opts.Conn.Publish(b.clusterSubject(op), msg); err != nil {
		b.log.Warn().Err(err).Str("op", op).Msg("cannot pass a push hint to the other replicas; their safety polls still find the change")
	}
}

// subscribeCluster applies hints and reconcile requests of other replicas
// to the jobs this one polls.
func (b *Bridge) subscribeCluster() (func(), error) {
	handle := func(op string) nats.MsgHandler {
		return func(m *nats.Msg) {
			var cm clusterMessage
			if json.Unmarshal(m.Data, &cm) != nil || cm.From == b.opts.Cluster.ReplicaID {
				return
			}
			switch op {
			case "hint":
				job := JobRef{Vendor: cm.Vendor, Instance: cm.Instance, ID: cm.Job}
				// Every replica hears the hint; only the one polling the
				// job marks its poller, before the poll the hint causes.
				if cm.Via != "" && cm.Via != DetectedByPoll && b.sched.watched(job.Key()) {
					if m, ok := b.sched.poller(cm.Vendor, cm.Instance).(ViaMarker); ok {
						m.Mark(job, cm.Via)
					}
				}
				b.sched.hint(job)
			case "reconcile":
				b.sched.hintInstance(cm.Vendor, cm.Instance)
			}
		}
	}
	var subs []*nats.Subscription
	for _, op := range []string{"hint", "reconcile"} {
		sub, err := b.opts.Conn.Subscribe(b.clusterSubject(op), handle(op))
		if err != nil {
			for _, s := range subs {
				_ = s.Unsubscribe()
			}
			return nil, fmt.Errorf("subscribe to %s (grant it in the NATS permissions, see deploy/nats/accounts.conf): %w", b.clusterSubject(op), err)
		}
		subs = append(subs, sub)
	}
	return func() {
		for _, s := range subs {
			_ = s.Unsubscribe()
		}
	}, nil
}

// errFenced refuses a publish for a shard this replica does not own now.
var errFenced = errors.New("this replica's lease on the job's shard is not current (NATS unreachable, or another replica took the shard); the event is held until the lease is renewed")

// errStale refuses an event of a job this replica let go of (its shard
// moved): it is no longer the head of the job's queue in the tracker.
var errStale = errors.New("event of a job whose shard moved to another replica; not sent")

// publishGate gates the publisher's sends by shard ownership. A replica
// cut off from NATS holds events it detected; when NATS returns, its
// publisher would resend them, but a peer may own those jobs by then and
// have published their next transitions: an old event landing after them
// would break the per-job order. Refused sends stay with the publisher
// (retried with backoff, so they go out if the lease turns out to be still
// ours). An event of a job whose records were dropped (the shard was lost)
// is never sent again, even if this replica takes the shard back later:
// only the head of the job's queue in the tracker may go out.
func (b *Bridge) publishGate(ev *Event) error {
	key := ev.key()
	if !b.owns(shardOfKey(key, b.nshards)) {
		return errFenced
	}
	if !b.tracker.isHead(key, ev) {
		return errStale
	}
	return nil
}
