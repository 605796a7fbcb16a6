// Package arcgis owns the Esri ArcGIS poller: one Poller type for three job
// flavours, chosen per instance (vendor-apis.md §3):
//
//   - mission: ArcGIS Mission Server jobs, <jobs-url>/<jobId>?f=json, with
//     epoch-millisecond times and customAttributes (steps, isCancelled);
//   - enterprise: ArcGIS Enterprise / Server administrative jobs, classic
//     (<admin>/system/jobs/<jobid>: lower-case jobid, steps,
//     operationResponse) or the Enterprise Administrator API
//     (<admin>/jobs/<jobid>: starttime, endtime, result);
//   - geoprocessing: GP service jobs, <task-url>/jobs/<jobId>?f=json, with
//     esriJob* statuses and a progress object.
//
// It owns logging on with generateToken (server or portal), sending the token
// in the X-Esri-Authorization header (never in the query string), reading the
// error answers ArcGIS puts inside HTTP 200, parsing each flavour's payload,
// the mapping tables and the outcome rules that overrule a status
// (COMPLETED with operationResponse.status "error" is a failure; a Mission job
// flagged isCancelled is canceled), and listing jobs for discovery. HTTP,
// retries, TLS and the token's renewal are package pollkit's.
package arcgis

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/jobbridge/jobbridge/bridge"
	"github.com/jobbridge/jobbridge/pollers/pollkit"
)

// Vendor is the vendor name in JobRefs and subjects.
const Vendor = "arcgis"

// Flavor says which kind of ArcGIS job an instance watches.
type Flavor string

// The flavours.
const (
	FlavorMission       Flavor = "mission"
	FlavorEnterprise    Flavor = "enterprise"
	FlavorGeoprocessing Flavor = "geoprocessing"
)

// flavors lists the flavours in documentation order.
var flavors = []Flavor{FlavorMission, FlavorEnterprise, FlavorGeoprocessing}

// ParseFlavor checks a configured flavour name (case-insensitive).
func ParseFlavor(s string) (Flavor, error) {
	for _, f := range flavors {
		if strings.EqualFold(strings.TrimSpace(s), string(f)) {
			return f, nil
		}
	}
	if strings.TrimSpace(s) == "" {
		return "", fmt.Errorf("the flavor is required: use mission, enterprise or geoprocessing")
	}
	return "", fmt.Errorf("flavor %q is not known: use mission, enterprise or geoprocessing", s)
}

// DefaultJobsPath is where a flavour's jobs live below the instance URL:
// Mission's site jobs (<.../mission/rest>/jobs), the classic Server
// Administrator API's system jobs (<.../admin>/system/jobs; the Enterprise
// Administrator API uses /jobs instead) and a GP task's jobs
// (<task-url>/jobs).
func (f Flavor) DefaultJobsPath() string {
	if f == FlavorEnterprise {
		return "/system/jobs"
	}
	return "/jobs"
}

// CanDiscover reports whether the flavour has a job list. Geoprocessing has
// none: a GP task lists no jobs, only the admin API's per-service query does.
func (f Flavor) CanDiscover() bool { return f == FlavorMission || f == FlavorEnterprise }

// Token request defaults.
const (
	// DefaultTokenExpiration is what generateToken grants by default.
	DefaultTokenExpiration = 60 * time.Minute
	// authHeader carries the token: preferred by Esri over the query string
	// (which ends up in access logs) and required with web-tier auth.
	authHeader = "X-Esri-Authorization"
)

