package hmcsim

import (
	"strconv"
	"sync"
)

// pushHub turns notices into the HMC's push messages and hands them to the
// push channels (the STOMP broker, the SSE streams). It numbers each
// job-completion once, so that both channels carry the same sequence
// numbers, as one HMC would.
//
// Numbering [assumed: IBM's "Common message characteristics" was not found]:
// global-sequence-nr counts every notification the HMC sends, from
// globalSeqStart; session-sequence-nr counts the notifications of one
// session, from 1 (the one real log we have shows 1 beside 6399).
type pushHub struct {
	mu         sync.Mutex
	global     int64
	perSession map[string]int64
	broker     *Broker
	sse        *sseStreams
}

// globalSeqStart makes global numbers look like a busy HMC's, so a client
// that confuses the two counters is caught.
const globalSeqStart = 6400

func newPushHub() *pushHub {
	return &pushHub{global: globalSeqStart - 1, perSession: make(map[string]int64), sse: newSSEStreams()}
}

// pushMessage is one job-completion message as the HMC pushes it.
type pushMessage struct {
	Topic     string // the job notification topic of the session
	SessionID string
	JobURI    string
	GlobalSeq int64
	SessSeq   int64
	// Timestamp is the notice's time in epoch milliseconds.
	Timestamp int64
}

// headers renders the message's JMS properties as the STOMP headers the
// HMC's ActiveMQ sends: every value a string (hmc-notifications.md §2).
func (m pushMessage) headers() []string {
	return []string{
		"notification-type", "job-completion",
		"job-uri", m.JobURI,
		"global-sequence-nr", strconv.FormatInt(m.GlobalSeq, 10),
		"session-sequence-nr", strconv.FormatInt(m.SessSeq, 10),
		"timestamp", strconv.FormatInt(m.Timestamp, 10),
		"expires", "0",
		"priority", "4",
	}
}

func (h *pushHub) setBroker(b *Broker) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.broker = b
}

func (h *pushHub) currentBroker() *Broker {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.broker
}

// notice is the hub's Subscribe callback. It runs in Sync, in clock order.
func (h *pushHub) notice(n Notice) {
	switch n.Kind {
	case NoticeJobCompletion:
		// The HMC notifies only the session that started the job, and only
		// while that session is open.
		if n.Session.ID == "" || !n.Session.Open() {
			return
		}
		h.mu.Lock()
		h.global++
		h.perSession[n.Session.ID]++
		m := pushMessage{
			Topic: n.Session.JobNotificationTopic, SessionID: n.Session.ID, JobURI: n.JobURI,
			GlobalSeq: h.global, SessSeq: h.perSession[n.Session.ID], Timestamp: n.At.UnixMilli(),
		}
		b := h.broker
		h.mu.Unlock()
		if b != nil {
			b.publish(m)
		}
		h.sse.deliver(m)
	case NoticeSessionClosed:
		if b := h.currentBroker(); b != nil {
			b.sessionClosed(n.Session.ID)
		}
		h.sse.sessionClosed(n.Session.ID)
	}
}
