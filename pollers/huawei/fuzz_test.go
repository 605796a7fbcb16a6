package huawei

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jobbridge/jobbridge/bridge"
)

func FuzzParsePage(f *testing.F) {
	for _, seed := range []string{
		seedExample,
		`{"job":{"job_id":"J","execution_status":"running"},"tasks":[{"task_id":"t","task_status":"skipped","created_at":"1580788863344"}],"task_count":1}`,
		`{"job":{"EXECUTION_STATUS":"RUNNING"},"tasks":[1,null,{"TASK_ID":"","TASK_STATUS":"RUNNING"},{"TASK_ID":"a","TASK_STATUS":"X"},{"TASK_ID":"a","TASK_STATUS":"Y"}],"task_count":"many"}`,
		`{"job":{"EXECUTION_STATUS":"PARTIALLY_FAILED","execution_status":"SUCCEEDED"},"tasks":null,"task_count":-3}`,
		`{"job":{"EXECUTION_STATUS":" "}}`, `{"job":{"EXECUTION_STATUS":7}}`, `{"job":[]}`, `{"tasks":[]}`, `{}`, `[]`, `null`, ``,
		`{"job": {"JOB_ID": "JOB474362ef", "EXECUTION_STATUS": "RUNN`, `<html>502</html>`,
		`{"error_code":"SVCSTG.00100429","error_msg":"job not found"}`, "{\"job\":{\"EXECUTION_STATUS\":\"\xff\"}}",
		`{"job":{"EXECUTION_STATUS":"RUNNING"},"tasks":[{"TASK_ID":"t","TASK_STATUS":"RUNNING","LAST_HEALTH_CHECK":99999999999999999999}]}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		pg, _, err := parsePage(body)
		if err != nil {
			if !errors.Is(err, bridge.ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			if pg.native != "" || pg.tasks != nil || pg.raw != nil {
				t.Fatalf("error %v came with a page %+v", err, pg)
			}
			return
		}
		var o map[string]json.RawMessage
		if json.Unmarshal(body, &o) != nil || o == nil {
			t.Fatalf("accepted a body that is not a JSON object: %q", body)
		}
		obs := buildObservation(testJob, []page{pg, pg}, time.Unix(0, 0))
		if !obs.State.Valid() || strings.TrimSpace(obs.Native) == "" || obs.Job != testJob {
			t.Fatalf("accepted state %q native %q job %+v", obs.State, obs.Native, obs.Job)
		}
		if m := JobTable().Lookup(obs.Native); m.State != obs.State || m.SubState != obs.SubState {
			t.Fatalf("job %s/%s disagrees with the table for %q", obs.State, obs.SubState, obs.Native)
		}
		ids := map[string]bool{}
		done := 0
		for _, tk := range obs.Tasks {
			if err := bridge.ValidateJobID(tk.Job.Task); err != nil || ids[tk.Job.Task] || tk.Job.ID != testJob.ID {
				t.Fatalf("task %+v: id unusable or repeated (%v)", tk.Job, err)
			}
			ids[tk.Job.Task] = true
			if m := TaskTable().Lookup(tk.Native); m.State != tk.State || m.SubState != tk.SubState || strings.TrimSpace(tk.Native) == "" {
				t.Fatalf("task %s/%s disagrees with the table for %q", tk.State, tk.SubState, tk.Native)
			}
			if tk.State.Terminal() {
				done++
			}
			for k, vt := range tk.Times {
				if !vt.Normalized.IsZero() && vt.Normalized.Location() != time.UTC {
					t.Fatalf("time %s %v is not UTC", k, vt.Normalized)
				}
			}
		}
		if p := obs.Progress; p != nil && (*p.StepsDone != done || *p.StepsTotal < len(obs.Tasks) || *p.StepsTotal == 0) {
			t.Fatalf("progress %d/%d with %d tasks, %d done", *p.StepsDone, *p.StepsTotal, len(obs.Tasks), done)
		}
	})
}

func FuzzParseErrorBody(f *testing.F) {
	for _, seed := range []string{
		`{"error_code":"APIG.0308","error_msg":"x"}`, `{"error":{"code":401,"message":"m"}}`, `{"errorCode":"c","errorMessage":"m"}`,
		`{"error":null}`, `{"error":[1]}`, `{}`, `[]`, ``, `<`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		e, ok := parseErrorBody(body)
		if ok && e.Code == "" && e.Message == "" {
			t.Fatal("recognised an empty error")
		}
		if !ok && e != (vendorError{}) {
			t.Fatalf("unrecognised body yielded %+v", e)
		}
		if len(e.Code) > maxErrorText+8 || len(e.Message) > maxErrorText+8 {
			t.Fatalf("unbounded error text: %d/%d bytes", len(e.Code), len(e.Message))
		}
	})
}
