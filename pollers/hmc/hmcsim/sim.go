// Package hmcsim owns a simulator of the IBM Z HMC Web Services API's session
// and asynchronous-job operations (shared/reference/hmc-notifications.md §1
// and §5), in the style of net/http/httptest: NewServer starts it on a random
// local port, Close stops it.
//
// It behaves as the vendor documents, not as a client would find easiest:
// Logon (POST /api/sessions) returns api-session, session-credential and a
// fresh pair of notification topics per session; every other call needs the
// X-API-Session header and answers 403 reason 4 without it and 403 reason 5
// once the session expired (idle timeout, lifetime, or on command) or was
// logged off. Query Job Status (GET /api/jobs/{job-id}) shows only the status
// while a job runs, and job-status-code, job-reason-code (only for a status
// code outside 2xx) and job-results once it ended; a job belongs to its API
// user, and any other user, an unknown id, a deleted job or one whose
// retention interval (4 hours by default) ran out gets 404 reason 1. Delete
// Completed Job Status answers 204, or 409 reason 40 while the job has not
// ended. Errors carry the standard error body {"http-status", "reason",
// "message", ...}.
//
// Jobs follow scripts on a Clock. Faults (5xx, HTML from a proxy, slow
// answers, truncated JSON, session expiry) are injected now or scheduled.
// History is the ground truth of every status change and removal, at the
// clock time it happened, whether or not anyone polled.
//
// The push side: StartBroker runs the HMC's STOMP broker (stomp.go), and
// the SSE operations (sse.go, partly assumed) are served on the API port.
// Both send a job's completion only to the session that started it, and
// lose what they send while that session has no connection. Subscribe
// delivers a Notice when a job ends (with the session that started it),
// when a session opens and when it closes; Session, SessionForTopic and
// CheckCredential answer what a broker checks at CONNECT and SUBSCRIBE.
//
// Listen and Serve run it as a standalone server, and LoadScenario reads a
// YAML (or JSON) scenario of jobs and faults, for a CLI demo.
package hmcsim

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"
)

// Clock drives job scripts, session timeouts, retention and scheduled
// faults. Delay faults always take real time: they model the network.
// *pollkit.ManualClock is one a test can step.
type Clock interface {
	Now() time.Time
}

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

// SessionHeader carries the api-session on every request after Logon.
const SessionHeader = "X-API-Session"

// Defaults for zero Options fields.
const (
	// DefaultSessionIdleTimeout is the mock default of the User property
	// web-services-api-session-idle-timeout (360, read as minutes).
	DefaultSessionIdleTimeout = 360 * time.Minute
	// DefaultSessionLifetime is zhmcclient's "10 hours" per session id.
	DefaultSessionLifetime = 10 * time.Hour
	// DefaultRetention is the documented minimum time an ended job's status
	// is kept.
	DefaultRetention = 4 * time.Hour
	// DefaultTickEvery is how often the server looks at its clock for ended
	// jobs and expired sessions to notify.
	DefaultTickEvery = 50 * time.Millisecond
)

// Options configure a Server. Zero fields take the defaults given.
type Options struct {
	// Users maps userids to passwords; default {"apiuser": "apiuser"}.
	Users map[string]string
	// API version reported by Logon and GET /api/version; default 4.10,
	// HMC "HMCSIM" version 2.16.0.
	APIMajorVersion, APIMinorVersion int
	HMCName, HMCVersion              string
	// SessionIdleTimeout ends a session unused for longer; negative: never.
	SessionIdleTimeout time.Duration
	// SessionLifetime ends a session this long after its logon; negative:
	// never.
	SessionLifetime time.Duration
	// Retention is how long an ended job's status stays queryable;
	// negative: forever.
	Retention time.Duration
	// Clock drives scripts, timeouts and scheduled faults; nil means real
	// time.
	Clock Clock
	// TLS serves https with httptest's certificate, valid for 127.0.0.1,
	// ::1 and example.com (see Client, Certificate).
	TLS bool
	// DefaultScript is the script of jobs started through the API and of
	// jobs added without one; default running 5s, then complete with 200.
	DefaultScript []Step
	// Jobs and Faults are created when the server starts (a scenario).
	Jobs   []Job
	Faults []Fault
	// TickEvery is how often (real time) the server checks its clock to
	// deliver notices; negative: never, the caller calls Sync.
	TickEvery time.Duration
	// Logger receives one debug line per request. Passwords, session ids
	// and credentials are never logged.
	Logger zerolog.Logger
	// SSEKeepAlive is how often an open SSE stream gets a comment line;
	// default DefaultSSEKeepAlive, negative: never.
	SSEKeepAlive time.Duration
}

