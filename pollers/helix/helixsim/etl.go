package helixsim

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/jobbridge/jobbridge/pollers/pollkit/simkit"
)

// TimestampLayout is how Helix CO writes last_exec_ts: ISO-8601 UTC to the
// second, e.g. 2022-09-08T14:56:28Z.
const TimestampLayout = "2006-01-02T15:04:05Z"

// EmptyStyle says how a field without a value is written. The vendor
// documents "no value" for a never-run ETL without saying which JSON that
// is, so the simulator can write all three.
type EmptyStyle string

// Empty styles.
const (
	EmptyMissing EmptyStyle = "missing" // the key is left out (default)
	EmptyNull    EmptyStyle = "null"    // "key": null
	EmptyString  EmptyStyle = "empty"   // "key": ""
)

// NoExitCode, as a Run's ExitCode, makes the run end without an exit code.
const NoExitCode = "none"

// ETL describes a simulated ETL.
type ETL struct {
	ID   int    `yaml:"id"`
	Name string `yaml:"name"`
	// TaskID is the task_id the status shows; default ID+146, because the
	// vendor's own example shows task_id 467 for ETL 321 (they differ).
	TaskID int `yaml:"taskId"`
	// Service makes it a service ETL: no runs and no exit code, its status
	// follows Steps (SERVICE_ON / SERVICE_OFF).
	Service bool `yaml:"service"`
	// Initial is the status before the first run or step: "" (no value:
	// never executed nor scheduled), WAITING (scheduled, never ran),
	// SERVICE_OFF, ...
	Initial string `yaml:"initial"`
	// Empty is how a field without a value is written; default missing.
	Empty EmptyStyle `yaml:"empty"`
	// Runs of a batch ETL, by start time. They may not overlap.
	Runs []Run `yaml:"runs"`
	// Steps of a service ETL.
	Steps []ServiceStep `yaml:"steps"`
	// RunConfigurations are listed in the ETL list; default one active
	// "Default" configuration.
	RunConfigurations []RunConfiguration `yaml:"runConfigurations"`
}

// Run is one execution of a batch ETL: RUNNING for For, then Then with
// ExitCode and a new last_exec_ts (the run's start, to the second).
type Run struct {
	// At is the start, after the ETL was created (for a scenario ETL: after
	// the server started).
	At time.Duration `yaml:"at"`
	// For is how long the run shows RUNNING; it must be positive.
	For time.Duration `yaml:"for"`
	// ExitCode is OK (default), WARNING, ERROR, FAILED, anything else a
	// test needs, or NoExitCode. ABORTED runs default to no exit code.
	ExitCode string `yaml:"exitCode"`
	// Then is the status after the run: WAITING (default: the next run is
	// scheduled), ENDED or ABORTED.
	Then string `yaml:"then"`
}

// ServiceStep switches a service ETL's status at At after its creation.
type ServiceStep struct {
	At     time.Duration `yaml:"at"`
	Status string        `yaml:"status"`
}

// RunConfiguration is one entry of an ETL's run_configurations.
type RunConfiguration struct {
	Name   string `yaml:"name" json:"name"`
	Active bool   `yaml:"active" json:"active"`
	ID     int    `yaml:"id" json:"run_configuration_id"`
}

// view is what the status call shows at one time; "" means no value.
type view struct {
	Status, ExitCode, LastExec string
}

// mark is one step of an ETL's timeline: what it shows, and whether this
// change ends a run.
type mark struct {
	view   view
	runEnd bool
}

// sameView: a client cannot tell two marks apart by what they show.
func sameView(a, b mark) bool { return a.view == b.view }

type etl struct {
	spec     ETL
	created  time.Time
	removed  time.Time // zero while it exists
	timeline simkit.Timeline[mark]
	polls    int
}

