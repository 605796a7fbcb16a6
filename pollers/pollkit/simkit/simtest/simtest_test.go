package simtest

import (
	"context"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/jobbridge/jobbridge/bridge"
	"github.com/jobbridge/jobbridge/pollers/pollkit"
	"github.com/jobbridge/jobbridge/pollers/pollkit/simkit"
)

func TestLogBufferTakesConcurrentWrites(t *testing.T) {
	var logs LogBuffer
	log := logs.Logger()
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() { log.Debug().Msg("line") })
	}
	wg.Wait()
	if n := strings.Count(logs.String(), `"level":"debug","message":"line"`); n != 8 {
		t.Fatalf("%d debug lines:\n%s", n, logs.String())
	}
}

func TestWriteCALetsAPollerClientTrustTheSimulator(t *testing.T) {
	h := simkit.NewHost()
	defer h.Close()
	ts, err := h.Listen(simkit.LocalAddr, true, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "{}")
	}))
	if err != nil {
		t.Fatal(err)
	}
	get := func(caFile string) error {
		opts := QuickRetries()
		opts.BaseURL, opts.CAFile, opts.MaxAttempts = ts.URL, caFile, 1
		c, err := pollkit.NewClient(opts)
		if err != nil {
			return err
		}
		_, err = c.Do(context.Background(), pollkit.Request{Path: "/x"})
		return err
	}
	if err := get(WriteCA(t, h.Certificate())); err != nil {
		t.Fatalf("with the CA file: %v", err)
	}
	if err := get(""); err == nil {
		t.Fatal("without the CA file the simulator's certificate was trusted")
	}
}

type countingPoller struct {
	mu    sync.Mutex
	calls int
}

func (p *countingPoller) Poll(_ context.Context, job bridge.JobRef) (bridge.Observation, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.calls++
	return bridge.Observation{Job: job}, nil
}

func TestPollConcurrentlyPollsNTimes(t *testing.T) {
	p := &countingPoller{}
	PollConcurrently(t, p, bridge.JobRef{Vendor: "v", Instance: "i", ID: "j"}, 25)
	if p.calls != 25 {
		t.Fatalf("%d polls, want 25", p.calls)
	}
}
