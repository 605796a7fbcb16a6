package hmc

import (
	"testing"
	"time"
)

// BenchmarkParseJobStatus measures buildObservation on the poll path: the
// simulator's running job (what every steady poll reads) and IBM's example
// of a completed one.
func BenchmarkParseJobStatus(b *testing.B) {
	for _, c := range []struct{ name, body string }{
		{"running", `{"status":"running"}`},
		{"example", "{\n\"job-reason-code\": 0,\n\"job-status-code\": 200,\n\"status\": \"complete\"\n}"},
	} {
		b.Run(c.name, func(b *testing.B) {
			body := []byte(c.body)
			at := time.Unix(0, 0)
			b.ReportAllocs()
			b.SetBytes(int64(len(body)))
			for b.Loop() {
				if _, err := buildObservation(testJob, body, at); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
