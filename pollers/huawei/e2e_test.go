package huawei_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jobbridge/jobbridge/bridge"
	"github.com/jobbridge/jobbridge/bridge/backoff"
	"github.com/jobbridge/jobbridge/bridge/bridgetest"
	"github.com/jobbridge/jobbridge/bridge/natsconn/natstest"
	"github.com/jobbridge/jobbridge/pollers/huawei"
	"github.com/jobbridge/jobbridge/pollers/huawei/huaweisim"
	"github.com/jobbridge/jobbridge/pollers/pollkit"
)

// The end-to-end tests run simulator → poller → real bridge → JetStream and
// assert the exact events of the job and of each task. The simulator's
// clock is manual: each step advances it and waits until the stream holds
// exactly the events expected so far, so a bogus or duplicate event fails
// the wait. Events of different entities may interleave in the stream (one
// publish queue per entity), so each entity's sequence is compared alone.

type e2e struct {
	*rig
	h *bridgetest.Harness
}

func startE2E(t *testing.T, simOpts huaweisim.Options, tweak func(*huawei.Options), mutate func(*bridge.Options)) *e2e {
	t.Helper()
	r := newRig(t, simOpts, tweak)
	nc := natstest.Connect(t, natstest.RunServer(t, natstest.Options{}))
	inst := bridge.Instance{Vendor: huawei.Vendor, Name: "ap", Poller: r.poller}
	h := bridgetest.StartBridge(t, nc, []bridge.Instance{inst}, func(o *bridge.Options) {
		o.Schedule.ErrorBackoff = backoff.Policy{Initial: 20 * time.Millisecond, Max: 50 * time.Millisecond}
		if mutate != nil {
			mutate(o)
		}
	})
	return &e2e{rig: r, h: h}
}

// line renders one event for comparison: kind:state native[(subState)].
func line(r bridgetest.Received) string {
	s := bridgetest.Summary([]bridgetest.Received{r})[0]
	if r.Data.Task != "" {
		s = strings.TrimSuffix(s, "/"+r.Data.Task)
	}
	if r.Data.Native.Status != "" {
		s += " " + r.Data.Native.Status
	}
	if r.Data.Native.SubState != "" {
		s += "(" + r.Data.Native.SubState + ")"
	}
	return s
}

// entity names a job ("j") or one of its tasks ("j/t").
func entity(r bridgetest.Received) string {
	if r.Data.Task != "" {
		return r.Data.Job + "/" + r.Data.Task
	}
	return r.Data.Job
}

// byEntity lists each job's and task's events. Consecutive progress events
// count as one: the simulator's manual clock may advance between the two
// task pages of one poll, and that torn read (which a real paged API can
// give too) is a genuine, if intermediate, progress report. Transitions
// must match exactly.
func byEntity(rs []bridgetest.Received) map[string][]string {
	out := map[string][]string{}
	for _, r := range rs {
		l, ent := line(r), entity(r)
		if prev := out[ent]; r.Data.Kind == bridge.KindProgress && len(prev) > 0 && prev[len(prev)-1] == l {
			continue
		}
		out[ent] = append(out[ent], l)
	}
	return out
}

// expect waits until the stream holds exactly want, entity by entity.
func (e *e2e) expect(t *testing.T, want map[string][]string) []bridgetest.Received {
	t.Helper()
	var got map[string][]string
	var rs []bridgetest.Received
	deadline := time.Now().Add(15 * time.Second)
	for {
		rs = e.h.Events()
		got = byEntity(rs)
		if equal(got, want) {
			return rs
		}
		if time.Now().After(deadline) {
			t.Fatalf("events do not match\n got: %s\nwant: %s", render(got), render(want))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// settle lets the bridge poll a while longer and checks nothing new came.
func (e *e2e) settle(t *testing.T, want map[string][]string) {
	t.Helper()
	time.Sleep(300 * time.Millisecond)
	if got := byEntity(e.h.Events()); !equal(got, want) {
		t.Fatalf("events after settling\n got: %s\nwant: %s", render(got), render(want))
	}
}

func equal(a, b map[string][]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if !slices.Equal(v, b[k]) {
			return false
		}
	}
	return true
}

func render(m map[string][]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "\n  %s: %q", k, m[k])
	}
	return b.String()
}

