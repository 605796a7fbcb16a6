package bridge_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jobbridge/jobbridge/bridge"
	"github.com/jobbridge/jobbridge/bridge/bridgetest"
	"github.com/jobbridge/jobbridge/bridge/natsconn/natstest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestWatchAPI(t *testing.T) {
	s := natstest.RunServer(t, natstest.Options{})
	nc := natstest.Connect(t, s)
	p := bridgetest.NewPoller()
	p.Set("w/1", bridge.StateRunning, "ASSIGNED")
	h := startBridge(t, nc, p, nil)
	svc, err := bridge.StartWatchService(nc, "", "test", h.b.Registry(), h.b.CheckInstance)
	require.NoError(t, err)
	t.Cleanup(func() { _ = svc.Stop() })
	c := bridge.WatchClient{NC: nc, Timeout: 5 * time.Second}
	ctx := context.Background()

	r, err := c.Add(ctx, bridge.Watch{Vendor: "fake", Instance: "test", Job: "w/1", Labels: map[string]string{"team": "ops"}})
	require.NoError(t, err)
	assert.True(t, r.Created)
	assert.Equal(t, "api", r.Watch.Origin)
	r2, err := c.Add(ctx, bridge.Watch{Vendor: "fake", Instance: "test", Job: "w/1", Labels: map[string]string{"team": "ops"}})
	require.NoError(t, err, "adding the same job twice is idempotent")
	assert.False(t, r2.Created)
	assert.Equal(t, r.Watch.AddedAt, r2.Watch.AddedAt)

	got := waitEvents(t, h.js, "w/1", 1)
	assert.Equal(t, map[string]string{"team": "ops"}, got[0].Data.Labels, "labels reach the event")

	w, err := c.Get(ctx, bridge.JobRef{Vendor: "fake", Instance: "test", ID: "w/1"})
	require.NoError(t, err)
	assert.Equal(t, "w/1", w.Job)

	_, err = c.Add(ctx, bridge.Watch{Vendor: "fake", Instance: "nope", Job: "x"})
	var apiErr *bridge.APIError
	require.True(t, errors.As(err, &apiErr), "unknown instance refused: %v", err)
	assert.Equal(t, "404", apiErr.Code)
	assert.Contains(t, apiErr.Description, "fake/test", "the error lists configured instances")

	_, err = c.Add(ctx, bridge.Watch{Vendor: "fake", Instance: "test", Job: strings.Repeat("x", 10_000)})
	require.True(t, errors.As(err, &apiErr))
	assert.Equal(t, "400", apiErr.Code)

	msg, err := nc.Request(bridge.WatchSubjectPrefix+".add", make([]byte, bridge.MaxWatchRequestBytes+1), 5*time.Second)
	require.NoError(t, err)
	assert.Equal(t, "413", msg.Header.Get("Nats-Service-Error-Code"))

	msg, err = nc.Request(bridge.WatchSubjectPrefix+".add", []byte("{not json"), 5*time.Second)
	require.NoError(t, err)
	assert.Equal(t, "400", msg.Header.Get("Nats-Service-Error-Code"))

	for i := 0; i < 25; i++ {
		_, err := c.Add(ctx, bridge.Watch{Vendor: "fake", Instance: "test", Job: fmt.Sprintf("page-%02d", i)})
		require.NoError(t, err)
	}
	var all []bridge.Watch
	after := ""
	pages := 0
	for {
		lr, err := c.List(ctx, bridge.ListFilter{Vendor: "fake", Limit: 10, After: after})
		require.NoError(t, err)
		all = append(all, lr.Watches...)
		pages++
		if lr.Next == "" {
			break
		}
		after = lr.Next
	}
	assert.Len(t, all, 26)
	assert.Equal(t, 3, pages)

	require.NoError(t, c.Remove(ctx, bridge.JobRef{Vendor: "fake", Instance: "test", ID: "w/1"}))
	err = c.Remove(ctx, bridge.JobRef{Vendor: "fake", Instance: "test", ID: "w/1"})
	require.True(t, errors.As(err, &apiErr))
	assert.Equal(t, "404", apiErr.Code)
	polls := p.Polls("w/1")
	time.Sleep(150 * time.Millisecond)
	assert.LessOrEqual(t, p.Polls("w/1"), polls+1, "a removed watch is no longer polled")
}

func TestTerminalJobWatchIsRemovedAfterRetention(t *testing.T) {
	s := natstest.RunServer(t, natstest.Options{})
	nc := natstest.Connect(t, s)
	p := bridgetest.NewPoller()
	p.Set("t1", bridge.StateSucceeded, "COMPLETED")
	h := startBridge(t, nc, p, func(o *bridge.Options) { o.Schedule.RetainAfterTerminal = 100 * time.Millisecond })
	h.watch("t1")
	waitEvents(t, h.js, "t1", 1)
	bridgetest.WaitFor(t, 5*time.Second, "watch removed", func() bool {
		_, err := h.b.Registry().Get(context.Background(), bridge.JobRef{Vendor: "fake", Instance: "test", ID: "t1"})
		return errors.Is(err, bridge.ErrWatchNotFound)
	})
	polls := p.Polls("t1")
	time.Sleep(100 * time.Millisecond)
	assert.Equal(t, polls, p.Polls("t1"), "terminal job is not polled after its watch ended")
}

