package hmcsim

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// The SSE facility of HMC 2.16 and later (hmc-notifications.md §3). Only
// Open Server-Sent Events Stream is documented in what we found: its URI,
// the stream-id and initial-events parameters, 404 for a stream that is
// invalid or does not belong to a fully authenticated session, that opening
// an open stream closes the old connection, and the initial-events-start /
// initial-events-end framing. Everything else here is ASSUMED, and kept in
// the same shape as the client's assumptions (notifiers/hmc/sseapi.go):
//
//   - Create Server-Sent Events Stream is POST SSECreatePath, any JSON
//     object as body, answering 200 {"stream-id": "..."}.
//   - A stream carries the job-completion notifications of the session that
//     created it (as its job notification topic does), as events named
//     after notification-type, with id: global-sequence-nr and a JSON data
//     object of the message's properties.
//   - The server sends a comment line every SSEKeepAlive.
//   - A stream dies with its session; notices sent while no connection is
//     open are lost, as on a non-durable topic.
const (
	SSECreatePath = "/api/sessions/operations/create-server-sent-events-stream"
	SSEOpenPath   = "/api/sessions/operations/open-server-sent-events-stream"
)

// DefaultSSEKeepAlive is how often an open stream gets a comment line.
const DefaultSSEKeepAlive = 15 * time.Second

// SSEStats counts what the SSE endpoint saw.
type SSEStats struct {
	Created int
	Opened  int
	// NotFound counts opens answered 404 (unknown stream, or its session
	// ended).
	NotFound int
	// Delivered counts events written to an open stream; Unheard those for
	// a session with no open stream, which are lost.
	Delivered int
	Unheard   int
	// Dropped counts connections ended by DropSSEStreams, by a newer open
	// of the same stream, by the end of their session or by overflow.
	Dropped int
}

type sseStreams struct {
	mu      sync.Mutex
	streams map[string]*sseStream
	stats   SSEStats
}

type sseStream struct {
	id, session string
	conn        *sseConn
}

type sseConn struct {
	ch      chan []byte
	done    chan struct{}
	once    sync.Once
	stalled atomic.Bool
}

func (c *sseConn) end() { c.once.Do(func() { close(c.done) }) }

func newSSEStreams() *sseStreams { return &sseStreams{streams: make(map[string]*sseStream)} }

func (m pushMessage) sseEvent() []byte {
	data, _ := json.Marshal(map[string]any{
		"notification-type":   "job-completion",
		"job-uri":             m.JobURI,
		"global-sequence-nr":  m.GlobalSeq,
		"session-sequence-nr": m.SessSeq,
		"timestamp":           m.Timestamp,
	})
	return fmt.Appendf(nil, "id: %d\nevent: job-completion\ndata: %s\n\n", m.GlobalSeq, data)
}

func (x *sseStreams) deliver(m pushMessage) {
	ev := m.sseEvent()
	x.mu.Lock()
	defer x.mu.Unlock()
	heard := false
	for _, st := range x.streams {
		if st.session != m.SessionID || st.conn == nil || st.conn.stalled.Load() {
			continue
		}
		select {
		case st.conn.ch <- ev:
			heard = true
			x.stats.Delivered++
		default: // a client this far behind loses the connection
			st.conn.end()
			st.conn = nil
			x.stats.Dropped++
		}
	}
	if !heard {
		x.stats.Unheard++
	}
}

func (x *sseStreams) sessionClosed(id string) {
	x.mu.Lock()
	defer x.mu.Unlock()
	for sid, st := range x.streams {
		if st.session == id {
			if st.conn != nil {
				st.conn.end()
				x.stats.Dropped++
			}
			delete(x.streams, sid)
		}
	}
}

// dropAll ends every open stream connection (a clean end of the body).
func (x *sseStreams) dropAll() int {
	x.mu.Lock()
	defer x.mu.Unlock()
	n := 0
	for _, st := range x.streams {
		if st.conn != nil {
			st.conn.end()
			st.conn = nil
			n++
		}
	}
	x.stats.Dropped += n
	return n
}

