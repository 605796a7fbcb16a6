package hmc

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jobbridge/jobbridge/bridge"
	"github.com/jobbridge/jobbridge/pollers/pollkit"
)

var testJob = bridge.JobRef{Vendor: Vendor, Instance: "prod", ID: "86e44546-107f-11e1-bde0-0010184c8334"}

// wantTable is vendor-apis.md §5 written out again, so a change to the
// table in code must be made twice to pass.
var wantTable = []pollkit.Row{
	{Native: "running", State: bridge.StateRunning},
	{Native: "cancel-pending", State: bridge.StateRunning, SubState: "cancel-pending"},
	{Native: "canceled", State: bridge.StateCanceled},
	{Native: "complete", State: bridge.StateSucceeded},
}

// body builds a Query Job Status payload; code and reason < 0 leave the
// field out.
func body(status string, code, reason int) []byte {
	m := map[string]any{"status": status}
	if code >= 0 {
		m["job-status-code"] = code
	}
	if reason >= 0 {
		m["job-reason-code"] = reason
	}
	b, _ := json.Marshal(m)
	return b
}

func TestMappingTableIsTheDocumentedOne(t *testing.T) {
	rows := StatusTable().Rows()
	if len(rows) != len(wantTable) {
		t.Fatalf("table has %d rows, want %d", len(rows), len(wantTable))
	}
	for i, r := range rows {
		if r != wantTable[i] {
			t.Errorf("row %d = %+v, want %+v", i, r, wantTable[i])
		}
	}
}

func TestMappingPerRow(t *testing.T) {
	for _, row := range StatusTable().Rows() {
		// Ended jobs carry a status code; a 2xx one keeps the row's state.
		code := -1
		if row.Native == "complete" || row.Native == "canceled" {
			code = 200
		}
		for _, spelling := range []string{row.Native, strings.ToUpper(row.Native), " " + row.Native + "\t"} {
			t.Run(row.Native+"/"+spelling, func(t *testing.T) {
				obs, err := buildObservation(testJob, body(spelling, code, -1), time.Unix(1, 0))
				if err != nil {
					t.Fatal(err)
				}
				if obs.State != row.State || obs.SubState != row.SubState {
					t.Fatalf("%q → %s/%q, want %s/%q", spelling, obs.State, obs.SubState, row.State, row.SubState)
				}
				if obs.Native != spelling {
					t.Fatalf("Native = %q, want the status verbatim %q", obs.Native, spelling)
				}
				if obs.Job != testJob || obs.Via != bridge.DetectedByPoll || !obs.ObservedAt.Equal(time.Unix(1, 0)) {
					t.Fatalf("observation %+v", obs)
				}
			})
		}
	}
}

// TestStatusCodeEdges: success of a complete job lives in job-status-code.
func TestStatusCodeEdges(t *testing.T) {
	for _, c := range []struct {
		status       string
		code, reason int
		want         bridge.State
	}{
		{"complete", 200, -1, bridge.StateSucceeded},
		{"complete", 201, -1, bridge.StateSucceeded},
		{"complete", 204, -1, bridge.StateSucceeded},
		{"complete", 299, -1, bridge.StateSucceeded},
		{"complete", 200, 0, bridge.StateSucceeded}, // the vendor's own example
		{"complete", 199, 0, bridge.StateFailed},
		{"complete", 100, 0, bridge.StateFailed},
		{"complete", 300, 1, bridge.StateFailed},
		{"complete", 400, 1, bridge.StateFailed},
		{"complete", 409, 2, bridge.StateFailed},
		{"complete", 500, 263, bridge.StateFailed},
		{"complete", 0, -1, bridge.StateFailed},
		{"complete", -1, -1, bridge.StateFailed}, // missing: no evidence of success
		{"complete", -1, 5, bridge.StateFailed},
		{"canceled", 200, -1, bridge.StateCanceled},
		{"canceled", 500, 263, bridge.StateCanceled},
		{"canceled", -1, -1, bridge.StateCanceled},
		{"running", -1, -1, bridge.StateRunning},
	} {
		obs, err := buildObservation(testJob, body(c.status, c.code, c.reason), time.Time{})
		if err != nil {
			t.Fatalf("%+v: %v", c, err)
		}
		if obs.State != c.want {
			t.Errorf("%s with job-status-code %d → %s, want %s", c.status, c.code, obs.State, c.want)
		}
		// The codes travel verbatim, and only when the HMC sent them.
		got, ok := obs.Outcome[OutcomeStatusCode]
		if (c.code >= 0) != ok || (ok && got != itoa(c.code)) {
			t.Errorf("%+v: outcome %v", c, obs.Outcome)
		}
		got, ok = obs.Outcome[OutcomeReasonCode]
		if (c.reason >= 0) != ok || (ok && got != itoa(c.reason)) {
			t.Errorf("%+v: outcome %v", c, obs.Outcome)
		}
		if c.code < 0 && c.reason < 0 && obs.Outcome != nil {
			t.Errorf("%+v: outcome %v, want none", c, obs.Outcome)
		}
	}
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }

func TestVendorExample(t *testing.T) {
	// The example interaction of IBM's Query Job Status page, verbatim.
	raw := []byte("{\n\"job-reason-code\": 0,\n\"job-status-code\": 200,\n\"status\": \"complete\"\n}")
	obs, err := buildObservation(testJob, raw, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if obs.State != bridge.StateSucceeded || obs.Native != "complete" || obs.Outcome[OutcomeStatusCode] != "200" || obs.Outcome[OutcomeReasonCode] != "0" {
		t.Fatalf("%+v", obs)
	}
	if string(obs.Raw) != string(raw) {
		t.Fatalf("Raw %q is not the payload", obs.Raw)
	}
	// The poller owns the response body (pollkit.Response), so Raw takes
	// it over rather than copying it.
	if &obs.Raw[0] != &raw[0] {
		t.Fatal("Raw is a copy of the body, not the body")
	}
}

func TestJobResultsStayInRaw(t *testing.T) {
	raw := []byte(`{"status":"complete","job-status-code":400,"job-reason-code":1,"job-results":{"message":"The partition is not stopped."}}`)
	obs, err := buildObservation(testJob, raw, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if obs.State != bridge.StateFailed || len(obs.Outcome) != 2 || !strings.Contains(string(obs.Raw), "The partition is not stopped.") {
		t.Fatalf("%+v", obs)
	}
}

func TestUnknownStatusMapsToUnknown(t *testing.T) {
	for _, s := range []string{"completed", "failed", "cancelled", "pending", "Complete-ish"} {
		obs, err := buildObservation(testJob, body(s, -1, -1), time.Time{})
		if err != nil || obs.State != bridge.StateUnknown || obs.Native != s {
			t.Errorf("%q: state %s native %q err %v; want unknown, kept verbatim", s, obs.State, obs.Native, err)
		}
	}
}

func TestMalformedPayloads(t *testing.T) {
	for _, b := range []string{
		``, `null`, `[]`, `"complete"`, `{}`, `{"status":""}`, `{"status":"  "}`, `{"status":7}`, `{"status":null}`,
		`{"status":"complete","job-status-code":"200"}`, `{"status":"complete","job-status-code":200.5}`,
		`{"status":"complete","job-status-code":2e2}`, `{"status":"complete","job-status-code":200,"job-reason-code":"x"}`,
		`{"status":"complete","job-status-code":{}}`, `{"status":"compl`, `<html><body>Bad gateway</body></html>`,
	} {
		obs, err := buildObservation(testJob, []byte(b), time.Time{})
		if !errors.Is(err, bridge.ErrMalformed) {
			t.Errorf("%q: err = %v, want ErrMalformed", b, err)
		}
		if obs.State != "" || obs.Raw != nil {
			t.Errorf("%q: an error came with an observation %+v", b, obs)
		}
	}
	// null codes are absent codes, as for any optional field.
	obs, err := buildObservation(testJob, []byte(`{"status":"complete","job-status-code":null,"job-reason-code":null}`), time.Time{})
	if err != nil || obs.State != bridge.StateFailed || obs.Outcome != nil {
		t.Fatalf("null codes: %+v %v", obs, err)
	}
}

func TestSessionFailurePredicate(t *testing.T) {
	for _, c := range []struct {
		code int
		body string
		want bool
	}{
		{403, `{"http-status":403,"reason":5,"message":"session ID invalid"}`, true},
		{403, `{"http-status":403,"reason":4,"message":"no session ID"}`, true},
		{403, `{"reason":5}`, true},
		{403, `{"http-status":403,"reason":1,"message":"not authorized"}`, false},
		{403, `{"http-status":403,"reason":0}`, false},
		{403, `{"http-status":403,"reason":"5"}`, false},
		{403, `<html>Forbidden</html>`, false},
		{403, ``, false},
		{401, `{"http-status":401,"reason":5}`, false},
		{404, `{"http-status":404,"reason":5}`, false},
	} {
		if got := isSessionFailure(&pollkit.Response{StatusCode: c.code, Body: []byte(c.body)}); got != c.want {
			t.Errorf("HTTP %d %s: %v, want %v", c.code, c.body, got, c.want)
		}
	}
}

func TestParseLogon(t *testing.T) {
	s, err := parseLogon([]byte(`{"api-session":"abc","session-credential":"cred","notification-topic":"u.1","job-notification-topic":"u.1job","api-major-version":4,"api-minor-version":40,"password-expires":-1,"api-features":["f1"]}`))
	if err != nil {
		t.Fatal(err)
	}
	if s.ID.Reveal() != "abc" || s.Credential.Reveal() != "cred" || s.NotificationTopic != "u.1" || s.JobNotificationTopic != "u.1job" ||
		s.APIMajorVersion != 4 || s.APIMinorVersion != 40 || len(s.APIFeatures) != 1 {
		t.Fatalf("%+v", s)
	}
	for _, b := range []string{`{}`, `{"api-session":""}`, `{"api-session":5}`, `<html/>`} {
		if _, err := parseLogon([]byte(b)); err == nil {
			t.Errorf("%s accepted", b)
		}
	}
}

func TestEndedMemoBounds(t *testing.T) {
	m := newEndedMemo(2, time.Hour)
	now := time.Unix(1000, 0)
	obs := bridge.Observation{State: bridge.StateSucceeded, Native: "complete", Raw: []byte(`{}`)}
	m.put("a", obs, now)
	m.markDeleted("a")
	if _, ok := m.deleted("a"); !ok {
		t.Fatal("a deleted job is not remembered")
	}
	if _, ok := m.deleted("b"); ok {
		t.Fatal("an unknown job is remembered")
	}
	m.put("b", obs, now)
	m.put("c", obs, now) // over the cap: a goes
	if _, ok := m.deleted("a"); ok {
		t.Fatal("the cap was not kept")
	}
	m.markDeleted("c")
	m.put("d", obs, now.Add(2*time.Hour)) // past the TTL: b and c go
	if _, ok := m.deleted("c"); ok || len(m.m) != 1 || len(m.order) != 1 {
		t.Fatalf("the TTL was not kept: %d entries", len(m.m))
	}
}
