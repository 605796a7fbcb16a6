package natsconn

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestEmbeddedJetStreamRestartsAfterAStoreWriteError: after a store write
// error (disk full) a standalone nats-server fails every publish to the
// stream until it restarts, even once the disk has room. The embedded
// server restarts its JetStream itself once the store takes writes again;
// the stream comes back from the store with what it held, and publishing
// works. (The fault suite fills a real tmpfs; here the server reports the
// error through its logger, as it does on ENOSPC.) Regression: the restart
// used the running config's store directory, which already ends in
// /jetstream, and came back with an empty, nested store.
func TestEmbeddedJetStreamRestartsAfterAStoreWriteError(t *testing.T) {
	var logs lockedBuffer
	s, err := StartEmbedded(EmbeddedOptions{StoreDir: t.TempDir(), Logger: zerolog.New(&logs)})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		s.Shutdown()
		s.WaitForShutdown()
	}()
	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "JOBS", Subjects: []string{"jobs.>"}}); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		if _, err := js.Publish(ctx, "jobs.a", []byte("before")); err != nil {
			t.Fatal(err)
		}
	}
	s.Errorf("Filestore [JOBS] Critical write error: write %s/jetstream/$G/streams/JOBS/msgs/1.blk: no space left on device", s.StoreDir())
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(logs.String(), "JetStream restarted from it") {
		if time.Now().After(deadline) {
			t.Fatalf("JetStream not restarted after a store write error; log:\n%s", logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, want := range []string{`"component":"nats-server"`, "Critical write error", "cannot write its store"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, logs.String())
		}
	}
	var info *jetstream.StreamInfo
	for {
		st, err := js.Stream(ctx, "JOBS")
		if err == nil {
			if info, err = st.Info(ctx); err == nil {
				break
			}
		}
		if ctx.Err() != nil {
			t.Fatalf("stream after the restart: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if info.State.Msgs != 3 {
		t.Fatalf("stream after the restart holds %d messages, want the 3 from before", info.State.Msgs)
	}
	if _, err := js.Publish(ctx, "jobs.a", []byte("after")); err != nil {
		t.Fatalf("publish after the restart: %v", err)
	}
}

func TestIsStoreFailure(t *testing.T) {
	for msg, want := range map[string]bool{
		"Filestore [JOBS] Critical write error: write x: no space left on device": true,
		"JetStream failed to store a msg on stream '$G > JOBS': write x":          true,
		"JetStream out of File resources, will be DISABLED":                       true,
		"Slow consumer detected":         false,
		"Readloop processing time: 2.1s": false,
	} {
		if got := isStoreFailure(msg); got != want {
			t.Errorf("isStoreFailure(%q) = %v, want %v", msg, got, want)
		}
	}
}
