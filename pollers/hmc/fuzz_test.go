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

func FuzzParseJobStatus(f *testing.F) {
	for _, seed := range []string{
		"{\n\"job-reason-code\": 0,\n\"job-status-code\": 200,\n\"status\": \"complete\"\n}",
		`{"status":"running"}`, `{"status":"cancel-pending"}`,
		`{"status":"canceled","job-status-code":500,"job-reason-code":263}`,
		`{"status":"complete","job-status-code":400,"job-reason-code":1,"job-results":{"message":"x"}}`,
		`{"status":"complete"}`, `{"status":"complete","job-status-code":null}`,
		`{"status":"complete","job-status-code":"200"}`, `{"status":"complete","job-status-code":2e2}`,
		`{"status":"complete","job-status-code":-9223372036854775809}`,
		`{"STATUS":"complete","Job-Status-Code":204}`, `{"status":"  "}`, `{"status":7}`, `{}`, `[]`, `null`, ``,
		`{"status":"compl`, `<html><body>error</body></html>`, "{\"status\":\"\xff\xfe\"}",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		obs, err := buildObservation(testJob, body, time.Unix(0, 0))
		if err != nil {
			if !errors.Is(err, bridge.ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			if obs.State != "" || obs.Native != "" || obs.Raw != nil || obs.Outcome != nil {
				t.Fatalf("error %v came with an observation %+v", err, obs)
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
		m := StatusTable().Lookup(obs.Native)
		if m.SubState != obs.SubState {
			t.Fatalf("substate %q disagrees with the table's %+v", obs.SubState, m)
		}
		switch {
		case strings.EqualFold(strings.TrimSpace(obs.Native), "complete"):
			// Succeeded exactly when a 2xx status code is in the outcome.
			code, ok := obs.Outcome[OutcomeStatusCode]
			ok2xx := ok && len(code) == 3 && code[0] == '2'
			if (obs.State == bridge.StateSucceeded) != ok2xx || (obs.State != bridge.StateSucceeded && obs.State != bridge.StateFailed) {
				t.Fatalf("complete with outcome %v → %s", obs.Outcome, obs.State)
			}
		case m.State != obs.State:
			t.Fatalf("state %s disagrees with the table's %+v for %q", obs.State, m, obs.Native)
		}
		for k, v := range obs.Outcome {
			if k != OutcomeStatusCode && k != OutcomeReasonCode {
				t.Fatalf("unexpected outcome key %q", k)
			}
			if _, ok := intField(pollkit.Object{k: json.RawMessage(v)}, k); !ok {
				t.Fatalf("outcome %s=%q is not an integer", k, v)
			}
		}
	})
}

func FuzzParseAPIError(f *testing.F) {
	for _, seed := range []string{
		`{"http-status":403,"reason":5,"message":"x"}`, `{"reason":"5"}`, `{"reason":5.0}`, `<html/>`, ``, `null`, `[]`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		e, ok := parseAPIError(body)
		if !ok && e != (apiError{}) {
			t.Fatalf("not an error body, yet %+v", e)
		}
		_ = isSessionFailure(&pollkit.Response{StatusCode: 403, Body: body})
	})
}
