package pollkit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/time/rate"

	"github.com/jobbridge/jobbridge/bridge"
	"github.com/jobbridge/jobbridge/bridge/backoff"
)

// Defaults for zero ClientOptions fields.
const (
	DefaultTimeout       = 30 * time.Second
	DefaultMaxBodyBytes  = 4 << 20
	DefaultMaxAttempts   = 4
	DefaultMaxRetryAfter = time.Minute
	// DefaultMaxConcurrent is modest on purpose: most vendors here are
	// on-prem application servers with no documented rate limit.
	DefaultMaxConcurrent = 5
	DefaultUserAgent     = "jobbridge"
)

// ClientOptions configure a Client. Zero fields take the defaults above.
type ClientOptions struct {
	// BaseURL is the vendor instance's root, scheme and host included
	// (https://tso.example.com:8443/baocdp). Request paths are appended.
	BaseURL string

	// CAFile names a PEM file of CA certificates trusted in addition to the
	// system pool, for vendors whose certificate an internal CA signed.
	CAFile string
	// InsecureSkipVerify turns off certificate verification. It exists for
	// test rigs only; NewClient logs a warning when it is set.
	InsecureSkipVerify bool
	// CertFile and KeyFile are a PEM client certificate and key, for vendors
	// that require mutual TLS. Both or neither.
	CertFile, KeyFile string

	// Timeout bounds one attempt, reading the body included.
	Timeout time.Duration
	// MaxBodyBytes caps a response body; a larger body is an error wrapping
	// bridge.ErrMalformed.
	MaxBodyBytes int64

	// MaxAttempts bounds the attempts per call, the first one included; 1
	// turns retries off.
	MaxAttempts int
	// Backoff spaces retries that carry no Retry-After.
	Backoff backoff.Policy
	// MaxRetryAfter caps a wait asked for by the vendor (Retry-After or a
	// Classifier's Delay), so a confused server cannot park a poller for hours.
	MaxRetryAfter time.Duration

	// MaxConcurrent bounds requests in flight to this instance.
	MaxConcurrent int
	// RateLimit bounds requests per second to this instance, retries
	// included; 0 means no limit. RateBurst (default 1) is the bucket size.
	RateLimit float64
	RateBurst int

	// Classify decides whether a response is retried; nil means
	// DefaultClassify. A Request may override it.
	Classify Classifier
	// WrapTransport, when set, wraps the TLS-configured transport: a hook
	// for observing the exact requests (benchmarks record them to replay
	// with a bare client), in the style of httptest.
	WrapTransport func(http.RoundTripper) http.RoundTripper
	// UserAgent is sent on every request.
	UserAgent string
	// Logger receives the TLS warning and retry notes (debug level).
	Logger zerolog.Logger
}

// Request is one logical call; the Client may send it several times.
type Request struct {
	// Method defaults to GET.
	Method string
	// Path is appended to the BaseURL path. It must be escaped already and
	// start with '/': build it with EscapePathSegment for outside data.
	Path string
	// Query is encoded into the URL. It is never logged.
	Query url.Values
	// Header is sent as given; Accept defaults to application/json, and
	// Content-Type to application/json when there is a Body.
	Header http.Header
	// Body is sent again on every attempt.
	Body []byte
	// Idempotent marks a POST or PATCH safe to resend after a network error
	// or a 5xx (a login, say). GET, HEAD, PUT, DELETE and OPTIONS always are.
	// Any method is resent after a 429 or a Classifier verdict, since the
	// vendor then said it did not do the work.
	Idempotent bool
	// Auth, when set, authenticates the request and renews the credential
	// once if the vendor rejects it.
	Auth *TokenSource
	// Classify overrides ClientOptions.Classify for this request.
	Classify Classifier
}

// Response is the final answer to a Request: any status that was not retried
// (or no longer could be) with its body read in full.
type Response struct {
	StatusCode int
	Header     http.Header
	Body       []byte
	// Method and Path repeat the request, for messages.
	Method, Path string
	// Attempts is how many times the request was sent.
	Attempts int
}

// Client is an HTTP client for one vendor instance. It is safe for
// concurrent use.
type Client struct {
	base    *url.URL
	hc      *http.Client
	opts    ClientOptions
	sem     chan struct{}
	limiter *rate.Limiter
	log     zerolog.Logger
}

