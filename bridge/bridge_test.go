package bridge_test

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/jobbridge/jobbridge/bridge"
	"github.com/jobbridge/jobbridge/bridge/bridgetest"
	"github.com/jobbridge/jobbridge/bridge/natsconn/natstest"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// harness adapts bridgetest.Harness to these tests' single fake instance.
type harness struct {
	*bridgetest.Harness
	t      *testing.T
	js     jetstream.JetStream
	b      *bridge.Bridge
	poller *bridgetest.Poller
}

func startBridge(t *testing.T, nc *nats.Conn, poller *bridgetest.Poller, mutate func(*bridge.Options)) *harness {
	t.Helper()
	hh := bridgetest.StartBridge(t, nc, []bridge.Instance{{Vendor: "fake", Name: "test", Poller: poller, Concurrency: 4}}, mutate)
	return &harness{Harness: hh, t: t, js: hh.JS, b: hh.Bridge, poller: poller}
}

func (h *harness) stop()           { h.Stop() }
func (h *harness) watch(id string) { h.Watch("fake", "test", id) }

// eventsFor returns the stream's events of one job, schema-checked, in order.
func eventsFor(t *testing.T, js jetstream.JetStream, id string) []bridgetest.Received {
	var out []bridgetest.Received
	for _, r := range bridgetest.ReadStream(t, js, "JOBS") {
		if r.Data.Job == id {
			out = append(out, r)
		}
	}
	return out
}

func states(rs []bridgetest.Received) []string { return bridgetest.Summary(rs) }

func waitEvents(t *testing.T, js jetstream.JetStream, id string, n int) []bridgetest.Received {
	t.Helper()
	var got []bridgetest.Received
	bridgetest.WaitFor(t, 10*time.Second, fmt.Sprintf("%d events of %s", n, id), func() bool {
		got = eventsFor(t, js, id)
		return len(got) >= n
	})
	return got
}

func TestTransitionsArePublishedInOrderWithContract(t *testing.T) {
	s := natstest.RunServer(t, natstest.Options{})
	nc := natstest.Connect(t, s)
	p := bridgetest.NewPoller()
	p.Set("job.1 *>", bridge.StatePending, "READY")
	h := startBridge(t, nc, p, nil)
	h.watch("job.1 *>")
	waitEvents(t, h.js, "job.1 *>", 1)
	p.Set("job.1 *>", bridge.StateRunning, "ASSIGNED")
	waitEvents(t, h.js, "job.1 *>", 2)
	p.Set("job.1 *>", bridge.StateRunning, "PAUSED") // native change, same canonical state
	waitEvents(t, h.js, "job.1 *>", 3)
	p.Set("job.1 *>", bridge.StateSucceeded, "COMPLETED")
	waitEvents(t, h.js, "job.1 *>", 4)
	got := h.EventsFor("job.1 *>") // schema-validated

	assert.Equal(t, []string{"transition:pending", "transition:running", "transition:running", "transition:succeeded"}, states(got))
	ids := map[string]bool{}
	for i, r := range got {
		ev := r.Event
		assert.Equal(t, "1.0", ev["specversion"])
		assert.Equal(t, "/jobbridge/fake/test", ev["source"])
		assert.Equal(t, "job.1 *>", ev["subject"])
		assert.Equal(t, bridge.DataSchemaURI, ev["dataschema"])
		assert.Equal(t, bridge.FormatSequence(uint64(i+1)), ev["sequence"])
		assert.Equal(t, "application/cloudevents+json", r.Header.Get("Content-Type"))
		assert.Equal(t, ev["id"], r.Header.Get(jetstream.MsgIDHeader), "Nats-Msg-Id is the event id")
		assert.Equal(t, "jobs.fake.test."+string(r.Data.State)+".job_2E1_20_2A_3E", r.Subject)
		ids[ev["id"].(string)] = true
	}
	assert.Len(t, ids, 4, "event ids are distinct")
	assert.Equal(t, "io.jobbridge.job.succeeded", got[3].Event["type"])
	assert.Equal(t, bridge.StateRunning, got[3].Data.PreviousState)
	assert.Equal(t, "PAUSED", got[3].Data.Native.PreviousStatus)
	assert.True(t, got[3].Data.Terminal)
	assert.Equal(t, "", string(got[0].Data.PreviousState), "first observation has no previous state")
}

func TestNothingRepublishedAfterRestartAndSequenceContinues(t *testing.T) {
	s := natstest.RunServer(t, natstest.Options{})
	nc := natstest.Connect(t, s)
	p := bridgetest.NewPoller()
	p.Set("a", bridge.StateRunning, "IN_PROGRESS")
	h := startBridge(t, nc, p, nil)
	h.watch("a")
	waitEvents(t, h.js, "a", 1)
	h.stop()

	h2 := startBridge(t, nc, p, nil)
	before := p.Polls("a")
	bridgetest.WaitFor(t, 5*time.Second, "polls after restart", func() bool { return p.Polls("a") > before+5 })
	assert.Len(t, eventsFor(t, h2.js, "a"), 1, "a restarted bridge must not publish a known state again")
	p.Set("a", bridge.StateFailed, "FAILED")
	got := waitEvents(t, h2.js, "a", 2)
	assert.Equal(t, bridge.FormatSequence(2), got[1].Event["sequence"])
	assert.Equal(t, bridge.StateRunning, got[1].Data.PreviousState)
}

