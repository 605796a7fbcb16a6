// Package tsosim owns a simulator of the BMC TrueSight Orchestration REST API
// (shared/reference/vendor-apis.md §1), in the style of net/http/httptest:
// NewServer starts it on a random local port, Close stops it.
//
// It behaves as the vendor documents, not as a client would find easiest:
// login returns the token in the Authentication-Token response header (and
// sets the JSESSIONID and Authentication-Token cookies of 20.x) with the body
// {"login":"true"}; every other call needs that header; tokens die after an
// idle timeout and on logout, with a 401; job status comes in TSO's shape
// (processName, name, peerId, startTime in Java Date.toString() format, an
// upper-case status, outputParameters with XML-wrapped values). Jobs follow
// scripts of native statuses driven by a Clock, and faults (5xx bursts, slow
// replies, malformed JSON, HTML error pages with 200, token expiry) can be
// injected now or scheduled. History is the ground truth of every status
// change, at the clock time it happened, whether or not anyone polled.
//
// Listen and Serve run it as a standalone server, and LoadScenario reads a
// YAML (or JSON) scenario of jobs and faults, for a CLI demo.
package tsosim

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/jobbridge/jobbridge/pollers/pollkit"
	"github.com/jobbridge/jobbridge/pollers/pollkit/simkit"
)

// Clock drives job scripts, token idle timeouts and scheduled faults. Delay
// faults always take real time: they model the network, not the vendor.
type Clock = simkit.Clock

// ManualClock is a Clock that moves only when told to, so a test can step a
// job through its script without sleeping: pollkit's, kept under this name
// for earlier callers.
type ManualClock = pollkit.ManualClock

// NewManualClock returns a clock standing at start.
func NewManualClock(start time.Time) *ManualClock { return pollkit.NewManualClock(start) }

// Endpoint names a REST call, for targeting faults.
type Endpoint = simkit.Endpoint

// The simulated endpoints. EndpointAny matches every request, unknown paths
// included.
const (
	EndpointAny              = simkit.EndpointAny
	EndpointLogin   Endpoint = "login"
	EndpointLogout  Endpoint = "logout"
	EndpointStatus  Endpoint = "status"
	EndpointExecute Endpoint = "execute"
)

// DefaultAsyncResponse is the body of an async execute. The real shape is
// undocumented (vendor-apis.md §1.3 "OPEN QUESTION"): this guess is only a
// default, and Options.AsyncResponse changes it.
const DefaultAsyncResponse = `{"jobId":"{id}"}`

// Options configure a Server. Zero fields take the defaults given.
type Options struct {
	// Context is the URL path component: "baocdp" (default) or "baoap".
	Context string
	// Users maps user names to passwords; default {"admin": "admin"}.
	Users map[string]string
	// TokenTTL is the session idle timeout: a token unused for longer is
	// refused with 401. Zero means tokens live until logout or expiry.
	TokenTTL time.Duration
	// Zone is the JVM time zone that startTime is printed in; default
	// America/Chicago, whose CST/CDT the vendor's own example shows.
	Zone *time.Location
	// Clock drives scripts, idle timeouts and scheduled faults; nil means
	// real time.
	Clock Clock
	// TLS serves https with httptest's certificate, valid for 127.0.0.1,
	// ::1 and example.com (see Client, Certificate).
	TLS bool
	// AsyncResponse is the body of an async execute, "{id}" standing for the
	// JSON-escaped job id; default DefaultAsyncResponse. A template that is
	// not JSON is sent as text/plain (a bare id, say).
	AsyncResponse string
	// DefaultScript is the script of jobs created by execute, and of jobs
	// added without one; default READY 1s, ASSIGNED 3s, COMPLETED.
	DefaultScript []Step
	// CapitalizedProcessName writes the key "ProcessName", as the vendor's
	// field table spells it, instead of its example's "processName".
	CapitalizedProcessName bool
	// Jobs and Faults are created when the server starts (a scenario).
	Jobs   []Job
	Faults []Fault
	// Logger receives one debug line per request. Passwords and tokens are
	// never logged.
	Logger zerolog.Logger
}

