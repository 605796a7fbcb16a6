// Package tso owns the BMC TrueSight Orchestration (formerly Atrium
// Orchestrator) poller: logging on to a CDP or AP REST API, fetching one
// job's status, parsing TSO's payload (Java Date.toString() start times,
// case-varying keys, XML-wrapped output values) and mapping its status enum
// to the canonical states. Vendor facts: shared/reference/vendor-apis.md §1.
// HTTP, retries, TLS and session renewal are package pollkit's.
package tso

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/jobbridge/jobbridge/bridge"
	"github.com/jobbridge/jobbridge/pollers/pollkit"
)

// Vendor is the vendor name in JobRefs and subjects.
const Vendor = "tso"

// tokenHeader carries the session token, in both directions.
const tokenHeader = "Authentication-Token"

// Options configure a Poller.
type Options struct {
	// Instance names this TSO server in configuration, logs and errors.
	Instance string
	// BaseURL is the REST root ending in /baocdp or /baoap, e.g.
	// https://tso.example.com:8443/baocdp. It overrides HTTP.BaseURL.
	BaseURL string
	// Username and Password are the TSO (Remedy SSO) account.
	Username string
	Password bridge.Secret
	// HTTP configures TLS, timeouts, retries and limits. Its Logger is
	// replaced by Logger.
	HTTP pollkit.ClientOptions
	// Logger receives warnings and debug notes; never a secret.
	Logger zerolog.Logger
	// Zone is the TSO server JVM's time zone, which resolves the ambiguous
	// short zone names of startTime (CST in Chicago or in Shanghai). Nil
	// means the fixed table of ParseJavaDate.
	Zone *time.Location
	// Now stamps ObservedAt; nil means time.Now.
	Now func() time.Time
}

// Poller polls one TSO server. It keeps one session (token) for all polls,
// logs in again once when a call gets 401 (TSO has no refresh call: its
// sessions just time out), and is safe for concurrent use. It implements
// bridge.Poller and bridge.Closer.
type Poller struct {
	instance string
	username string
	password bridge.Secret
	client   *pollkit.Client
	auth     *pollkit.TokenSource
	zone     *time.Location
	now      func() time.Time
	log      zerolog.Logger
}

var (
	_ bridge.Poller = (*Poller)(nil)
	_ bridge.Closer = (*Poller)(nil)
)

// New checks opts and builds a Poller. It does not contact the server: the
// first Poll logs in.
func New(opts Options) (*Poller, error) {
	if err := bridge.ValidateName("instance", opts.Instance); err != nil {
		return nil, fmt.Errorf("tso: %w", err)
	}
	if opts.BaseURL != "" {
		opts.HTTP.BaseURL = opts.BaseURL
	}
	if err := checkBaseURL(opts.HTTP.BaseURL); err != nil {
		return nil, fmt.Errorf("tso %s: %w", opts.Instance, err)
	}
	if opts.Username == "" || opts.Password.IsZero() {
		return nil, fmt.Errorf("tso %s: Username and Password are both required", opts.Instance)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	log := opts.Logger.With().Str("vendor", Vendor).Str("instance", opts.Instance).Logger()
	opts.HTTP.Logger = log
	client, err := pollkit.NewClient(opts.HTTP)
	if err != nil {
		return nil, fmt.Errorf("tso %s: %w", opts.Instance, err)
	}
	p := &Poller{
		instance: opts.Instance,
		username: opts.Username,
		password: opts.Password,
		client:   client,
		zone:     opts.Zone,
		now:      opts.Now,
		log:      log,
	}
	p.auth, err = pollkit.NewTokenSource(pollkit.TokenSourceOptions{
		Name:   fmt.Sprintf("tso/%s user %s", opts.Instance, opts.Username),
		Login:  p.login,
		Apply:  pollkit.ApplyHeader(tokenHeader, ""),
		Logger: log,
	})
	if err != nil {
		return nil, err
	}
	return p, nil
}

func checkBaseURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return nil // pollkit.NewClient explains what is wrong with it
	}
	if p := strings.TrimRight(u.Path, "/"); strings.HasSuffix(p, "/baocdp") || strings.HasSuffix(p, "/baoap") {
		return nil
	}
	return fmt.Errorf("BaseURL %q must end in /baocdp (the CDP) or /baoap (an AP), e.g. https://tso.example.com:8443/baocdp", u.Redacted())
}

