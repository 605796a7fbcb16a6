// Package arcgissim owns a simulator of the Esri ArcGIS job resources that
// jobbridge polls (shared/reference/vendor-apis.md §3), in the style of
// net/http/httptest: NewServer starts it on a random local port, Close stops
// it. One server plays every part at once:
//
//   - generateToken, as a stand-alone server (/arcgis/tokens/generateToken,
//     answering {"token","expires"}) and as a portal
//     (/portal/sharing/rest/generateToken, adding "ssl"): POST only, form
//     parameters username, password, client (referer, ip, requestip),
//     referer, ip, expiration in minutes and f;
//   - Mission Server jobs (/mission/rest/jobs/<jobId> and the site job list
//     {"asyncJobs": [...]});
//   - classic ArcGIS Server Administrator API jobs
//     (/arcgis/admin/system/jobs/<jobid>: lower-case jobid, totalsteps,
//     currentstep, stepInfo, operationResponse; list {"jobs": [...]});
//   - ArcGIS Enterprise Administrator API jobs (/portal/admin/jobs/<jobid>:
//     updatedtime, jobid, endtime, starttime, operationURI, status,
//     username, result);
//   - a geoprocessing task (/arcgis/rest/services/Tools/GPServer/Buffer) with
//     submitJob and jobs/<jobId> (jobStatus esriJob*, messages, progress
//     while executing, results, inputs).
//
// It behaves as the vendor documents rather than as a client would find
// easiest: resources answer only f=json or pjson (anything else gets the
// HTML page ArcGIS serves by default); tokens travel in X-Esri-Authorization
// (or Authorization) as "Bearer <token>", or in a token parameter, which the
// server accepts and counts (Stats.QueryTokens) because it leaks into logs;
// tokens expire by the server's Clock and are bound to the referer or IP
// they were issued for; every error comes inside HTTP 200, in the REST shape
// {"error":{"code","message","details"}} or, under /admin, the
// administrator API's {"status":"error","messages":[...],"code"}: 499
// without a token, 498 for an expired, unknown or wrongly bound one, 404 for
// a job that does not exist or was purged. Every answer carries a Date
// header from the Clock.
//
// Jobs follow scripts of steps on the Clock (status, step counts, GP
// progress, messages, Mission isCancelled, the admin operation's status).
// Faults (HTTP 5xx, slow answers, truncated JSON, HTML with 200, an error
// 500 inside 200, token expiry) can be injected now or scheduled. History is
// the ground truth of every job change, at the clock time it happened.
//
// Listen and Serve run it as a standalone server, and LoadScenario reads a
// YAML (or JSON) scenario, for a CLI demo.
package arcgissim

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/jobbridge/jobbridge/pollers/pollkit/simkit"
)

// Clock drives job scripts, token expiry, purges and scheduled faults; a
// *pollkit.ManualClock is one a test can step. Delay faults take real time
// whatever the clock: they model the network.
type Clock = simkit.Clock

// Paths of the simulated resources below the server's URL.
const (
	ServerTokenPath     = "/arcgis/tokens/generateToken"
	PortalTokenPath     = "/portal/sharing/rest/generateToken"
	MissionRoot         = "/mission/rest"
	AdminRoot           = "/arcgis/admin"
	EnterpriseAdminRoot = "/portal/admin"
	GPTaskPath          = "/arcgis/rest/services/Tools/GPServer/Buffer"
)

// Kind says which API a job belongs to, and so where it lives and how it
// is rendered.
type Kind string

// The job kinds.
const (
	// KindMission: Mission Server, <MissionRoot>/jobs/<id>.
	KindMission Kind = "mission"
	// KindAdmin: the classic Server Administrator API,
	// <AdminRoot>/system/jobs/<id>.
	KindAdmin Kind = "admin"
	// KindEnterprise: the Enterprise Administrator API (10.9.1+),
	// <EnterpriseAdminRoot>/jobs/<id>.
	KindEnterprise Kind = "enterprise"
	// KindGP: a geoprocessing job, <GPTaskPath>/jobs/<id>.
	KindGP Kind = "gp"
)

func (k Kind) valid() bool {
	return k == KindMission || k == KindAdmin || k == KindEnterprise || k == KindGP
}

// adminShape: the administrator APIs answer errors in their own shape.
func (k Kind) adminShape() bool { return k == KindAdmin || k == KindEnterprise }

