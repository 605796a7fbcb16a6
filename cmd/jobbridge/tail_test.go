package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/jobbridge/jobbridge/bridge"
	"github.com/jobbridge/jobbridge/bridge/bridgetest"
	"github.com/jobbridge/jobbridge/bridge/natsconn/natstest"
)

// TestTailFilters checks that tail's filters select exactly the events
// asked for, including for a job id that holds subject wildcards.
func TestTailFilters(t *testing.T) {
	s := natstest.RunServer(t, natstest.Options{})
	nc := natstest.Connect(t, s)
	p := bridgetest.NewPoller()
	hostile := "a.b *>"
	p.Set(hostile, bridge.StateFailed, "FAILED")
	p.Set("a", bridge.StateFailed, "FAILED")
	p.Set("ok", bridge.StateSucceeded, "COMPLETED")
	h := bridgetest.StartBridge(t, nc, []bridge.Instance{{Vendor: "fake", Name: "test", Poller: p}}, nil)
	for _, id := range []string{hostile, "a", "ok"} {
		h.Watch("fake", "test", id)
	}
	bridgetest.WaitFor(t, 10*time.Second, "three events", func() bool { return len(h.Events()) == 3 })

	tail := func(o tailOptions) []string {
		t.Helper()
		o.all, o.stream, o.prefix, o.asJSON = true, "JOBS", "jobs", true
		var out bytes.Buffer
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		if err := tailEvents(ctx, nc, o, &out); err != nil {
			t.Fatal(err)
		}
		var jobs []string
		for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
			var ev struct{ Subject string }
			if line != "" && json.Unmarshal([]byte(line), &ev) == nil {
				jobs = append(jobs, ev.Subject)
			}
		}
		return jobs
	}
	if got := tail(tailOptions{job: hostile, count: 1}); len(got) != 1 || got[0] != hostile {
		t.Errorf("--job %q gave %v", hostile, got)
	}
	if got := tail(tailOptions{state: "failed", count: 2}); len(got) != 2 || strings.Contains(strings.Join(got, ","), "ok") {
		t.Errorf("--state failed gave %v", got)
	}
	if got := tail(tailOptions{vendor: "fake", instance: "test", count: 3}); len(got) != 3 {
		t.Errorf("vendor/instance filter gave %v", got)
	}
	var human bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := tailEvents(ctx, nc, tailOptions{job: "ok", count: 1, all: true, stream: "JOBS", prefix: "jobs"}, &human); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(human.String(), "→ succeeded") || !strings.Contains(human.String(), "[COMPLETED]") {
		t.Errorf("human line: %q", human.String())
	}
	if err := tailEvents(ctx, nc, tailOptions{state: "bogus", stream: "JOBS", prefix: "jobs"}, &human); err == nil {
		t.Error("an unknown --state must be refused")
	}
}