// Stats counts what the server saw.
type Stats struct {
	Requests     int
	Logons       int // successful
	FailedLogons int
	Logoffs      int
	// SessionRejections counts 403 reason 4 (no session id) and reason 5
	// (unknown, expired or logged-off session).
	SessionRejections int
	JobQueries        int // answered 200
	JobNotFound       int // 404 reason 1, query or delete
	Deletes           int // 204
	DeleteConflicts   int // 409 reason 40
	JobsStarted       int // through the API
	Faults            int // requests answered (or delayed) by a fault
}

// Server is a running simulator.
type Server struct {
	// URL is the API root, http://127.0.0.1:port (paths start /api/).
	URL string

	ts        *httptest.Server
	opts      Options
	clock     Clock
	log       zerolog.Logger
	start     time.Time
	done      chan struct{}
	closeOnce sync.Once
	tickDone  chan struct{}

	// dispatch serialises Sync, so listeners see notices in order.
	dispatch  sync.Mutex
	lmu       sync.Mutex
	listeners map[int]func(Notice)
	nextL     int

	mu       sync.Mutex
	jobs     map[string]*job
	order    []*job
	ending   endQueue // jobs whose completion notice is still to come
	sessions map[string]*session
	sorder   []*session
	topicSeq int
	faults   []*pendingFault
	queue    []Notice
	stats    Stats

	// push turns notices into STOMP messages and SSE events (push.go).
	push *pushHub
}

// NewServer starts a simulator on 127.0.0.1 at a random port. Like
// httptest.NewServer it panics when it cannot listen or the options are
// invalid.
func NewServer(opts Options) *Server {
	s, err := Listen("127.0.0.1:0", opts)
	if err != nil {
		panic("hmcsim: " + err.Error())
	}
	return s
}

