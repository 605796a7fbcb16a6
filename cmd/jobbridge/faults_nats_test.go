//go:build faults

package main

import (
	"fmt"
	"math/rand/v2"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jobbridge/jobbridge/bridge/bridgetest"
	"github.com/jobbridge/jobbridge/pollers/tso/tsosim"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// natsProc is a nats-server process the test owns: on 127.0.0.1, a random
// port, its own store directory, so it can be stopped and restarted (the
// same port and store) without touching anyone else's server.
type natsProc struct {
	bin  string
	args []string
	port int
	url  string

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
	out    *syncBuffer
}

type natsProcOptions struct {
	name     string
	storeDir string // default: a fresh temp dir
	// cluster, when set, is this node's cluster port and routes the
	// routes to every node (its own included, as nats-server allows).
	clusterPort int
	routes      []string
	// port, when set, is the client port (a cluster's URLs are known before
	// its nodes start).
	port int
	// noWait leaves waiting for JetStream to the caller (a cluster's nodes
	// answer only once a quorum is up).
	noWait bool
}

func startNATS(t *testing.T, bin string, o natsProcOptions) *natsProc {
	t.Helper()
	if o.storeDir == "" {
		o.storeDir = t.TempDir()
	}
	if o.port == 0 {
		o.port = freePort(t)
	}
	if o.name == "" {
		o.name = fmt.Sprintf("faults-%d", o.port)
	}
	args := []string{"-a", "127.0.0.1", "-p", fmt.Sprint(o.port), "-js", "-sd", o.storeDir, "-n", o.name}
	if o.clusterPort != 0 {
		args = append(args, "--cluster_name", "faults", "--cluster", fmt.Sprintf("nats://127.0.0.1:%d", o.clusterPort), "--routes", strings.Join(o.routes, ","))
	}
	n := &natsProc{bin: bin, args: args, port: o.port, url: fmt.Sprintf("nats://127.0.0.1:%d", o.port)}
	t.Cleanup(func() { n.signal(syscall.SIGKILL) })
	n.start(t, !o.noWait)
	return n
}

// start runs the server (again) and, when wait, waits until JetStream
// answers on it.
func (n *natsProc) start(t *testing.T, wait bool) {
	t.Helper()
	cmd := exec.Command(n.bin, n.args...)
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start nats-server: %v", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	n.mu.Lock()
	n.cmd, n.exited, n.out = cmd, exited, out
	n.mu.Unlock()
	if wait {
		n.waitJetStream(t, 60*time.Second)
	}
}

// waitJetStream waits until a client can reach JetStream through this
// server.
func (n *natsProc) waitJetStream(t *testing.T, timeout time.Duration) {
	t.Helper()
	bridgetest.WaitFor(t, timeout, "JetStream on "+n.url, func() bool {
		select {
		case <-n.exited:
			t.Fatalf("nats-server on %s exited:\n%s", n.url, n.out.String())
		default:
		}
		nc, err := nats.Connect(n.url, nats.Timeout(time.Second))
		if err != nil {
			return false
		}
		defer nc.Close()
		js, err := jetstream.New(nc)
		if err != nil {
			return false
		}
		_, err = js.AccountInfo(ctxT(t, 2*time.Second))
		return err == nil
	})
}

// signal sends sig and waits for the process to end.
func (n *natsProc) signal(sig syscall.Signal) {
	n.mu.Lock()
	cmd, exited := n.cmd, n.exited
	n.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(sig)
	select {
	case <-exited:
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		<-exited
	}
}

// natsRestart stops the test's NATS server under a running bridge and
// starts it again on the same port and store, first with SIGTERM (a clean
// shutdown), then with SIGKILL (a crash): the bridge holds what it
// detects meanwhile and publishes it in order once NATS is back.
func (r *faultRig) natsRestart(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGKILL} {
		name := fmt.Sprintf("NATS server %s, restarted", map[syscall.Signal]string{syscall.SIGTERM: "SIGTERM", syscall.SIGKILL: "SIGKILL"}[sig])
		t.Run(strings.Fields(name)[2][:7], func(t *testing.T) {
			n := startNATS(t, r.natsBin, natsProcOptions{})
			sim := tsosim.NewServer(tsosim.Options{Users: map[string]string{"ops": tsoPassword}})
			defer sim.Close()
			restarts := r.scale.natsRestarts
			// A cycle: NATS up 1.5-2.5s, then down 1-2s.
			ids := tsoStorm(sim, "nats", 24, time.Duration(restarts)*3500*time.Millisecond, 500*time.Millisecond)
			t.Setenv("TSO_PASSWORD", tsoPassword)
			port := freePort(t)
			cfg := bridgeConf{dir: t.TempDir(), natsURL: n.url, httpPort: port, ackTO: time.Second, instances: tsoInstance("prod", sim.URL, ids, "")}.write(t)
			c := startChild(t, r.bridgeBin, "run", "--config", cfg)
			from := c.waitReady(t, 60*time.Second)
			waitReadyz(t, port, 200, 30*time.Second)
			base := baseline(t, port, len(ids))
			var after []procStats
			for k := 0; k < restarts; k++ {
				time.Sleep(time.Duration(1500+rand.IntN(1000)) * time.Millisecond)
				n.signal(sig)
				waitReadyz(t, port, 503, 30*time.Second)
				time.Sleep(time.Duration(1000+rand.IntN(1000)) * time.Millisecond)
				n.start(t, true)
				waitReadyz(t, port, 200, 60*time.Second)
				after = append(after, sampleStats(t, port))
			}
			waitTSOTerminal(t, sim, ids, 90*time.Second)
			after = append(after, sampleStats(t, port))
			leak := leakCheck(t, name, port, base, after, 5)
			up := []bridgetest.Window{{From: from, To: c.stop(t, 30*time.Second)}}
			rep := checkEvents(t, n.url, "tso", "prod", tsoTruth(sim, 0), up, 300*time.Millisecond)
			r.record(t, faultRow{fault: name, runs: restarts, rep: rep, leak: leak}, len(ids)*5)
		})
	}
}

