package natsconn

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/rs/zerolog"
)

// keepJetStreamEvery is how often the embedded server's JetStream is
// checked, and switched back on when it went off.
const keepJetStreamEvery = time.Second

// keepJetStream runs for the life of the embedded server s. When its store
// runs out of space or a write to it fails, nats-server either switches
// JetStream off or (standalone, as here) leaves the stream with a sticky
// write error: every later publish fails even once the disk has room
// again, until the server restarts. In jobbridge the server is
// in-process, and a restart would drop the events the bridge holds in
// memory meanwhile. So the bridge says what happened (an error log, and
// /readyz is 503 because publishing fails) and, once the store takes
// writes again, restarts JetStream itself: the stream and buckets are
// reloaded from the store and the held events are published in order.
// trouble is set by the server's logger (serverLog) on a store write
// error. keepJetStream returns when the server shuts down.
func keepJetStream(s *server.Server, cfg server.JetStreamConfig, trouble *atomic.Bool, every time.Duration, log zerolog.Logger) {
	done := make(chan struct{})
	go func() {
		s.WaitForShutdown()
		close(done)
	}()
	tick := time.NewTicker(every)
	defer tick.Stop()
	down := false
	for {
		select {
		case <-done:
			return
		case <-tick.C:
		}
		if s.JetStreamEnabled() && !trouble.Load() {
			continue
		}
		if !down {
			down = true
			log.Error().Str("storeDir", cfg.StoreDir).
				Msg("the embedded NATS server cannot write its store (out of space, or a write failed): publishing stops and events are held in memory (see /readyz) until it can; free space in the store directory or fix the disk")
		}
		if err := probeWritable(cfg.StoreDir, 1<<20); err != nil {
			continue
		}
		trouble.Store(false)
		if s.JetStreamEnabled() {
			if err := s.ShutdownJetStream(); err != nil {
				log.Warn().Err(err).Msg("stopping the embedded server's JetStream to clear its write error failed; retrying")
				continue
			}
		}
		c := cfg
		if err := s.EnableJetStream(&c); err != nil {
			trouble.Store(true)
			log.Warn().Err(err).Str("storeDir", cfg.StoreDir).Msg("restarting the embedded server's JetStream failed; retrying")
			continue
		}
		down = false
		log.Info().Str("storeDir", cfg.StoreDir).Msg("the embedded NATS server's store takes writes again: JetStream restarted from it, held events follow")
	}
}

// serverLog passes the embedded server's warnings and errors to the
// bridge's log (component nats-server) and notes store write errors for
// keepJetStream. Notices, debug and trace lines are dropped: NoLog kept
// them quiet before, and they are the server's business.
type serverLog struct {
	log     zerolog.Logger
	trouble *atomic.Bool
}

func (l serverLog) Noticef(string, ...any) {}
func (l serverLog) Debugf(string, ...any)  {}
func (l serverLog) Tracef(string, ...any)  {}
func (l serverLog) Warnf(format string, v ...any) {
	l.log.Warn().Str("component", "nats-server").Msg(fmt.Sprintf(format, v...))
}
func (l serverLog) Fatalf(format string, v ...any) { l.Errorf(format, v...) }
func (l serverLog) Errorf(format string, v ...any) {
	msg := fmt.Sprintf(format, v...)
	if isStoreFailure(msg) {
		l.trouble.Store(true)
	}
	l.log.Error().Str("component", "nats-server").Msg(msg)
}

// isStoreFailure recognises nats-server's messages for a failed store
// write ("Critical write error", "failed to store a msg", "out of ...
// resources"). The server exposes no other signal for the sticky error.
func isStoreFailure(msg string) bool {
	m := strings.ToLower(msg)
	return strings.Contains(m, "write error") || strings.Contains(m, "failed to store") ||
		strings.Contains(m, "no space left") || strings.Contains(m, "out of") && strings.Contains(m, "resources")
}

// probeWritable writes and removes n bytes in dir: whether the store has
// room again.
func probeWritable(dir string, n int) error {
	p := filepath.Join(dir, ".space-probe")
	defer os.Remove(p)
	f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(make([]byte, n)); err != nil {
		f.Close()
		return fmt.Errorf("store %s has no room: %w", dir, err)
	}
	return f.Close()
}
