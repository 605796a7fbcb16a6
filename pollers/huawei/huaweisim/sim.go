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
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/jobbridge/jobbridge/pollers/pollkit"
	"github.com/jobbridge/jobbridge/pollers/pollkit/simkit"
)

// Clock drives job and task scripts, token expiry and scheduled faults.
// Delay faults always take real time: they model the network, not Huawei.
type Clock = simkit.Clock

// ManualClock is a Clock that moves only when told to, so a test can step
// jobs through their scripts without sleeping: pollkit's, kept under this
// name for earlier callers.
type ManualClock = pollkit.ManualClock

// NewManualClock returns a clock standing at start.
func NewManualClock(start time.Time) *ManualClock { return pollkit.NewManualClock(start) }

// Endpoint names a call, for targeting faults.
type Endpoint = simkit.Endpoint

// The simulated endpoints. EndpointAny matches every request, unknown paths
// included.
const (
	EndpointAny          = simkit.EndpointAny
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
type FaultKind = simkit.FaultKind

// Fault kinds.
const (
	// FaultStatus answers with Fault.Status (default 500) in the error
	// envelope.
	FaultStatus = simkit.FaultStatus
	// FaultDelay holds the answer for Fault.Delay (real time), then answers
	// normally.
	FaultDelay = simkit.FaultDelay
	// FaultMalformed answers 200 with truncated JSON.
	FaultMalformed = simkit.FaultMalformed
	// FaultHTML answers 200 with an HTML error page, as a proxy might.
	FaultHTML = simkit.FaultHTML
	// FaultThrottle answers 429 APIG.0308, as the gateway does over its
	// rate limit.
	FaultThrottle FaultKind = "throttle"
	// FaultExpireTokens revokes every token issued until it fires (a
	// password or permission change does that).
	FaultExpireTokens FaultKind = "expire_tokens"
)

// Fault is an injected misbehaviour: Kind, Count (0 means 1), Status (of
// a FaultStatus; default 500), Delay, Endpoint (empty means any) and At
// (arms it this long after the server started, by its Clock; zero arms it
// at once).
type Fault = simkit.Fault

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

	host  *simkit.Host
	opts  Options
	clock Clock
	log   zerolog.Logger

	mu      sync.Mutex
	jobs    map[string]*job
	order   []*job
	tokens  map[string]*token
	faults  *simkit.FaultQueue[Fault]
	stats   Stats
	queries []Query
}

type job struct {
	spec     Job
	start    time.Time
	timeline simkit.Timeline[Step]
	tasks    []*taskState
	instance string
	removed  bool
}

type taskState struct {
	spec     Task
	created  time.Time
	timeline simkit.Timeline[Step]
}

