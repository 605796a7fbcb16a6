package huawei

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jobbridge/jobbridge/bridge"
	"github.com/jobbridge/jobbridge/pollers/pollkit"
)

// jobRows is vendor-apis.md §4.5 for EXECUTION_STATUS. Sub-states tell apart
// natives that share a canonical state. ROLLBACKED counts as failed: a
// rollback happens because the deployment failed (INFERRED).
var jobRows = []pollkit.Row{
	{Native: "SUBMITTED", State: bridge.StatePending},
	{Native: "SCHEDULED", State: bridge.StatePending, SubState: "scheduled"},
	{Native: "RUNNING", State: bridge.StateRunning},
	{Native: "ROLLBACKING", State: bridge.StateRunning, SubState: "rolling_back"},
	{Native: "SUCCEEDED", State: bridge.StateSucceeded},
	{Native: "FAILED", State: bridge.StateFailed},
	{Native: "PARTIALLY_FAILED", State: bridge.StateFailed, SubState: "partial"},
	{Native: "ROLLBACKED", State: bridge.StateFailed, SubState: "rolled_back"},
	{Native: "CANCELLED", State: bridge.StateCanceled},
	{Native: "UNKNOWN", State: bridge.StateUnknown},
}

// taskRows is the same table for TASK_STATUS, which adds SKIPPED: a task
// the workflow did not need to run, which does not fail the job.
var taskRows = []pollkit.Row{
	{Native: "SUBMITTED", State: bridge.StatePending},
	{Native: "SCHEDULED", State: bridge.StatePending, SubState: "scheduled"},
	{Native: "RUNNING", State: bridge.StateRunning},
	{Native: "ROLLBACKING", State: bridge.StateRunning, SubState: "rolling_back"},
	{Native: "SUCCEEDED", State: bridge.StateSucceeded},
	{Native: "SKIPPED", State: bridge.StateSucceeded, SubState: "skipped"},
	{Native: "FAILED", State: bridge.StateFailed},
	{Native: "PARTIALLY_FAILED", State: bridge.StateFailed, SubState: "partial"},
	{Native: "ROLLBACKED", State: bridge.StateFailed, SubState: "rolled_back"},
	{Native: "CANCELLED", State: bridge.StateCanceled},
	{Native: "UNKNOWN", State: bridge.StateUnknown},
}

// The tables are never modified.
var (
	jobTable  = pollkit.MustStateTable(jobRows...)
	taskTable = pollkit.MustStateTable(taskRows...)
)

// JobTable is the EXECUTION_STATUS → canonical state table.
func JobTable() *pollkit.StateTable { return jobTable }

// TaskTable is the TASK_STATUS → canonical state table.
func TaskTable() *pollkit.StateTable { return taskTable }

// Field names as v2 writes them, for messages; v3 writes them in lower
// case, and decoding ignores case (pageFields).
const (
	keyJob       = "job"
	keyTasks     = "tasks"
	keyExecState = "EXECUTION_STATUS"
	keyTaskID    = "TASK_ID"
	keyTaskState = "TASK_STATUS"
)

// pageFields are the fields of a job-details body that a poll reads; the
// rest stays in Raw. Each task is kept verbatim for its own Raw and read by
// taskFields.
type pageFields struct {
	Job struct {
		ExecutionStatus pollkit.Value `json:"EXECUTION_STATUS"`
	} `json:"job"`
	Tasks     []json.RawMessage `json:"tasks"`
	TaskCount pollkit.Value     `json:"task_count"`
}

// taskFields are the fields of a task that its Observation reads.
type taskFields struct {
	ID     pollkit.Value `json:"TASK_ID"`
	Status pollkit.Value `json:"TASK_STATUS"`
	// The timestamps kept in Observation.Times. Their format is
	// undocumented: ISO-8601 in the vendor's example, epoch accepted too.
	CreatedAt       pollkit.Value `json:"CREATED_AT"`
	LastHealthCheck pollkit.Value `json:"LAST_HEALTH_CHECK"`
}

