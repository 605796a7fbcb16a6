package arcgis

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jobbridge/jobbridge/bridge"
	"github.com/jobbridge/jobbridge/pollers/pollkit"
)

// SubCancelling is the sub-state of a job whose cancellation is under way:
// CANCELLING, esriJobCancelling, or a Mission job flagged isCancelled while
// its status still says it runs.
const SubCancelling = "cancelling"

// SubTimeout tells a timed-out GP job (esriJobTimedOut) from other failures.
const SubTimeout = "timeout"

// adminRows are the job statuses of the ArcGIS Enterprise / Server
// administrative job framework (vendor-apis.md §3.2, §3.6).
func adminRows() []pollkit.Row {
	return []pollkit.Row{
		{Native: "SUBMITTED", State: bridge.StatePending},
		{Native: "EXECUTING", State: bridge.StateRunning},
		{Native: "CANCELLING", State: bridge.StateRunning, SubState: SubCancelling},
		{Native: "CANCELLED", State: bridge.StateCanceled},
		{Native: "FAILED", State: bridge.StateFailed},
		// COMPLETED means finished, not succeeded: see outcomeOverride.
		{Native: "COMPLETED", State: bridge.StateSucceeded},
		// The status is not available right now; keep polling.
		{Native: "UNAVAILABLE", State: bridge.StateUnknown},
	}
}

// The three tables. Mission's enum is undocumented (vendor-apis.md §3.1): it
// is taken to be the admin framework's, which its example's COMPLETED fits.
// They are never modified.
var (
	missionTable    = pollkit.MustStateTable(adminRows()...)
	enterpriseTable = pollkit.MustStateTable(adminRows()...)
	gpTable         = pollkit.MustStateTable(
		pollkit.Row{Native: "esriJobNew", State: bridge.StatePending},
		pollkit.Row{Native: "esriJobSubmitted", State: bridge.StatePending},
		pollkit.Row{Native: "esriJobWaiting", State: bridge.StatePending},
		pollkit.Row{Native: "esriJobExecuting", State: bridge.StateRunning},
		pollkit.Row{Native: "esriJobCancelling", State: bridge.StateRunning, SubState: SubCancelling},
		pollkit.Row{Native: "esriJobSucceeded", State: bridge.StateSucceeded},
		pollkit.Row{Native: "esriJobFailed", State: bridge.StateFailed},
		pollkit.Row{Native: "esriJobTimedOut", State: bridge.StateFailed, SubState: SubTimeout},
		// Notebook Server GP jobs.
		pollkit.Row{Native: "expectedFailure", State: bridge.StateFailed},
		pollkit.Row{Native: "esriJobCancelled", State: bridge.StateCanceled},
		// INFERRED: a job being removed will not finish.
		pollkit.Row{Native: "esriJobDeleting", State: bridge.StateCanceled},
		pollkit.Row{Native: "esriJobDeleted", State: bridge.StateCanceled},
	)
)

// StatusTable returns the native status → canonical state table of a
// flavour, before the outcome rules (isCancelled, operationResponse.status)
// that Poll applies on top. Nil for an unknown flavour.
func StatusTable(f Flavor) *pollkit.StateTable {
	switch f {
	case FlavorMission:
		return missionTable
	case FlavorEnterprise:
		return enterpriseTable
	case FlavorGeoprocessing:
		return gpTable
	}
	return nil
}

// Outcome keys: the vendor fields that decide success, named by their path
// in the payload.
const (
	OutcomeIsCancelled       = "customAttributes.isCancelled"
	OutcomeOperationResponse = "operationResponse.status"
	OutcomeResult            = "result.status"
)

// missionFields, enterpriseFields and gpFields are what an Observation
// reads of each flavour's job resource; the rest stays in Raw. Keys match
// case-insensitively. A nested object of another type is left zero, which
// reads as absent: the fields inside it are optional anyway.
type missionFields struct {
	Status           pollkit.Value `json:"status"`
	StartTime        pollkit.Value `json:"startTime"`
	EndTime          pollkit.Value `json:"endTime"`
	CustomAttributes struct {
		StepsCompleted pollkit.Value `json:"stepsCompleted"`
		TotalSteps     pollkit.Value `json:"totalSteps"`
		IsCancelled    pollkit.Value `json:"isCancelled"`
	} `json:"customAttributes"`
}

