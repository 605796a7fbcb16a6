package bridge

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// ClusterStatus is what `jobbridge status` shows: the replicas, the leases
// they hold and how many watched jobs each shard has, read from the lease
// and watch buckets. Ages compare the NATS server's timestamp of the last
// write with this machine's clock: they are for people, and the bridge
// itself never judges a lease that way.
type ClusterStatus struct {
	LeaseBucket  string          `json:"leaseBucket"`
	Shards       int             `json:"shards"`
	Watches      int             `json:"watches"`
	JobsPerShard []int           `json:"jobsPerShard"`
	Replicas     []ReplicaStatus `json:"replicas"`
	Leases       []LeaseStatus   `json:"leases"`
	Unowned      []int           `json:"unowned"`
}

// ReplicaStatus is one replica's heartbeat.
type ReplicaStatus struct {
	ReplicaRecord
	// HeartbeatAge is the time since its last heartbeat reached NATS.
	HeartbeatAge Duration `json:"heartbeatAge"`
	// Stale: no heartbeat for longer than its lease TTL (dead or cut off).
	Stale bool `json:"stale"`
	// LeasedShards and ShardJobs are what the lease bucket says it holds.
	LeasedShards []int `json:"leasedShards"`
	ShardJobs    int   `json:"shardJobs"`
}

// LeaseStatus is one shard or singleton lease.
type LeaseStatus struct {
	Key   string `json:"key"`
	Shard int    `json:"shard"` // -1 for a singleton
	Owner string `json:"owner"`
	// Age is the time since the last renewal, HeldFor since it was taken.
	Age     Duration `json:"age"`
	HeldFor Duration `json:"heldFor"`
	Jobs    int      `json:"jobs,omitempty"`
}

// ReadClusterStatus reads the status of a scaled-out deployment.
func ReadClusterStatus(ctx context.Context, js jetstream.JetStream, leaseBucket, watchBucket string) (ClusterStatus, error) {
	st := ClusterStatus{LeaseBucket: leaseBucket, Replicas: []ReplicaStatus{}, Leases: []LeaseStatus{}, Unowned: []int{}}
	kv, err := js.KeyValue(ctx, leaseBucket)
	if err != nil {
		return st, fmt.Errorf("lease bucket %s: %w (is cluster.enabled on, and are --lease-bucket / the config's cluster.leaseBucket right?)", leaseBucket, err)
	}
	cfg, err := kv.Get(ctx, leaseConfigKey)
	if err != nil {
		return st, fmt.Errorf("lease bucket %s has no %q key: no replica has started with cluster.enabled: %w", leaseBucket, leaseConfigKey, err)
	}
	var cc ClusterConfig
	if err := json.Unmarshal(cfg.Value(), &cc); err != nil || cc.Shards <= 0 {
		return st, fmt.Errorf("lease bucket %s: key %q is not jobbridge's", leaseBucket, leaseConfigKey)
	}
	st.Shards = cc.Shards
	st.JobsPerShard = make([]int, cc.Shards)
	wkv, err := js.KeyValue(ctx, watchBucket)
	if err != nil {
		return st, fmt.Errorf("watch bucket %s: %w", watchBucket, err)
	}
	watches, err := wkv.ListKeys(ctx)
	switch {
	case err == nil:
		for k := range watches.Keys() {
			if strings.HasPrefix(k, "_") {
				continue
			}
			st.JobsPerShard[shardOfKey(k, cc.Shards)]++
			st.Watches++
		}
	case !errors.Is(err, jetstream.ErrNoKeysFound):
		return st, fmt.Errorf("list watches in %s: %w", watchBucket, err)
	}
	lister, err := kv.ListKeys(ctx)
	if err != nil && !errors.Is(err, jetstream.ErrNoKeysFound) {
		return st, fmt.Errorf("list leases in %s: %w", leaseBucket, err)
	}
	now := time.Now()
	owned := make([]bool, cc.Shards)
	byReplica := map[string]*ReplicaStatus{}
	var keys []string
	if lister != nil {
		for k := range lister.Keys() {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		e, err := kv.Get(ctx, k)
		if err != nil {
			continue // deleted meanwhile
		}
		age := Duration(max(0, now.Sub(e.Created())).Round(time.Millisecond))
		switch {
		case strings.HasPrefix(k, replicaKeyPrefix):
			var r ReplicaRecord
			if json.Unmarshal(e.Value(), &r) != nil {
				continue
			}
			st.Replicas = append(st.Replicas, ReplicaStatus{ReplicaRecord: r, HeartbeatAge: age, Stale: r.LeaseTTL > 0 && age > r.LeaseTTL})
		case strings.HasPrefix(k, shardKeyPrefix) || strings.HasPrefix(k, singletonKeyPrefix):
			var l LeaseRecord
			if json.Unmarshal(e.Value(), &l) != nil {
				continue
			}
			ls := LeaseStatus{Key: k, Shard: -1, Owner: l.Owner, Age: age, HeldFor: Duration(max(0, now.Sub(l.AcquiredAt)).Round(time.Second))}
			if strings.HasPrefix(k, shardKeyPrefix) {
				if s := parseShardKey(k); s >= 0 && s < cc.Shards {
					ls.Shard, ls.Jobs = s, st.JobsPerShard[s]
					owned[s] = true
				}
			}
			st.Leases = append(st.Leases, ls)
		}
	}
	sort.SliceStable(st.Leases, func(i, j int) bool {
		a, b := st.Leases[i], st.Leases[j]
		if (a.Shard < 0) != (b.Shard < 0) {
			return a.Shard >= 0
		}
		if a.Shard != b.Shard {
			return a.Shard < b.Shard
		}
		return a.Key < b.Key
	})
	for i := range st.Replicas {
		byReplica[st.Replicas[i].ID] = &st.Replicas[i]
		st.Replicas[i].LeasedShards = []int{}
	}
	for _, l := range st.Leases {
		if r := byReplica[l.Owner]; r != nil && l.Shard >= 0 {
			r.LeasedShards = append(r.LeasedShards, l.Shard)
			r.ShardJobs += l.Jobs
		}
	}
	for s, ok := range owned {
		if !ok {
			st.Unowned = append(st.Unowned, s)
		}
	}
	return st, nil
}