// page is one parsed answer of the job endpoint.
type page struct {
	native    string // the job's EXECUTION_STATUS, verbatim
	taskCount int    // -1 when task_count is missing or unusable
	tasks     []task
	raw       []byte
}

type task struct {
	id, native string
	fields     taskFields
	raw        json.RawMessage
}

// parsePage reads one job-details body, which it keeps as the page's raw.
// It fails, wrapping bridge.ErrMalformed, unless the body is a JSON object
// with a job object holding a non-empty string EXECUTION_STATUS, and tasks
// (if present) is an array. A task that lacks a usable TASK_ID or
// TASK_STATUS is dropped and named in notes, so one odd task does not hide
// the job's state.
func parsePage(body []byte) (pg page, notes []string, err error) {
	var f pageFields
	mismatch, err := pollkit.DecodeFields(body, &f)
	if err != nil {
		return page{}, nil, err
	}
	if !f.Job.ExecutionStatus.Found() {
		return page{}, nil, noExecState(body)
	}
	native, ok, err := f.Job.ExecutionStatus.String(keyExecState)
	if err != nil {
		return page{}, nil, err
	}
	if !ok || strings.TrimSpace(native) == "" {
		return page{}, nil, fmt.Errorf("%w: the job has no %s (body starts %q)", bridge.ErrMalformed, keyExecState, pollkit.Snippet(body, 120))
	}
	if mismatch {
		// The job object is fine, so it is tasks that is not an array.
		if raw := field(body, keyTasks); len(raw) > 0 && !isNull(raw) {
			return page{}, nil, fmt.Errorf("%w: tasks is %s, not an array", bridge.ErrMalformed, pollkit.Snippet(raw, 40))
		}
	}
	pg = page{native: native, taskCount: -1, raw: body}
	if f.TaskCount.Set() {
		text, _ := f.TaskCount.Text()
		n, err := strconv.Atoi(text)
		if err != nil || n < 0 {
			notes = append(notes, fmt.Sprintf("task_count %s is not a count; paging by page size", pollkit.Snippet([]byte(f.TaskCount.JSON()), 40)))
		} else {
			pg.taskCount = n
		}
	}
	if len(f.Tasks) > 0 {
		pg.tasks = make([]task, 0, len(f.Tasks))
	}
	for i, it := range f.Tasks {
		var t taskFields
		if it[0] != '{' || json.Unmarshal(it, &t) != nil {
			notes = append(notes, fmt.Sprintf("task %d dropped: not an object", i))
			continue
		}
		id, _, err1 := t.ID.String(keyTaskID)
		st, _, err2 := t.Status.String(keyTaskState)
		switch {
		case err1 != nil || err2 != nil:
			notes = append(notes, fmt.Sprintf("task %d dropped: TASK_ID or TASK_STATUS is not a string", i))
			continue
		case bridge.ValidateJobID(id) != nil:
			notes = append(notes, fmt.Sprintf("task %d dropped: unusable TASK_ID %q", i, pollkit.Snippet([]byte(id), 60)))
			continue
		case strings.TrimSpace(st) == "":
			notes = append(notes, fmt.Sprintf("task %q dropped: no TASK_STATUS", id))
			continue
		}
		pg.tasks = append(pg.tasks, task{id: id, native: st, fields: t, raw: it})
	}
	if len(pg.tasks) == 0 {
		pg.tasks = nil
	}
	return pg, notes, nil
}

// noExecState explains a page without an EXECUTION_STATUS: no job object at
// all (an error envelope inside a 200, say) or a job object without it.
func noExecState(body []byte) error {
	if raw := field(body, keyJob); len(raw) > 0 && raw[0] == '{' {
		return fmt.Errorf("%w: the job has no %s (body starts %q)", bridge.ErrMalformed, keyExecState, pollkit.Snippet(body, 120))
	}
	hint := ""
	if e, ok := parseErrorBody(body); ok {
		hint = " (it is an error: " + e.String() + ")"
	}
	return fmt.Errorf("%w: the job details have no job object%s (body starts %q)", bridge.ErrMalformed, hint, pollkit.Snippet(body, 120))
}