func add(want map[string][]string, ent string, lines ...string) {
	want[ent] = append(want[ent], lines...)
}

// lifecycleJob has three tasks, so a page size of 2 needs two pages:
//
//	job  SUBMITTED [0,1m) RUNNING [1m,4m) SUCCEEDED
//	T1   SUBMITTED [0,1m) RUNNING [1m,2m) SUCCEEDED
//	T2   SUBMITTED [0,2m) SKIPPED
//	T3   SUBMITTED [0,2m) RUNNING [2m,4m) SUCCEEDED
func lifecycleJob(id string) huaweisim.Job {
	m := time.Minute
	return huaweisim.Job{ID: id,
		Script: []huaweisim.Step{{Status: "SUBMITTED", For: m}, {Status: "RUNNING", For: 3 * m}, {Status: "SUCCEEDED"}},
		Tasks: []huaweisim.Task{
			{ID: "T1", Script: []huaweisim.Step{{Status: "SUBMITTED", For: m}, {Status: "RUNNING", For: m}, {Status: "SUCCEEDED"}}},
			{ID: "T2", Script: []huaweisim.Step{{Status: "SUBMITTED", For: 2 * m}, {Status: "SKIPPED"}}},
			{ID: "T3", Script: []huaweisim.Step{{Status: "SUBMITTED", For: 2 * m}, {Status: "RUNNING", For: 2 * m}, {Status: "SUCCEEDED"}}},
		}}
}

// runLifecycle steps the lifecycle job and checks every event; before
// steps 2 and 4 it calls beforeStep (to inject faults).
func runLifecycle(t *testing.T, e *e2e, id string, beforeStep func(step int)) []bridgetest.Received {
	t.Helper()
	if beforeStep == nil {
		beforeStep = func(int) {}
	}
	e.sim.AddJob(lifecycleJob(id))
	e.h.Watch(huawei.Vendor, "ap", id)
	want := map[string][]string{}
	add(want, id, "transition:pending SUBMITTED")
	for _, tk := range []string{"T1", "T2", "T3"} {
		add(want, id+"/"+tk, "transition:pending SUBMITTED")
	}
	e.expect(t, want)

	e.clock.Advance(time.Minute)
	add(want, id, "transition:running RUNNING")
	add(want, id+"/T1", "transition:running RUNNING")
	e.expect(t, want)

	beforeStep(2)
	e.clock.Advance(time.Minute)
	add(want, id, "progress:running RUNNING") // T1 and T2 done: 2 of 3
	add(want, id+"/T1", "transition:succeeded SUCCEEDED")
	add(want, id+"/T2", "transition:succeeded SKIPPED(skipped)")
	add(want, id+"/T3", "transition:running RUNNING")
	e.expect(t, want)

	beforeStep(4)
	e.clock.Advance(2 * time.Minute)
	add(want, id, "transition:succeeded SUCCEEDED")
	add(want, id+"/T3", "transition:succeeded SUCCEEDED")
	rs := e.expect(t, want)
	e.settle(t, want)
	return rs
}

// checkAgainstHistory compares each entity's transitions with the
// simulator's ground truth.
func checkAgainstHistory(t *testing.T, sim *huaweisim.Server, rs []bridgetest.Received) {
	t.Helper()
	truth := map[string][]string{}
	for _, c := range sim.History() {
		ent := c.JobID
		if c.TaskID != "" {
			ent += "/" + c.TaskID
		}
		truth[ent] = append(truth[ent], c.Status)
	}
	got := map[string][]string{}
	for _, r := range rs {
		if r.Data.Kind == bridge.KindTransition {
			got[entity(r)] = append(got[entity(r)], r.Data.Native.Status)
		}
	}
	for ent, natives := range got {
		if !slices.Equal(natives, truth[ent]) {
			t.Errorf("%s: published %q, the simulator went through %q", ent, natives, truth[ent])
		}
	}
}

