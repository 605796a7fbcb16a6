package pollkit

import (
	"bytes"
	"context"
	"crypto/tls"
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
	// RawQuery, when set, is the query already encoded, and Query is
	// ignored: a poller that sends the same query on every poll builds it
	// once instead of encoding a url.Values per request. It is never logged.
	RawQuery string
	// Header is sent as given; Accept defaults to application/json, and
	// Content-Type to application/json when there is a Body. The Client
	// never modifies it, so one Header may serve every request.
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
	// Body is a slice allocated for this response alone, which nothing in
	// pollkit keeps or modifies after Do returns: the caller owns it, and a
	// parser may keep it (as Observation.Raw, say) without a copy.
	Body []byte
	// Method and Path repeat the request, for messages.
	Method, Path string
	// Attempts is how many times the request was sent.
	Attempts int
}

// Client is an HTTP client for one vendor instance. It is safe for
// concurrent use.
type Client struct {
	base     *url.URL
	basePath string // base.EscapedPath(), computed once
	host     string // the Host header, as http.NewRequest derives it
	rt       http.RoundTripper
	tr       *http.Transport
	opts     ClientOptions
	sem      chan struct{}
	limiter  *rate.Limiter
	log      zerolog.Logger

	// Header values every request carries, built once: a RoundTripper
	// must not modify a request, so requests can share them.
	userAgent, acceptJSON, contentJSON []string
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
		base:     base,
		basePath: base.EscapedPath(),
		host:     removeEmptyPort(base.Host),
		// Requests go straight to the transport, not through an
		// http.Client: redirects are not followed (a custom auth header
		// would go along to wherever the Location points, and a redirect
		// is usually an SSO login page the user should hear about), the
		// per-attempt timeout is a context, and there is no cookie jar, so
		// an http.Client would only add a copy of every request's headers.
		rt:          rt,
		tr:          tr,
		opts:        opts,
		sem:         make(chan struct{}, opts.MaxConcurrent),
		log:         log,
		userAgent:   []string{opts.UserAgent},
		acceptJSON:  []string{"application/json"},
		contentJSON: []string{"application/json"},
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
func (c *Client) CloseIdleConnections() { c.tr.CloseIdleConnections() }

// removeEmptyPort drops the colon of a host with an empty port
// ("host:"), as http.NewRequest does for the Host header.
func removeEmptyPort(host string) string {
	if strings.LastIndex(host, ":") > strings.LastIndex(host, "]") {
		return strings.TrimSuffix(host, ":")
	}
	return host
}

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
	raw := c.basePath + req.Path
	p, err := url.PathUnescape(raw)
	if err != nil {
		return nil, fmt.Errorf("request path %q is not validly escaped: build it with EscapePathSegment: %w", req.Path, err)
	}
	u := *c.base
	u.Path, u.RawPath = p, raw
	if u.EscapedPath() != raw {
		return nil, fmt.Errorf("request path %q is not validly escaped: build it with EscapePathSegment", req.Path)
	}
	switch {
	case req.RawQuery != "":
		u.RawQuery = req.RawQuery
	case len(req.Query) > 0:
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
	// The request is built here rather than by http.NewRequest, which would
	// parse the resolved URL again from its string.
	hreq := (&http.Request{
		Method:     req.Method,
		URL:        u,
		Proto:      "HTTP/1.1",
		ProtoMajor: 1,
		ProtoMinor: 1,
		Host:       c.host,
	}).WithContext(actx)
	if req.Body != nil {
		// As http.NewRequest sets up a bytes.Reader body: known length, and
		// GetBody for the transport's own retry on a dead connection.
		hreq.ContentLength = int64(len(req.Body))
		hreq.Body, hreq.GetBody = http.NoBody, func() (io.ReadCloser, error) { return http.NoBody, nil }
		if len(req.Body) > 0 {
			hreq.Body = io.NopCloser(bytes.NewReader(req.Body))
			hreq.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(req.Body)), nil }
		}
	}
	h := make(http.Header, len(req.Header)+4)
	for k, vs := range req.Header {
		h[k] = vs
	}
	h["User-Agent"] = c.userAgent
	if vs := h["Accept"]; len(vs) == 0 || vs[0] == "" {
		h["Accept"] = c.acceptJSON
	}
	if vs := h["Content-Type"]; req.Body != nil && (len(vs) == 0 || vs[0] == "") {
		h["Content-Type"] = c.contentJSON
	}
	hreq.Header = h
	if req.Auth != nil {
		req.Auth.apply(hreq, tok)
	}

	hresp, err := c.roundTrip(hreq)
	if err != nil {
		return nil, c.transportError(ctx, actx, req.Method, u, err)
	}
	defer hresp.Body.Close()
	b, err := readCapped(hresp.Body, hresp.ContentLength, c.opts.MaxBodyBytes)
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
		Path:       u.RawPath, // resolve checked it is u.EscapedPath()
	}, nil
}

// roundTrip sends one request to the transport, with the checks and the
// hint http.Client would add.
func (c *Client) roundTrip(req *http.Request) (*http.Response, error) {
	resp, err := c.rt.RoundTrip(req)
	if err != nil {
		if resp != nil && resp.Body != nil {
			resp.Body.Close()
		}
		if re, ok := err.(tls.RecordHeaderError); ok && string(re.RecordHeader[:]) == "HTTP/" {
			return nil, http.ErrSchemeMismatch
		}
		return nil, err
	}
	if resp == nil {
		return nil, fmt.Errorf("http: RoundTripper implementation (%T) returned a nil *Response with a nil error", c.rt)
	}
	if resp.Body == nil {
		resp.Body = http.NoBody
	}
	return resp, nil
}

// ReadCapped reads r to the end, or fails with an error wrapping
// bridge.ErrMalformed once more than max bytes arrive.
func ReadCapped(r io.Reader, max int64) ([]byte, error) { return readCapped(r, -1, max) }

// readCapped is ReadCapped for a body whose length is announced: size, or -1
// when unknown. A known size within the cap is read into a slice of exactly
// that size, without the growing and copying of io.ReadAll.
func readCapped(r io.Reader, size, max int64) ([]byte, error) {
	if size >= 0 && size <= max {
		// One byte of spare capacity lets the end be checked without
		// another allocation: a body longer than announced still hits the
		// cap below, like one of unknown length.
		b := make([]byte, size, size+1)
		if _, err := io.ReadFull(r, b); err != nil {
			return nil, err
		}
		switch n, err := io.ReadFull(r, b[size:size+1]); {
		case n == 0 && err == io.EOF:
			return b, nil
		case n == 0:
			return nil, err
		}
		// More than announced: read the rest as a body of unknown length.
		rest, err := readCapped(r, -1, max-size-1)
		if err != nil {
			return nil, capError(err, max)
		}
		return append(b[:size+1], rest...), nil
	}
	b, err := io.ReadAll(io.LimitReader(r, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > max {
		return nil, capError(nil, max)
	}
	return b, nil
}

// capError is the error for a body over the cap; err, when not nil, is
// returned as it is unless it is the cap error of a nested read.
func capError(err error, max int64) error {
	if err != nil && !errors.Is(err, bridge.ErrMalformed) {
		return err
	}
	return fmt.Errorf("%w: the response body exceeds the %d-byte cap; if the vendor legitimately sends more, raise MaxBodyBytes in this instance's HTTP options", bridge.ErrMalformed, max)
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