// Listen starts a simulator on addr (host:port).
func Listen(addr string, opts Options) (*Server, error) {
	s, err := newServer(opts)
	if err != nil {
		return nil, err
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	s.ts = httptest.NewUnstartedServer(s)
	s.ts.Listener.Close()
	s.ts.Listener = l
	if opts.TLS {
		s.ts.StartTLS()
	} else {
		s.ts.Start()
	}
	s.URL = s.ts.URL
	if s.opts.TickEvery > 0 {
		s.tickDone = make(chan struct{})
		go s.tick()
	}
	return s, nil
}

// Serve runs a simulator on addr until ctx is done, for a standalone run.
func Serve(ctx context.Context, addr string, opts Options) error {
	s, err := Listen(addr, opts)
	if err != nil {
		return err
	}
	defer s.Close()
	s.log.Info().Str("url", s.URL).Int("jobs", len(opts.Jobs)).Int("faults", len(opts.Faults)).Msg("HMC simulator listening")
	<-ctx.Done()
	return nil
}

func newServer(opts Options) (*Server, error) {
	if opts.Users == nil {
		opts.Users = map[string]string{"apiuser": "apiuser"}
	}
	opts.Users = maps.Clone(opts.Users) // the caller may reuse its map
	for u := range opts.Users {
		if u == "" {
			return nil, errors.New("a userid is empty")
		}
	}
	if opts.APIMajorVersion == 0 && opts.APIMinorVersion == 0 {
		opts.APIMajorVersion, opts.APIMinorVersion = 4, 10
	}
	if opts.HMCName == "" {
		opts.HMCName = "HMCSIM"
	}
	if opts.HMCVersion == "" {
		opts.HMCVersion = "2.16.0"
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&opts.SessionIdleTimeout, DefaultSessionIdleTimeout)
	def(&opts.SessionLifetime, DefaultSessionLifetime)
	def(&opts.Retention, DefaultRetention)
	def(&opts.TickEvery, DefaultTickEvery)
	def(&opts.SSEKeepAlive, DefaultSSEKeepAlive)
	if opts.Clock == nil {
		opts.Clock = realClock{}
	}
	if len(opts.DefaultScript) == 0 {
		opts.DefaultScript = []Step{{Status: StatusRunning, For: 5 * time.Second}, {Status: StatusComplete}}
	}
	if err := checkScript(opts.DefaultScript); err != nil {
		return nil, fmt.Errorf("DefaultScript: %w", err)
	}
	s := &Server{
		opts:      opts,
		clock:     opts.Clock,
		log:       opts.Logger.With().Str("component", "hmcsim").Logger(),
		done:      make(chan struct{}),
		listeners: make(map[int]func(Notice)),
		jobs:      make(map[string]*job),
		sessions:  make(map[string]*session),
		push:      newPushHub(),
	}
	s.start = s.clock.Now()
	s.Subscribe(s.push.notice)
	for _, j := range opts.Jobs {
		if _, err := s.AddJob(j); err != nil {
			return nil, err
		}
	}
	for _, f := range opts.Faults {
		if err := s.InjectFault(f); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// Close stops the server, cutting delayed replies short.
func (s *Server) Close() {
	s.closeOnce.Do(func() {
		close(s.done)
		if b := s.push.currentBroker(); b != nil {
			b.Close()
		}
		s.push.sse.dropAll()
		if s.ts != nil {
			s.ts.Close()
		}
		if s.tickDone != nil {
			<-s.tickDone
		}
	})
}

// Client returns an HTTP client that trusts the server's certificate.
func (s *Server) Client() *http.Client { return s.ts.Client() }

// Certificate returns the TLS certificate, nil without TLS.
func (s *Server) Certificate() *x509.Certificate { return s.ts.Certificate() }

func (s *Server) tick() {
	defer close(s.tickDone)
	t := time.NewTicker(s.opts.TickEvery)
	defer t.Stop()
	for {
		select {
		case <-s.done:
			return
		case <-t.C:
			s.Sync()
		}
	}
}

// Subscribe registers fn for every Notice from now on, delivered in clock
// order by Sync (which the server runs every TickEvery). fn must not call
// Sync. cancel removes it.
func (s *Server) Subscribe(fn func(Notice)) (cancel func()) {
	s.lmu.Lock()
	defer s.lmu.Unlock()
	id := s.nextL
	s.nextL++
	s.listeners[id] = fn
	return func() {
		s.lmu.Lock()
		defer s.lmu.Unlock()
		delete(s.listeners, id)
	}
}

// Sync brings the simulation up to the clock's now (scheduled faults, ended
// jobs, expired sessions) and delivers the notices that produced, in order.
func (s *Server) Sync() {
	s.dispatch.Lock()
	defer s.dispatch.Unlock()
	s.mu.Lock()
	s.advanceLocked(s.clock.Now())
	q := s.queue
	s.queue = nil
	s.mu.Unlock()
	if len(q) == 0 {
		return
	}
	sort.SliceStable(q, func(a, b int) bool { return q[a].At.Before(q[b].At) })
	s.lmu.Lock()
	fns := make([]func(Notice), 0, len(s.listeners))
	for _, id := range slices.Sorted(maps.Keys(s.listeners)) {
		fns = append(fns, s.listeners[id])
	}
	s.lmu.Unlock()
	for _, n := range q {
		for _, fn := range fns {
			fn(n)
		}
	}
}

// advanceLocked fires due expire_sessions faults, closes expired sessions
// and notes ended jobs, queueing their notices.
func (s *Server) advanceLocked(now time.Time) {
	for _, pf := range s.faults {
		if pf.Kind != FaultExpireSessions || pf.left == 0 || pf.at.After(now) {
			continue
		}
		pf.left = 0
		for _, ss := range s.sorder {
			if ss.info.Open() && !ss.info.OpenedAt.After(pf.at) && (ss.invalidAt.IsZero() || ss.invalidAt.After(pf.at)) {
				ss.invalidAt = pf.at
			}
		}
	}
	for _, ss := range s.sorder {
		if !ss.info.Open() {
			continue
		}
		if at, expired := ss.expiry(now, s.opts.SessionIdleTimeout, s.opts.SessionLifetime); expired {
			s.closeLocked(ss, at, ClosedExpired)
		}
	}
	for _, j := range s.ending.due(now) {
		if j.notified {
			continue
		}
		j.notified = true
		n := Notice{Kind: NoticeJobCompletion, At: j.endAt, JobID: j.id, JobURI: JobURI(j.id), Status: j.at(now).Status}
		if ss, ok := s.sessions[j.session]; ok {
			n.Session = ss.info
		}
		s.queue = append(s.queue, n)
	}
}

func (s *Server) closeLocked(ss *session, at time.Time, why CloseReason) {
	ss.info.ClosedAt, ss.info.CloseReason = at, why
	s.queue = append(s.queue, Notice{Kind: NoticeSessionClosed, At: at, Session: ss.info})
}

// JobURI is the canonical URI of a job id: what a 202 answer and a
// job-completion message carry.
func JobURI(id string) string { return "/api/jobs/" + url.PathEscape(id) }

// AddJob adds a job starting now by the server's clock, started by no
// session (so its completion notifies nobody). It returns the job id,
// generated when j.ID is empty.
func (s *Server) AddJob(j Job) (string, error) {
	return s.addJob(j, "")
}

// StartJob adds a job as if the session sessionID had started it (the job
// belongs to that session's user, and its completion goes to that
// session's job topic).
func (s *Server) StartJob(sessionID string, j Job) (string, error) {
	s.mu.Lock()
	ss, ok := s.sessions[sessionID]
	s.mu.Unlock()
	if !ok {
		return "", fmt.Errorf("no session %q", sessionID)
	}
	if j.User != "" && j.User != ss.info.UserID {
		return "", fmt.Errorf("job user %q is not the session's user %q", j.User, ss.info.UserID)
	}
	j.User = ss.info.UserID
	return s.addJob(j, sessionID)
}

func (s *Server) addJob(j Job, sessionID string) (string, error) {
	if len(j.Script) == 0 {
		j.Script = s.opts.DefaultScript
	}
	if err := checkScript(j.Script); err != nil {
		return "", fmt.Errorf("job %q: %w", j.ID, err)
	}
	if j.User == "" {
		if len(s.opts.Users) != 1 {
			return "", fmt.Errorf("job %q: say which user it belongs to (there are %d users)", j.ID, len(s.opts.Users))
		}
		for u := range s.opts.Users {
			j.User = u
		}
	}
	if _, ok := s.opts.Users[j.User]; !ok {
		return "", fmt.Errorf("job %q: user %q is not one of the server's users", j.ID, j.User)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if j.ID == "" {
		j.ID = randomJobID()
	}
	if _, dup := s.jobs[j.ID]; dup {
		return "", fmt.Errorf("job %q exists already", j.ID)
	}
	jb := newJob(j.ID, j.User, sessionID, j.Script, s.clock.Now())
	s.jobs[j.ID] = jb
	s.order = append(s.order, jb)
	s.ending.add(jb, len(s.order))
	return j.ID, nil
}

// MustAddJob is AddJob for tests: it panics on an invalid job.
func (s *Server) MustAddJob(id string, script ...Step) string {
	id, err := s.AddJob(Job{ID: id, Script: script})
	if err != nil {
		panic("hmcsim: " + err.Error())
	}
	return id
}

// Status returns a job's status now, and whether its status is still
// available (not deleted, not expired).
func (s *Server) Status(id string) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	j, ok := s.jobs[id]
	now := s.clock.Now()
	if !ok || j.gone(now, s.opts.Retention) {
		return "", false
	}
	return j.at(now).Status, true
}

// History lists every status change and removal of every job up to now, by
// the server's clock, ordered by time (ties in the order jobs were added).
// A job's first status counts as a change at its creation.
func (s *Server) History() []Change {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.clock.Now()
	var out []Change
	for _, j := range s.order {
		prev := ""
		for i, sg := range j.segs {
			if i > 0 && sg.start.After(now) {
				break
			}
			if i == 0 || sg.step.Status != prev {
				out = append(out, Change{JobID: j.id, Status: sg.step.Status, At: sg.start})
			}
			prev = sg.step.Status
		}
		if at, kind := j.goneAt(s.opts.Retention); kind != "" && !at.After(now) {
			out = append(out, Change{JobID: j.id, Removed: kind, At: at})
		}
	}
	sort.SliceStable(out, func(a, b int) bool { return out[a].At.Before(out[b].At) })
	return out
}

// Stats returns the counters so far.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats
}

// OpenSession logs userid on as another client would (no HTTP), for tests
// and for jobs started by someone other than the client under test.
func (s *Server) OpenSession(userid, password string) (SessionInfo, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ss, ok := s.logonLocked(userid, password, s.clock.Now())
	if !ok {
		return SessionInfo{}, errors.New("logon refused: unknown userid or wrong password")
	}
	return ss.info, nil
}

// Session returns a session by its api-session, closed ones included (then
// Open reports false).
func (s *Server) Session(id string) (SessionInfo, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.advanceLocked(s.clock.Now())
	ss, ok := s.sessions[id]
	if !ok {
		return SessionInfo{}, false
	}
	return ss.info, true
}

// SessionForTopic returns the session a topic belongs to (object or job
// notification topic), closed ones included.
func (s *Server) SessionForTopic(topic string) (SessionInfo, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.advanceLocked(s.clock.Now())
	for _, ss := range s.sorder {
		if ss.info.NotificationTopic == topic || ss.info.JobNotificationTopic == topic {
			return ss.info, true
		}
	}
	return SessionInfo{}, false
}

// CheckCredential reports whether id and credential name an open session:
// the STOMP login with session-id and session-credential.
func (s *Server) CheckCredential(id, credential string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.advanceLocked(s.clock.Now())
	ss, ok := s.sessions[id]
	return ok && ss.info.Open() && credential != "" && ss.info.Credential == credential
}

// Sessions lists every session in logon order, closed ones included.
func (s *Server) Sessions() []SessionInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.advanceLocked(s.clock.Now())
	out := make([]SessionInfo, len(s.sorder))
	for i, ss := range s.sorder {
		out[i] = ss.info
	}
	return out
}

// ExpireSessions invalidates every open session now, as an HMC restart or
// a session timeout would: their next use gets 403 reason 5.
func (s *Server) ExpireSessions() {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.clock.Now()
	for _, ss := range s.sorder {
		if ss.info.Open() {
			ss.invalidAt = now
		}
	}
	s.advanceLocked(now)
}

// InjectFault arms f now, or at f.At after the server started.
func (s *Server) InjectFault(f Fault) error {
	if err := checkFault(f); err != nil {
		return err
	}
	pf := &pendingFault{Fault: f, left: max(f.Count, 1)}
	s.mu.Lock()
	defer s.mu.Unlock()
	pf.at = s.clock.Now()
	if f.At > 0 {
		pf.at = s.start.Add(f.At)
	}
	s.faults = append(s.faults, pf)
	return nil
}

// takeFaultLocked returns the first armed request fault that matches ep,
// using up one of its requests.
func (s *Server) takeFaultLocked(ep Endpoint, now time.Time) *Fault {
	var hit *Fault
	kept := s.faults[:0]
	for _, pf := range s.faults {
		if pf.Kind != FaultExpireSessions && hit == nil && !pf.at.After(now) && (pf.Endpoint == EndpointAny || pf.Endpoint == ep) {
			f := pf.Fault
			hit = &f
			pf.left--
		}
		if pf.left > 0 {
			kept = append(kept, pf)
		}
	}
	clear(s.faults[len(kept):])
	s.faults = kept
	return hit
}

// route maps an escaped path and method to an endpoint and its unescaped
// argument (job id or partition id). known is false for a URI the API does
// not have; method is the one the endpoint wants.
func route(escaped string) (ep Endpoint, arg, method string, known bool) {
	switch escaped {
	case "/api/version":
		return EndpointVersion, "", http.MethodGet, true
	case "/api/sessions":
		return EndpointLogon, "", http.MethodPost, true
	case "/api/sessions/this-session":
		return EndpointLogoff, "", http.MethodDelete, true
	case "/api/sessions/operations/get-notification-topics":
		return EndpointTopics, "", http.MethodGet, true
	case SSECreatePath:
		return EndpointCreateStream, "", http.MethodPost, true
	case SSEOpenPath:
		return EndpointOpenStream, "", http.MethodGet, true
	}
	if rest, ok := strings.CutPrefix(escaped, "/api/jobs/"); ok {
		id, err := url.PathUnescape(rest)
		if rest == "" || strings.Contains(rest, "/") || err != nil {
			return EndpointAny, "", "", false
		}
		// GET and DELETE share the URI; the handler tells them apart.
		return EndpointQueryJob, id, "", true
	}
	if rest, ok := strings.CutPrefix(escaped, "/api/partitions/"); ok {
		if mid, ok := strings.CutSuffix(rest, "/operations/start"); ok && mid != "" && !strings.Contains(mid, "/") {
			id, err := url.PathUnescape(mid)
			if err == nil {
				return EndpointStartPartition, id, http.MethodPost, true
			}
		}
	}
	return EndpointAny, "", "", false
}

// ServeHTTP routes by the escaped path, so job ids holding "/", "..", or
// "%" reach the job handlers intact (http.ServeMux would clean them).
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ep, arg, method, known := route(r.URL.EscapedPath())
	if ep == EndpointQueryJob {
		method = r.Method
		if r.Method == http.MethodDelete {
			ep = EndpointDeleteJob
		} else if r.Method != http.MethodGet {
			method = http.MethodGet + ", " + http.MethodDelete
		}
	}
	now := s.clock.Now()
	s.mu.Lock()
	s.stats.Requests++
	s.advanceLocked(now)
	f := s.takeFaultLocked(ep, now)
	if f != nil {
		s.stats.Faults++
	}
	s.mu.Unlock()
	rw := &statusWriter{ResponseWriter: w, code: http.StatusOK}
	defer func() {
		s.log.Debug().Str("method", r.Method).Str("path", r.URL.EscapedPath()).Int("status", rw.code).Msg("request")
	}()
	rw.Header().Set("Server", "zSeries management console API web server / 1.0")
	rw.Header().Set("Cache-Control", "no-cache")

	if f != nil && s.fault(rw, r, f) {
		return
	}
	if !known {
		writeError(rw, r, http.StatusNotFound, 0, "The URI does not designate a resource of the Web Services API.")
		return
	}
	if r.Method != method {
		rw.Header().Set("Allow", method)
		writeError(rw, r, http.StatusMethodNotAllowed, 0, "The HTTP method is not supported for this URI.")
		return
	}
	switch ep {
	case EndpointVersion:
		s.version(rw)
	case EndpointLogon:
		s.logon(rw, r)
	case EndpointLogoff:
		if ss := s.authorize(rw, r); ss != nil {
			s.logoff(rw, ss)
		}
	case EndpointTopics:
		if ss := s.authorize(rw, r); ss != nil {
			s.topics(rw, ss)
		}
	case EndpointQueryJob:
		if ss := s.authorize(rw, r); ss != nil {
			s.queryJob(rw, r, ss, arg)
		}
	case EndpointDeleteJob:
		if ss := s.authorize(rw, r); ss != nil {
			s.deleteJob(rw, r, ss, arg)
		}
	case EndpointStartPartition:
		if ss := s.authorize(rw, r); ss != nil {
			s.startPartition(rw, r, ss)
		}
	case EndpointCreateStream:
		if ss := s.authorize(rw, r); ss != nil {
			s.createStream(rw, r, ss)
		}
	case EndpointOpenStream:
		if ss := s.authorize(rw, r); ss != nil {
			s.openStream(rw, r, ss)
		}
	}
}

