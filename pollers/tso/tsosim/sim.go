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
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"
)

// Endpoint names a REST call, for targeting faults.
type Endpoint string

// The simulated endpoints. EndpointAny matches every request, unknown paths
// included.
const (
	EndpointAny     Endpoint = ""
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
type FaultKind string

// Fault kinds.
const (
	// FaultStatus answers with Fault.Status (default 500) and an HTML body.
	FaultStatus FaultKind = "status"
	// FaultDelay holds the answer for Fault.Delay (real time), then answers
	// normally.
	FaultDelay FaultKind = "delay"
	// FaultMalformed answers 200 with truncated JSON.
	FaultMalformed FaultKind = "malformed"
	// FaultHTML answers 200 with an HTML error page, as a proxy might.
	FaultHTML FaultKind = "html"
	// FaultExpireTokens invalidates every token issued until it fires.
	FaultExpireTokens FaultKind = "expire_tokens"
)

// Fault is an injected misbehaviour.
type Fault struct {
	Kind FaultKind `yaml:"kind"`
	// Count is how many requests it hits; 0 means 1.
	Count int `yaml:"count"`
	// Status is the answer of a FaultStatus; default 500.
	Status int `yaml:"status"`
	// Delay is the hold of a FaultDelay.
	Delay time.Duration `yaml:"delay"`
	// Endpoint limits the fault to one call; empty means any.
	Endpoint Endpoint `yaml:"endpoint"`
	// At arms the fault this long after the server started, by its Clock;
	// zero arms it at once.
	At time.Duration `yaml:"at"`
}

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

	ts        *httptest.Server
	opts      Options
	clock     Clock
	log       zerolog.Logger
	start     time.Time
	done      chan struct{}
	closeOnce sync.Once

	mu     sync.Mutex
	jobs   map[string]*job
	order  []*job
	tokens map[string]*session
	faults []*pendingFault
	stats  Stats
}

type job struct {
	spec Job
	segs []segment
}

type segment struct {
	start time.Time
	step  Step
}

type session struct {
	issued, lastUsed time.Time
}

type pendingFault struct {
	Fault
	at   time.Time
	left int
}

// NewServer starts a simulator on 127.0.0.1 at a random port. Like
// httptest.NewServer it panics when it cannot listen or the options are
// invalid.
func NewServer(opts Options) *Server {
	s, err := Listen("127.0.0.1:0", opts)
	if err != nil {
		panic("tsosim: " + err.Error())
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
	s.URL = s.ts.URL + "/" + s.opts.Context
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
		opts.Clock = realClock{}
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
		opts:   opts,
		clock:  opts.Clock,
		log:    opts.Logger.With().Str("component", "tsosim").Logger(),
		done:   make(chan struct{}),
		jobs:   make(map[string]*job),
		tokens: make(map[string]*session),
	}
	s.start = s.clock.Now()
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
func (s *Server) Close() {
	s.closeOnce.Do(func() {
		close(s.done)
		if s.ts != nil {
			s.ts.Close()
		}
	})
}

// Client returns an HTTP client that trusts the server's certificate.
func (s *Server) Client() *http.Client { return s.ts.Client() }

// Certificate returns the TLS certificate, nil without TLS.
func (s *Server) Certificate() *x509.Certificate { return s.ts.Certificate() }

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
	jb := &job{spec: j}
	t := now
	for _, st := range j.Script {
		jb.segs = append(jb.segs, segment{start: t, step: st})
		t = t.Add(st.For)
	}
	s.jobs[j.ID] = jb
	s.order = append(s.order, jb)
	return jb
}

func checkScript(script []Step) error {
	for i, st := range script {
		if strings.TrimSpace(st.Status) == "" {
			return fmt.Errorf("script step %d has no status", i+1)
		}
		if i < len(script)-1 && st.For <= 0 {
			return fmt.Errorf("script step %d (%s) needs a positive duration; only the last step may omit it", i+1, st.Status)
		}
	}
	return nil
}

// Status returns a job's native status now, by the server's clock.
func (s *Server) Status(id string) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	j, ok := s.jobs[id]
	if !ok {
		return "", false
	}
	return j.at(s.clock.Now()).Status, true
}

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

// History lists every status change of every job up to now, by the
// server's clock, ordered by time (ties in the order jobs were added). A
// job's first status counts as a change at its creation.
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
				out = append(out, Change{JobID: j.spec.ID, Status: sg.step.Status, At: sg.start})
			}
			prev = sg.step.Status
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

// ExpireTokens invalidates every token now, as a session timeout would.
func (s *Server) ExpireTokens() {
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.tokens)
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

func checkFault(f Fault) error {
	switch f.Kind {
	case FaultStatus:
		if f.Status != 0 && (f.Status < 100 || f.Status > 599) {
			return fmt.Errorf("fault status %d is not an HTTP status", f.Status)
		}
	case FaultDelay:
		if f.Delay <= 0 {
			return errors.New("a delay fault needs a positive delay")
		}
	case FaultMalformed, FaultHTML, FaultExpireTokens:
	default:
		return fmt.Errorf("unknown fault kind %q: want status, delay, malformed, html or expire_tokens", f.Kind)
	}
	switch f.Endpoint {
	case EndpointAny, EndpointLogin, EndpointLogout, EndpointStatus, EndpointExecute:
	default:
		return fmt.Errorf("unknown endpoint %q: want login, logout, status, execute or nothing for any", f.Endpoint)
	}
	if f.Count < 0 || f.At < 0 {
		return errors.New("fault count and at must not be negative")
	}
	return nil
}

