package bridge

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

// TestShardOfIsStable pins the hash: replicas of different versions must
// agree on where a job lives, so it may never change.
func TestShardOfIsStable(t *testing.T) {
	assert.Equal(t, 0, ShardOf(JobRef{Vendor: "tso", Instance: "prod", ID: "anything"}, 1))
	golden := map[string]int{"job-1": 45, "job-2": 52, "b0e3-42": 63, "job 1/with.dots*and>": 12} // FNV-1a 32 of "hmc.prod.<escaped id>" mod 64
	for id, want := range golden {
		assert.Equal(t, want, ShardOf(JobRef{Vendor: "hmc", Instance: "prod", ID: id}, 64), id)
	}
	// A task lives with its job.
	job := JobRef{Vendor: "huawei", Instance: "ap", ID: "JOB1"}
	task := job
	task.Task = "task.7"
	assert.Equal(t, ShardOf(job, 64), ShardOf(task, 64))
	assert.Equal(t, ShardOf(job, 64), shardOfKey(task.Key(), 64))
}

// TestPublishGateFollowsLeaseAndHead: the publish gate lets an event go
// only while its shard's lease is current (else errFenced, held) and only
// if it is still the head of its job's queue (else errStale, abandoned:
// the job's records were dropped when the shard moved away).
func TestPublishGateFollowsLeaseAndHead(t *testing.T) {
	const shards = 64
	c := &coordinator{base: time.Now(), deadline: make([]atomic.Int64, shards)}
	b := &Bridge{tracker: NewTracker(), nshards: shards, coord: c}
	ev := fenceTestEvent(t, b.tracker, "job 1/with.dots*and>")
	b.tracker.Enqueue(ev)
	sh := shardOfKey(ev.Key, shards)

	assert.ErrorIs(t, b.publishGate(ev), errFenced, "no lease on the shard")
	c.deadline[sh].Store(int64(c.now() + time.Minute))
	assert.NoError(t, b.publishGate(ev), "lease current, event at the head")
	c.deadline[sh].Store(int64(c.now() - time.Millisecond))
	assert.ErrorIs(t, b.publishGate(ev), errFenced, "lease not renewed in time")

	c.deadline[sh].Store(int64(c.now() + time.Minute))
	b.tracker.dropWhere(func(string) bool { return true })
	assert.ErrorIs(t, b.publishGate(ev), errStale, "records dropped: the held event is not the head any more")
	again := fenceTestEvent(t, b.tracker, "job 1/with.dots*and>")
	b.tracker.Enqueue(again)
	assert.ErrorIs(t, b.publishGate(ev), errStale, "the shard taken back: the old event stays stale")
	assert.NoError(t, b.publishGate(again))
}
