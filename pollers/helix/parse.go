package helix

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/jobbridge/jobbridge/bridge"
	"github.com/jobbridge/jobbridge/pollers/pollkit"
)

// The documented keys of the ETL status payload (vendor-apis.md §2.2) that
// name an Observation's fields; statusFields lists all four.
const (
	keyStatus     = "status"
	keyExitCode   = "exit_code"
	keyLastExecTS = "last_exec_ts"
)

// Exit code patterns of a Rule.
const (
	// AnyExitCode matches every exit code, none included: the status alone
	// decides.
	AnyExitCode = "*"
	// NoExitCode matches an exit code that is missing, null or "".
	NoExitCode = ""
)

// Sub-states the mapping sets.
const (
	SubStateNeverRun      = "never-run"      // status has no value
	SubStateScheduled     = "scheduled"      // WAITING with no outcome yet
	SubStateService       = "service"        // SERVICE_ON
	SubStateServicePaused = "service-paused" // SERVICE_OFF
)

// Rule is one row of the Helix mapping table: a native status and an exit
// code pattern, and what they map to.
type Rule struct {
	// Status is the native status; "" stands for "no value" (the key
	// missing, null or ""). Matching ignores case and surrounding space.
	Status string
	// ExitCode is an exit code value, NoExitCode or AnyExitCode.
	ExitCode string
	State    bridge.State
	SubState string
	// ReportsExitCode puts the exit code (when there is one) into
	// Observation.Outcome. Rows whose status means "no run has just
	// finished" leave it out: the value there belongs to an earlier run, and
	// reporting it would make a stale field part of the running state.
	ReportsExitCode bool
}

// The status is per ETL, not per run (vendor-apis.md §2.4): between runs an
// ETL shows WAITING (next run scheduled) or ENDED (not rescheduled) together
// with the exit code of its last run. So between runs the canonical state is
// the outcome of the last run. That is what makes a run that starts and ends
// between two polls visible: last_exec_ts (Observation.RunID) advances, the
// state is terminal again, and the tracker sees one new terminal transition
// for that run. Mapping WAITING to pending would lose that run's outcome.
//
// WARNING is a success with something to look at: state succeeded, and the
// exit code WARNING stays in Outcome["exit_code"] for consumers who care.
// FAILED is the console's wording for ERROR; both are accepted.
var rules = []Rule{
	{Status: "", ExitCode: AnyExitCode, State: bridge.StatePending, SubState: SubStateNeverRun},
	{Status: "RUNNING", ExitCode: AnyExitCode, State: bridge.StateRunning},
	{Status: "SERVICE_ON", ExitCode: AnyExitCode, State: bridge.StateRunning, SubState: SubStateService},
	{Status: "SERVICE_OFF", ExitCode: AnyExitCode, State: bridge.StatePending, SubState: SubStateServicePaused},
	{Status: "WAITING", ExitCode: NoExitCode, State: bridge.StatePending, SubState: SubStateScheduled},
	{Status: "WAITING", ExitCode: "OK", State: bridge.StateSucceeded, ReportsExitCode: true},
	{Status: "WAITING", ExitCode: "WARNING", State: bridge.StateSucceeded, ReportsExitCode: true},
	{Status: "WAITING", ExitCode: "ERROR", State: bridge.StateFailed, ReportsExitCode: true},
	{Status: "WAITING", ExitCode: "FAILED", State: bridge.StateFailed, ReportsExitCode: true},
	{Status: "ENDED", ExitCode: NoExitCode, State: bridge.StateUnknown, ReportsExitCode: true},
	{Status: "ENDED", ExitCode: "OK", State: bridge.StateSucceeded, ReportsExitCode: true},
	{Status: "ENDED", ExitCode: "WARNING", State: bridge.StateSucceeded, ReportsExitCode: true},
	{Status: "ENDED", ExitCode: "ERROR", State: bridge.StateFailed, ReportsExitCode: true},
	{Status: "ENDED", ExitCode: "FAILED", State: bridge.StateFailed, ReportsExitCode: true},
	{Status: "ABORTED", ExitCode: AnyExitCode, State: bridge.StateCanceled, ReportsExitCode: true},
}

// unknownRule is the answer for a status the table does not know, or a
// WAITING/ENDED exit code it does not know: the vendor's fields are kept
// verbatim, and nobody is told the run succeeded.
var unknownRule = Rule{State: bridge.StateUnknown, ReportsExitCode: true}

type ruleKey struct{ status, exit string }

var ruleIndex = func() map[ruleKey]Rule {
	m := make(map[ruleKey]Rule, len(rules))
	for _, r := range rules {
		k := ruleKey{normalize(r.Status), normalize(r.ExitCode)}
		if r.ExitCode == AnyExitCode {
			k.exit = AnyExitCode
		}
		if _, dup := m[k]; dup || !r.State.Valid() {
			panic(fmt.Sprintf("helix mapping table: bad or duplicate row %+v", r))
		}
		m[k] = r
	}
	return m
}()