// NewClient checks opts and builds a Client. It logs a warning when TLS
// verification is off or the BaseURL is plain http.
func NewClient(opts ClientOptions) (*Client, error) {
	base, err := parseBaseURL(opts.BaseURL)
	if err != nil {
		return nil, err
	}
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.MaxBodyBytes <= 0 {
		opts.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if opts.MaxAttempts <= 0 {
		opts.MaxAttempts = DefaultMaxAttempts
	}
	if opts.MaxRetryAfter <= 0 {
		opts.MaxRetryAfter = DefaultMaxRetryAfter
	}
	if opts.MaxConcurrent <= 0 {
		opts.MaxConcurrent = DefaultMaxConcurrent
	}
	if opts.RateLimit < 0 {
		return nil, fmt.Errorf("RateLimit is %v requests per second: use a positive number, or 0 for no limit", opts.RateLimit)
	}
	if opts.RateBurst <= 0 {
		opts.RateBurst = 1
	}
	if opts.Classify == nil {
		opts.Classify = DefaultClassify
	}
	if opts.UserAgent == "" {
		opts.UserAgent = DefaultUserAgent
	}
	log := opts.Logger.With().Str("component", "pollkit").Str("base_url", redactURL(base)).Logger()

	tc, err := tlsConfig(opts)
	if err != nil {
		return nil, err
	}
	if opts.InsecureSkipVerify {
		log.Warn().Msg("TLS CERTIFICATE VERIFICATION IS OFF (InsecureSkipVerify): anyone on the network path can pose as the vendor and read the credentials sent to it; use CAFile with the vendor's CA certificate instead")
	}
	if base.Scheme == "http" {
		log.Warn().Msg("BaseURL uses plain http: credentials and tokens travel unencrypted; use https outside test rigs")
	}

	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = tc
	tr.MaxIdleConnsPerHost = opts.MaxConcurrent
	var rt http.RoundTripper = tr
	if opts.WrapTransport != nil {
		rt = opts.WrapTransport(tr)
	}
	c := &Client{
		base: base,
		hc: &http.Client{
			Transport: rt,
			// Redirects are not followed: a custom auth header would go
			// along to wherever the Location points, and a redirect is
			// usually an SSO login page the user should hear about.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		opts: opts,
		sem:  make(chan struct{}, opts.MaxConcurrent),
		log:  log,
	}
	if opts.RateLimit > 0 {
		c.limiter = rate.NewLimiter(rate.Limit(opts.RateLimit), opts.RateBurst)
	}
	return c, nil
}

func parseBaseURL(s string) (*url.URL, error) {
	if s == "" {
		return nil, errors.New("BaseURL is empty: give the vendor instance's URL, e.g. https://host:8443/baocdp")
	}
	u, err := url.Parse(s)
	if err != nil {
		// url.Error repeats the input, which may hold a password.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("BaseURL is not a URL: %w", err)
	}
	if u.Scheme != "https" && u.Scheme != "http" || u.Host == "" {
		return nil, fmt.Errorf("BaseURL %q: want an absolute http or https URL with a host, e.g. https://host:8443/baocdp", s)
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("BaseURL %q: leave out user info, query and fragment; credentials belong in their own options", redactURL(u))
	}
	u.Path = strings.TrimRight(u.Path, "/")
	u.RawPath = strings.TrimRight(u.RawPath, "/")
	return u, nil
}

// BaseURL returns the instance root the Client was built with.
func (c *Client) BaseURL() string { return c.base.String() }

// CloseIdleConnections closes kept-alive connections, for a poller's Close.
func (c *Client) CloseIdleConnections() { c.hc.CloseIdleConnections() }

// Do sends req, retrying as ClientOptions say, and returns the final
// response. Any status that is not retried comes back as a Response with a
// nil error, so the vendor code decides what a 404 or a 400 means. Errors:
// the caller's context; a network failure or retryable status that outlived
// the retries (a *StatusError for the latter); a body over the cap
// (bridge.ErrMalformed); credentials that the vendor rejected even after a
// renewal (bridge.ErrAuth).
func (c *Client) Do(ctx context.Context, req Request) (*Response, error) {
	if req.Method == "" {
		req.Method = http.MethodGet
	}
	u, err := c.resolve(req)
	if err != nil {
		return nil, err
	}
	if req.Auth == nil {
		return c.send(ctx, req, u, Token{})
	}
	tok, err := req.Auth.Token(ctx)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", req.Method, redactURL(u), err)
	}
	resp, err := c.send(ctx, req, u, tok)
	if err != nil || !req.Auth.isAuthFailure(resp) {
		return resp, err
	}
	c.log.Debug().Str("method", req.Method).Str("path", u.EscapedPath()).Int("status", resp.StatusCode).
		Msg("credentials rejected; renewing them once")
	if tok, err = req.Auth.Renew(ctx, tok); err != nil {
		return nil, fmt.Errorf("%s %s: the vendor rejected the credentials: %w", req.Method, redactURL(u), err)
	}
	if resp, err = c.send(ctx, req, u, tok); err != nil || !req.Auth.isAuthFailure(resp) {
		return resp, err
	}
	return nil, fmt.Errorf("%w: %s %s was refused (HTTP %d) even with freshly renewed credentials for %s: check the user name, password or key and that the account may read job status",
		bridge.ErrAuth, req.Method, redactURL(u), resp.StatusCode, req.Auth.name)
}

func (c *Client) resolve(req Request) (*url.URL, error) {
	if !strings.HasPrefix(req.Path, "/") {
		return nil, fmt.Errorf("request path %q must start with '/'", req.Path)
	}
	raw := c.base.EscapedPath() + req.Path
	p, err := url.PathUnescape(raw)
	if err != nil {
		return nil, fmt.Errorf("request path %q is not validly escaped: build it with EscapePathSegment: %w", req.Path, err)
	}
	u := *c.base
	u.Path, u.RawPath = p, raw
	if u.EscapedPath() != raw {
		return nil, fmt.Errorf("request path %q is not validly escaped: build it with EscapePathSegment", req.Path)
	}
	if len(req.Query) > 0 {
		u.RawQuery = req.Query.Encode()
	}
	return &u, nil
}

// send runs the retry loop for one credential.
func (c *Client) send(ctx context.Context, req Request, u *url.URL, tok Token) (*Response, error) {
	classify := req.Classify
	if classify == nil {
		classify = c.opts.Classify
	}
	idempotent := req.Idempotent
	switch req.Method {
	case http.MethodGet, http.MethodHead, http.MethodPut, http.MethodDelete, http.MethodOptions:
		idempotent = true
	}
	for attempt := 1; ; attempt++ {
		resp, err := c.once(ctx, req, u, tok)
		var v Verdict
		switch {
		case err == nil:
			resp.Attempts = attempt
			if v = classify(resp); !v.Retry {
				return resp, nil
			}
			if v.Reason == "" {
				v.Reason = fmt.Sprintf("HTTP %d", resp.StatusCode)
			}
			if resp.StatusCode >= 500 && !idempotent {
				return nil, newStatusError(resp, v.Reason, "not resent: the request is not idempotent")
			}
		case ctx.Err() != nil:
			return nil, fmt.Errorf("%s %s: %w", req.Method, redactURL(u), ctx.Err())
		case !retryable(err) || !idempotent:
			return nil, err
		default:
			v = Verdict{Retry: true, Reason: err.Error()}
		}
		final := func(note string) error {
			if err != nil {
				return fmt.Errorf("%w (gave up after %d attempts%s)", err, attempt, note)
			}
			return newStatusError(resp, v.Reason, note)
		}
		if attempt >= c.opts.MaxAttempts {
			return nil, final("")
		}
		delay := v.Delay
		if delay <= 0 {
			delay = c.opts.Backoff.Delay(attempt - 1)
		}
		delay = min(delay, c.opts.MaxRetryAfter)
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) < delay {
			return nil, final(fmt.Sprintf("; the next retry in %v would pass the caller's deadline", delay.Round(time.Millisecond)))
		}
		c.log.Debug().Str("method", req.Method).Str("path", u.EscapedPath()).Int("attempt", attempt).
			Dur("delay", delay).Str("reason", v.Reason).Msg("retrying")
		if err := backoff.Sleep(ctx, delay); err != nil {
			return nil, fmt.Errorf("%s %s: %w", req.Method, redactURL(u), err)
		}
	}
}