type token struct {
	issued, expires time.Time
	projectID       string
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
	s.URL = ts.URL
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
		opts.Clock = simkit.WallClock{}
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
		host:   simkit.NewHost(),
		opts:   opts,
		clock:  opts.Clock,
		log:    opts.Logger.With().Str("component", "huaweisim").Logger(),
		jobs:   make(map[string]*job),
		tokens: make(map[string]*token),
	}
	vocab := simkit.Vocabulary{
		Kinds:     []FaultKind{FaultStatus, FaultDelay, FaultMalformed, FaultHTML, FaultThrottle, FaultExpireTokens},
		Endpoints: []Endpoint{EndpointIAM, EndpointJob},
	}
	s.faults = simkit.NewFaultQueue(s.clock.Now(), vocab, map[FaultKind]func(Fault, time.Time){
		// Tokens issued until the fault came due are revoked.
		FaultExpireTokens: func(_ Fault, due time.Time) {
			maps.DeleteFunc(s.tokens, func(_ string, tk *token) bool { return !tk.issued.After(due) })
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

// Close stops the server, cutting delayed replies short.
func (s *Server) Close() { s.host.Close() }

// Client returns an HTTP client that trusts the server's certificate.
func (s *Server) Client() *http.Client { return s.host.Client() }

// Certificate returns the TLS certificate, nil without TLS.
func (s *Server) Certificate() *x509.Certificate { return s.host.Certificate() }

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
			t.ID = "Task-" + simkit.RandomUUID()
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
	jb := &job{spec: j, start: now, timeline: simkit.Scripted(now, j.Script, Step.hold), instance: simkit.RandomUUID()}
	for _, t := range j.Tasks {
		c := now.Add(t.After)
		jb.tasks = append(jb.tasks, &taskState{spec: t, created: c, timeline: simkit.Scripted(c, t.Script, Step.hold)})
	}
	s.jobs[j.ID] = jb
	s.order = append(s.order, jb)
	return nil
}

func (st Step) hold() time.Duration { return st.For }
func (st Step) status() string      { return st.Status }

func checkScript(script []Step) error { return simkit.CheckScript(script, Step.status, Step.hold) }

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
	return j.timeline.At(s.clock.Now()).Step.Status, true
}

func (s *Server) liveLocked(id string, now time.Time) *job {
	j, ok := s.jobs[id]
	if !ok || j.removed || (j.spec.GoneAfter > 0 && !now.Before(j.start.Add(j.spec.GoneAfter))) {
		return nil
	}
	return j
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
	walk := func(jobID, taskID string, tl *simkit.Timeline[Step]) {
		for _, sg := range tl.Changes(now, sameStatus) {
			out = append(out, Change{JobID: jobID, TaskID: taskID, Status: sg.Step.Status, At: sg.Start})
		}
	}
	for _, j := range s.order {
		walk(j.spec.ID, "", &j.timeline)
		for _, t := range j.tasks {
			walk(j.spec.ID, t.spec.ID, &t.timeline)
		}
	}
	sort.SliceStable(out, func(a, b int) bool { return out[a].At.Before(out[b].At) })
	return out
}

func sameStatus(a, b Step) bool { return a.Status == b.Status }

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
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.faults.Arm(f, s.clock.Now())
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
	f, hit := s.faults.Take(rt.ep, now)
	if hit {
		s.stats.Faults++
		if f.Kind == FaultThrottle {
			s.stats.Throttled++
		}
	}
	s.mu.Unlock()

	if hit {
		switch f.Kind {
		case FaultStatus:
			code := f.StatusOr(http.StatusInternalServerError)
			s.writeError(w, code, s.opts.Envelope, "SVCSTG.00100"+strconv.Itoa(code), http.StatusText(code))
			return
		case FaultMalformed:
			simkit.WriteBody(w, http.StatusOK, "application/json", `{"job": {"JOB_ID": "JOB474362ef", "EXECUTION_STATUS": "RUNN`)
			return
		case FaultHTML:
			simkit.WriteBody(w, http.StatusOK, "text/html;charset=utf-8", `<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway</h1></center><hr><center>nginx</center></body></html>`)
			return
		case FaultThrottle:
			s.writeError(w, http.StatusTooManyRequests, EnvelopeFlat, CodeThrottled,
				"The throttling threshold has been reached: policy user over ratelimit,limit:5,time:1 second")
			return
		case FaultDelay:
			if !s.host.Hold(r, f.Delay) {
				return
			}
		}
	}

	if !known {
		s.writeError(w, http.StatusNotFound, EnvelopeFlat, CodeAPINotFound, "The API does not exist or has not been published in the environment")
		return
	}
	method := http.MethodGet
	if rt.ep == EndpointIAM {
		method = http.MethodPost
	}
	if r.Method != method {
		w.Header().Set("Allow", method)
		s.writeError(w, http.StatusMethodNotAllowed, EnvelopeFlat, "APIG.0101", "Method not allowed")
		return
	}
	switch rt.ep {
	case EndpointIAM:
		s.issueToken(w, r)
	case EndpointJob:
		s.jobDetails(w, r, rt)
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
	body, err := simkit.ReadBody(w, r, 1<<16)
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
	v := "MIIT" + simkit.RandomBase64(base64.RawURLEncoding, 96)
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
			ExecutionStatus: j.timeline.At(now).Step.Status, CreatedBy: "585cc5c16cda4954b28d4eb460f06261",
		},
		Tasks:     make([]taskInfo, 0, len(visible)),
		TaskCount: total,
	}
	for _, t := range visible {
		sg := t.timeline.At(now)
		msgs := sg.Step.Messages
		if msgs == "" {
			msgs = "{}"
		}
		// A working task's health check is a heartbeat; any other shows
		// when it last changed.
		check := sg.Start
		if st := strings.ToUpper(sg.Step.Status); st == "RUNNING" || st == "ROLLBACKING" {
			check = now
		}
		out.Tasks = append(out.Tasks, taskInfo{
			Messages: msgs, TaskID: t.spec.ID, TaskType: t.spec.Type, TaskIndex: t.spec.Index, TaskName: t.spec.Name,
			TaskStatus: sg.Step.Status, LastHealthCheck: s.formatTime(check), CreatedAt: s.formatTime(t.created),
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
		body = map[string]string{"error_code": errCode, "error_msg": msg, "request_id": simkit.RandomHex(16)}
	}
	writeJSON(w, code, body)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	simkit.WriteJSON(w, code, "application/json;charset=utf8", v)
}