type enterpriseFields struct {
	Status            pollkit.Value `json:"status"`
	StartTime         pollkit.Value `json:"starttime"`
	EndTime           pollkit.Value `json:"endtime"`
	UpdatedTime       pollkit.Value `json:"updatedtime"`
	CurrentStep       pollkit.Value `json:"currentstep"`
	TotalSteps        pollkit.Value `json:"totalsteps"`
	OperationResponse struct {
		Status pollkit.Value `json:"status"`
	} `json:"operationResponse"`
	Result struct {
		Status pollkit.Value `json:"status"`
	} `json:"result"`
}

type gpFields struct {
	JobStatus pollkit.Value `json:"jobStatus"`
	Progress  struct {
		Percentage pollkit.Value `json:"percentage"`
		Message    pollkit.Value `json:"message"`
	} `json:"progress"`
}

// field is a payload value with the key that names it in notes, Times and
// Outcome.
type field struct {
	key string
	v   pollkit.Value
}

// parseJob turns a job resource into an Observation. An ArcGIS error answer
// gives its mapped error (ErrNotFound, ErrAuth, ...). A body that is not a
// JSON object with a non-empty string status is an error wrapping
// bridge.ErrMalformed. Either way the Observation is then zero. Other fields
// are read leniently: a field of an unexpected type is dropped (note says
// which), never a reason to lose the status. Observation.Raw is body itself:
// the caller hands it over.
func parseJob(f Flavor, job bridge.JobRef, body []byte, at time.Time, staticToken bool) (obs bridge.Observation, note string, err error) {
	if e := parseError(body); e != nil {
		return bridge.Observation{}, "", e.asPollError(staticToken)
	}
	var (
		status pollkit.Value
		read   func(*bridge.Observation) []string
	)
	switch f {
	case FlavorEnterprise:
		var e enterpriseFields
		_, err = pollkit.DecodeFields(body, &e)
		status, read = e.Status, e.read
	case FlavorGeoprocessing:
		var g gpFields
		_, err = pollkit.DecodeFields(body, &g)
		status, read = g.JobStatus, g.read
	default:
		var m missionFields
		_, err = pollkit.DecodeFields(body, &m)
		status, read = m.Status, m.read
	}
	if err != nil {
		return bridge.Observation{}, "", err
	}
	key := statusKey(f)
	native, ok, err := status.String(key)
	if err != nil {
		return bridge.Observation{}, "", err
	}
	if !ok || strings.TrimSpace(native) == "" {
		return bridge.Observation{}, "", fmt.Errorf("%w: the %s job payload has no %s (body starts %q); check that options.flavor matches the url",
			bridge.ErrMalformed, f, key, pollkit.Snippet(body, 120))
	}
	table := StatusTable(f)
	if table == nil {
		return bridge.Observation{}, "", fmt.Errorf("unknown flavor %q", f)
	}
	m := table.Lookup(native)
	obs = bridge.Observation{
		Job:        job,
		State:      m.State,
		Native:     native,
		SubState:   m.SubState,
		Raw:        body,
		RawJSON:    true, // DecodeFields parsed all of it
		ObservedAt: at,
		Via:        bridge.DetectedByPoll,
	}
	return obs, strings.Join(read(&obs), "; "), nil
}

// statusKey is where each flavour keeps its status.
func statusKey(f Flavor) string {
	if f == FlavorGeoprocessing {
		return "jobStatus"
	}
	return "status"
}

// read reads a Mission Server job: epoch-millisecond times and
// customAttributes with the step counts and the isCancelled flag.
func (m *missionFields) read(obs *bridge.Observation) (notes []string) {
	obs.Times, notes = epochTimes(field{"startTime", m.StartTime}, field{"endTime", m.EndTime})
	ca := &m.CustomAttributes
	obs.Progress = steps(field{"stepsCompleted", ca.StepsCompleted}, field{"totalSteps", ca.TotalSteps}, &notes)
	if !ca.IsCancelled.Set() {
		return notes
	}
	cancelled, ok := boolean(ca.IsCancelled)
	if !ok {
		return append(notes, fmt.Sprintf("customAttributes.isCancelled %s is not a boolean; ignored", snippet(ca.IsCancelled)))
	}
	obs.Outcome = map[string]string{OutcomeIsCancelled: strconv.FormatBool(cancelled)}
	if cancelled {
		applyCancelled(obs)
	}
	return notes
}

