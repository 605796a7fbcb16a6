package helix

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/jobbridge/jobbridge/bridge"
)

func FuzzParseStatus(f *testing.F) {
	for _, seed := range []string{
		`{"status": "ENDED", "task_id": 467, "exit_code": "ERROR", "last_exec_ts": "2022-09-06T12:07:34Z"}`,
		`{"status": "ENDED", "task_id": 321, "exit_code": "OK", "last_exec_ts": "2022-09-08T14:56:28Z"}`,
		`{"status":"WAITING","task_id":1,"exit_code":"WARNING","last_exec_ts":"2022-09-08T14:56:28Z"}`,
		`{"status":"running","exit_code":"FAILED"}`, `{"status":"SERVICE_ON","exit_code":null}`, `{"status":"service_off"}`,
		`{"status":"ABORTED","exit_code":7}`, `{"status":null,"task_id":5}`, `{"status":"","exit_code":"","last_exec_ts":""}`,
		`{"task_id":5}`, `{"STATUS":"ENDED","Status":"WAITING","exit_code":"OK"}`, `{"last_exec_ts":{"a":[]}}`,
		`{"status":7}`, `{}`, `[]`, `null`, ``, ` `, `{"status": "RUNN`, `<html><body>error</body></html>`,
		"{\"status\":\"\xff\xfe\",\"exit_code\":\"OK\"}", `{"status":"ENDED","exit_code":"OK","last_exec_ts":"2022-13-45T99:99:99Z"}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		obs, err := buildObservation(testJob, body)
		if err != nil {
			if !errors.Is(err, bridge.ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			if obs.State != "" || obs.Native != "" || obs.Raw != nil || obs.Outcome != nil {
				t.Fatalf("error %v came with an observation %+v", err, obs)
			}
			return
		}
		// Success needs a JSON object.
		var o map[string]json.RawMessage
		if json.Unmarshal(body, &o) != nil || o == nil {
			t.Fatalf("accepted a body that is not a JSON object: %q", body)
		}
		if !obs.State.Valid() {
			t.Fatalf("accepted state %q", obs.State)
		}
		exit := obs.Outcome["exit_code"]
		if r := Map(obs.Native, exit); obs.Outcome != nil && (r.State != obs.State || r.SubState != obs.SubState) {
			t.Fatalf("state %s/%s disagrees with the table's %+v for %q/%q", obs.State, obs.SubState, r, obs.Native, exit)
		}
		if obs.State.Terminal() && obs.Outcome == nil && !isAborted(obs.Native) {
			t.Fatalf("terminal state %s without the exit code that decided it: %+v", obs.State, obs)
		}
		if ts, ok := obs.Times["last_exec_ts"]; ok {
			if ts.Raw != obs.RunID {
				t.Fatalf("RunID %q is not last_exec_ts %q", obs.RunID, ts.Raw)
			}
			if !ts.Normalized.IsZero() && ts.Normalized.Location() != time.UTC {
				t.Fatalf("normalized last_exec_ts %v is not UTC", ts.Normalized)
			}
		}
	})
}

func isAborted(native string) bool { return normalize(native) == "aborted" }

func FuzzParseETLList(f *testing.F) {
	for _, seed := range []string{
		`[{"name": "prod-a", "etl_id": 53, "run_configurations": [{"name": "Default", "active": true, "run_configuration_id": 216}]}]`,
		`[{"name":"x","etl_id":"54"},{"etl_id":null},{"etl_id":{"a":1}},7,null,[]]`, `[]`, `{}`, `null`, ``, `[{"etl_id":"\u0001"}]`,
		`[{"etl_id": 1e400}]`, `<html></html>`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		etls, skipped, err := parseETLList(body)
		if err != nil {
			if !errors.Is(err, bridge.ErrMalformed) || etls != nil {
				t.Fatalf("error %v (ErrMalformed: %v) with %d ETLs", err, errors.Is(err, bridge.ErrMalformed), len(etls))
			}
			return
		}
		if skipped < 0 {
			t.Fatalf("skipped %d", skipped)
		}
		seen := map[string]bool{}
		for _, e := range etls {
			if bridge.ValidateJobID(e.ID) != nil || seen[e.ID] {
				t.Fatalf("listed an invalid or duplicate id %q", e.ID)
			}
			seen[e.ID] = true
		}
	})
}

func FuzzJWTExpiry(f *testing.F) {
	for _, seed := range []string{
		"eyJhbGciOiJIUzI1NiJ9.eyJleHAiOjE5MDAwMDAwMDB9.sig", "a.b.c", "...", "x", "h." + base64URL(`{"exp":1e308}`) + ".s",
		"h." + base64URL(`{"exp":-1}`) + ".s", "h." + base64URL(`{"exp":"1"}`) + ".s",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, tok string) {
		exp, ok := jwtExpiry(tok)
		if !ok {
			if !exp.IsZero() {
				t.Fatalf("not ok but %v", exp)
			}
			return
		}
		if exp.Year() < 1970 || exp.Year() > 9999 || exp.Location() != time.UTC {
			t.Fatalf("exp %v out of range", exp)
		}
	})
}
