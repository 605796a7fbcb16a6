// Package huaweisim owns a simulator of the Huawei Cloud APIs the huawei
// poller calls (shared/reference/vendor-apis.md §4), in the style of
// net/http/httptest: NewServer starts it on a random local port, Close
// stops it. One server plays both the IAM endpoint and ServiceStage.
//
// It behaves as Huawei documents, not as a client would find easiest:
//
//   - POST /v3/auth/tokens takes a Keystone v3 password body (user name,
//     password, domain name, project scope by id or name), answers 201 with
//     the token in the X-Subject-Token header and token.expires_at and
//     issued_at (ISO-8601, microseconds, Z) in the body; a wrong password
//     is a 401 in IAM's {"error":{"code","message","title"}} envelope.
//   - GET /v2/{project_id}/cas/jobs/{job_id} answers with UPPER_CASE keys as
//     the seed page shows, GET /v3/... with the lower-case keys of the v3
//     page; both page the tasks with limit and offset (desc reverses them),
//     task_count being the total. The X-Auth-Token header is required and
//     must belong to the URL's project; a missing, unknown, revoked or
//     expired token is a 401 with the gateway's APIG.0301 codes.
//   - Errors come in the envelope Options.Envelope picks (which one
//     /cas/jobs uses is undocumented), gateway errors always in
//     {"error_code","error_msg","request_id"}; an unknown job is 404
//     SVCSTG.00100429; throttling is 429 APIG.0308.
//
// Jobs and their tasks follow scripts of native statuses driven by a Clock;
// tasks may appear after their job started, and a job may disappear (its
// retention ended). Faults (5xx, slow replies, malformed JSON, HTML pages
// with 200, APIG.0308 bursts, token revocation) can be injected now or
// scheduled. History is the ground truth of every job and task status
// change, at the clock time it happened, whether or not anyone polled.
//
// Listen and Serve run it standalone, and LoadScenario reads a YAML (or
// JSON) scenario of jobs and faults, for a CLI demo.
package huaweisim

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
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"
)

// Endpoint names a call, for targeting faults.
type Endpoint string

// The simulated endpoints. EndpointAny matches every request, unknown paths
// included.
const (
	EndpointAny Endpoint = ""
	EndpointIAM Endpoint = "iam"
	EndpointJob Endpoint = "job"
)

// Envelope is the shape of ServiceStage's error bodies.
type Envelope string

// The error envelopes Huawei documents (vendor-apis.md §4.4).
const (
	// EnvelopeFlat is {"error_code": "...", "error_msg": "..."}.
	EnvelopeFlat Envelope = "flat"
	// EnvelopeNested is {"error": {"code": "...", "message": "..."}}.
	EnvelopeNested Envelope = "nested"
	// EnvelopeCamel is {"errorCode": "...", "errorMessage": "...", "detail": "..."}.
	EnvelopeCamel Envelope = "camel"
)

// Codes the simulator answers with.
const (
	CodeInvalidParam  = "SVCSTG.00100400"
	CodeJobIDEmpty    = "SVCSTG.00100414"
	CodeJobNotFound   = "SVCSTG.00100429"
	CodeThrottled     = "APIG.0308"
	CodeAuthInfo      = "APIG.0301"
	CodeAPINotFound   = "APIG.0101" // INFERRED: the gateway's "no such API"
	CodeNotAuthorized = "APIG.0302" // INFERRED: token of another project
)

// Defaults for zero Options fields. The project id and user id come from
// the vendor's own example.
const (
	DefaultProjectID   = "063a3158b1a34710b36ad208b9497d00"
	DefaultProjectName = "ap-southeast-1"
	DefaultDomain      = "example-account"
	DefaultTokenTTL    = 24 * time.Hour
	DefaultMaxLimit    = 1000
)