// applyCancelled is the Mission rule (vendor-apis.md §3.1, §3.6): a job
// flagged isCancelled that has finished is canceled whatever its status says
// (COMPLETED, FAILED); one still running is being cancelled, which its final
// status will settle. UNAVAILABLE stays unknown: it says nothing.
func applyCancelled(obs *bridge.Observation) {
	switch {
	case obs.State.Terminal():
		obs.State, obs.SubState = bridge.StateCanceled, ""
	case obs.State == bridge.StatePending || obs.State == bridge.StateRunning:
		obs.SubState = SubCancelling
	}
}

// read reads an administrative job in either API: the classic Server
// Administrator API (jobid, totalsteps, currentstep, stepInfo,
// operationResponse) or the Enterprise Administrator API (jobid, starttime,
// endtime, updatedtime, result).
func (e *enterpriseFields) read(obs *bridge.Observation) (notes []string) {
	obs.Times, notes = epochTimes(field{"starttime", e.StartTime}, field{"endtime", e.EndTime}, field{"updatedtime", e.UpdatedTime})
	obs.Progress = steps(field{"currentstep", e.CurrentStep}, field{"totalsteps", e.TotalSteps}, &notes)
	for _, k := range [...]field{{OutcomeOperationResponse, e.OperationResponse.Status}, {OutcomeResult, e.Result.Status}} {
		if s, ok := k.v.Text(); ok {
			if obs.Outcome == nil {
				obs.Outcome = map[string]string{}
			}
			obs.Outcome[k.key] = capVerbatim(s)
		}
	}
	applyOperationResponse(obs)
	return notes
}

// applyOperationResponse is the classic admin trap (vendor-apis.md §3.2):
// COMPLETED means the job finished, and operationResponse.status says whether
// the operation worked. The documented values are success and failed while
// the documented example says error, so both count as a failure. The
// Enterprise Administrator API's result.status is read the same way.
func applyOperationResponse(obs *bridge.Observation) {
	if obs.State != bridge.StateSucceeded {
		return
	}
	for _, k := range []string{OutcomeOperationResponse, OutcomeResult} {
		switch strings.ToLower(strings.TrimSpace(obs.Outcome[k])) {
		case "error", "failed", "failure":
			obs.State, obs.SubState = bridge.StateFailed, ""
			return
		}
	}
}

// read reads a geoprocessing job: progress {type, message, percentage},
// present while esriJobExecuting on 10.8.1 and later.
func (g *gpFields) read(obs *bridge.Observation) (notes []string) {
	pr := &g.Progress
	var p bridge.Progress
	if pr.Percentage.Set() {
		// A negative percentage is the vendor's "indeterminate".
		if v, ok := number(pr.Percentage); ok && v >= 0 {
			p.Percent = &v
		} else if !ok {
			notes = append(notes, fmt.Sprintf("progress.percentage %s is not a number; ignored", snippet(pr.Percentage)))
		}
	}
	if msg, ok := pr.Message.Text(); ok {
		p.Message = capVerbatim(msg)
	}
	if p.Percent != nil || p.Message != "" {
		obs.Progress = &p
	}
	return notes
}

// steps reads a done/total pair of step counts into a Progress; nil when
// neither is a usable count.
func steps(done, total field, notes *[]string) *bridge.Progress {
	var p bridge.Progress
	for _, k := range [...]struct {
		field
		dst **int
	}{{done, &p.StepsDone}, {total, &p.StepsTotal}} {
		if !k.v.Set() {
			continue
		}
		n, ok := integer(k.v)
		if !ok || n < 0 || n > math.MaxInt32 {
			*notes = append(*notes, fmt.Sprintf("%s %s is not a step count; ignored", k.key, snippet(k.v)))
			continue
		}
		v := int(n)
		*k.dst = &v
	}
	if p.StepsDone == nil && p.StepsTotal == nil {
		return nil
	}
	return &p
}

// epochTimes reads epoch-millisecond fields under their documented names. A
// value that is not an integer keeps its raw text and no normalized time.
func epochTimes(fields ...field) (map[string]bridge.VendorTime, []string) {
	var out map[string]bridge.VendorTime
	var notes []string
	for _, f := range fields {
		if !f.v.Set() {
			continue
		}
		if out == nil {
			out = make(map[string]bridge.VendorTime, len(fields))
		}
		ms, ok := integer(f.v)
		if !ok {
			text, _ := f.v.Text()
			out[f.key] = bridge.VendorTime{Raw: capVerbatim(text)}
			notes = append(notes, fmt.Sprintf("%s kept raw: %s is not epoch milliseconds", f.key, snippet(f.v)))
			continue
		}
		out[f.key] = pollkit.EpochMillis(ms)
	}
	return out, notes
}

