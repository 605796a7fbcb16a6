package tso

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jobbridge/jobbridge/bridge"
	"github.com/jobbridge/jobbridge/pollers/pollkit"
)

// statusTable is vendor-apis.md §1.5. The REST docs show only COMPLETED; the
// rest is the ORCA ProcessStateType enum, plus CANCELED for a server that
// spells it the American way. It is never modified.
var statusTable = pollkit.MustStateTable(
	pollkit.Row{Native: "READY", State: bridge.StatePending},
	pollkit.Row{Native: "PENDING", State: bridge.StatePending},
	pollkit.Row{Native: "PENDING_REASSIGNMENT", State: bridge.StatePending},
	pollkit.Row{Native: "ASSIGNED", State: bridge.StateRunning},
	pollkit.Row{Native: "IN_PROGRESS", State: bridge.StateRunning},
	pollkit.Row{Native: "PAUSED", State: bridge.StateRunning, SubState: "paused"},
	pollkit.Row{Native: "COMPLETED", State: bridge.StateSucceeded},
	pollkit.Row{Native: "COMPENSATED", State: bridge.StateFailed},
	pollkit.Row{Native: "FAILED", State: bridge.StateFailed},
	pollkit.Row{Native: "ABORTED", State: bridge.StateFailed},
	pollkit.Row{Native: "CANCELLED", State: bridge.StateCanceled},
	pollkit.Row{Native: "CANCELED", State: bridge.StateCanceled},
)

// StatusTable is the TSO status → canonical state table.
func StatusTable() *pollkit.StateTable { return statusTable }

// Outcome bounds: TSO output values can hold a whole HTTP response (the
// vendor's own example carries an HTML page). Raw keeps everything.
const (
	maxOutcomeParams = 64
	maxOutcomeValue  = 1024
)

// statusFields are the fields of a job status body that an Observation
// reads; the rest stays in Raw. Keys match case-insensitively (TSO writes
// processName or ProcessName depending on the release).
type statusFields struct {
	Status           pollkit.Value   `json:"status"`
	StartTime        pollkit.Value   `json:"startTime"`
	OutputParameters json.RawMessage `json:"outputParameters"`
}

// buildObservation turns a job status body into an Observation. A body that
// is not a JSON object with a non-empty string status is an error wrapping
// bridge.ErrMalformed, and the Observation is then zero. Other fields are
// read leniently: a field of an unexpected type is kept as text or dropped,
// never a reason to lose the status. note describes anything dropped.
// Observation.Raw is body itself: the caller hands it over.
func buildObservation(job bridge.JobRef, body []byte, zone *time.Location, at time.Time) (obs bridge.Observation, note string, err error) {
	var f statusFields
	if _, err := pollkit.DecodeFields(body, &f); err != nil {
		return bridge.Observation{}, "", err
	}
	native, ok, err := f.Status.String("status")
	if err != nil {
		return bridge.Observation{}, "", err
	}
	if !ok || strings.TrimSpace(native) == "" {
		return bridge.Observation{}, "", fmt.Errorf("%w: the job status payload has no status (body starts %q)", bridge.ErrMalformed, pollkit.Snippet(body, 120))
	}
	m := statusTable.Lookup(native)
	obs = bridge.Observation{
		Job:        job,
		State:      m.State,
		Native:     native,
		SubState:   m.SubState,
		Outcome:    outcome(f.OutputParameters),
		Raw:        body,
		RawJSON:    true, // DecodeFields parsed all of it
		ObservedAt: at,
		Via:        bridge.DetectedByPoll,
	}
	if raw, ok := f.StartTime.Text(); ok && raw != "" {
		vt := bridge.VendorTime{Raw: raw}
		t, perr := ParseJavaDate(raw, zone)
		switch {
		case perr != nil:
			note = "startTime kept raw: " + perr.Error()
		case t.UTC().Year() < 1971:
			// The vendor's example shows one second before the epoch: a
			// "not set" value, not a start. Keep it raw, claim no time.
		default:
			vt.Normalized = t.UTC()
		}
		obs.Times = map[string]bridge.VendorTime{"startTime": vt}
	}
	return obs, note, nil
}

// outputParameter is one entry of outputParameters.
type outputParameter struct {
	Name  pollkit.Value `json:"name"`
	Value pollkit.Value `json:"value"`
}

// outcome flattens outputParameters (raw: nil when absent) into name →
// value, verbatim (values stay XML-wrapped): for a COMPLETED job, business
// errors live there. processName, name and peerId say what ran where, not
// how it ended, so they stay in Raw only. A duplicate name gets "#2", "#3";
// a nameless entry its index.
func outcome(raw json.RawMessage) map[string]string {
	if raw == nil || raw[0] == '[' && string(bytes.TrimSpace(raw[1:])) == "]" {
		return nil // absent or empty: the usual case, without a decode
	}
	var items []json.RawMessage
	if json.Unmarshal(raw, &items) != nil {
		if text := pollkit.RawText(raw); text != "null" && text != "" {
			return map[string]string{"outputParameters": capValue(text)}
		}
		return nil
	}
	if len(items) == 0 {
		return nil
	}
	out := make(map[string]string, min(len(items), maxOutcomeParams))
	for i, it := range items {
		if len(out) == maxOutcomeParams {
			out["(truncated)"] = fmt.Sprintf("%d more output parameters in the raw payload", len(items)-i)
			break
		}
		var p outputParameter
		if it[0] != '{' || json.Unmarshal(it, &p) != nil {
			out[strconv.Itoa(i)] = capValue(pollkit.RawText(it))
			continue
		}
		name, _ := p.Name.Text()
		if name == "" {
			name = strconv.Itoa(i)
		}
		key := name
		for n := 2; ; n++ {
			if _, dup := out[key]; !dup {
				break
			}
			key = name + "#" + strconv.Itoa(n)
		}
		value, _ := p.Value.Text()
		out[key] = capValue(value)
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

func capValue(v string) string {
	if len(v) <= maxOutcomeValue {
		return v
	}
	cut := maxOutcomeValue
	for cut > 0 && !isRuneStart(v[cut]) {
		cut--
	}
	return v[:cut] + fmt.Sprintf("…[%d more bytes in the raw payload]", len(v)-cut)
}

func isRuneStart(b byte) bool { return b&0xC0 != 0x80 }
