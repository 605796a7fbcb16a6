package huawei

import (
	"testing"
	"time"
)

// simPage is what huaweisim answers for a running job with one task: the
// body every steady poll of the benchmark reads.
const simPage = `{"job":{"JOB_ID":"JOB1","JOB_NAME":"provision/provMain","JOB_TYPE":"PROVISION","SERVICE_INSTANCE_ID":"826226ce-c224-1b60-5fa7-0fba60e61970","PROJECT_ID":"063a3158b1a34710b36ad208b9497d00","ORDER_ID":"","JOB_DESC":"provision/provMain","EXECUTION_STATUS":"RUNNING","CREATED_BY":"585cc5c16cda4954b28d4eb460f06261"},"tasks":[{"MESSAGES":"{}","TASK_ID":"T1","TASK_TYPE":"restful","TASK_INDEX":1,"TASK_NAME":"TN00001","TASK_STATUS":"RUNNING","LAST_HEALTH_CHECK":"2026-11-23T21:36:56.312Z","CREATED_AT":"2026-11-23T21:36:56.306Z","OWNER_ID":"cas-mgr-69bb87d7c-wpqwb:30114"}],"task_count":1}`

// BenchmarkParsePage measures parsePage, and parsePage with
// buildObservation (what a poll of one page costs), on the simulator's
// one-task page and on the vendor's five-task example.
func BenchmarkParsePage(b *testing.B) {
	for _, c := range []struct{ name, body string }{{"sim", simPage}, {"example", seedExample}} {
		body := []byte(c.body)
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(body)))
			for b.Loop() {
				if _, _, err := parsePage(body); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(c.name+"+observation", func(b *testing.B) {
			at := time.Unix(0, 0)
			b.ReportAllocs()
			b.SetBytes(int64(len(body)))
			for b.Loop() {
				pg, _, err := parsePage(body)
				if err != nil {
					b.Fatal(err)
				}
				buildObservation(testJob, []page{pg}, at)
			}
		})
	}
}
