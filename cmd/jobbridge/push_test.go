package main

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jobbridge/jobbridge/bridge"
	"github.com/jobbridge/jobbridge/bridge/bridgetest"
	"github.com/jobbridge/jobbridge/bridge/natsconn/natstest"
	"github.com/jobbridge/jobbridge/pollers/hmc/hmcsim"
	"github.com/nats-io/nats.go/jetstream"
)

// hmcPushRig is a TLS HMC simulator with its STOMP broker, and a second
// session of the user jb: the jobs a test starts in it are watched by that
// session's topic, as a workflow's jobs are.
type hmcPushRig struct {
	sim    *hmcsim.Server
	broker *hmcsim.Broker
	other  hmcsim.SessionInfo
}

func startHMCPush(t *testing.T) hmcPushRig {
	t.Helper()
	sim, err := hmcsim.Listen("127.0.0.1:0", hmcsim.Options{TLS: true, Users: map[string]string{"jb": "pw-jb"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sim.Close)
	broker, err := sim.StartBroker(hmcsim.BrokerOptions{TLS: true})
	if err != nil {
		t.Fatal(err)
	}
	other, err := sim.OpenSession("jb", "pw-jb")
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("HMC_PW", "pw-jb")
	return hmcPushRig{sim: sim, broker: broker, other: other}
}

// config writes, in dir, a bridge config for NATS at natsURL whose HMC
// instance "prod" hears completions over STOMP (TLS, verified against the
// simulator's certificate) and polls only hourly, so a terminal event can
// only come from a push. extra is YAML added at the top level.
func (r hmcPushRig) config(t *testing.T, dir, natsURL, extra string) string {
	t.Helper()
	ca, err := writeCA(dir, "hmc", r.sim.Certificate().Raw)
	if err != nil {
		t.Fatal(err)
	}
	return writeFile(t, dir, "c.yaml", fmt.Sprintf(`
dataDir: %s
log: {level: warn, format: json}
nats: {url: %s}
http: {listen: ""}
%s
instances:
  - name: prod
    vendor: hmc
    url: %s
    tls: {caFile: %s}
    auth: {username: jb, password: {env: HMC_PW}}
    options: {notifications: stomp, stompPort: %d, safetyInterval: 1h}
`, dir, natsURL, extra, r.sim.URL, ca, r.broker.Port()))
}

// TestRunWithHMCPushOverSTOMP runs `jobbridge run` with an HMC instance whose
// completions arrive over STOMP (TLS, verified against the simulator's
// certificate), for a job started by ANOTHER HMC session, so the watch
// names that session's topic. The safety interval is an hour: the terminal
// event can only come from the push.
func TestRunWithHMCPushOverSTOMP(t *testing.T) {
	ns := natstest.RunServer(t, natstest.Options{})
	rig := startHMCPush(t)
	sim, other := rig.sim, rig.other
	cfg := rig.config(t, t.TempDir(), ns.ClientURL(), "")
	var logs syncBuffer
	runInProcess(t, cfg, &logs)

	nc := natstest.Connect(t, ns)
	c := bridge.WatchClient{NC: nc}
	bridgetest.WaitFor(t, 15*time.Second, "watch API", func() bool {
		_, err := c.List(context.Background(), bridge.ListFilter{})
		return err == nil
	})
	// The job runs longer than the notifier's watch refresh (5s), so the
	// watch's topic is subscribed before the completion is pushed; a job
	// completing earlier is found by the subscription's reconcile poll.
	ok200 := 200
	id, err := sim.StartJob(other.ID, hmcsim.Job{Script: []hmcsim.Step{{Status: "running", For: 8 * time.Second}, {Status: "complete", StatusCode: &ok200}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Add(context.Background(), bridge.Watch{Vendor: "hmc", Instance: "prod", Job: id,
		VendorOptions: map[string]string{"notifyTopic": other.JobNotificationTopic}}); err != nil {
		t.Fatal(err)
	}
	js, _ := jetstream.New(nc)
	var got []bridgetest.Received
	defer func() {
		if t.Failed() {
			t.Logf("logs:\n%s", logs.String())
			t.Logf("events: %v", bridgetest.Summary(got))
		}
	}()
	bridgetest.WaitFor(t, 20*time.Second, "terminal event pushed", func() bool {
		got = nil
		for _, e := range bridgetest.ReadStream(t, js, "JOBS") {
			if e.Data.Job == id {
				got = append(got, e)
			}
		}
		return len(got) > 0 && got[len(got)-1].Data.Terminal
	})
	if s := bridgetest.Summary(got); len(s) != 2 || s[0] != "transition:running" || s[1] != "transition:succeeded" {
		t.Fatalf("events %v\nlogs:\n%s", s, logs.String())
	}
	if got[1].Data.DetectedBy != bridge.DetectedBySTOMP {
		t.Errorf("terminal event detected by %q, want stomp", got[1].Data.DetectedBy)
	}
}
