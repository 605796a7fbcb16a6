//go:build integration

package main

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// The integration tests run against the NATS server this machine kind
// provides (JOBBRIDGE_IT_NATS_URL, default nats://127.0.0.1:4222). Each
// uses its own stream, subject prefix and buckets, and deletes them, so it
// never touches anything else on that server.

func itNATS(t *testing.T) string {
	t.Helper()
	url := os.Getenv("JOBBRIDGE_IT_NATS_URL")
	if url == "" {
		url = nats.DefaultURL
	}
	nc, err := nats.Connect(url, nats.Timeout(3*time.Second))
	if err != nil {
		t.Fatalf("integration tests need the real NATS at %s (make integration / .ci/run start it): %v", url, err)
	}
	nc.Close()
	return url
}

func itNames(t *testing.T, url string) (stream, prefix, buckets string) {
	t.Helper()
	suffix := fmt.Sprintf("%d", time.Now().UnixNano()%1_000_000_000)
	stream, prefix, buckets = "IT_JOBS_"+suffix, "it"+suffix+".jobs", "IT"+suffix
	t.Cleanup(func() {
		nc, err := nats.Connect(url)
		if err != nil {
			return
		}
		defer nc.Close()
		js, _ := jetstream.New(nc)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = js.DeleteStream(ctx, stream)
		_ = js.DeleteKeyValue(ctx, buckets+"_STATE")
		_ = js.DeleteKeyValue(ctx, buckets+"_WATCHES")
		_ = js.DeleteKeyValue(ctx, buckets+"_LEASES") // scale-out tests
	})
	return stream, prefix, buckets
}

func TestIntegrationSIGKILLAgainstRealNATS(t *testing.T) {
	url := itNATS(t)
	stream, prefix, buckets := itNames(t, url)
	checkCrashRecovery(t, crashOptions{natsURL: url, stream: stream, prefix: prefix, buckets: buckets, kills: 4, jobs: 18})
}