func normalizeETL(e ETL) (ETL, error) {
	if e.ID <= 0 {
		return e, fmt.Errorf("ETL id %d: ids are positive numbers", e.ID)
	}
	if e.Name == "" {
		e.Name = fmt.Sprintf("ETL %d", e.ID)
	}
	if e.TaskID == 0 {
		e.TaskID = e.ID + 146
	}
	switch e.Empty {
	case "":
		e.Empty = EmptyMissing
	case EmptyMissing, EmptyNull, EmptyString:
	default:
		return e, fmt.Errorf("ETL %d: empty %q: want missing, null or empty", e.ID, e.Empty)
	}
	if len(e.RunConfigurations) == 0 {
		e.RunConfigurations = []RunConfiguration{{Name: "Default", Active: true, ID: e.ID*10 + 6}}
	}
	if e.Service && len(e.Runs) > 0 {
		return e, fmt.Errorf("ETL %d: a service ETL has steps, not runs", e.ID)
	}
	if !e.Service && len(e.Steps) > 0 {
		return e, fmt.Errorf("ETL %d: steps belong to service ETLs (set service: true)", e.ID)
	}
	e.Runs = append([]Run(nil), e.Runs...)
	for i := range e.Runs {
		r := &e.Runs[i]
		if r.Then == "" {
			r.Then = "WAITING"
		}
		if r.ExitCode == "" && !strings.EqualFold(r.Then, "ABORTED") {
			r.ExitCode = "OK"
		}
		if r.For <= 0 || r.At < 0 {
			return e, fmt.Errorf("ETL %d run %d: at must not be negative and for must be positive", e.ID, i+1)
		}
	}
	sort.SliceStable(e.Runs, func(a, b int) bool { return e.Runs[a].At < e.Runs[b].At })
	for i := 1; i < len(e.Runs); i++ {
		prev, cur := e.Runs[i-1], e.Runs[i]
		if cur.At <= prev.At+prev.For {
			return e, fmt.Errorf("ETL %d: a run at %v starts before the run at %v has ended (at %v); Helix runs an ETL once at a time",
				e.ID, cur.At, prev.At, prev.At+prev.For)
		}
	}
	e.Steps = append([]ServiceStep(nil), e.Steps...)
	sort.SliceStable(e.Steps, func(a, b int) bool { return e.Steps[a].At < e.Steps[b].At })
	for i, st := range e.Steps {
		if strings.TrimSpace(st.Status) == "" || st.At < 0 {
			return e, fmt.Errorf("ETL %d step %d: needs a status and a non-negative at", e.ID, i+1)
		}
	}
	return e, nil
}

// build computes the ETL's timeline: every status it will show, from its
// creation on.
func (j *etl) build(stampAtStart bool) error {
	// A change at the very instant of the previous one replaces it (see
	// Timeline.Set).
	var tl simkit.Timeline[mark]
	tl.Set(j.created, mark{view: view{Status: j.spec.Initial}})
	if j.spec.Service {
		stamp := ""
		for _, st := range j.spec.Steps {
			at := j.created.Add(st.At)
			if strings.EqualFold(st.Status, "SERVICE_ON") {
				stamp = at.UTC().Format(TimestampLayout)
			}
			tl.Set(at, mark{view: view{Status: st.Status, LastExec: stamp}})
		}
		j.timeline = tl
		return nil
	}
	var prev view
	stamps := map[string]bool{}
	for _, r := range j.spec.Runs {
		start := j.created.Add(r.At)
		stamp := start.UTC().Format(TimestampLayout)
		if stamps[stamp] {
			return fmt.Errorf("ETL %d: two runs start within the second %s; last_exec_ts has one-second resolution, so space runs by at least a second", j.spec.ID, stamp)
		}
		stamps[stamp] = true
		running := view{Status: "RUNNING", ExitCode: prev.ExitCode, LastExec: prev.LastExec}
		if stampAtStart {
			running.LastExec = stamp
		}
		tl.Set(start, mark{view: running})
		exit := r.ExitCode
		if exit == NoExitCode {
			exit = ""
		}
		prev = view{Status: r.Then, ExitCode: exit, LastExec: stamp}
		tl.Set(start.Add(r.For), mark{view: prev, runEnd: true})
	}
	j.timeline = tl
	return nil
}

// at returns the view at t.
func (j *etl) at(t time.Time) view { return j.timeline.At(t).Step.view }

// gone reports whether the ETL was deleted by t.
func (j *etl) gone(t time.Time) bool { return !j.removed.IsZero() && !j.removed.After(t) }

// addRun appends a run that starts at start (clock time).
func (j *etl) addRun(start time.Time, r Run, stampAtStart bool) error {
	if j.spec.Service {
		return errors.New("a service ETL has no runs")
	}
	if start.Before(j.created) {
		return errors.New("a run cannot start before its ETL was created")
	}
	r.At = start.Sub(j.created)
	spec := j.spec
	spec.Runs = append(append([]Run(nil), spec.Runs...), r)
	spec, err := normalizeETL(spec)
	if err != nil {
		return err
	}
	next := *j
	next.spec = spec
	if err := next.build(stampAtStart); err != nil {
		return err
	}
	j.spec, j.timeline = next.spec, next.timeline
	return nil
}

// addStep appends a service step at start (clock time).
func (j *etl) addStep(start time.Time, status string, stampAtStart bool) error {
	spec := j.spec
	spec.Steps = append(append([]ServiceStep(nil), spec.Steps...), ServiceStep{At: start.Sub(j.created), Status: status})
	spec, err := normalizeETL(spec)
	if err != nil {
		return err
	}
	j.spec = spec
	return j.build(stampAtStart)
}

// running reports whether a run is in progress at t.
func (j *etl) running(t time.Time) bool { return strings.EqualFold(j.at(t).Status, "RUNNING") }
