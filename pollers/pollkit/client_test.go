package pollkit

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	stdlog "log"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jobbridge/jobbridge/bridge"
	"github.com/jobbridge/jobbridge/bridge/backoff"
)

// fastBackoff keeps retry tests quick without turning backoff off.
var fastBackoff = backoff.Policy{Initial: time.Millisecond, Max: 5 * time.Millisecond}

func newClient(t *testing.T, opts ClientOptions) *Client {
	t.Helper()
	if opts.Backoff == (backoff.Policy{}) {
		opts.Backoff = fastBackoff
	}
	c, err := NewClient(opts)
	if err != nil {
		t.Fatalf("NewClient: %v", err)
	}
	t.Cleanup(c.CloseIdleConnections)
	return c
}

// scripted answers request n (from 1) with handlers[n-1], the last handler
// repeating, and counts requests.
func scripted(t *testing.T, handlers ...http.HandlerFunc) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		i := int(n.Add(1)) - 1
		handlers[min(i, len(handlers)-1)](w, r)
	}))
	t.Cleanup(srv.Close)
	return srv, &n
}

func status(code int, body string) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(code)
		fmt.Fprint(w, body)
	}
}

func TestRetriesServerErrorsThenSucceeds(t *testing.T) {
	srv, hits := scripted(t, status(500, "boom"), status(502, ""), status(200, `{"ok":true}`))
	c := newClient(t, ClientOptions{BaseURL: srv.URL})
	resp, err := c.Do(context.Background(), Request{Path: "/x"})
	if err != nil {
		t.Fatalf("Do: %v", err)
	}
	if resp.StatusCode != 200 || string(resp.Body) != `{"ok":true}` || resp.Attempts != 3 || hits.Load() != 3 {
		t.Fatalf("got status %d body %q attempts %d hits %d; want 200 after 3 attempts", resp.StatusCode, resp.Body, resp.Attempts, hits.Load())
	}
}

func TestGivesUpAfterMaxAttempts(t *testing.T) {
	srv, hits := scripted(t, status(503, "down for maintenance"))
	c := newClient(t, ClientOptions{BaseURL: srv.URL, MaxAttempts: 3})
	_, err := c.Do(context.Background(), Request{Path: "/x"})
	var se *StatusError
	if !errors.As(err, &se) || se.StatusCode != 503 || se.Attempts != 3 {
		t.Fatalf("err = %v, want a *StatusError 503 after 3 attempts", err)
	}
	if hits.Load() != 3 {
		t.Fatalf("server saw %d requests, want 3", hits.Load())
	}
	for _, want := range []string{"after 3 attempts", "server error", "down for maintenance"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}

func TestNoRetryOnClientErrors(t *testing.T) {
	for _, code := range []int{400, 401, 403, 404, 501} {
		srv, hits := scripted(t, status(code, "no"))
		c := newClient(t, ClientOptions{BaseURL: srv.URL})
		resp, err := c.Do(context.Background(), Request{Path: "/x"})
		if err != nil || resp.StatusCode != code || hits.Load() != 1 {
			t.Errorf("HTTP %d: resp %v err %v hits %d; want the response once, no error", code, resp, err, hits.Load())
		}
	}
}

func TestRetryAfterSecondsIsHonoured(t *testing.T) {
	srv, hits := scripted(t, func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Retry-After", "1")
		w.WriteHeader(http.StatusTooManyRequests)
	}, status(200, "{}"))
	c := newClient(t, ClientOptions{BaseURL: srv.URL})
	start := time.Now()
	if _, err := c.Do(context.Background(), Request{Path: "/x"}); err != nil {
		t.Fatalf("Do: %v", err)
	}
	if el := time.Since(start); el < 900*time.Millisecond {
		t.Fatalf("retried after %v; Retry-After asked for 1s", el)
	}
	if hits.Load() != 2 {
		t.Fatalf("hits = %d, want 2", hits.Load())
	}
}

func TestRetryAfterIsCapped(t *testing.T) {
	srv, _ := scripted(t, func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Retry-After", "3600")
		w.WriteHeader(http.StatusServiceUnavailable)
	}, status(200, "{}"))
	c := newClient(t, ClientOptions{BaseURL: srv.URL, MaxRetryAfter: 50 * time.Millisecond})
	start := time.Now()
	if _, err := c.Do(context.Background(), Request{Path: "/x"}); err != nil {
		t.Fatalf("Do: %v", err)
	}
	if el := time.Since(start); el < 50*time.Millisecond || el > 5*time.Second {
		t.Fatalf("waited %v; want the 50ms cap", el)
	}
}

