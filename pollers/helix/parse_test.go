package helix

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jobbridge/jobbridge/bridge"
)

var testJob = bridge.JobRef{Vendor: Vendor, Instance: "co", ID: "321"}

// wantRules is the mapping table written out again, so a change to the table
// in code must be made twice to pass.
var wantRules = []Rule{
	{Status: "", ExitCode: "*", State: bridge.StatePending, SubState: "never-run"},
	{Status: "RUNNING", ExitCode: "*", State: bridge.StateRunning},
	{Status: "SERVICE_ON", ExitCode: "*", State: bridge.StateRunning, SubState: "service"},
	{Status: "SERVICE_OFF", ExitCode: "*", State: bridge.StatePending, SubState: "service-paused"},
	{Status: "WAITING", ExitCode: "", State: bridge.StatePending, SubState: "scheduled"},
	{Status: "WAITING", ExitCode: "OK", State: bridge.StateSucceeded, ReportsExitCode: true},
	{Status: "WAITING", ExitCode: "WARNING", State: bridge.StateSucceeded, ReportsExitCode: true},
	{Status: "WAITING", ExitCode: "ERROR", State: bridge.StateFailed, ReportsExitCode: true},
	{Status: "WAITING", ExitCode: "FAILED", State: bridge.StateFailed, ReportsExitCode: true},
	{Status: "ENDED", ExitCode: "", State: bridge.StateUnknown, ReportsExitCode: true},
	{Status: "ENDED", ExitCode: "OK", State: bridge.StateSucceeded, ReportsExitCode: true},
	{Status: "ENDED", ExitCode: "WARNING", State: bridge.StateSucceeded, ReportsExitCode: true},
	{Status: "ENDED", ExitCode: "ERROR", State: bridge.StateFailed, ReportsExitCode: true},
	{Status: "ENDED", ExitCode: "FAILED", State: bridge.StateFailed, ReportsExitCode: true},
	{Status: "ABORTED", ExitCode: "*", State: bridge.StateCanceled, ReportsExitCode: true},
}

func TestMappingTableIsTheDocumentedOne(t *testing.T) {
	rows := Rules()
	if len(rows) != len(wantRules) {
		t.Fatalf("table has %d rows, want %d", len(rows), len(wantRules))
	}
	for i, r := range rows {
		if r != wantRules[i] {
			t.Errorf("row %d = %+v, want %+v", i, r, wantRules[i])
		}
	}
}

// body renders a status payload; a value of nil leaves the key out.
func body(fields map[string]any) []byte {
	b, _ := json.Marshal(fields)
	return b
}

// exitSpellings are the ways one exit code pattern can arrive: for
// NoExitCode the key missing, null or ""; for AnyExitCode a sample of every
// kind; otherwise the value in three casings.
func exitSpellings(pattern string) []any {
	switch pattern {
	case AnyExitCode:
		return []any{nil, "", "OK", "WARNING", "error", "FAILED", "SOMETHING"}
	case NoExitCode:
		return []any{nil, "", json.RawMessage(`null`), " "}
	}
	return []any{pattern, strings.ToLower(pattern), " " + strings.ToUpper(pattern[:1]) + strings.ToLower(pattern[1:]) + "\t"}
}

func statusSpellings(status string) []any {
	if status == "" {
		return []any{nil, json.RawMessage(`null`), "", "  "}
	}
	return []any{status, strings.ToLower(status), " " + status + " "}
}

func TestMappingPerRow(t *testing.T) {
	for i, row := range Rules() {
		for _, st := range statusSpellings(row.Status) {
			for _, ex := range exitSpellings(row.ExitCode) {
				name := fmt.Sprintf("row%d/%v/%v", i, st, ex)
				t.Run(name, func(t *testing.T) {
					f := map[string]any{"task_id": 467, "last_exec_ts": "2022-09-08T14:56:28Z"}
					if st != nil {
						f["status"] = st
					}
					if ex != nil {
						f["exit_code"] = ex
					}
					obs, err := buildObservation(testJob, body(f))
					if err != nil {
						t.Fatal(err)
					}
					if obs.State != row.State || obs.SubState != row.SubState {
						t.Fatalf("→ %s/%q, want %s/%q", obs.State, obs.SubState, row.State, row.SubState)
					}
					wantNative, _ := st.(string)
					if obs.Native != wantNative {
						t.Fatalf("Native = %q, want the status verbatim %q", obs.Native, wantNative)
					}
					exit, _ := ex.(string)
					switch {
					case row.ReportsExitCode && exit != "":
						if obs.Outcome["exit_code"] != exit || len(obs.Outcome) != 1 {
							t.Fatalf("Outcome %v, want exit_code %q verbatim", obs.Outcome, exit)
						}
					case obs.Outcome != nil:
						t.Fatalf("Outcome %v, want none: the exit code belongs to an earlier run", obs.Outcome)
					}
					if obs.RunID != "2022-09-08T14:56:28Z" {
						t.Fatalf("RunID %q, want last_exec_ts", obs.RunID)
					}
				})
			}
		}
	}
}

