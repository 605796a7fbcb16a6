// Package helix owns the BMC Helix Continuous Optimization (formerly
// TrueSight Capacity Optimization) poller: obtaining a JWT from a Helix
// Portal access key (or using an on-prem TrueSight CO API key), fetching one
// ETL's status, listing ETLs for discovery, and mapping the ETL status and
// its exit code to the canonical states (see Rules). Vendor facts:
// shared/reference/vendor-apis.md §2.
//
// A Helix ETL is not a job that ends once: its status describes the ETL,
// not one run, and between runs it shows the outcome of the last run. Each
// run is told apart by last_exec_ts, which becomes Observation.RunID, so the
// bridge (with Instance.Recurring) emits one terminal event per run, even for
// a run that started and ended between two polls.
//
// HTTP, retries, TLS and token renewal are package pollkit's.
package helix

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/jobbridge/jobbridge/bridge"
	"github.com/jobbridge/jobbridge/pollers/pollkit"
)

// Vendor is the vendor name in JobRefs and subjects.
const Vendor = "helix"

// API paths (vendor-apis.md §2.1–2.3).
const (
	loginPath   = "/ims/api/v1/access_keys/login"
	etlsPath    = "/opt/api/v1/backend/etls/"
	statusOfETL = "/status"
)

// DefaultTokenLifetime is the JWT lifetime assumed when the token carries no
// readable exp claim: the documented 15 minutes of a Helix Portal JWT (the
// lifetime of one minted from an access key is not documented).
const DefaultTokenLifetime = 15 * time.Minute

// ErrNoStatus means the vendor answered the status call with success but no
// body: the documented "204 OK", which HTTP clients (Go's included) read as
// having no body at all, or an empty 200. It carries no observation, so it
// is neither a transition nor a malformed payload: the bridge counts it as a
// failed poll and asks again with backoff.
var ErrNoStatus = errors.New("the vendor answered with success but no ETL status body")

// Options configure a Poller. Give either AccessKey with SecretKey (Helix
// SaaS) or APIToken (on-prem TrueSight CO), not both.
type Options struct {
	// Instance names this Helix tenant in configuration, logs and errors.
	Instance string
	// BaseURL is the Continuous Optimization API root, scheme and host
	// (https://acme-co.onbmc.com); /opt/api/v1/... is appended. It overrides
	// HTTP.BaseURL.
	BaseURL string
	// LoginURL is the Helix Portal root when it differs from BaseURL
	// (https://acme.onbmc.com); /ims/api/v1/access_keys/login is appended.
	LoginURL string
	// AccessKey and SecretKey are a Helix Portal access key pair.
	AccessKey string
	SecretKey bridge.Secret
	// TenantID is sent with the access key login when set.
	TenantID string
	// APIToken is an on-prem TrueSight CO API key, sent as a Bearer token
	// with no login at all.
	APIToken bridge.Secret
	// TokenLifetime is the JWT lifetime assumed when the JWT's exp claim
	// cannot be read; default DefaultTokenLifetime. The JWT is renewed after
	// two thirds of its lifetime, and once when a call gets 401.
	TokenLifetime time.Duration
	// NameFilter, when set, limits Discover to ETLs whose name it matches.
	NameFilter *regexp.Regexp
	// HTTP configures TLS, timeouts, retries and limits for both the API and
	// the login. Its Logger is replaced by Logger.
	HTTP pollkit.ClientOptions
	// Logger receives warnings and debug notes; never a secret.
	Logger zerolog.Logger
	// Now is the clock for token lifetimes and ObservedAt; nil means
	// time.Now.
	Now func() time.Time
}

// Poller polls the ETLs of one Helix CO tenant. It is safe for concurrent
// use and implements bridge.Poller, bridge.Discoverer and bridge.Closer.
type Poller struct {
	instance string
	api      *pollkit.Client
	login    *pollkit.Client // the Helix Portal; == api when LoginURL is unset
	auth     *pollkit.TokenSource

	accessKey string
	secretKey bridge.Secret
	tenantID  string
	apiToken  bridge.Secret
	lifetime  time.Duration
	filter    *regexp.Regexp
	now       func() time.Time
	log       zerolog.Logger
	// statusHeader is sent with every status request; pollkit never
	// modifies a request's Header, so all polls share it.
	statusHeader http.Header
}