// Options configure a Poller.
type Options struct {
	// Instance names this ArcGIS instance in configuration, logs and errors.
	Instance string
	// Flavor says which jobs the instance serves.
	Flavor Flavor
	// BaseURL is the root the jobs path is appended to: the Mission REST root
	// (https://gis.example.com/mission/rest), the admin root
	// (https://gis.example.com/server/admin) or the GP task URL
	// (https://gis.example.com/server/rest/services/Tools/GPServer/Buffer).
	// It overrides HTTP.BaseURL.
	BaseURL string
	// JobsPath is the job collection below BaseURL; empty means
	// Flavor.DefaultJobsPath.
	JobsPath string

	// Username and Password log on at TokenURL (generateToken). Leave them
	// empty with a static Token, or for a service that needs no token.
	Username string
	Password bridge.Secret
	// TokenURL is the generateToken endpoint: the server's
	// https://host/<site>/tokens/generateToken or the portal's
	// https://host/<portal>/sharing/rest/generateToken. Required with
	// Username.
	TokenURL string
	// Referer, when set, asks for tokens bound to this referer
	// (client=referer) and sends it as the Referer header on every request;
	// otherwise tokens are bound to the poller's IP (client=requestip).
	Referer string
	// TokenExpiration is the token lifetime asked for (whole minutes; the
	// server may grant less); zero means DefaultTokenExpiration.
	TokenExpiration time.Duration

	// Token is a ready-made long-lived token, used instead of a log-on. It is
	// never renewed: when ArcGIS refuses it, polls fail with ErrAuth.
	Token bridge.Secret

	// HTTP configures TLS, timeouts, retries and limits for both the jobs and
	// the token endpoint. Its Classify and Logger are replaced.
	HTTP pollkit.ClientOptions
	// Logger receives warnings and debug notes; never a secret.
	Logger zerolog.Logger
	// Now stamps ObservedAt and drives token renewal; nil means time.Now.
	Now func() time.Time
}

// Poller polls the jobs of one ArcGIS instance. It keeps one token for all
// polls, renews it before it expires and once when ArcGIS answers 498 or 499,
// and is safe for concurrent use. It implements bridge.Poller,
// bridge.Discoverer (an error for geoprocessing, which cannot list jobs) and
// bridge.Closer.
type Poller struct {
	instance string
	flavor   Flavor
	jobsPath string
	client   *pollkit.Client
	// tokenClient talks to TokenURL, which may be another host (a portal).
	tokenClient *pollkit.Client
	tokenPath   string
	auth        *pollkit.TokenSource // nil: no token at all
	static      bool
	username    string
	password    bridge.Secret
	referer     string
	expiration  int // minutes
	plainHTTP   bool
	now         func() time.Time
	log         zerolog.Logger
}

var (
	_ bridge.Poller     = (*Poller)(nil)
	_ bridge.Discoverer = (*Poller)(nil)
	_ bridge.Closer     = (*Poller)(nil)
)

