package simkit

import (
	"strings"
	"testing"
	"time"
)

type step struct {
	Status string
	For    time.Duration
	Note   string
}

func (s step) hold() time.Duration { return s.For }
func (s step) status() string      { return s.Status }

func sameStatus(a, b step) bool { return a.Status == b.Status }

func TestScriptedTimelineShowsEachStepInTurn(t *testing.T) {
	tl := Scripted(t0, []step{{"READY", time.Minute, ""}, {"RUNNING", 2 * time.Minute, ""}, {"DONE", time.Hour, ""}}, step.hold)
	for _, tc := range []struct {
		at   time.Duration
		want string
	}{
		{-time.Minute, "READY"}, {0, "READY"}, {time.Minute - 1, "READY"}, {time.Minute, "RUNNING"},
		{3*time.Minute - 1, "RUNNING"}, {3 * time.Minute, "DONE"}, {100 * time.Hour, "DONE"},
	} {
		if got := tl.At(t0.Add(tc.at)).Step.Status; got != tc.want {
			t.Errorf("At(t0+%v) = %s, want %s", tc.at, got, tc.want)
		}
	}
	if got := len(tl.Until(t0.Add(90 * time.Second))); got != 2 {
		t.Errorf("Until(t0+90s) has %d segments, want 2", got)
	}
	if tl.First().Step.Status != "READY" || tl.Last().Step.Status != "DONE" || !tl.Last().Start.Equal(t0.Add(3*time.Minute)) {
		t.Errorf("first %+v last %+v", tl.First(), tl.Last())
	}
}

func TestChangesAreTheGroundTruthUpToNow(t *testing.T) {
	tl := Scripted(t0, []step{
		{"READY", time.Minute, "a"}, {"READY", time.Minute, "b"}, {"RUNNING", time.Minute, ""}, {"DONE", 0, ""},
	}, step.hold)
	var got []string
	for _, sg := range tl.Changes(t0.Add(2*time.Minute), sameStatus) {
		got = append(got, sg.Step.Status+"@"+sg.Start.Sub(t0).String())
	}
	// The second READY step shows nothing new; DONE has not begun.
	if strings.Join(got, " ") != "READY@0s RUNNING@2m0s" {
		t.Errorf("changes %v", got)
	}
	// What counts as a change is the simulator's to say.
	if n := len(tl.Changes(t0.Add(time.Hour), func(a, b step) bool { return a == b })); n != 4 {
		t.Errorf("%d changes when every step differs, want 4", n)
	}
	if n := len(tl.Changes(t0.Add(-time.Second), sameStatus)); n != 0 {
		t.Errorf("%d changes before the entity existed", n)
	}
}

func TestSetAtTheSameInstantReplaces(t *testing.T) {
	var tl Timeline[step]
	tl.Set(t0, step{Status: "WAITING"})
	tl.Set(t0, step{Status: "RUNNING"}) // nobody could have seen WAITING
	tl.Set(t0.Add(time.Minute), step{Status: "ENDED"})
	if c := tl.Changes(t0.Add(time.Hour), sameStatus); len(c) != 2 || c[0].Step.Status != "RUNNING" {
		t.Errorf("changes %+v", c)
	}
}

func TestCheckScript(t *testing.T) {
	for _, tc := range []struct {
		script []step
		want   string
	}{
		{nil, "the script is empty"},
		{[]step{{"A", time.Second, ""}, {" ", 0, ""}}, "script step 2 has no status"},
		{[]step{{"A", 0, ""}, {"B", 0, ""}}, "script step 1 (A) needs a positive duration; only the last step may omit it"},
	} {
		if err := CheckScript(tc.script, step.status, step.hold); err == nil || err.Error() != tc.want {
			t.Errorf("CheckScript(%v) = %v, want %q", tc.script, err, tc.want)
		}
	}
	if err := CheckScript([]step{{"A", time.Second, ""}, {"B", 0, ""}}, step.status, step.hold); err != nil {
		t.Errorf("a valid script: %v", err)
	}
}
