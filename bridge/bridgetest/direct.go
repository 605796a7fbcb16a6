package bridgetest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// ReadStreamBySeq returns every message of the stream in order, fetched
// one by one by sequence (the stream's leader answers each). It is slower
// than ReadStream but needs no consumer, so it works on a cluster that has
// just lost and regained a node, where an ephemeral consumer's pull
// requests can find no responder for a while. Each get is retried for up
// to 30s.
func ReadStreamBySeq(tb testing.TB, js jetstream.JetStream, stream string) []Received {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	s, info := openStream(ctx, tb, js, stream)
	var out []Received
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		var m *jetstream.RawStreamMsg
		var err error
		deadline := time.Now().Add(30 * time.Second)
		for {
			m, err = s.GetMsg(ctx, seq)
			if err == nil || errors.Is(err, jetstream.ErrMsgNotFound) || time.Now().After(deadline) {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue // deleted: the stream's interior gap
		}
		if err != nil {
			tb.Fatalf("get message %d of stream %s: %v", seq, stream, err)
		}
		out = append(out, decodeReceived(m.Subject, m.Sequence, m.Header, m.Data))
	}
	return out
}