// field returns the value under key of a body already known to be a JSON
// object, for the error paths that must tell a missing value from one of
// the wrong type.
func field(body []byte, key string) json.RawMessage {
	o, err := pollkit.DecodeObject(body)
	if err != nil {
		return nil
	}
	raw, _ := o.Get(key)
	return raw
}

func isNull(v json.RawMessage) bool { return strings.TrimSpace(string(v)) == "null" }

// buildObservation merges the pages of one poll. The job's status comes
// from the first page, read before the tasks of later pages, so a job
// reported finished never comes with tasks older than it. A task that two
// pages both list (the list moved between requests) keeps its first
// position and its newest state.
func buildObservation(job bridge.JobRef, pages []page, at time.Time) bridge.Observation {
	first := pages[0]
	m := jobTable.Lookup(first.native)
	obs := bridge.Observation{
		Job:        job,
		State:      m.State,
		Native:     first.native,
		SubState:   m.SubState,
		Raw:        first.raw,
		RawJSON:    true, // DecodeFields parsed all of it
		ObservedAt: at,
		Via:        bridge.DetectedByPoll,
	}
	index := map[string]int{}
	total := -1
	for _, pg := range pages {
		if pg.taskCount >= 0 {
			total = pg.taskCount
		}
		for _, t := range pg.tasks {
			to := taskObservation(job, t, at)
			if i, dup := index[t.id]; dup {
				obs.Tasks[i] = to
				continue
			}
			index[t.id] = len(obs.Tasks)
			obs.Tasks = append(obs.Tasks, to)
		}
	}
	// Progress is tasks finished out of tasks listed: the one measure of
	// how far a deployment is that the API gives.
	total = max(total, len(obs.Tasks))
	if total > 0 {
		done := 0
		for _, t := range obs.Tasks {
			if t.State.Terminal() {
				done++
			}
		}
		obs.Progress = &bridge.Progress{StepsDone: &done, StepsTotal: &total}
	}
	return obs
}

// taskObservation maps one task. MESSAGES (the failure detail) stays in Raw
// only: it is free text the vendor may rewrite, and an Outcome change would
// count as a transition.
func taskObservation(job bridge.JobRef, t task, at time.Time) bridge.Observation {
	m := taskTable.Lookup(t.native)
	j := job
	j.Task = t.id
	to := bridge.Observation{
		Job:        j,
		State:      m.State,
		Native:     t.native,
		SubState:   m.SubState,
		Raw:        t.raw,
		RawJSON:    true, // DecodeFields parsed all of it
		ObservedAt: at,
		Via:        bridge.DetectedByPoll,
	}
	for _, tv := range [...]struct {
		key string
		v   pollkit.Value
	}{{"CREATED_AT", t.fields.CreatedAt}, {"LAST_HEALTH_CHECK", t.fields.LastHealthCheck}} {
		text, ok := tv.v.Text()
		if !ok {
			continue
		}
		if to.Times == nil {
			to.Times = make(map[string]bridge.VendorTime, 2)
		}
		to.Times[tv.key] = parseTime(text)
	}
	return to
}

// parseTime reads a timestamp whose format Huawei does not document: the
// example's ISO-8601, or epoch digits (milliseconds from 12 digits on,
// seconds below, which covers 1973 to 5138 unambiguously). Anything else is
// kept raw without a normalized time.
func parseTime(s string) bridge.VendorTime {
	t := strings.TrimSpace(s)
	if t != "" && strings.Trim(t, "0123456789") == "" && len(t) <= 18 {
		n, err := strconv.ParseInt(t, 10, 64)
		if err == nil && n > 0 {
			if len(t) >= 12 {
				vt := pollkit.EpochMillis(n)
				vt.Raw = s
				return vt
			}
			return bridge.VendorTime{Raw: s, Normalized: time.Unix(n, 0).UTC()}
		}
		return bridge.VendorTime{Raw: s}
	}
	if len(t) > 64 {
		return bridge.VendorTime{Raw: s}
	}
	return pollkit.ISOTime(s)
}