func TestReplayCoversEventsWhoseSnapshotWasLost(t *testing.T) {
	// A bridge that dies after the ack and before its snapshot reached KV:
	// simulated by never flushing (huge interval) and wiping the state bucket
	// after a stop, so the next bridge knows the events only from the stream.
	s := natstest.RunServer(t, natstest.Options{})
	nc := natstest.Connect(t, s)
	p := bridgetest.NewPoller()
	p.Set("x", bridge.StatePending, "READY")
	h := startBridge(t, nc, p, nil)
	h.watch("x")
	waitEvents(t, h.js, "x", 1)
	p.Set("x", bridge.StateRunning, "ASSIGNED")
	waitEvents(t, h.js, "x", 2)
	h.stop()
	kv, err := h.js.KeyValue(context.Background(), "JOBBRIDGE_STATE")
	require.NoError(t, err)
	require.NoError(t, kv.Purge(context.Background(), bridge.JobRef{Vendor: "fake", Instance: "test", ID: "x"}.Key()))
	require.NoError(t, kv.Purge(context.Background(), "_meta.checkpoint"))

	p.Set("x", bridge.StateSucceeded, "COMPLETED")
	h2 := startBridge(t, nc, p, nil)
	got := waitEvents(t, h2.js, "x", 3)
	time.Sleep(200 * time.Millisecond)
	got = eventsFor(t, h2.js, "x")
	require.Len(t, got, 3, "replay restored the record: nothing is published twice")
	assert.Equal(t, bridge.FormatSequence(3), got[2].Event["sequence"])
	assert.Equal(t, bridge.StateRunning, got[2].Data.PreviousState)
}

func TestNATSOutageLosesNothing(t *testing.T) {
	dir := t.TempDir()
	s := natstest.RunServer(t, natstest.Options{StoreDir: dir})
	port := s.Addr().(*net.TCPAddr).Port
	nc, err := nats.Connect(s.ClientURL(), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	p := bridgetest.NewPoller()
	p.Set("o", bridge.StatePending, "READY")
	h := startBridge(t, nc, p, func(o *bridge.Options) {
		o.Publish = bridge.PublisherOptions{MaxInFlight: 4, MaxPending: 16, AckTimeout: 200 * time.Millisecond}
	})
	h.watch("o")
	waitEvents(t, h.js, "o", 1)

	s.Shutdown()
	s.WaitForShutdown()
	// Two transitions while NATS is down: both are held, in order.
	p.Set("o", bridge.StateRunning, "ASSIGNED")
	bridgetest.WaitFor(t, 5*time.Second, "running detected", func() bool { return h.b.PendingEvents() >= 1 })
	p.Set("o", bridge.StateSucceeded, "COMPLETED")
	bridgetest.WaitFor(t, 5*time.Second, "succeeded detected", func() bool { return h.b.PendingEvents() >= 2 })
	bridgetest.WaitFor(t, 5*time.Second, "publisher reports failure", func() bool { return !h.b.PublisherHealthy() })
	// Polling goes on but nothing more is queued: the state did not change.
	time.Sleep(200 * time.Millisecond)
	assert.Equal(t, 2, h.b.PendingEvents())

	natstest.RunServer(t, natstest.Options{StoreDir: dir, Port: port})
	got := waitEvents(t, h.js, "o", 3)
	assert.Equal(t, []string{"transition:pending", "transition:running", "transition:succeeded"}, states(got))
	bridgetest.WaitFor(t, 5*time.Second, "pending drained", func() bool { return h.b.PendingEvents() == 0 })
	assert.True(t, h.b.PublisherHealthy())
}

func TestBackpressureBoundsPendingEvents(t *testing.T) {
	dir := t.TempDir()
	s := natstest.RunServer(t, natstest.Options{StoreDir: dir})
	port := s.Addr().(*net.TCPAddr).Port
	nc, err := nats.Connect(s.ClientURL(), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	p := bridgetest.NewPoller()
	const jobs = 40
	for i := 0; i < jobs; i++ {
		p.Set(fmt.Sprint("bp", i), bridge.StatePending, "READY")
	}
	h := startBridge(t, nc, p, func(o *bridge.Options) {
		o.Publish = bridge.PublisherOptions{MaxInFlight: 2, MaxPending: 8, AckTimeout: 100 * time.Millisecond}
	})
	for i := 0; i < jobs; i++ {
		h.watch(fmt.Sprint("bp", i))
	}
	bridgetest.WaitFor(t, 10*time.Second, "first events", func() bool {
		return len(bridgetest.ReadStream(t, h.js, "JOBS")) == jobs
	})
	s.Shutdown()
	s.WaitForShutdown()
	for i := 0; i < jobs; i++ {
		p.Set(fmt.Sprint("bp", i), bridge.StateRunning, "ASSIGNED")
	}
	maxPending := 0
	deadline := time.Now().Add(time.Second)
	for time.Now().Before(deadline) {
		maxPending = max(maxPending, h.b.PendingEvents())
		time.Sleep(5 * time.Millisecond)
	}
	assert.Equal(t, 8, maxPending, "pending events fill up to MaxPending and no further")

	natstest.RunServer(t, natstest.Options{StoreDir: dir, Port: port})
	bridgetest.WaitFor(t, 15*time.Second, "every transition after the outage", func() bool {
		return len(bridgetest.ReadStream(t, h.js, "JOBS")) >= 2*jobs
	})
	time.Sleep(200 * time.Millisecond)
	all := bridgetest.ReadStream(t, h.js, "JOBS")
	assert.Len(t, all, 2*jobs, "each job: pending then running, nothing twice")
}
