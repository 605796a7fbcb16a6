//go:build faults

package main

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/jobbridge/jobbridge/bridge"
	"github.com/jobbridge/jobbridge/bridge/bridgetest"
	"github.com/jobbridge/jobbridge/pollers/hmc/hmcsim"
	"github.com/nats-io/nats.go/jetstream"
)

const hmcPassword = "hmc-s3cret"

// pushSide is one push-driven HMC instance of the bridge under test: its
// simulator (with the STOMP broker or SSE stream) and the jobs of each
// phase.
type pushSide struct {
	name   string // instance name: stomp or sse
	sim    *hmcsim.Server
	broker *hmcsim.Broker
}

// session is the bridge's open HMC session (its jobs' completions go to
// its topic).
func (ps *pushSide) session(t *testing.T) hmcsim.SessionInfo {
	t.Helper()
	var sess hmcsim.SessionInfo
	bridgetest.WaitFor(t, 60*time.Second, ps.name+": the bridge's HMC session", func() bool {
		for _, s := range ps.sim.Sessions() {
			if s.ClosedAt.IsZero() && s.UserID == "jobbridge" {
				sess = s
			}
		}
		return sess.ID != ""
	})
	return sess
}

// connected waits until the push channel is up for the bridge's session.
func (ps *pushSide) connected(t *testing.T) hmcsim.SessionInfo {
	t.Helper()
	var sess hmcsim.SessionInfo
	bridgetest.WaitFor(t, 90*time.Second, ps.name+": the push channel connected", func() bool {
		sess = ps.session(t)
		if ps.broker != nil {
			return ps.sim.Broker().Subscribers(sess.JobNotificationTopic) > 0
		}
		return ps.sim.OpenSSEStreams() > 0
	})
	return sess
}

