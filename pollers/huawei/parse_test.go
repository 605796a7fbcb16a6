package huawei

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jobbridge/jobbridge/bridge"
	"github.com/jobbridge/jobbridge/pollers/pollkit"
)

var testJob = bridge.JobRef{Vendor: Vendor, Instance: "ap", ID: "JOB-1"}

// wantJobTable and wantTaskTable are vendor-apis.md §4.5 written out again,
// so a change to a table in code must be made twice to pass.
var wantJobTable = []pollkit.Row{
	{Native: "SUBMITTED", State: bridge.StatePending},
	{Native: "SCHEDULED", State: bridge.StatePending, SubState: "scheduled"},
	{Native: "RUNNING", State: bridge.StateRunning},
	{Native: "ROLLBACKING", State: bridge.StateRunning, SubState: "rolling_back"},
	{Native: "SUCCEEDED", State: bridge.StateSucceeded},
	{Native: "FAILED", State: bridge.StateFailed},
	{Native: "PARTIALLY_FAILED", State: bridge.StateFailed, SubState: "partial"},
	{Native: "ROLLBACKED", State: bridge.StateFailed, SubState: "rolled_back"},
	{Native: "CANCELLED", State: bridge.StateCanceled},
	{Native: "UNKNOWN", State: bridge.StateUnknown},
}

var wantTaskTable = []pollkit.Row{
	{Native: "SUBMITTED", State: bridge.StatePending},
	{Native: "SCHEDULED", State: bridge.StatePending, SubState: "scheduled"},
	{Native: "RUNNING", State: bridge.StateRunning},
	{Native: "ROLLBACKING", State: bridge.StateRunning, SubState: "rolling_back"},
	{Native: "SUCCEEDED", State: bridge.StateSucceeded},
	{Native: "SKIPPED", State: bridge.StateSucceeded, SubState: "skipped"},
	{Native: "FAILED", State: bridge.StateFailed},
	{Native: "PARTIALLY_FAILED", State: bridge.StateFailed, SubState: "partial"},
	{Native: "ROLLBACKED", State: bridge.StateFailed, SubState: "rolled_back"},
	{Native: "CANCELLED", State: bridge.StateCanceled},
	{Native: "UNKNOWN", State: bridge.StateUnknown},
}

// seedExample is the vendor page's example response, verbatim.
const seedExample = `{ "job": { "JOB_ID": "JOB474362ef-091d-429f-9b3e-c9246b37dee6", "JOB_NAME": "provision/provMain", "JOB_TYPE": "PROVISION", "SERVICE_INSTANCE_ID": "429a35a0-dee8-4648-86f6-d1f8bc74ba52", "PROJECT_ID": "063a3158b1a34710b36ad208b9497d00", "ORDER_ID": "", "JOB_DESC": "provision/provMain", "EXECUTION_STATUS": "FAILED", "CREATED_BY": "585cc5c16cda4954b28d4eb460f06261" }, "tasks": [ { "MESSAGES": "{}", "TASK_ID": "Task-bc64b46c-1688-4787-b7ff-87cb53b346ea", "TASK_TYPE": "echo", "TASK_INDEX": 1, "TASK_NAME": "SEPARATOR_PREPARE_RESOURCES", "TASK_STATUS": "SUCCEEDED", "LAST_HEALTH_CHECK": "2020-02-04T04:01:03.344Z", "CREATED_AT": "2020-02-04T04:01:03.344Z", "OWNER_ID": "cas-mgr-69bb87d7c-wpqwb:30114" }, { "MESSAGES": "{}", "TASK_ID": "Task-15ec252f-bca0-401e-ae5b-798a639df92e", "TASK_TYPE": "echo", "TASK_INDEX": 4, "TASK_NAME": "SEPARATOR_BUILDING", "TASK_STATUS": "SUCCEEDED", "LAST_HEALTH_CHECK": "2020-02-04T04:01:03.346Z", "CREATED_AT": "2020-02-04T04:01:03.345Z", "OWNER_ID": "cas-mgr-69bb87d7c-wpqwb:30114" }, { "MESSAGES": "{}", "TASK_ID": "Task-52a5d1ae-2c54-46ec-8134-53e7b6a45fb7", "TASK_TYPE": "restful", "TASK_INDEX": 6, "TASK_NAME": "TN00091", "TASK_STATUS": "SUCCEEDED", "LAST_HEALTH_CHECK": "2020-02-04T04:01:08.924Z", "CREATED_AT": "2020-02-04T04:01:03.346Z", "OWNER_ID": "cas-mgr-69bb87d7c-wpqwb:30114" }, { "MESSAGES": "{}", "TASK_ID": "Task-a149b585-d31b-4c72-a665-d820efcb0bf9", "TASK_TYPE": "restful", "TASK_INDEX": 7, "TASK_NAME": "TN00094", "TASK_STATUS": "SUCCEEDED", "LAST_HEALTH_CHECK": "2020-02-04T04:01:08.961Z", "CREATED_AT": "2020-02-04T04:01:08.925Z", "OWNER_ID": "cas-mgr-69bb87d7c-wpqwb:30114" }, { "MESSAGES": "{ \"Message\" : \"ECC00011\", \"Detail\" : \"Building failed.\" }", "TASK_ID": "Task-a72fe8d8-8cc1-42b5-a097-0cf9e29692a7", "TASK_TYPE": "restful", "TASK_INDEX": 9, "TASK_NAME": "TN00097", "TASK_STATUS": "FAILED", "LAST_HEALTH_CHECK": "2020-02-04T04:01:38.975Z", "CREATED_AT": "2020-02-04T04:01:08.962Z", "OWNER_ID": "cas-mgr-69bb87d7c-wpqwb:30114" } ], "task_count": 5 }`

