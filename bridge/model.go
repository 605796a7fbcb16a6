package bridge

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// State is a canonical job state. Every vendor status maps onto exactly one.
type State string

// The canonical states. Terminal: succeeded, failed, canceled.
const (
	StatePending   State = "pending"
	StateRunning   State = "running"
	StateSucceeded State = "succeeded"
	StateFailed    State = "failed"
	StateCanceled  State = "canceled"
	StateUnknown   State = "unknown"
)

// States lists every canonical state, in lifecycle order.
var States = []State{StatePending, StateRunning, StateSucceeded, StateFailed, StateCanceled, StateUnknown}

// Terminal reports whether no further transition is expected from s.
func (s State) Terminal() bool {
	return s == StateSucceeded || s == StateFailed || s == StateCanceled
}

// Valid reports whether s is one of the canonical states.
func (s State) Valid() bool {
	switch s {
	case StatePending, StateRunning, StateSucceeded, StateFailed, StateCanceled, StateUnknown:
		return true
	}
	return false
}

// Detection says how a transition was noticed.
type Detection string

// Ways a transition is detected.
const (
	DetectedByPoll  Detection = "poll"
	DetectedBySTOMP Detection = "stomp"
	DetectedBySSE   Detection = "sse"
)

// ViaMarker is implemented by a Poller that can report how the next poll
// of a job was caused (the HMC push wrapper). With scale-out, a push hint
// that another replica polls reaches it with the detection, and that
// replica marks its poller before polling, so the event's detectedBy is
// the push channel and not "poll".
type ViaMarker interface {
	Mark(job JobRef, via Detection)
}

// JobRef names one watched job. Vendor and Instance come from configuration,
// ID from the vendor (and so from outside: it may hold any byte). Task is set
// only for a vendor sub-job tracked on its own (a Huawei task, say).
type JobRef struct {
	Vendor   string
	Instance string
	ID       string
	Task     string
}

func (r JobRef) String() string {
	if r.Task != "" {
		return r.Vendor + "/" + r.Instance + "/" + r.ID + "/" + r.Task
	}
	return r.Vendor + "/" + r.Instance + "/" + r.ID
}

// Key is the job's key in the KV buckets: escaped tokens joined by dots, so
// every KV key is valid whatever bytes the vendor put in the job id.
func (r JobRef) Key() string {
	k := EscapeToken(r.Vendor) + "." + EscapeToken(r.Instance) + "." + EscapeToken(r.ID)
	if r.Task != "" {
		k += "." + EscapeToken(r.Task)
	}
	return k
}

// Validate checks what a subject and a KV key need: non-empty tokens of
// bounded length.
func (r JobRef) Validate() error {
	if err := ValidateName("vendor", r.Vendor); err != nil {
		return err
	}
	if err := ValidateName("instance", r.Instance); err != nil {
		return err
	}
	if err := ValidateJobID(r.ID); err != nil {
		return err
	}
	if r.Task != "" {
		if err := ValidateJobID(r.Task); err != nil {
			return fmt.Errorf("task id: %w", err)
		}
	}
	return nil
}

// VendorTime is a timestamp as the vendor wrote it and as RFC 3339 UTC.
// Normalized is zero when the vendor value could not be parsed; Raw is kept
// either way so nothing the vendor said is lost.
type VendorTime struct {
	Raw        string    `json:"vendor"`
	Normalized time.Time `json:"normalized,omitzero"`
}

// Progress is how far a running job has come, where the vendor says so.
type Progress struct {
	Percent    *float64 `json:"percent,omitempty"`
	StepsDone  *int     `json:"stepsDone,omitempty"`
	StepsTotal *int     `json:"stepsTotal,omitempty"`
	Message    string   `json:"message,omitempty"`
}

// Observation is what one poll (or one pushed message followed by a poll) saw
// of one job. Pollers fill it; the tracker decides whether it is a transition.
type Observation struct {
	Job JobRef
	// State is the canonical state after applying the vendor's mapping table,
	// outcome fields included (HMC complete with a 500 status code is failed).
	State State
	// Native is the vendor's status field, verbatim.
	Native string
	// SubState is a vendor sub-state worth telling apart (paused, cancel-pending).
	SubState string
	// RunID distinguishes runs of a job that repeats (a Helix ETL's
	// last_exec_ts), so a new run in the same state is still a change.
	RunID string
	// Outcome holds the vendor fields that decide success, verbatim
	// (job-status-code, exit_code, operationResponse.status, ...).
	Outcome map[string]string
	// Times are the vendor's timestamps by the vendor's own field name.
	Times map[string]VendorTime
	// Progress is nil when the vendor says nothing about it.
	Progress *Progress
	// Raw is the vendor payload as received; the event carries it capped.
	Raw []byte
	// RawJSON tells that Raw is one complete JSON value: the poller parsed
	// all of it with encoding/json. The encoder then skips re-validating it
	// (a sixth of its cost); leave it false when in doubt.
	RawJSON bool
	// Tasks are sub-jobs observed in the same payload; each is tracked on its
	// own under Job with Task set.
	Tasks []Observation
	// ObservedAt is when the bridge received the payload.
	ObservedAt time.Time
	Via        Detection
}

// Poller knows one vendor instance: how to log on, fetch one job's status and
// map it. Implementations must be safe for concurrent use.
type Poller interface {
	// Poll fetches the job's current status. Errors wrap ErrNotFound,
	// ErrMalformed or ErrAuth where they apply; anything else is transient.
	Poll(ctx context.Context, job JobRef) (Observation, error)
}

// Discoverer is implemented by pollers whose vendor can list its jobs.
type Discoverer interface {
	Discover(ctx context.Context) ([]string, error)
}

// Closer is implemented by pollers that hold a vendor session to log off.
type Closer interface {
	Close(ctx context.Context) error
}

// Errors a poller wraps so that the bridge can react without knowing the vendor.
var (
	// ErrNotFound: the vendor says the job does not exist (never did, or its
	// status was removed after the retention interval).
	ErrNotFound = errors.New("job not found at the vendor")
	// ErrMalformed: the vendor answered with something that is not a status
	// payload. Never a transition.
	ErrMalformed = errors.New("malformed vendor payload")
	// ErrAuth: the vendor rejected the credentials even after renewing them.
	ErrAuth = errors.New("vendor rejected the credentials")
)

// EventKind says which kind of event a change produces.
type EventKind string

// Event kinds beyond the canonical state transitions.
const (
	KindTransition     EventKind = "transition"
	KindProgress       EventKind = "progress"
	KindVanished       EventKind = "vanished"
	KindStalled        EventKind = "stalled"
	KindDeadlineMissed EventKind = "deadline_missed"
)