// once sends one attempt and reads the body. The concurrency slot is held
// only while the request is on the wire, never during a backoff wait.
func (c *Client) once(ctx context.Context, req Request, u *url.URL, tok Token) (*Response, error) {
	if c.limiter != nil {
		if err := c.limiter.Wait(ctx); err != nil {
			return nil, fmt.Errorf("%s %s: waiting for the rate limit (RateLimit %v/s): %w", req.Method, redactURL(u), c.opts.RateLimit, err)
		}
	}
	select {
	case c.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer func() { <-c.sem }()

	actx, cancel := context.WithTimeout(ctx, c.opts.Timeout)
	defer cancel()
	var body io.Reader
	if req.Body != nil {
		body = bytes.NewReader(req.Body)
	}
	hreq, err := http.NewRequestWithContext(actx, req.Method, u.String(), body)
	if err != nil {
		return nil, fmt.Errorf("%s %s: building the request: %w", req.Method, redactURL(u), err)
	}
	for k, vs := range req.Header {
		hreq.Header[k] = append([]string(nil), vs...)
	}
	hreq.Header.Set("User-Agent", c.opts.UserAgent)
	if hreq.Header.Get("Accept") == "" {
		hreq.Header.Set("Accept", "application/json")
	}
	if req.Body != nil && hreq.Header.Get("Content-Type") == "" {
		hreq.Header.Set("Content-Type", "application/json")
	}
	if req.Auth != nil {
		req.Auth.apply(hreq, tok)
	}

	hresp, err := c.hc.Do(hreq)
	if err != nil {
		return nil, c.transportError(ctx, actx, req.Method, u, err)
	}
	defer hresp.Body.Close()
	b, err := ReadCapped(hresp.Body, c.opts.MaxBodyBytes)
	if err != nil {
		if errors.Is(err, bridge.ErrMalformed) {
			return nil, fmt.Errorf("%s %s: %w", req.Method, redactURL(u), err)
		}
		return nil, c.transportError(ctx, actx, req.Method, u, err)
	}
	return &Response{
		StatusCode: hresp.StatusCode,
		Header:     hresp.Header,
		Body:       b,
		Method:     req.Method,
		Path:       u.EscapedPath(),
	}, nil
}

// ReadCapped reads r to the end, or fails with an error wrapping
// bridge.ErrMalformed once more than max bytes arrive.
func ReadCapped(r io.Reader, max int64) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("%w: the response body exceeds the %d-byte cap; if the vendor legitimately sends more, raise MaxBodyBytes in this instance's HTTP options", bridge.ErrMalformed, max)
	}
	return b, nil
}