func (x *sseStreams) stallAll() int {
	x.mu.Lock()
	defer x.mu.Unlock()
	n := 0
	for _, st := range x.streams {
		if st.conn != nil {
			st.conn.stalled.Store(true)
			n++
		}
	}
	return n
}

// SSEStats returns the SSE endpoint's counters so far.
func (s *Server) SSEStats() SSEStats {
	s.push.sse.mu.Lock()
	defer s.push.sse.mu.Unlock()
	return s.push.sse.stats
}

// DropSSEStreams ends every open SSE connection now with a clean end of
// the response body (the case some SSE clients do not reconnect after),
// and returns how many it ended.
func (s *Server) DropSSEStreams() int { return s.push.sse.dropAll() }

// StallSSEStreams silences every open SSE connection without ending it:
// no events and no keep-alives; events for it are lost.
func (s *Server) StallSSEStreams() int { return s.push.sse.stallAll() }

// OpenSSEStreams returns how many SSE connections are open now.
func (s *Server) OpenSSEStreams() int {
	x := s.push.sse
	x.mu.Lock()
	defer x.mu.Unlock()
	n := 0
	for _, st := range x.streams {
		if st.conn != nil {
			n++
		}
	}
	return n
}

func (s *Server) createStream(w http.ResponseWriter, r *http.Request, ss *session) {
	if r.ContentLength != 0 {
		var body map[string]any
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<16)).Decode(&body); err != nil {
			writeError(w, r, http.StatusBadRequest, 0, "The request body is not a JSON object.")
			return
		}
	}
	x := s.push.sse
	st := &sseStream{id: randomAlnum(24), session: ss.info.ID}
	x.mu.Lock()
	x.streams[st.id] = st
	x.stats.Created++
	x.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]string{"stream-id": st.id})
}

func (s *Server) openStream(w http.ResponseWriter, r *http.Request, ss *session) {
	q := r.URL.Query()
	id := q.Get("stream-id")
	initial := q.Get("initial-events") == "true"
	x := s.push.sse
	c := &sseConn{ch: make(chan []byte, 4096), done: make(chan struct{})}
	x.mu.Lock()
	st, ok := x.streams[id]
	if !ok || st.session != ss.info.ID {
		x.stats.NotFound++
		x.mu.Unlock()
		writeError(w, r, http.StatusNotFound, 1, "The stream-id does not designate a Server-Sent Events stream of this session.")
		return
	}
	if st.conn != nil { // opening an open stream closes the old connection first
		st.conn.end()
		x.stats.Dropped++
	}
	st.conn = c
	x.stats.Opened++
	x.mu.Unlock()
	defer func() {
		x.mu.Lock()
		if st.conn == c {
			st.conn = nil
		}
		x.mu.Unlock()
	}()

	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "text/event-stream")
	w.WriteHeader(http.StatusOK)
	write := func(b []byte) bool {
		if c.stalled.Load() {
			return true
		}
		if _, err := w.Write(b); err != nil {
			return false
		}
		return rc.Flush() == nil
	}
	if !write(nil) {
		return
	}
	if initial {
		// No snapshot for job completions: a job-completion has no
		// "current state" to report [assumed].
		if !write([]byte("event: initial-events-start\ndata: {}\n\n")) || !write([]byte("event: initial-events-end\ndata: {}\n\n")) {
			return
		}
	}
	keep := s.opts.SSEKeepAlive
	var tick <-chan time.Time
	if keep > 0 {
		t := time.NewTicker(keep)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case ev := <-c.ch:
			if !write(ev) {
				return
			}
		case <-tick:
			if !write([]byte(": keep-alive\n\n")) {
				return
			}
		case <-c.done:
			return
		case <-s.done:
			return
		case <-r.Context().Done():
			return
		}
	}
}
