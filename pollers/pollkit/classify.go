package pollkit

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode"
)

// Verdict is a Classifier's decision about one response.
type Verdict struct {
	// Retry asks for the request to be sent again (within MaxAttempts).
	Retry bool
	// Delay is the wait before the retry; zero means the Client's backoff
	// policy. It is capped by MaxRetryAfter.
	Delay time.Duration
	// Reason says why, for logs and for the error if retries run out
	// ("throttled: APIG.0308").
	Reason string
}

// Classifier decides whether a response is retried. A vendor whose errors
// come inside HTTP 200 (ArcGIS) or whose gateway throttles with its own code
// (Huawei APIG.0308) wraps DefaultClassify:
//
//	func(r *pollkit.Response) pollkit.Verdict {
//		if throttled(r.Body) {
//			return pollkit.Verdict{Retry: true, Delay: 2*time.Second + rand.N(3*time.Second), Reason: "APIG.0308"}
//		}
//		return pollkit.DefaultClassify(r)
//	}
//
// The response body is complete (and capped) when the Classifier sees it.
type Classifier func(resp *Response) Verdict

// DefaultClassify retries 408, 429 and 5xx except 501 and 505 (which no
// retry will change), waiting for Retry-After when the vendor sends one.
func DefaultClassify(resp *Response) Verdict {
	code := resp.StatusCode
	if code != http.StatusRequestTimeout && code != http.StatusTooManyRequests &&
		(code < 500 || code == http.StatusNotImplemented || code == http.StatusHTTPVersionNotSupported) {
		return Verdict{}
	}
	v := Verdict{Retry: true, Reason: fmt.Sprintf("HTTP %d", code)}
	if d, ok := RetryAfter(resp.Header, time.Now()); ok {
		v.Delay = d
		v.Reason += " with Retry-After " + resp.Header.Get("Retry-After")
	}
	return v
}

// RetryAfter reads a Retry-After header, either delay-seconds or an HTTP
// date, as a wait from now. A date in the past gives 0 and true.
func RetryAfter(h http.Header, now time.Time) (time.Duration, bool) {
	v := strings.TrimSpace(h.Get("Retry-After"))
	if v == "" {
		return 0, false
	}
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		if n < 0 {
			return 0, false
		}
		// Clamp before multiplying: a huge value would overflow Duration.
		const maxSeconds = int64(1<<63-1) / int64(time.Second)
		return time.Duration(min(n, maxSeconds)) * time.Second, true
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return 0, false
	}
	return max(t.Sub(now), 0), true
}

// StatusError is an HTTP status the vendor code could not use: either a
// retryable one that outlived the retries, or one passed to UnexpectedStatus.
type StatusError struct {
	Method, Path string
	StatusCode   int
	Attempts     int
	// Reason is the Classifier's, for a retried status.
	Reason string
	// Snippet is the start of the body, printable characters only.
	Snippet string
	// Note adds context ("not resent: the request is not idempotent").
	Note string
	// Location is the redirect target of a 3xx.
	Location string
}

func (e *StatusError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s: HTTP %d", e.Method, e.Path, e.StatusCode)
	if e.Reason != "" && e.Reason != fmt.Sprintf("HTTP %d", e.StatusCode) {
		fmt.Fprintf(&b, " (%s)", e.Reason)
	}
	if e.Attempts > 1 {
		fmt.Fprintf(&b, " after %d attempts", e.Attempts)
	}
	if e.Note != "" {
		b.WriteString("; " + e.Note)
	}
	switch c := e.StatusCode; {
	case c >= 300 && c < 400:
		fmt.Fprintf(&b, ": the vendor redirects to %q; check BaseURL (an SSO or proxy login page is a common cause)", e.Location)
	case c == http.StatusTooManyRequests:
		b.WriteString(": the vendor is throttling; lower RateLimit or MaxConcurrent, or poll less often")
	case c >= 500:
		b.WriteString(": the vendor reports a server error; check its health and logs")
	case c == http.StatusUnauthorized || c == http.StatusForbidden:
		b.WriteString(": access refused; check the credentials and the account's permissions")
	case c >= 400:
		b.WriteString(": the vendor refused the request; check BaseURL and the job id")
	}
	if e.Snippet != "" {
		fmt.Fprintf(&b, " (body: %q)", e.Snippet)
	}
	return b.String()
}

// UnexpectedStatus describes a response the vendor code has no rule for.
func UnexpectedStatus(resp *Response) error {
	return newStatusError(resp, "", "")
}

func newStatusError(resp *Response, reason, note string) *StatusError {
	return &StatusError{
		Method:     resp.Method,
		Path:       resp.Path,
		StatusCode: resp.StatusCode,
		Attempts:   resp.Attempts,
		Reason:     reason,
		Note:       note,
		Snippet:    Snippet(resp.Body, 200),
		Location:   resp.Header.Get("Location"),
	}
}

// Snippet returns up to max bytes of b as printable text with runs of white
// space collapsed, for error messages about bodies nobody could parse.
func Snippet(b []byte, max int) string {
	var out strings.Builder
	space := false
	for _, r := range string(b) {
		if out.Len() >= max {
			out.WriteString("…")
			break
		}
		switch {
		case unicode.IsSpace(r):
			space = out.Len() > 0
			continue
		case !unicode.IsPrint(r):
			r = '?'
		}
		if space {
			out.WriteByte(' ')
			space = false
		}
		out.WriteRune(r)
	}
	return out.String()
}