// transportError rewrites a net/http error: the URL without its query (some
// vendors take tokens there), and a hint on what to do.
func (c *Client) transportError(ctx, actx context.Context, method string, u *url.URL, err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	what := method + " " + redactURL(u)
	switch {
	case ctx.Err() != nil:
		return fmt.Errorf("%s: %w", what, ctx.Err())
	case actx.Err() != nil:
		return &netError{fmt.Errorf("%s: no complete answer within %v: the vendor is slow or unreachable; check it, or raise Timeout: %w", what, c.opts.Timeout, err)}
	case isTLSVerifyError(err):
		return fmt.Errorf("%s: the server's TLS certificate is not trusted: %w; set CAFile to the PEM of the CA that signed it (or fix the host name in BaseURL)", what, err)
	}
	return &netError{fmt.Errorf("%s: %w", what, err)}
}

// netError marks a failure worth retrying: the request may not have reached
// the vendor, or its answer did not reach us.
type netError struct{ err error }

func (e *netError) Error() string { return e.err.Error() }
func (e *netError) Unwrap() error { return e.err }

func retryable(err error) bool {
	var ne *netError
	return errors.As(err, &ne)
}

// redactURL renders u without user info and query, for logs and errors.
func redactURL(u *url.URL) string {
	v := *u
	v.User, v.RawQuery, v.ForceQuery, v.Fragment = nil, "", false, ""
	return v.String()
}
