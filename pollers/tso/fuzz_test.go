package tso

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jobbridge/jobbridge/bridge"
)

func FuzzParseStatus(f *testing.F) {
	for _, seed := range []string{
		`{"processName": ":AutoPilot-AD-Utilities:HTTP:Get", "name": "Get", "peerId": "urn:jxta:uuid-5961", "startTime": "Wed Dec 31 17:59:59 CST 1969", "status": "COMPLETED", "outputParameters": [{"name": "status code", "value": "<result>200</result>"}]}`,
		`{"ProcessName":":A:B","status":"in_progress","startTime":"Mon Jul 07 10:15:30 GMT+05:30 2025"}`,
		`{"status":"PAUSED","outputParameters":"x"}`,
		`{"status":"CANCELLED","outputParameters":[1,null,{"name":null},{"name":"a","value":{"b":[]}}]}`,
		`{"status":"  "}`, `{"status":7}`, `{"status":null}`, `{}`, `[]`, `null`, ``, `{"status":"COMPL`,
		`<html><body>error</body></html>`, `{"STATUS":"FAILED","Status":"COMPLETED"}`, "{\"status\":\"\xff\xfe\"}",
		`{"status":"READY","startTime":"Sun Nov 02 01:30:00 CST 2025"}`,
	} {
		f.Add([]byte(seed))
	}
	zone := time.FixedZone("CST", -6*3600)
	f.Fuzz(func(t *testing.T, body []byte) {
		obs, _, err := buildObservation(testJob, body, zone, time.Unix(0, 0))
		if err != nil {
			if !errors.Is(err, bridge.ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			if obs.State != "" || obs.Native != "" || obs.Raw != nil {
				t.Fatalf("error %v came with an observation %+v", err, obs)
			}
			return
		}
		// Success needs a JSON object with a non-empty string status.
		var o map[string]json.RawMessage
		if json.Unmarshal(body, &o) != nil || o == nil {
			t.Fatalf("accepted a body that is not a JSON object: %q", body)
		}
		if !obs.State.Valid() || strings.TrimSpace(obs.Native) == "" {
			t.Fatalf("accepted state %q native %q", obs.State, obs.Native)
		}
		if m := StatusTable().Lookup(obs.Native); m.State != obs.State || m.SubState != obs.SubState {
			t.Fatalf("state %s/%s disagrees with the table's %+v for %q", obs.State, obs.SubState, m, obs.Native)
		}
		if st, ok := obs.Times["startTime"]; ok && !st.Normalized.IsZero() && st.Normalized.Location() != time.UTC {
			t.Fatalf("normalized start %v is not UTC", st.Normalized)
		}
		for k, v := range obs.Outcome {
			if len(v) > maxOutcomeValue+64 {
				t.Fatalf("outcome %q is %d bytes, over the cap", k, len(v))
			}
		}
	})
}