func TestRetryAfterParsing(t *testing.T) {
	now := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	cases := []struct {
		v    string
		want time.Duration
		ok   bool
	}{
		{"7", 7 * time.Second, true},
		{" 0 ", 0, true},
		{now.Add(30 * time.Second).Format(http.TimeFormat), 30 * time.Second, true},
		{"Sat, 01 Mar 2025 11:00:00 GMT", 0, true}, // in the past: retry now
		{"Saturday, 01-Mar-25 12:00:10 GMT", 10 * time.Second, true},
		{"-5", 0, false},
		{"soon", 0, false},
		{"", 0, false},
		{"99999999999999999999", 0, false},
		{"9223372036", 9223372036 * time.Second, true},
	}
	for _, c := range cases {
		h := http.Header{}
		if c.v != "" {
			h.Set("Retry-After", c.v)
		}
		got, ok := RetryAfter(h, now)
		if got != c.want || ok != c.ok {
			t.Errorf("RetryAfter(%q) = %v, %v; want %v, %v", c.v, got, ok, c.want, c.ok)
		}
	}
}

func TestPostIsResentOnlyWhenIdempotent(t *testing.T) {
	srv, hits := scripted(t, status(500, ""), status(200, "{}"))
	c := newClient(t, ClientOptions{BaseURL: srv.URL})
	_, err := c.Do(context.Background(), Request{Method: http.MethodPost, Path: "/execute", Body: []byte(`{}`)})
	if err == nil || !strings.Contains(err.Error(), "not idempotent") || hits.Load() != 1 {
		t.Fatalf("non-idempotent POST: err %v hits %d; want one attempt and an error saying why", err, hits.Load())
	}

	srv, hits = scripted(t, status(500, ""), status(200, "{}"))
	c = newClient(t, ClientOptions{BaseURL: srv.URL})
	if _, err := c.Do(context.Background(), Request{Method: http.MethodPost, Path: "/login", Body: []byte(`{}`), Idempotent: true}); err != nil || hits.Load() != 2 {
		t.Fatalf("idempotent POST: err %v hits %d; want success on the second attempt", err, hits.Load())
	}

	// A 429 means the work was not done, so even a plain POST is resent.
	srv, hits = scripted(t, status(429, ""), status(200, "{}"))
	c = newClient(t, ClientOptions{BaseURL: srv.URL})
	if _, err := c.Do(context.Background(), Request{Method: http.MethodPost, Path: "/execute"}); err != nil || hits.Load() != 2 {
		t.Fatalf("POST after 429: err %v hits %d; want success on the second attempt", err, hits.Load())
	}
}

func TestNetworkErrorIsRetried(t *testing.T) {
	srv, hits := scripted(t, func(w http.ResponseWriter, _ *http.Request) {
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			conn.Close() // drop the connection without an answer
		}
	}, status(200, "{}"))
	c := newClient(t, ClientOptions{BaseURL: srv.URL})
	resp, err := c.Do(context.Background(), Request{Path: "/x"})
	if err != nil || resp.Attempts != 2 || hits.Load() != 2 {
		t.Fatalf("err %v resp %+v hits %d; want success on the second attempt", err, resp, hits.Load())
	}
}

func TestTimeoutIsRetriedAndExplained(t *testing.T) {
	slow := func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(5 * time.Second):
		}
	}
	srv, hits := scripted(t, slow, status(200, "{}"))
	c := newClient(t, ClientOptions{BaseURL: srv.URL, Timeout: 50 * time.Millisecond})
	if _, err := c.Do(context.Background(), Request{Path: "/x"}); err != nil || hits.Load() != 2 {
		t.Fatalf("err %v hits %d; want success after one timeout", err, hits.Load())
	}

	srv, _ = scripted(t, slow)
	c = newClient(t, ClientOptions{BaseURL: srv.URL, Timeout: 30 * time.Millisecond, MaxAttempts: 2})
	_, err := c.Do(context.Background(), Request{Path: "/x"})
	if err == nil || !strings.Contains(err.Error(), "raise Timeout") || !strings.Contains(err.Error(), "2 attempts") {
		t.Fatalf("err = %v; want a timeout error naming the Timeout option after 2 attempts", err)
	}
}

