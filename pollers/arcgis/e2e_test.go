package arcgis_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jobbridge/jobbridge/bridge"
	"github.com/jobbridge/jobbridge/bridge/bridgetest"
	"github.com/jobbridge/jobbridge/bridge/natsconn/natstest"
	"github.com/jobbridge/jobbridge/pollers/arcgis"
	"github.com/jobbridge/jobbridge/pollers/arcgis/arcgissim"
	"github.com/jobbridge/jobbridge/pollers/pollkit/simkit/simtest"
)

// The end-to-end runs share one timeline on the simulator's manual clock.
// Every job's script has steps of these lengths, so at each phase every job
// moves to its next step at once, except phase 3: it jumps 61 minutes while
// every job holds its step, so that the token (60 minutes) expires mid-run
// with nothing else changing.
var (
	stepFor  = []time.Duration{time.Minute, time.Minute, 62 * time.Minute, time.Minute}
	advances = []time.Duration{0, time.Minute, time.Minute, 61 * time.Minute, time.Minute, time.Minute}
)

// tokenPhase is the phase in which the token expires.
const tokenPhase = 3

// purgeAt removes a job at the start of phase 4.
const purgeAt = 64 * time.Minute

// ev is an expected event: the phase it appears in and its summary.
type ev struct {
	phase   int
	summary string
}

// e2eJob is a simulated job with the events the bridge must publish for it.
type e2eJob struct {
	instance string
	job      arcgissim.Job
	want     []ev
}

// script builds a script on the shared timeline.
func script(steps ...arcgissim.Step) []arcgissim.Step {
	for i := range steps {
		if i < len(steps)-1 {
			steps[i].For = stepFor[i]
		}
	}
	return steps
}

func pct(v float64) *float64 { return &v }

// runE2E starts the simulator, the given pollers on one real bridge, watches
// every job, walks the timeline and checks each job's exact event sequence
// against the expectation and against the simulator's ground truth.
func runE2E(t *testing.T, instances map[string]func(*arcgissim.Server) arcgis.Options, jobs []e2eJob) (*bridgetest.Harness, *arcgissim.Server) {
	t.Helper()
	sim, clk := newSim(t, arcgissim.Options{})
	for _, j := range jobs {
		sim.MustAddJob(j.job)
	}
	var insts []bridge.Instance
	for name, mk := range instances {
		o := mk(sim)
		o.Instance = name
		p, err := arcgis.New(o)
		if err != nil {
			t.Fatal(err)
		}
		insts = append(insts, bridge.Instance{Vendor: arcgis.Vendor, Name: name, Poller: p, Concurrency: 4})
	}
	ns := natstest.RunServer(t, natstest.Options{})
	h := bridgetest.StartBridge(t, natstest.Connect(t, ns), insts, nil)
	for _, j := range jobs {
		h.Watch(arcgis.Vendor, j.instance, j.job.ID)
	}

	countAt := func(j e2eJob, phase int) int {
		n := 0
		for _, e := range j.want {
			if e.phase <= phase {
				n++
			}
		}
		return n
	}
	waitCounts := func(phase int) {
		t.Helper()
		bridgetest.WaitFor(t, 15*time.Second, fmt.Sprintf("the events of phase %d", phase), func() bool {
			got := map[string]int{}
			for _, r := range bridgetest.ReadStream(t, h.JS, "JOBS") {
				got[r.Data.Job]++
			}
			for _, j := range jobs {
				if got[j.job.ID] < countAt(j, phase) {
					return false
				}
			}
			return true
		})
	}
	for phase, d := range advances {
		clk.Advance(d)
		if phase == tokenPhase {
			// The bridge's next polls meet error 498 inside HTTP 200; the
			// poller renews the token once and carries on.
			// Each instance has its own token, renewed once.
			before := sim.Stats()
			if before.TokensIssued != len(insts) {
				t.Fatalf("phase %d: %d tokens before the expiry for %d instances", phase, before.TokensIssued, len(insts))
			}
			bridgetest.WaitFor(t, 15*time.Second, "the token renewals and polls after them", func() bool {
				st := sim.Stats()
				return st.TokensIssued == 2*len(insts) && st.JobRequests >= before.JobRequests+3*len(jobs)
			})
			if st := sim.Stats(); st.InvalidToken < len(insts) || st.TokensIssued != 2*len(insts) {
				t.Fatalf("phase %d: stats %+v, want 498s answered by exactly one renewal per instance", phase, st)
			}
		}
		waitCounts(phase)
	}
	// Let the bridge poll a while longer: nothing more may appear.
	settle := sim.Stats().Requests
	bridgetest.WaitFor(t, 10*time.Second, "polls after the last phase", func() bool { return sim.Stats().Requests > settle+20 || allDone(h, jobs) })
	time.Sleep(200 * time.Millisecond)

	history := sim.History()
	for _, j := range jobs {
		got := h.EventsFor(j.job.ID)
		var want []string
		for _, e := range j.want {
			want = append(want, e.summary)
		}
		if strings.Join(bridgetest.Summary(got), " ") != strings.Join(want, " ") {
			t.Errorf("job %s: events\n  got  %v\n  want %v", j.job.ID, bridgetest.Summary(got), want)
			continue
		}
		// Ground truth: one event per change the simulator recorded, in
		// order, the purge being the vanished event.
		var changes []arcgissim.Change
		for _, c := range history {
			if c.JobID == j.job.ID {
				changes = append(changes, c)
			}
		}
		if len(changes) != len(got) {
			t.Errorf("job %s: %d events for %d changes in the simulator's history", j.job.ID, len(got), len(changes))
			continue
		}
		for i, c := range changes {
			if c.Removed != (got[i].Data.Kind == bridge.KindVanished) || !c.Removed && got[i].Data.Native.Status != c.Status {
				t.Errorf("job %s event %d: %s native %q; history %+v", j.job.ID, i, got[i].Data.Kind, got[i].Data.Native.Status, c)
			}
		}
	}
	if st := sim.Stats(); st.QueryTokens != 0 {
		t.Errorf("%d requests carried the token in the query string", st.QueryTokens)
	}
	return h, sim
}