// Endpoint names a call, for targeting faults.
type Endpoint = simkit.Endpoint

// The endpoints. EndpointAny matches every request, unknown paths included.
const (
	EndpointAny             = simkit.EndpointAny
	EndpointToken  Endpoint = "token"
	EndpointJob    Endpoint = "job"
	EndpointList   Endpoint = "list"
	EndpointSubmit Endpoint = "submit"
)

// Options configure a Server. Zero fields take the defaults given.
type Options struct {
	// Users maps user names to passwords; default {"admin": "admin"}.
	Users map[string]string
	// StaticTokens are accepted forever from any client, as a long-lived
	// token an administrator generated would be.
	StaticTokens []string
	// Anonymous serves the job resources without a token, as an unsecured
	// service does. A token that is sent is still checked.
	Anonymous bool
	// MaxTokenExpiration caps the expiration a client asks for; default
	// 24h. generateToken's own default is 60 minutes.
	MaxTokenExpiration time.Duration
	// Clock drives scripts, token expiry, purges and scheduled faults; nil
	// means real time.
	Clock Clock
	// TLS serves https with httptest's certificate (valid for 127.0.0.1,
	// ::1 and example.com; see Client, Certificate). The portal then says
	// ssl=true in its tokens.
	TLS bool
	// Jobs and Faults are created when the server starts (a scenario).
	Jobs   []Job
	Faults []Fault
	// Logger receives one debug line per request; never a password or token.
	Logger zerolog.Logger
}

// Step is one state of a job, held for For. A script's last step persists
// and its For is ignored.
type Step struct {
	Status string        `yaml:"status"`
	For    time.Duration `yaml:"for"`
	// Done is the number of steps completed: Mission
	// customAttributes.stepsCompleted, admin currentstep.
	Done int `yaml:"done"`
	// Percent is the GP progress percentage, shown while esriJobExecuting;
	// nil shows none.
	Percent *float64 `yaml:"percent"`
	// Message is appended to the job's messages when the step begins
	// (Mission messages, admin stepInfo, GP messages) and is the GP progress
	// message while the step lasts.
	Message string `yaml:"message"`
	// Cancelled is Mission's customAttributes.isCancelled.
	Cancelled bool `yaml:"cancelled"`
	// Operation is the admin operation's outcome, "success" or "error":
	// operationResponse.status (classic) or result.status (Enterprise
	// Administrator API). Empty leaves the field out.
	Operation         string   `yaml:"operation"`
	OperationMessages []string `yaml:"operationMessages"`
}

// Job describes a simulated job.
type Job struct {
	ID   string `yaml:"id"`
	Kind Kind   `yaml:"kind"`
	// Script defaults to the kind's DefaultScript.
	Script []Step `yaml:"script"`
	// TotalSteps is Mission totalSteps and admin totalsteps; default the
	// highest Done in the script.
	TotalSteps int `yaml:"totalSteps"`
	// Type is a Mission job's operation; default addMission.
	Type string `yaml:"type"`
	// Username is who started it; default admin.
	Username string `yaml:"username"`
	// MissionID defaults to a random id.
	MissionID string `yaml:"missionId"`
	// OperationURI is an Enterprise Administrator API job's operation;
	// default /admin/services/Sim.MapServer/edit.
	OperationURI string `yaml:"operationURI"`
	// PurgeAfter removes the job this long after its creation, as the
	// retention of finished jobs would: later requests get error 404.
	// Zero keeps it.
	PurgeAfter time.Duration `yaml:"purgeAfter"`
}