// Options configure a Server. Zero fields take the defaults given.
type Options struct {
	// ProjectID and ProjectName name the one project the simulator hosts;
	// a token may be scoped by either.
	ProjectID   string
	ProjectName string
	// Domain is the account name every user belongs to.
	Domain string
	// Users maps IAM user names to passwords; default {"admin": "admin"}.
	Users map[string]string
	// TokenTTL is a token's lifetime (default 24 h, as documented).
	TokenTTL time.Duration
	// Envelope is the shape of ServiceStage errors; default EnvelopeFlat.
	Envelope Envelope
	// EpochTimes writes CREATED_AT and LAST_HEALTH_CHECK as epoch
	// milliseconds (a string of digits) instead of ISO-8601: the format is
	// undocumented, so clients should cope with both.
	EpochTimes bool
	// MaxLimit is the largest limit accepted (default 1000); a larger one
	// is a 400 invalid parameter.
	MaxLimit int
	// Clock drives scripts, token expiry and scheduled faults; nil means
	// real time.
	Clock Clock
	// TLS serves https with httptest's certificate (see Certificate).
	TLS bool
	// DefaultScript is the script of jobs added without one; default
	// SUBMITTED 1s, RUNNING 3s, SUCCEEDED.
	DefaultScript []Step
	// Jobs and Faults are created when the server starts (a scenario).
	Jobs   []Job
	Faults []Fault
	// Logger receives one debug line per request. Passwords and tokens are
	// never logged.
	Logger zerolog.Logger
}

// Step is one native status held for a duration. A script's last step
// persists and its For is ignored.
type Step struct {
	Status string        `yaml:"status"`
	For    time.Duration `yaml:"for"`
	// Messages is a task's MESSAGES during this step; default "{}".
	Messages string `yaml:"messages"`
}

// Task describes one task of a job.
type Task struct {
	// ID is TASK_ID; default Task-<random uuid>.
	ID string `yaml:"id"`
	// Name is TASK_NAME; default TN000<index>.
	Name string `yaml:"name"`
	// Type is TASK_TYPE, a free string; default "restful".
	Type string `yaml:"type"`
	// Index is TASK_INDEX; default its position, from 1.
	Index int `yaml:"index"`
	// After is when the task is created, after its job; it is not listed
	// before.
	After  time.Duration `yaml:"after"`
	Script []Step        `yaml:"script"`
}

// Job describes a simulated job.
type Job struct {
	ID string `yaml:"id"`
	// Name is JOB_NAME and JOB_DESC; default "provision/provMain".
	Name string `yaml:"name"`
	// Type is JOB_TYPE; default PROVISION.
	Type string `yaml:"type"`
	// Script is the job's EXECUTION_STATUS; default Options.DefaultScript.
	Script []Step `yaml:"script"`
	Tasks  []Task `yaml:"tasks"`
	// GoneAfter, when positive, deletes the job this long after it was
	// added (its retention ended): it then answers 404 SVCSTG.00100429.
	GoneAfter time.Duration `yaml:"goneAfter"`
}

// FaultKind says what a fault does to the requests it hits.
type FaultKind string