func TestVanishedJobEndsWatchWithEvent(t *testing.T) {
	s := natstest.RunServer(t, natstest.Options{})
	nc := natstest.Connect(t, s)
	p := bridgetest.NewPoller()
	p.Set("v1", bridge.StateRunning, "ASSIGNED")
	h := startBridge(t, nc, p, func(o *bridge.Options) { o.Schedule.RetainAfterTerminal = 50 * time.Millisecond })
	h.watch("v1")
	waitEvents(t, h.js, "v1", 1)
	p.Delete("v1")
	got := waitEvents(t, h.js, "v1", 2)
	assert.Equal(t, []string{"transition:running", "vanished:running"}, states(got))
	assert.Equal(t, "io.jobbridge.job.vanished", got[1].Event["type"])
	assert.Equal(t, "jobs.fake.test.vanished.v1", got[1].Subject)
	time.Sleep(200 * time.Millisecond)
	assert.Len(t, eventsFor(t, h.js, "v1"), 2, "vanished is published once")
}

func TestMalformedAndFailingPollsMakeNoTransition(t *testing.T) {
	s := natstest.RunServer(t, natstest.Options{})
	nc := natstest.Connect(t, s)
	p := bridgetest.NewPoller()
	p.Set("m1", bridge.StateRunning, "ASSIGNED")
	h := startBridge(t, nc, p, nil)
	h.watch("m1")
	waitEvents(t, h.js, "m1", 1)
	p.Fail("m1", fmt.Errorf("parse: %w", bridge.ErrMalformed))
	before := p.Polls("m1")
	bridgetest.WaitFor(t, 5*time.Second, "more polls", func() bool { return p.Polls("m1") >= before+3 })
	p.Fail("m1", bridgetest.ErrTransient)
	time.Sleep(100 * time.Millisecond)
	p.SetObservation("m1", bridge.Observation{State: "bogus", Native: "??"})
	time.Sleep(100 * time.Millisecond)
	assert.Len(t, eventsFor(t, h.js, "m1"), 1, "no transition from a malformed, failing or invalid answer")
	p.Set("m1", bridge.StateSucceeded, "COMPLETED")
	got := waitEvents(t, h.js, "m1", 2)
	assert.Equal(t, bridge.StateRunning, got[1].Data.PreviousState)
}

func TestHintPollsAtOnce(t *testing.T) {
	s := natstest.RunServer(t, natstest.Options{})
	nc := natstest.Connect(t, s)
	p := bridgetest.NewPoller()
	p.Set("h1", bridge.StateRunning, "ASSIGNED")
	h := startBridge(t, nc, p, func(o *bridge.Options) {
		o.Schedule = bridge.ScheduleOptions{Interval: time.Hour, FastInterval: time.Hour, IdleInterval: time.Hour, Workers: 2}
	})
	h.watch("h1")
	waitEvents(t, h.js, "h1", 1)
	p.Set("h1", bridge.StateSucceeded, "COMPLETED")
	time.Sleep(100 * time.Millisecond)
	assert.Len(t, eventsFor(t, h.js, "h1"), 1, "hour-long interval: no poll without a hint")
	start := time.Now()
	require.True(t, h.b.Hint(bridge.JobRef{Vendor: "fake", Instance: "test", ID: "h1"}))
	waitEvents(t, h.js, "h1", 2)
	assert.Less(t, time.Since(start), 2*time.Second)
	assert.False(t, h.b.Hint(bridge.JobRef{Vendor: "fake", Instance: "test", ID: "unwatched"}))
}

type discoveringPoller struct {
	*bridgetest.Poller
	ids []string
}

func (d discoveringPoller) Discover(context.Context) ([]string, error) { return d.ids, nil }

func TestDiscoveryWatchesListedJobs(t *testing.T) {
	s := natstest.RunServer(t, natstest.Options{})
	nc := natstest.Connect(t, s)
	p := bridgetest.NewPoller()
	p.Set("d1", bridge.StateRunning, "RUNNING")
	p.Set("d.2", bridge.StatePending, "WAITING")
	dp := discoveringPoller{Poller: p, ids: []string{"d1", "d.2"}}
	h := startBridge(t, nc, p, func(o *bridge.Options) {
		o.Instances = []bridge.Instance{{Vendor: "fake", Name: "test", Poller: dp, Discover: true, DiscoverInterval: 50 * time.Millisecond}}
	})
	waitEvents(t, h.js, "d1", 1)
	waitEvents(t, h.js, "d.2", 1)
	w, err := h.b.Registry().Get(context.Background(), bridge.JobRef{Vendor: "fake", Instance: "test", ID: "d.2"})
	require.NoError(t, err)
	assert.Equal(t, "discovery", w.Origin)
}

func TestTasksStillRunningKeepATerminalJobPolled(t *testing.T) {
	s := natstest.RunServer(t, natstest.Options{})
	nc := natstest.Connect(t, s)
	p := bridgetest.NewPoller()
	task := func(id string, st bridge.State) bridge.Observation {
		return bridge.Observation{Job: bridge.JobRef{Task: id}, State: st, Native: string(st)}
	}
	p.SetObservation("j", bridge.Observation{State: bridge.StateFailed, Native: "FAILED",
		Tasks: []bridge.Observation{task("t1", bridge.StateFailed), task("t2", bridge.StateRunning)}})
	h := startBridge(t, nc, p, nil)
	h.watch("j")
	waitEvents(t, h.js, "j", 3)
	p.SetObservation("j", bridge.Observation{State: bridge.StateFailed, Native: "FAILED",
		Tasks: []bridge.Observation{task("t1", bridge.StateFailed), task("t2", bridge.StateCanceled)}})
	got := waitEvents(t, h.js, "j", 4)
	assert.Equal(t, "transition:canceled/t2", states(got)[3], "a task finishing after its job is still published")
	polls := p.Polls("j")
	time.Sleep(150 * time.Millisecond)
	assert.LessOrEqual(t, p.Polls("j"), polls+1, "once job and tasks are terminal, polling stops")
}
