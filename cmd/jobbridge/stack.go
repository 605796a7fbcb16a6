package main

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"path/filepath"
	"time"

	"github.com/jobbridge/jobbridge/bridge"
	"github.com/jobbridge/jobbridge/bridge/backoff"
	"github.com/jobbridge/jobbridge/bridge/config"
	"github.com/jobbridge/jobbridge/bridge/natsconn"
	hmcnotify "github.com/jobbridge/jobbridge/notifiers/hmc"
	"github.com/jobbridge/jobbridge/pollers/pollkit"
	"github.com/jobbridge/jobbridge/pollers/registry"
	"github.com/jobbridge/jobbridge/schemas"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rs/zerolog"
)

// stack is a running bridge with what it depends on.
type stack struct {
	cfg      *config.Config
	log      zerolog.Logger
	embedded *server.Server
	nc       *nats.Conn
	bridge   *bridge.Bridge
	watchSvc *bridge.WatchService
	httpSrv  *http.Server
	reg      *prometheus.Registry
	natsURL  string
	push     []*hmcnotify.Notifier
}

// extraInstances lets demo add instances built in code (simulators).
type stackOptions struct {
	extraInstances []bridge.Instance
	extraWatches   []bridge.Watch
}

// startStack connects to NATS (starting the embedded server when no URL is
// configured), builds the pollers and the bridge, and serves the watch API
// and /metrics. The caller runs s.bridge.Run and then s.close.
func startStack(ctx context.Context, cfg *config.Config, log zerolog.Logger, so stackOptions) (*stack, error) {
	s := &stack{cfg: cfg, log: log, reg: prometheus.NewRegistry()}
	s.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if err := os.MkdirAll(cfg.DataDir, 0o750); err != nil {
		return nil, fmt.Errorf("data directory %s: %w (set dataDir or JOBBRIDGE_DATADIR to a writable directory)", cfg.DataDir, err)
	}
	env := os.LookupEnv
	co := natsconn.ConnectOptions{URL: cfg.NATS.URL, Name: cfg.NATS.Name, User: cfg.NATS.User,
		CredsFile: cfg.NATS.CredsFile, NKeyFile: cfg.NATS.NKeyFile, Logger: log,
		TLS:               natsconn.TLSOptions{CAFile: cfg.NATS.TLS.CAFile, CertFile: cfg.NATS.TLS.CertFile, KeyFile: cfg.NATS.TLS.KeyFile, InsecureSkipVerify: cfg.NATS.TLS.InsecureSkipVerify},
		NoReconnectBuffer: cfg.Cluster.Enabled}
	var err error
	if !cfg.NATS.Password.IsZero() {
		if co.Password, err = cfg.NATS.Password.Resolve(env); err != nil {
			return nil, fmt.Errorf("nats.password: %w", err)
		}
	}
	if !cfg.NATS.Token.IsZero() {
		if co.Token, err = cfg.NATS.Token.Resolve(env); err != nil {
			return nil, fmt.Errorf("nats.token: %w", err)
		}
	}
	if cfg.NATS.URL == "" {
		s.embedded, err = natsconn.StartEmbedded(natsconn.EmbeddedOptions{Listen: cfg.NATS.Embedded.Listen, StoreDir: cfg.NATS.Embedded.StoreDir, Logger: log})
		if err != nil {
			return nil, err
		}
		co.URL = s.embedded.ClientURL()
		log.Info().Str("url", co.URL).Str("storeDir", cfg.NATS.Embedded.StoreDir).
			Msg("no nats.url configured: started an embedded NATS server with JetStream; connect with `jobbridge tail` or `nats --server " + co.URL + "`")
		_ = os.WriteFile(filepath.Join(cfg.DataDir, urlFile), []byte(co.URL+"\n"), 0o600)
	}
	s.natsURL = co.URL
	if s.nc, err = natsconn.Connect(ctx, co); err != nil {
		s.close()
		return nil, err
	}
	instances, err := registry.Build(ctx, cfg.Instances, pollkit.Deps{Env: env, Logger: log})
	if err != nil {
		s.close()
		return nil, fmt.Errorf("vendor instances: %w", err)
	}
	push, err := preparePush(cfg.Instances, instances)
	if err != nil {
		s.close()
		return nil, err
	}
	instances = append(instances, so.extraInstances...)
	storage := jetstream.FileStorage
	if cfg.Stream.Storage == "memory" {
		storage = jetstream.MemoryStorage
	}
	rawCap := cfg.Publish.RawPayloadCap
	if rawCap == 0 {
		rawCap = -1 // 0 in the config turns the raw payload off
	}
	s.bridge, err = bridge.New(ctx, bridge.Options{
		Conn: s.nc,
		Stream: bridge.StreamOptions{Name: cfg.Stream.Name, SubjectPrefix: cfg.Stream.SubjectPrefix, Replicas: cfg.Stream.Replicas,
			MaxAge: cfg.Stream.MaxAge.Std(), DuplicateWindow: cfg.Stream.DuplicateWindow.Std(), Storage: storage,
			Manage: cfg.Stream.Manage, StateBucket: cfg.Stream.StateBucket, WatchBucket: cfg.Stream.WatchBucket},
		Publish: bridge.PublisherOptions{MaxInFlight: cfg.Publish.MaxInFlight, MaxPending: cfg.Publish.MaxPending, AckTimeout: cfg.Publish.AckTimeout.Std()},
		Schedule: bridge.ScheduleOptions{Interval: cfg.Schedule.Interval.Std(), FastInterval: cfg.Schedule.FastInterval.Std(),
			FastFor: cfg.Schedule.FastFor.Std(), IdleAfter: cfg.Schedule.IdleAfter.Std(), IdleInterval: cfg.Schedule.IdleInterval.Std(),
			Jitter: cfg.Schedule.Jitter, RetainAfterTerminal: cfg.Schedule.RetainAfterTerminal.Std(),
			StalledAfter: cfg.Schedule.StalledAfter.Std(), Workers: cfg.Schedule.Workers,
			ErrorBackoff: backoff.Policy{Initial: time.Second, Max: cfg.Schedule.ErrorBackoffMax.Std(), Multiplier: 2, Jitter: 0.2}},
		Encoding:       bridge.EncoderOptions{Mode: bridge.WireMode(cfg.Publish.Mode), RawCap: rawCap},
		Instances:      instances,
		InitialWatches: append(registry.InitialWatches(cfg.Instances), so.extraWatches...),
		FlushInterval:  cfg.Publish.FlushInterval.Std(),
		Logger:         log,
		Registerer:     s.reg,
		Cluster: bridge.ClusterOptions{Enabled: cfg.Cluster.Enabled, ReplicaID: cfg.Cluster.ReplicaID, Shards: cfg.Cluster.Shards,
			LeaseBucket: cfg.Cluster.LeaseBucket, LeaseTTL: cfg.Cluster.LeaseTTL.Std()},
	})
	if err != nil {
		s.close()
		return nil, err
	}
	if cfg.Cluster.Enabled {
		// One replica at a time holds an HMC's push session: the one
		// holding the instance's lease. Its notifier reconciles on connect.
		for _, p := range push {
			s.bridge.AddSingleton("notify", p.inst.Vendor, p.inst.Name, func(ctx context.Context) { runPushSingleton(ctx, p, s.bridge, log, s.reg) })
		}
	} else if s.push, err = startPush(ctx, push, s.bridge, log, s.reg); err != nil {
		s.close()
		return nil, err
	}
	if cfg.WatchAPI.Enabled {
		if s.watchSvc, err = bridge.StartWatchService(s.nc, cfg.WatchAPI.ServiceName, serviceVersion(), s.bridge.Registry(), s.bridge.CheckInstance); err != nil {
			s.close()
			return nil, err
		}
	}
	if cfg.HTTP.Listen != "" {
		if err := s.serveHTTP(); err != nil {
			s.close()
			return nil, err
		}
	}
	return s, nil
}