func TestUnknownStatusesAndExitCodes(t *testing.T) {
	for _, c := range []struct{ status, exit string }{
		{"PAUSED", ""}, {"SCHEDULED", "OK"}, {"DONE", "OK"}, {"ENDED", "CANCELLED"}, {"WAITING", "0"}, {"ENDED", "SUCCESS"},
	} {
		obs, err := buildObservation(testJob, body(map[string]any{"status": c.status, "exit_code": c.exit}))
		if err != nil || obs.State != bridge.StateUnknown || obs.Native != c.status {
			t.Errorf("%+v: state %s native %q err %v; want unknown, kept verbatim", c, obs.State, obs.Native, err)
		}
		if c.exit != "" && obs.Outcome["exit_code"] != c.exit {
			t.Errorf("%+v: outcome %v, want the exit code verbatim", c, obs.Outcome)
		}
	}
	// A numeric exit code is kept as its JSON text, and is not OK.
	obs, err := buildObservation(testJob, []byte(`{"status":"ENDED","exit_code":0}`))
	if err != nil || obs.State != bridge.StateUnknown || obs.Outcome["exit_code"] != "0" {
		t.Errorf("numeric exit code: %+v %v", obs, err)
	}
}

func TestVendorExamples(t *testing.T) {
	for _, c := range []struct {
		body  string
		state bridge.State
		exit  string
		ts    time.Time
	}{
		{"{\n \"status\": \"ENDED\",\n \"task_id\": 467,\n \"exit_code\": \"ERROR\",\n \"last_exec_ts\": \"2022-09-06T12:07:34Z\"\n}", bridge.StateFailed, "ERROR", time.Date(2022, 9, 6, 12, 7, 34, 0, time.UTC)},
		{"{\n \"status\": \"ENDED\",\n \"task_id\": 321,\n \"exit_code\": \"OK\",\n \"last_exec_ts\": \"2022-09-08T14:56:28Z\"\n}", bridge.StateSucceeded, "OK", time.Date(2022, 9, 8, 14, 56, 28, 0, time.UTC)},
	} {
		obs, err := buildObservation(testJob, []byte(c.body))
		if err != nil {
			t.Fatal(err)
		}
		if obs.State != c.state || obs.Native != "ENDED" || obs.Outcome["exit_code"] != c.exit || obs.Job != testJob || obs.Via != bridge.DetectedByPoll {
			t.Errorf("observation %+v", obs)
		}
		ts := obs.Times["last_exec_ts"]
		if ts.Raw != c.ts.Format("2006-01-02T15:04:05Z") || !ts.Normalized.Equal(c.ts) || obs.RunID != ts.Raw {
			t.Errorf("last_exec_ts %+v RunID %q, want %v", ts, obs.RunID, c.ts)
		}
		if string(obs.Raw) != c.body {
			t.Errorf("Raw is not the payload verbatim: %s", obs.Raw)
		}
	}
}

func TestLastExecTSOddities(t *testing.T) {
	obs, err := buildObservation(testJob, []byte(`{"status":"WAITING","exit_code":"OK","last_exec_ts":"08/09/2022 14:56"}`))
	if err != nil || obs.RunID != "08/09/2022 14:56" || obs.Times["last_exec_ts"].Raw != "08/09/2022 14:56" || !obs.Times["last_exec_ts"].Normalized.IsZero() {
		t.Errorf("unparsable last_exec_ts: %+v %v; want it kept raw, as RunID too", obs, err)
	}
	obs, err = buildObservation(testJob, []byte(`{"status":"WAITING","exit_code":"OK","last_exec_ts":1662648988000}`))
	if err != nil || obs.RunID != "1662648988000" {
		t.Errorf("numeric last_exec_ts: %+v %v", obs, err)
	}
	obs, err = buildObservation(testJob, []byte(`{"status":"WAITING","last_exec_ts":null}`))
	if err != nil || obs.RunID != "" || obs.Times != nil || obs.State != bridge.StatePending {
		t.Errorf("null last_exec_ts: %+v %v", obs, err)
	}
}

