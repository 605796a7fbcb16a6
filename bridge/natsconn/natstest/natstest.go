// Package natstest starts throw-away NATS servers with JetStream for tests
// and benchmarks, in the style of net/http/httptest: each listens on
// 127.0.0.1 on a random port and is shut down by the test's cleanup.
package natstest

import (
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// Options tune a test server.
type Options struct {
	// StoreDir defaults to a fresh t.TempDir().
	StoreDir string
	// Port defaults to a random free port; set it to restart a server on the
	// port its clients know.
	Port int
}

// RunServer starts a JetStream server on 127.0.0.1.
func RunServer(tb testing.TB, o Options) *server.Server {
	tb.Helper()
	return StartServer(tb, &server.Options{ServerName: "test", Port: o.Port, JetStream: true, StoreDir: o.StoreDir})
}

// StartServer starts a server with options of the test's own (users, a
// token, a config file's accounts) and shuts it down in the test's
// cleanup. It listens on 127.0.0.1 whatever opts say, logs nothing and
// ignores signals; a zero Port is a random free one, and a JetStream
// server without a StoreDir gets a fresh t.TempDir().
func StartServer(tb testing.TB, opts *server.Options) *server.Server {
	tb.Helper()
	opts.Host, opts.NoLog, opts.NoSigs = "127.0.0.1", true, true
	if opts.Port == 0 {
		opts.Port = server.RANDOM_PORT
	}
	if opts.JetStream && opts.StoreDir == "" {
		opts.StoreDir = tb.TempDir()
	}
	s, err := server.NewServer(opts)
	if err != nil {
		tb.Fatalf("nats test server: %v", err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		tb.Fatal("nats test server did not start")
	}
	tb.Cleanup(func() {
		s.Shutdown()
		s.WaitForShutdown()
	})
	return s
}

// Connect returns a client connection closed by the test's cleanup.
func Connect(tb testing.TB, s *server.Server, opts ...nats.Option) *nats.Conn {
	tb.Helper()
	nc, err := nats.Connect(s.ClientURL(), opts...)
	if err != nil {
		tb.Fatalf("connect to nats test server: %v", err)
	}
	tb.Cleanup(nc.Close)
	return nc
}

// Cluster is an in-process JetStream cluster whose nodes route to each
// other over loopback.
type Cluster struct {
	tb      testing.TB
	Servers []*server.Server
	opts    []*server.Options
}

// StartCluster starts an n-node JetStream cluster on 127.0.0.1 (client and
// route ports picked free) and waits until it has a JetStream meta leader.
// The test's cleanup shuts it down.
func StartCluster(tb testing.TB, n int) *Cluster {
	tb.Helper()
	routePorts := make([]int, n)
	for i := range routePorts {
		routePorts[i] = freePort(tb)
	}
	c := &Cluster{tb: tb, Servers: make([]*server.Server, n), opts: make([]*server.Options, n)}
	for i := 0; i < n; i++ {
		var routes []*url.URL
		for k, p := range routePorts {
			if k != i {
				routes = append(routes, &url.URL{Scheme: "nats-route", Host: net.JoinHostPort("127.0.0.1", strconv.Itoa(p))})
			}
		}
		c.opts[i] = &server.Options{
			ServerName: fmt.Sprintf("node-%d", i), Host: "127.0.0.1", Port: freePort(tb),
			JetStream: true, StoreDir: tb.TempDir(), NoLog: true, NoSigs: true,
			Cluster: server.ClusterOpts{Name: "jobbridge-test", Host: "127.0.0.1", Port: routePorts[i]},
			Routes:  routes,
		}
	}
	for i := range c.opts {
		c.start(i)
	}
	tb.Cleanup(func() {
		for _, s := range c.Servers {
			if s != nil {
				s.Shutdown()
				s.WaitForShutdown()
			}
		}
	})
	c.WaitForLeader(30 * time.Second)
	return c
}

func (c *Cluster) start(i int) {
	s, err := server.NewServer(c.opts[i])
	if err != nil {
		c.tb.Fatalf("nats cluster node %d: %v", i, err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		c.tb.Fatalf("nats cluster node %d did not start", i)
	}
	c.Servers[i] = s
}

// WaitForLeader waits until a running node is the JetStream meta leader and
// every running node has caught up with it.
func (c *Cluster) WaitForLeader(timeout time.Duration) {
	c.tb.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		leader, current := false, true
		for _, s := range c.Servers {
			if s == nil || !s.Running() {
				continue
			}
			leader = leader || s.JetStreamIsLeader()
			current = current && s.JetStreamIsCurrent()
		}
		if leader && current {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	c.tb.Fatalf("nats cluster has no JetStream meta leader after %s", timeout)
}

// URLs returns every node's client URL, comma-separated, for a client that
// should fail over between them.
func (c *Cluster) URLs() string {
	var out []string
	for _, o := range c.opts {
		out = append(out, fmt.Sprintf("nats://127.0.0.1:%d", o.Port))
	}
	return strings.Join(out, ",")
}

// URL returns node i's client URL.
func (c *Cluster) URL(i int) string { return fmt.Sprintf("nats://127.0.0.1:%d", c.opts[i].Port) }

// Shutdown stops node i (its store is kept for Restart).
func (c *Cluster) Shutdown(i int) {
	s := c.Servers[i]
	if s == nil {
		return
	}
	s.Shutdown()
	s.WaitForShutdown()
	c.Servers[i] = nil
}

// Restart starts node i again on its ports and store.
func (c *Cluster) Restart(i int) {
	c.tb.Helper()
	if c.Servers[i] != nil {
		return
	}
	c.start(i)
}

func freePort(tb testing.TB) int {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("free port: %v", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}
