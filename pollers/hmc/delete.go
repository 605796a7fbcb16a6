package hmc

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/jobbridge/jobbridge/bridge"
	"github.com/jobbridge/jobbridge/pollers/pollkit"
)

// ErrJobNotEnded: Delete Completed Job Status answered 409 reason 40, the
// job is still running or cancel-pending.
var ErrJobNotEnded = errors.New("the HMC job has not ended")

// deleteTimeout bounds one OnTerminal deletion, retries included.
const deleteTimeout = 2 * time.Minute

// DeleteJob runs Delete Completed Job Status (DELETE /api/jobs/{job-id}).
// Errors wrap bridge.ErrNotFound when the status is gone already (404
// reason 1: deleted, expired, or not this user's job) and ErrJobNotEnded
// when the job has not ended (409 reason 40).
func (p *Poller) DeleteJob(ctx context.Context, id string) error {
	if fromURI, ok := JobIDFromURI(id); ok {
		id = fromURI
	}
	resp, err := p.client.Do(ctx, pollkit.Request{Method: http.MethodDelete, Path: JobURI(id), Auth: p.auth})
	if err != nil {
		return fmt.Errorf("hmc %s: delete job %q: %w", p.instance, id, err)
	}
	e, isHMC := parseAPIError(resp.Body)
	switch {
	case resp.StatusCode == http.StatusNoContent || resp.StatusCode == http.StatusOK:
		return nil
	case resp.StatusCode == http.StatusNotFound && isHMC && e.Reason == reasonNoSuchJob:
		return fmt.Errorf("%w: HMC %s: job %q has no status to delete (%s)", bridge.ErrNotFound, p.instance, id, e.describe(resp.StatusCode))
	case resp.StatusCode == http.StatusConflict && isHMC && e.Reason == reasonJobNotEnded:
		return fmt.Errorf("%w: HMC %s refused to delete job %q (%s)", ErrJobNotEnded, p.instance, id, e.describe(resp.StatusCode))
	case isHMC:
		return fmt.Errorf("hmc %s: delete job %q: %s: %w", p.instance, id, e.describe(resp.StatusCode), pollkit.UnexpectedStatus(resp))
	}
	return fmt.Errorf("hmc %s: delete job %q: %w", p.instance, id, pollkit.UnexpectedStatus(resp))
}

// OnTerminal is the bridge.Instance.OnTerminal hook that FromConfig wires
// when deleteCompleted is set: the bridge calls it once a job's terminal
// event is acknowledged, so deleting never loses a result nobody published.
// It deletes the job's status and remembers the terminal observation, which
// later polls of the job return instead of a 404 (no "vanished" for a job
// jobbridge removed itself). It does nothing unless Options.DeleteCompleted.
//
//   - 204: deleted.
//   - 404 reason 1: gone already (someone else deleted it, or the retention
//     interval ended); treated as deleted.
//   - 409 reason 40: the HMC says the job has not ended, although it
//     reported an ended status. Logged as a warning and not retried; the
//     status stays until the HMC's retention interval removes it, and later
//     polls ask the HMC again.
//   - anything else (after pollkit's retries): logged as a warning; the
//     status stays until the retention interval ends.
func (p *Poller) OnTerminal(ctx context.Context, job bridge.JobRef) {
	if !p.deleteCompleted {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, deleteTimeout)
	defer cancel()
	id := job.ID
	if fromURI, ok := JobIDFromURI(id); ok {
		id = fromURI
	}
	err := p.DeleteJob(ctx, id)
	switch {
	case err == nil:
		p.ended.markDeleted(id)
		p.log.Debug().Str("job", job.ID).Msg("deleted the ended job's status (deleteCompleted)")
	case errors.Is(err, bridge.ErrNotFound):
		p.ended.markDeleted(id)
		p.log.Debug().Str("job", job.ID).Msg("the ended job's status was gone already")
	case errors.Is(err, ErrJobNotEnded):
		p.log.Warn().Err(err).Str("job", job.ID).Msg("the HMC says the job has not ended although it reported an ended status; its status is left for the HMC's retention interval to remove")
	case ctx.Err() != nil:
		p.log.Debug().Err(err).Str("job", job.ID).Msg("deleting the ended job's status was cut short; the HMC removes it after its retention interval")
	default:
		p.log.Warn().Err(err).Str("job", job.ID).Msg("cannot delete the ended job's status; the HMC removes it after its retention interval (at least 4 hours)")
	}
}

// Bounds of the memory of ended jobs: enough for a day of a busy HMC, small
// enough not to matter.
const (
	endedMemoMax = 10000
	endedMemoTTL = 24 * time.Hour
)

// endedMemo remembers the terminal observation of jobs the poller may
// delete (put by Poll) and which of them it did delete (markDeleted by
// OnTerminal). It holds at most max jobs, each for at most ttl after it was
// first put. It is safe for concurrent use.
type endedMemo struct {
	max int
	ttl time.Duration

	mu    sync.Mutex
	m     map[string]*memoEntry
	order []*memoEntry
}

type memoEntry struct {
	id      string
	obs     bridge.Observation
	deleted bool
	since   time.Time
}

func newEndedMemo(max int, ttl time.Duration) *endedMemo {
	return &endedMemo{max: max, ttl: ttl, m: make(map[string]*memoEntry)}
}

// put remembers a job's terminal observation; a job already deleted keeps
// the observation it had.
func (e *endedMemo) put(id string, obs bridge.Observation, now time.Time) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.pruneLocked(now)
	if me, ok := e.m[id]; ok {
		if !me.deleted {
			me.obs = obs
		}
		return
	}
	me := &memoEntry{id: id, obs: obs, since: now}
	e.m[id] = me
	e.order = append(e.order, me)
	e.pruneLocked(now)
}

func (e *endedMemo) pruneLocked(now time.Time) {
	n := 0
	for n < len(e.order) && (len(e.m) > e.max || now.Sub(e.order[n].since) > e.ttl) {
		delete(e.m, e.order[n].id)
		e.order[n] = nil
		n++
	}
	e.order = e.order[n:]
}

// markDeleted records that the job's status was deleted.
func (e *endedMemo) markDeleted(id string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if me, ok := e.m[id]; ok {
		me.deleted = true
	}
}

// deleted returns the terminal observation of a job whose status was
// deleted, with its own copy of Raw.
func (e *endedMemo) deleted(id string) (bridge.Observation, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	me, ok := e.m[id]
	if !ok || !me.deleted {
		return bridge.Observation{}, false
	}
	obs := me.obs
	obs.Raw = append([]byte(nil), obs.Raw...)
	return obs, true
}