// fault answers a request hit by f; false means answer normally after it.
func (s *Server) fault(w http.ResponseWriter, r *http.Request, f *Fault) bool {
	switch f.Kind {
	case FaultStatus:
		code := f.Status
		if code == 0 {
			code = http.StatusInternalServerError
		}
		writeError(w, r, code, 0, "Simulated fault: "+http.StatusText(code)+".")
		return true
	case FaultHTML:
		code := f.Status
		if code == 0 {
			code = http.StatusOK
		}
		w.Header().Set("Content-Type", "text/html;charset=utf-8")
		w.WriteHeader(code)
		fmt.Fprint(w, `<!doctype html><html><head><title>Service Unavailable</title></head><body><h1>Service Temporarily Unavailable</h1><p>The proxy could not reach the console.</p></body></html>`)
		return true
	case FaultMalformed:
		w.Header().Set("Content-Type", "application/json;charset=UTF-8")
		fmt.Fprint(w, `{"job-status-code": 200, "status": "compl`)
		return true
	case FaultDelay:
		t := time.NewTimer(f.Delay)
		defer t.Stop()
		select {
		case <-t.C:
		case <-r.Context().Done():
			return true
		case <-s.done:
			return true
		}
	}
	return false
}

func (s *Server) version(w http.ResponseWriter) {
	writeJSON(w, http.StatusOK, map[string]any{
		"api-major-version": s.opts.APIMajorVersion,
		"api-minor-version": s.opts.APIMinorVersion,
		"hmc-name":          s.opts.HMCName,
		"hmc-version":       s.opts.HMCVersion,
	})
}

