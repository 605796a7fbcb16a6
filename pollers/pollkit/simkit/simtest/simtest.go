// Package simtest owns what the tests of a poller against its vendor
// simulator share: a log sink the race detector accepts, quick retries,
// the simulator's certificate as a CA file, and a burst of concurrent
// polls. A rig (simulator, clock,
// poller) stays in each vendor's tests: its types and defaults are the
// vendor's.
package simtest

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/jobbridge/jobbridge/bridge"
	"github.com/jobbridge/jobbridge/bridge/backoff"
	"github.com/jobbridge/jobbridge/pollers/pollkit"
)

// LogBuffer is a log sink that a poller's goroutines write while the test
// reads it (to check that no secret is logged, say). The zero value is
// ready to use.
type LogBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p.
func (l *LogBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// String returns everything written so far.
func (l *LogBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Logger returns a debug-level logger that writes to l.
func (l *LogBuffer) Logger() zerolog.Logger { return zerolog.New(l).Level(zerolog.DebugLevel) }

// QuickRetries are client options that retry as a real client would (4
// attempts) but after milliseconds, so fault tests run fast.
func QuickRetries() pollkit.ClientOptions {
	return pollkit.ClientOptions{
		Backoff:     backoff.Policy{Initial: time.Millisecond, Max: 5 * time.Millisecond},
		MaxAttempts: 4,
	}
}

// WriteCA writes cert (a TLS simulator's Certificate) as a PEM file in the
// test's temporary directory and returns its path: the CAFile of a poller
// that trusts the simulator.
func WriteCA(t testing.TB, cert *x509.Certificate) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "simulator-ca.pem")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// PollConcurrently polls job n times at once and fails the test for each
// poll that errs: the burst that must meet an expired credential with a
// single renewal.
func PollConcurrently(t testing.TB, p bridge.Poller, job bridge.JobRef, n int) {
	t.Helper()
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			if _, err := p.Poll(context.Background(), job); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
}
