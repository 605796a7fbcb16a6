package bridge_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
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
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// jobScript walks a fake job through its states, recording the ground
// truth of every change the way a vendor simulator does.
type jobDriver struct {
	p     *bridgetest.Poller
	mu    sync.Mutex
	truth []bridgetest.Truth
}

var scriptStates = []struct {
	state  bridge.State
	native string
}{
	{bridge.StatePending, "READY"}, {bridge.StateRunning, "ASSIGNED"}, {bridge.StateRunning, "PAUSED"}, {bridge.StateRunning, "IN_PROGRESS"},
}

var scriptEnds = []struct {
	state  bridge.State
	native string
}{
	{bridge.StateSucceeded, "COMPLETED"}, {bridge.StateFailed, "FAILED"}, {bridge.StateCanceled, "CANCELLED"}, {bridge.StateFailed, "COMPENSATED"},
}

func (d *jobDriver) set(id string, state bridge.State, native string) {
	d.mu.Lock()
	d.p.Set(id, state, native)
	d.truth = append(d.truth, bridgetest.Truth{Job: id, Native: native, At: time.Now()})
	d.mu.Unlock()
}

// run moves every job to its next state after a random stay in [minStay,
// maxStay), until all are terminal or ctx ends.
func (d *jobDriver) run(ctx context.Context, ids []string, minStay, maxStay time.Duration) {
	type job struct {
		step int
		next time.Time
	}
	jobs := make([]job, len(ids))
	stay := func() time.Duration { return minStay + time.Duration(rand.Int64N(int64(maxStay-minStay))) }
	start := time.Now()
	for i := range jobs {
		jobs[i].next = start.Add(stay())
	}
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for left := len(ids); left > 0; {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := time.Now()
		for i := range jobs {
			j := &jobs[i]
			if j.step >= len(scriptStates) || now.Before(j.next) {
				continue
			}
			j.step++
			if j.step == len(scriptStates) {
				e := scriptEnds[i%len(scriptEnds)]
				d.set(ids[i], e.state, e.native)
				left--
				continue
			}
			s := scriptStates[j.step]
			d.set(ids[i], s.state, s.native)
			j.next = now.Add(stay())
		}
	}
}

func (d *jobDriver) history() []bridgetest.Truth {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.truth)
}