// natsClusterNodeLoss runs a 3-node cluster (routes on loopback), the
// stream and buckets with 3 replicas, and SIGKILLs one node under the
// running bridge, restarting it a few seconds later.
func (r *faultRig) natsClusterNodeLoss(t *testing.T) {
	var ports, cports []int
	var routes, urls []string
	for i := 0; i < 3; i++ {
		ports = append(ports, freePort(t))
		cports = append(cports, freePort(t))
		routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", cports[i]))
		urls = append(urls, fmt.Sprintf("nats://127.0.0.1:%d", ports[i]))
	}
	var nodes []*natsProc
	for i := 0; i < 3; i++ {
		nodes = append(nodes, startNATS(t, r.natsBin, natsProcOptions{name: fmt.Sprintf("n%d", i), port: ports[i], clusterPort: cports[i], routes: routes, noWait: true}))
	}
	for _, n := range nodes {
		n.waitJetStream(t, 90*time.Second)
	}
	sim := tsosim.NewServer(tsosim.Options{Users: map[string]string{"ops": tsoPassword}})
	defer sim.Close()
	losses := r.scale.clusterLosses
	ids := tsoStorm(sim, "node", 24, time.Duration(losses)*6*time.Second, 500*time.Millisecond)
	t.Setenv("TSO_PASSWORD", tsoPassword)
	port := freePort(t)
	cfg := bridgeConf{dir: t.TempDir(), natsURL: strings.Join(urls, ","), httpPort: port, replicas: 3, ackTO: 2 * time.Second,
		instances: tsoInstance("prod", sim.URL, ids, "")}.write(t)
	c := startChild(t, r.bridgeBin, "run", "--config", cfg)
	from := c.waitReady(t, 90*time.Second)
	waitReadyz(t, port, 200, 60*time.Second)
	base := baseline(t, port, len(ids))
	var after []procStats
	for k := 0; k < losses; k++ {
		time.Sleep(time.Duration(1500+rand.IntN(1000)) * time.Millisecond)
		victim := nodes[rand.IntN(len(nodes))]
		victim.signal(syscall.SIGKILL)
		time.Sleep(3 * time.Second)
		victim.start(t, false)
		for _, n := range nodes {
			n.waitJetStream(t, 90*time.Second)
		}
		waitReadyz(t, port, 200, 60*time.Second)
		after = append(after, sampleStats(t, port))
	}
	waitTSOTerminal(t, sim, ids, 90*time.Second)
	after = append(after, sampleStats(t, port))
	leak := leakCheck(t, "cluster", port, base, after, 5)
	up := []bridgetest.Window{{From: from, To: c.stop(t, 30*time.Second)}}
	waitStreamSettled(t, urls, "JOBS")
	rep := checkEvents(t, urls[0], "tso", "prod", tsoTruth(sim, 0), up, 300*time.Millisecond)
	// The first READY may end before a cluster-connected bridge is up.
	r.record(t, faultRow{fault: "NATS cluster (R3) node SIGKILL, restarted", runs: losses, rep: rep, leak: leak}, len(ids)*4)
}

// waitStreamSettled waits until every node of a cluster answers for the
// stream with the same message count and all its replicas current, so that
// reading it does not race a node that is still catching up.
func waitStreamSettled(t *testing.T, urls []string, stream string) {
	t.Helper()
	bridgetest.WaitFor(t, 90*time.Second, "stream "+stream+" settled on every node", func() bool {
		var msgs []uint64
		for _, u := range urls {
			nc, err := nats.Connect(u, nats.Timeout(time.Second))
			if err != nil {
				return false
			}
			js, _ := jetstream.New(nc)
			st, err := js.Stream(ctxT(t, 3*time.Second), stream)
			if err != nil {
				nc.Close()
				return false
			}
			info, err := st.Info(ctxT(t, 3*time.Second))
			nc.Close()
			if err != nil || info.Cluster == nil || info.Cluster.Leader == "" {
				return false
			}
			for _, p := range info.Cluster.Replicas {
				if !p.Current || p.Offline {
					return false
				}
			}
			msgs = append(msgs, info.State.Msgs)
		}
		for _, m := range msgs {
			if m != msgs[0] {
				return false
			}
		}
		return true
	})
}
