package hmc

import (
	"bytes"
	"fmt"
	"net/http"
	"strconv"

	"github.com/jobbridge/jobbridge/pollers/pollkit"
)

// HMC reason codes this package acts on (hmc-notifications.md §1, §5).
const (
	// reasonNoSession (403): the request carried no X-API-Session.
	reasonNoSession = 4
	// reasonSessionInvalid (403): the session expired or was logged off.
	reasonSessionInvalid = 5
	// reasonNotAuthorized (403): the user lacks the authority; logging on
	// again would not help.
	reasonNotAuthorized = 1
	// reasonNoSuchJob (404): no job of this API user has that id (never
	// existed, deleted, or its retention interval ended).
	reasonNoSuchJob = 1
	// reasonJobNotEnded (409, Delete Completed Job Status): the job is
	// still running or cancel-pending.
	reasonJobNotEnded = 40
)

// apiError is the HMC's standard error response body. Only the fields a
// client acts on are kept; the rest (request-uri, stack, ...) stays in the
// response.
type apiError struct {
	HTTPStatus int
	Reason     int
	Message    string
}

// parseAPIError reads a standard error body: a JSON object with an integer
// "reason". ok is false for anything else (an HTML page from a proxy, an
// empty body), so a 404 from something that is not the HMC is never taken
// for the HMC's "no such job".
func parseAPIError(body []byte) (apiError, bool) {
	o, err := pollkit.DecodeObject(body)
	if err != nil {
		return apiError{}, false
	}
	reason, ok := intField(o, "reason")
	if !ok {
		return apiError{}, false
	}
	e := apiError{Reason: int(reason)}
	if st, ok := intField(o, "http-status"); ok {
		e.HTTPStatus = int(st)
	}
	e.Message, _, _ = o.String("message")
	return e, true
}

// intField returns an integer JSON number under key. A string, a fraction
// or an exponent is not one.
func intField(o pollkit.Object, key string) (int64, bool) {
	v, found := o.Get(key)
	if !found {
		return 0, false
	}
	n, err := strconv.ParseInt(string(bytes.TrimSpace(v)), 10, 64)
	return n, err == nil
}

// isSessionFailure is the TokenSource's IsAuthFailure: HTTP 403 with reason
// 4 (no session id) or 5 (session invalid) means "log on again and retry
// once", as zhmcclient and golang-zhmcclient do. 403 reason 1 is an
// authorization failure that a new session would not cure.
func isSessionFailure(resp *pollkit.Response) bool {
	if resp.StatusCode != http.StatusForbidden {
		return false
	}
	e, ok := parseAPIError(resp.Body)
	return ok && (e.Reason == reasonNoSession || e.Reason == reasonSessionInvalid)
}

// describe renders the HMC's own words for an error message.
func (e apiError) describe(status int) string {
	s := fmt.Sprintf("HTTP %d reason %d", status, e.Reason)
	if e.Message != "" {
		s += ": " + pollkit.Snippet([]byte(e.Message), 200)
	}
	return s
}