// TestScaleOutSurvivesReplicaDeathAndNodeLoss runs three replicas on a
// three-node JetStream cluster while thousands of jobs change state. It
// kills one replica (no hand-over: its connection drops) and later shuts
// down one NATS node, then checks the stream against the ground truth:
// nothing lost while some replica owned the job, no transition twice, each
// job's sequence 1, 2, 3... in stream order. 5,000 jobs; 600 under -race.
func TestScaleOutSurvivesReplicaDeathAndNodeLoss(t *testing.T) {
	nJobs := 5000
	if raceEnabled {
		nJobs = 600
	}
	if testing.Short() {
		nJobs = 300
	}
	const (
		shards   = 64
		ttl      = 3 * time.Second
		interval = time.Second
		minStay  = 5 * time.Second
		maxStay  = 7 * time.Second
	)
	cluster := natstest.StartCluster(t, 3)
	p := bridgetest.NewPoller()
	inst := []bridge.Instance{{Vendor: "fake", Name: "scale", Poller: p, Concurrency: 64}}
	regs := make([]*prometheus.Registry, 3)
	reps := make([]*replica, 3)
	for i := range reps {
		regs[i] = prometheus.NewRegistry()
		reg := regs[i]
		// Each replica prefers its own node and fails over to the others.
		urls := cluster.URL(i)
		for k := range reps {
			if k != i {
				urls += "," + cluster.URL(k)
			}
		}
		reps[i] = startReplica(t, urls, fmt.Sprintf("r%d", i), inst, replicaOptions{shards: shards, ttl: ttl, bucket: "JOBBRIDGE_LEASES",
			mutate: func(o *bridge.Options) {
				o.Stream.Replicas = 3
				o.Registerer = reg
				o.FlushInterval = 200 * time.Millisecond
				o.Publish.AckTimeout = 2 * time.Second
				o.Schedule = bridge.ScheduleOptions{Interval: interval, FastInterval: interval, IdleInterval: interval,
					RetainAfterTerminal: time.Hour, Workers: 32, Jitter: 0.2}
			}})
	}
	bridgetest.WaitFor(t, 90*time.Second, "three replicas share the shards", func() bool {
		if !covered(shards, reps...) {
			return false
		}
		for _, r := range reps {
			if len(r.Bridge.OwnedShards()) < shards/3-2 {
				return false
			}
		}
		return true
	})

	d := &jobDriver{p: p}
	ids := make([]string, nJobs)
	for i := range ids {
		ids[i] = fmt.Sprintf("job-%05d", i)
		if i%97 == 0 {
			ids[i] = fmt.Sprintf("job %05d/with.dots*and>", i)
		}
	}
	start := time.Now()
	// Register through all three replicas' registries at once, as the
	// watch API would be called on any of them.
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < nJobs; i += 8 {
				d.set(ids[i], bridge.StatePending, "READY")
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				_, _, err := reps[i%3].Bridge.Registry().Add(ctx, bridge.Watch{Vendor: "fake", Instance: "scale", Job: ids[i]})
				cancel()
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	t.Logf("%d watches registered in %s", nJobs, time.Since(start).Round(time.Millisecond))

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	driverDone := make(chan struct{})
	go func() {
		defer close(driverDone)
		d.run(ctx, ids, minStay, maxStay)
	}()

	// Kill replica 2 mid-run.
	time.Sleep(minStay + time.Second)
	dead := reps[2]
	deadShards := dead.Bridge.OwnedShards()
	killedAt := time.Now()
	dead.die()
	survivors := reps[:2]
	bridgetest.WaitFor(t, 90*time.Second, "survivors take the dead replica's shards", func() bool { return covered(shards, survivors...) })
	takenAt := time.Now()
	takeover := takenAt.Sub(killedAt)
	t.Logf("replica r2 killed holding %d shards; survivors own all %d after %s (lease TTL %s)", len(deadShards), shards, takeover.Round(time.Millisecond), ttl)
	assert.Less(t, takeover, ttl+60*time.Second, "takeover far beyond the lease TTL")

	// Then lose a NATS node: the one replica 0 is connected to.
	time.Sleep(2 * time.Second)
	nodeDownAt := time.Now()
	cluster.Shutdown(0)
	t.Logf("NATS node-0 shut down at +%s", nodeDownAt.Sub(start).Round(time.Millisecond))

	// The node comes back a few seconds later, as after a restart.
	time.Sleep(5 * time.Second)
	cluster.Restart(0)
	cluster.WaitForLeader(60 * time.Second)
	t.Logf("NATS node-0 back after %s", time.Since(nodeDownAt).Round(time.Millisecond))

	select {
	case <-driverDone:
	case <-time.After(5 * time.Minute):
		t.Fatal("job driver did not finish")
	}
	// Every job is terminal at the vendor: wait for the terminal events.
	js, err := jetstream.New(reps[1].nc)
	require.NoError(t, err)
	var events []bridgetest.Received
	bridgetest.WaitFor(t, 120*time.Second, "every job's terminal event", func() bool {
		if !streamLed(js, "JOBS") {
			return false
		}
		var ok bool
		if events, ok = readStreamTolerant(js, "JOBS"); !ok {
			return false
		}
		last := map[string]bridge.State{}
		for _, e := range events {
			last[e.Data.Job] = e.Data.State
		}
		for _, id := range ids {
			if !last[id].Terminal() {
				return false
			}
		}
		return true
	})
	end := time.Now()
	for _, r := range survivors {
		r.Stop()
	}
	bridgetest.WaitFor(t, 60*time.Second, "the whole stream", func() bool {
		var ok bool
		events, ok = readStreamTolerant(js, "JOBS")
		return ok
	})

	// Jobs of the dead replica's shards had no poller between the kill and
	// the takeover; every other job was covered throughout.
	truth := d.history()
	deadJob := func(id string) bool {
		return slices.Contains(deadShards, bridge.ShardOf(bridge.JobRef{Vendor: "fake", Instance: "scale", ID: id}, shards))
	}
	var truthDead, truthLive []bridgetest.Truth
	for _, tr := range truth {
		if deadJob(tr.Job) {
			truthDead = append(truthDead, tr)
		} else {
			truthLive = append(truthLive, tr)
		}
	}
	var evDead, evLive []bridgetest.Received
	for _, e := range events {
		if deadJob(e.Data.Job) {
			evDead = append(evDead, e)
		} else {
			evLive = append(evLive, e)
		}
	}
	mustSee := 3 * interval
	repLive := bridgetest.CheckStream(truthLive, evLive, []bridgetest.Window{{From: start, To: end}}, mustSee)
	repDead := bridgetest.CheckStream(truthDead, evDead, []bridgetest.Window{{From: start, To: killedAt}, {From: takenAt, To: end}}, mustSee)
	t.Logf("jobs on surviving replicas' shards: %s", repLive)
	t.Logf("jobs on the dead replica's shards: %s", repDead)
	for _, rep := range []bridgetest.Report{repLive, repDead} {
		if len(rep.OrderViolations) > 0 {
			logJob(t, events, truth, strings.SplitN(rep.OrderViolations[0], ":", 2)[0])
		}
	}
	assert.True(t, repLive.OK(), "stream does not match the truth:\n%s", repLive)
	assert.True(t, repDead.OK(), "stream does not match the truth:\n%s", repDead)
	assert.Equal(t, nJobs, repLive.Jobs+repDead.Jobs)
	assert.GreaterOrEqual(t, repLive.Published+repDead.Published, nJobs*4, "too few transitions exercised")

	dups, takeovers, fenced := 0.0, 0.0, 0.0
	for _, reg := range regs {
		dups += gatherCounter(t, reg, "jobbridge_events_published_total", map[string]string{"duplicate": "true"})
		takeovers += gatherCounter(t, reg, "jobbridge_cluster_takeovers_total", nil)
		fenced += gatherCounter(t, reg, "jobbridge_cluster_fenced_total", nil)
	}
	t.Logf("%d events on the stream (%d jobs); %.0f resends dropped by JetStream's duplicate window; %.0f leases taken over, %.0f fencings",
		len(events), nJobs, dups, takeovers, fenced)
}

// logJob shows one job's history and events, to diagnose a failure.
func logJob(t *testing.T, events []bridgetest.Received, truth []bridgetest.Truth, job string) {
	for _, tr := range truth {
		if tr.Job == job {
			t.Logf("%s truth %s %s", job, tr.At.Format("15:04:05.000"), tr.Native)
		}
	}
	for _, e := range events {
		if e.Data.Job == job {
			t.Logf("%s event #%d seq=%d %s id=%v detectedAt=%s", job, e.StreamSeq, e.Data.Sequence, e.Data.Native.Status, e.Event["id"], e.Data.DetectedAt.Format("15:04:05.000"))
		}
	}
}

// streamLed reports whether the stream answers and has a cluster leader
// with every replica current (reads right after a node loss can otherwise
// meet no responder).
func streamLed(js jetstream.JetStream, name string) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, name)
	if err != nil {
		return false
	}
	info, err := st.Info(ctx)
	if err != nil || info.Cluster == nil || info.Cluster.Leader == "" {
		return false
	}
	for _, r := range info.Cluster.Replicas {
		if !r.Current {
			return false
		}
	}
	return true
}

