package tso

import (
	"testing"
	"time"
)

// BenchmarkParseStatus measures buildObservation on the poll path: the
// simulator's running job (what every steady poll reads) and the vendor
// doc's example with its output parameters.
func BenchmarkParseStatus(b *testing.B) {
	for _, c := range []struct{ name, body string }{
		{"running", `{"processName":":Sim:Jobs:Process","name":"Process","peerId":"urn:jxta:uuid-59616261646162614E50472050325033E4830C5CEFF54C8284FFA9C2FE3C3B8503","startTime":"Mon Nov 23 15:36:56 CST 2026","status":"ASSIGNED","outputParameters":[]}`},
		{"example", `{"ProcessName": ":AutoPilot-AD-Utilities:HTTP:Get", "name": "Get",
	 "peerId": "urn:jxta:uuid-59616261646162614E50472050325033E4830C5CEFF54C8284FFA9C2FE3C3B8503",
	 "startTime": "Wed Dec 31 17:59:59 CST 1969", "status": "COMPLETED",
	 "outputParameters": [{"name": "status code", "value": "<result>200</result>"},
	                      {"name": "status reason", "value": "<result>OK</result>"}]}`},
	} {
		b.Run(c.name, func(b *testing.B) {
			body := []byte(c.body)
			at := time.Unix(0, 0)
			b.ReportAllocs()
			b.SetBytes(int64(len(body)))
			for b.Loop() {
				if _, _, err := buildObservation(testJob, body, nil, at); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
