package arcgis

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

	"github.com/jobbridge/jobbridge/bridge"
	"github.com/jobbridge/jobbridge/pollers/pollkit"
)

// ArcGIS error codes that change what the poller does. They arrive inside
// the body, usually with HTTP 200 (vendor-apis.md §3.5).
const (
	codeForbidden     = 403
	codeNotFound      = 404
	codeInvalidToken  = 498
	codeTokenRequired = 499
)

// Error is an ArcGIS error answer. It comes in two shapes: the REST API's
// {"error":{"code":498,"message":"Invalid Token","details":[]}} (Mission,
// geoprocessing, generateToken) and the Server Administrator API's standard
// operation response {"status":"error","messages":["..."],"code":499}
// (admin jobs). Both usually come with HTTP 200, so every body is checked.
type Error struct {
	// Code is the vendor's code (498, 499, 403, 404, 500, ...); 0 when the
	// answer carries none.
	Code int
	// Message is the REST message, or the first admin message.
	Message string
	// Details are the REST details, or the remaining admin messages.
	Details []string
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("ArcGIS error")
	if e.Code != 0 {
		fmt.Fprintf(&b, " %d", e.Code)
	}
	if e.Message != "" {
		b.WriteString(": " + e.Message)
	}
	if len(e.Details) > 0 {
		b.WriteString(" (" + strings.Join(e.Details, "; ") + ")")
	}
	return b.String()
}

// Limits on what an error message may carry into logs and errors: the body
// is the vendor's, and an error page can be large.
const (
	maxErrorText    = 300
	maxErrorDetails = 5
)

// parseError reports whether body is an ArcGIS error answer and returns it.
// A body that is not a JSON object, or a JSON object of another kind (a job),
// gives nil: deciding whether it is a usable job payload is the job parser's
// business.
func parseError(body []byte) *Error {
	trimmed := bytes.TrimSpace(body)
	// Cheap pre-check without a copy: both shapes spell "error" (in some
	// case) somewhere, and most job payloads do not.
	if len(trimmed) == 0 || trimmed[0] != '{' || !bytes.Contains(trimmed, []byte("rror")) && !bytes.Contains(trimmed, []byte("RROR")) {
		return nil
	}
	var o pollkit.Object
	if json.Unmarshal(trimmed, &o) != nil || o == nil {
		return nil
	}
	if raw, ok := o.Get("error"); ok && !isJSONNull(raw) {
		var inner pollkit.Object
		if json.Unmarshal(raw, &inner) != nil || inner == nil {
			// {"error": "text"}: still an error answer, just an odd one.
			return &Error{Message: capText(pollkit.RawText(raw))}
		}
		e := &Error{Code: codeOf(inner)}
		if m, ok := inner.Text("message"); ok {
			e.Message = capText(m)
		}
		e.Details = textList(inner, "details")
		return e
	}
	// The admin shape: {"status":"error"} on an object that is not a job
	// (a job's status is never "error", and a job names itself).
	status, _, _ := o.String("status")
	if !strings.EqualFold(strings.TrimSpace(status), "error") || hasAny(o, "jobid", "jobStatus") {
		return nil
	}
	e := &Error{Code: codeOf(o)}
	if msgs := textList(o, "messages"); len(msgs) > 0 {
		e.Message, e.Details = msgs[0], msgs[1:]
	}
	return e
}

func hasAny(o pollkit.Object, keys ...string) bool {
	for _, k := range keys {
		if _, ok := o.Get(k); ok {
			return true
		}
	}
	return false
}

// codeOf reads "code" as a number or a numeric string; anything else is 0.
func codeOf(o pollkit.Object) int {
	raw, ok := o.Get("code")
	if !ok {
		return 0
	}
	n, ok := integer(pollkit.NewValue(raw))
	if !ok || n < 0 || n > 1<<31-1 {
		return 0
	}
	return int(n)
}

// textList reads a list of messages leniently: strings as they are, other
// values as their JSON, a lone string as a list of one.
func textList(o pollkit.Object, key string) []string {
	raw, ok := o.Get(key)
	if !ok || isJSONNull(raw) {
		return nil
	}
	var items []json.RawMessage
	if json.Unmarshal(raw, &items) != nil {
		if t := pollkit.RawText(raw); t != "" {
			return []string{capText(t)}
		}
		return nil
	}
	var out []string
	for _, it := range items {
		if len(out) == maxErrorDetails {
			out = append(out, fmt.Sprintf("… %d more", len(items)-maxErrorDetails))
			break
		}
		if t := pollkit.RawText(it); t != "" && t != "null" {
			out = append(out, capText(t))
		}
	}
	return out
}

func capText(s string) string { return pollkit.Snippet([]byte(s), maxErrorText) }

// authFailure: the token is missing, expired or invalid, so a new one may help.
func (e *Error) authFailure() bool {
	return e.Code == codeInvalidToken || e.Code == codeTokenRequired
}

// retryable: the server says it failed, not that the request was wrong.
func (e *Error) retryable() bool {
	return e.Code >= 500 || e.Code == http.StatusTooManyRequests || e.Code == http.StatusRequestTimeout
}

// classify is the pollkit Classifier for every ArcGIS call: an error answer
// with a server-side code inside HTTP 200 is retried like a 5xx, and
// everything else is left to pollkit's default (5xx, 429, Retry-After).
// Token errors are not retried here: pollkit renews the token once through
// the TokenSource's isAuthFailure.
func classify(resp *pollkit.Response) pollkit.Verdict {
	if e := parseError(resp.Body); e != nil && e.retryable() {
		return pollkit.Verdict{Retry: true, Reason: e.Error()}
	}
	return pollkit.DefaultClassify(resp)
}

// isAuthFailure tells pollkit's TokenSource that a response refused the
// token: error 498 or 499 inside the body, or the same codes (and 401) as an
// HTTP status, which a web adaptor or web-tier auth may send instead.
func isAuthFailure(resp *pollkit.Response) bool {
	switch resp.StatusCode {
	case http.StatusUnauthorized, codeInvalidToken, codeTokenRequired:
		return true
	}
	e := parseError(resp.Body)
	return e != nil && e.authFailure()
}

// asPollError maps an error answer onto the bridge's sentinels, with what
// the user can do; the caller says which instance and request it was.
func (e *Error) asPollError(staticToken bool) error {
	switch {
	case e.Code == codeNotFound:
		return fmt.Errorf("%w (it never existed, or it was removed after its retention time): %w", bridge.ErrNotFound, e)
	case e.authFailure() && staticToken:
		return fmt.Errorf("%w: ArcGIS refused the configured token: %w; generate a new token and update auth.token, or configure auth.username and auth.password so jobbridge renews tokens itself",
			bridge.ErrAuth, e)
	case e.Code == codeTokenRequired:
		return fmt.Errorf("%w: ArcGIS requires a token: %w; configure auth.username and auth.password (with options.tokenURL) or auth.token",
			bridge.ErrAuth, e)
	case e.authFailure():
		return fmt.Errorf("%w: ArcGIS refused the token even after a renewal: %w; check the account, options.tokenURL and options.referer",
			bridge.ErrAuth, e)
	case e.Code == codeForbidden:
		// Renewal cannot help: the account lacks a privilege.
		return fmt.Errorf("%w: ArcGIS denied access: %w; give the account the privilege to read these jobs (an administrator or publisher role for admin jobs)",
			bridge.ErrAuth, e)
	}
	return fmt.Errorf("ArcGIS refused the request: %w; check the instance url, options.flavor and options.jobsPath", e)
}
