// Package natsconn owns jobbridge's link to NATS: the embedded nats-server
// used when no URL is configured, and client connections with the
// authentication and TLS options a production NATS needs.
package natsconn

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/jobbridge/jobbridge/bridge"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"
)

// EmbeddedOptions configure the in-process server.
type EmbeddedOptions struct {
	// Listen is host:port; port 0 picks a free one. The host must be a
	// loopback address unless AllowRemote is set: an embedded server has no
	// authentication.
	Listen      string
	AllowRemote bool
	// StoreDir holds JetStream's files.
	StoreDir string
	// MaxStore bounds JetStream file storage in bytes (0: server default).
	MaxStore int64
	Name     string
	// Logger receives what happens to the server's JetStream while it runs
	// (switched off when the store is full, back on once it has room).
	Logger zerolog.Logger
}

// StartEmbedded starts a nats-server with JetStream in this process and
// waits until it accepts connections.
func StartEmbedded(opts EmbeddedOptions) (*server.Server, error) {
	if opts.Listen == "" {
		opts.Listen = "127.0.0.1:0"
	}
	host, portStr, err := net.SplitHostPort(opts.Listen)
	if err != nil {
		return nil, fmt.Errorf("embedded NATS listen address %q: %w (use host:port, e.g. 127.0.0.1:4222)", opts.Listen, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port < 0 || port > 65535 {
		return nil, fmt.Errorf("embedded NATS listen port %q is not a port number", portStr)
	}
	if ip := net.ParseIP(host); (ip == nil || !ip.IsLoopback()) && host != "localhost" && !opts.AllowRemote {
		return nil, fmt.Errorf("embedded NATS would listen on %q, which is not loopback: the embedded server has no authentication; use 127.0.0.1 or run your own NATS and set nats.url", host)
	}
	if port == 0 {
		port = server.RANDOM_PORT
	}
	if opts.StoreDir == "" {
		return nil, errors.New("embedded NATS needs a store directory (dataDir)")
	}
	if err := os.MkdirAll(opts.StoreDir, 0o750); err != nil {
		return nil, fmt.Errorf("embedded NATS store directory %s: %w (check the dataDir setting and its permissions)", opts.StoreDir, err)
	}
	probe := filepath.Join(opts.StoreDir, ".write-test")
	if err := os.WriteFile(probe, []byte("ok"), 0o600); err != nil {
		return nil, fmt.Errorf("embedded NATS store directory %s is not writable: %w", opts.StoreDir, err)
	}
	_ = os.Remove(probe)
	name := opts.Name
	if name == "" {
		name = "jobbridge-embedded"
	}
	s, err := server.NewServer(&server.Options{
		ServerName:        name,
		Host:              host,
		Port:              port,
		JetStream:         true,
		StoreDir:          opts.StoreDir,
		JetStreamMaxStore: opts.MaxStore,
		NoLog:             true,
		NoSigs:            true,
	})
	if err != nil {
		return nil, fmt.Errorf("embedded NATS: %w", err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		s.Shutdown()
		return nil, fmt.Errorf("embedded NATS did not start within 10s on %s (is the port taken?)", opts.Listen)
	}
	if jsc := s.JetStreamConfig(); jsc != nil {
		trouble := &atomic.Bool{}
		s.SetLoggerV2(serverLog{log: opts.Logger, trouble: trouble}, false, false, false)
		// The running config names <StoreDir>/jetstream; EnableJetStream
		// wants the directory it was first given.
		jsc.StoreDir = opts.StoreDir
		go keepJetStream(s, *jsc, trouble, keepJetStreamEvery, opts.Logger)
	}
	return s, nil
}

// TLSOptions configure the client side of TLS.
type TLSOptions struct {
	CAFile             string
	CertFile, KeyFile  string
	InsecureSkipVerify bool
}

// Enabled reports whether any TLS setting was given.
func (t TLSOptions) Enabled() bool {
	return t.CAFile != "" || t.CertFile != "" || t.InsecureSkipVerify
}

// Config builds a tls.Config: verification on unless InsecureSkipVerify.
func (t TLSOptions) Config() (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: t.InsecureSkipVerify} //nolint:gosec // explicit opt-in, logged by callers
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("read CA file %s: %w", t.CAFile, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("CA file %s holds no PEM certificate", t.CAFile)
		}
		cfg.RootCAs = pool
	}
	if t.CertFile != "" || t.KeyFile != "" {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("client certificate %s / key %s: %w", t.CertFile, t.KeyFile, err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// ConnectOptions configure a client connection.
type ConnectOptions struct {
	URL       string
	Name      string
	User      string
	Password  bridge.Secret
	Token     bridge.Secret
	CredsFile string
	NKeyFile  string
	TLS       TLSOptions
	// InProcess connects through the embedded server without a socket.
	InProcess *server.Server
	// ConnectTimeout bounds the wait for the first connection (default 30s).
	ConnectTimeout time.Duration
	// NoReconnectBuffer makes a publish fail at once while the connection
	// is down instead of queueing it in nats.go's reconnect buffer. Scale-out
	// needs it: a replica cut off for longer than the lease TTL would
	// otherwise flush, on reconnecting, events it published before it fenced
	// itself, after a peer took the shard over and published that job's
	// next sequence numbers itself. Failed publishes are retried by the
	// bridge's publisher, through the lease check.
	NoReconnectBuffer bool
	Logger            zerolog.Logger
}

// Connect dials NATS and keeps reconnecting forever after a loss: the
// publisher holds events meanwhile and retries.
func Connect(ctx context.Context, o ConnectOptions) (*nats.Conn, error) {
	if o.Name == "" {
		o.Name = "jobbridge"
	}
	if o.ConnectTimeout <= 0 {
		o.ConnectTimeout = 30 * time.Second
	}
	log := o.Logger
	opts := []nats.Option{
		nats.Name(o.Name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(500 * time.Millisecond),
		nats.ReconnectJitter(250*time.Millisecond, time.Second),
		nats.RetryOnFailedConnect(true),
		nats.DisconnectErrHandler(func(nc *nats.Conn, err error) {
			if err == nil || nc.IsClosed() || nc.IsDraining() {
				return // an orderly close, not a loss
			}
			log.Warn().Err(err).Msg("NATS connection lost; reconnecting")
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			log.Info().Str("url", nc.ConnectedUrlRedacted()).Msg("NATS connection restored")
		}),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			log.Warn().Err(err).Msg("NATS asynchronous error")
		}),
	}
	if o.NoReconnectBuffer {
		opts = append(opts, nats.ReconnectBufSize(-1))
	}
	if o.User != "" {
		opts = append(opts, nats.UserInfo(o.User, o.Password.Reveal()))
	}
	if !o.Token.IsZero() {
		opts = append(opts, nats.Token(o.Token.Reveal()))
	}
	if o.CredsFile != "" {
		opts = append(opts, nats.UserCredentials(o.CredsFile))
	}
	if o.NKeyFile != "" {
		opt, err := nats.NkeyOptionFromSeed(o.NKeyFile)
		if err != nil {
			return nil, fmt.Errorf("NKey seed file %s: %w", o.NKeyFile, err)
		}
		opts = append(opts, opt)
	}
	if o.TLS.Enabled() {
		cfg, err := o.TLS.Config()
		if err != nil {
			return nil, fmt.Errorf("NATS TLS: %w", err)
		}
		if o.TLS.InsecureSkipVerify {
			log.Warn().Msg("NATS TLS certificate verification is OFF (nats.tls.insecureSkipVerify): anyone on the path can read and forge events; use a CA file instead")
		}
		opts = append(opts, nats.Secure(cfg))
	}
	if o.InProcess != nil {
		opts = append(opts, nats.InProcessServer(o.InProcess))
	}
	nc, err := nats.Connect(o.URL, opts...)
	if err != nil {
		return nil, fmt.Errorf("connect to NATS at %s: %w", o.URL, err)
	}
	deadline := time.NewTimer(o.ConnectTimeout)
	defer deadline.Stop()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for !nc.IsConnected() {
		select {
		case <-ctx.Done():
			nc.Close()
			return nil, ctx.Err()
		case <-deadline.C:
			last := nc.LastError()
			nc.Close()
			return nil, fmt.Errorf("cannot reach NATS at %s within %s (last error: %v): check nats.url, credentials and TLS settings", o.URL, o.ConnectTimeout, last)
		case <-tick.C:
		}
	}
	return nc, nil
}