// DefaultScript is the script of a job of kind k added without one (and of
// GP jobs created by submitJob).
func DefaultScript(k Kind) []Step {
	pct := func(v float64) *float64 { return &v }
	switch k {
	case KindMission:
		return []Step{
			{Status: "SUBMITTED", For: time.Second, Message: "Started mission creation."},
			{Status: "EXECUTING", For: 2 * time.Second, Done: 1, Message: "Created tracks layers for location awareness."},
			{Status: "EXECUTING", For: 2 * time.Second, Done: 3, Message: "Created events layers for mission logs."},
			{Status: "COMPLETED", Done: 5, Message: "Finished creating mission."},
		}
	case KindAdmin:
		return []Step{
			{Status: "SUBMITTED", For: time.Second},
			{Status: "EXECUTING", For: 2 * time.Second, Done: 1, Message: "Stopping the service 'Sim' on machine 'SIM.EXAMPLE.COM'"},
			{Status: "EXECUTING", For: 2 * time.Second, Done: 2, Message: "Saving edits to the configuration store"},
			{Status: "COMPLETED", Done: 3, Message: "Starting the service 'Sim' on machine 'SIM.EXAMPLE.COM'", Operation: "success"},
		}
	case KindEnterprise:
		return []Step{
			{Status: "SUBMITTED", For: time.Second},
			{Status: "EXECUTING", For: 3 * time.Second},
			{Status: "COMPLETED", Operation: "success"},
		}
	}
	return []Step{
		{Status: "esriJobSubmitted", For: time.Second, Message: "Submitted."},
		{Status: "esriJobExecuting", For: 2 * time.Second, Percent: pct(30), Message: "Buffering features"},
		{Status: "esriJobExecuting", For: 2 * time.Second, Percent: pct(70), Message: "Dissolving features"},
		{Status: "esriJobSucceeded", Message: "Succeeded."},
	}
}

// FaultKind says what a fault does to the requests it hits.
type FaultKind = simkit.FaultKind

// Fault kinds.
const (
	// FaultStatus answers with Fault.Status (default 500) and an HTML page.
	FaultStatus = simkit.FaultStatus
	// FaultDelay holds the answer for Fault.Delay (real time), then answers
	// normally.
	FaultDelay = simkit.FaultDelay
	// FaultMalformed answers 200 with truncated JSON.
	FaultMalformed = simkit.FaultMalformed
	// FaultHTML answers 200 with an HTML error page, as a proxy might.
	FaultHTML = simkit.FaultHTML
	// FaultVendorError answers 200 with an ArcGIS error of Fault.Code
	// (default 500) in the endpoint's error shape.
	FaultVendorError FaultKind = "vendor_error"
	// FaultExpireTokens invalidates every token generateToken issued until
	// it fires (static tokens stay valid).
	FaultExpireTokens FaultKind = "expire_tokens"
)

// Fault is an injected misbehaviour.
type Fault struct {
	Kind FaultKind `yaml:"kind"`
	// Count is how many requests it hits; 0 means 1.
	Count int `yaml:"count"`
	// Status is the HTTP status of a FaultStatus; default 500.
	Status int `yaml:"status"`
	// Code is the ArcGIS code of a FaultVendorError; default 500.
	Code int `yaml:"code"`
	// Delay is the hold of a FaultDelay.
	Delay time.Duration `yaml:"delay"`
	// Endpoint limits the fault to one call; empty means any.
	Endpoint Endpoint `yaml:"endpoint"`
	// At arms the fault this long after the server started, by its Clock;
	// zero arms it at once.
	At time.Duration `yaml:"at"`
}

// Base returns the part of f that every simulator's faults have, for the
// fault queue.
func (f Fault) Base() simkit.Fault {
	return simkit.Fault{Kind: f.Kind, Count: f.Count, Status: f.Status, Delay: f.Delay, Endpoint: f.Endpoint, At: f.At}
}

// Change is one change of one job: the ground truth a test compares with
// what the bridge published.
type Change struct {
	JobID     string
	Kind      Kind
	Status    string
	Done      int
	Percent   *float64 // GP progress while executing
	Cancelled bool
	Operation string
	// Removed marks the job's purge; Status then repeats its last status.
	Removed bool
	At      time.Time
}

// Stats counts what the server saw.
type Stats struct {
	Requests      int
	TokensIssued  int
	FailedLogins  int // generateToken refusals
	JobRequests   int // answered with a job
	ListRequests  int
	Submitted     int
	NotFound      int // error 404 answers
	InvalidToken  int // error 498 answers
	TokenRequired int // error 499 answers
	// QueryTokens counts requests that carried a token in the query string,
	// where access logs record it.
	QueryTokens int
	Faults      int
}

// Server is a running simulator.
type Server struct {
	// URL is the server root, http://127.0.0.1:port.
	URL string

	host  *simkit.Host
	opts  Options
	clock Clock
	log   zerolog.Logger

	mu     sync.Mutex
	jobs   map[string]*job
	order  []*job
	tokens map[string]*token
	faults *simkit.FaultQueue[Fault]
	stats  Stats
}

