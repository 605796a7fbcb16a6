package bridge

import (
	"testing"
	"time"
)

// BenchmarkEncode is the CPU and allocations of turning one change into a
// ready NATS message.
func BenchmarkEncode(b *testing.B) {
	enc, _ := NewEncoder(EncoderOptions{Subjects: Subjects{Prefix: "jobs"}, RawCap: 16 << 10})
	c := Change{Kind: KindTransition, Seq: 3, PreviousState: StateRunning, PreviousNative: "ASSIGNED",
		Obs: Observation{Job: JobRef{Vendor: "tso", Instance: "prod", ID: "a1b2c3d4-0000-4000-8000-123456789abc"},
			State: StateSucceeded, Native: "COMPLETED", ObservedAt: time.Now(), Via: DetectedByPoll,
			Raw: []byte(`{"processName":":Demo:Flows:Nightly","name":"Nightly","peerId":"urn:jxta:uuid-5961","startTime":"Mon Nov 23 09:14:02 CST 2026","status":"COMPLETED","outputParameters":[]}`)}}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := enc.Encode(&c); err != nil {
			b.Fatal(err)
		}
	}
}
