// Package helixsim owns a simulator of the BMC Helix Continuous Optimization
// REST API as far as jobbridge uses it (shared/reference/vendor-apis.md §2),
// in the style of net/http/httptest: NewServer starts it on a random local
// port, Close stops it.
//
// It behaves as the vendor documents, not as a client would find easiest:
// the Helix Portal access key login (POST /ims/api/v1/access_keys/login)
// answers {"json_web_token": ...} with a JWT whose exp lies about 15 minutes
// ahead on the simulator's clock, and every API call needs
// "Authorization: Bearer <jwt>" (or an on-prem API key), with 401 for a
// wrong, expired or revoked token. GET /opt/api/v1/backend/etls/ lists ETLs;
// GET .../etls/<id>/status answers {"status","task_id","exit_code",
// "last_exec_ts"} with last_exec_ts in ISO-8601 UTC (2022-09-08T14:56:28Z),
// a task_id that is not the ETL id, and "no value" written as a missing key,
// null or "" as the scenario says. An unknown ETL gets 400 "ETL not found",
// as the vendor's status-code table says. POST .../etls/<id>/run starts a
// run. The status can be sent with the literal "204 OK" status line and a
// body, as the vendor's table documents (HTTP clients drop such a body).
//
// ETLs follow scripted runs on a Clock (RUNNING for a while, then WAITING,
// ENDED or ABORTED with an exit code and a new last_exec_ts), service ETLs
// switch between SERVICE_ON and SERVICE_OFF. Faults (5xx bursts, slow
// replies, malformed JSON, HTML pages, empty bodies, literal 204s, token
// expiry) can be injected now or scheduled. History is the ground truth of
// every status change and every run's end, at the clock time it happened,
// whether or not anyone polled.
//
// Listen and Serve run it as a standalone server, and LoadScenario reads a
// YAML (or JSON) scenario, for a CLI demo.
package helixsim

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/jobbridge/jobbridge/pollers/pollkit/simkit"
)

// Clock drives runs, token lifetimes and scheduled faults. Delay faults
// always take real time: they model the network, not the vendor.
// pollkit.ManualClock is one a test can move.
type Clock = simkit.Clock

// Endpoint names a REST call, for targeting faults.
type Endpoint = simkit.Endpoint

// The simulated endpoints. EndpointAny matches every request, unknown paths
// included.
const (
	EndpointAny             = simkit.EndpointAny
	EndpointLogin  Endpoint = "login"
	EndpointList   Endpoint = "list"
	EndpointStatus Endpoint = "status"
	EndpointRun    Endpoint = "run"
)

// Paths of the simulated API.
const (
	LoginPath = "/ims/api/v1/access_keys/login"
	ETLsPath  = "/opt/api/v1/backend/etls/"
)

// DefaultJWTTTL is the lifetime of a JWT: the documented 15 minutes of a
// Helix Portal JWT.
const DefaultJWTTTL = 15 * time.Minute

// AccessKey is a Helix Portal access key pair.
type AccessKey struct {
	ID     string `yaml:"id"`
	Secret string `yaml:"secret"`
	// TenantID, when set, must match a tenant_id sent with the login (a
	// login without tenant_id is accepted).
	TenantID string `yaml:"tenantId"`
}