type job struct {
	spec     Job
	created  time.Time
	timeline simkit.Timeline[Step]
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
	s.log.Info().Str("url", s.URL).Str("mission", s.MissionURL()).Str("admin", s.AdminURL()).
		Str("enterprise_admin", s.EnterpriseAdminURL()).Str("gp_task", s.GPTaskURL()).
		Str("server_tokens", s.ServerTokenURL()).Str("portal_tokens", s.PortalTokenURL()).
		Int("jobs", len(opts.Jobs)).Int("faults", len(opts.Faults)).Msg("ArcGIS simulator listening")
	<-ctx.Done()
	return nil
}

func newServer(opts Options) (*Server, error) {
	if opts.Users == nil {
		opts.Users = map[string]string{"admin": "admin"}
	}
	opts.Users = maps.Clone(opts.Users)
	opts.StaticTokens = slices.Clone(opts.StaticTokens)
	if opts.MaxTokenExpiration == 0 {
		opts.MaxTokenExpiration = 24 * time.Hour
	}
	if opts.MaxTokenExpiration < time.Minute {
		return nil, fmt.Errorf("MaxTokenExpiration %v is below generateToken's one-minute unit", opts.MaxTokenExpiration)
	}
	if opts.Clock == nil {
		opts.Clock = simkit.WallClock{}
	}
	s := &Server{
		host:   simkit.NewHost(),
		opts:   opts,
		clock:  opts.Clock,
		log:    opts.Logger.With().Str("component", "arcgissim").Logger(),
		jobs:   make(map[string]*job),
		tokens: make(map[string]*token),
	}
	vocab := simkit.Vocabulary{
		Kinds:     []FaultKind{FaultStatus, FaultDelay, FaultMalformed, FaultHTML, FaultVendorError, FaultExpireTokens},
		Endpoints: []Endpoint{EndpointToken, EndpointJob, EndpointList, EndpointSubmit},
	}
	s.faults = simkit.NewFaultQueue(s.clock.Now(), vocab, map[FaultKind]func(Fault, time.Time){
		FaultExpireTokens: func(_ Fault, due time.Time) { s.expireTokensLocked(due) },
	})
	for _, t := range opts.StaticTokens {
		if t == "" {
			return nil, errors.New("a static token is empty")
		}
		s.tokens[t] = &token{static: true}
	}
	for _, j := range opts.Jobs {
		if err := s.AddJob(j); err != nil {
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

// Close stops the server, cutting delayed answers short.
func (s *Server) Close() { s.host.Close() }

// Client returns an HTTP client that trusts the server's certificate.
func (s *Server) Client() *http.Client { return s.host.Client() }

// Certificate returns the TLS certificate, nil without TLS.
func (s *Server) Certificate() *x509.Certificate { return s.host.Certificate() }

// MissionURL is the Mission Server REST root; its jobs are at /jobs.
func (s *Server) MissionURL() string { return s.URL + MissionRoot }

// AdminURL is the classic Server Administrator API root; its jobs are at
// /system/jobs.
func (s *Server) AdminURL() string { return s.URL + AdminRoot }

// EnterpriseAdminURL is the Enterprise Administrator API root; its jobs are
// at /jobs.
func (s *Server) EnterpriseAdminURL() string { return s.URL + EnterpriseAdminRoot }

// GPTaskURL is the geoprocessing task; its jobs are at /jobs.
func (s *Server) GPTaskURL() string { return s.URL + GPTaskPath }

// ServerTokenURL is the stand-alone server's generateToken.
func (s *Server) ServerTokenURL() string { return s.URL + ServerTokenPath }

// PortalTokenURL is the portal's generateToken.
func (s *Server) PortalTokenURL() string { return s.URL + PortalTokenPath }

// AddJob adds a job starting now by the server's clock.
func (s *Server) AddJob(j Job) error {
	j, err := normalize(j)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, dup := s.jobs[j.ID]; dup {
		return fmt.Errorf("job %q exists already", j.ID)
	}
	s.addLocked(j, s.clock.Now())
	return nil
}

// normalize checks a job and fills in its defaults.
func normalize(j Job) (Job, error) {
	if j.ID == "" {
		return j, errors.New("job id is empty")
	}
	if !j.Kind.valid() {
		return j, fmt.Errorf("job %q: kind %q: want mission, admin, enterprise or gp", j.ID, j.Kind)
	}
	if len(j.Script) == 0 {
		j.Script = DefaultScript(j.Kind)
	}
	if err := checkScript(j.Script); err != nil {
		return j, fmt.Errorf("job %q: %w", j.ID, err)
	}
	if j.PurgeAfter < 0 {
		return j, fmt.Errorf("job %q: purgeAfter must not be negative", j.ID)
	}
	j.Script = slices.Clone(j.Script)
	if j.TotalSteps == 0 {
		for _, st := range j.Script {
			j.TotalSteps = max(j.TotalSteps, st.Done)
		}
	}
	if j.Type == "" {
		j.Type = "addMission"
	}
	if j.Username == "" {
		j.Username = "admin"
	}
	if j.MissionID == "" {
		j.MissionID = simkit.RandomHex(16)
	}
	if j.OperationURI == "" {
		j.OperationURI = "/admin/services/Sim.MapServer/edit"
	}
	return j, nil
}

// MustAddJob is AddJob for tests: it panics on an invalid job.
func (s *Server) MustAddJob(j Job) {
	if err := s.AddJob(j); err != nil {
		panic("arcgissim: " + err.Error())
	}
}

func (s *Server) addLocked(j Job, now time.Time) *job {
	jb := &job{spec: j, created: now, timeline: simkit.Scripted(now, j.Script, Step.hold)}
	s.jobs[j.ID] = jb
	s.order = append(s.order, jb)
	return jb
}

func (st Step) hold() time.Duration { return st.For }
func (st Step) status() string      { return st.Status }

func checkScript(script []Step) error {
	if err := simkit.CheckScript(script, Step.status, Step.hold); err != nil {
		return err
	}
	for i, st := range script {
		if st.Done < 0 {
			return fmt.Errorf("script step %d (%s): done must not be negative", i+1, st.Status)
		}
	}
	return nil
}

// purgedAt is when the job disappears; zero for never.
func (j *job) purgedAt() time.Time {
	if j.spec.PurgeAfter <= 0 {
		return time.Time{}
	}
	return j.created.Add(j.spec.PurgeAfter)
}

func (j *job) gone(now time.Time) bool {
	p := j.purgedAt()
	return !p.IsZero() && !now.Before(p)
}

// Status returns a job's status now, and false for an unknown or purged job.
func (s *Server) Status(id string) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.clock.Now()
	j, ok := s.jobs[id]
	if !ok || j.gone(now) {
		return "", false
	}
	return j.timeline.At(now).Step.Status, true
}

// History lists every change of every job up to now by the server's clock,
// ordered by time (ties in the order jobs were added): a job's first step
// at its creation, each later step that changes what a client sees (status,
// steps done, GP progress, isCancelled, the operation's status), and its
// purge.
func (s *Server) History() []Change {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.clock.Now()
	var out []Change
	for _, j := range s.order {
		same := func(a, b Step) bool { return visible(j.spec.Kind, a) == visible(j.spec.Kind, b) }
		purged := j.purgedAt()
		for i, sg := range j.timeline.Changes(now, same) {
			if i > 0 && !purged.IsZero() && !sg.Start.Before(purged) {
				break
			}
			out = append(out, change(j, sg.Step, sg.Start))
		}
		if j.gone(now) {
			c := change(j, j.timeline.At(purged).Step, purged)
			c.Removed = true
			out = append(out, c)
		}
	}
	slices.SortStableFunc(out, func(a, b Change) int { return a.At.Compare(b.At) })
	return out
}

func change(j *job, st Step, at time.Time) Change {
	c := Change{JobID: j.spec.ID, Kind: j.spec.Kind, Status: st.Status, Done: st.Done, Cancelled: st.Cancelled, Operation: st.Operation, At: at}
	if gpProgressShown(j.spec.Kind, st) && st.Percent != nil {
		v := *st.Percent
		c.Percent = &v
	}
	return c
}

// visible is what a client can tell apart between two steps of one job.
func visible(k Kind, st Step) string {
	v := fmt.Sprintf("%s|%d|%t|%s", st.Status, st.Done, st.Cancelled, st.Operation)
	if gpProgressShown(k, st) {
		if st.Percent != nil {
			v += fmt.Sprintf("|%g", *st.Percent)
		}
		v += "|" + st.Message
	}
	return v
}

// gpProgressShown: a GP job shows progress only while executing.
func gpProgressShown(k Kind, st Step) bool {
	return k == KindGP && strings.EqualFold(st.Status, "esriJobExecuting") && (st.Message != "" || st.Percent != nil)
}

// Stats returns the counters so far.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats
}

// ExpireTokens invalidates every token generateToken issued so far, as their
// running out would. Static tokens stay valid.
func (s *Server) ExpireTokens() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expireTokensLocked(s.clock.Now())
}