var (
	_ bridge.Poller     = (*Poller)(nil)
	_ bridge.Discoverer = (*Poller)(nil)
	_ bridge.Closer     = (*Poller)(nil)
)

// New checks opts and builds a Poller. It does not contact the vendor: the
// first Poll or Discover logs in.
func New(opts Options) (*Poller, error) {
	if err := bridge.ValidateName("instance", opts.Instance); err != nil {
		return nil, fmt.Errorf("helix: %w", err)
	}
	if opts.BaseURL != "" {
		opts.HTTP.BaseURL = opts.BaseURL
	}
	if err := checkRoot("BaseURL", opts.HTTP.BaseURL, "/opt/api"); err != nil {
		return nil, fmt.Errorf("helix %s: %w", opts.Instance, err)
	}
	saas := opts.AccessKey != "" || !opts.SecretKey.IsZero()
	switch {
	case saas && !opts.APIToken.IsZero():
		return nil, fmt.Errorf("helix %s: give either an access key pair (Helix SaaS) or an API token (on-prem TrueSight CO), not both", opts.Instance)
	case saas && (opts.AccessKey == "" || opts.SecretKey.IsZero()):
		return nil, fmt.Errorf("helix %s: AccessKey and SecretKey go together: give the Helix Portal access key and its secret", opts.Instance)
	case !saas && opts.APIToken.IsZero():
		return nil, fmt.Errorf("helix %s: no credentials: give an access key pair (Helix SaaS) or an API token (on-prem TrueSight CO)", opts.Instance)
	case !saas && (opts.LoginURL != "" || opts.TenantID != ""):
		return nil, fmt.Errorf("helix %s: LoginURL and TenantID belong to the access key login; an API token needs no login", opts.Instance)
	}
	if opts.TokenLifetime < 0 {
		return nil, fmt.Errorf("helix %s: TokenLifetime %v is negative", opts.Instance, opts.TokenLifetime)
	}
	if opts.TokenLifetime == 0 {
		opts.TokenLifetime = DefaultTokenLifetime
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	log := opts.Logger.With().Str("vendor", Vendor).Str("instance", opts.Instance).Logger()
	opts.HTTP.Logger = log
	api, err := pollkit.NewClient(opts.HTTP)
	if err != nil {
		return nil, fmt.Errorf("helix %s: %w", opts.Instance, err)
	}
	p := &Poller{
		instance: opts.Instance, api: api, login: api,
		accessKey: opts.AccessKey, secretKey: opts.SecretKey, tenantID: opts.TenantID, apiToken: opts.APIToken,
		lifetime: opts.TokenLifetime, filter: opts.NameFilter, now: opts.Now, log: log,
		statusHeader: http.Header{"Content-Type": {"application/json"}},
	}
	if opts.LoginURL != "" {
		if err := checkRoot("LoginURL", opts.LoginURL, "/ims/api"); err != nil {
			return nil, fmt.Errorf("helix %s: %w", opts.Instance, err)
		}
		lo := opts.HTTP
		lo.BaseURL = opts.LoginURL
		if p.login, err = pollkit.NewClient(lo); err != nil {
			return nil, fmt.Errorf("helix %s: LoginURL: %w", opts.Instance, err)
		}
	}
	name := fmt.Sprintf("helix/%s access key %s", opts.Instance, opts.AccessKey)
	loginFn := p.loginAccessKey
	if !saas {
		name = fmt.Sprintf("helix/%s API token", opts.Instance)
		loginFn = p.staticToken
	}
	p.auth, err = pollkit.NewTokenSource(pollkit.TokenSourceOptions{
		Name:   name,
		Login:  loginFn,
		Apply:  pollkit.ApplyHeader("Authorization", "Bearer "),
		Now:    opts.Now,
		Logger: log,
	})
	if err != nil {
		return nil, err
	}
	return p, nil
}

// checkRoot refuses a root URL that already holds the API path, which would
// then be doubled.
func checkRoot(what, s, apiPrefix string) error {
	u, err := url.Parse(s)
	if err != nil {
		return nil // pollkit.NewClient explains what is wrong with it
	}
	if i := strings.Index(u.Path, apiPrefix); i >= 0 {
		root := *u
		root.Path, root.RawPath = u.Path[:i], ""
		return fmt.Errorf("%s %q must be the server root, without %s...: jobbridge appends the API paths itself (use %q)",
			what, u.Redacted(), apiPrefix, root.Redacted())
	}
	return nil
}

// staticToken is the on-prem "login": the API key is the Bearer token. It
// has no known expiry, so it is only "renewed" after a 401, which hands the
// same key back once and then ends in bridge.ErrAuth.
func (p *Poller) staticToken(context.Context) (pollkit.Token, error) {
	return pollkit.Token{Value: p.apiToken}, nil
}

// loginAccessKey exchanges the access key pair for a JWT. The secret goes
// only into the request body, which nothing logs.
func (p *Poller) loginAccessKey(ctx context.Context) (pollkit.Token, error) {
	body, err := json.Marshal(struct {
		AccessKey string `json:"access_key"`
		Secret    string `json:"access_secret_key"`
		TenantID  string `json:"tenant_id,omitempty"`
	}{p.accessKey, p.secretKey.Reveal(), p.tenantID})
	if err != nil {
		return pollkit.Token{}, err
	}
	resp, err := p.login.Do(ctx, pollkit.Request{Method: http.MethodPost, Path: loginPath, Body: body, Idempotent: true})
	if err != nil {
		return pollkit.Token{}, fmt.Errorf("Helix Portal access key login: %w", err)
	}
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
	case resp.StatusCode == http.StatusBadRequest || resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
		return pollkit.Token{}, fmt.Errorf("%w: the Helix Portal refused access key %q (HTTP %d): check auth.accessKey, auth.secretKey and options.tenantID, and that the key was not revoked or expired",
			bridge.ErrAuth, p.accessKey, resp.StatusCode)
	default:
		return pollkit.Token{}, fmt.Errorf("Helix Portal access key login: %w", pollkit.UnexpectedStatus(resp))
	}
	var out struct {
		JWT string `json:"json_web_token"`
	}
	if err := pollkit.DecodeJSON(resp.Body, &out); err != nil {
		return pollkit.Token{}, fmt.Errorf("Helix Portal access key login answer: %w", err)
	}
	if strings.TrimSpace(out.JWT) == "" {
		return pollkit.Token{}, fmt.Errorf("the Helix Portal answered the access key login with HTTP %d but no json_web_token: check that the login goes to the Helix Portal (options.loginURL), not to a proxy or UI page",
			resp.StatusCode)
	}
	now := p.now()
	expiry := now.Add(p.lifetime)
	if exp, ok := jwtExpiry(out.JWT); ok {
		if exp.After(now.Add(30 * time.Second)) {
			expiry = exp
		} else {
			// The issuer's clock and ours disagree; trusting exp would renew
			// on every poll. The vendor's 401 remains the final word.
			p.log.Warn().Time("exp", exp).Time("now", now).Dur("assumed_lifetime", p.lifetime).
				Msg("the JWT's exp claim is not in the future by this host's clock; check NTP on this host; assuming the configured token lifetime")
		}
	}
	return pollkit.Token{Value: bridge.NewSecret(out.JWT), Expiry: expiry}, nil
}