// readStreamTolerant reads the whole stream like bridgetest.ReadStream, in
// batches, and reports false instead of failing when the cluster is still
// settling after a node loss (a consumer with no responder yet).
func readStreamTolerant(js jetstream.JetStream, name string) ([]bridgetest.Received, bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, name)
	if err != nil {
		return nil, false
	}
	info, err := st.Info(ctx)
	if err != nil {
		return nil, false
	}
	cons, err := st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		return nil, false
	}
	defer func() {
		if ci := cons.CachedInfo(); ci != nil {
			_ = st.DeleteConsumer(context.Background(), ci.Name)
		}
	}()
	var out []bridgetest.Received
	for uint64(len(out)) < info.State.Msgs {
		batch, err := cons.Fetch(int(min(info.State.Msgs-uint64(len(out)), 500)), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			return nil, false
		}
		got := 0
		for m := range batch.Messages() {
			got++
			md, _ := m.Metadata()
			r := bridgetest.Received{Subject: m.Subject(), StreamSeq: md.Sequence.Stream, Header: m.Headers(), Body: m.Data()}
			if err := json.Unmarshal(r.Body, &r.Event); err == nil {
				raw, _ := json.Marshal(r.Event["data"])
				_ = json.Unmarshal(raw, &r.Data)
			}
			out = append(out, r)
		}
		if batch.Error() != nil || got == 0 {
			return nil, false
		}
	}
	return out, true
}

