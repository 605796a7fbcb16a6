package hmcsim

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// The job statuses of Query Job Status. A job has ended when it is
// StatusComplete or StatusCanceled; only then does it carry completion codes,
// send a job-completion notice, start its retention interval and accept a
// Delete Completed Job Status.
const (
	StatusRunning       = "running"
	StatusCancelPending = "cancel-pending"
	StatusCanceled      = "canceled"
	StatusComplete      = "complete"
)

// Step is one job status held for a duration. A script's last step persists
// forever and its For is ignored; an ended status (complete, canceled) must
// be the last step, since the HMC never changes an ended job.
type Step struct {
	// Status is written verbatim, so a script may also use a value the HMC
	// does not document (to test a client's "unknown" path); only
	// "complete" and "canceled" end a job.
	Status string        `yaml:"status"`
	For    time.Duration `yaml:"for"`
	// StatusCode is job-status-code, the HTTP status the operation would
	// have returned synchronously. It defaults to 200 for complete; for
	// canceled it must be given (its value is operation-specific).
	StatusCode *int `yaml:"statusCode"`
	// NoStatusCode leaves job-status-code out although the job ended: a
	// payload that breaks the documented contract, for client tests.
	NoStatusCode bool `yaml:"noStatusCode"`
	// ReasonCode is job-reason-code. The HMC provides it only for a status
	// code outside 2xx, where it is then required; giving one for a 2xx code
	// reproduces the vendor's own example ("job-reason-code": 0 with 200).
	ReasonCode *int `yaml:"reasonCode"`
	// Results is job-results, operation-specific.
	Results map[string]any `yaml:"results"`
}

// Job describes a simulated asynchronous job.
type Job struct {
	// ID is the {job-id} of /api/jobs/{job-id}; generated when empty.
	ID string `yaml:"id"`
	// User is the API user the job belongs to: only that user's sessions
	// may query or delete it. It may be left out when Options.Users has
	// exactly one user.
	User string `yaml:"user"`
	// Script defaults to Options.DefaultScript.
	Script []Step `yaml:"script"`
}

// Ended reports whether status ends a job.
func Ended(status string) bool { return status == StatusComplete || status == StatusCanceled }

func checkScript(script []Step) error {
	if len(script) == 0 {
		return errors.New("the script is empty")
	}
	for i, st := range script {
		n := i + 1
		if strings.TrimSpace(st.Status) == "" {
			return fmt.Errorf("script step %d has no status", n)
		}
		last := i == len(script)-1
		if !last && st.For <= 0 {
			return fmt.Errorf("script step %d (%s) needs a positive duration; only the last step may omit it", n, st.Status)
		}
		if !Ended(st.Status) {
			if st.StatusCode != nil || st.ReasonCode != nil || st.Results != nil || st.NoStatusCode {
				return fmt.Errorf("script step %d (%s): completion codes and results belong to an ended job (complete or canceled) only", n, st.Status)
			}
			continue
		}
		if !last {
			return fmt.Errorf("script step %d (%s) ends the job, so it must be the last step: the HMC never changes an ended job", n, st.Status)
		}
		if st.NoStatusCode {
			if st.StatusCode != nil {
				return fmt.Errorf("script step %d: statusCode and noStatusCode contradict each other", n)
			}
			continue
		}
		code := 200
		switch {
		case st.StatusCode != nil:
			code = *st.StatusCode
		case st.Status == StatusCanceled:
			return fmt.Errorf("script step %d (canceled) needs a statusCode: the HMC gives one for a canceled job, and its value depends on the operation", n)
		}
		if code < 100 || code > 599 {
			return fmt.Errorf("script step %d: statusCode %d is not an HTTP status", n, code)
		}
		if (code < 200 || code > 299) && st.ReasonCode == nil {
			return fmt.Errorf("script step %d: statusCode %d is an error, so the HMC gives a reasonCode too; script one", n, code)
		}
	}
	return nil
}

type segment struct {
	start time.Time
	step  Step
}

type job struct {
	id      string
	user    string
	session string // the api-session that started it; empty when none did
	segs    []segment
	// endAt is when the job ended (its terminal step began); zero if it
	// never ends.
	endAt     time.Time
	deletedAt time.Time
	// notified: the job-completion notice went out.
	notified bool
}

func newJob(id, user, session string, script []Step, start time.Time) *job {
	j := &job{id: id, user: user, session: session}
	t := start
	for _, st := range script {
		j.segs = append(j.segs, segment{start: t, step: st})
		if Ended(st.Status) {
			j.endAt = t
		}
		t = t.Add(st.For)
	}
	return j
}

// at returns the step in force at now.
func (j *job) at(now time.Time) Step {
	cur := j.segs[0].step
	for _, sg := range j.segs[1:] {
		if sg.start.After(now) {
			break
		}
		cur = sg.step
	}
	return cur
}

// ended reports whether the job has ended by now.
func (j *job) ended(now time.Time) bool { return !j.endAt.IsZero() && !j.endAt.After(now) }

// goneAt returns when the job's status stopped being available: deleted, or
// expired at the end of the retention interval (retention < 0: never).
func (j *job) goneAt(retention time.Duration) (time.Time, RemovalKind) {
	var expiry time.Time
	if !j.endAt.IsZero() && retention >= 0 {
		expiry = j.endAt.Add(retention)
	}
	switch {
	case !j.deletedAt.IsZero() && (expiry.IsZero() || j.deletedAt.Before(expiry)):
		return j.deletedAt, RemovalDeleted
	case !expiry.IsZero():
		return expiry, RemovalExpired
	}
	return time.Time{}, ""
}

func (j *job) gone(now time.Time, retention time.Duration) bool {
	at, kind := j.goneAt(retention)
	return kind != "" && !at.After(now)
}

// body renders Query Job Status. A map, so keys come out sorted, as in the
// vendor's example; a running or cancel-pending job shows its status only.
func (st Step) body() map[string]any {
	out := map[string]any{"status": st.Status}
	if !Ended(st.Status) {
		return out
	}
	if !st.NoStatusCode {
		code := 200
		if st.StatusCode != nil {
			code = *st.StatusCode
		}
		out["job-status-code"] = code
	}
	if st.ReasonCode != nil {
		out["job-reason-code"] = *st.ReasonCode
	}
	if st.Results != nil {
		out["job-results"] = st.Results
	}
	return out
}

// RemovalKind says why a job's status went away.
type RemovalKind string

// Ways a job's status goes away; after either, Query Job Status answers 404
// reason 1.
const (
	RemovalDeleted RemovalKind = "deleted" // Delete Completed Job Status
	RemovalExpired RemovalKind = "expired" // the retention interval ended
)

// Change is one entry of the ground truth: a job's status changed, or its
// status went away.
type Change struct {
	JobID string
	// Status is the new status; empty when Removed is set.
	Status string
	// Removed says the job's status went away (then Status is empty).
	Removed RemovalKind
	At      time.Time
}
