package arcgis

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jobbridge/jobbridge/bridge"
	"github.com/jobbridge/jobbridge/pollers/pollkit"
)

var testJob = bridge.JobRef{Vendor: Vendor, Instance: "gis", ID: "j522676d9-983a-48e2-a51c-5066966160f0"}

// wantAdmin and wantGP are vendor-apis.md §3.6 written out again, so a change
// to a table in code must be made twice to pass.
var wantAdmin = []pollkit.Row{
	{Native: "SUBMITTED", State: bridge.StatePending},
	{Native: "EXECUTING", State: bridge.StateRunning},
	{Native: "CANCELLING", State: bridge.StateRunning, SubState: "cancelling"},
	{Native: "CANCELLED", State: bridge.StateCanceled},
	{Native: "FAILED", State: bridge.StateFailed},
	{Native: "COMPLETED", State: bridge.StateSucceeded},
	{Native: "UNAVAILABLE", State: bridge.StateUnknown},
}

var wantGP = []pollkit.Row{
	{Native: "esriJobNew", State: bridge.StatePending},
	{Native: "esriJobSubmitted", State: bridge.StatePending},
	{Native: "esriJobWaiting", State: bridge.StatePending},
	{Native: "esriJobExecuting", State: bridge.StateRunning},
	{Native: "esriJobCancelling", State: bridge.StateRunning, SubState: "cancelling"},
	{Native: "esriJobSucceeded", State: bridge.StateSucceeded},
	{Native: "esriJobFailed", State: bridge.StateFailed},
	{Native: "esriJobTimedOut", State: bridge.StateFailed, SubState: "timeout"},
	{Native: "expectedFailure", State: bridge.StateFailed},
	{Native: "esriJobCancelled", State: bridge.StateCanceled},
	{Native: "esriJobDeleting", State: bridge.StateCanceled},
	{Native: "esriJobDeleted", State: bridge.StateCanceled},
}

func wantTable(f Flavor) []pollkit.Row {
	if f == FlavorGeoprocessing {
		return wantGP
	}
	return wantAdmin
}

// body renders a minimal payload of the flavour with this status.
func body(f Flavor, native string) []byte {
	var m map[string]any
	switch f {
	case FlavorMission:
		m = map[string]any{"jobId": testJob.ID, "status": native, "startTime": 1590523221196, "endTime": 0,
			"customAttributes": map[string]any{"stepsCompleted": 2, "isCancelled": false, "totalSteps": 5}}
	case FlavorEnterprise:
		m = map[string]any{"jobid": testJob.ID, "status": native, "totalsteps": 3, "currentstep": 1, "stepInfo": []string{}}
	default:
		m = map[string]any{"jobId": testJob.ID, "jobStatus": native, "messages": []any{}}
	}
	b, _ := json.Marshal(m)
	return b
}

func parse(t *testing.T, f Flavor, b []byte) bridge.Observation {
	t.Helper()
	obs, _, err := parseJob(f, testJob, b, time.Unix(1, 0), false)
	if err != nil {
		t.Fatalf("parseJob(%s, %s): %v", f, b, err)
	}
	return obs
}

func TestMappingTablesAreTheDocumentedOnes(t *testing.T) {
	for _, f := range flavors {
		rows := StatusTable(f).Rows()
		want := wantTable(f)
		if len(rows) != len(want) {
			t.Fatalf("%s: table has %d rows, want %d", f, len(rows), len(want))
		}
		for i, r := range rows {
			if r != want[i] {
				t.Errorf("%s row %d = %+v, want %+v", f, i, r, want[i])
			}
		}
	}
	if StatusTable("arcgis-online") != nil {
		t.Error("an unknown flavour has a table")
	}
}