// gatherCounter sums a counter's series whose labels include match.
func gatherCounter(t testing.TB, reg *prometheus.Registry, name string, match map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			for k, v := range match {
				if labels[k] != v {
					continue metrics
				}
			}
			sum += m.GetCounter().GetValue()
		}
	}
	return sum
}

// TestOverlappingOwnersProduceIdenticalEventIDs is what makes a brief
// overlap of two owners harmless: two bridges polling the same job from
// the same state detect the same transitions with the same ids, and
// JetStream's duplicate window keeps one copy of each.
func TestOverlappingOwnersProduceIdenticalEventIDs(t *testing.T) {
	s := natstest.RunServer(t, natstest.Options{})
	p := bridgetest.NewPoller()
	p.Set("shared", bridge.StatePending, "READY")
	inst := []bridge.Instance{{Vendor: "fake", Name: "test", Poller: p}}
	regs := []*prometheus.Registry{prometheus.NewRegistry(), prometheus.NewRegistry()}
	var hs []*bridgetest.Harness
	for i := range regs {
		nc, err := nats.Connect(s.ClientURL())
		require.NoError(t, err)
		t.Cleanup(nc.Close)
		reg := regs[i]
		hs = append(hs, bridgetest.StartBridge(t, nc, inst, func(o *bridge.Options) { o.Registerer = reg }))
	}
	acks := func() float64 {
		n := 0.0
		for _, reg := range regs {
			n += gatherCounter(t, reg, "jobbridge_events_published_total", nil)
		}
		return n
	}
	hs[0].Watch("fake", "test", "shared")
	bridgetest.WaitFor(t, 30*time.Second, "both bridges publish READY", func() bool { return acks() >= 2 })
	for k, st := range []struct {
		state  bridge.State
		native string
	}{{bridge.StateRunning, "ASSIGNED"}, {bridge.StateRunning, "IN_PROGRESS"}, {bridge.StateSucceeded, "COMPLETED"}} {
		p.Set("shared", st.state, st.native)
		bridgetest.WaitFor(t, 30*time.Second, "both bridges publish "+st.native, func() bool { return acks() >= float64(2*(k+2)) })
	}
	time.Sleep(500 * time.Millisecond) // let any late copy arrive
	got := hs[0].EventsFor("shared")
	assert.Equal(t, []string{"transition:pending", "transition:running", "transition:running", "transition:succeeded"}, bridgetest.Summary(got))
	published, dup := 0.0, 0.0
	for _, reg := range regs {
		published += gatherCounter(t, reg, "jobbridge_events_published_total", map[string]string{"duplicate": "false"})
		dup += gatherCounter(t, reg, "jobbridge_events_published_total", map[string]string{"duplicate": "true"})
	}
	assert.Equal(t, 4.0, published, "each event stored once")
	assert.Equal(t, 4.0, dup, "the other bridge's copy of each was dropped as a duplicate")
}