// Options configure a Server. Zero fields take the defaults given.
type Options struct {
	// AccessKeys may log in; default one key, sim-access-key /
	// sim-secret-key, unless APITokens are given.
	AccessKeys []AccessKey
	// APITokens are on-prem TrueSight CO API keys, accepted as Bearer
	// tokens without a login.
	APITokens []string
	// JWTTTL is the JWT lifetime; default DefaultJWTTTL.
	JWTTTL time.Duration
	// JWTWithoutExp leaves the exp claim out of the JWT (the server still
	// refuses it after JWTTTL).
	JWTWithoutExp bool
	// Literal204 answers every status call with the status line "204 OK"
	// and the JSON body, as the vendor's status-code table documents.
	Literal204 bool
	// NotFoundStatus is the answer to an unknown ETL: 400 (default, as the
	// vendor documents "400 ETL not found") or 404.
	NotFoundStatus int
	// StampAtStart shows a run's new last_exec_ts from its start, while it
	// is RUNNING; by default it appears when the run ends. The vendor does
	// not say which.
	StampAtStart bool
	// RunDuration is how long a run started with POST .../run lasts;
	// default 30s.
	RunDuration time.Duration
	// SeparatePortal serves the login on a second listener (PortalURL), as
	// Helix SaaS does on the Helix Portal host; the API host then answers
	// the login path with 404.
	SeparatePortal bool
	// TLS serves https with httptest's certificate, valid for 127.0.0.1,
	// ::1 and example.com (see Client, Certificate).
	TLS bool
	// Clock drives runs, token lifetimes and scheduled faults; nil means
	// real time.
	Clock Clock
	// ETLs and Faults are created when the server starts (a scenario).
	ETLs   []ETL
	Faults []Fault
	// Logger receives one debug line per request. Secrets and tokens are
	// never logged.
	Logger zerolog.Logger
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
	// FaultHTML answers 200 with an HTML page, as a proxy or SSO page might.
	FaultHTML = simkit.FaultHTML
	// FaultEmpty answers 200 with an empty body.
	FaultEmpty FaultKind = "empty"
	// FaultLiteral204 answers a status call with "204 OK" and its body.
	FaultLiteral204 FaultKind = "literal_204"
	// FaultExpireTokens revokes every JWT issued until it fires.
	FaultExpireTokens FaultKind = "expire_tokens"
)

// Fault is an injected misbehaviour: Kind, Count (0 means 1), Status (of
// a FaultStatus; default 500), Delay, Endpoint (empty means any) and At
// (arms it this long after the server started, by its Clock; zero arms it
// at once).
type Fault = simkit.Fault

// Change is one status change of one ETL: the ground truth a test compares
// with what the bridge published. Empty strings are "no value".
type Change struct {
	ETL        int
	Status     string
	ExitCode   string
	LastExecTS string
	At         time.Time
	// RunEnded marks the change that ends a run (RUNNING → WAITING, ENDED
	// or ABORTED): each run has exactly one.
	RunEnded bool
}

// Stats counts what the server saw.
type Stats struct {
	Requests       int
	Logins         int // successful
	FailedLogins   int
	ListRequests   int
	StatusRequests int // answered from an ETL, unknown ETLs excluded
	RunRequests    int
	Unauthorized   int // 401s for a missing, unknown, expired or revoked token
	Faults         int // requests answered (or delayed) by a fault
}

// Server is a running simulator.
type Server struct {
	// URL is the CO API root (http://127.0.0.1:port).
	URL string
	// PortalURL is the Helix Portal root that serves the login; URL unless
	// Options.SeparatePortal.
	PortalURL string

	host    *simkit.Host
	opts    Options
	clock   Clock
	log     zerolog.Logger
	signKey []byte

	mu         sync.Mutex
	etls       map[int]*etl
	order      []*etl
	tokens     map[string]time.Time // JWT → expiry by the clock
	faults     *simkit.FaultQueue[Fault]
	literal204 bool
	runSeq     int
	stats      Stats
}

// NewServer starts a simulator on 127.0.0.1 at a random port. Like
// httptest.NewServer it panics when it cannot listen or the options are
// invalid.
func NewServer(opts Options) *Server { return simkit.Must(Listen(simkit.LocalAddr, opts)) }