// login runs POST /rest/login. The password goes only into the request
// body, which nothing logs.
func (p *Poller) login(ctx context.Context) (pollkit.Token, error) {
	body, err := json.Marshal(struct {
		Username string `json:"username"`
		Password string `json:"password"`
	}{p.username, p.password.Reveal()})
	if err != nil {
		return pollkit.Token{}, err
	}
	resp, err := p.client.Do(ctx, pollkit.Request{Method: http.MethodPost, Path: "/rest/login", Body: body, Idempotent: true})
	if err != nil {
		return pollkit.Token{}, fmt.Errorf("TSO login: %w", err)
	}
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusUnauthorized, http.StatusForbidden:
		return pollkit.Token{}, fmt.Errorf("%w: TSO %s refused the login of user %q (HTTP %d): check Username and Password, and that the account is not locked",
			bridge.ErrAuth, p.instance, p.username, resp.StatusCode)
	default:
		return pollkit.Token{}, fmt.Errorf("TSO login: %w", pollkit.UnexpectedStatus(resp))
	}
	var ack struct {
		Login string `json:"login"`
	}
	if pollkit.DecodeJSON(resp.Body, &ack) == nil && strings.EqualFold(ack.Login, "false") {
		return pollkit.Token{}, fmt.Errorf(`%w: TSO %s answered the login of user %q with {"login":"false"}: check Username and Password`,
			bridge.ErrAuth, p.instance, p.username)
	}
	tok := resp.Header.Get(tokenHeader)
	if tok == "" {
		// The docs promise the header; 20.x also sets a cookie of the same
		// name, which is the next best source.
		for _, c := range (&http.Response{Header: resp.Header}).Cookies() {
			if c.Name == tokenHeader {
				tok = c.Value
			}
		}
	}
	if tok == "" {
		return pollkit.Token{}, fmt.Errorf("TSO %s answered the login with HTTP 200 but no %s header: check that BaseURL is the REST API (…/baocdp or …/baoap), not a proxy or UI page",
			p.instance, tokenHeader)
	}
	return pollkit.Token{Value: bridge.NewSecret(tok)}, nil
}

// Poll fetches GET <base>/rest/job/<id>/status. Errors wrap
// bridge.ErrNotFound (404, or the vendor's "job ID does not exist"
// message), bridge.ErrMalformed (no usable status) or bridge.ErrAuth.
func (p *Poller) Poll(ctx context.Context, job bridge.JobRef) (bridge.Observation, error) {
	if err := bridge.ValidateJobID(job.ID); err != nil {
		return bridge.Observation{}, fmt.Errorf("tso %s: %w", p.instance, err)
	}
	resp, err := p.client.Do(ctx, pollkit.Request{
		Path:     "/rest/job/" + pollkit.EscapePathSegment(job.ID) + "/status",
		Auth:     p.auth,
		Classify: classifyStatus,
	})
	if err != nil {
		return bridge.Observation{}, fmt.Errorf("tso %s: job %q: %w", p.instance, job.ID, err)
	}
	switch {
	case resp.StatusCode == http.StatusOK:
	case resp.StatusCode == http.StatusNotFound || saysNoSuchJob(resp):
		return bridge.Observation{}, fmt.Errorf("%w: TSO %s has no job %q (it never existed, or its status was purged after the retention interval)",
			bridge.ErrNotFound, p.instance, job.ID)
	default:
		return bridge.Observation{}, fmt.Errorf("tso %s: job %q: %w", p.instance, job.ID, pollkit.UnexpectedStatus(resp))
	}
	obs, note, err := buildObservation(job, resp.Body, p.zone, p.now())
	if err != nil {
		return bridge.Observation{}, fmt.Errorf("tso %s: job %q: %w", p.instance, job.ID, err)
	}
	if note != "" {
		p.log.Debug().Str("job", job.ID).Msg(note)
	}
	return obs, nil
}

// saysNoSuchJob recognises the vendor's documented message for an unknown
// job, whose HTTP code the docs leave out (a 500 would be plausible).
func saysNoSuchJob(resp *pollkit.Response) bool {
	return resp.StatusCode >= 400 && strings.Contains(strings.ToLower(string(resp.Body)), "job id does not exist")
}

func classifyStatus(resp *pollkit.Response) pollkit.Verdict {
	if saysNoSuchJob(resp) {
		return pollkit.Verdict{}
	}
	return pollkit.DefaultClassify(resp)
}

// Close logs out (POST <base>/rest/logout) when a session is open. A 401
// means the session had already ended, which is fine. A later Poll logs in
// again.
func (p *Poller) Close(ctx context.Context) error {
	defer p.client.CloseIdleConnections()
	tok, ok := p.auth.Forget()
	if !ok {
		return nil
	}
	resp, err := p.client.Do(ctx, pollkit.Request{
		Method:     http.MethodPost,
		Path:       "/rest/logout",
		Header:     http.Header{tokenHeader: {tok.Value.Reveal()}},
		Idempotent: true,
	})
	if err != nil {
		return fmt.Errorf("tso %s: logout: %w", p.instance, err)
	}
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusUnauthorized {
		return fmt.Errorf("tso %s: logout: %w", p.instance, pollkit.UnexpectedStatus(resp))
	}
	return nil
}