// takeFaultLocked fires due token expiries and returns the first armed
// fault that matches ep, using up one of its requests.
func (s *Server) takeFaultLocked(ep Endpoint, now time.Time) *Fault {
	var hit *Fault
	kept := s.faults[:0]
	for _, pf := range s.faults {
		due := !pf.at.After(now)
		switch {
		case due && pf.Kind == FaultExpireTokens:
			for tok, ss := range s.tokens {
				if !ss.issued.After(pf.at) {
					delete(s.tokens, tok)
				}
			}
			continue
		case due && hit == nil && (pf.Endpoint == EndpointAny || pf.Endpoint == ep):
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

// ServeHTTP routes by the escaped path, so job ids holding "/", "..", or
// "%" reach the status handler intact (http.ServeMux would clean them).
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ep, arg, known := s.route(r.URL.EscapedPath())
	now := s.clock.Now()
	s.mu.Lock()
	s.stats.Requests++
	f := s.takeFaultLocked(ep, now)
	if f != nil {
		s.stats.Faults++
	}
	s.mu.Unlock()
	rw := &statusWriter{ResponseWriter: w, code: http.StatusOK}
	defer func() {
		s.log.Debug().Str("method", r.Method).Str("path", r.URL.EscapedPath()).Int("status", rw.code).Msg("request")
	}()

	if f != nil {
		switch f.Kind {
		case FaultStatus:
			code := f.Status
			if code == 0 {
				code = http.StatusInternalServerError
			}
			writeHTMLError(rw, code)
			return
		case FaultMalformed:
			rw.Header().Set("Content-Type", "application/json")
			fmt.Fprint(rw, `{"processName": ":Sim:Jobs:Process", "name": "Process", "status": "COMPL`)
			return
		case FaultHTML:
			rw.Header().Set("Content-Type", "text/html;charset=utf-8")
			fmt.Fprint(rw, `<!doctype html><html><head><title>Error</title></head><body><h1>Service Temporarily Unavailable</h1><p>The server is temporarily unable to service your request.</p></body></html>`)
			return
		case FaultDelay:
			t := time.NewTimer(f.Delay)
			select {
			case <-t.C:
			case <-r.Context().Done():
				t.Stop()
				return
			case <-s.done:
				t.Stop()
				return
			}
		}
	}

	if !known {
		writeHTMLError(rw, http.StatusNotFound)
		return
	}
	method := map[Endpoint]string{EndpointLogin: http.MethodPost, EndpointLogout: http.MethodPost, EndpointStatus: http.MethodGet, EndpointExecute: http.MethodPost}[ep]
	if r.Method != method {
		rw.Header().Set("Allow", method)
		writeHTMLError(rw, http.StatusMethodNotAllowed)
		return
	}
	switch ep {
	case EndpointLogin:
		s.login(rw, r)
	case EndpointLogout:
		s.logout(rw, r)
	case EndpointStatus:
		s.status(rw, r, arg)
	case EndpointExecute:
		s.execute(rw, r, arg)
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
	tok := randomToken()
	now := s.clock.Now()
	s.tokens[tok] = &session{issued: now, lastUsed: now}
	s.stats.Logins++
	s.mu.Unlock()

	path := "/" + s.opts.Context
	http.SetCookie(w, &http.Cookie{Name: "JSESSIONID", Value: strings.ToUpper(randomHex(16)), Path: path})
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
	step := j.at(now)
	start := j.segs[0].start
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
	body, err := readAll(w, r)
	if err != nil || (len(bytes.TrimSpace(body)) > 0 && json.Unmarshal(body, &in) != nil) {
		writeHTMLError(w, http.StatusBadRequest)
		return
	}
	mode := r.URL.Query().Get("mode")
	if mode != "" && mode != "sync" && mode != "async" {
		writeHTMLError(w, http.StatusBadRequest)
		return
	}
	id := randomHex(16)
	s.mu.Lock()
	jb := s.addLocked(Job{ID: id, ProcessName: process, PeerID: "urn:jxta:uuid-" + strings.ToUpper(randomHex(33)), Script: s.opts.DefaultScript}, s.clock.Now())
	last := jb.segs[len(jb.segs)-1].step
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

func readAll(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	var b bytes.Buffer
	_, err := b.ReadFrom(http.MaxBytesReader(w, r.Body, 1<<20))
	return b.Bytes(), err
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	// The Java server writes <result> as is, not as \u003cresult\u003e.
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	w.Write(b.Bytes())
}

// writeHTMLError answers as the servlet container would: an HTML page.
func writeHTMLError(w http.ResponseWriter, code int) {
	w.Header().Set("Content-Type", "text/html;charset=utf-8")
	w.WriteHeader(code)
	fmt.Fprintf(w, "<!doctype html><html><head><title>HTTP Status %d – %s</title></head><body><h1>HTTP Status %d – %s</h1></body></html>",
		code, http.StatusText(code), code, http.StatusText(code))
}

func randomToken() string {
	b := make([]byte, 33)
	rand.Read(b)
	return base64.StdEncoding.EncodeToString(b)
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	w.code = code
	w.ResponseWriter.WriteHeader(code)
}