// Listen starts a simulator on addr (host:port). With SeparatePortal the
// portal listens on the same host at a random port.
func Listen(addr string, opts Options) (*Server, error) {
	s, err := newServer(opts)
	if err != nil {
		return nil, err
	}
	api, err := s.host.Listen(addr, opts.TLS, simkit.LogRequests(s.log, http.HandlerFunc(s.serveAPI)))
	if err != nil {
		return nil, err
	}
	s.URL, s.PortalURL = api.URL, api.URL
	if opts.SeparatePortal {
		host, _, _ := net.SplitHostPort(api.Listener.Addr().String())
		portal, err := s.host.Listen(net.JoinHostPort(host, "0"), opts.TLS, simkit.LogRequests(s.log, http.HandlerFunc(s.servePortal)))
		if err != nil {
			s.Close()
			return nil, err
		}
		s.PortalURL = portal.URL
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
	s.log.Info().Str("url", s.URL).Str("portal_url", s.PortalURL).Int("etls", len(opts.ETLs)).Int("faults", len(opts.Faults)).
		Msg("Helix CO simulator listening")
	<-ctx.Done()
	return nil
}

func newServer(opts Options) (*Server, error) {
	if len(opts.AccessKeys) == 0 && len(opts.APITokens) == 0 {
		opts.AccessKeys = []AccessKey{{ID: "sim-access-key", Secret: "sim-secret-key"}}
	}
	opts.AccessKeys = append([]AccessKey(nil), opts.AccessKeys...) // the caller may reuse its slices
	opts.APITokens = append([]string(nil), opts.APITokens...)
	for _, k := range opts.AccessKeys {
		if k.ID == "" || k.Secret == "" {
			return nil, errors.New("an access key needs an id and a secret")
		}
	}
	if opts.JWTTTL < 0 || opts.RunDuration < 0 {
		return nil, errors.New("JWTTTL and RunDuration must not be negative")
	}
	if opts.JWTTTL == 0 {
		opts.JWTTTL = DefaultJWTTTL
	}
	if opts.RunDuration == 0 {
		opts.RunDuration = 30 * time.Second
	}
	switch opts.NotFoundStatus {
	case 0:
		opts.NotFoundStatus = http.StatusBadRequest
	case http.StatusBadRequest, http.StatusNotFound:
	default:
		return nil, fmt.Errorf("NotFoundStatus %d: want 400 (as documented) or 404", opts.NotFoundStatus)
	}
	if opts.Clock == nil {
		opts.Clock = simkit.WallClock{}
	}
	key := make([]byte, 32)
	rand.Read(key)
	s := &Server{
		host:       simkit.NewHost(),
		opts:       opts,
		clock:      opts.Clock,
		log:        opts.Logger.With().Str("component", "helixsim").Logger(),
		signKey:    key,
		etls:       make(map[int]*etl),
		tokens:     make(map[string]time.Time),
		literal204: opts.Literal204,
	}
	vocab := simkit.Vocabulary{
		Kinds:     []FaultKind{FaultStatus, FaultDelay, FaultMalformed, FaultHTML, FaultEmpty, FaultLiteral204, FaultExpireTokens},
		Endpoints: []Endpoint{EndpointLogin, EndpointList, EndpointStatus, EndpointRun},
	}
	s.faults = simkit.NewFaultQueue(s.clock.Now(), vocab, map[FaultKind]func(Fault, time.Time){
		// Every JWT dies when the fault comes due.
		FaultExpireTokens: func(Fault, time.Time) { clear(s.tokens) },
	})
	for _, e := range opts.ETLs {
		if err := s.AddETL(e); err != nil {
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

// Close stops the server and its portal, cutting delayed replies short.
func (s *Server) Close() { s.host.Close() }

// Client returns an HTTP client that trusts the server's certificate (the
// portal's is the same).
func (s *Server) Client() *http.Client { return s.host.Client() }

// Certificate returns the TLS certificate, nil without TLS.
func (s *Server) Certificate() *x509.Certificate { return s.host.Certificate() }

// AddETL adds an ETL created now by the server's clock; its runs' and
// steps' At count from now.
func (s *Server) AddETL(e ETL) error {
	e, err := normalizeETL(e)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if old, dup := s.etls[e.ID]; dup && old.removed.IsZero() {
		return fmt.Errorf("ETL %d exists already", e.ID)
	}
	j := &etl{spec: e, created: s.clock.Now()}
	if err := j.build(s.opts.StampAtStart); err != nil {
		return err
	}
	s.etls[e.ID] = j
	s.order = append(s.order, j)
	return nil
}

// MustAddETL is AddETL for tests: it panics on an invalid ETL.
func (s *Server) MustAddETL(e ETL) {
	if err := s.AddETL(e); err != nil {
		panic("helixsim: " + err.Error())
	}
}

// RemoveETL deletes an ETL now: its status call answers "ETL not found".
func (s *Server) RemoveETL(id int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	j, ok := s.etls[id]
	if !ok || !j.removed.IsZero() {
		return false
	}
	j.removed = s.clock.Now()
	return true
}

// StartRun starts a run of a batch ETL now, RUNNING for d, then Then
// (default WAITING) with exitCode (default OK).
func (s *Server) StartRun(id int, d time.Duration, exitCode, then string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.clock.Now()
	j, ok := s.etls[id]
	if !ok || j.gone(now) {
		return fmt.Errorf("no ETL %d", id)
	}
	return j.addRun(now, Run{For: d, ExitCode: exitCode, Then: then}, s.opts.StampAtStart)
}

// SetService switches a service ETL to status (SERVICE_ON or SERVICE_OFF)
// now.
func (s *Server) SetService(id int, status string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.clock.Now()
	j, ok := s.etls[id]
	if !ok || j.gone(now) || !j.spec.Service {
		return fmt.Errorf("no service ETL %d", id)
	}
	return j.addStep(now, status, s.opts.StampAtStart)
}

// SetLiteral204 turns the literal "204 OK" status answers on or off.
func (s *Server) SetLiteral204(on bool) {
	s.mu.Lock()
	s.literal204 = on
	s.mu.Unlock()
}

// Status returns what an ETL's status call shows now: status, exit code and
// last_exec_ts ("" for no value).
func (s *Server) Status(id int) (status, exitCode, lastExecTS string, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.clock.Now()
	j, found := s.etls[id]
	if !found || j.gone(now) {
		return "", "", "", false
	}
	v := j.at(now)
	return v.Status, v.ExitCode, v.LastExec, true
}

// StatusPolls counts the status calls answered for one ETL.
func (s *Server) StatusPolls(id int) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if j, ok := s.etls[id]; ok {
		return j.polls
	}
	return 0
}

// History lists every status change of every ETL up to now, by the
// server's clock, ordered by time (ties in the order ETLs were added). An
// ETL's first status counts as a change at its creation.
func (s *Server) History() []Change {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.clock.Now()
	var out []Change
	for _, j := range s.order {
		for _, sg := range j.timeline.Changes(now, sameView) {
			if j.gone(sg.Start) {
				break
			}
			v := sg.Step.view
			out = append(out, Change{ETL: j.spec.ID, Status: v.Status, ExitCode: v.ExitCode,
				LastExecTS: v.LastExec, At: sg.Start, RunEnded: sg.Step.runEnd})
		}
	}
	slices.SortStableFunc(out, func(a, b Change) int { return a.At.Compare(b.At) })
	return out
}

// Stats returns the counters so far.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats
}

// ExpireTokens revokes every JWT now, as an expiry would.
func (s *Server) ExpireTokens() {
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.tokens)
}

// InjectFault arms f now, or at f.At after the server started.
func (s *Server) InjectFault(f Fault) error {
	if f.Kind == FaultLiteral204 && f.Endpoint != EndpointStatus {
		return errors.New("a literal_204 fault applies to the status endpoint only: set endpoint: status")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.faults.Arm(f, s.clock.Now())
}

// reply is a handler's answer, written by ServeHTTP.
type reply struct {
	code int
	body []byte
	// ctype defaults to application/json.
	ctype string
}

func jsonReply(code int, v any) reply {
	b, err := json.Marshal(v)
	if err != nil {
		return reply{code: http.StatusInternalServerError, body: []byte(err.Error()), ctype: "text/plain"}
	}
	return reply{code: code, body: b}
}

func messageReply(code int, msg string) reply {
	return jsonReply(code, map[string]string{"message": msg})
}

// servePortal serves the Helix Portal of SeparatePortal: the login only.
func (s *Server) servePortal(w http.ResponseWriter, r *http.Request) {
	s.serve(w, r, true, false)
}

func (s *Server) serveAPI(w http.ResponseWriter, r *http.Request) {
	s.serve(w, r, !s.opts.SeparatePortal, true)
}

// serve routes by the escaped path, so ETL ids holding "/" or ".." reach
// the handlers intact (http.ServeMux would clean them).
func (s *Server) serve(w http.ResponseWriter, r *http.Request, portal, api bool) {
	ep, arg, known := route(r.URL.EscapedPath(), portal, api)
	now := s.clock.Now()
	s.mu.Lock()
	s.stats.Requests++
	f, hit := s.faults.Take(ep, now)
	if hit {
		s.stats.Faults++
	}
	lit204 := s.literal204
	s.mu.Unlock()

	var rep reply
	if hit {
		switch f.Kind {
		case FaultStatus:
			rep = htmlReply(f.StatusOr(http.StatusInternalServerError))
			write(w, rep)
			return
		case FaultMalformed:
			rep = reply{code: http.StatusOK, body: []byte(`{"status": "RUNN`)}
			write(w, rep)
			return
		case FaultHTML:
			rep = reply{code: http.StatusOK, ctype: "text/html;charset=utf-8",
				body: []byte(`<!DOCTYPE html><html><head><title>BMC Helix</title></head><body><h1>Service Unavailable</h1><p>Please try again later.</p></body></html>`)}
			write(w, rep)
			return
		case FaultEmpty:
			rep = reply{code: http.StatusOK}
			write(w, rep)
			return
		case FaultLiteral204:
			lit204 = true
		case FaultDelay:
			if !s.host.Hold(r, f.Delay) {
				return
			}
		}
	}
	if !known {
		rep = htmlReply(http.StatusNotFound)
		write(w, rep)
		return
	}
	method := map[Endpoint]string{EndpointLogin: http.MethodPost, EndpointList: http.MethodGet, EndpointStatus: http.MethodGet, EndpointRun: http.MethodPost}[ep]
	if r.Method != method {
		w.Header().Set("Allow", method)
		rep = messageReply(http.StatusMethodNotAllowed, "Method not allowed")
		write(w, rep)
		return
	}
	if ep == EndpointLogin {
		rep = s.login(w, r)
		write(w, rep)
		return
	}
	if rep = s.authorize(r); rep.code != 0 {
		write(w, rep)
		return
	}
	switch ep {
	case EndpointList:
		rep = s.list()
	case EndpointStatus:
		rep = s.status(arg)
		if lit204 && rep.code == http.StatusOK {
			rep.code = http.StatusNoContent
			writeLiteral204(w, rep)
			return
		}
	case EndpointRun:
		rep = s.run(w, r, arg)
	}
	write(w, rep)
}

// route maps an escaped path to an endpoint and its ETL id (still
// escaped-then-decoded text; the handlers decide whether it is a number).
func route(escaped string, portal, api bool) (Endpoint, string, bool) {
	if escaped == LoginPath {
		return EndpointLogin, "", portal
	}
	if !api {
		return EndpointAny, "", false
	}
	rest, ok := strings.CutPrefix(escaped, ETLsPath)
	if !ok {
		if escaped+"/" == ETLsPath {
			return EndpointList, "", true
		}
		return EndpointAny, "", false
	}
	if rest == "" {
		return EndpointList, "", true
	}
	for _, r := range []struct {
		ep     Endpoint
		suffix string
	}{{EndpointStatus, "/status"}, {EndpointRun, "/run"}} {
		if mid, ok := strings.CutSuffix(rest, r.suffix); ok && mid != "" && !strings.Contains(mid, "/") {
			return r.ep, mid, true
		}
	}
	return EndpointAny, "", false
}

func (s *Server) login(w http.ResponseWriter, r *http.Request) reply {
	var in struct {
		AccessKey string `json:"access_key"`
		Secret    string `json:"access_secret_key"`
		TenantID  string `json:"tenant_id"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<16)).Decode(&in); err != nil {
		return messageReply(http.StatusBadRequest, "Invalid request body")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var key *AccessKey
	for i := range s.opts.AccessKeys {
		k := &s.opts.AccessKeys[i]
		if in.AccessKey != "" && k.ID == in.AccessKey && hmac.Equal([]byte(k.Secret), []byte(in.Secret)) {
			key = k
		}
	}
	if key == nil || (key.TenantID != "" && in.TenantID != "" && in.TenantID != key.TenantID) {
		s.stats.FailedLogins++
		return messageReply(http.StatusUnauthorized, "Invalid access key or secret")
	}
	now := s.clock.Now()
	exp := now.Add(s.opts.JWTTTL)
	tok := s.mintJWT(key, now, exp)
	s.tokens[tok] = exp
	s.stats.Logins++
	return jsonReply(http.StatusOK, map[string]string{"json_web_token": tok})
}

// mintJWT signs an HS256 JWT, so the token looks like the real one to a
// client that reads its claims.
func (s *Server) mintJWT(key *AccessKey, now, exp time.Time) string {
	enc := base64.RawURLEncoding
	header := enc.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`))
	claims := map[string]any{"sub": key.ID, "iat": now.Unix(), "jti": simkit.RandomHex(8)}
	if key.TenantID != "" {
		claims["tenant_id"] = key.TenantID
	}
	if !s.opts.JWTWithoutExp {
		claims["exp"] = exp.Unix()
	}
	cb, _ := json.Marshal(claims)
	signing := header + "." + enc.EncodeToString(cb)
	mac := hmac.New(sha256.New, s.signKey)
	mac.Write([]byte(signing))
	return signing + "." + enc.EncodeToString(mac.Sum(nil))
}

// authorize checks the Bearer token; a zero reply means it passed.
func (s *Server) authorize(r *http.Request) reply {
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	now := s.clock.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if ok && tok != "" {
		if exp, found := s.tokens[tok]; found {
			if now.Before(exp) {
				return reply{}
			}
			delete(s.tokens, tok)
		}
		for _, k := range s.opts.APITokens {
			if hmac.Equal([]byte(k), []byte(tok)) {
				return reply{}
			}
		}
	}
	s.stats.Unauthorized++
	return messageReply(http.StatusUnauthorized, "Unauthorized: the token is missing, invalid or expired")
}

func (s *Server) list() reply {
	type entry struct {
		Name              string             `json:"name"`
		ETLID             int                `json:"etl_id"`
		RunConfigurations []RunConfiguration `json:"run_configurations"`
	}
	now := s.clock.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stats.ListRequests++
	out := []entry{}
	for _, j := range s.order {
		if j.gone(now) || s.etls[j.spec.ID] != j {
			continue
		}
		out = append(out, entry{Name: j.spec.Name, ETLID: j.spec.ID, RunConfigurations: j.spec.RunConfigurations})
	}
	return jsonReply(http.StatusOK, out)
}

func (s *Server) lookupLocked(arg string, now time.Time) (*etl, bool) {
	id, err := strconv.Atoi(arg)
	if err != nil {
		return nil, false
	}
	j, ok := s.etls[id]
	if !ok || j.gone(now) {
		return nil, false
	}
	return j, true
}

func (s *Server) status(arg string) reply {
	now := s.clock.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	j, ok := s.lookupLocked(arg, now)
	if !ok {
		return messageReply(s.opts.NotFoundStatus, "ETL not found")
	}
	s.stats.StatusRequests++
	j.polls++
	return reply{code: http.StatusOK, body: renderStatus(j.at(now), j.spec.TaskID, j.spec.Empty)}
}

// renderStatus writes the status payload in the vendor's key order.
func renderStatus(v view, taskID int, empty EmptyStyle) []byte {
	var b bytes.Buffer
	b.WriteString("{")
	sep := ""
	field := func(key, val string) {
		if val == "" {
			switch empty {
			case EmptyMissing:
				return
			case EmptyNull:
				fmt.Fprintf(&b, "%s%q: null", sep, key)
				sep = ", "
				return
			}
		}
		q, _ := json.Marshal(val)
		fmt.Fprintf(&b, "%s%q: %s", sep, key, q)
		sep = ", "
	}
	field("status", v.Status)
	fmt.Fprintf(&b, "%s\"task_id\": %d", sep, taskID)
	sep = ", "
	field("exit_code", v.ExitCode)
	field("last_exec_ts", v.LastExec)
	b.WriteString("}")
	return b.Bytes()
}

func (s *Server) run(w http.ResponseWriter, r *http.Request, arg string) reply {
	var in struct {
		Props map[string]any `json:"run_execution_properties"`
	}
	body, err := simkit.ReadBody(w, r, 1<<20)
	if err != nil || (len(bytes.TrimSpace(body)) > 0 && json.Unmarshal(body, &in) != nil) {
		return messageReply(http.StatusBadRequest, "Invalid request body")
	}
	now := s.clock.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stats.RunRequests++
	j, ok := s.lookupLocked(arg, now)
	if !ok {
		return messageReply(s.opts.NotFoundStatus, "ETL not found")
	}
	type answer struct {
		ID     int    `json:"task_execution_request_id"`
		Status string `json:"request_status"`
	}
	if j.spec.Service {
		if err := j.addStep(now, "SERVICE_ON", s.opts.StampAtStart); err != nil {
			return jsonReply(http.StatusOK, answer{ID: -1, Status: "ERROR"})
		}
		return jsonReply(http.StatusOK, answer{ID: -1, Status: "OK"})
	}
	if j.running(now) {
		return jsonReply(http.StatusOK, answer{ID: -1, Status: "ERROR"})
	}
	if err := j.addRun(now, Run{For: s.opts.RunDuration}, s.opts.StampAtStart); err != nil {
		return jsonReply(http.StatusOK, answer{ID: -1, Status: "ERROR"})
	}
	s.runSeq++
	return jsonReply(http.StatusOK, answer{ID: 9000 + s.runSeq, Status: "OK"})
}

func write(w http.ResponseWriter, rep reply) {
	ct := rep.ctype
	if ct == "" {
		ct = "application/json"
	}
	w.Header().Set("Content-Type", ct)
	w.WriteHeader(rep.code)
	w.Write(rep.body)
}

// writeLiteral204 sends what the vendor's table documents: status line
// "204 OK" followed by a JSON body. net/http refuses to write a body after
// 204, so the connection is taken over and the bytes written by hand; the
// connection is then closed, since a client that (rightly) ignores the body
// could not find the next response on it.
func writeLiteral204(w http.ResponseWriter, rep reply) {
	conn, buf, err := http.NewResponseController(w).Hijack()
	if errors.Is(err, http.ErrNotSupported) {
		write(w, rep)
		return
	}
	if err != nil {
		return
	}
	defer conn.Close()
	fmt.Fprintf(buf, "HTTP/1.1 204 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n", len(rep.body))
	buf.Write(rep.body)
	buf.Flush()
}

// htmlReply answers as the application server in front of the API would.
func htmlReply(code int) reply {
	return reply{code: code, ctype: "text/html;charset=utf-8", body: []byte(fmt.Sprintf(
		"<!doctype html><html><head><title>%d %s</title></head><body><h1>%d %s</h1></body></html>",
		code, http.StatusText(code), code, http.StatusText(code)))}
}