func TestBodyCap(t *testing.T) {
	srv, hits := scripted(t, func(w http.ResponseWriter, r *http.Request) {
		n := 1000
		if r.URL.Path == "/big" {
			n = 1001
		}
		fmt.Fprint(w, strings.Repeat("x", n))
	})
	c := newClient(t, ClientOptions{BaseURL: srv.URL, MaxBodyBytes: 1000})
	if resp, err := c.Do(context.Background(), Request{Path: "/exact"}); err != nil || len(resp.Body) != 1000 {
		t.Fatalf("body at the cap: err %v; want it accepted", err)
	}
	hits.Store(0)
	_, err := c.Do(context.Background(), Request{Path: "/big"})
	if !errors.Is(err, bridge.ErrMalformed) {
		t.Fatalf("err = %v, want bridge.ErrMalformed", err)
	}
	if !strings.Contains(err.Error(), "1000-byte cap") || !strings.Contains(err.Error(), "MaxBodyBytes") {
		t.Fatalf("error %q does not give the cap and the option to raise it", err)
	}
	if hits.Load() != 1 {
		t.Fatalf("an oversized body was fetched %d times; a retry cannot make it smaller", hits.Load())
	}
}

func TestCancelDuringBackoff(t *testing.T) {
	srv, _ := scripted(t, status(500, ""))
	c := newClient(t, ClientOptions{BaseURL: srv.URL, Backoff: backoff.Policy{Initial: time.Minute, Max: time.Minute}})
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	start := time.Now()
	_, err := c.Do(ctx, Request{Path: "/x"})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Fatalf("Do returned %v after cancel", el)
	}
}

func TestNoRetryPastTheDeadline(t *testing.T) {
	srv, hits := scripted(t, func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Retry-After", "30")
		w.WriteHeader(503)
	})
	c := newClient(t, ClientOptions{BaseURL: srv.URL})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	start := time.Now()
	_, err := c.Do(ctx, Request{Path: "/x"})
	var se *StatusError
	if !errors.As(err, &se) || !strings.Contains(err.Error(), "deadline") {
		t.Fatalf("err = %v; want the 503 with a note about the deadline", err)
	}
	if el := time.Since(start); el > time.Second || hits.Load() != 1 {
		t.Fatalf("took %v and %d requests; want an immediate answer", el, hits.Load())
	}
}

func TestClassifierRetries200(t *testing.T) {
	srv, hits := scripted(t,
		status(200, `{"error_code":"APIG.0308","error_msg":"The throttling threshold has been reached"}`),
		status(200, `{"job":{}}`))
	throttled := func(r *Response) Verdict {
		if strings.Contains(string(r.Body), "APIG.0308") {
			return Verdict{Retry: true, Delay: 20 * time.Millisecond, Reason: "throttled: APIG.0308"}
		}
		return DefaultClassify(r)
	}
	c := newClient(t, ClientOptions{BaseURL: srv.URL, Classify: throttled})
	start := time.Now()
	resp, err := c.Do(context.Background(), Request{Path: "/x"})
	if err != nil || string(resp.Body) != `{"job":{}}` || hits.Load() != 2 {
		t.Fatalf("err %v hits %d; want the second answer", err, hits.Load())
	}
	if el := time.Since(start); el < 20*time.Millisecond {
		t.Fatalf("retried after %v; the classifier asked for 20ms", el)
	}

	// Out of attempts, the classifier's reason reaches the error.
	srv, _ = scripted(t, status(200, `{"error_code":"APIG.0308"}`))
	c = newClient(t, ClientOptions{BaseURL: srv.URL, Classify: throttled, MaxAttempts: 2})
	if _, err := c.Do(context.Background(), Request{Path: "/x"}); err == nil || !strings.Contains(err.Error(), "APIG.0308") {
		t.Fatalf("err = %v; want the classifier's reason", err)
	}
}