// Poll fetches GET /opt/api/v1/backend/etls/<etl-id>/status. Errors wrap
// bridge.ErrNotFound (404, or the documented 400 "ETL not found"),
// bridge.ErrMalformed (no usable status), bridge.ErrAuth, or ErrNoStatus (a
// success without a body).
func (p *Poller) Poll(ctx context.Context, job bridge.JobRef) (bridge.Observation, error) {
	if err := bridge.ValidateJobID(job.ID); err != nil {
		return bridge.Observation{}, fmt.Errorf("helix %s: %w", p.instance, err)
	}
	resp, err := p.api.Do(ctx, pollkit.Request{
		Path: etlsPath + pollkit.EscapePathSegment(job.ID) + statusOfETL,
		// The vendor's request example sends it on a GET; it costs nothing.
		Header:   p.statusHeader,
		Auth:     p.auth,
		Classify: classifyStatus,
	})
	if err != nil {
		return bridge.Observation{}, fmt.Errorf("helix %s: ETL %q: %w", p.instance, job.ID, err)
	}
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
	case saysNoSuchETL(resp):
		return bridge.Observation{}, fmt.Errorf("%w: Helix CO %s has no ETL %q (HTTP %d): it was deleted, or the id is wrong; ETL ids are the numbers in the ETL list",
			bridge.ErrNotFound, p.instance, job.ID, resp.StatusCode)
	case resp.StatusCode == http.StatusForbidden:
		return bridge.Observation{}, fmt.Errorf("%w: Helix CO %s refused the status of ETL %q (HTTP 403): the API user needs capacity_optimization.admin.etls_read or capacity_optimization.admin.admin_section_read",
			bridge.ErrAuth, p.instance, job.ID)
	default:
		return bridge.Observation{}, fmt.Errorf("helix %s: ETL %q: %w", p.instance, job.ID, pollkit.UnexpectedStatus(resp))
	}
	if len(bytes.TrimSpace(resp.Body)) == 0 {
		note := "no observation is made, and the ETL is polled again"
		if resp.StatusCode == http.StatusNoContent {
			note = "the documented \"204 OK\" would carry the status in a body that HTTP forbids after 204, so clients never see it; " + note
		}
		return bridge.Observation{}, fmt.Errorf("helix %s: ETL %q: HTTP %d: %w (%s)", p.instance, job.ID, resp.StatusCode, ErrNoStatus, note)
	}
	obs, err := buildObservation(job, resp.Body)
	if err != nil {
		return bridge.Observation{}, fmt.Errorf("helix %s: ETL %q: %w", p.instance, job.ID, err)
	}
	obs.ObservedAt = p.now()
	return obs, nil
}