func TestMalformedPayloads(t *testing.T) {
	for _, b := range []string{
		`{}`, `{"message":"Internal error"}`, `[]`, `null`, `"ENDED"`, `{"status":7}`, `{"status":{"a":1}}`,
		`{"status": "RUNN`, `<html><body>Service Unavailable</body></html>`, `{"STATUS":["ENDED"]}`,
	} {
		obs, err := buildObservation(testJob, []byte(b))
		if !errors.Is(err, bridge.ErrMalformed) {
			t.Errorf("%s: err = %v, want ErrMalformed", b, err)
		}
		if obs.State != "" || obs.Raw != nil {
			t.Errorf("%s: an error came with an observation %+v", b, obs)
		}
	}
}

func TestCaseInsensitiveKeys(t *testing.T) {
	obs, err := buildObservation(testJob, []byte(`{"Status":"Ended","TASK_ID":1,"Exit_Code":"ok","Last_Exec_TS":"2022-09-08T14:56:28Z"}`))
	if err != nil || obs.State != bridge.StateSucceeded || obs.Native != "Ended" || obs.Outcome["exit_code"] != "ok" || obs.RunID == "" {
		t.Errorf("%+v %v", obs, err)
	}
}

func TestParseETLList(t *testing.T) {
	etls, skipped, err := parseETLList([]byte(`[
		{"name": "prod-a", "etl_id": 53, "run_configurations": [{"name": "Default", "active": true, "run_configuration_id": 216}]},
		{"name": "prod-b", "etl_id": "54"},
		{"name": "dup", "etl_id": 53},
		{"name": "no id"},
		{"name": "null id", "etl_id": null},
		{"name": "object id", "etl_id": {"x": 1}},
		7, null
	]`))
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(etls) != "[{53 prod-a} {54 prod-b}]" || skipped != 5 {
		t.Fatalf("etls %v skipped %d", etls, skipped)
	}
	if etls, _, err := parseETLList([]byte(`[]`)); err != nil || len(etls) != 0 {
		t.Fatalf("empty list: %v %v", etls, err)
	}
	for _, b := range []string{`{}`, `null`, ``, `<html></html>`, `[{"etl_id": 1}`} {
		if _, _, err := parseETLList([]byte(b)); !errors.Is(err, bridge.ErrMalformed) {
			t.Errorf("%q: err = %v, want ErrMalformed", b, err)
		}
	}
}

func TestJWTExpiry(t *testing.T) {
	enc := func(s string) string { return base64URL(s) }
	exp := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, c := range []struct {
		tok  string
		want time.Time
		ok   bool
	}{
		{"h." + enc(fmt.Sprintf(`{"exp":%d}`, exp.Unix())) + ".s", exp, true},
		{"h." + enc(fmt.Sprintf(`{"exp":%d.5}`, exp.Unix())) + ".s", exp.Add(500 * time.Millisecond), true},
		{"h." + enc(fmt.Sprintf(`{"exp":%d}`, exp.Unix())) + "==.s", exp, true},
		{"h." + enc(`{"exp":"2030"}`) + ".s", time.Time{}, false},
		{"h." + enc(`{"exp":null}`) + ".s", time.Time{}, false},
		{"h." + enc(`{"exp":-5}`) + ".s", time.Time{}, false},
		{"h." + enc(`{"exp":1e300}`) + ".s", time.Time{}, false},
		{"h." + enc(`{"iat":1}`) + ".s", time.Time{}, false},
		{"h." + enc(`[]`) + ".s", time.Time{}, false},
		{"opaque-token", time.Time{}, false},
		{"a.b.c.d", time.Time{}, false},
		{"h.!!!.s", time.Time{}, false},
	} {
		got, ok := jwtExpiry(c.tok)
		if ok != c.ok || !got.Equal(c.want) {
			t.Errorf("%q: %v %v, want %v %v", c.tok, got, ok, c.want, c.ok)
		}
	}
}

func base64URL(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }
