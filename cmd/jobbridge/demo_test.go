package main

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"testing"
)

// syncBuffer is written by the demo's goroutines and read by the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestDemoShowsEventsWithinSeconds runs `jobbridge demo` as `make demo`
// does, for a few seconds, and checks that transitions to several states
// scroll by and that it stops cleanly.
func TestDemoShowsEventsWithinSeconds(t *testing.T) {
	var out, errs syncBuffer
	code := run(context.Background(), []string{"demo", "--duration", "9s", "--new-job-every", "1s"}, &out, &errs)
	if code != 0 {
		t.Fatalf("demo exited %d\nstdout:\n%s\nstderr:\n%s", code, out.String(), errs.String())
	}
	text := out.String()
	for _, want := range []string{"→ pending", "→ running", "→ failed", "→ canceled", "→ succeeded", "PROGRESS", "demo stopped", "ticket 42/rollback?",
		"  tso ", "  helix ", "  arcgis ", "  huawei ", "  hmc ", " ▸ "} {
		if !strings.Contains(text, want) {
			t.Errorf("demo output lacks %q:\n%s", want, text)
		}
	}
	if strings.Contains(errs.String(), "ERR") {
		t.Errorf("demo logged errors:\n%s", errs.String())
	}
}
