package hmc

import (
	"context"
	"sync"
	"time"

	"github.com/jobbridge/jobbridge/bridge"
	hmcpoll "github.com/jobbridge/jobbridge/pollers/hmc"
)

// ViaPoller is the HMC poller as the bridge should poll it when a push
// channel runs (bridge.Instance.Poller): the poll that a notification
// caused reports Via stomp or sse, so the event's detectedBy says how the
// change was found. Everything else (Close, OnTerminal, the session) is
// the embedded *hmc.Poller's.
//
// This is a stand-in for a bridge feature: with Bridge.Hint carrying the
// detection (see the package README), the scheduler could set Via itself.
type ViaPoller struct {
	*hmcpoll.Poller
	now func() time.Time

	mu    sync.Mutex
	marks map[string]viaMark
}

type viaMark struct {
	via bridge.Detection
	at  time.Time
}

// Marks older than markTTL are ignored (the hinted poll never came: the
// job's watch ended meanwhile), and at most maxMarks are kept.
const (
	markTTL  = time.Minute
	maxMarks = 100_000
)

var (
	_ bridge.Poller = (*ViaPoller)(nil)
	_ bridge.Closer = (*ViaPoller)(nil)
	_ Marker        = (*ViaPoller)(nil)
)

// NewViaPoller wraps p.
func NewViaPoller(p *hmcpoll.Poller) *ViaPoller {
	return &ViaPoller{Poller: p, now: time.Now, marks: make(map[string]viaMark)}
}

// Mark says the next poll of job is caused by a push message.
func (v *ViaPoller) Mark(job bridge.JobRef, via bridge.Detection) {
	now := v.now()
	v.mu.Lock()
	defer v.mu.Unlock()
	if len(v.marks) >= maxMarks {
		for k, m := range v.marks {
			if now.Sub(m.at) > markTTL {
				delete(v.marks, k)
			}
		}
		if len(v.marks) >= maxMarks {
			return // a flood of hints for jobs never polled: leave them "poll"
		}
	}
	v.marks[job.Key()] = viaMark{via: via, at: now}
}

// Unmark withdraws a mark (the hint named no watched job).
func (v *ViaPoller) Unmark(job bridge.JobRef) {
	v.mu.Lock()
	defer v.mu.Unlock()
	delete(v.marks, job.Key())
}

// Poll polls through the HMC poller and, when a push message caused this
// poll, says so in Via. The mark is taken before polling: a poll already
// in flight when the message came does not take it, the one the hint asked
// for does.
func (v *ViaPoller) Poll(ctx context.Context, job bridge.JobRef) (bridge.Observation, error) {
	via := v.take(job)
	obs, err := v.Poller.Poll(ctx, job)
	if err == nil && via != "" {
		obs.Via = via
	}
	return obs, err
}

func (v *ViaPoller) take(job bridge.JobRef) bridge.Detection {
	v.mu.Lock()
	defer v.mu.Unlock()
	if len(v.marks) == 0 {
		return ""
	}
	k := job.Key()
	m, ok := v.marks[k]
	if !ok {
		return ""
	}
	delete(v.marks, k)
	if v.now().Sub(m.at) > markTTL {
		return ""
	}
	return m.via
}
