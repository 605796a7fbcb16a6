package tsosim

import (
	"bytes"
	"testing"
)

// FuzzLoadScenario: a scenario file is either refused or gives Options a
// server accepts; the strict YAML loader never panics.
func FuzzLoadScenario(f *testing.F) {
	f.Add([]byte("jobs:\n  - id: a\n    script:\n      - {status: READY, for: 1s}\n      - {status: COMPLETED}\nfaults:\n  - {kind: status, status: 503, count: 2, at: 5s}\n"))
	f.Add([]byte("context: baoap\nzone: Europe/Berlin\ntokenTTL: 30s\nusers: {ops: pw}\n"))
	f.Add([]byte("faults: [{kind: delay}]"))
	f.Add([]byte("jobs: [{id: \"\"}]"))
	f.Add([]byte("zone: ../../etc/passwd"))
	f.Add([]byte("{\"jobs\": [{\"id\": \"x\", \"script\": [{\"status\": \"RUNNING\", \"for\": \"-1s\"}]}]}"))
	f.Fuzz(func(t *testing.T, data []byte) {
		opts, err := LoadScenario(bytes.NewReader(data))
		if err != nil {
			return
		}
		if _, err := newServer(opts); err != nil {
			t.Fatalf("LoadScenario accepted options the server refuses: %v", err)
		}
	})
}