func allDone(h *bridgetest.Harness, jobs []e2eJob) bool {
	lastOf := map[string]bridge.EventData{}
	for _, r := range bridgetest.ReadStream(h.T, h.JS, "JOBS") {
		lastOf[r.Data.Job] = r.Data
	}
	for _, j := range jobs {
		d, ok := lastOf[j.job.ID]
		if !ok || !d.Terminal && d.Kind != bridge.KindVanished {
			return false
		}
	}
	return true
}

// last returns the job's last event.
func last(t *testing.T, h *bridgetest.Harness, id string) bridgetest.Received {
	t.Helper()
	got := h.EventsFor(id)
	if len(got) == 0 {
		t.Fatalf("no events for %s", id)
	}
	return got[len(got)-1]
}

func TestEndToEndMission(t *testing.T) {
	k := arcgissim.KindMission
	jobs := []e2eJob{
		{"mission", arcgissim.Job{ID: "j-ok", Kind: k, TotalSteps: 5, Script: script(
			arcgissim.Step{Status: "SUBMITTED"},
			arcgissim.Step{Status: "EXECUTING", Done: 1},
			arcgissim.Step{Status: "EXECUTING", Done: 3},
			arcgissim.Step{Status: "EXECUTING", Done: 5},
			arcgissim.Step{Status: "COMPLETED", Done: 5},
		)}, []ev{{0, "transition:pending"}, {1, "transition:running"}, {2, "progress:running"}, {4, "progress:running"}, {5, "transition:succeeded"}}},
		// COMPLETED, but isCancelled: canceled; running with the flag: cancelling.
		{"mission", arcgissim.Job{ID: "j-cancel", Kind: k, TotalSteps: 5, Script: script(
			arcgissim.Step{Status: "SUBMITTED"},
			arcgissim.Step{Status: "EXECUTING", Done: 1},
			arcgissim.Step{Status: "EXECUTING", Done: 1, Cancelled: true},
			arcgissim.Step{Status: "COMPLETED", Done: 1, Cancelled: true},
		)}, []ev{{0, "transition:pending"}, {1, "transition:running"}, {2, "transition:running"}, {4, "transition:canceled"}}},
		{"mission", arcgissim.Job{ID: "j-failed", Kind: k, Script: script(
			arcgissim.Step{Status: "SUBMITTED"},
			arcgissim.Step{Status: "EXECUTING"},
			arcgissim.Step{Status: "UNAVAILABLE"},
			arcgissim.Step{Status: "EXECUTING"},
			arcgissim.Step{Status: "FAILED"},
		)}, []ev{{0, "transition:pending"}, {1, "transition:running"}, {2, "transition:unknown"}, {4, "transition:running"}, {5, "transition:failed"}}},
		{"mission", arcgissim.Job{ID: "j-cancelled", Kind: k, Script: script(
			arcgissim.Step{Status: "SUBMITTED"},
			arcgissim.Step{Status: "CANCELLING"},
			arcgissim.Step{Status: "CANCELLED"},
		)}, []ev{{0, "transition:pending"}, {1, "transition:running"}, {2, "transition:canceled"}}},
		// Removed while running: error 404 twice, then vanished.
		{"mission", arcgissim.Job{ID: "j-purged", Kind: k, TotalSteps: 4, PurgeAfter: purgeAt, Script: script(
			arcgissim.Step{Status: "SUBMITTED"},
			arcgissim.Step{Status: "EXECUTING", Done: 1},
			arcgissim.Step{Status: "EXECUTING", Done: 2},
			arcgissim.Step{Status: "EXECUTING", Done: 3},
		)}, []ev{{0, "transition:pending"}, {1, "transition:running"}, {2, "progress:running"}, {4, "vanished:running"}}},
	}
	h, _ := runE2E(t, map[string]func(*arcgissim.Server) arcgis.Options{
		"mission": func(s *arcgissim.Server) arcgis.Options {
			o := pollerOptions(s, arcgis.FlavorMission, &simtest.LogBuffer{})
			o.TokenURL = s.PortalTokenURL() // Mission Server is federated with a portal
			return o
		},
	}, jobs)

	prog := h.EventsFor("j-ok")[2].Data
	if p := prog.Progress; p == nil || *p.StepsDone != 3 || *p.StepsTotal != 5 || prog.Native.Status != "EXECUTING" {
		t.Errorf("progress event %+v", prog)
	}
	if st := h.EventsFor("j-ok")[0].Data.Times["startTime"]; st.Raw == "" || st.Normalized.IsZero() {
		t.Errorf("startTime %+v", st)
	}
	c := h.EventsFor("j-cancel")
	if c[2].Data.Native.SubState != arcgis.SubCancelling || c[2].Data.Outcome[arcgis.OutcomeIsCancelled] != "true" {
		t.Errorf("cancel requested: %+v", c[2].Data)
	}
	if d := c[3].Data; d.Native.Status != "COMPLETED" || d.Outcome[arcgis.OutcomeIsCancelled] != "true" || d.PreviousState != bridge.StateRunning {
		t.Errorf("canceled event: %+v", d)
	}
	if d := last(t, h, "j-purged").Data; d.Native.Status != "EXECUTING" {
		t.Errorf("vanished event: %+v", d)
	}
}

