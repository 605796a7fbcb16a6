package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jobbridge/jobbridge/bridge"
	"github.com/jobbridge/jobbridge/bridge/bridgetest"
	"github.com/jobbridge/jobbridge/bridge/natsconn/natstest"
	"github.com/jobbridge/jobbridge/pollers/hmc/hmcsim"
	"github.com/nats-io/nats.go/jetstream"
)

// TestScaleOutHMCPushSessionOnOneReplica runs two scale-out replicas with
// one STOMP-notified HMC: only one replica holds the HMC's STOMP session
// (the instance lease), and completions of jobs the other replica polls
// reach it as forwarded hints that keep their detectedBy. The safety
// interval is an hour, so a terminal event can only come from a push.
func TestScaleOutHMCPushSessionOnOneReplica(t *testing.T) {
	ns := natstest.RunServer(t, natstest.Options{})
	rig := startHMCPush(t)
	sim, broker, other := rig.sim, rig.broker, rig.other
	var logs []*syncBuffer
	for _, id := range []string{"push-a", "push-b"} {
		cfg := rig.config(t, t.TempDir(), ns.ClientURL(), "cluster: {enabled: true, replicaID: "+id+", shards: 8, leaseTTL: 2s}")
		out := &syncBuffer{}
		logs = append(logs, out)
		runInProcess(t, cfg, out)
	}
	nc := natstest.Connect(t, ns)
	js, _ := jetstream.New(nc)
	status := func() bridge.ClusterStatus {
		st, _ := bridge.ReadClusterStatus(context.Background(), js, "JOBBRIDGE_LEASES", "JOBBRIDGE_WATCHES")
		return st
	}
	bridgetest.WaitFor(t, 30*time.Second, "shards shared and one replica holding the HMC session", func() bool {
		st := status()
		single := 0
		for _, r := range st.Replicas {
			single += len(r.Singletons)
			if len(r.LeasedShards) != 4 {
				return false
			}
		}
		return len(st.Replicas) == 2 && single == 1
	})
	c := bridge.WatchClient{NC: nc}
	ownerOf := map[int]string{}
	for _, l := range status().Leases {
		if l.Shard >= 0 {
			ownerOf[l.Shard] = l.Owner
		}
	}
	ok200 := 200
	var ids []string
	pollers := map[string]bool{}
	// Jobs until both replicas poll some: completions of one replica's jobs
	// then reach it through the other's session.
	for len(ids) < 6 || len(pollers) < 2 {
		if len(ids) == 40 {
			t.Fatalf("40 jobs all on the shards of %v", pollers)
		}
		id, err := sim.StartJob(other.ID, hmcsim.Job{Script: []hmcsim.Step{{Status: "running", For: 8 * time.Second}, {Status: "complete", StatusCode: &ok200}}})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Add(context.Background(), bridge.Watch{Vendor: "hmc", Instance: "prod", Job: id,
			VendorOptions: map[string]string{"notifyTopic": other.JobNotificationTopic}}); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
		pollers[ownerOf[bridge.ShardOf(bridge.JobRef{Vendor: "hmc", Instance: "prod", ID: id}, 8)]] = true
	}
	bridgetest.WaitFor(t, 30*time.Second, "every job's pushed terminal event", func() bool {
		last := map[string]bool{}
		for _, e := range bridgetest.ReadStream(t, js, "JOBS") {
			last[e.Data.Job] = e.Data.Terminal
		}
		for _, id := range ids {
			if !last[id] {
				return false
			}
		}
		return true
	})
	// The replica polling a job need not hold the session: the forwarded
	// hint carries the channel, so every completion says it came by STOMP.
	for _, e := range bridgetest.ReadStream(t, js, "JOBS") {
		if e.Data.Terminal && e.Data.DetectedBy != bridge.DetectedBySTOMP {
			t.Errorf("%s: terminal event detectedBy %q, want stomp (polled by %s)", e.Data.Job, e.Data.DetectedBy,
				ownerOf[bridge.ShardOf(bridge.JobRef{Vendor: "hmc", Instance: "prod", ID: e.Data.Job}, 8)])
		}
	}
	for i, out := range logs {
		// run connects a scale-out replica without a reconnect buffer; the
		// bridge warns when a connection has one.
		if strings.Contains(out.String(), "buffers publishes while reconnecting") {
			t.Errorf("replica %d runs scale-out on a NATS connection with a reconnect buffer:\n%s", i, out.String())
		}
	}
	if n := broker.Connections(); n != 1 {
		t.Errorf("the HMC broker has %d STOMP connections; one replica at a time should hold the session", n)
	}
	t.Logf("%d jobs polled by both replicas; every completion arrived by push", len(ids))
}