// Step is one native status held for a duration. A script's last step
// persists forever and its For is ignored.
type Step struct {
	Status string        `yaml:"status"`
	For    time.Duration `yaml:"for"`
	// Output is the job's outputParameters while this step lasts. Values are
	// XML-wrapped as <result>…</result> unless they already start with '<'.
	Output []Param `yaml:"output"`
}

// Param is one output parameter.
type Param struct {
	Name  string `yaml:"name"`
	Value string `yaml:"value"`
}

// Job describes a simulated job.
type Job struct {
	ID string `yaml:"id"`
	// ProcessName is fully qualified, colons included; default
	// ":Sim:Jobs:Process".
	ProcessName string `yaml:"processName"`
	PeerID      string `yaml:"peerId"`
	// Script defaults to Options.DefaultScript.
	Script []Step `yaml:"script"`
	// StartUnset prints the start time as the vendor's example does for a
	// job without one: one second before the epoch, in the server's zone.
	StartUnset bool `yaml:"startUnset"`
}

// FaultKind says what a fault does to the requests it hits.
type FaultKind = simkit.FaultKind

// Fault kinds.
const (
	// FaultStatus answers with Fault.Status (default 500) and an HTML body.
	FaultStatus = simkit.FaultStatus
	// FaultDelay holds the answer for Fault.Delay (real time), then answers
	// normally.
	FaultDelay = simkit.FaultDelay
	// FaultMalformed answers 200 with truncated JSON.
	FaultMalformed = simkit.FaultMalformed
	// FaultHTML answers 200 with an HTML error page, as a proxy might.
	FaultHTML = simkit.FaultHTML
	// FaultExpireTokens invalidates every token issued until it fires.
	FaultExpireTokens FaultKind = "expire_tokens"
)

// Fault is an injected misbehaviour: Kind, Count (0 means 1), Status (of
// a FaultStatus; default 500), Delay, Endpoint (empty means any) and At
// (arms it this long after the server started, by its Clock; zero arms it
// at once).
type Fault = simkit.Fault

// Change is one status change of one job: the ground truth a test compares
// with what the bridge published.
type Change struct {
	JobID  string
	Status string
	At     time.Time
}

// Stats counts what the server saw.
type Stats struct {
	Requests       int
	Logins         int // successful
	FailedLogins   int
	Logouts        int
	StatusRequests int // answered from a job, 404s excluded
	Unauthorized   int // 401s for a missing, unknown or expired token
	Faults         int // requests answered (or delayed) by a fault
}

// Server is a running simulator.
type Server struct {
	// URL is the API base, http://127.0.0.1:port/baocdp.
	URL string

	host  *simkit.Host
	opts  Options
	clock Clock
	log   zerolog.Logger

	mu     sync.Mutex
	jobs   map[string]*job
	order  []*job
	tokens map[string]*session
	faults *simkit.FaultQueue[Fault]
	stats  Stats
}

type job struct {
	spec     Job
	timeline simkit.Timeline[Step]
}

type session struct {
	issued, lastUsed time.Time
}

// NewServer starts a simulator on 127.0.0.1 at a random port. Like
// httptest.NewServer it panics when it cannot listen or the options are
// invalid.
func NewServer(opts Options) *Server { return simkit.Must(Listen(simkit.LocalAddr, opts)) }

// Listen starts a simulator on addr (host:port).
func Listen(addr string, opts Options) (*Server, error) {
	s, err := newServer(opts)
	if err != nil {
		return nil, err
	}
	ts, err := s.host.Listen(addr, opts.TLS, simkit.LogRequests(s.log, s))
	if err != nil {
		return nil, err
	}
	s.URL = ts.URL + "/" + s.opts.Context
	return s, nil
}

// Serve runs a simulator on addr until ctx is done, for a standalone run.
func Serve(ctx context.Context, addr string, opts Options) error {
	s, err := Listen(addr, opts)
	if err != nil {
		return err
	}
	defer s.Close()
	s.log.Info().Str("url", s.URL).Int("jobs", len(opts.Jobs)).Int("faults", len(opts.Faults)).Msg("TSO simulator listening")
	<-ctx.Done()
	return nil
}