// expireTokensLocked invalidates the tokens generateToken issued until due
// (a due FaultExpireTokens). Static tokens stay valid.
func (s *Server) expireTokensLocked(due time.Time) {
	maps.DeleteFunc(s.tokens, func(_ string, t *token) bool { return !t.static && !t.issued.After(due) })
}

// InjectFault arms f now, or at f.At after the server started.
func (s *Server) InjectFault(f Fault) error {
	if f.Kind == FaultVendorError && f.Code < 0 {
		return errors.New("a vendor_error fault's code must not be negative")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.faults.Arm(f, s.clock.Now())
}

// route is what a request path names.
type route struct {
	ep     Endpoint
	kind   Kind   // for job, list and submit
	id     string // for job
	portal bool   // for token
	admin  bool   // errors in the administrator API's shape
}

// resolve maps an escaped path to a route, false for an unknown path.
// Routing on the escaped path keeps ids holding "/" or ".." intact.
func resolve(escaped string) (route, bool) {
	switch escaped {
	case ServerTokenPath:
		return route{ep: EndpointToken}, true
	case PortalTokenPath:
		return route{ep: EndpointToken, portal: true}, true
	case GPTaskPath + "/submitJob":
		return route{ep: EndpointSubmit, kind: KindGP}, true
	}
	for _, c := range []struct {
		jobs string
		kind Kind
	}{
		{MissionRoot + "/jobs", KindMission},
		{AdminRoot + "/system/jobs", KindAdmin},
		{EnterpriseAdminRoot + "/jobs", KindEnterprise},
		{GPTaskPath + "/jobs", KindGP},
	} {
		r := route{kind: c.kind, admin: c.kind.adminShape()}
		if escaped == c.jobs || escaped == c.jobs+"/" {
			if c.kind == KindGP {
				return r, false // a GP task has no job list
			}
			r.ep = EndpointList
			return r, true
		}
		rest, ok := strings.CutPrefix(escaped, c.jobs+"/")
		if !ok {
			continue
		}
		if rest == "" || strings.Contains(rest, "/") {
			return r, false
		}
		id, err := pathUnescape(rest)
		if err != nil {
			return r, false
		}
		r.ep, r.id = EndpointJob, id
		return r, true
	}
	return route{admin: strings.HasPrefix(escaped, AdminRoot+"/") || strings.HasPrefix(escaped, EnterpriseAdminRoot+"/")}, false
}

// ServeHTTP answers one request.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rt, known := resolve(r.URL.EscapedPath())
	now := s.clock.Now()
	s.mu.Lock()
	s.stats.Requests++
	f, hit := s.faults.Take(rt.ep, now)
	if hit {
		s.stats.Faults++
	}
	s.mu.Unlock()
	// ArcGIS stamps every answer; a client may correct its token expiry
	// with it, so it must follow the simulated clock.
	w.Header().Set("Date", now.UTC().Format(http.TimeFormat))

	if hit && s.applyFault(w, r, rt, f) {
		return
	}
	if !known {
		s.writeError(w, rt.admin, 400, "Invalid URL", nil)
		return
	}
	switch rt.ep {
	case EndpointToken:
		s.generateToken(w, r, rt.portal)
		return
	case EndpointSubmit:
		if r.Method != http.MethodGet && r.Method != http.MethodPost {
			s.writeError(w, false, 405, "Method not supported.", nil)
			return
		}
	default:
		if r.Method != http.MethodGet {
			s.writeError(w, rt.admin, 405, "Method not supported.", nil)
			return
		}
	}
	if !wantsJSON(r) {
		writeHTMLPage(w, http.StatusOK, "ArcGIS REST Services Directory", "This resource answers JSON only with f=json or f=pjson.")
		return
	}
	if !s.authorize(w, r, rt.admin) {
		return
	}
	switch rt.ep {
	case EndpointJob:
		s.serveJob(w, rt)
	case EndpointList:
		s.serveList(w, rt)
	case EndpointSubmit:
		s.submitJob(w)
	}
}