// New checks opts and builds a Poller. It does not contact ArcGIS: the first
// Poll gets the token.
func New(opts Options) (*Poller, error) {
	if err := bridge.ValidateName("instance", opts.Instance); err != nil {
		return nil, fmt.Errorf("arcgis: %w", err)
	}
	fail := func(format string, args ...any) (*Poller, error) {
		return nil, fmt.Errorf("arcgis %s: "+format, append([]any{opts.Instance}, args...)...)
	}
	if StatusTable(opts.Flavor) == nil {
		_, err := ParseFlavor(string(opts.Flavor))
		return fail("%w", err)
	}
	if opts.BaseURL != "" {
		opts.HTTP.BaseURL = opts.BaseURL
	}
	jobsPath, err := cleanJobsPath(opts.JobsPath, opts.Flavor)
	if err != nil {
		return fail("%w", err)
	}
	if err := checkHeaderValue(opts.Referer); err != nil {
		return fail("Referer: %w", err)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.TokenExpiration == 0 {
		opts.TokenExpiration = DefaultTokenExpiration
	}
	if opts.TokenExpiration < time.Minute {
		return fail("TokenExpiration %v is shorter than generateToken's one-minute unit", opts.TokenExpiration)
	}
	log := opts.Logger.With().Str("vendor", Vendor).Str("instance", opts.Instance).Str("flavor", string(opts.Flavor)).Logger()
	opts.HTTP.Logger = log
	opts.HTTP.Classify = classify
	client, err := pollkit.NewClient(opts.HTTP)
	if err != nil {
		return fail("%w", err)
	}
	p := &Poller{
		instance:   opts.Instance,
		flavor:     opts.Flavor,
		jobsPath:   jobsPath,
		client:     client,
		username:   opts.Username,
		password:   opts.Password,
		referer:    opts.Referer,
		expiration: int((opts.TokenExpiration + time.Minute - 1) / time.Minute),
		plainHTTP:  strings.HasPrefix(strings.ToLower(client.BaseURL()), "http:"),
		now:        opts.Now,
		log:        log,
	}
	tsOpts := pollkit.TokenSourceOptions{
		Apply:         pollkit.ApplyHeader(authHeader, "Bearer "),
		IsAuthFailure: isAuthFailure,
		Now:           opts.Now,
		Logger:        log,
	}
	switch {
	case opts.Username != "" && !opts.Token.IsZero():
		return fail("give either Username and Password (tokens from generateToken) or a static Token, not both")
	case opts.Username != "":
		if opts.Password.IsZero() {
			return fail("Password is required with Username")
		}
		if p.tokenClient, p.tokenPath, err = tokenEndpoint(opts.TokenURL, opts.HTTP); err != nil {
			return fail("%w", err)
		}
		tsOpts.Name = fmt.Sprintf("arcgis/%s user %s", opts.Instance, opts.Username)
		tsOpts.Login = p.login
	case !opts.Token.IsZero():
		if opts.TokenURL != "" {
			return fail("TokenURL is used only to log on with Username and Password; leave it out with a static Token")
		}
		tok := opts.Token
		p.static = true
		tsOpts.Name = fmt.Sprintf("arcgis/%s static token", opts.Instance)
		tsOpts.Login = func(context.Context) (pollkit.Token, error) { return pollkit.Token{Value: tok}, nil }
		// A static token cannot be renewed: Poll turns 498/499 into ErrAuth.
		tsOpts.IsAuthFailure = func(*pollkit.Response) bool { return false }
	default:
		if opts.Password.IsZero() && opts.TokenURL == "" {
			log.Info().Msg("no credentials configured: jobs are read without a token, which works only for services that are not secured")
			return p, nil
		}
		return fail("Username is required with Password or TokenURL")
	}
	if p.auth, err = pollkit.NewTokenSource(tsOpts); err != nil {
		return fail("%w", err)
	}
	return p, nil
}

// cleanJobsPath checks a configured jobs path: absolute, escaped, without
// query or trailing slash.
func cleanJobsPath(s string, f Flavor) (string, error) {
	if s == "" {
		return f.DefaultJobsPath(), nil
	}
	p := strings.TrimRight(strings.TrimSpace(s), "/")
	if !strings.HasPrefix(p, "/") || strings.ContainsAny(p, "?#") {
		return "", fmt.Errorf("JobsPath %q: want a path below the url starting with '/', such as %q", s, f.DefaultJobsPath())
	}
	if u, err := url.Parse(p); err != nil || u.EscapedPath() != p {
		return "", fmt.Errorf("JobsPath %q is not a validly escaped URL path", s)
	}
	return p, nil
}

func checkHeaderValue(s string) error {
	for _, r := range s {
		if r < 0x20 && r != '\t' || r == 0x7f {
			return fmt.Errorf("%q holds a control character", s)
		}
	}
	return nil
}

// tokenEndpoint builds a client for the generateToken URL, which may be on
// another host than the jobs (a federated server's portal).
func tokenEndpoint(raw string, httpOpts pollkit.ClientOptions) (*pollkit.Client, string, error) {
	if raw == "" {
		return nil, "", fmt.Errorf("TokenURL is required with Username: give the generateToken endpoint, https://<host>/<site>/tokens/generateToken for a stand-alone ArcGIS Server or https://<host>/<portal>/sharing/rest/generateToken for a portal (Mission Server and other federated servers)")
	}
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return nil, "", fmt.Errorf("TokenURL %q is not an absolute http(s) URL", redact(raw))
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return nil, "", fmt.Errorf("TokenURL %q: leave out user info, query and fragment", redact(raw))
	}
	if !strings.HasSuffix(strings.TrimRight(u.Path, "/"), "/generateToken") {
		return nil, "", fmt.Errorf("TokenURL %q must end in /generateToken", redact(raw))
	}
	path := strings.TrimRight(u.EscapedPath(), "/")
	httpOpts.BaseURL = u.Scheme + "://" + u.Host
	c, err := pollkit.NewClient(httpOpts)
	if err != nil {
		return nil, "", fmt.Errorf("TokenURL: %w", err)
	}
	return c, path, nil
}