func newServer(opts Options) (*Server, error) {
	switch opts.Context {
	case "":
		opts.Context = "baocdp"
	case "baocdp", "baoap":
	default:
		return nil, fmt.Errorf("Context %q: want baocdp or baoap", opts.Context)
	}
	if opts.Users == nil {
		opts.Users = map[string]string{"admin": "admin"}
	}
	opts.Users = maps.Clone(opts.Users) // the caller may reuse its map
	if opts.Zone == nil {
		opts.Zone = defaultZone()
	}
	if opts.Clock == nil {
		opts.Clock = simkit.WallClock{}
	}
	if opts.AsyncResponse == "" {
		opts.AsyncResponse = DefaultAsyncResponse
	}
	if len(opts.DefaultScript) == 0 {
		opts.DefaultScript = []Step{
			{Status: "READY", For: time.Second},
			{Status: "ASSIGNED", For: 3 * time.Second},
			{Status: "COMPLETED", Output: []Param{{Name: "status code", Value: "200"}, {Name: "status reason", Value: "OK"}}},
		}
	}
	if err := checkScript(opts.DefaultScript); err != nil {
		return nil, fmt.Errorf("DefaultScript: %w", err)
	}
	s := &Server{
		host:   simkit.NewHost(),
		opts:   opts,
		clock:  opts.Clock,
		log:    opts.Logger.With().Str("component", "tsosim").Logger(),
		jobs:   make(map[string]*job),
		tokens: make(map[string]*session),
	}
	vocab := simkit.Vocabulary{
		Kinds:     []FaultKind{FaultStatus, FaultDelay, FaultMalformed, FaultHTML, FaultExpireTokens},
		Endpoints: []Endpoint{EndpointLogin, EndpointLogout, EndpointStatus, EndpointExecute},
	}
	s.faults = simkit.NewFaultQueue(s.clock.Now(), vocab, map[FaultKind]func(Fault, time.Time){
		// Tokens issued until the fault came due die.
		FaultExpireTokens: func(_ Fault, due time.Time) {
			maps.DeleteFunc(s.tokens, func(_ string, ss *session) bool { return !ss.issued.After(due) })
		},
	})
	for _, j := range opts.Jobs {
		if err := s.AddJobSpec(j); err != nil {
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

func defaultZone() *time.Location {
	if loc, err := time.LoadLocation("America/Chicago"); err == nil {
		return loc
	}
	// No tz database on this machine: a fixed zone still prints "CST".
	return time.FixedZone("CST", -6*60*60)
}

// Close stops the server, cutting delayed replies short.
func (s *Server) Close() { s.host.Close() }

// Client returns an HTTP client that trusts the server's certificate.
func (s *Server) Client() *http.Client { return s.host.Client() }

// Certificate returns the TLS certificate, nil without TLS.
func (s *Server) Certificate() *x509.Certificate { return s.host.Certificate() }

// AddJob adds a job with the given script (Options.DefaultScript when
// empty), starting now by the server's clock. It panics on an invalid
// script or a duplicate id, like the test helper it is; AddJobSpec returns
// an error instead.
func (s *Server) AddJob(id string, script []Step) {
	if err := s.AddJobSpec(Job{ID: id, Script: script}); err != nil {
		panic("tsosim: " + err.Error())
	}
}

// AddJobSpec adds a job starting now by the server's clock.
func (s *Server) AddJobSpec(j Job) error {
	if j.ID == "" {
		return errors.New("job id is empty")
	}
	if len(j.Script) == 0 {
		j.Script = s.opts.DefaultScript
	}
	if err := checkScript(j.Script); err != nil {
		return fmt.Errorf("job %q: %w", j.ID, err)
	}
	if j.ProcessName == "" {
		j.ProcessName = ":Sim:Jobs:Process"
	}
	if j.PeerID == "" {
		j.PeerID = "urn:jxta:uuid-59616261646162614E50472050325033E4830C5CEFF54C8284FFA9C2FE3C3B8503"
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, dup := s.jobs[j.ID]; dup {
		return fmt.Errorf("job %q exists already", j.ID)
	}
	s.addLocked(j, s.clock.Now())
	return nil
}

func (s *Server) addLocked(j Job, now time.Time) *job {
	jb := &job{spec: j, timeline: simkit.Scripted(now, j.Script, Step.hold)}
	s.jobs[j.ID] = jb
	s.order = append(s.order, jb)
	return jb
}

func (st Step) hold() time.Duration { return st.For }
func (st Step) status() string      { return st.Status }

func checkScript(script []Step) error { return simkit.CheckScript(script, Step.status, Step.hold) }

// Status returns a job's native status now, by the server's clock.
func (s *Server) Status(id string) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	j, ok := s.jobs[id]
	if !ok {
		return "", false
	}
	return j.timeline.At(s.clock.Now()).Step.Status, true
}

// History lists every status change of every job up to now, by the
// server's clock, ordered by time (ties in the order jobs were added). A
// job's first status counts as a change at its creation.
func (s *Server) History() []Change {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.clock.Now()
	var out []Change
	for _, j := range s.order {
		for _, sg := range j.timeline.Changes(now, sameStatus) {
			out = append(out, Change{JobID: j.spec.ID, Status: sg.Step.Status, At: sg.Start})
		}
	}
	slices.SortStableFunc(out, func(a, b Change) int { return a.At.Compare(b.At) })
	return out
}

func sameStatus(a, b Step) bool { return a.Status == b.Status }

// Stats returns the counters so far.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats
}

// ExpireTokens invalidates every token now, as a session timeout would.
func (s *Server) ExpireTokens() {
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.tokens)
}

// InjectFault arms f now, or at f.At after the server started.
func (s *Server) InjectFault(f Fault) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.faults.Arm(f, s.clock.Now())
}

