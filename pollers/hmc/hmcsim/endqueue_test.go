package hmcsim

import (
	"slices"
	"testing"
	"time"
)

// Completion notices come in end order, jobs ending at the same instant in
// the order they were added, each once, and a job that never ends never
// notifies: what the full scan of every job gave, now from endQueue.
func TestCompletionNoticesInEndOrder(t *testing.T) {
	s, clk := newSim(t, Options{}) // no tick: only these Syncs deliver
	var got []string
	cancel := s.Subscribe(func(n Notice) {
		if n.Kind == NoticeJobCompletion {
			got = append(got, n.JobID)
		}
	})
	defer cancel()
	ends := map[string]time.Duration{"late": 3 * time.Second, "tie-a": 2 * time.Second, "early": time.Second, "tie-b": 2 * time.Second}
	for _, id := range []string{"late", "tie-a", "early", "tie-b"} {
		s.MustAddJob(id, Step{Status: StatusRunning, For: ends[id]}, Step{Status: StatusComplete})
	}
	s.MustAddJob("forever", Step{Status: StatusRunning})
	s.Sync()
	if len(got) != 0 {
		t.Fatalf("notices before any job ended: %v", got)
	}
	clk.Advance(2 * time.Second)
	s.Sync()
	if want := []string{"early", "tie-a", "tie-b"}; !slices.Equal(got, want) {
		t.Fatalf("after 2s: %v, want %v", got, want)
	}
	// A job added now that has ended already notifies at the next Sync.
	s.MustAddJob("instant", Step{Status: StatusComplete})
	clk.Advance(time.Hour)
	s.Sync()
	s.Sync()
	if want := []string{"early", "tie-a", "tie-b", "instant", "late"}; !slices.Equal(got, want) {
		t.Fatalf("after an hour: %v, want %v", got, want)
	}
}