func observe(t *testing.T, bodies ...string) bridge.Observation {
	t.Helper()
	var pages []page
	for _, b := range bodies {
		pg, _, err := parsePage([]byte(b))
		if err != nil {
			t.Fatalf("parsePage(%s): %v", b, err)
		}
		pages = append(pages, pg)
	}
	return buildObservation(testJob, pages, time.Unix(100, 0))
}

func jobBody(jobStatus string, tasks ...[2]string) string {
	var ts []map[string]any
	for _, t := range tasks {
		ts = append(ts, map[string]any{"TASK_ID": t[0], "TASK_STATUS": t[1]})
	}
	b, _ := json.Marshal(map[string]any{"job": map[string]any{"JOB_ID": "JOB-1", "EXECUTION_STATUS": jobStatus}, "tasks": ts, "task_count": len(ts)})
	return string(b)
}

func TestMappingTablesAreTheDocumentedOnes(t *testing.T) {
	for name, c := range map[string]struct {
		got  []pollkit.Row
		want []pollkit.Row
	}{"job": {JobTable().Rows(), wantJobTable}, "task": {TaskTable().Rows(), wantTaskTable}} {
		if len(c.got) != len(c.want) {
			t.Fatalf("%s table has %d rows, want %d", name, len(c.got), len(c.want))
		}
		for i := range c.got {
			if c.got[i] != c.want[i] {
				t.Errorf("%s row %d = %+v, want %+v", name, i, c.got[i], c.want[i])
			}
		}
	}
}

func TestJobMappingPerRow(t *testing.T) {
	for _, row := range JobTable().Rows() {
		for _, spelling := range []string{row.Native, strings.ToLower(row.Native), " " + row.Native + "\t"} {
			t.Run(row.Native+"/"+spelling, func(t *testing.T) {
				obs := observe(t, jobBody(spelling))
				if obs.State != row.State || obs.SubState != row.SubState || obs.Native != spelling {
					t.Fatalf("%q → %s/%q native %q, want %s/%q verbatim", spelling, obs.State, obs.SubState, obs.Native, row.State, row.SubState)
				}
			})
		}
	}
}

func TestTaskMappingPerRow(t *testing.T) {
	for _, row := range TaskTable().Rows() {
		for _, spelling := range []string{row.Native, strings.ToLower(row.Native)} {
			t.Run(row.Native+"/"+spelling, func(t *testing.T) {
				obs := observe(t, jobBody("RUNNING", [2]string{"T1", spelling}))
				if len(obs.Tasks) != 1 {
					t.Fatalf("tasks %+v", obs.Tasks)
				}
				tk := obs.Tasks[0]
				if tk.State != row.State || tk.SubState != row.SubState || tk.Native != spelling || tk.Job.Task != "T1" || tk.Job.ID != testJob.ID {
					t.Fatalf("%q → %+v, want %s/%q", spelling, tk, row.State, row.SubState)
				}
			})
		}
	}
}

