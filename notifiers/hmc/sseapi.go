package hmc

import (
	"encoding/json"
	"fmt"
	"net/url"
	"strings"

	"github.com/jobbridge/jobbridge/bridge"
)

// Everything this package assumes about the HMC's SSE operations is in
// this file. Sources: hmc-notifications.md §3. Tags: [C] documented by IBM
// (S5, "Open Server-Sent Events Stream"); [A] ASSUMED, no public source
// found. When IBM's chapter "Server-Sent Events Stream operations" is at
// hand, check the [A] lines and fix them here only.
const (
	// [A] Create Server-Sent Events Stream: POST, named like the other
	// session operations (get-notification-topics).
	sseCreatePath = "/api/sessions/operations/create-server-sent-events-stream"
	// [C] Open Server-Sent Events Stream: GET with stream-id (required)
	// and initial-events (default false); 200 text/event-stream; 404 when
	// the stream-id is invalid or not of a fully authenticated session;
	// opening an open stream closes the old connection.
	sseOpenPath = "/api/sessions/operations/open-server-sent-events-stream"
	// [C] The initial events come wrapped in these two events, before any
	// change; changes that happen meanwhile are queued behind them. So
	// initial-events-end is the moment the stream is live: we reconcile
	// then.
	sseInitialStart = "initial-events-start"
	sseInitialEnd   = "initial-events-end"
)

// [A] The create request body: an empty JSON object, leaving the HMC to
// register the creating session's own notifications (job completions
// included). How registrations are chosen is not documented.
var sseCreateBody = []byte(`{}`)

// [A] The create response: {"stream-id": "..."}; 200 or 201.
func parseCreateStream(body []byte) (string, error) {
	var out struct {
		StreamID string `json:"stream-id"`
	}
	if err := json.Unmarshal(body, &out); err != nil || strings.TrimSpace(out.StreamID) == "" {
		return "", fmt.Errorf("%w: the Create Server-Sent Events Stream answer has no stream-id: %q", bridge.ErrMalformed, clip(string(body)))
	}
	return out.StreamID, nil
}

// sseOpenURL is the open request. [C] for the parameters; we always ask
// for initial events, only to get initial-events-end.
func sseOpenURL(base, streamID string) string {
	q := url.Values{"stream-id": {streamID}, "initial-events": {"true"}}
	return strings.TrimRight(base, "/") + sseOpenPath + "?" + q.Encode()
}

// sseCompletion reads a job completion from an SSE event.
//
//   - [C] event data is a JSON object of "common fields" plus fields per
//     notification type (the "Notification event formats" chapter).
//   - [A] its field names are the JMS property names (notification-type,
//     job-uri, global-sequence-nr, session-sequence-nr), numbers as JSON
//     numbers or strings; the SSE event name, if any, is not relied on.
//   - [A] job-completion is delivered over SSE at all; and the id: field,
//     if any, is a per-stream position (we send it back as Last-Event-ID,
//     harmless if the HMC ignores it, and rely on reconciling instead).
func sseCompletion(ev sseEvent) (completion, bool, error) {
	if len(ev.Data) == 0 {
		return completion{}, false, nil
	}
	get, err := jsonProps(ev.Data)
	if err != nil {
		return completion{}, false, err
	}
	return parseCompletion(get)
}

// hmcReason reads the reason code of an HMC error body ({"http-status",
// "reason", "message"}), -1 when there is none.
func hmcReason(body []byte) int {
	var e struct {
		Reason *int `json:"reason"`
	}
	if json.Unmarshal(body, &e) != nil || e.Reason == nil {
		return -1
	}
	return *e.Reason
}
