package hmcsim

import (
	"fmt"
	"testing"
	"time"

	"github.com/go-stomp/stomp/v3/frame"
)

// TestBrokerServesAReconnectAfterACutMidBurst is the HMC push storm's
// failure, reduced: a subscriber that reads nothing is cut while a burst
// of completions is on its way to it. A client that connects afterwards
// must get its SUBSCRIBE receipt and the next completion at once. (A
// broker with one request processor shared by all connections never
// answered again after such a cut.)
func TestBrokerServesAReconnectAfterACutMidBurst(t *testing.T) {
	s, clk := newSim(t, Options{})
	b, err := s.StartBroker(BrokerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	sess, _ := s.OpenSession(user, pass)
	slow, _ := dialBroker(t, b, sess.ID, sess.Credential)
	slow.subscribe(sess.JobNotificationTopic, "r")
	const burst = 20000
	for i := range burst {
		if _, err := s.StartJob(sess.ID, Job{ID: fmt.Sprintf("b%d", i), Script: []Step{{Status: StatusRunning, For: time.Second}, {Status: StatusComplete}}}); err != nil {
			t.Fatal(err)
		}
	}
	clk.Advance(2 * time.Second)
	synced := make(chan struct{})
	go func() {
		defer close(synced)
		s.Sync()
	}()
	for b.Stats().Published < burst/10 {
		time.Sleep(100 * time.Microsecond)
	}
	if b.DropConnections() != 1 {
		t.Fatal("the slow subscriber was not connected")
	}
	select {
	case <-synced:
	case <-time.After(10 * time.Second):
		t.Fatal("publishing the burst blocked on a cut subscriber")
	}
	next, _ := dialBroker(t, b, sess.ID, sess.Credential)
	if r := next.subscribe(sess.JobNotificationTopic, "again"); r.Command != frame.RECEIPT || r.Header.Get(frame.ReceiptId) != "again" {
		t.Fatalf("SUBSCRIBE after the cut answered %s %v", r.Command, r.Header)
	}
	if _, err := s.StartJob(sess.ID, Job{ID: "after", Script: []Step{{Status: StatusRunning, For: time.Second}, {Status: StatusComplete}}}); err != nil {
		t.Fatal(err)
	}
	clk.Advance(2 * time.Second)
	s.Sync()
	if m := next.next(); m.Command != frame.MESSAGE || m.Header.Get("job-uri") != JobURI("after") {
		t.Fatalf("after the cut: %s %v", m.Command, m.Header)
	}
	if st := b.Stats(); st.Published != burst+1 {
		t.Fatalf("published %d, want %d", st.Published, burst+1)
	}
}

// TestBrokerHeartBeats: the broker agrees to heart-beats no shorter than
// its minimum, sends them when it has nothing else to send, and cuts a
// client that promised heart-beats and went silent.
func TestBrokerHeartBeats(t *testing.T) {
	s, _ := newSim(t, Options{})
	b, err := s.StartBroker(BrokerOptions{MinHeartBeat: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	sess, _ := s.OpenSession(user, pass)
	connect := func(hb string) (*stompClient, string) {
		sc := dialRaw(t, b)
		sc.send(frame.New(frame.STOMP, frame.AcceptVersion, "1.1", frame.Host, "hmc", frame.Login, sess.ID, frame.Passcode, sess.Credential, frame.HeartBeat, hb))
		return sc, sc.next().Header.Get(frame.HeartBeat)
	}
	listener, agreed := connect("0,100")
	if agreed != "100,0" {
		t.Fatalf("CONNECTED heart-beat %q, want 100,0 (sends every 100ms as asked, expects none)", agreed)
	}
	// Nothing to send: heart-beats come, about every 100ms, and the broker
	// does not cut a client that promised none.
	listener.c.SetReadDeadline(time.Now().Add(2 * time.Second))
	buf := make([]byte, 1)
	start := time.Now()
	for beats := 0; beats < 5; {
		if _, err := listener.c.Read(buf); err != nil {
			t.Fatalf("after %d heart-beats: %v", beats, err)
		}
		if buf[0] == '\n' {
			beats++
		}
	}
	if took := time.Since(start); took < 400*time.Millisecond {
		t.Fatalf("5 heart-beats in %s, want about 500ms", took)
	}

	silent, agreed := connect("20,0")
	if agreed != "0,50" {
		t.Fatalf("CONNECTED heart-beat %q, want 0,50 (expects the client's no faster than its 50ms minimum)", agreed)
	}
	// The client promised beats every 50ms and sends none: cut after 100ms.
	silent.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := silent.c.Read(buf); err == nil {
		t.Fatal("the broker wrote to a client that asked for no heart-beats")
	}
	if b.Connections() != 1 {
		t.Fatalf("%d connections, want the listener's only", b.Connections())
	}
}