func TestEndToEndEnterprise(t *testing.T) {
	k := arcgissim.KindAdmin
	jobs := []e2eJob{
		{"admin", arcgissim.Job{ID: "jok", Kind: k, Script: script(
			arcgissim.Step{Status: "SUBMITTED"},
			arcgissim.Step{Status: "EXECUTING", Done: 1, Message: "Stopping the service"},
			arcgissim.Step{Status: "EXECUTING", Done: 2, Message: "Saving edits"},
			arcgissim.Step{Status: "EXECUTING", Done: 3, Message: "Starting the service"},
			arcgissim.Step{Status: "COMPLETED", Done: 3, Operation: "success"},
		)}, []ev{{0, "transition:pending"}, {1, "transition:running"}, {2, "progress:running"}, {4, "progress:running"}, {5, "transition:succeeded"}}},
		// The trap: COMPLETED with operationResponse.status "error" is a failure.
		{"admin", arcgissim.Job{ID: "jtrap", Kind: k, TotalSteps: 3, Script: script(
			arcgissim.Step{Status: "SUBMITTED"},
			arcgissim.Step{Status: "EXECUTING", Done: 1},
			arcgissim.Step{Status: "EXECUTING", Done: 2},
			arcgissim.Step{Status: "COMPLETED", Done: 3, Operation: "error", OperationMessages: []string{"service failed to start"}},
		)}, []ev{{0, "transition:pending"}, {1, "transition:running"}, {2, "progress:running"}, {4, "transition:failed"}}},
		{"admin", arcgissim.Job{ID: "jcancel", Kind: k, Script: script(
			arcgissim.Step{Status: "SUBMITTED"},
			arcgissim.Step{Status: "EXECUTING"},
			arcgissim.Step{Status: "CANCELLING"},
			arcgissim.Step{Status: "CANCELLED"},
		)}, []ev{{0, "transition:pending"}, {1, "transition:running"}, {2, "transition:running"}, {4, "transition:canceled"}}},
		{"admin", arcgissim.Job{ID: "junavailable", Kind: k, Script: script(
			arcgissim.Step{Status: "SUBMITTED"},
			arcgissim.Step{Status: "UNAVAILABLE"},
			arcgissim.Step{Status: "EXECUTING"},
			arcgissim.Step{Status: "FAILED"},
		)}, []ev{{0, "transition:pending"}, {1, "transition:unknown"}, {2, "transition:running"}, {4, "transition:failed"}}},
		{"admin", arcgissim.Job{ID: "jpurged", Kind: k, TotalSteps: 2, PurgeAfter: purgeAt, Script: script(
			arcgissim.Step{Status: "SUBMITTED"},
			arcgissim.Step{Status: "EXECUTING", Done: 1},
		)}, []ev{{0, "transition:pending"}, {1, "transition:running"}, {4, "vanished:running"}}},
		// The Enterprise Administrator API on a second instance: result.status.
		// Steps that change nothing visible publish nothing.
		{"portal", arcgissim.Job{ID: "jea", Kind: arcgissim.KindEnterprise, Script: script(
			arcgissim.Step{Status: "SUBMITTED"},
			arcgissim.Step{Status: "EXECUTING"},
			arcgissim.Step{Status: "EXECUTING"},
			arcgissim.Step{Status: "EXECUTING"},
			arcgissim.Step{Status: "COMPLETED", Operation: "error"},
		)}, []ev{{0, "transition:pending"}, {1, "transition:running"}, {5, "transition:failed"}}},
	}
	h, _ := runE2E(t, map[string]func(*arcgissim.Server) arcgis.Options{
		"admin": func(s *arcgissim.Server) arcgis.Options {
			return pollerOptions(s, arcgis.FlavorEnterprise, &simtest.LogBuffer{})
		},
		"portal": func(s *arcgissim.Server) arcgis.Options {
			return withBase(pollerOptions(s, arcgis.FlavorEnterprise, &simtest.LogBuffer{}), s.EnterpriseAdminURL(), "/jobs")
		},
	}, jobs)

	trap := last(t, h, "jtrap")
	if d := trap.Data; d.Native.Status != "COMPLETED" || d.Outcome[arcgis.OutcomeOperationResponse] != "error" || !d.Terminal {
		t.Errorf("trap event: %+v", d)
	}
	if trap.Event["type"] != "io.jobbridge.job.failed" || !strings.HasPrefix(trap.Subject, "jobs.arcgis.admin.failed.") {
		t.Errorf("trap event type %v subject %s", trap.Event["type"], trap.Subject)
	}
	if d := last(t, h, "jea").Data; d.Outcome[arcgis.OutcomeResult] != "error" || d.Instance != "portal" {
		t.Errorf("enterprise admin API event: %+v", d)
	}
	if d := h.EventsFor("jok")[2].Data; d.Progress == nil || *d.Progress.StepsDone != 2 || *d.Progress.StepsTotal != 3 {
		t.Errorf("progress: %+v", d.Progress)
	}
	if d := h.EventsFor("jcancel")[2].Data; d.Native.SubState != arcgis.SubCancelling {
		t.Errorf("CANCELLING: %+v", d.Native)
	}
}

