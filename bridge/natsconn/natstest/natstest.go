// Package natstest starts throw-away NATS servers with JetStream for tests
// and benchmarks, in the style of net/http/httptest: each listens on
// 127.0.0.1 on a random port and is shut down by the test's cleanup.
package natstest

import (
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
	if o.StoreDir == "" {
		o.StoreDir = tb.TempDir()
	}
	port := o.Port
	if port == 0 {
		port = server.RANDOM_PORT
	}
	s, err := server.NewServer(&server.Options{
		ServerName: "test", Host: "127.0.0.1", Port: port, JetStream: true,
		StoreDir: o.StoreDir, NoLog: true, NoSigs: true,
	})
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
