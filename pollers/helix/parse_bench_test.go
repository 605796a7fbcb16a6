package helix

import "testing"

// BenchmarkParseStatus measures buildObservation on the poll path: the
// simulator's running ETL (what every steady poll reads) and the vendor
// doc's ended run.
func BenchmarkParseStatus(b *testing.B) {
	for _, c := range []struct{ name, body string }{
		{"running", `{"status": "RUNNING", "task_id": 100146}`},
		{"example", "{\n \"status\": \"ENDED\",\n \"task_id\": 467,\n \"exit_code\": \"ERROR\",\n \"last_exec_ts\": \"2022-09-06T12:07:34Z\"\n}"},
	} {
		b.Run(c.name, func(b *testing.B) {
			body := []byte(c.body)
			b.ReportAllocs()
			b.SetBytes(int64(len(body)))
			for b.Loop() {
				if _, err := buildObservation(testJob, body); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
