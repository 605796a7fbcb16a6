package hmc

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/jobbridge/jobbridge/bridge"
	hmcpoll "github.com/jobbridge/jobbridge/pollers/hmc"
)

// The JMS properties of an HMC notification, as STOMP headers (all strings)
// or as SSE data fields (JSON).
const (
	hdrNotificationType = "notification-type"
	hdrJobURI           = "job-uri"
	hdrGlobalSeq        = "global-sequence-nr"
	hdrSessionSeq       = "session-sequence-nr"

	typeJobCompletion = "job-completion"
)

// completion is one job-completion notification. The HMC sends it when a
// job completes or is canceled; it carries no status (the body is null),
// so it is only a reason to poll the job.
type completion struct {
	JobURI string
	JobID  string
	// GlobalSeq and SessionSeq are -1 when the message had none.
	GlobalSeq  int64
	SessionSeq int64
	// BadSeq names a sequence number that did not parse, for the log.
	BadSeq string
}

// parseCompletion reads a notification's properties through get. It
// returns ok=false with no error for a notification of another type (an
// object topic's property-change, say), and an error wrapping
// bridge.ErrMalformed for a job-completion that names no job.
func parseCompletion(get func(string) (string, bool)) (completion, bool, error) {
	typ, _ := get(hdrNotificationType)
	if typ != typeJobCompletion {
		return completion{}, false, nil
	}
	c := completion{GlobalSeq: -1, SessionSeq: -1}
	uri, _ := get(hdrJobURI)
	uri = strings.TrimSpace(uri)
	id, ok := hmcpoll.JobIDFromURI(uri)
	if !ok || bridge.ValidateJobID(id) != nil {
		return completion{}, false, fmt.Errorf("%w: job-completion with job-uri %q, want /api/jobs/{job-id}", bridge.ErrMalformed, clip(uri))
	}
	c.JobURI, c.JobID = uri, id
	// The sequence numbers are JMS longs that arrive as strings. A bad one
	// is kept as -1 and noted, not fatal: the job-uri is what the hint
	// needs, and dropping a hint would only delay the job's event.
	c.GlobalSeq, c.BadSeq = seq(get, hdrGlobalSeq, c.BadSeq)
	c.SessionSeq, c.BadSeq = seq(get, hdrSessionSeq, c.BadSeq)
	return c, true, nil
}

func seq(get func(string) (string, bool), key, bad string) (int64, string) {
	s, ok := get(key)
	if !ok || s == "" {
		return -1, bad
	}
	v, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil || v < 0 {
		return -1, key + "=" + clip(s)
	}
	return v, bad
}

// jsonProps exposes an SSE event's JSON data object as properties: strings
// as they are, numbers in their JSON spelling (so the sequence numbers
// parse the same as over STOMP).
func jsonProps(data []byte) (func(string) (string, bool), error) {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(data, &obj); err != nil || obj == nil {
		return nil, fmt.Errorf("%w: SSE event data is not a JSON object", bridge.ErrMalformed)
	}
	return func(k string) (string, bool) {
		raw, ok := obj[k]
		if !ok {
			return "", false
		}
		var s string
		if json.Unmarshal(raw, &s) == nil {
			return s, true
		}
		var n json.Number
		if json.Unmarshal(raw, &n) == nil {
			return n.String(), true
		}
		return string(raw), true
	}, nil
}

// clip keeps vendor text in error messages short.
func clip(s string) string {
	if len(s) > 120 {
		return s[:120] + "..."
	}
	return s
}