// Rules returns the mapping table, in order, for documentation and a test
// per row.
func Rules() []Rule { return append([]Rule(nil), rules...) }

// Map applies the mapping table to a native status and exit code (either
// may be ""), ignoring case and surrounding space.
func Map(status, exitCode string) Rule {
	s, e := normalize(status), normalize(exitCode)
	if r, ok := ruleIndex[ruleKey{s, AnyExitCode}]; ok {
		return r
	}
	if r, ok := ruleIndex[ruleKey{s, e}]; ok {
		return r
	}
	return unknownRule
}

func normalize(s string) string { return strings.ToLower(strings.TrimSpace(s)) }

// statusFields are the documented keys of the ETL status payload
// (vendor-apis.md §2.2), matched case-insensitively.
type statusFields struct {
	Status     pollkit.Value `json:"status"`
	TaskID     pollkit.Value `json:"task_id"`
	ExitCode   pollkit.Value `json:"exit_code"`
	LastExecTS pollkit.Value `json:"last_exec_ts"`
}

// buildObservation turns an ETL status body into an Observation. The body
// must be a JSON object that carries at least one documented key (so an
// error envelope such as {"message":"..."} is not taken for a never-run ETL)
// and whose status, when present, is a string or null; anything else is an
// error wrapping bridge.ErrMalformed and the Observation is then zero. The
// caller has already turned an empty body into ErrNoStatus. Observation.Raw
// is body itself: the caller hands it over.
func buildObservation(job bridge.JobRef, body []byte) (bridge.Observation, error) {
	var f statusFields
	if _, err := pollkit.DecodeFields(body, &f); err != nil {
		return bridge.Observation{}, err
	}
	if !f.Status.Found() && !f.TaskID.Found() && !f.ExitCode.Found() && !f.LastExecTS.Found() {
		return bridge.Observation{}, fmt.Errorf("%w: the ETL status payload has none of status, task_id, exit_code, last_exec_ts (body starts %q)",
			bridge.ErrMalformed, pollkit.Snippet(body, 120))
	}
	native, _, err := f.Status.String(keyStatus)
	if err != nil {
		return bridge.Observation{}, err
	}
	// exit_code and last_exec_ts are read leniently: a number where text was
	// expected is kept as its JSON text (and maps to unknown), never a
	// reason to lose the status.
	exit, _ := f.ExitCode.Text()
	lastExec, _ := f.LastExecTS.Text()

	r := Map(native, exit)
	obs := bridge.Observation{
		Job:      job,
		State:    r.State,
		Native:   native,
		SubState: r.SubState,
		// The run a status belongs to: a new run is a change even when the
		// ETL ends in the same state as last time.
		RunID:   lastExec,
		Raw:     body,
		RawJSON: true, // DecodeFields parsed all of it
		Via:     bridge.DetectedByPoll,
	}
	if r.ReportsExitCode && exit != "" {
		obs.Outcome = map[string]string{keyExitCode: exit}
	}
	if strings.TrimSpace(lastExec) != "" {
		obs.Times = map[string]bridge.VendorTime{keyLastExecTS: pollkit.ISOTime(lastExec)}
	}
	return obs, nil
}

// ETL is one entry of the ETL list.
type ETL struct {
	// ID is etl_id as text: the job id of its watch.
	ID   string
	Name string
}

// parseETLList reads GET /opt/api/v1/backend/etls/: a JSON array of
// {name, etl_id, run_configurations}. A body that is not an array is an
// error wrapping bridge.ErrMalformed. Entries without a usable etl_id are
// skipped and counted in skipped; duplicates are dropped.
func parseETLList(body []byte) (etls []ETL, skipped int, err error) {
	var items []json.RawMessage
	if err := pollkit.DecodeJSON(body, &items); err != nil {
		return nil, 0, fmt.Errorf("ETL list: %w", err)
	}
	if items == nil {
		return nil, 0, fmt.Errorf("%w: the ETL list is JSON null where an array was expected", bridge.ErrMalformed)
	}
	seen := make(map[string]bool, len(items))
	for _, it := range items {
		var o pollkit.Object
		if json.Unmarshal(it, &o) != nil || o == nil {
			skipped++
			continue
		}
		id, ok := o.Text("etl_id")
		id = strings.TrimSpace(id)
		if !ok || id == "" || bridge.ValidateJobID(id) != nil || strings.ContainsAny(id, "{[") {
			skipped++
			continue
		}
		if seen[id] {
			continue
		}
		seen[id] = true
		name, _ := o.Text("name")
		etls = append(etls, ETL{ID: id, Name: name})
	}
	return etls, skipped, nil
}