// hmcPush runs one bridge with a STOMP and an SSE HMC instance (each on
// its own simulator; polls only at a 5 minute safety interval), and for
// each channel cuts it (broker restart with its port closed, or the SSE
// stream dropped again and again) and silences it (no heart-beats, no
// keep-alives) while jobs end: every completion must reach the stream,
// pushed or found by the reconcile after the reconnect.
func (r *faultRig) hmcPush(t *testing.T) {
	t.Setenv("HMC_PASSWORD", hmcPassword)
	newSim := func() *hmcsim.Server {
		s := hmcsim.NewServer(hmcsim.Options{Users: map[string]string{"jobbridge": hmcPassword}, TickEvery: 20 * time.Millisecond, SSEKeepAlive: 200 * time.Millisecond})
		t.Cleanup(s.Close)
		return s
	}
	st := &pushSide{name: "stomp", sim: newSim()}
	var err error
	if st.broker, err = st.sim.StartBroker(hmcsim.BrokerOptions{}); err != nil {
		t.Fatal(err)
	}
	sse := &pushSide{name: "sse", sim: newSim()}
	n := startNATS(t, r.natsBin, natsProcOptions{})
	port := freePort(t)
	insts := fmt.Sprintf(`  - name: stomp
    vendor: hmc
    url: %s
    auth: {username: jobbridge, password: {env: HMC_PASSWORD}}
    options: {notifications: stomp, stompPort: %d, stompPlain: true, safetyInterval: 5m}
  - name: sse
    vendor: hmc
    url: %s
    auth: {username: jobbridge, password: {env: HMC_PASSWORD}}
    options: {notifications: sse, safetyInterval: 5m, sseIdleTimeout: 3s}
`, st.sim.URL, st.broker.Port(), sse.sim.URL)
	cfg := bridgeConf{dir: t.TempDir(), natsURL: n.url, httpPort: port, watchAPI: true, instances: insts}.write(t)
	c := startChild(t, r.bridgeBin, "run", "--config", cfg)
	from := c.waitReady(t, 60*time.Second)
	waitReadyz(t, port, 200, 30*time.Second)
	nc := natsConnect(t, n.url)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	wc := bridge.WatchClient{NC: nc, Timeout: 10 * time.Second}
	// The HMC poller logs on with the first watch: one job per side that
	// never ends.
	for _, ps := range []*pushSide{st, sse} {
		ps.sim.MustAddJob(ps.name+"-idle", hmcsim.Step{Status: hmcsim.StatusRunning})
		if _, err := wc.Add(ctxT(t, 15*time.Second), bridge.Watch{Vendor: "hmc", Instance: ps.name, Job: ps.name + "-idle"}); err != nil {
			t.Fatal(err)
		}
		ps.connected(t)
	}
	base := baseline(t, port, 2)
	var after []procStats

	type phase struct {
		row  string
		side *pushSide
		runs int
		// fault breaks the channel; it returns once the phase's jobs have
		// ended in the simulator (ended says so) with the channel restored
		// or left to heal itself.
		fault func(t *testing.T, ended func() bool)
	}
	phases := []phase{
		{"STOMP broker restart (port closed meanwhile)", st, r.scale.pushCuts, func(t *testing.T, ended func() bool) {
			addr := st.sim.Broker().Addr()
			st.sim.Broker().Close()
			bridgetest.WaitFor(t, 60*time.Second, "the jobs ended", ended)
			time.Sleep(500 * time.Millisecond)
			if _, err := st.sim.StartBroker(hmcsim.BrokerOptions{Addr: addr}); err != nil {
				t.Fatalf("restart the broker on %s: %v", addr, err)
			}
		}},
		{"STOMP silent stall (no heart-beats)", st, 1, func(t *testing.T, ended func() bool) {
			if st.sim.Broker().StallConnections() == 0 {
				t.Fatal("no STOMP connection to stall")
			}
			bridgetest.WaitFor(t, 60*time.Second, "the jobs ended", ended)
		}},
		{"SSE stream cut (repeatedly, while jobs end)", sse, r.scale.pushCuts, func(t *testing.T, ended func() bool) {
			for !ended() {
				sse.sim.DropSSEStreams()
				time.Sleep(100 * time.Millisecond)
			}
		}},
		{"SSE silent stall (idle timeout 3s)", sse, 1, func(t *testing.T, ended func() bool) {
			if sse.sim.StallSSEStreams() == 0 {
				t.Fatal("no SSE stream to stall")
			}
			bridgetest.WaitFor(t, 60*time.Second, "the jobs ended", ended)
		}},
	}
	terminal := []string{hmcsim.StatusComplete, hmcsim.StatusCanceled}
	type result struct {
		ids []string
		by  map[bridge.Detection]int
	}
	results := make([]result, len(phases))
	var mu sync.Mutex
	for pi, ph := range phases {
		results[pi].by = map[bridge.Detection]int{}
		for run := 0; run < ph.runs; run++ {
			sess := ph.side.connected(t)
			var ids []string
			for j := 0; j < 6; j++ {
				id := fmt.Sprintf("%s-p%d-r%d-j%d", ph.side.name, pi, run, j)
				end := hmcsim.Step{Status: hmcsim.StatusComplete}
				if j%3 == 2 {
					code, reason := 500, 263
					end = hmcsim.Step{Status: hmcsim.StatusCanceled, StatusCode: &code, ReasonCode: &reason}
				}
				if _, err := ph.side.sim.StartJob(sess.ID, hmcsim.Job{ID: id, Script: []hmcsim.Step{{Status: hmcsim.StatusRunning, For: time.Duration(2500+300*j) * time.Millisecond}, end}}); err != nil {
					t.Fatal(err)
				}
				if _, err := wc.Add(ctxT(t, 15*time.Second), bridge.Watch{Vendor: "hmc", Instance: ph.side.name, Job: id}); err != nil {
					t.Fatal(err)
				}
				ids = append(ids, id)
			}
			// Every job seen running first (the watch's first poll).
			bridgetest.WaitFor(t, 30*time.Second, "the jobs' running events", func() bool {
				return countEvents(t, js, ids, false) == len(ids)
			})
			ph.fault(t, func() bool {
				for _, id := range ids {
					if s, _ := ph.side.sim.Status(id); !slices.Contains(terminal, s) {
						return false
					}
				}
				return true
			})
			bridgetest.WaitFor(t, 90*time.Second, ph.row+": every completion on the stream", func() bool {
				return countEvents(t, js, ids, true) == len(ids)
			})
			ph.side.connected(t)
			after = append(after, sampleStats(t, port))
			mu.Lock()
			results[pi].ids = append(results[pi].ids, ids...)
			mu.Unlock()
		}
	}
	time.Sleep(time.Second) // room for a duplicate to show
	leak := leakCheck(t, "HMC push", port, base, after, 2*5)
	up := []bridgetest.Window{{From: from, To: c.stop(t, 30*time.Second)}}
	all := bridgetest.ReadStreamBySeq(t, js, "JOBS")
	for pi, ph := range phases {
		ids := results[pi].ids
		var truth []bridgetest.Truth
		for _, ch := range ph.side.sim.History() {
			if ch.Removed == "" && slices.Contains(ids, ch.JobID) {
				truth = append(truth, bridgetest.Truth{Job: ch.JobID, Native: ch.Status, At: ch.At})
			}
		}
		var events []bridgetest.Received
		for _, e := range all {
			if e.Data.Instance == ph.side.name && slices.Contains(ids, e.Data.Job) {
				events = append(events, e)
				if e.Data.Terminal {
					results[pi].by[e.Data.DetectedBy]++
				}
			}
		}
		rep := bridgetest.CheckStream(truth, events, up, 300*time.Millisecond)
		by := results[pi].by
		r.record(t, faultRow{fault: ph.row, runs: ph.runs, rep: rep, leak: "shared process " + leak,
			note: fmt.Sprintf("completions detected by push %d, by poll (reconcile) %d", by[bridge.DetectedBySTOMP]+by[bridge.DetectedBySSE], by[bridge.DetectedByPoll])}, len(ids)*2)
	}
}

// countEvents counts the jobs of ids with a running (or, when terminal, a
// terminal) event on the stream.
func countEvents(t *testing.T, js jetstream.JetStream, ids []string, terminal bool) int {
	seen := map[string]bool{}
	for _, e := range bridgetest.ReadStream(t, js, "JOBS") {
		if slices.Contains(ids, e.Data.Job) && e.Data.Terminal == terminal && e.Data.Kind == bridge.KindTransition {
			seen[e.Data.Job] = true
		}
	}
	return len(seen)
}