func TestConcurrencyLimit(t *testing.T) {
	var inFlight, peak atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		n := inFlight.Add(1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		time.Sleep(20 * time.Millisecond)
		inFlight.Add(-1)
	}))
	defer srv.Close()
	c := newClient(t, ClientOptions{BaseURL: srv.URL, MaxConcurrent: 2})
	var wg sync.WaitGroup
	for range 12 {
		wg.Go(func() {
			if _, err := c.Do(context.Background(), Request{Path: "/x"}); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if p := peak.Load(); p != 2 {
		t.Fatalf("peak requests in flight = %d, want exactly MaxConcurrent 2", p)
	}
}

func TestRateLimit(t *testing.T) {
	srv, hits := scripted(t, status(200, "{}"))
	c := newClient(t, ClientOptions{BaseURL: srv.URL, RateLimit: 20})
	start := time.Now()
	for range 6 {
		if _, err := c.Do(context.Background(), Request{Path: "/x"}); err != nil {
			t.Fatal(err)
		}
	}
	// Burst 1 at 20/s: the first request is free, the next five wait 50ms each.
	if el := time.Since(start); el < 230*time.Millisecond {
		t.Fatalf("6 requests at 20/s took %v, want >= 250ms", el)
	}
	if hits.Load() != 6 {
		t.Fatalf("hits = %d", hits.Load())
	}
	if _, err := NewClient(ClientOptions{BaseURL: srv.URL, RateLimit: -1}); err == nil {
		t.Fatal("a negative RateLimit was accepted")
	}
}

func tlsServer(t *testing.T, pki *testPKI, clientAuth tls.ClientAuthType) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var hits atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		hits.Add(1)
		fmt.Fprint(w, `{"ok":true}`)
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{pki.server}, ClientAuth: clientAuth, ClientCAs: pki.caPool}
	srv.Config.ErrorLog = stdlog.New(io.Discard, "", 0) // handshake failures are what these tests provoke
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv, &hits
}

func TestTLSWithCustomCAFile(t *testing.T) {
	pki := newTestPKI(t)
	srv, _ := tlsServer(t, pki, tls.NoClientCert)

	c := newClient(t, ClientOptions{BaseURL: srv.URL, CAFile: pki.caFile})
	if resp, err := c.Do(context.Background(), Request{Path: "/x"}); err != nil || resp.StatusCode != 200 {
		t.Fatalf("with CAFile: err %v", err)
	}

	c = newClient(t, ClientOptions{BaseURL: srv.URL})
	start := time.Now()
	resp, err := c.Do(context.Background(), Request{Path: "/x"})
	if err == nil {
		t.Fatalf("without CAFile the untrusted server answered %d", resp.StatusCode)
	}
	if !strings.Contains(err.Error(), "CAFile") || !strings.Contains(err.Error(), "not trusted") {
		t.Fatalf("error %q should say the certificate is not trusted and name CAFile", err)
	}
	if el := time.Since(start); el > 2*time.Second {
		t.Fatalf("an untrusted certificate was retried for %v; no retry can fix it", el)
	}
}

func TestCAFileWithoutCertificate(t *testing.T) {
	f := t.TempDir() + "/empty.pem"
	if err := writeFile(f, "not a certificate"); err != nil {
		t.Fatal(err)
	}
	_, err := NewClient(ClientOptions{BaseURL: "https://example.invalid", CAFile: f})
	if err == nil || !strings.Contains(err.Error(), "no PEM certificate") {
		t.Fatalf("err = %v, want a complaint about the CA file", err)
	}
}

func TestClientCertificate(t *testing.T) {
	pki := newTestPKI(t)
	srv, hits := tlsServer(t, pki, tls.RequireAndVerifyClientCert)

	c := newClient(t, ClientOptions{BaseURL: srv.URL, CAFile: pki.caFile, CertFile: pki.clientCert, KeyFile: pki.clientKey})
	if _, err := c.Do(context.Background(), Request{Path: "/x"}); err != nil {
		t.Fatalf("with a client certificate: %v", err)
	}
	c = newClient(t, ClientOptions{BaseURL: srv.URL, CAFile: pki.caFile, MaxAttempts: 1})
	if _, err := c.Do(context.Background(), Request{Path: "/x"}); err == nil {
		t.Fatal("the server demanding a client certificate answered without one")
	}
	if hits.Load() != 1 {
		t.Fatalf("handler ran %d times, want once (only with the certificate)", hits.Load())
	}
	if _, err := NewClient(ClientOptions{BaseURL: srv.URL, CertFile: pki.clientCert}); err == nil {
		t.Fatal("CertFile without KeyFile was accepted")
	}
}

func TestInsecureSkipVerifyWarnsOnce(t *testing.T) {
	pki := newTestPKI(t)
	srv, _ := tlsServer(t, pki, tls.NoClientCert)

	log, buf := captureLogger()
	c := newClient(t, ClientOptions{BaseURL: srv.URL, InsecureSkipVerify: true, Logger: log})
	for range 3 {
		if _, err := c.Do(context.Background(), Request{Path: "/x"}); err != nil {
			t.Fatalf("InsecureSkipVerify against an untrusted server: %v", err)
		}
	}
	out := buf.String()
	if n := strings.Count(out, "InsecureSkipVerify"); n != 1 {
		t.Fatalf("log mentions InsecureSkipVerify %d times, want once at construction:\n%s", n, out)
	}
	if !strings.Contains(out, `"level":"warn"`) || !strings.Contains(out, "VERIFICATION IS OFF") {
		t.Fatalf("no loud warning in:\n%s", out)
	}

	log, buf = captureLogger()
	newClient(t, ClientOptions{BaseURL: srv.URL, Logger: log})
	if strings.Contains(buf.String(), "VERIFICATION IS OFF") {
		t.Fatalf("warning logged without InsecureSkipVerify:\n%s", buf.String())
	}
}