func TestUnknownStatusesMapToUnknown(t *testing.T) {
	// SKIPPED is a task status only; the others are undocumented.
	for _, s := range []string{"SKIPPED", "DONE", "CANCELED", "IN_PROGRESS"} {
		obs := observe(t, jobBody(s, [2]string{"T", s + "_X"}))
		if obs.State != bridge.StateUnknown || obs.Native != s || obs.Tasks[0].State != bridge.StateUnknown {
			t.Errorf("%q: %+v", s, obs)
		}
	}
}

func TestSeedExample(t *testing.T) {
	obs := observe(t, seedExample)
	if obs.State != bridge.StateFailed || obs.Native != "FAILED" || obs.Job != testJob || len(obs.Tasks) != 5 {
		t.Fatalf("%+v", obs)
	}
	if string(obs.Raw) != seedExample {
		t.Error("Raw is not the payload as received")
	}
	if p := obs.Progress; p == nil || *p.StepsDone != 5 || *p.StepsTotal != 5 {
		t.Errorf("progress %+v", obs.Progress)
	}
	last := obs.Tasks[4]
	if last.Job.Task != "Task-a72fe8d8-8cc1-42b5-a097-0cf9e29692a7" || last.State != bridge.StateFailed || !strings.Contains(string(last.Raw), "Building failed.") {
		t.Errorf("last task %+v raw %s", last, last.Raw)
	}
	ct := last.Times["CREATED_AT"]
	if ct.Raw != "2020-02-04T04:01:08.962Z" || !ct.Normalized.Equal(time.Date(2020, 2, 4, 4, 1, 8, 962e6, time.UTC)) {
		t.Errorf("CREATED_AT %+v", ct)
	}
	if _, ok := last.Times["LAST_HEALTH_CHECK"]; !ok || last.Outcome != nil {
		t.Errorf("times %+v outcome %+v", last.Times, last.Outcome)
	}
}

func TestV3LowerCaseKeys(t *testing.T) {
	obs := observe(t, `{"job":{"job_id":"JOB-1","execution_status":"RUNNING"},"tasks":[{"task_id":"t","task_status":"SKIPPED","created_at":"1580788863344"}],"task_count":3}`)
	if obs.State != bridge.StateRunning || len(obs.Tasks) != 1 || obs.Tasks[0].SubState != "skipped" {
		t.Fatalf("%+v", obs)
	}
	if p := obs.Progress; *p.StepsDone != 1 || *p.StepsTotal != 3 {
		t.Errorf("progress %d/%d, want 1 of task_count 3", *p.StepsDone, *p.StepsTotal)
	}
	if ct := obs.Tasks[0].Times["created_at"]; ct.Raw != "" {
		t.Errorf("times are keyed by the v2 name: %+v", obs.Tasks[0].Times)
	}
	if ct := obs.Tasks[0].Times["CREATED_AT"]; !ct.Normalized.Equal(time.UnixMilli(1580788863344).UTC()) {
		t.Errorf("epoch CREATED_AT %+v", ct)
	}
}

func TestPagesMerge(t *testing.T) {
	obs := observe(t,
		jobBody("RUNNING", [2]string{"a", "SUCCEEDED"}, [2]string{"b", "RUNNING"}),
		jobBody("SUCCEEDED", [2]string{"b", "SUCCEEDED"}, [2]string{"c", "RUNNING"}))
	// The job's status is the first page's; b keeps its place and its newest state.
	if obs.Native != "RUNNING" || len(obs.Tasks) != 3 {
		t.Fatalf("%+v", obs)
	}
	var got []string
	for _, tk := range obs.Tasks {
		got = append(got, tk.Job.Task+"="+tk.Native)
	}
	if strings.Join(got, " ") != "a=SUCCEEDED b=SUCCEEDED c=RUNNING" {
		t.Errorf("tasks %v", got)
	}
	if p := obs.Progress; *p.StepsDone != 2 || *p.StepsTotal != 3 {
		t.Errorf("progress %d/%d", *p.StepsDone, *p.StepsTotal)
	}
	if obs := observe(t, `{"job":{"EXECUTION_STATUS":"RUNNING"}}`); obs.Progress != nil || obs.Tasks != nil {
		t.Errorf("no tasks: %+v", obs)
	}
}

