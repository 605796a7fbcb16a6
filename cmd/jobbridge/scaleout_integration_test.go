//go:build integration

package main

import "testing"

// TestIntegrationScaleOutSIGKILLAgainstRealNATS runs three `jobbridge run`
// replicas against the machine's NATS (JOBBRIDGE_IT_NATS_URL), in a stream,
// subject prefix and buckets of its own that it deletes, and SIGKILLs one.
func TestIntegrationScaleOutSIGKILLAgainstRealNATS(t *testing.T) {
	url := itNATS(t)
	stream, prefix, buckets := itNames(t, url)
	checkScaleOutProcesses(t, scaleOutOptions{natsURL: url, stream: stream, prefix: prefix, buckets: buckets, jobs: 40})
}