func redact(raw string) string {
	if u, err := url.Parse(raw); err == nil {
		u.User, u.RawQuery = nil, ""
		return u.String()
	}
	return "(unparseable)"
}

// header is sent on every request: the Referer a referer-bound token needs.
func (p *Poller) header() http.Header {
	if p.referer == "" {
		return nil
	}
	return http.Header{"Referer": {p.referer}}
}

// get runs one authenticated GET with f=json.
func (p *Poller) get(ctx context.Context, path string) (*pollkit.Response, error) {
	return p.client.Do(ctx, pollkit.Request{
		Path:     path,
		RawQuery: "f=json",
		Header:   p.header(),
		Auth:     p.auth,
		Classify: classify,
	})
}

// Poll fetches GET <url><jobsPath>/<id>?f=json. Errors wrap
// bridge.ErrNotFound (error 404), bridge.ErrMalformed (no usable status, an
// HTML page) or bridge.ErrAuth (498/499 after a renewal, 403); anything else
// (5xx and error 500 after the retries, other error codes) is transient.
func (p *Poller) Poll(ctx context.Context, job bridge.JobRef) (bridge.Observation, error) {
	if err := bridge.ValidateJobID(job.ID); err != nil {
		return bridge.Observation{}, fmt.Errorf("arcgis %s: %w", p.instance, err)
	}
	resp, err := p.get(ctx, p.jobsPath+"/"+pollkit.EscapePathSegment(job.ID))
	if err != nil {
		return bridge.Observation{}, fmt.Errorf("arcgis %s: job %q: %w", p.instance, job.ID, err)
	}
	if err := p.checkStatus(resp); err != nil {
		return bridge.Observation{}, fmt.Errorf("arcgis %s: job %q: %w", p.instance, job.ID, err)
	}
	obs, note, err := parseJob(p.flavor, job, resp.Body, p.now(), p.static)
	if err != nil {
		return bridge.Observation{}, fmt.Errorf("arcgis %s: job %q: %w", p.instance, job.ID, err)
	}
	if note != "" {
		p.log.Debug().Str("job", job.ID).Msg(note)
	}
	return obs, nil
}

// checkStatus handles a response whose HTTP status is not 200. ArcGIS puts
// its errors inside 200 answers, but a web adaptor or a newer release may
// send the same body with a real status, so the body still decides when it
// is an ArcGIS error. A bare 404 page is not "job not found": it more likely
// means a wrong url or jobsPath, and must not end every watch.
func (p *Poller) checkStatus(resp *pollkit.Response) error {
	if resp.StatusCode == http.StatusOK {
		return nil
	}
	if e := parseError(resp.Body); e != nil {
		return e.asPollError(p.static)
	}
	switch resp.StatusCode {
	case http.StatusUnauthorized, codeInvalidToken, codeTokenRequired:
		return fmt.Errorf("%w: %w; check the credentials (auth) and options.referer", bridge.ErrAuth, pollkit.UnexpectedStatus(resp))
	}
	return pollkit.UnexpectedStatus(resp)
}

// errNoJobList is Discover's answer for geoprocessing.
var errNoJobList = fmt.Errorf("ArcGIS geoprocessing tasks do not list their jobs; watch GP jobs by id (configuration or watch API) and set discover to false")

