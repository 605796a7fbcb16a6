package hmc

import (
	"bytes"
	"fmt"
	"strings"
	"time"

	"github.com/jobbridge/jobbridge/bridge"
	"github.com/jobbridge/jobbridge/pollers/pollkit"
)

// SubStateCancelPending marks a job whose cancellation was requested but
// has not ended it yet.
const SubStateCancelPending = "cancel-pending"

// Outcome keys, the HMC's own field names.
const (
	OutcomeStatusCode = "job-status-code"
	OutcomeReasonCode = "job-reason-code"
)

// statusTable is Query Job Status's status enum (vendor-apis.md §5,
// hmc-notifications.md §5). "complete" says only that the job ended
// normally: whether it succeeded is in job-status-code (see
// CompleteState), so the row's succeeded is refined per payload. It is
// never modified.
var statusTable = pollkit.MustStateTable(
	pollkit.Row{Native: "running", State: bridge.StateRunning},
	pollkit.Row{Native: "cancel-pending", State: bridge.StateRunning, SubState: SubStateCancelPending},
	pollkit.Row{Native: "canceled", State: bridge.StateCanceled},
	pollkit.Row{Native: "complete", State: bridge.StateSucceeded},
)

// StatusTable is the HMC status → canonical state table. Its "complete"
// row holds only when CompleteState says so.
func StatusTable() *pollkit.StateTable { return statusTable }

// CompleteState is the state of a "complete" job: succeeded when
// job-status-code is 2xx, failed otherwise, and failed when the code is
// missing (the HMC promises one for an ended job; zhmcclient raises an
// error for a complete job without a success code, and so do we rather
// than claim a success nobody reported).
func CompleteState(statusCode int64, present bool) bridge.State {
	if present && statusCode >= 200 && statusCode <= 299 {
		return bridge.StateSucceeded
	}
	return bridge.StateFailed
}

// buildObservation turns a Query Job Status body into an Observation. A body
// that is not a JSON object with a non-empty string status, or whose
// job-status-code or job-reason-code is present but not an integer, is an
// error wrapping bridge.ErrMalformed, and the Observation is then zero: a
// code nobody can read must not turn into a success or a failure.
// job-results is operation-specific and stays in Raw only.
func buildObservation(job bridge.JobRef, body []byte, at time.Time) (bridge.Observation, error) {
	o, err := pollkit.DecodeObject(body)
	if err != nil {
		return bridge.Observation{}, err
	}
	native, ok, err := o.String("status")
	if err != nil {
		return bridge.Observation{}, err
	}
	if !ok || strings.TrimSpace(native) == "" {
		return bridge.Observation{}, fmt.Errorf("%w: the job status payload has no status (body starts %q)", bridge.ErrMalformed, pollkit.Snippet(body, 120))
	}
	var outcome map[string]string
	var code int64
	var hasCode bool
	for _, key := range []string{OutcomeStatusCode, OutcomeReasonCode} {
		v, found := o.Get(key)
		if !found || string(bytes.TrimSpace(v)) == "null" {
			continue
		}
		n, isInt := intField(o, key)
		if !isInt {
			return bridge.Observation{}, fmt.Errorf("%w: %s is %s, not an integer", bridge.ErrMalformed, key, pollkit.Snippet(v, 40))
		}
		if outcome == nil {
			outcome = make(map[string]string, 2)
		}
		outcome[key] = string(bytes.TrimSpace(v))
		if key == OutcomeStatusCode {
			code, hasCode = n, true
		}
	}
	m := statusTable.Lookup(native)
	state := m.State
	if strings.EqualFold(strings.TrimSpace(native), "complete") {
		state = CompleteState(code, hasCode)
	}
	return bridge.Observation{
		Job:        job,
		State:      state,
		Native:     native,
		SubState:   m.SubState,
		Outcome:    outcome,
		Raw:        append([]byte(nil), body...),
		ObservedAt: at,
		Via:        bridge.DetectedByPoll,
	}, nil
}