// applyFault answers with f and reports whether the request is done.
func (s *Server) applyFault(w http.ResponseWriter, r *http.Request, rt route, f Fault) bool {
	switch f.Kind {
	case FaultStatus:
		code := f.Base().StatusOr(http.StatusInternalServerError)
		writeHTMLPage(w, code, fmt.Sprintf("HTTP Status %d", code), http.StatusText(code))
	case FaultMalformed:
		simkit.WriteBody(w, http.StatusOK, "application/json;charset=UTF-8", `{"jobId":"j0","status":"EXEC`)
	case FaultHTML:
		writeHTMLPage(w, http.StatusOK, "Error", "Service Temporarily Unavailable")
	case FaultVendorError:
		code := f.Code
		if code == 0 {
			code = 500
		}
		s.writeError(w, rt.admin, code, "An unexpected error occurred.", nil)
	case FaultDelay:
		return !s.host.Hold(r, f.Delay)
	default:
		return false
	}
	return true
}

func wantsJSON(r *http.Request) bool {
	if err := r.ParseForm(); err != nil {
		return false
	}
	f := strings.ToLower(r.Form.Get("f"))
	return f == "json" || f == "pjson"
}

func (s *Server) serveJob(w http.ResponseWriter, rt route) {
	now := s.clock.Now()
	s.mu.Lock()
	j, ok := s.jobs[rt.id]
	if ok && (j.spec.Kind != rt.kind || j.gone(now)) {
		ok = false
	}
	var body any
	if ok {
		s.stats.JobRequests++
		body = render(j, now)
	} else {
		s.stats.NotFound++
	}
	s.mu.Unlock()
	if !ok {
		msg := "Job not found."
		if rt.admin {
			msg = fmt.Sprintf("Job '%s' does not exist or has been deleted.", rt.id)
		}
		s.writeError(w, rt.admin, 404, msg, nil)
		return
	}
	writeJSON(w, body)
}

