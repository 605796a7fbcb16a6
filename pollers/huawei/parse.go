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

// Field names as v2 writes them; v3 writes them in lower case, and lookups
// ignore case (pollkit.Object).
const (
	keyJob       = "job"
	keyTasks     = "tasks"
	keyTaskCount = "task_count"
	keyExecState = "EXECUTION_STATUS"
	keyTaskID    = "TASK_ID"
	keyTaskState = "TASK_STATUS"
)

// taskTimes are the task timestamps kept in Observation.Times. Their format
// is undocumented: ISO-8601 in the vendor's example, epoch accepted too.
var taskTimes = []string{"CREATED_AT", "LAST_HEALTH_CHECK"}

// page is one parsed answer of the job endpoint.
type page struct {
	native    string // the job's EXECUTION_STATUS, verbatim
	taskCount int    // -1 when task_count is missing or unusable
	tasks     []task
	raw       []byte
}

type task struct {
	id, native string
	obj        pollkit.Object
	raw        json.RawMessage
}

// parsePage reads one job-details body. It fails, wrapping
// bridge.ErrMalformed, unless the body is a JSON object with a job object
// holding a non-empty string EXECUTION_STATUS, and tasks (if present) is an
// array. A task that lacks a usable TASK_ID or TASK_STATUS is dropped and
// named in notes, so one odd task does not hide the job's state.
func parsePage(body []byte) (pg page, notes []string, err error) {
	o, err := pollkit.DecodeObject(body)
	if err != nil {
		return page{}, nil, err
	}
	rawJob, ok := o.Get(keyJob)
	var job pollkit.Object
	if !ok || json.Unmarshal(rawJob, &job) != nil || job == nil {
		hint := ""
		if e, ok := parseErrorBody(body); ok {
			hint = " (it is an error: " + e.String() + ")"
		}
		return page{}, nil, fmt.Errorf("%w: the job details have no job object%s (body starts %q)", bridge.ErrMalformed, hint, pollkit.Snippet(body, 120))
	}
	native, ok, err := job.String(keyExecState)
	if err != nil {
		return page{}, nil, err
	}
	if !ok || strings.TrimSpace(native) == "" {
		return page{}, nil, fmt.Errorf("%w: the job has no %s (body starts %q)", bridge.ErrMalformed, keyExecState, pollkit.Snippet(body, 120))
	}
	pg = page{native: native, taskCount: -1, raw: body}
	if raw, ok := o.Get(keyTaskCount); ok && !isNull(raw) {
		n, err := strconv.Atoi(pollkit.RawText(raw))
		if err != nil || n < 0 {
			notes = append(notes, fmt.Sprintf("task_count %s is not a count; paging by page size", pollkit.Snippet(raw, 40)))
		} else {
			pg.taskCount = n
		}
	}
	rawTasks, ok := o.Get(keyTasks)
	if !ok || isNull(rawTasks) {
		return pg, notes, nil
	}
	var items []json.RawMessage
	if err := json.Unmarshal(rawTasks, &items); err != nil {
		return page{}, nil, fmt.Errorf("%w: tasks is %s, not an array", bridge.ErrMalformed, pollkit.Snippet(rawTasks, 40))
	}
	for i, it := range items {
		var t pollkit.Object
		if json.Unmarshal(it, &t) != nil || t == nil {
			notes = append(notes, fmt.Sprintf("task %d dropped: not an object", i))
			continue
		}
		id, _, err1 := t.String(keyTaskID)
		st, _, err2 := t.String(keyTaskState)
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
		pg.tasks = append(pg.tasks, task{id: id, native: st, obj: t, raw: it})
	}
	return pg, notes, nil
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
		Raw:        append([]byte(nil), first.raw...),
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
		Raw:        append([]byte(nil), t.raw...),
		ObservedAt: at,
		Via:        bridge.DetectedByPoll,
	}
	for _, k := range taskTimes {
		raw, ok := t.obj.Get(k)
		if !ok || isNull(raw) {
			continue
		}
		if to.Times == nil {
			to.Times = make(map[string]bridge.VendorTime, len(taskTimes))
		}
		to.Times[k] = parseTime(pollkit.RawText(raw))
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
