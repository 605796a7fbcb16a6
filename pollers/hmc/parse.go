package hmc

import (
	"fmt"
	"strconv"
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

// statusFields are the fields of a Query Job Status body that an
// Observation reads; job-results stays in Raw.
type statusFields struct {
	Status     pollkit.Value `json:"status"`
	StatusCode pollkit.Value `json:"job-status-code"`
	ReasonCode pollkit.Value `json:"job-reason-code"`
}

// buildObservation turns a Query Job Status body into an Observation. A body
// that is not a JSON object with a non-empty string status, or whose
// job-status-code or job-reason-code is present but not an integer, is an
// error wrapping bridge.ErrMalformed, and the Observation is then zero: a
// code nobody can read must not turn into a success or a failure.
// job-results is operation-specific and stays in Raw only, which is body
// itself: the caller hands it over.
func buildObservation(job bridge.JobRef, body []byte, at time.Time) (bridge.Observation, error) {
	var f statusFields
	if _, err := pollkit.DecodeFields(body, &f); err != nil {
		return bridge.Observation{}, err
	}
	native, ok, err := f.Status.String("status")
	if err != nil {
		return bridge.Observation{}, err
	}
	if !ok || strings.TrimSpace(native) == "" {
		return bridge.Observation{}, fmt.Errorf("%w: the job status payload has no status (body starts %q)", bridge.ErrMalformed, pollkit.Snippet(body, 120))
	}
	var outcome map[string]string
	var code int64
	var hasCode bool
	for _, c := range []struct {
		key string
		v   pollkit.Value
	}{{OutcomeStatusCode, f.StatusCode}, {OutcomeReasonCode, f.ReasonCode}} {
		if !c.v.Set() {
			continue
		}
		n, err := strconv.ParseInt(c.v.JSON(), 10, 64)
		if err != nil {
			return bridge.Observation{}, fmt.Errorf("%w: %s is %s, not an integer", bridge.ErrMalformed, c.key, pollkit.Snippet([]byte(c.v.JSON()), 40))
		}
		if outcome == nil {
			outcome = make(map[string]string, 2)
		}
		outcome[c.key] = c.v.JSON()
		if c.key == OutcomeStatusCode {
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
		Raw:        body,
		RawJSON:    true, // DecodeFields parsed all of it
		ObservedAt: at,
		Via:        bridge.DetectedByPoll,
	}, nil
}