func TestOddTasksAreDroppedNotFatal(t *testing.T) {
	body := `{"job":{"EXECUTION_STATUS":"RUNNING"},"tasks":[1,null,{"TASK_ID":"","TASK_STATUS":"RUNNING"},{"TASK_ID":"x"},{"TASK_ID":7,"TASK_STATUS":"RUNNING"},{"TASK_ID":"bad\u0001id","TASK_STATUS":"RUNNING"},{"TASK_ID":"ok","TASK_STATUS":"RUNNING"}],"task_count":"many"}`
	pg, notes, err := parsePage([]byte(body))
	if err != nil {
		t.Fatal(err)
	}
	if len(pg.tasks) != 1 || pg.tasks[0].id != "ok" || pg.taskCount != -1 || len(notes) != 7 {
		t.Fatalf("tasks %+v count %d notes %q", pg.tasks, pg.taskCount, notes)
	}
}

func TestMalformedPages(t *testing.T) {
	for _, body := range []string{
		``, `null`, `[]`, `"x"`, `{}`, `{"job":null}`, `{"job":"RUNNING"}`, `{"job":{}}`,
		`{"job":{"EXECUTION_STATUS":""}}`, `{"job":{"EXECUTION_STATUS":3}}`, `{"job":{"EXECUTION_STATUS":"RUNNING"},"tasks":{}}`,
		`<html>502</html>`, `{"job": {"JOB_ID": "JOB474362ef", "EXECUTION_STATUS": "RUNN`,
		`{"error_code":"SVCSTG.00100429","error_msg":"job not found"}`,
	} {
		_, _, err := parsePage([]byte(body))
		if !errors.Is(err, bridge.ErrMalformed) {
			t.Errorf("%q: err = %v, want ErrMalformed", body, err)
		}
	}
	_, _, err := parsePage([]byte(`{"error_code":"APIG.0308","error_msg":"throttled"}`))
	if err == nil || !strings.Contains(err.Error(), "APIG.0308") {
		t.Errorf("an error envelope in a 200 is not named: %v", err)
	}
}

func TestParseTime(t *testing.T) {
	for _, c := range []struct {
		in   string
		want time.Time
	}{
		{"2020-02-04T04:01:03.344Z", time.Date(2020, 2, 4, 4, 1, 3, 344e6, time.UTC)},
		{"2020-02-04T12:01:03+08:00", time.Date(2020, 2, 4, 4, 1, 3, 0, time.UTC)},
		{"2020-02-04 04:01:03", time.Date(2020, 2, 4, 4, 1, 3, 0, time.UTC)},
		{"1580788863344", time.UnixMilli(1580788863344).UTC()},
		{"1580788863", time.Unix(1580788863, 0).UTC()},
		{"0", time.Time{}},
		{"yesterday", time.Time{}},
		{"99999999999999999999", time.Time{}},
		{"", time.Time{}},
	} {
		vt := parseTime(c.in)
		if vt.Raw != c.in || !vt.Normalized.Equal(c.want) || (!vt.Normalized.IsZero() && vt.Normalized.Location() != time.UTC) {
			t.Errorf("parseTime(%q) = %+v, want %v", c.in, vt, c.want)
		}
	}
}

func TestManyTasks(t *testing.T) {
	var tasks [][2]string
	for i := range 300 {
		tasks = append(tasks, [2]string{fmt.Sprintf("t%03d", i), "SUCCEEDED"})
	}
	obs := observe(t, jobBody("SUCCEEDED", tasks...))
	if len(obs.Tasks) != 300 || *obs.Progress.StepsDone != 300 {
		t.Fatalf("%d tasks", len(obs.Tasks))
	}
}
