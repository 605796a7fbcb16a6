package bridgetest

import (
	"context"
	"testing"
	"time"

	"github.com/jobbridge/jobbridge/bridge/natsconn/natstest"
	"github.com/nats-io/nats.go/jetstream"
)

// TestReadStreamBySeqSkipsGapsAndKeepsOrder: every stored message in
// stream order, deleted ones skipped, decoded like ReadStream's.
func TestReadStreamBySeqSkipsGapsAndKeepsOrder(t *testing.T) {
	ns := natstest.RunServer(t, natstest.Options{})
	js, err := jetstream.New(natstest.Connect(t, ns))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "T", Subjects: []string{"t.>"}})
	if err != nil {
		t.Fatal(err)
	}
	if got := ReadStreamBySeq(t, js, "T"); len(got) != 0 {
		t.Fatalf("empty stream: %d messages", len(got))
	}
	for _, body := range []string{`{"id":"1","data":{"job":"a","sequence":1}}`, `{"id":"2"}`, `{"id":"3","data":{"job":"c","sequence":3}}`} {
		if _, err := js.Publish(ctx, "t.x", []byte(body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.DeleteMsg(ctx, 2); err != nil {
		t.Fatal(err)
	}
	got := ReadStreamBySeq(t, js, "T")
	if len(got) != 2 || got[0].StreamSeq != 1 || got[1].StreamSeq != 3 || got[0].Data.Job != "a" || got[1].Data.Sequence != 3 || got[1].Event["id"] != "3" {
		t.Fatalf("got %+v", got)
	}
}