// runPushSingleton runs one HMC notifier while this replica holds its
// lease, starting it again (after a pause) if it cannot start.
func runPushSingleton(ctx context.Context, p pushSetup, b *bridge.Bridge, log zerolog.Logger, reg prometheus.Registerer) {
	for wait := time.Second; ctx.Err() == nil; wait = min(2*wait, time.Minute) {
		ns, err := startPush(ctx, []pushSetup{p}, b, log, reg)
		if err == nil {
			<-ctx.Done()
			for _, n := range ns {
				_ = n.Stop()
			}
			return
		}
		log.Error().Err(err).Str("instance", p.inst.Name).Dur("retryIn", wait).Msg("cannot start HMC push notifications; fix the instance configuration")
		select {
		case <-ctx.Done():
		case <-time.After(wait):
		}
	}
}

// serviceVersion is the build version when it is SemVer, as micro requires.
func serviceVersion() string {
	v := version
	if len(v) > 0 && v[0] == 'v' {
		v = v[1:]
	}
	return v
}

func (s *stack) serveHTTP() error {
	ln, err := net.Listen("tcp", s.cfg.HTTP.Listen)
	if err != nil {
		return fmt.Errorf("http.listen %s: %w", s.cfg.HTTP.Listen, err)
	}
	token := bridge.Secret{}
	if !s.cfg.HTTP.Token.IsZero() {
		if token, err = s.cfg.HTTP.Token.Resolve(lookupEnv); err != nil {
			ln.Close()
			return fmt.Errorf("http.token: %w", err)
		}
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", requireToken(token, promhttp.HandlerFor(s.reg, promhttp.HandlerOpts{})))
	mux.Handle("GET /schemas/", requireToken(token, http.StripPrefix("/schemas/", http.FileServerFS(schemas.Files()))))
	if s.cfg.HTTP.Pprof {
		mux.Handle("/debug/pprof/", requireToken(token, http.HandlerFunc(pprof.Index)))
		mux.Handle("/debug/pprof/profile", requireToken(token, http.HandlerFunc(pprof.Profile)))
		mux.Handle("/debug/pprof/trace", requireToken(token, http.HandlerFunc(pprof.Trace)))
		mux.Handle("/debug/pprof/symbol", requireToken(token, http.HandlerFunc(pprof.Symbol)))
		s.log.Warn().Msg("http.pprof is on: /debug/pprof/ exposes profiles of this process")
	}
	if s.cfg.WatchAPI.Enabled {
		// The watch API over HTTP: any replica answers from the registry.
		mux.Handle("/v1/watches", requireToken(token, bridge.WatchHTTPHandler(s.bridge.Registry(), s.bridge.CheckInstance)))
		mux.Handle("/v1/watches/", requireToken(token, bridge.WatchHTTPHandler(s.bridge.Registry(), s.bridge.CheckInstance)))
	}
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if err := s.ready(); err != nil {
			http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	s.httpSrv = &http.Server{Handler: http.MaxBytesHandler(mux, 1<<20), ReadHeaderTimeout: 5 * time.Second, MaxHeaderBytes: 64 << 10}
	go func() {
		if err := s.httpSrv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error().Err(err).Msg("metrics and health endpoint stopped")
		}
	}()
	s.log.Info().Str("listen", ln.Addr().String()).Msg("serving /metrics, /healthz, /readyz and /v1/watches")
	return nil
}

func (s *stack) ready() error {
	select {
	case <-s.bridge.Ready():
	default:
		return errors.New("recovering tracker state")
	}
	if !s.nc.IsConnected() {
		return errors.New("NATS disconnected")
	}
	if !s.bridge.PublisherHealthy() {
		return errors.New("publishing to JetStream fails")
	}
	return nil
}

func (s *stack) close() {
	for _, n := range s.push {
		_ = n.Stop()
	}
	if s.httpSrv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_ = s.httpSrv.Shutdown(ctx)
		cancel()
	}
	if s.watchSvc != nil {
		_ = s.watchSvc.Stop()
	}
	if s.nc != nil {
		_ = s.nc.Drain()
		s.nc.Close()
	}
	if s.embedded != nil {
		s.embedded.Shutdown()
		s.embedded.WaitForShutdown()
		_ = os.Remove(filepath.Join(s.cfg.DataDir, urlFile))
	}
}

// requireToken guards a handler with a bearer token when one is configured.
// Health endpoints stay open: probes carry no credentials.
func requireToken(token bridge.Secret, h http.Handler) http.Handler {
	if token.IsZero() {
		return h
	}
	want := []byte("Bearer " + token.Reveal())
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), want) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="jobbridge"`)
			http.Error(w, "missing or wrong bearer token (http.token)", http.StatusUnauthorized)
			return
		}
		h.ServeHTTP(w, r)
	})
}