// Discover lists the instance's jobs: Mission's site jobs
// ({"asyncJobs": [...]}) or the admin API's jobs ({"jobs": [...]}). The lists
// are flat and unpaged. Geoprocessing has no list and always fails.
func (p *Poller) Discover(ctx context.Context) ([]string, error) {
	if !p.flavor.CanDiscover() {
		return nil, fmt.Errorf("arcgis %s: %w", p.instance, errNoJobList)
	}
	resp, err := p.get(ctx, p.jobsPath)
	if err != nil {
		return nil, fmt.Errorf("arcgis %s: job list: %w", p.instance, err)
	}
	if err := p.checkStatus(resp); err != nil {
		return nil, fmt.Errorf("arcgis %s: job list: %w", p.instance, err)
	}
	ids, skipped, err := parseJobList(resp.Body, p.static)
	if err != nil {
		return nil, fmt.Errorf("arcgis %s: job list: %w", p.instance, err)
	}
	if skipped > 0 {
		p.log.Warn().Int("skipped", skipped).Msg("the job list holds entries that are not usable job ids; they are not watched")
	}
	return ids, nil
}

// Close drops the token and idle connections. ArcGIS tokens have no logout:
// they expire on their own. A later Poll gets a new token.
func (p *Poller) Close(context.Context) error {
	if p.auth != nil {
		p.auth.Forget()
	}
	p.client.CloseIdleConnections()
	if p.tokenClient != nil {
		p.tokenClient.CloseIdleConnections()
	}
	return nil
}

// login runs POST <TokenURL> with the credentials in a form body, which
// nothing logs.
func (p *Poller) login(ctx context.Context) (pollkit.Token, error) {
	form := url.Values{
		"username":   {p.username},
		"password":   {p.password.Reveal()},
		"expiration": {strconv.Itoa(p.expiration)},
		"f":          {"json"},
	}
	if p.referer != "" {
		form.Set("client", "referer")
		form.Set("referer", p.referer)
	} else {
		form.Set("client", "requestip")
	}
	h := p.header()
	if h == nil {
		h = http.Header{}
	}
	h.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := p.tokenClient.Do(ctx, pollkit.Request{
		Method: http.MethodPost, Path: p.tokenPath, Body: []byte(form.Encode()),
		Header: h, Idempotent: true, Classify: classify,
	})
	if err != nil {
		return pollkit.Token{}, fmt.Errorf("ArcGIS generateToken: %w", err)
	}
	if e := parseError(resp.Body); e != nil {
		if e.retryable() {
			return pollkit.Token{}, fmt.Errorf("ArcGIS generateToken: %w", e)
		}
		// 400 "Unable to generate token" is how ArcGIS says wrong password.
		return pollkit.Token{}, fmt.Errorf("%w: ArcGIS %s refused to issue a token to user %q: %w; check auth.username, auth.password and options.tokenURL",
			bridge.ErrAuth, p.instance, p.username, e)
	}
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusUnauthorized, http.StatusForbidden:
		return pollkit.Token{}, fmt.Errorf("%w: ArcGIS %s refused the token request of user %q (HTTP %d): check auth.username and auth.password",
			bridge.ErrAuth, p.instance, p.username, resp.StatusCode)
	default:
		return pollkit.Token{}, fmt.Errorf("ArcGIS generateToken: %w", pollkit.UnexpectedStatus(resp))
	}
	tok, note, err := parseToken(resp.Body, resp.Header.Get("Date"), p.now())
	if err != nil {
		return pollkit.Token{}, fmt.Errorf("ArcGIS generateToken: %w", err)
	}
	if note != "" {
		p.log.Warn().Msg(note)
	}
	if tok.Extra["ssl"] == "true" && p.plainHTTP {
		p.log.Warn().Msg("the token is marked ssl=true, so ArcGIS accepts it only over https, but the instance url is http: polls will be refused; use the https url")
	}
	return tok, nil
}