func TestEndToEndGeoprocessing(t *testing.T) {
	k := arcgissim.KindGP
	jobs := []e2eJob{
		{"gp", arcgissim.Job{ID: "gok", Kind: k, Script: script(
			arcgissim.Step{Status: "esriJobSubmitted", Message: "Submitted."},
			arcgissim.Step{Status: "esriJobExecuting", Percent: pct(10), Message: "Buffering features"},
			arcgissim.Step{Status: "esriJobExecuting", Percent: pct(60), Message: "Buffering features"},
			arcgissim.Step{Status: "esriJobExecuting", Percent: pct(60), Message: "Dissolving features"},
			arcgissim.Step{Status: "esriJobSucceeded", Message: "Succeeded."},
		)}, []ev{{0, "transition:pending"}, {1, "transition:running"}, {2, "progress:running"}, {4, "progress:running"}, {5, "transition:succeeded"}}},
		{"gp", arcgissim.Job{ID: "gcancel", Kind: k, Script: script(
			arcgissim.Step{Status: "esriJobNew"},
			arcgissim.Step{Status: "esriJobWaiting"},
			arcgissim.Step{Status: "esriJobExecuting", Percent: pct(50)},
			arcgissim.Step{Status: "esriJobCancelling"},
			arcgissim.Step{Status: "esriJobCancelled"},
		)}, []ev{{0, "transition:pending"}, {1, "transition:pending"}, {2, "transition:running"}, {4, "transition:running"}, {5, "transition:canceled"}}},
		{"gp", arcgissim.Job{ID: "gtimeout", Kind: k, Script: script(
			arcgissim.Step{Status: "esriJobSubmitted"},
			arcgissim.Step{Status: "esriJobExecuting"},
			arcgissim.Step{Status: "esriJobTimedOut"},
		)}, []ev{{0, "transition:pending"}, {1, "transition:running"}, {2, "transition:failed"}}},
		{"gp", arcgissim.Job{ID: "gfailed", Kind: k, Script: script(
			arcgissim.Step{Status: "esriJobSubmitted"},
			arcgissim.Step{Status: "esriJobFailed", Message: "Failed."},
		)}, []ev{{0, "transition:pending"}, {1, "transition:failed"}}},
		{"gp", arcgissim.Job{ID: "gexpected", Kind: k, Script: script(
			arcgissim.Step{Status: "esriJobExecuting"},
			arcgissim.Step{Status: "expectedFailure"},
		)}, []ev{{0, "transition:running"}, {1, "transition:failed"}}},
		{"gp", arcgissim.Job{ID: "gdeleting", Kind: k, Script: script(
			arcgissim.Step{Status: "esriJobExecuting"},
			arcgissim.Step{Status: "esriJobDeleting"},
		)}, []ev{{0, "transition:running"}, {1, "transition:canceled"}}},
		{"gp", arcgissim.Job{ID: "gdeleted", Kind: k, Script: script(
			arcgissim.Step{Status: "esriJobSubmitted"},
			arcgissim.Step{Status: "esriJobDeleted"},
		)}, []ev{{0, "transition:pending"}, {1, "transition:canceled"}}},
		{"gp", arcgissim.Job{ID: "gpurged", Kind: k, PurgeAfter: purgeAt, Script: script(
			arcgissim.Step{Status: "esriJobSubmitted"},
			arcgissim.Step{Status: "esriJobExecuting", Percent: pct(20)},
		)}, []ev{{0, "transition:pending"}, {1, "transition:running"}, {4, "vanished:running"}}},
	}
	h, _ := runE2E(t, map[string]func(*arcgissim.Server) arcgis.Options{
		"gp": func(s *arcgissim.Server) arcgis.Options {
			return pollerOptions(s, arcgis.FlavorGeoprocessing, &simtest.LogBuffer{})
		},
	}, jobs)

	ok := h.EventsFor("gok")
	for i, want := range []struct {
		pct float64
		msg string
	}{{10, "Buffering features"}, {60, "Buffering features"}, {60, "Dissolving features"}} {
		p := ok[i+1].Data.Progress
		if p == nil || *p.Percent != want.pct || p.Message != want.msg {
			t.Errorf("gok event %d progress %+v, want %v%% %q", i+1, p, want.pct, want.msg)
		}
	}
	if d := last(t, h, "gok").Data; d.Progress != nil || d.Native.Status != "esriJobSucceeded" {
		t.Errorf("success event: %+v", d)
	}
	if d := last(t, h, "gtimeout").Data; d.Native.SubState != arcgis.SubTimeout {
		t.Errorf("timeout event: %+v", d.Native)
	}
	if d := h.EventsFor("gcancel")[3].Data; d.Native.Status != "esriJobCancelling" || d.Native.SubState != arcgis.SubCancelling {
		t.Errorf("cancelling event: %+v", d.Native)
	}
}
