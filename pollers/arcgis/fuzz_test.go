package arcgis

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jobbridge/jobbridge/bridge"
)

func FuzzParseJob(f *testing.F) {
	for _, seed := range []string{
		`{"jobId":"j5","messages":["a"],"startTime":1590523221196,"endTime":1590523287507,"type":"addMission","status":"COMPLETED","username":"admin","customAttributes":{"stepsCompleted":5,"isCancelled":false,"missionId":"d9","messageCodes":[1500],"totalSteps":5}}`,
		`{"status":"COMPLETED","customAttributes":{"isCancelled":"true","stepsCompleted":"x","totalSteps":1e300}}`,
		`{"jobid":"jc","status":"COMPLETED","totalsteps":3,"currentstep":3,"stepInfo":[],"operationResponse":{"status":"error","messages":["service failed to start"]}}`,
		`{"updatedtime":1635961542589,"jobid":"j2","endtime":0,"starttime":1635961542583,"status":"EXECUTING","result":{"status":"failed"}}`,
		`{"jobId":"j4","jobStatus":"esriJobExecuting","progress":{"type":"step","message":"m","percentage":40},"messages":[]}`,
		`{"jobStatus":"esriJobTimedOut","progress":{"percentage":-1}}`,
		`{"error":{"code":498,"message":"Invalid Token","details":[]}}`,
		`{"status":"error","messages":["Job 'x' does not exist."],"code":404}`,
		`{"error":"x"}`, `{"status":"error"}`, `{"status":" "}`, `{"jobStatus":7}`, `{}`, `[]`, `null`, ``, `{"status":"EXEC`,
		`<html><body>ArcGIS</body></html>`, `{"STATUS":"FAILED","Status":"COMPLETED"}`, "{\"status\":\"\xff\xfe\"}",
		`{"status":"COMPLETED","startTime":9007199254740993,"endTime":-1}`,
	} {
		for i := range flavors {
			f.Add([]byte(seed), uint8(i))
		}
	}
	f.Fuzz(func(t *testing.T, body []byte, which uint8) {
		fl := flavors[int(which)%len(flavors)]
		obs, _, err := parseJob(fl, testJob, body, time.Unix(0, 0), false)
		if err != nil {
			if obs.State != "" || obs.Native != "" || obs.Raw != nil || obs.Progress != nil {
				t.Fatalf("error %v came with an observation %+v", err, obs)
			}
			var o map[string]json.RawMessage
			if json.Unmarshal(body, &o) != nil || o == nil {
				// Not a JSON object at all: always malformed.
				if !errors.Is(err, bridge.ErrMalformed) {
					t.Fatalf("non-object %q: error %v does not wrap ErrMalformed", body, err)
				}
			}
			var ae *Error
			if !errors.Is(err, bridge.ErrMalformed) && !errors.As(err, &ae) {
				t.Fatalf("error %v is neither malformed nor an ArcGIS error answer", err)
			}
			return
		}
		var o map[string]json.RawMessage
		if json.Unmarshal(body, &o) != nil || o == nil {
			t.Fatalf("accepted a body that is not a JSON object: %q", body)
		}
		if !obs.State.Valid() || strings.TrimSpace(obs.Native) == "" {
			t.Fatalf("accepted state %q native %q", obs.State, obs.Native)
		}
		m := StatusTable(fl).Lookup(obs.Native)
		// The outcome rules may only overrule a status in their direction.
		switch {
		case m.State == obs.State:
		case fl == FlavorMission && obs.State == bridge.StateCanceled && m.State.Terminal() && obs.Outcome[OutcomeIsCancelled] == "true":
		case fl == FlavorEnterprise && obs.State == bridge.StateFailed && m.State == bridge.StateSucceeded:
		default:
			t.Fatalf("state %s disagrees with the table's %s for %q without a rule", obs.State, m.State, obs.Native)
		}
		for k, vt := range obs.Times {
			if !vt.Normalized.IsZero() && vt.Normalized.Location() != time.UTC {
				t.Fatalf("time %s not UTC", k)
			}
		}
		if p := obs.Progress; p != nil {
			if p.StepsDone != nil && *p.StepsDone < 0 || p.StepsTotal != nil && *p.StepsTotal < 0 || p.Percent != nil && *p.Percent < 0 {
				t.Fatalf("negative progress %+v", p)
			}
			if p.Percent == nil && p.StepsDone == nil && p.StepsTotal == nil && p.Message == "" {
				t.Fatal("an empty progress")
			}
			if len(p.Message) > maxVerbatim+4 {
				t.Fatalf("progress message of %d bytes", len(p.Message))
			}
		}
		if _, err := json.Marshal(obs.Outcome); err != nil {
			t.Fatal(err)
		}
	})
}

func FuzzParseError(f *testing.F) {
	for _, seed := range []string{
		`{"error":{"code":498,"message":"Invalid Token","details":["Token has expired."]}}`,
		`{"status":"error","messages":["Invalid token."],"code":498}`,
		`{"error":{"code":"5e2","details":"x"}}`, `{"error":[1]}`, `{"status":"error","code":1e99}`,
		`{"jobid":"j","status":"error"}`, `{"error":null}`, `{}`, ``, `<html>error</html>`, `{"ERROR":{"CODE":404}}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		e := parseError(body)
		if e == nil {
			return
		}
		var o map[string]json.RawMessage
		if json.Unmarshal(body, &o) != nil || o == nil {
			t.Fatalf("an error answer from a non-object %q", body)
		}
		if e.Code < 0 || len(e.Message) > maxErrorText+8 || len(e.Details) > maxErrorDetails+1 {
			t.Fatalf("unbounded error %+v", e)
		}
		_ = e.Error()
		if err := e.asPollError(false); err == nil {
			t.Fatal("asPollError returned nil")
		}
	})
}

func FuzzParseToken(f *testing.F) {
	for _, seed := range []string{
		`{"token":"abc","expires":1741280400000,"ssl":false}`, `{"token":"abc"}`, `{"token":"abc","expires":"1741280400000"}`,
		`{"token":"","expires":1}`, `{"token":"a","expires":1e300}`, `{}`, `null`, ``, `<html/>`,
	} {
		f.Add([]byte(seed), "Thu, 06 Mar 2025 16:00:00 GMT")
		f.Add([]byte(seed), "")
	}
	now := time.Date(2025, 3, 6, 16, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, body []byte, date string) {
		tok, _, err := parseToken(body, date, now)
		if err != nil {
			if !tok.Value.IsZero() {
				t.Fatalf("error %v came with a token", err)
			}
			return
		}
		if strings.TrimSpace(tok.Value.Reveal()) == "" {
			t.Fatal("accepted an empty token")
		}
		if !tok.Expiry.IsZero() && !tok.Expiry.After(now) {
			t.Fatalf("accepted an expiry %v not after now", tok.Expiry)
		}
	})
}

func FuzzParseJobList(f *testing.F) {
	for _, seed := range []string{
		`{"asyncJobs":["j1","j2"]}`, `{"jobs":["a","a",{"jobid":"b"},7,null]}`, `{"jobs":"x"}`, `{}`, `[]`, ``,
		`{"status":"error","messages":["Token Required"],"code":499}`, `{"jobs":["a.b *>","../x"]}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		ids, _, err := parseJobList(body, false)
		if err != nil {
			if ids != nil {
				t.Fatalf("error %v came with ids", err)
			}
			return
		}
		seen := map[string]bool{}
		for _, id := range ids {
			if bridge.ValidateJobID(id) != nil || seen[id] {
				t.Fatalf("listed an invalid or repeated id %q", id)
			}
			seen[id] = true
		}
	})
}