func TestE2ELifecycleWithTaskPaging(t *testing.T) {
	for _, v := range []huawei.APIVersion{huawei.APIv2, huawei.APIv3} {
		t.Run(string(v), func(t *testing.T) {
			e := startE2E(t, huaweisim.Options{}, func(o *huawei.Options) { o.APIVersion = v; o.TaskPageSize = 2 }, nil)
			rs := runLifecycle(t, e, "JOB-life", nil)
			checkAgainstHistory(t, e.sim, rs)

			// The tasks really came in two pages of the requested version.
			pages := map[int]bool{}
			for _, q := range e.sim.Queries() {
				if q.Version != string(v) || q.Limit != 2 {
					t.Fatalf("query %+v", q)
				}
				pages[q.Offset] = true
			}
			if !pages[0] || !pages[2] || len(pages) != 2 {
				t.Errorf("offsets requested: %v", pages)
			}
			lastDone := -1
			for _, r := range rs {
				typ, _ := r.Event["type"].(string)
				subj, _ := r.Event["subject"].(string)
				switch {
				case r.Data.Task != "":
					if !strings.HasSuffix(r.Subject, ".JOB-life."+bridge.EscapeToken(r.Data.Task)) || !strings.HasPrefix(r.Subject, "jobs.huawei.ap.") ||
						typ != "io.jobbridge.task."+string(r.Data.State) || subj != "JOB-life/"+r.Data.Task {
						t.Errorf("task event on %s type %s subject %s", r.Subject, typ, subj)
					}
				case r.Data.Kind == bridge.KindProgress:
					// Which task counts a poll sees depends on where it
					// falls between the test's clock steps: any count the
					// job went through, each progress event further on.
					p := r.Data.Progress
					if typ != "io.jobbridge.job.progress" || p == nil || p.StepsDone == nil || p.StepsTotal == nil ||
						*p.StepsTotal != 3 || *p.StepsDone <= lastDone || *p.StepsDone > 3 {
						t.Errorf("progress event %s %+v after %d tasks done", typ, p, lastDone)
					} else {
						lastDone = *p.StepsDone
					}
				default:
					if !strings.HasSuffix(r.Subject, ".JOB-life") || typ != "io.jobbridge.job."+string(r.Data.State) || subj != "JOB-life" {
						t.Errorf("job event on %s type %s subject %s", r.Subject, typ, subj)
					}
				}
			}
		})
	}
}

// TestE2EEveryDocumentedStatus publishes every EXECUTION_STATUS and every
// TASK_STATUS. The bridge stops polling a job at its first terminal state,
// so there is one job per terminal status; each walks the non-terminal
// statuses first, its one task in step with it, one clock minute a step.
func TestE2EEveryDocumentedStatus(t *testing.T) {
	e := startE2E(t, huaweisim.Options{}, nil, nil)
	walk := []string{"SUBMITTED", "SCHEDULED", "RUNNING", "ROLLBACKING", "UNKNOWN"}
	ends := [][2]string{ // job, task
		{"SUCCEEDED", "SUCCEEDED"}, {"SUCCEEDED", "SKIPPED"}, {"FAILED", "FAILED"},
		{"PARTIALLY_FAILED", "PARTIALLY_FAILED"}, {"ROLLBACKED", "ROLLBACKED"}, {"CANCELLED", "CANCELLED"},
	}
	// Every documented native is walked.
	covered := map[string]bool{}
	for _, n := range walk {
		covered["job "+n], covered["task "+n] = true, true
	}
	for _, end := range ends {
		covered["job "+end[0]], covered["task "+end[1]] = true, true
	}
	for _, r := range huawei.JobTable().Rows() {
		if !covered["job "+r.Native] {
			t.Fatalf("job status %s is not walked", r.Native)
		}
	}
	for _, r := range huawei.TaskTable().Rows() {
		if !covered["task "+r.Native] {
			t.Fatalf("task status %s is not walked", r.Native)
		}
	}

	script := func(last string) []huaweisim.Step {
		var out []huaweisim.Step
		for _, n := range walk {
			out = append(out, huaweisim.Step{Status: n, For: time.Minute})
		}
		return append(out, huaweisim.Step{Status: last})
	}
	show := func(tb *pollkit.StateTable, native string) string {
		m := tb.Lookup(native)
		s := "transition:" + string(m.State) + " " + native
		if m.SubState != "" {
			s += "(" + m.SubState + ")"
		}
		return s
	}
	for i, end := range ends {
		id := fmt.Sprintf("walk-%d-%s", i, end[1])
		e.sim.AddJob(huaweisim.Job{ID: id, Script: script(end[0]), Tasks: []huaweisim.Task{{ID: "T", Script: script(end[1])}}})
		e.h.Watch(huawei.Vendor, "ap", id)
	}
	want := map[string][]string{}
	for step := range len(walk) + 1 {
		if step > 0 {
			e.clock.Advance(time.Minute)
		}
		for i, end := range ends {
			id := fmt.Sprintf("walk-%d-%s", i, end[1])
			jobNative, taskNative := end[0], end[1]
			if step < len(walk) {
				jobNative, taskNative = walk[step], walk[step]
			}
			add(want, id, show(huawei.JobTable(), jobNative))
			add(want, id+"/T", show(huawei.TaskTable(), taskNative))
		}
		e.expect(t, want)
	}
	checkAgainstHistory(t, e.sim, e.h.Events())
	e.settle(t, want)
}