// saysNoSuchETL recognises an unknown ETL: 404, or the 400 "ETL not found"
// of the vendor's status-code table.
func saysNoSuchETL(resp *pollkit.Response) bool {
	if resp.StatusCode == http.StatusNotFound {
		return true
	}
	if resp.StatusCode != http.StatusBadRequest {
		return false
	}
	b := strings.ToLower(string(resp.Body))
	return strings.Contains(b, "not found") || strings.Contains(b, "does not exist")
}

func classifyStatus(resp *pollkit.Response) pollkit.Verdict {
	if saysNoSuchETL(resp) {
		return pollkit.Verdict{}
	}
	return pollkit.DefaultClassify(resp)
}

// Discover lists the ETLs (GET /opt/api/v1/backend/etls/) and returns the
// ids of those whose name NameFilter matches (all without a filter).
func (p *Poller) Discover(ctx context.Context) ([]string, error) {
	resp, err := p.api.Do(ctx, pollkit.Request{Path: etlsPath, Auth: p.auth})
	if err != nil {
		return nil, fmt.Errorf("helix %s: list ETLs: %w", p.instance, err)
	}
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
	case resp.StatusCode == http.StatusForbidden:
		return nil, fmt.Errorf("%w: Helix CO %s refused the ETL list (HTTP 403): the API user needs capacity_optimization.admin.etls_read or capacity_optimization.admin.admin_section_read",
			bridge.ErrAuth, p.instance)
	default:
		return nil, fmt.Errorf("helix %s: list ETLs: %w", p.instance, pollkit.UnexpectedStatus(resp))
	}
	etls, skipped, err := parseETLList(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("helix %s: %w", p.instance, err)
	}
	if skipped > 0 {
		p.log.Debug().Int("skipped", skipped).Msg("ETL list entries without a usable etl_id were skipped")
	}
	ids := make([]string, 0, len(etls))
	for _, e := range etls {
		if p.filter == nil || p.filter.MatchString(e.Name) {
			ids = append(ids, e.ID)
		}
	}
	return ids, nil
}

// Close drops the JWT and idle connections. Helix documents no logout for
// access-key JWTs; the token simply expires.
func (p *Poller) Close(context.Context) error {
	p.auth.Forget()
	p.api.CloseIdleConnections()
	if p.login != p.api {
		p.login.CloseIdleConnections()
	}
	return nil
}
