package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jobbridge/jobbridge/bridge"
	"github.com/jobbridge/jobbridge/bridge/bridgetest"
	"github.com/jobbridge/jobbridge/bridge/natsconn/natstest"
	"github.com/jobbridge/jobbridge/pollers/tso/tsosim"
	"github.com/nats-io/nats.go/jetstream"
)

// TestScaleOutProcessesSIGKILL runs three `jobbridge run` replicas with
// cluster.enabled against one NATS server and the TSO simulator, SIGKILLs
// one mid-run and checks the stream: nothing lost while a replica owned the
// job, nothing twice, every job's sequence in order. The integration
// variant runs the same against the machine's real NATS.
func TestScaleOutProcessesSIGKILL(t *testing.T) {
	checkScaleOutProcesses(t, scaleOutOptions{natsURL: natstest.RunServer(t, natstest.Options{}).ClientURL(), jobs: 30})
}

type scaleOutOptions struct {
	natsURL string
	stream  string // default JOBS
	prefix  string // default jobs
	buckets string // bucket name prefix; default JOBBRIDGE
	jobs    int
}

func checkScaleOutProcesses(t *testing.T, o scaleOutOptions) {
	if o.stream == "" {
		o.stream, o.prefix, o.buckets = "JOBS", "jobs", "JOBBRIDGE"
	}
	const shards = 16
	leaseBucket := o.buckets + "_LEASES"
	bin := buildBinary(t)
	dir := t.TempDir()
	sim, ca := startTSOWithCA(t, dir)
	statuses := []string{"ASSIGNED", "PAUSED", "IN_PROGRESS"}
	terminal := []string{"COMPLETED", "FAILED", "CANCELLED", "COMPENSATED"}
	var ids []string
	var jobs strings.Builder
	for i := 0; i < o.jobs; i++ {
		id := fmt.Sprintf("scale-%02d", i)
		if i%7 == 3 {
			id = fmt.Sprintf("scale %02d/with.dots*and>", i)
		}
		// The replicas start one after another and balance: the first
		// state lasts until they are all up.
		script := []tsosim.Step{{Status: "READY", For: time.Duration(6000+rand.IntN(2000)) * time.Millisecond}}
		for _, s := range statuses {
			script = append(script, tsosim.Step{Status: s, For: time.Duration(1500+rand.IntN(1000)) * time.Millisecond})
		}
		script = append(script, tsosim.Step{Status: terminal[i%len(terminal)]})
		sim.AddJob(id, script)
		ids = append(ids, id)
		jobs.WriteString("      - " + yamlQuote(id) + "\n")
	}
	t.Setenv("TSO_PASSWORD", "s3cret-pw")
	cfgFor := func(replica string) string {
		return writeFile(t, dir, replica+".yaml", fmt.Sprintf(`
dataDir: %s
log: {level: info, format: json}
nats: {url: %s}
stream: {name: %s, subjectPrefix: %s, stateBucket: %s_STATE, watchBucket: %s_WATCHES}
publish: {flushInterval: 200ms, ackTimeout: 2s}
schedule: {interval: 200ms, fastInterval: 200ms, idleInterval: 200ms, idleAfter: 1m, jitter: 0.1, errorBackoffMax: 1s, retainAfterTerminal: 1h}
http: {listen: ""}
watchAPI: {enabled: false}
cluster: {enabled: true, replicaID: %s, shards: %d, leaseBucket: %s, leaseTTL: 3s}
instances:
  - name: prod
    vendor: tso
    url: %s
    tls: {caFile: %s}
    auth: {username: ops, password: {env: TSO_PASSWORD}}
    jobs:
%s`, dir+"/"+replica, o.natsURL, o.stream, o.prefix, o.buckets, o.buckets, replica, shards, leaseBucket, sim.URL, ca, jobs.String()))
	}
	nc := natsConnect(t, o.natsURL)
	js, _ := jetstream.New(nc)
	status := func() bridge.ClusterStatus {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		st, err := bridge.ReadClusterStatus(ctx, js, leaseBucket, o.buckets+"_WATCHES")
		if err != nil {
			return bridge.ClusterStatus{}
		}
		return st
	}
	owners := func(st bridge.ClusterStatus) map[string][]int {
		out := map[string][]int{}
		for _, l := range st.Leases {
			if l.Shard >= 0 {
				out[l.Owner] = append(out[l.Owner], l.Shard)
			}
		}
		return out
	}

	start := time.Now()
	names := []string{"it-r0", "it-r1", "it-r2"}
	children := make([]*child, len(names))
	for i, n := range names {
		children[i] = startChild(t, bin, "run", "--config", cfgFor(n))
		children[i].waitReady(t, 60*time.Second)
	}
	bridgetest.WaitFor(t, 60*time.Second, "three replicas share the shards", func() bool {
		st := status()
		own := owners(st)
		return len(st.Unowned) == 0 && st.Shards == shards && len(own) == 3 && len(own["it-r1"]) >= 4 && len(own["it-r0"]) >= 4 && len(own["it-r2"]) >= 4
	})
	// `jobbridge status` shows the same, for people and as JSON.
	var out bytes.Buffer
	cmd := exec.Command(bin, "status", "--nats", o.natsURL, "--lease-bucket", leaseBucket, "--watch-bucket", o.buckets+"_WATCHES", "--json")
	cmd.Stdout = &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("jobbridge status: %v", err)
	}
	var st bridge.ClusterStatus
	if err := json.Unmarshal(out.Bytes(), &st); err != nil {
		t.Fatalf("jobbridge status --json: %v\n%s", err, out.String())
	}
	if len(st.Replicas) != 3 || st.Watches != o.jobs || len(st.Leases) != shards {
		t.Errorf("jobbridge status: %d replicas, %d watches, %d leases; want 3, %d, %d\n%s", len(st.Replicas), st.Watches, len(st.Leases), o.jobs, shards, out.String())
	}

	time.Sleep(time.Duration(6000+rand.IntN(1500)) * time.Millisecond)
	killShards := owners(status())["it-r1"]
	killedAt := children[1].kill(t)
	var takenAt time.Time
	bridgetest.WaitFor(t, 90*time.Second, "the survivors take the killed replica's shards", func() bool {
		st := status()
		own := owners(st)
		if len(st.Unowned) == 0 && len(own["it-r1"]) == 0 && st.Shards == shards {
			takenAt = time.Now()
			return true
		}
		return false
	})
	takeover := takenAt.Sub(killedAt)
	t.Logf("SIGKILLed it-r1 holding shards %v; taken over after %s (lease TTL 3s)", killShards, takeover.Round(time.Millisecond))
	if takeover > 60*time.Second {
		t.Errorf("takeover took %s, far beyond the lease TTL", takeover)
	}

	waitTerminal(sim, ids, terminal, 90*time.Second)
	time.Sleep(2 * time.Second)
	end := time.Now()
	children[0].stop(t, 30*time.Second)
	children[2].stop(t, 30*time.Second)
	if st := status(); len(st.Replicas) != 1 || st.Replicas[0].ID != "it-r1" || len(st.Leases) != 0 {
		t.Errorf("after a graceful stop the bucket should only hold the killed replica's stale heartbeat: %+v", st)
	}

	onKilled := func(job string) bool {
		return slices.Contains(killShards, bridge.ShardOf(bridge.JobRef{Vendor: "tso", Instance: "prod", ID: job}, shards))
	}
	var truthK, truthL []bridgetest.Truth
	for _, ch := range sim.History() {
		tr := bridgetest.Truth{Job: ch.JobID, Native: ch.Status, At: ch.At}
		if onKilled(ch.JobID) {
			truthK = append(truthK, tr)
		} else {
			truthL = append(truthL, tr)
		}
	}
	var evK, evL []bridgetest.Received
	for _, e := range bridgetest.ReadStream(t, js, o.stream) {
		if !strings.HasPrefix(e.Subject, o.prefix+".tso.prod.") {
			continue
		}
		if onKilled(e.Data.Job) {
			evK = append(evK, e)
		} else {
			evL = append(evL, e)
		}
	}
	// All replicas start polling once they are up; the killed replica's
	// jobs went unpolled from the kill until the takeover.
	mustSee := 800 * time.Millisecond
	repL := bridgetest.CheckStream(truthL, evL, []bridgetest.Window{{From: start, To: end}}, mustSee)
	repK := bridgetest.CheckStream(truthK, evK, []bridgetest.Window{{From: start, To: killedAt}, {From: takenAt, To: end}}, mustSee)
	t.Logf("jobs of the surviving replicas: %s", repL)
	t.Logf("jobs of the killed replica: %s", repK)
	if !repL.OK() || !repK.OK() {
		t.Fatalf("stream does not match the vendor's history")
	}
	if repK.Jobs == 0 || repL.Jobs == 0 {
		t.Fatalf("the killed replica held no job (%d) or all of them (%d): the test proved nothing", repK.Jobs, repL.Jobs)
	}
	if repK.Expected+repL.Expected < o.jobs*4 {
		t.Fatalf("only %d states were observable", repK.Expected+repL.Expected)
	}
}