// TestE2EThrottlingBurst throttles every request for a while: a burst
// shorter than the attempts is absorbed inside one poll, a longer one
// fails that poll and the bridge polls again. Neither may change the
// events.
func TestE2EThrottlingBurst(t *testing.T) {
	e := startE2E(t, huaweisim.Options{}, func(o *huawei.Options) { o.TaskPageSize = 2 }, nil)
	rs := runLifecycle(t, e, "JOB-throttled", func(step int) {
		switch step {
		case 2:
			e.sim.Throttle(3)
		case 4:
			e.sim.Throttle(9) // more than MaxAttempts (4): at least one poll fails
		}
	})
	checkAgainstHistory(t, e.sim, rs)
	if st := e.sim.Stats(); st.Throttled != 12 {
		t.Fatalf("stats %+v: the bursts were not all spent", st)
	}
}

// TestE2EJobNotFoundVanishes: a job whose record Huawei deleted
// (SVCSTG.00100429) after it was seen vanishes after two answers in a row;
// one never seen vanishes after the grace period. Either watch then ends.
func TestE2EJobNotFoundVanishes(t *testing.T) {
	e := startE2E(t, huaweisim.Options{Envelope: huaweisim.EnvelopeNested}, nil, func(o *bridge.Options) {
		o.Schedule.NotFoundGrace = 300 * time.Millisecond
	})
	e.sim.AddJob(huaweisim.Job{ID: "JOB-gone", Script: hold("RUNNING"), Tasks: []huaweisim.Task{{ID: "T", Script: hold("RUNNING")}}})
	e.h.Watch(huawei.Vendor, "ap", "JOB-gone")
	want := map[string][]string{"JOB-gone": {"transition:running RUNNING"}, "JOB-gone/T": {"transition:running RUNNING"}}
	e.expect(t, want)

	e.sim.RemoveJob("JOB-gone")
	add(want, "JOB-gone", "vanished:running RUNNING")
	e.h.Watch(huawei.Vendor, "ap", "JOB-never")
	add(want, "JOB-never", "vanished:unknown")
	rs := e.expect(t, want)
	for _, r := range rs {
		if r.Data.Kind == bridge.KindVanished {
			if typ := r.Event["type"]; typ != "io.jobbridge.job.vanished" {
				t.Errorf("vanished event type %v", typ)
			}
		}
	}
	// The watches ended: no more requests for either job.
	bridgetest.WaitFor(t, 5*time.Second, "the watches to end", func() bool {
		before := e.sim.Stats().NotFound
		time.Sleep(150 * time.Millisecond)
		return e.sim.Stats().NotFound == before
	})
	e.settle(t, want)
}