func (s *Server) logon(w http.ResponseWriter, r *http.Request) {
	var in struct {
		UserID   *string `json:"userid"`
		Password *string `json:"password"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<16)).Decode(&in); err != nil || in.UserID == nil || in.Password == nil {
		writeError(w, r, http.StatusBadRequest, 0, "The request body is not a Logon request: it needs the fields userid and password.")
		return
	}
	s.mu.Lock()
	ss, ok := s.logonLocked(*in.UserID, *in.Password, s.clock.Now())
	s.mu.Unlock()
	if !ok {
		// The reason code of a refused Logon is not in our sources; 0 keeps
		// it apart from 4 and 5, which tell a client to log on again.
		writeError(w, r, http.StatusForbidden, 0, "Logon failed: the userid or password is not valid, or the user is disabled.")
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"api-session":            ss.info.ID,
		"session-credential":     ss.info.Credential,
		"notification-topic":     ss.info.NotificationTopic,
		"job-notification-topic": ss.info.JobNotificationTopic,
		"api-major-version":      s.opts.APIMajorVersion,
		"api-minor-version":      s.opts.APIMinorVersion,
		"password-expires":       -1,
	})
}

func (s *Server) logonLocked(userid, password string, now time.Time) (*session, bool) {
	want, ok := s.opts.Users[userid]
	if !ok || password != want {
		s.stats.FailedLogons++
		return nil, false
	}
	s.stats.Logons++
	s.topicSeq++
	prefix := userid + "." + strconv.Itoa(s.topicSeq)
	ss := &session{
		info: SessionInfo{
			ID:                   randomAlnum(50),
			Credential:           randomAlnum(40),
			UserID:               userid,
			NotificationTopic:    prefix,
			JobNotificationTopic: prefix + "job",
			OpenedAt:             now,
		},
		lastUsed: now,
	}
	s.sessions[ss.info.ID] = ss
	s.sorder = append(s.sorder, ss)
	s.queue = append(s.queue, Notice{Kind: NoticeSessionOpened, At: now, Session: ss.info})
	return ss, true
}

// authorize checks the X-API-Session header, refreshing the session's idle
// timer. It answers 403 reason 4 without a header and 403 reason 5 for an
// unknown, expired or logged-off session.
func (s *Server) authorize(w http.ResponseWriter, r *http.Request) *session {
	id := r.Header.Get(SessionHeader)
	now := s.clock.Now()
	s.mu.Lock()
	s.advanceLocked(now)
	ss, ok := s.sessions[id]
	valid := ok && ss.info.Open()
	if valid {
		ss.lastUsed = now
	} else {
		s.stats.SessionRejections++
	}
	s.mu.Unlock()
	switch {
	case id == "":
		writeError(w, r, http.StatusForbidden, 4, "The request does not include an X-API-Session header.")
		return nil
	case !valid:
		writeError(w, r, http.StatusForbidden, 5, "The session ID in the X-API-Session header is not valid: the session expired or was logged off.")
		return nil
	}
	return ss
}

func (s *Server) logoff(w http.ResponseWriter, ss *session) {
	s.mu.Lock()
	if ss.info.Open() {
		s.closeLocked(ss, s.clock.Now(), ClosedByLogoff)
	}
	s.stats.Logoffs++
	s.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) topics(w http.ResponseWriter, ss *session) {
	writeJSON(w, http.StatusOK, map[string]any{"topics": []map[string]string{
		{"topic-type": "object-notification", "topic-name": ss.info.NotificationTopic},
		{"topic-type": "job-notification", "topic-name": ss.info.JobNotificationTopic},
	}})
}

// lookupJobLocked finds a job the session's user may see and whose status
// is still there.
func (s *Server) lookupJobLocked(ss *session, id string, now time.Time) (*job, bool) {
	j, ok := s.jobs[id]
	if !ok || j.user != ss.info.UserID || j.gone(now, s.opts.Retention) {
		s.stats.JobNotFound++
		return nil, false
	}
	return j, true
}

func (s *Server) queryJob(w http.ResponseWriter, r *http.Request, ss *session, id string) {
	now := s.clock.Now()
	s.mu.Lock()
	j, ok := s.lookupJobLocked(ss, id, now)
	var body map[string]any
	if ok {
		s.stats.JobQueries++
		body = j.at(now).body()
	}
	s.mu.Unlock()
	if !ok {
		writeError(w, r, http.StatusNotFound, 1, "The URI does not designate an asynchronous job associated with the API user.")
		return
	}
	writeJSON(w, http.StatusOK, body)
}

func (s *Server) deleteJob(w http.ResponseWriter, r *http.Request, ss *session, id string) {
	now := s.clock.Now()
	s.mu.Lock()
	j, ok := s.lookupJobLocked(ss, id, now)
	ended := ok && j.ended(now)
	switch {
	case ended:
		j.deletedAt = now
		s.stats.Deletes++
	case ok:
		s.stats.DeleteConflicts++
	}
	s.mu.Unlock()
	switch {
	case !ok:
		writeError(w, r, http.StatusNotFound, 1, "The URI does not designate an asynchronous job associated with the API user.")
	case !ended:
		writeError(w, r, http.StatusConflict, 40, "The job has not ended: only the status of a complete or canceled job can be deleted.")
	default:
		w.WriteHeader(http.StatusNoContent)
	}
}

// startPartition stands for every operation that runs asynchronously: it
// answers 202 with the job-uri of a new job on DefaultScript, started by
// this session.
func (s *Server) startPartition(w http.ResponseWriter, r *http.Request, ss *session) {
	id, err := s.addJob(Job{User: ss.info.UserID}, ss.info.ID)
	if err != nil {
		writeError(w, r, http.StatusInternalServerError, 0, err.Error())
		return
	}
	s.mu.Lock()
	s.stats.JobsStarted++
	s.mu.Unlock()
	writeJSON(w, http.StatusAccepted, map[string]string{"job-uri": JobURI(id)})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	var b bytes.Buffer
	if err := json.NewEncoder(&b).Encode(v); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json;charset=UTF-8")
	w.WriteHeader(code)
	w.Write(b.Bytes())
}

// writeError answers with the standard error response body.
func writeError(w http.ResponseWriter, r *http.Request, code, reason int, msg string) {
	writeJSON(w, code, map[string]any{
		"http-status":    code,
		"reason":         reason,
		"message":        msg,
		"request-method": r.Method,
		"request-uri":    r.URL.RequestURI(),
	})
}

type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	w.code = code
	w.ResponseWriter.WriteHeader(code)
}

// Unwrap lets http.ResponseController reach the Flusher of a streaming
// answer (SSE).
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