func TestRedirectIsNotFollowed(t *testing.T) {
	var leaked atomic.Bool
	other := httptest.NewServer(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		leaked.Store(r.Header.Get("Authentication-Token") != "")
	}))
	defer other.Close()
	srv, _ := scripted(t, func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, other.URL+"/sso/login", http.StatusFound)
	})
	c := newClient(t, ClientOptions{BaseURL: srv.URL})
	resp, err := c.Do(context.Background(), Request{Path: "/x", Header: http.Header{"Authentication-Token": {"tok"}}})
	if err != nil || resp.StatusCode != http.StatusFound {
		t.Fatalf("resp %v err %v; want the 302 itself", resp, err)
	}
	if leaked.Load() {
		t.Fatal("the auth header followed the redirect to another host")
	}
	if msg := UnexpectedStatus(resp).Error(); !strings.Contains(msg, "/sso/login") || !strings.Contains(msg, "BaseURL") {
		t.Fatalf("UnexpectedStatus = %q; want the Location and a hint about BaseURL", msg)
	}
}

func TestQueryStringNeverInErrorsOrLogs(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	addr := srv.URL
	srv.Close() // connection refused from now on

	log, buf := captureLogger()
	c := newClient(t, ClientOptions{BaseURL: addr, Logger: log, MaxAttempts: 2})
	_, err := c.Do(context.Background(), Request{Path: "/x", Query: url.Values{"token": {"SUPERSECRET"}}})
	if err == nil {
		t.Fatal("request to a closed port succeeded")
	}
	if strings.Contains(err.Error(), "SUPERSECRET") || strings.Contains(buf.String(), "SUPERSECRET") {
		t.Fatalf("the query string leaked:\nerr: %v\nlog: %s", err, buf.String())
	}
	if !strings.Contains(buf.String(), "retrying") {
		t.Fatalf("the refused connection was not retried; log:\n%s", buf.String())
	}
}

func TestPathEscapingRoundTrips(t *testing.T) {
	got := make(chan string, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		raw := strings.TrimSuffix(strings.TrimPrefix(r.URL.EscapedPath(), "/base/job/"), "/status")
		id, err := url.PathUnescape(raw)
		if err != nil || strings.Contains(raw, "/") {
			id = "BAD ESCAPING: " + r.URL.EscapedPath()
		}
		got <- id
	}))
	defer srv.Close()
	c := newClient(t, ClientOptions{BaseURL: srv.URL + "/base/"})
	for _, id := range []string{"a/b", "q?x=1", "frag#1", "with space", "100%", "ünïcødé", "semi;colon", "..", ".", "a+b&c=d", "日本語", "~_-."} {
		if _, err := c.Do(context.Background(), Request{Path: "/job/" + EscapePathSegment(id) + "/status"}); err != nil {
			t.Fatalf("%q: %v", id, err)
		}
		if g := <-got; g != id {
			t.Errorf("sent %q, server decoded %q", id, g)
		}
	}
	if _, err := c.Do(context.Background(), Request{Path: "no-slash"}); err == nil {
		t.Error("a path without a leading '/' was accepted")
	}
	if _, err := c.Do(context.Background(), Request{Path: "/bad%zz"}); err == nil {
		t.Error("a badly escaped path was accepted")
	}
}

func TestBaseURLValidation(t *testing.T) {
	for _, u := range []string{"", "tso.example.com/baocdp", "ftp://host/x", "https://user:pw@host/x", "https://host/x?token=1", "://", "https://user:pw@host/%zz"} {
		if _, err := NewClient(ClientOptions{BaseURL: u}); err == nil {
			t.Errorf("BaseURL %q was accepted", u)
		} else if strings.Contains(err.Error(), "pw@") {
			t.Errorf("error for %q repeats the password: %v", u, err)
		}
	}
}

func TestPlainHTTPWarns(t *testing.T) {
	log, buf := captureLogger()
	newClient(t, ClientOptions{BaseURL: "http://127.0.0.1:1/x", Logger: log})
	if !strings.Contains(buf.String(), "plain http") {
		t.Fatalf("no warning about plain http:\n%s", buf.String())
	}
}
