package huawei

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"
	"time"

	"github.com/jobbridge/jobbridge/bridge"
	"github.com/jobbridge/jobbridge/pollers/pollkit"
)

// Error codes the poller acts on (vendor-apis.md §4.4).
const (
	// CodeJobNotFound is ServiceStage's "job not found" (HTTP 404).
	CodeJobNotFound = "SVCSTG.00100429"
	// CodeThrottled is the API gateway's "throttling threshold reached"
	// (HTTP 429, INFERRED); Huawei advises a retry after 2–5 s.
	CodeThrottled = "APIG.0308"
)

// Default bounds of the jittered wait before resending a throttled request.
const (
	DefaultThrottleMin = 2 * time.Second
	DefaultThrottleMax = 5 * time.Second
)

// vendorError is a Huawei error body, whichever envelope carried it.
type vendorError struct {
	Code    string
	Message string
}

func (e vendorError) String() string {
	switch {
	case e.Code != "" && e.Message != "":
		return fmt.Sprintf("%s %q", e.Code, e.Message)
	case e.Code != "":
		return e.Code
	}
	return fmt.Sprintf("%q", e.Message)
}

// maxErrorText bounds a code or message taken from an error body, so a
// hostile body cannot make an error string megabytes long.
const maxErrorText = 300

// parseErrorBody reads the three error envelopes Huawei documents:
//
//	{"error_code": "...", "error_msg": "..."}            gateway (APIG), IAM, most services
//	{"error": {"code": ..., "message": "...", ...}}      IAM's Keystone-style answers (code may be a number)
//	{"errorCode": "...", "errorMessage": "...", ...}     newer ServiceStage APIs
//
// Which one /cas/jobs uses is not documented, so all are accepted; keys
// match case-insensitively. ok is false when the body is none of them.
func parseErrorBody(body []byte) (vendorError, bool) {
	b := bytes.TrimSpace(body)
	if len(b) == 0 || b[0] != '{' {
		return vendorError{}, false
	}
	var o pollkit.Object
	if json.Unmarshal(b, &o) != nil || o == nil {
		return vendorError{}, false
	}
	text := func(o pollkit.Object, key string) string {
		v, _ := o.Text(key)
		v = strings.TrimSpace(v)
		if len(v) > maxErrorText {
			v = pollkit.Snippet([]byte(v), maxErrorText)
		}
		return v
	}
	var e vendorError
	switch {
	case has(o, "error_code") || has(o, "error_msg"):
		e = vendorError{Code: text(o, "error_code"), Message: text(o, "error_msg")}
	case has(o, "errorCode") || has(o, "errorMessage"):
		e = vendorError{Code: text(o, "errorCode"), Message: text(o, "errorMessage")}
	default:
		raw, found := o.Get("error")
		var inner pollkit.Object
		if !found || json.Unmarshal(raw, &inner) != nil || inner == nil {
			return vendorError{}, false
		}
		e = vendorError{Code: text(inner, "code"), Message: text(inner, "message")}
	}
	if e.Code == "" && e.Message == "" {
		return vendorError{}, false
	}
	return e, true
}

func has(o pollkit.Object, key string) bool {
	v, ok := o.Get(key)
	return ok && string(bytes.TrimSpace(v)) != "null"
}

func (e vendorError) is(code string) bool { return strings.EqualFold(e.Code, code) }

// classifier retries what pollkit.DefaultClassify retries, plus gateway
// throttling after a jittered wait in [min, max), whatever HTTP status
// carries it; a job-not-found answer is never retried.
func classifier(minWait, maxWait time.Duration) pollkit.Classifier {
	return func(resp *pollkit.Response) pollkit.Verdict {
		if resp.StatusCode >= http.StatusBadRequest {
			if e, ok := parseErrorBody(resp.Body); ok {
				switch {
				case e.is(CodeThrottled):
					return pollkit.Verdict{Retry: true, Delay: jitter(minWait, maxWait), Reason: "throttled by the API gateway (" + CodeThrottled + ")"}
				case e.is(CodeJobNotFound):
					return pollkit.Verdict{}
				}
			}
		}
		return pollkit.DefaultClassify(resp)
	}
}

func jitter(minWait, maxWait time.Duration) time.Duration {
	if maxWait <= minWait {
		return minWait
	}
	return minWait + rand.N(maxWait-minWait)
}

// jobError turns a non-200 answer of the job endpoint into an error a user
// can act on, wrapping bridge.ErrNotFound, ErrAuth or ErrMalformed where
// they apply; anything else stays transient.
func jobError(resp *pollkit.Response, instance, jobID string) error {
	e, hasEnv := parseErrorBody(resp.Body)
	what := fmt.Sprintf("ServiceStage %s answered HTTP %d", instance, resp.StatusCode)
	if hasEnv {
		what += " " + e.String()
	}
	switch code := resp.StatusCode; {
	case hasEnv && e.is(CodeJobNotFound):
		return fmt.Errorf("%w: %s for job %q (it never existed in this project, or it was deleted)", bridge.ErrNotFound, what, jobID)
	case code == http.StatusForbidden:
		return fmt.Errorf("%w: %s for job %q: the IAM user may not read ServiceStage jobs in this project; grant it ServiceStage read access (e.g. ServiceStage ReadOnlyAccess) and check that projectID is the project the token is scoped to",
			bridge.ErrAuth, what, jobID)
	case code == http.StatusNotFound:
		// Without the job-not-found code a 404 is the gateway's "no such
		// API": a wrong URL, apiVersion or projectID, not a vanished job.
		return fmt.Errorf("%w: %s for job %q without the job-not-found code %s: check url (the ServiceStage endpoint of the region), apiVersion (v2 or v3) and projectID",
			bridge.ErrMalformed, what, jobID, CodeJobNotFound)
	case code == http.StatusBadRequest, code == http.StatusMethodNotAllowed, code == http.StatusNotAcceptable,
		code == http.StatusRequestEntityTooLarge, code == http.StatusRequestURITooLong,
		code == http.StatusUnsupportedMediaType, code == http.StatusUnprocessableEntity:
		// No retry changes these: the request itself is refused.
		return fmt.Errorf("%w: %s for job %q: the request was refused; check the job id, taskPageSize and apiVersion",
			bridge.ErrMalformed, what, jobID)
	}
	return fmt.Errorf("job %q: %w", jobID, pollkit.UnexpectedStatus(resp))
}