// ServeHTTP routes by the escaped path, so job ids holding "/", "..", or
// "%" reach the status handler intact (http.ServeMux would clean them).
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ep, arg, known := s.route(r.URL.EscapedPath())
	now := s.clock.Now()
	s.mu.Lock()
	s.stats.Requests++
	f, hit := s.faults.Take(ep, now)
	if hit {
		s.stats.Faults++
	}
	s.mu.Unlock()

	if hit {
		switch f.Kind {
		case FaultStatus:
			writeHTMLError(w, f.StatusOr(http.StatusInternalServerError))
			return
		case FaultMalformed:
			simkit.WriteBody(w, http.StatusOK, "application/json", `{"processName": ":Sim:Jobs:Process", "name": "Process", "status": "COMPL`)
			return
		case FaultHTML:
			simkit.WriteBody(w, http.StatusOK, "text/html;charset=utf-8", `<!doctype html><html><head><title>Error</title></head><body><h1>Service Temporarily Unavailable</h1><p>The server is temporarily unable to service your request.</p></body></html>`)
			return
		case FaultDelay:
			if !s.host.Hold(r, f.Delay) {
				return
			}
		}
	}

	if !known {
		writeHTMLError(w, http.StatusNotFound)
		return
	}
	method := map[Endpoint]string{EndpointLogin: http.MethodPost, EndpointLogout: http.MethodPost, EndpointStatus: http.MethodGet, EndpointExecute: http.MethodPost}[ep]
	if r.Method != method {
		w.Header().Set("Allow", method)
		writeHTMLError(w, http.StatusMethodNotAllowed)
		return
	}
	switch ep {
	case EndpointLogin:
		s.login(w, r)
	case EndpointLogout:
		s.logout(w, r)
	case EndpointStatus:
		s.status(w, r, arg)
	case EndpointExecute:
		s.execute(w, r, arg)
	}
}

// route maps an escaped path to an endpoint and its unescaped argument (job
// id or process name).
func (s *Server) route(escaped string) (Endpoint, string, bool) {
	rest, ok := strings.CutPrefix(escaped, "/"+s.opts.Context+"/rest/")
	if !ok {
		return EndpointAny, "", false
	}
	switch rest {
	case "login":
		return EndpointLogin, "", true
	case "logout":
		return EndpointLogout, "", true
	}
	for _, r := range []struct {
		ep             Endpoint
		prefix, suffix string
	}{
		{EndpointStatus, "job/", "/status"},
		{EndpointExecute, "process/", "/execute"},
	} {
		mid, ok := strings.CutPrefix(rest, r.prefix)
		if !ok {
			continue
		}
		if mid, ok = strings.CutSuffix(mid, r.suffix); !ok || mid == "" || strings.Contains(mid, "/") {
			return r.ep, "", false
		}
		arg, err := url.PathUnescape(mid)
		if err != nil {
			return r.ep, "", false
		}
		return r.ep, arg, true
	}
	return EndpointAny, "", false
}