func TestMappingPerRow(t *testing.T) {
	for _, f := range flavors {
		for _, row := range StatusTable(f).Rows() {
			for _, spelling := range []string{row.Native, strings.ToLower(row.Native), " " + strings.ToUpper(row.Native) + "\t"} {
				t.Run(string(f)+"/"+spelling, func(t *testing.T) {
					obs := parse(t, f, body(f, spelling))
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
}

func TestStatusOfAnotherFlavourIsUnknown(t *testing.T) {
	// An esriJob* status on an admin instance means the flavour is wrong:
	// unknown, kept verbatim, never a guess.
	for _, c := range []struct {
		f      Flavor
		native string
	}{{FlavorMission, "esriJobSucceeded"}, {FlavorEnterprise, "esriJobFailed"}, {FlavorGeoprocessing, "COMPLETED"}, {FlavorMission, "RUNNING"}} {
		obs := parse(t, c.f, body(c.f, c.native))
		if obs.State != bridge.StateUnknown || obs.Native != c.native {
			t.Errorf("%s %q → %s, want unknown kept verbatim", c.f, c.native, obs.State)
		}
	}
}

func TestMissionVendorExample(t *testing.T) {
	// The Mission Server "Job" page's example, verbatim.
	b := []byte(`{
    "jobId": "j522676d9-983a-48e2-a51c-5066966160f0",
    "messages": ["Started mission creation.", "Creating tracks layers for location awareness.",
        "Finishing mission creation.", "Finished creating mission d942d2bdb70c4104bcd1a76d4cf8a6b7."],
    "startTime": 1590523221196,
    "endTime": 1590523287507,
    "type": "addMission",
    "status": "COMPLETED",
    "username": "admin",
    "customAttributes": {
        "stepsCompleted": 5,
        "isCancelled": false,
        "missionId": "d942d2bdb70c4104bcd1a76d4cf8a6b7",
        "messageCodes": [1500, 1501, 1503, 1505, 1502, 1504, 1506, 1507, 1508, 1509, 1510],
        "totalSteps": 5
    }
}`)
	at := time.Date(2025, 5, 1, 12, 0, 0, 0, time.UTC)
	obs, note, err := parseJob(FlavorMission, testJob, b, at, false)
	if err != nil || note != "" {
		t.Fatalf("err %v note %q", err, note)
	}
	if obs.State != bridge.StateSucceeded || obs.Native != "COMPLETED" || obs.SubState != "" {
		t.Errorf("state %s native %q sub %q", obs.State, obs.Native, obs.SubState)
	}
	if obs.Job != testJob || !obs.ObservedAt.Equal(at) || obs.Via != bridge.DetectedByPoll || string(obs.Raw) != string(b) {
		t.Errorf("job %v observedAt %v via %q", obs.Job, obs.ObservedAt, obs.Via)
	}
	start, end := obs.Times["startTime"], obs.Times["endTime"]
	if start.Raw != "1590523221196" || !start.Normalized.Equal(time.UnixMilli(1590523221196).UTC()) || start.Normalized.Location() != time.UTC {
		t.Errorf("startTime %+v", start)
	}
	if end.Raw != "1590523287507" || end.Normalized.Sub(start.Normalized) != 66311*time.Millisecond {
		t.Errorf("endTime %+v", end)
	}
	if p := obs.Progress; p == nil || *p.StepsDone != 5 || *p.StepsTotal != 5 || p.Percent != nil || p.Message != "" {
		t.Errorf("progress %+v", obs.Progress)
	}
	if len(obs.Outcome) != 1 || obs.Outcome[OutcomeIsCancelled] != "false" {
		t.Errorf("outcome %v", obs.Outcome)
	}
	// The poller owns the response body (pollkit.Response), so Raw takes
	// it over rather than copying it.
	if &obs.Raw[0] != &b[0] || len(obs.Raw) != len(b) {
		t.Error("Raw is a copy of the body, not the body")
	}
}

func TestMissionIsCancelled(t *testing.T) {
	mk := func(status string, cancelled any) []byte {
		b, _ := json.Marshal(map[string]any{"status": status, "customAttributes": map[string]any{"isCancelled": cancelled}})
		return b
	}
	cases := []struct {
		status    string
		cancelled any
		state     bridge.State
		sub       string
		outcome   string
	}{
		// The rule: a finished job flagged isCancelled is canceled whatever
		// its status says.
		{"COMPLETED", true, bridge.StateCanceled, "", "true"},
		{"FAILED", true, bridge.StateCanceled, "", "true"},
		{"CANCELLED", true, bridge.StateCanceled, "", "true"},
		{"completed", "true", bridge.StateCanceled, "", "true"},
		// Still running: being cancelled; the final status settles it.
		{"EXECUTING", true, bridge.StateRunning, "cancelling", "true"},
		{"SUBMITTED", true, bridge.StatePending, "cancelling", "true"},
		{"CANCELLING", true, bridge.StateRunning, "cancelling", "true"},
		{"UNAVAILABLE", true, bridge.StateUnknown, "", "true"},
		// Not cancelled, or no usable flag: the table alone.
		{"COMPLETED", false, bridge.StateSucceeded, "", "false"},
		{"COMPLETED", "False", bridge.StateSucceeded, "", "false"},
		{"COMPLETED", 1, bridge.StateSucceeded, "", ""},
		{"COMPLETED", nil, bridge.StateSucceeded, "", ""},
	}
	for _, c := range cases {
		obs, note, err := parseJob(FlavorMission, testJob, mk(c.status, c.cancelled), time.Time{}, false)
		if err != nil {
			t.Fatal(err)
		}
		if obs.State != c.state || obs.SubState != c.sub || obs.Outcome[OutcomeIsCancelled] != c.outcome || obs.Native != c.status {
			t.Errorf("%s isCancelled=%v → %s/%q outcome %v; want %s/%q %q", c.status, c.cancelled, obs.State, obs.SubState, obs.Outcome, c.state, c.sub, c.outcome)
		}
		if c.cancelled == 1 && !strings.Contains(note, "isCancelled") {
			t.Errorf("a non-boolean isCancelled went unnoted: %q", note)
		}
	}
	// The flag applies to Mission only.
	b, _ := json.Marshal(map[string]any{"status": "COMPLETED", "customAttributes": map[string]any{"isCancelled": true}})
	if obs := parse(t, FlavorEnterprise, b); obs.State != bridge.StateSucceeded || obs.Outcome != nil {
		t.Errorf("enterprise honoured a Mission flag: %+v", obs)
	}
}

func TestClassicAdminVendorExampleIsAFailure(t *testing.T) {
	// The classic Server Administrator API "Job" page's example: COMPLETED,
	// yet the service failed to start.
	b := []byte(`{
  "jobid": "jcbdbf7aa-385e-417a-b629-29a310895b9b",
  "status": "COMPLETED",
  "totalsteps": 3,
  "currentstep": 3,
  "stepInfo": ["Stopping the service 'USA' on  machine 'MACHINE.DOMAIN.COM'", "Saving edits to the configuration store",
    "Starting the service 'USA' on machine 'MACHINE.DOMAIN.COM'", "Stopping the service 'USA' on machine 'MACHINE.DOMAIN.COM'"],
  "operationResponse": {
    "status": "error","messages": ["service failed to start"],
    "detail": {"service": "USA.MapServer", "state": "FAILED", "message": "",
      "machines": [{"machine": "MACHINE.DOMAIN.COM", "state": "FAILED","reports": [{"state": "FAILED",
          "message": "Cannot open file \\\\server\\share\\USA.MSD."}]}]}
  }
}`)
	obs := parse(t, FlavorEnterprise, b)
	if obs.State != bridge.StateFailed || obs.Native != "COMPLETED" || obs.SubState != "" {
		t.Errorf("state %s native %q sub %q; want failed with the native COMPLETED kept", obs.State, obs.Native, obs.SubState)
	}
	if len(obs.Outcome) != 1 || obs.Outcome[OutcomeOperationResponse] != "error" {
		t.Errorf("outcome %v", obs.Outcome)
	}
	if p := obs.Progress; p == nil || *p.StepsDone != 3 || *p.StepsTotal != 3 {
		t.Errorf("progress %+v", obs.Progress)
	}
	if obs.Times != nil {
		t.Errorf("times %v from a payload without any", obs.Times)
	}
}

func TestOperationResponseRule(t *testing.T) {
	cases := []struct {
		status, field, value string
		state                bridge.State
	}{
		{"COMPLETED", "operationResponse", "error", bridge.StateFailed},
		{"COMPLETED", "operationResponse", "ERROR", bridge.StateFailed},
		{"COMPLETED", "operationResponse", "failed", bridge.StateFailed}, // the documented value
		{"COMPLETED", "operationResponse", "success", bridge.StateSucceeded},
		{"COMPLETED", "result", "error", bridge.StateFailed}, // Enterprise Administrator API
		{"COMPLETED", "result", "success", bridge.StateSucceeded},
		{"FAILED", "operationResponse", "success", bridge.StateFailed},
		{"CANCELLED", "operationResponse", "error", bridge.StateCanceled},
		{"EXECUTING", "operationResponse", "error", bridge.StateRunning},
	}
	for _, c := range cases {
		b, _ := json.Marshal(map[string]any{"jobid": "j", "status": c.status, c.field: map[string]any{"status": c.value, "messages": []string{"m"}}})
		obs := parse(t, FlavorEnterprise, b)
		key := OutcomeOperationResponse
		if c.field == "result" {
			key = OutcomeResult
		}
		if obs.State != c.state || obs.Outcome[key] != c.value || obs.Native != c.status {
			t.Errorf("%s with %s.status=%s → %s outcome %v; want %s and the value verbatim", c.status, c.field, c.value, obs.State, obs.Outcome, c.state)
		}
	}
	// A result without a status (the documented service JSON) decides nothing.
	obs := parse(t, FlavorEnterprise, []byte(`{"jobid":"j","status":"COMPLETED","result":{"service":{"type":"MapServer"}},"operationResponse":"odd"}`))
	if obs.State != bridge.StateSucceeded || obs.Outcome != nil {
		t.Errorf("%+v", obs)
	}
}

func TestEnterpriseAdminAPIExample(t *testing.T) {
	// The Enterprise Administrator API "Job" page's running example.
	b := []byte(`{"updatedtime": 1635961542589, "jobid": "j2bcbcd49-83a4-4cc1-a034-40e4a266e96d", "endtime": 0,
	  "starttime": 1635961542583, "operationURI": "/context/admin/services/FireWatchWeather.MapServer/edit",
	  "status": "EXECUTING", "username": "serviceAdmin"}`)
	obs := parse(t, FlavorEnterprise, b)
	if obs.State != bridge.StateRunning || obs.Progress != nil || obs.Outcome != nil {
		t.Errorf("%+v", obs)
	}
	if st := obs.Times["starttime"]; !st.Normalized.Equal(time.UnixMilli(1635961542583).UTC()) {
		t.Errorf("starttime %+v", st)
	}
	if et := obs.Times["endtime"]; et.Raw != "0" || !et.Normalized.IsZero() {
		t.Errorf("endtime 0 must stay raw with no time: %+v", et)
	}
	if len(obs.Times) != 3 {
		t.Errorf("times %v", obs.Times)
	}
}

func TestGPProgress(t *testing.T) {
	cases := []struct {
		progress string
		percent  *float64
		message  string
		nilProg  bool
	}{
		{`{"type":"step","message":"Buffering features","percentage":40}`, ptr(40.0), "Buffering features", false},
		{`{"type":"default","message":"Dissolving"}`, nil, "Dissolving", false},
		{`{"type":"step","percentage":12.5}`, ptr(12.5), "", false},
		{`{"type":"step","message":"x","percentage":-1}`, nil, "x", false},
		{`{"type":"step","percentage":"55"}`, ptr(55.0), "", false},
		{`{"type":"default","message":""}`, nil, "", true},
		{`{"type":"step","percentage":"many"}`, nil, "", true},
		{`null`, nil, "", true},
		{`"50%"`, nil, "", true},
	}
	for _, c := range cases {
		b := []byte(`{"jobId":"j","jobStatus":"esriJobExecuting","progress":` + c.progress + `}`)
		obs := parse(t, FlavorGeoprocessing, b)
		if c.nilProg {
			if obs.Progress != nil {
				t.Errorf("%s: progress %+v, want none", c.progress, obs.Progress)
			}
			continue
		}
		p := obs.Progress
		if p == nil || p.Message != c.message || (p.Percent == nil) != (c.percent == nil) || p.Percent != nil && *p.Percent != *c.percent || p.StepsDone != nil {
			t.Errorf("%s: progress %+v", c.progress, p)
		}
	}
	// The GitHub-observed failure payload: no progress, failed.
	obs := parse(t, FlavorGeoprocessing, []byte(`{"jobId":"j49cd5b98c1ef4f8c8521c9f18ea595db","jobStatus":"esriJobFailed","messages":[{"type":"esriJobMessageTypeInformative","description":"Submitted."},{"type":"esriJobMessageTypeError","description":"Failed."}]}`))
	if obs.State != bridge.StateFailed || obs.Progress != nil || obs.Times != nil || obs.Outcome != nil {
		t.Errorf("%+v", obs)
	}
}

func ptr[T any](v T) *T { return &v }

func TestStepsAndTimesLeniency(t *testing.T) {
	b := []byte(`{"status":"EXECUTING","startTime":"yesterday","endTime":null,
	  "customAttributes":{"stepsCompleted":-1,"totalSteps":"7","isCancelled":false}}`)
	obs, note, err := parseJob(FlavorMission, testJob, b, time.Time{}, false)
	if err != nil {
		t.Fatal(err)
	}
	if obs.State != bridge.StateRunning {
		t.Errorf("a bad field changed the state: %s", obs.State)
	}
	if st := obs.Times["startTime"]; st.Raw != "yesterday" || !st.Normalized.IsZero() || len(obs.Times) != 1 {
		t.Errorf("times %v", obs.Times)
	}
	if p := obs.Progress; p == nil || p.StepsDone != nil || *p.StepsTotal != 7 {
		t.Errorf("progress %+v", p)
	}
	if !strings.Contains(note, "startTime") || !strings.Contains(note, "stepsCompleted") {
		t.Errorf("note %q", note)
	}
	long := strings.Repeat("é", maxVerbatim)
	b, _ = json.Marshal(map[string]any{"jobStatus": "esriJobExecuting", "progress": map[string]any{"message": long}})
	obs = parse(t, FlavorGeoprocessing, b)
	if m := obs.Progress.Message; len(m) > maxVerbatim+4 || !strings.HasPrefix(m, "éé") || !json.Valid([]byte(`"`+m+`"`)) {
		t.Errorf("long message not capped at a rune boundary: %d bytes", len(m))
	}
}

func TestMalformedPayloads(t *testing.T) {
	for _, f := range flavors {
		key := statusKey(f)
		for _, b := range []string{
			``, `null`, `[]`, `"COMPLETED"`, `{}`, `{"` + key + `":3}`, `{"` + key + `":""}`, `{"` + key + `":"  "}`,
			`{"` + key + `":null}`, `{"` + key + `":{"v":"COMPLETED"}}`, `{"jobId":"j","` + key + `":"EXEC`,
			`<!DOCTYPE html><html><body>ArcGIS REST Services Directory</body></html>`,
			`{"` + key + `":"COMPLETED"} {"` + key + `":"FAILED"}`,
		} {
			obs, _, err := parseJob(f, testJob, []byte(b), time.Now(), false)
			if !errors.Is(err, bridge.ErrMalformed) {
				t.Errorf("%s %q: err = %v, want ErrMalformed", f, b, err)
			}
			if obs.State != "" || obs.Native != "" || obs.Raw != nil {
				t.Errorf("%s %q: an error came with an observation", f, b)
			}
		}
	}
	// The other flavour's status key is not this flavour's status.
	if _, _, err := parseJob(FlavorGeoprocessing, testJob, []byte(`{"jobId":"j","status":"COMPLETED"}`), time.Now(), false); !errors.Is(err, bridge.ErrMalformed) ||
		!strings.Contains(err.Error(), "options.flavor") {
		t.Errorf("GP payload without jobStatus: %v", err)
	}
}

func TestErrorAnswersInsidePayloads(t *testing.T) {
	cases := []struct {
		body     string
		sentinel error
		code     int
	}{
		{`{"error":{"code":404,"message":"Job not found.","details":[]}}`, bridge.ErrNotFound, 404},
		{`{"status":"error","messages":["Job 'j' does not exist or has been deleted."],"code":404}`, bridge.ErrNotFound, 404},
		{`{"error":{"code":498,"message":"Invalid Token","details":[]}}`, bridge.ErrAuth, 498},
		{`{"error":{"code":499,"message":"Token Required","details":[]}}`, bridge.ErrAuth, 499},
		{`{"status":"error","messages":["Invalid token."],"code":"498"}`, bridge.ErrAuth, 498},
		{`{"error":{"code":403,"message":"You do not have permissions to access this resource or perform this operation."}}`, bridge.ErrAuth, 403},
		{`{"error":{"code":500,"message":"An unexpected error occurred."}}`, nil, 500},
		{`{"error":{"code":400,"message":"Invalid URL","details":["x"]}}`, nil, 400},
		{`{"error":"something broke"}`, nil, 0},
		{`{"Error":{"Code":404}}`, bridge.ErrNotFound, 404},
	}
	for _, f := range flavors {
		for _, c := range cases {
			obs, _, err := parseJob(f, testJob, []byte(c.body), time.Now(), false)
			var ae *Error
			if err == nil || !errors.As(err, &ae) || ae.Code != c.code {
				t.Errorf("%s %s: err %v, want an *Error with code %d", f, c.body, err, c.code)
				continue
			}
			if c.sentinel != nil && !errors.Is(err, c.sentinel) {
				t.Errorf("%s %s: err %v does not wrap %v", f, c.body, err, c.sentinel)
			}
			if c.sentinel == nil && (errors.Is(err, bridge.ErrNotFound) || errors.Is(err, bridge.ErrAuth) || errors.Is(err, bridge.ErrMalformed)) {
				t.Errorf("%s %s: err %v is a verdict; want a transient error", f, c.body, err)
			}
			if obs.State != "" {
				t.Errorf("an error answer came with state %s", obs.State)
			}
		}
	}
	// A job whose status happens to be "error" is still a job.
	if obs := parse(t, FlavorEnterprise, []byte(`{"jobid":"j","status":"error"}`)); obs.State != bridge.StateUnknown {
		t.Errorf("%+v", obs)
	}
}

func TestParseError(t *testing.T) {
	e := parseError([]byte(`{"error":{"code":498,"message":"Invalid Token","details":["Token has expired.",7,null]}}`))
	if e == nil || e.Code != 498 || e.Message != "Invalid Token" || len(e.Details) != 2 || e.Details[1] != "7" || !e.authFailure() || e.retryable() {
		t.Fatalf("%+v", e)
	}
	if e.Error() != "ArcGIS error 498: Invalid Token (Token has expired.; 7)" {
		t.Errorf("message %q", e.Error())
	}
	e = parseError([]byte(`{"status":"error","messages":["Unauthorized access. Token not found.","second"],"code":499}`))
	if e == nil || e.Code != 499 || e.Message != "Unauthorized access. Token not found." || len(e.Details) != 1 {
		t.Fatalf("%+v", e)
	}
	for _, b := range []string{
		`{"status":"success"}`, `{"jobid":"j","status":"error"}`, `{"jobStatus":"esriJobFailed","messages":[{"type":"esriJobMessageTypeError","description":"Failed."}]}`,
		`{"error":null}`, `<html>error</html>`, `[{"error":1}]`, ``, `{"error":`,
	} {
		if e := parseError([]byte(b)); e != nil {
			t.Errorf("%s: parsed as an error answer %+v", b, e)
		}
	}
	many := `{"error":{"code":500,"details":[` + strings.Repeat(`"d",`, 20) + `"d"]}}`
	if e := parseError([]byte(many)); len(e.Details) != maxErrorDetails+1 || !strings.Contains(e.Details[maxErrorDetails], "16 more") {
		t.Errorf("details not capped: %v", e.Details)
	}
	for code, want := range map[int]bool{500: true, 503: true, 429: true, 408: true, 400: false, 404: false, 498: false} {
		if got := (&Error{Code: code}).retryable(); got != want {
			t.Errorf("retryable(%d) = %v", code, got)
		}
	}
}

func TestStaticTokenRefusalSaysReplaceIt(t *testing.T) {
	_, _, err := parseJob(FlavorMission, testJob, []byte(`{"error":{"code":498,"message":"Invalid Token"}}`), time.Now(), true)
	if !errors.Is(err, bridge.ErrAuth) || !strings.Contains(err.Error(), "update auth.token") {
		t.Fatalf("err = %v", err)
	}
}

func TestParseJobList(t *testing.T) {
	cases := []struct {
		body    string
		ids     []string
		skipped int
	}{
		{`{"asyncJobs":["j1","j2"]}`, []string{"j1", "j2"}, 0},
		{`{"jobs":["a","b","a"]}`, []string{"a", "b"}, 0},
		{`{"jobs":[]}`, nil, 0},
		{`{"jobs":[{"jobid":"x"},{"id":"y"},{"jobId":"z"},{},7,"",null,"ok"]}`, []string{"x", "y", "z", "ok"}, 4},
		{`{"jobs":["` + strings.Repeat("x", 2000) + `"]}`, nil, 1},
	}
	for _, c := range cases {
		ids, skipped, err := parseJobList([]byte(c.body), false)
		if err != nil || strings.Join(ids, ",") != strings.Join(c.ids, ",") || skipped != c.skipped {
			t.Errorf("%.60s: ids %v skipped %d err %v; want %v %d", c.body, ids, skipped, err, c.ids, c.skipped)
		}
	}
	for _, b := range []string{``, `[]`, `{}`, `{"jobs":"j1"}`, `{"asyncJobs":null}`, `<html/>`} {
		if _, _, err := parseJobList([]byte(b), false); !errors.Is(err, bridge.ErrMalformed) {
			t.Errorf("%q: err %v, want ErrMalformed", b, err)
		}
	}
	if _, _, err := parseJobList([]byte(`{"status":"error","messages":["Token Required"],"code":499}`), false); !errors.Is(err, bridge.ErrAuth) {
		t.Errorf("err %v", err)
	}
}

func TestParseToken(t *testing.T) {
	now := time.Date(2026, 1, 10, 12, 0, 0, 0, time.UTC)
	serverNow := time.Date(2025, 3, 6, 16, 0, 0, 0, time.UTC) // a server clock far behind ours
	exp := serverNow.Add(time.Hour).UnixMilli()
	b := []byte(`{"token":"tok-1","expires":` + itoa(exp) + `,"ssl":true}`)

	tok, note, err := parseToken(b, serverNow.Format(http1123), now)
	if err != nil || note != "" || tok.Value.Reveal() != "tok-1" || !tok.Expiry.Equal(now.Add(time.Hour)) || tok.Extra["ssl"] != "true" {
		t.Fatalf("with Date: %+v %q %v; want an hour from our now", tok, note, err)
	}
	tok, note, err = parseToken(b, "", now)
	if err != nil || !tok.Expiry.IsZero() || !strings.Contains(note, "synchronise the clocks") {
		t.Fatalf("past expiry without Date: %+v %q %v", tok, note, err)
	}
	tok, _, err = parseToken(b, "", serverNow)
	if err != nil || !tok.Expiry.Equal(time.UnixMilli(exp)) {
		t.Fatalf("without Date: %+v %v", tok, err)
	}
	tok, note, err = parseToken([]byte(`{"token":"t"}`), "", now)
	if err != nil || !tok.Expiry.IsZero() || tok.Extra != nil || note == "" {
		t.Fatalf("no expires: %+v %q %v", tok, note, err)
	}
	for _, bad := range []string{`{}`, `{"token":""}`, `{"token":7}`, `{"token":"t","expires":"soon"}`, `{"token":"t","expires":-5}`, `<html/>`, ``} {
		if _, _, err := parseToken([]byte(bad), "", now); !errors.Is(err, bridge.ErrMalformed) {
			t.Errorf("%q: err %v", bad, err)
		}
	}
	if _, _, err := parseToken([]byte(`{"token":"t","expires":`+itoa(serverNow.UnixMilli())+`}`), serverNow.Format(http1123), now); !errors.Is(err, bridge.ErrMalformed) {
		t.Errorf("a token expiring at issue: %v", err)
	}
	if _, _, err := parseToken([]byte(`{"token":"s3cr3t-token-value","expires":"x"}`), "", now); err == nil || strings.Contains(err.Error(), "s3cr3t") {
		t.Errorf("the error quotes the token: %v", err)
	}
}

const http1123 = "Mon, 02 Jan 2006 15:04:05 GMT"

func itoa(n int64) string { b, _ := json.Marshal(n); return string(b) }

func TestParseFlavorAndJobsPath(t *testing.T) {
	for in, want := range map[string]Flavor{"mission": FlavorMission, " Enterprise ": FlavorEnterprise, "GEOPROCESSING": FlavorGeoprocessing} {
		if f, err := ParseFlavor(in); err != nil || f != want {
			t.Errorf("%q → %q %v", in, f, err)
		}
	}
	for _, bad := range []string{"", "gp", "online"} {
		if _, err := ParseFlavor(bad); err == nil || !strings.Contains(err.Error(), "mission, enterprise or geoprocessing") {
			t.Errorf("%q: %v", bad, err)
		}
	}
	for in, want := range map[string]string{"": "/system/jobs", "/jobs/": "/jobs", "/admin/system/jobs": "/admin/system/jobs", "/a%20b": "/a%20b"} {
		if got, err := cleanJobsPath(in, FlavorEnterprise); err != nil || got != want {
			t.Errorf("%q → %q %v", in, got, err)
		}
	}
	for _, bad := range []string{"jobs", "/jobs?f=json", "/a b", "/x#y", "/%zz"} {
		if _, err := cleanJobsPath(bad, FlavorMission); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	if FlavorGeoprocessing.CanDiscover() || !FlavorMission.CanDiscover() || !FlavorEnterprise.CanDiscover() {
		t.Error("CanDiscover")
	}
}
