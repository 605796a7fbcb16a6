package tso

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jobbridge/jobbridge/bridge"
	"github.com/jobbridge/jobbridge/pollers/pollkit"
)

var testJob = bridge.JobRef{Vendor: Vendor, Instance: "prod", ID: "job-1"}

// wantTable is vendor-apis.md §1.5 written out again, so a change to the
// table in code must be made twice to pass.
var wantTable = []pollkit.Row{
	{Native: "READY", State: bridge.StatePending},
	{Native: "PENDING", State: bridge.StatePending},
	{Native: "PENDING_REASSIGNMENT", State: bridge.StatePending},
	{Native: "ASSIGNED", State: bridge.StateRunning},
	{Native: "IN_PROGRESS", State: bridge.StateRunning},
	{Native: "PAUSED", State: bridge.StateRunning, SubState: "paused"},
	{Native: "COMPLETED", State: bridge.StateSucceeded},
	{Native: "COMPENSATED", State: bridge.StateFailed},
	{Native: "FAILED", State: bridge.StateFailed},
	{Native: "ABORTED", State: bridge.StateFailed},
	{Native: "CANCELLED", State: bridge.StateCanceled},
	{Native: "CANCELED", State: bridge.StateCanceled},
}

func statusBody(native string) []byte {
	b, _ := json.Marshal(map[string]string{"processName": ":A:B", "status": native})
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
		for _, spelling := range []string{row.Native, strings.ToLower(row.Native), " " + titleCase(row.Native) + "\t"} {
			t.Run(row.Native+"/"+spelling, func(t *testing.T) {
				obs, _, err := buildObservation(testJob, statusBody(spelling), nil, time.Unix(1, 0))
				if err != nil {
					t.Fatal(err)
				}
				if obs.State != row.State || obs.SubState != row.SubState {
					t.Fatalf("%q → %s/%q, want %s/%q", spelling, obs.State, obs.SubState, row.State, row.SubState)
				}
				if obs.Native != spelling {
					t.Fatalf("Native = %q, want the status verbatim %q", obs.Native, spelling)
				}
			})
		}
	}
}

func TestUnknownStatusMapsToUnknown(t *testing.T) {
	for _, s := range []string{"RUNNING", "DONE", "COMPLETED_WITH_ERRORS", "IN PROGRESS", "Terminated"} {
		obs, _, err := buildObservation(testJob, statusBody(s), nil, time.Time{})
		if err != nil || obs.State != bridge.StateUnknown || obs.Native != s {
			t.Errorf("%q: state %s native %q err %v; want unknown, kept verbatim", s, obs.State, obs.Native, err)
		}
	}
}

func TestVendorExample(t *testing.T) {
	// The vendor doc's example, with the table's "ProcessName" spelling.
	body := []byte(`{"ProcessName": ":AutoPilot-AD-Utilities:HTTP:Get", "name": "Get",
	 "peerId": "urn:jxta:uuid-59616261646162614E50472050325033E4830C5CEFF54C8284FFA9C2FE3C3B8503",
	 "startTime": "Wed Dec 31 17:59:59 CST 1969", "status": "COMPLETED",
	 "outputParameters": [{"name": "status code", "value": "<result>200</result>"},
	                      {"name": "status reason", "value": "<result>OK</result>"}]}`)
	at := time.Date(2025, 5, 1, 12, 0, 0, 0, time.UTC)
	obs, note, err := buildObservation(testJob, body, nil, at)
	if err != nil {
		t.Fatal(err)
	}
	if obs.State != bridge.StateSucceeded || obs.Native != "COMPLETED" || obs.SubState != "" {
		t.Errorf("state %s native %q sub %q", obs.State, obs.Native, obs.SubState)
	}
	if obs.Job != testJob || !obs.ObservedAt.Equal(at) || obs.Via != bridge.DetectedByPoll || string(obs.Raw) != string(body) {
		t.Errorf("job %v observedAt %v via %q raw equal %v", obs.Job, obs.ObservedAt, obs.Via, string(obs.Raw) == string(body))
	}
	want := map[string]string{"status code": "<result>200</result>", "status reason": "<result>OK</result>"}
	if len(obs.Outcome) != len(want) {
		t.Errorf("Outcome = %v, want %v", obs.Outcome, want)
	}
	for k, v := range want {
		if obs.Outcome[k] != v {
			t.Errorf("Outcome[%q] = %q, want %q", k, obs.Outcome[k], v)
		}
	}
	st, ok := obs.Times["startTime"]
	if !ok || st.Raw != "Wed Dec 31 17:59:59 CST 1969" || !st.Normalized.IsZero() {
		t.Errorf("startTime = %+v; want the raw epoch value and no normalized time", st)
	}
	if note != "" {
		t.Errorf("note %q for a parseable start", note)
	}
	// The poller owns the response body (pollkit.Response), so Raw takes
	// it over rather than copying it.
	if &obs.Raw[0] != &body[0] || len(obs.Raw) != len(body) {
		t.Error("Raw is a copy of the body, not the body")
	}
}

func TestStartTimeVariants(t *testing.T) {
	cases := []struct {
		body     string
		raw      string
		want     time.Time
		hasTimes bool
		note     bool
	}{
		{`{"status":"ASSIGNED","startTime":"Thu Mar 06 10:15:30 CST 2025"}`, "Thu Mar 06 10:15:30 CST 2025", time.Date(2025, 3, 6, 16, 15, 30, 0, time.UTC), true, false},
		{`{"status":"ASSIGNED"}`, "", time.Time{}, false, false},
		{`{"status":"ASSIGNED","startTime":null}`, "", time.Time{}, false, false},
		{`{"status":"ASSIGNED","startTime":""}`, "", time.Time{}, false, false},
		{`{"status":"ASSIGNED","startTime":"yesterday"}`, "yesterday", time.Time{}, true, true},
		{`{"status":"ASSIGNED","startTime":1700000000000}`, "1700000000000", time.Time{}, true, true},
		{`{"status":"ASSIGNED","STARTTIME":"Thu Jan 01 00:00:00 UTC 1970"}`, "Thu Jan 01 00:00:00 UTC 1970", time.Time{}, true, false},
	}
	for _, c := range cases {
		obs, note, err := buildObservation(testJob, []byte(c.body), nil, time.Time{})
		if err != nil {
			t.Errorf("%s: %v", c.body, err)
			continue
		}
		st, ok := obs.Times["startTime"]
		if ok != c.hasTimes || st.Raw != c.raw || !st.Normalized.Equal(c.want) {
			t.Errorf("%s: startTime %+v (present %v), want raw %q normalized %v present %v", c.body, st, ok, c.raw, c.want, c.hasTimes)
		}
		if (note != "") != c.note {
			t.Errorf("%s: note %q", c.body, note)
		}
		if obs.State != bridge.StateRunning {
			t.Errorf("%s: a start time problem changed the state to %s", c.body, obs.State)
		}
	}
}

func TestMalformedPayloads(t *testing.T) {
	for _, body := range []string{
		``, `null`, `[]`, `"COMPLETED"`, `{}`, `{"status":3}`, `{"status":""}`, `{"status":"  "}`,
		`{"status":null}`, `{"status":{"value":"COMPLETED"}}`, `{"processName":":A","status":"COMPL`,
		`<!doctype html><html><body>Service Temporarily Unavailable</body></html>`,
		`{"status":"COMPLETED"} {"status":"FAILED"}`,
	} {
		obs, _, err := buildObservation(testJob, []byte(body), nil, time.Now())
		if !errors.Is(err, bridge.ErrMalformed) {
			t.Errorf("%q: err = %v, want ErrMalformed", body, err)
		}
		if obs.State != "" || obs.Native != "" {
			t.Errorf("%q: an error came with state %q native %q", body, obs.State, obs.Native)
		}
	}
}

func TestOutcomeEdges(t *testing.T) {
	long := strings.Repeat("é", maxOutcomeValue) // 2 bytes each: the cut must not split one
	body, _ := json.Marshal(map[string]any{
		"status": "COMPLETED",
		"outputParameters": []any{
			map[string]any{"name": "r", "value": "<result>1</result>"},
			map[string]any{"name": "r", "value": "<result>2</result>"},
			map[string]any{"value": "nameless"},
			map[string]any{"name": "n", "value": 42},
			"not an object",
			map[string]any{"name": "big", "value": long},
		},
	})
	obs, _, err := buildObservation(testJob, body, nil, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"r": "<result>1</result>", "r#2": "<result>2</result>", "2": "nameless", "n": "42", "4": "not an object"}
	for k, v := range want {
		if obs.Outcome[k] != v {
			t.Errorf("Outcome[%q] = %q, want %q", k, obs.Outcome[k], v)
		}
	}
	big := obs.Outcome["big"]
	if len(big) > maxOutcomeValue+64 || !strings.Contains(big, "more bytes in the raw payload") || !strings.HasPrefix(big, "éé") {
		t.Errorf("big value not capped cleanly: %d bytes, ends %q", len(big), big[max(0, len(big)-60):])
	}
	if !json.Valid([]byte(`"` + strings.ReplaceAll(big, `"`, `\"`) + `"`)) {
		t.Error("capped value is not valid UTF-8 text")
	}

	many := make([]map[string]string, maxOutcomeParams+10)
	for i := range many {
		many[i] = map[string]string{"name": strings.Repeat("p", i+1), "value": "v"}
	}
	body, _ = json.Marshal(map[string]any{"status": "COMPLETED", "outputParameters": many})
	obs, _, _ = buildObservation(testJob, body, nil, time.Time{})
	if len(obs.Outcome) != maxOutcomeParams+1 || !strings.HasPrefix(obs.Outcome["(truncated)"], "10 more") {
		t.Errorf("outcome of %d params has %d entries, truncated note %q", len(many), len(obs.Outcome), obs.Outcome["(truncated)"])
	}

	obs, _, _ = buildObservation(testJob, []byte(`{"status":"COMPLETED","outputParameters":"<result>x</result>"}`), nil, time.Time{})
	if obs.Outcome["outputParameters"] != "<result>x</result>" {
		t.Errorf("non-array outputParameters: %v", obs.Outcome)
	}
	obs, _, _ = buildObservation(testJob, []byte(`{"status":"COMPLETED","outputParameters":[]}`), nil, time.Time{})
	if obs.Outcome != nil {
		t.Errorf("empty outputParameters gave %v", obs.Outcome)
	}
}

func TestNewValidates(t *testing.T) {
	ok := Options{Instance: "prod", BaseURL: "https://tso:8443/baocdp", Username: "u", Password: bridge.NewSecret("p")}
	if _, err := New(ok); err != nil {
		t.Fatalf("valid options: %v", err)
	}
	for name, mut := range map[string]func(*Options){
		"no instance":      func(o *Options) { o.Instance = "" },
		"spaced instance":  func(o *Options) { o.Instance = "a b" },
		"no context":       func(o *Options) { o.BaseURL = "https://tso:8443/" },
		"wrong context":    func(o *Options) { o.BaseURL = "https://tso:8443/baocdpx" },
		"no username":      func(o *Options) { o.Username = "" },
		"no password":      func(o *Options) { o.Password = bridge.Secret{} },
		"not a URL":        func(o *Options) { o.BaseURL = "tso/baocdp" },
		"password in URL":  func(o *Options) { o.BaseURL = "https://u:hunter2@tso/baocdp" },
		"half client cert": func(o *Options) { o.HTTP.CertFile = "x.pem" },
	} {
		o := ok
		mut(&o)
		_, err := New(o)
		if err == nil {
			t.Errorf("%s: accepted", name)
		} else if strings.Contains(err.Error(), "hunter2") {
			t.Errorf("%s: error repeats the password: %v", name, err)
		}
	}
	o := ok
	o.BaseURL = ""
	o.HTTP.BaseURL = "https://tso:8443/baoap/"
	if _, err := New(o); err != nil {
		t.Errorf("BaseURL from HTTP options with baoap: %v", err)
	}
}

// titleCase is the UI spelling: "IN_PROGRESS" → "In_progress".
func titleCase(s string) string { return s[:1] + strings.ToLower(s[1:]) }