// Fault kinds.
const (
	// FaultStatus answers with Fault.Status (default 500) in the error
	// envelope.
	FaultStatus FaultKind = "status"
	// FaultDelay holds the answer for Fault.Delay (real time), then answers
	// normally.
	FaultDelay FaultKind = "delay"
	// FaultMalformed answers 200 with truncated JSON.
	FaultMalformed FaultKind = "malformed"
	// FaultHTML answers 200 with an HTML error page, as a proxy might.
	FaultHTML FaultKind = "html"
	// FaultThrottle answers 429 APIG.0308, as the gateway does over its
	// rate limit.
	FaultThrottle FaultKind = "throttle"
	// FaultExpireTokens revokes every token issued until it fires (a
	// password or permission change does that).
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

// Change is one status change of a job (TaskID empty) or of one of its
// tasks: the ground truth a test compares with what the bridge published.
type Change struct {
	JobID  string
	TaskID string
	Status string
	At     time.Time
}

// Query is one answered job request, for checking a client's paging.
type Query struct {
	JobID         string
	Version       string
	Limit, Offset int // -1 when absent
}

// Stats counts what the server saw.
type Stats struct {
	Requests     int
	Logins       int // tokens issued
	FailedLogins int
	JobRequests  int // answered 200 from a job
	NotFound     int // 404 SVCSTG.00100429
	Unauthorized int // 401 for a missing, unknown, revoked or expired token
	Throttled    int // 429 APIG.0308
	Faults       int // requests answered (or delayed) by a fault, throttling included
}

// maxQueries bounds the query log of a long standalone run.
const maxQueries = 10000

// Server is a running simulator.
type Server struct {
	// URL is the root of both the IAM and the ServiceStage endpoint.
	URL string

	ts        *httptest.Server
	opts      Options
	clock     Clock
	log       zerolog.Logger
	start     time.Time
	done      chan struct{}
	closeOnce sync.Once

	mu      sync.Mutex
	jobs    map[string]*job
	order   []*job
	tokens  map[string]*token
	faults  []*pendingFault
	stats   Stats
	queries []Query
}

type job struct {
	spec     Job
	start    time.Time
	segs     []segment
	tasks    []*taskState
	instance string
	removed  bool
}

type taskState struct {
	spec    Task
	created time.Time
	segs    []segment
}

type segment struct {
	start time.Time
	step  Step
}

type token struct {
	issued, expires time.Time
	projectID       string
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
		panic("huaweisim: " + err.Error())
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
	return s, nil
}

// Serve runs a simulator on addr until ctx is done, for a standalone run.
func Serve(ctx context.Context, addr string, opts Options) error {
	s, err := Listen(addr, opts)
	if err != nil {
		return err
	}
	defer s.Close()
	s.log.Info().Str("url", s.URL).Str("project_id", s.opts.ProjectID).Int("jobs", len(opts.Jobs)).Int("faults", len(opts.Faults)).
		Msg("Huawei ServiceStage simulator listening (IAM and ServiceStage on one URL)")
	<-ctx.Done()
	return nil
}

func newServer(opts Options) (*Server, error) {
	if opts.ProjectID == "" {
		opts.ProjectID = DefaultProjectID
	}
	if opts.ProjectName == "" {
		opts.ProjectName = DefaultProjectName
	}
	if opts.Domain == "" {
		opts.Domain = DefaultDomain
	}
	if opts.Users == nil {
		opts.Users = map[string]string{"admin": "admin"}
	}
	opts.Users = maps.Clone(opts.Users) // the caller may reuse its map
	switch {
	case opts.TokenTTL == 0:
		opts.TokenTTL = DefaultTokenTTL
	case opts.TokenTTL < 0:
		return nil, errors.New("TokenTTL must not be negative")
	}
	switch opts.Envelope {
	case "":
		opts.Envelope = EnvelopeFlat
	case EnvelopeFlat, EnvelopeNested, EnvelopeCamel:
	default:
		return nil, fmt.Errorf("Envelope %q: want flat, nested or camel", opts.Envelope)
	}
	if opts.MaxLimit <= 0 {
		opts.MaxLimit = DefaultMaxLimit
	}
	if opts.Clock == nil {
		opts.Clock = wallClock{}
	}
	if len(opts.DefaultScript) == 0 {
		opts.DefaultScript = []Step{
			{Status: "SUBMITTED", For: time.Second},
			{Status: "RUNNING", For: 3 * time.Second},
			{Status: "SUCCEEDED"},
		}
	}
	if err := checkScript(opts.DefaultScript); err != nil {
		return nil, fmt.Errorf("DefaultScript: %w", err)
	}
	s := &Server{
		opts:   opts,
		clock:  opts.Clock,
		log:    opts.Logger.With().Str("component", "huaweisim").Logger(),
		done:   make(chan struct{}),
		jobs:   make(map[string]*job),
		tokens: make(map[string]*token),
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

// ProjectID returns the id of the simulated project.
func (s *Server) ProjectID() string { return s.opts.ProjectID }

// AddJob adds a job starting now by the server's clock. It panics on an
// invalid spec, like the test helper it is; AddJobSpec returns an error.
func (s *Server) AddJob(j Job) {
	if err := s.AddJobSpec(j); err != nil {
		panic("huaweisim: " + err.Error())
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
	if j.Name == "" {
		j.Name = "provision/provMain"
	}
	if j.Type == "" {
		j.Type = "PROVISION"
	}
	if j.GoneAfter < 0 {
		return fmt.Errorf("job %q: goneAfter must not be negative", j.ID)
	}
	tasks := slices.Clone(j.Tasks)
	ids := map[string]bool{}
	for i := range tasks {
		t := &tasks[i]
		if t.ID == "" {
			t.ID = "Task-" + randomUUID()
		}
		if ids[t.ID] {
			return fmt.Errorf("job %q: task %q appears twice", j.ID, t.ID)
		}
		ids[t.ID] = true
		if t.Index == 0 {
			t.Index = i + 1
		}
		if t.Name == "" {
			t.Name = fmt.Sprintf("TN%05d", t.Index)
		}
		if t.Type == "" {
			t.Type = "restful"
		}
		if t.After < 0 {
			return fmt.Errorf("job %q: task %q: after must not be negative", j.ID, t.ID)
		}
		if len(t.Script) == 0 {
			return fmt.Errorf("job %q: task %q has no script", j.ID, t.ID)
		}
		if err := checkScript(t.Script); err != nil {
			return fmt.Errorf("job %q: task %q: %w", j.ID, t.ID, err)
		}
	}
	j.Tasks = tasks
	s.mu.Lock()
	defer s.mu.Unlock()
	if old, dup := s.jobs[j.ID]; dup && !old.removed {
		return fmt.Errorf("job %q exists already", j.ID)
	}
	now := s.clock.Now()
	jb := &job{spec: j, start: now, segs: segments(j.Script, now), instance: randomUUID()}
	for _, t := range j.Tasks {
		c := now.Add(t.After)
		jb.tasks = append(jb.tasks, &taskState{spec: t, created: c, segs: segments(t.Script, c)})
	}
	s.jobs[j.ID] = jb
	s.order = append(s.order, jb)
	return nil
}

func segments(script []Step, from time.Time) []segment {
	out := make([]segment, 0, len(script))
	t := from
	for _, st := range script {
		out = append(out, segment{start: t, step: st})
		t = t.Add(st.For)
	}
	return out
}

func checkScript(script []Step) error {
	if len(script) == 0 {
		return errors.New("the script is empty")
	}
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

// RemoveJob deletes a job, as Huawei does after its retention: it then
// answers 404 SVCSTG.00100429. It reports whether the job existed.
func (s *Server) RemoveJob(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	j, ok := s.jobs[id]
	if !ok || j.removed {
		return false
	}
	j.removed = true
	return true
}

// Status returns a job's EXECUTION_STATUS now, by the server's clock.
func (s *Server) Status(id string) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	j := s.liveLocked(id, s.clock.Now())
	if j == nil {
		return "", false
	}
	return stepAt(j.segs, s.clock.Now()).Status, true
}

func (s *Server) liveLocked(id string, now time.Time) *job {
	j, ok := s.jobs[id]
	if !ok || j.removed || (j.spec.GoneAfter > 0 && !now.Before(j.start.Add(j.spec.GoneAfter))) {
		return nil
	}
	return j
}

func stepAt(segs []segment, now time.Time) Step {
	cur := segs[0]
	for _, sg := range segs[1:] {
		if sg.start.After(now) {
			break
		}
		cur = sg
	}
	return cur.step
}

func segmentAt(segs []segment, now time.Time) segment {
	cur := segs[0]
	for _, sg := range segs[1:] {
		if sg.start.After(now) {
			break
		}
		cur = sg
	}
	return cur
}

// History lists every status change of every job and task up to now, by
// the server's clock, ordered by time; ties keep the order jobs were added,
// a job before its tasks, tasks in their order. A first status counts as a
// change at creation; a task created later than now is not there yet.
func (s *Server) History() []Change {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.clock.Now()
	var out []Change
	walk := func(jobID, taskID string, segs []segment) {
		prev := ""
		for i, sg := range segs {
			if sg.start.After(now) {
				break
			}
			if i == 0 || sg.step.Status != prev {
				out = append(out, Change{JobID: jobID, TaskID: taskID, Status: sg.step.Status, At: sg.start})
			}
			prev = sg.step.Status
		}
	}
	for _, j := range s.order {
		walk(j.spec.ID, "", j.segs)
		for _, t := range j.tasks {
			walk(j.spec.ID, t.spec.ID, t.segs)
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

// Queries returns the answered job requests in order (the latest 10000).
func (s *Server) Queries() []Query {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.queries)
}

// ExpireTokens revokes every token now, as a password change would.
func (s *Server) ExpireTokens() {
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.tokens)
}

// Throttle makes the next n requests (any endpoint) answer 429 APIG.0308.
func (s *Server) Throttle(n int) {
	if n <= 0 {
		return
	}
	_ = s.InjectFault(Fault{Kind: FaultThrottle, Count: n})
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
	case FaultMalformed, FaultHTML, FaultThrottle, FaultExpireTokens:
	default:
		return fmt.Errorf("unknown fault kind %q: want status, delay, malformed, html, throttle or expire_tokens", f.Kind)
	}
	switch f.Endpoint {
	case EndpointAny, EndpointIAM, EndpointJob:
	default:
		return fmt.Errorf("unknown endpoint %q: want iam, job or nothing for any", f.Endpoint)
	}
	if f.Count < 0 || f.At < 0 {
		return errors.New("fault count and at must not be negative")
	}
	return nil
}

// takeFaultLocked fires due token revocations and returns the first armed
// fault that matches ep, using up one of its requests.
func (s *Server) takeFaultLocked(ep Endpoint, now time.Time) *Fault {
	var hit *Fault
	kept := s.faults[:0]
	for _, pf := range s.faults {
		due := !pf.at.After(now)
		switch {
		case due && pf.Kind == FaultExpireTokens:
			for v, tk := range s.tokens {
				if !tk.issued.After(pf.at) {
					delete(s.tokens, v)
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

// route maps an escaped path to an endpoint: the API version, project and
// unescaped job id of a job call. ok is false for a path no API has.
type route struct {
	ep                    Endpoint
	version, project, job string
	emptyJob, badEscaping bool
}

func parseRoute(escaped string) (route, bool) {
	if escaped == "/v3/auth/tokens" {
		return route{ep: EndpointIAM}, true
	}
	parts := strings.SplitN(strings.TrimPrefix(escaped, "/"), "/", 5)
	if len(parts) != 5 || (parts[0] != "v2" && parts[0] != "v3") || parts[1] == "" || parts[2] != "cas" || parts[3] != "jobs" {
		return route{}, false
	}
	r := route{ep: EndpointJob, version: parts[0]}
	var err1, err2 error
	r.project, err1 = url.PathUnescape(parts[1])
	r.job, err2 = url.PathUnescape(parts[4])
	switch {
	case err1 != nil || err2 != nil:
		r.badEscaping = true
	case parts[4] == "":
		r.emptyJob = true
	case strings.Contains(parts[4], "/"):
		return route{}, false
	}
	return r, true
}

// ServeHTTP routes by the escaped path, so job ids holding "/", "..", or
// "%" reach the job handler intact (http.ServeMux would clean them).
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rt, known := parseRoute(r.URL.EscapedPath())
	now := s.clock.Now()
	s.mu.Lock()
	s.stats.Requests++
	f := s.takeFaultLocked(rt.ep, now)
	if f != nil {
		s.stats.Faults++
		if f.Kind == FaultThrottle {
			s.stats.Throttled++
		}
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
			s.writeError(rw, code, s.opts.Envelope, "SVCSTG.00100"+strconv.Itoa(code), http.StatusText(code))
			return
		case FaultMalformed:
			rw.Header().Set("Content-Type", "application/json")
			fmt.Fprint(rw, `{"job": {"JOB_ID": "JOB474362ef", "EXECUTION_STATUS": "RUNN`)
			return
		case FaultHTML:
			rw.Header().Set("Content-Type", "text/html;charset=utf-8")
			fmt.Fprint(rw, `<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway</h1></center><hr><center>nginx</center></body></html>`)
			return
		case FaultThrottle:
			s.writeError(rw, http.StatusTooManyRequests, EnvelopeFlat, CodeThrottled,
				"The throttling threshold has been reached: policy user over ratelimit,limit:5,time:1 second")
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
		s.writeError(rw, http.StatusNotFound, EnvelopeFlat, CodeAPINotFound, "The API does not exist or has not been published in the environment")
		return
	}
	method := http.MethodGet
	if rt.ep == EndpointIAM {
		method = http.MethodPost
	}
	if r.Method != method {
		rw.Header().Set("Allow", method)
		s.writeError(rw, http.StatusMethodNotAllowed, EnvelopeFlat, "APIG.0101", "Method not allowed")
		return
	}
	switch rt.ep {
	case EndpointIAM:
		s.issueToken(rw, r)
	case EndpointJob:
		s.jobDetails(rw, r, rt)
	}
}

// iamError answers as IAM does for auth failures: the Keystone envelope
// (INFERRED from Huawei's IAM being Keystone-compatible).
func iamError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, map[string]any{"error": map[string]any{"code": code, "message": msg, "title": http.StatusText(code)}})
}

type tokenRequest struct {
	Auth struct {
		Identity struct {
			Methods  []string `json:"methods"`
			Password struct {
				User struct {
					Name     string `json:"name"`
					Password string `json:"password"`
					Domain   struct {
						Name string `json:"name"`
					} `json:"domain"`
				} `json:"user"`
			} `json:"password"`
		} `json:"identity"`
		Scope struct {
			Project struct {
				ID   string `json:"id"`
				Name string `json:"name"`
			} `json:"project"`
		} `json:"scope"`
	} `json:"auth"`
}

// iamTime is how IAM writes token times: microseconds and Z.
const iamTime = "2006-01-02T15:04:05.000000Z"

func (s *Server) issueToken(w http.ResponseWriter, r *http.Request) {
	var in tokenRequest
	body, err := readAll(w, r)
	if err != nil || json.Unmarshal(body, &in) != nil {
		iamError(w, http.StatusBadRequest, "The request body is invalid.")
		return
	}
	id := in.Auth.Identity
	u := id.Password.User
	if !slices.Contains(id.Methods, "password") {
		iamError(w, http.StatusBadRequest, "The authentication method is not supported.")
		return
	}
	s.mu.Lock()
	want, ok := s.opts.Users[u.Name]
	if !ok || u.Name == "" || u.Password != want || u.Domain.Name != s.opts.Domain {
		s.stats.FailedLogins++
		s.mu.Unlock()
		iamError(w, http.StatusUnauthorized, "The username or password is wrong.")
		return
	}
	p := in.Auth.Scope.Project
	if !(p.ID != "" && p.ID == s.opts.ProjectID || p.ID == "" && p.Name == s.opts.ProjectName) {
		s.stats.FailedLogins++
		s.mu.Unlock()
		iamError(w, http.StatusBadRequest, "Invalid project scope: no such project in this account.")
		return
	}
	now := s.clock.Now()
	v := "MIIT" + randomToken()
	tk := &token{issued: now, expires: now.Add(s.opts.TokenTTL), projectID: s.opts.ProjectID}
	s.tokens[v] = tk
	s.stats.Logins++
	s.mu.Unlock()

	domain := map[string]string{"id": "d78cbac186b744899480f25bd022f468", "name": s.opts.Domain}
	w.Header().Set("X-Subject-Token", v)
	writeJSON(w, http.StatusCreated, map[string]any{"token": map[string]any{
		"expires_at": tk.expires.UTC().Format(iamTime),
		"issued_at":  tk.issued.UTC().Format(iamTime),
		"methods":    []string{"password"},
		"project":    map[string]any{"id": s.opts.ProjectID, "name": s.opts.ProjectName, "domain": domain},
		"user":       map[string]any{"id": "585cc5c16cda4954b28d4eb460f06261", "name": u.Name, "domain": domain, "password_expires_at": ""},
		"roles":      []map[string]string{{"id": "0", "name": "op_fine_grained"}},
		"catalog":    []any{},
	}})
}

// authorize checks X-Auth-Token as the gateway does, with its messages.
func (s *Server) authorize(w http.ResponseWriter, r *http.Request, project string, now time.Time) bool {
	v := r.Header.Get("X-Auth-Token")
	s.mu.Lock()
	tk, ok := s.tokens[v]
	s.mu.Unlock()
	var msg string
	switch {
	case v == "":
		msg = "Incorrect IAM authentication information: x-auth-token not found"
	case !ok:
		msg = "Incorrect IAM authentication information: decrypt token fail"
	case !now.Before(tk.expires):
		msg = "Incorrect IAM authentication information: token expires, expires_at: " + tk.expires.UTC().Format(iamTime)
	case tk.projectID != project:
		s.writeError(w, http.StatusForbidden, EnvelopeFlat, CodeNotAuthorized, "The IAM user is not authorized to access the API: the token belongs to another project")
		return false
	default:
		return true
	}
	s.mu.Lock()
	s.stats.Unauthorized++
	s.mu.Unlock()
	s.writeError(w, http.StatusUnauthorized, EnvelopeFlat, CodeAuthInfo, msg)
	return false
}

// queryInt reads an optional non-negative integer parameter: -1 when
// absent, ok false when present but not such an integer.
func queryInt(q url.Values, key string) (int, bool) {
	if !q.Has(key) {
		return -1, true
	}
	n, err := strconv.Atoi(q.Get(key))
	return n, err == nil && n >= 0
}

func (s *Server) jobDetails(w http.ResponseWriter, r *http.Request, rt route) {
	now := s.clock.Now()
	if rt.badEscaping {
		s.writeError(w, http.StatusBadRequest, s.opts.Envelope, CodeInvalidParam, "Invalid parameter: path")
		return
	}
	if !s.authorize(w, r, rt.project, now) {
		return
	}
	if rt.emptyJob {
		s.writeError(w, http.StatusBadRequest, s.opts.Envelope, CodeJobIDEmpty, "job id can not empty")
		return
	}
	q := r.URL.Query()
	limit, okL := queryInt(q, "limit")
	offset, okO := queryInt(q, "offset")
	desc := q.Get("desc")
	if !okL || !okO || limit == 0 || limit > s.opts.MaxLimit || (desc != "" && desc != "true" && desc != "false") {
		s.writeError(w, http.StatusBadRequest, s.opts.Envelope, CodeInvalidParam, "Invalid parameter: limit, offset or desc")
		return
	}
	s.mu.Lock()
	j := s.liveLocked(rt.job, now)
	if j == nil {
		s.stats.NotFound++
		s.mu.Unlock()
		s.writeError(w, http.StatusNotFound, s.opts.Envelope, CodeJobNotFound, "job not found")
		return
	}
	s.stats.JobRequests++
	if len(s.queries) == maxQueries {
		s.queries = slices.Delete(s.queries, 0, maxQueries/10)
	}
	s.queries = append(s.queries, Query{JobID: rt.job, Version: rt.version, Limit: limit, Offset: offset})
	body := s.renderLocked(j, now, limit, offset, desc == "true")
	s.mu.Unlock()
	if rt.version == "v3" {
		writeJSON(w, http.StatusOK, body.v3())
		return
	}
	writeJSON(w, http.StatusOK, body)
}

// jobInfo and taskInfo are the v2 payload (UPPER_CASE keys, the seed's
// order); jobInfoV3 and taskInfoV3 the same fields with v3's lower-case
// keys. Go converts between them because only the tags differ.
type jobInfo struct {
	JobID             string `json:"JOB_ID"`
	JobName           string `json:"JOB_NAME"`
	JobType           string `json:"JOB_TYPE"`
	ServiceInstanceID string `json:"SERVICE_INSTANCE_ID"`
	ProjectID         string `json:"PROJECT_ID"`
	OrderID           string `json:"ORDER_ID"`
	JobDesc           string `json:"JOB_DESC"`
	ExecutionStatus   string `json:"EXECUTION_STATUS"`
	CreatedBy         string `json:"CREATED_BY"`
}

type taskInfo struct {
	Messages        string `json:"MESSAGES"`
	TaskID          string `json:"TASK_ID"`
	TaskType        string `json:"TASK_TYPE"`
	TaskIndex       int    `json:"TASK_INDEX"`
	TaskName        string `json:"TASK_NAME"`
	TaskStatus      string `json:"TASK_STATUS"`
	LastHealthCheck string `json:"LAST_HEALTH_CHECK"`
	CreatedAt       string `json:"CREATED_AT"`
	OwnerID         string `json:"OWNER_ID"`
}

type jobDetails struct {
	Job       jobInfo    `json:"job"`
	Tasks     []taskInfo `json:"tasks"`
	TaskCount int        `json:"task_count"`
}

type jobInfoV3 struct {
	JobID             string `json:"job_id"`
	JobName           string `json:"job_name"`
	JobType           string `json:"job_type"`
	ServiceInstanceID string `json:"service_instance_id"`
	ProjectID         string `json:"project_id"`
	OrderID           string `json:"order_id"`
	JobDesc           string `json:"job_desc"`
	ExecutionStatus   string `json:"execution_status"`
	CreatedBy         string `json:"created_by"`
}

type taskInfoV3 struct {
	Messages        string `json:"messages"`
	TaskID          string `json:"task_id"`
	TaskType        string `json:"task_type"`
	TaskIndex       int    `json:"task_index"`
	TaskName        string `json:"task_name"`
	TaskStatus      string `json:"task_status"`
	LastHealthCheck string `json:"last_health_check"`
	CreatedAt       string `json:"created_at"`
	OwnerID         string `json:"owner_id"`
}

type jobDetailsV3 struct {
	Job       jobInfoV3    `json:"job"`
	Tasks     []taskInfoV3 `json:"tasks"`
	TaskCount int          `json:"task_count"`
}

func (d jobDetails) v3() jobDetailsV3 {
	out := jobDetailsV3{Job: jobInfoV3(d.Job), TaskCount: d.TaskCount, Tasks: make([]taskInfoV3, len(d.Tasks))}
	for i, t := range d.Tasks {
		out.Tasks[i] = taskInfoV3(t)
	}
	return out
}

func (s *Server) renderLocked(j *job, now time.Time, limit, offset int, desc bool) jobDetails {
	var visible []*taskState
	for _, t := range j.tasks {
		if !t.created.After(now) {
			visible = append(visible, t)
		}
	}
	sort.SliceStable(visible, func(a, b int) bool {
		if desc {
			return visible[a].spec.Index > visible[b].spec.Index
		}
		return visible[a].spec.Index < visible[b].spec.Index
	})
	total := len(visible)
	if offset > 0 {
		visible = visible[min(offset, len(visible)):]
	}
	if limit > 0 && limit < len(visible) {
		visible = visible[:limit]
	}
	out := jobDetails{
		Job: jobInfo{
			JobID: j.spec.ID, JobName: j.spec.Name, JobType: j.spec.Type, ServiceInstanceID: j.instance,
			ProjectID: s.opts.ProjectID, OrderID: "", JobDesc: j.spec.Name,
			ExecutionStatus: stepAt(j.segs, now).Status, CreatedBy: "585cc5c16cda4954b28d4eb460f06261",
		},
		Tasks:     make([]taskInfo, 0, len(visible)),
		TaskCount: total,
	}
	for _, t := range visible {
		sg := segmentAt(t.segs, now)
		msgs := sg.step.Messages
		if msgs == "" {
			msgs = "{}"
		}
		// A working task's health check is a heartbeat; any other shows
		// when it last changed.
		check := sg.start
		if st := strings.ToUpper(sg.step.Status); st == "RUNNING" || st == "ROLLBACKING" {
			check = now
		}
		out.Tasks = append(out.Tasks, taskInfo{
			Messages: msgs, TaskID: t.spec.ID, TaskType: t.spec.Type, TaskIndex: t.spec.Index, TaskName: t.spec.Name,
			TaskStatus: sg.step.Status, LastHealthCheck: s.formatTime(check), CreatedAt: s.formatTime(t.created),
			OwnerID: "cas-mgr-69bb87d7c-wpqwb:30114",
		})
	}
	return out
}

// formatTime writes a task time as the seed's example does (milliseconds,
// Z), or as epoch milliseconds.
func (s *Server) formatTime(t time.Time) string {
	if s.opts.EpochTimes {
		return strconv.FormatInt(t.UnixMilli(), 10)
	}
	return t.UTC().Format("2006-01-02T15:04:05.000Z")
}

// writeError answers in the given envelope. request_id rides along as the
// gateway's examples show.
func (s *Server) writeError(w http.ResponseWriter, code int, env Envelope, errCode, msg string) {
	var body any
	switch env {
	case EnvelopeNested:
		body = map[string]any{"error": map[string]string{"code": errCode, "message": msg}}
	case EnvelopeCamel:
		body = map[string]string{"errorCode": errCode, "errorMessage": msg, "detail": msg}
	default:
		body = map[string]string{"error_code": errCode, "error_msg": msg, "request_id": randomHex(16)}
	}
	writeJSON(w, code, body)
}

func readAll(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	var b bytes.Buffer
	_, err := b.ReadFrom(http.MaxBytesReader(w, r.Body, 1<<16))
	return b.Bytes(), err
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json;charset=utf8")
	w.WriteHeader(code)
	w.Write(b.Bytes())
}

func randomToken() string {
	b := make([]byte, 96)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func randomUUID() string {
	h := randomHex(16)
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	w.code = code
	w.ResponseWriter.WriteHeader(code)
}