func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Username string `json:"username"`
		Password string `json:"password"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<16)).Decode(&in); err != nil {
		writeHTMLError(w, http.StatusBadRequest)
		return
	}
	s.mu.Lock()
	want, ok := s.opts.Users[in.Username]
	if !ok || in.Password != want || in.Username == "" {
		s.stats.FailedLogins++
		s.mu.Unlock()
		writeHTMLError(w, http.StatusUnauthorized)
		return
	}
	tok := simkit.RandomBase64(base64.StdEncoding, 33)
	now := s.clock.Now()
	s.tokens[tok] = &session{issued: now, lastUsed: now}
	s.stats.Logins++
	s.mu.Unlock()

	path := "/" + s.opts.Context
	http.SetCookie(w, &http.Cookie{Name: "JSESSIONID", Value: strings.ToUpper(simkit.RandomHex(16)), Path: path})
	http.SetCookie(w, &http.Cookie{Name: "Authentication-Token", Value: tok, Path: path, Secure: true, HttpOnly: true})
	w.Header().Set("Authentication-Token", tok)
	writeJSON(w, http.StatusOK, map[string]string{"login": "true"})
}

// authorize checks the request's token, refreshing its idle timer.
func (s *Server) authorize(w http.ResponseWriter, r *http.Request) bool {
	tok := r.Header.Get("Authentication-Token")
	now := s.clock.Now()
	s.mu.Lock()
	ss, ok := s.tokens[tok]
	if ok && s.opts.TokenTTL > 0 && now.Sub(ss.lastUsed) > s.opts.TokenTTL {
		delete(s.tokens, tok)
		ok = false
	}
	if ok {
		ss.lastUsed = now
	} else {
		s.stats.Unauthorized++
	}
	s.mu.Unlock()
	if !ok {
		writeHTMLError(w, http.StatusUnauthorized)
	}
	return ok
}

func (s *Server) logout(w http.ResponseWriter, r *http.Request) {
	if !s.authorize(w, r) {
		return
	}
	s.mu.Lock()
	delete(s.tokens, r.Header.Get("Authentication-Token"))
	s.stats.Logouts++
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]string{"logout": "true"})
}

// statusBody is the job status payload, keys in the vendor's order. Its
// twin statusBodyCapitalized differs only in the processName key.
type statusBody struct {
	ProcessName      string        `json:"processName"`
	Name             string        `json:"name"`
	PeerID           string        `json:"peerId"`
	StartTime        string        `json:"startTime"`
	Status           string        `json:"status"`
	OutputParameters []outputParam `json:"outputParameters"`
}

type statusBodyCapitalized struct {
	ProcessName      string        `json:"ProcessName"`
	Name             string        `json:"name"`
	PeerID           string        `json:"peerId"`
	StartTime        string        `json:"startTime"`
	Status           string        `json:"status"`
	OutputParameters []outputParam `json:"outputParameters"`
}

type outputParam struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// JavaDateLayout is java.util.Date.toString() as a Go layout.
const JavaDateLayout = "Mon Jan 02 15:04:05 MST 2006"

func (s *Server) status(w http.ResponseWriter, r *http.Request, id string) {
	if !s.authorize(w, r) {
		return
	}
	now := s.clock.Now()
	s.mu.Lock()
	j, ok := s.jobs[id]
	var body statusBody
	if ok {
		s.stats.StatusRequests++
		body = s.renderLocked(j, now)
	}
	s.mu.Unlock()
	if !ok {
		w.Header().Set("Content-Type", "text/plain;charset=utf-8")
		w.WriteHeader(http.StatusNotFound)
		fmt.Fprint(w, "The specified job ID does not exist")
		return
	}
	if s.opts.CapitalizedProcessName {
		writeJSON(w, http.StatusOK, statusBodyCapitalized(body))
		return
	}
	writeJSON(w, http.StatusOK, body)
}

func (s *Server) renderLocked(j *job, now time.Time) statusBody {
	step := j.timeline.At(now).Step
	start := j.timeline.First().Start
	if j.spec.StartUnset {
		start = time.Unix(-1, 0)
	}
	name := j.spec.ProcessName
	if i := strings.LastIndexByte(name, ':'); i >= 0 {
		name = name[i+1:]
	}
	out := make([]outputParam, 0, len(step.Output))
	for _, p := range step.Output {
		out = append(out, outputParam{Name: p.Name, Value: xmlWrap(p.Value)})
	}
	return statusBody{
		ProcessName:      j.spec.ProcessName,
		Name:             name,
		PeerID:           j.spec.PeerID,
		StartTime:        start.In(s.opts.Zone).Format(JavaDateLayout),
		Status:           step.Status,
		OutputParameters: out,
	}
}

func xmlWrap(v string) string {
	if strings.HasPrefix(strings.TrimSpace(v), "<") {
		return v
	}
	var b strings.Builder
	b.WriteString("<result>")
	for _, r := range v {
		switch r {
		case '<':
			b.WriteString("&lt;")
		case '>':
			b.WriteString("&gt;")
		case '&':
			b.WriteString("&amp;")
		default:
			b.WriteRune(r)
		}
	}
	b.WriteString("</result>")
	return b.String()
}

func (s *Server) execute(w http.ResponseWriter, r *http.Request, process string) {
	if !s.authorize(w, r) {
		return
	}
	var in struct {
		InputParameters []struct {
			Name  string `json:"name"`
			Value string `json:"value"`
			Type  string `json:"type"`
		} `json:"inputParameters"`
	}
	body, err := simkit.ReadBody(w, r, 1<<20)
	if err != nil || (len(bytes.TrimSpace(body)) > 0 && json.Unmarshal(body, &in) != nil) {
		writeHTMLError(w, http.StatusBadRequest)
		return
	}
	mode := r.URL.Query().Get("mode")
	if mode != "" && mode != "sync" && mode != "async" {
		writeHTMLError(w, http.StatusBadRequest)
		return
	}
	id := simkit.RandomHex(16)
	s.mu.Lock()
	jb := s.addLocked(Job{ID: id, ProcessName: process, PeerID: "urn:jxta:uuid-" + strings.ToUpper(simkit.RandomHex(33)), Script: s.opts.DefaultScript}, s.clock.Now())
	last := jb.timeline.Last().Step
	s.mu.Unlock()

	if mode == "async" {
		quoted, _ := json.Marshal(id)
		out := strings.ReplaceAll(s.opts.AsyncResponse, "{id}", string(quoted[1:len(quoted)-1]))
		if json.Valid([]byte(out)) {
			w.Header().Set("Content-Type", "application/json")
		} else {
			w.Header().Set("Content-Type", "text/plain;charset=utf-8")
		}
		fmt.Fprint(w, out)
		return
	}
	// Sync: the real server answers when the process ends; here the job's
	// final outputs come at once.
	out := make([]outputParam, 0, len(last.Output))
	for _, p := range last.Output {
		out = append(out, outputParam{Name: p.Name, Value: xmlWrap(p.Value)})
	}
	writeJSON(w, http.StatusOK, out)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	// The Java server writes <result> as is, not as \u003cresult\u003e.
	simkit.WriteJSON(w, code, "application/json", v)
}

// writeHTMLError answers as the servlet container would: an HTML page.
func writeHTMLError(w http.ResponseWriter, code int) {
	w.Header().Set("Content-Type", "text/html;charset=utf-8")
	w.WriteHeader(code)
	fmt.Fprintf(w, "<!doctype html><html><head><title>HTTP Status %d – %s</title></head><body><h1>HTTP Status %d – %s</h1></body></html>",
		code, http.StatusText(code), code, http.StatusText(code))
}