// snippet quotes a value's JSON in a note.
func snippet(v pollkit.Value) string { return pollkit.Snippet([]byte(v.JSON()), 40) }

// maxExactFloat bounds integers read through float64: beyond 2^53 they are
// no longer exact.
const maxExactFloat = 1 << 53

// number reads a JSON number, or a string holding one. Like a decode into a
// float64, it takes null for 0; callers skip nulls first.
func number(v pollkit.Value) (float64, bool) {
	raw := v.JSON()
	switch {
	case raw == "":
		return 0, false
	case raw == "null":
		return 0, true
	case raw[0] == '-' || raw[0] >= '0' && raw[0] <= '9':
		// Exactly what encoding/json does with a JSON number.
		f, err := strconv.ParseFloat(raw, 64)
		if err != nil {
			return 0, false
		}
		return f, true
	}
	if !v.IsString() {
		return 0, false
	}
	s, _, _ := v.String("")
	f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, false
	}
	return f, true
}

// integer reads a whole number within float64's exact range.
func integer(v pollkit.Value) (int64, bool) {
	f, ok := number(v)
	if !ok || f != math.Trunc(f) || f > maxExactFloat || f < -maxExactFloat {
		return 0, false
	}
	return int64(f), true
}

// boolean reads true/false, or the strings "true"/"false". Like a decode
// into a bool, it takes null for false; callers skip nulls first.
func boolean(v pollkit.Value) (bool, bool) {
	switch v.JSON() {
	case "true":
		return true, true
	case "false", "null":
		return false, true
	}
	if v.IsString() {
		s, _, _ := v.String("")
		if b, err := strconv.ParseBool(strings.TrimSpace(s)); err == nil {
			return b, true
		}
	}
	return false, false
}

// maxVerbatim caps a vendor value copied into an event field; Raw keeps all.
const maxVerbatim = 1024

// capVerbatim keeps s as the vendor wrote it, cut at a rune boundary when it
// is longer than maxVerbatim.
func capVerbatim(s string) string {
	if len(s) <= maxVerbatim {
		return s
	}
	cut := maxVerbatim
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

func isJSONNull(raw json.RawMessage) bool { return strings.TrimSpace(string(raw)) == "null" }

// maxListedJobs bounds a discovery answer: the lists are flat and unpaged.
const maxListedJobs = 100000

// parseJobList reads a job list: Mission's {"asyncJobs": [...]} or the admin
// APIs' {"jobs": [...]}, each entry an id string (or, leniently, an object
// naming its jobid). Ids that could not be watched are skipped and counted in
// skipped; duplicates are dropped.
func parseJobList(body []byte, staticToken bool) (ids []string, skipped int, err error) {
	if e := parseError(body); e != nil {
		return nil, 0, e.asPollError(staticToken)
	}
	o, err := pollkit.DecodeObject(body)
	if err != nil {
		return nil, 0, err
	}
	var raw json.RawMessage
	for _, k := range []string{"asyncJobs", "jobs"} {
		if v, ok := o.Get(k); ok && !isJSONNull(v) {
			raw = v
			break
		}
	}
	if raw == nil {
		return nil, 0, fmt.Errorf("%w: the job list has neither asyncJobs nor jobs (body starts %q); check options.jobsPath", bridge.ErrMalformed, pollkit.Snippet(body, 120))
	}
	var items []json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil {
		return nil, 0, fmt.Errorf("%w: the job list is %s, not an array", bridge.ErrMalformed, pollkit.Snippet(raw, 40))
	}
	if len(items) > maxListedJobs {
		return nil, 0, fmt.Errorf("%w: the job list has %d entries, more than the %d jobbridge accepts in one answer", bridge.ErrMalformed, len(items), maxListedJobs)
	}
	seen := make(map[string]bool, len(items))
	for _, it := range items {
		id, ok := listedID(it)
		if !ok || bridge.ValidateJobID(id) != nil {
			skipped++
			continue
		}
		if !seen[id] {
			seen[id] = true
			ids = append(ids, id)
		}
	}
	return ids, skipped, nil
}

func listedID(raw json.RawMessage) (string, bool) {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s, s != ""
	}
	var o pollkit.Object
	if json.Unmarshal(raw, &o) != nil || o == nil {
		return "", false
	}
	for _, k := range []string{"jobid", "id"} {
		if s, ok, err := o.String(k); ok && err == nil && s != "" {
			return s, true
		}
	}
	return "", false
}