func (s *Server) serveList(w http.ResponseWriter, rt route) {
	now := s.clock.Now()
	s.mu.Lock()
	s.stats.ListRequests++
	ids := []string{}
	for _, j := range s.order {
		if j.spec.Kind == rt.kind && !j.gone(now) {
			ids = append(ids, j.spec.ID)
		}
	}
	s.mu.Unlock()
	if rt.kind == KindMission {
		writeJSON(w, map[string][]string{"asyncJobs": ids})
		return
	}
	writeJSON(w, map[string][]string{"jobs": ids})
}

// submitJob creates a GP job on the default script, as the task's
// submitJob does; the answer is the job's first status.
func (s *Server) submitJob(w http.ResponseWriter) {
	j, err := normalize(Job{ID: "j" + simkit.RandomHex(16), Kind: KindGP})
	if err != nil {
		s.writeError(w, false, 500, err.Error(), nil)
		return
	}
	s.mu.Lock()
	s.stats.Submitted++
	jb := s.addLocked(j, s.clock.Now())
	first := jb.timeline.First().Step.Status
	s.mu.Unlock()
	writeJSON(w, struct {
		JobID     string `json:"jobId"`
		JobStatus string `json:"jobStatus"`
	}{j.ID, first})
}

// writeError answers HTTP 200 with an ArcGIS error: the REST shape, or the
// administrator API's operation response.
func (s *Server) writeError(w http.ResponseWriter, admin bool, code int, message string, details []string) {
	if details == nil {
		details = []string{}
	}
	if admin {
		writeJSON(w, struct {
			Status   string   `json:"status"`
			Messages []string `json:"messages"`
			Code     int      `json:"code"`
		}{"error", append([]string{message}, details...), code})
		return
	}
	type inner struct {
		Code    int      `json:"code"`
		Message string   `json:"message"`
		Details []string `json:"details"`
	}
	writeJSON(w, struct {
		Error inner `json:"error"`
	}{inner{code, message, details}})
}

// writeJSON answers 200, as ArcGIS answers errors too, without a final
// newline.
func writeJSON(w http.ResponseWriter, v any) {
	b, err := simkit.EncodeJSON(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	simkit.WriteBody(w, http.StatusOK, "application/json;charset=UTF-8", string(bytes.TrimRight(b, "\n")))
}

func writeHTMLPage(w http.ResponseWriter, code int, title, text string) {
	w.Header().Set("Content-Type", "text/html;charset=UTF-8")
	w.WriteHeader(code)
	fmt.Fprintf(w, "<!DOCTYPE html><html><head><title>%s</title></head><body><h1>%s</h1><p>%s</p></body></html>", title, title, text)
}
