package hmcsim

import (
	"testing"
	"time"

	"github.com/go-stomp/stomp/v3/frame"
)

// TestBrokerRestartsOnTheSameAddress: a closed broker can be started
// again on its old address (the fault suite's broker restart), a running
// one cannot be started twice, and the new broker delivers completions to
// a client that subscribes again.
func TestBrokerRestartsOnTheSameAddress(t *testing.T) {
	s, clk := newSim(t, Options{})
	b, err := s.StartBroker(BrokerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.StartBroker(BrokerOptions{}); err == nil {
		t.Fatal("a second broker started while the first runs")
	}
	addr := b.Addr()
	b.Close()
	b2, err := s.StartBroker(BrokerOptions{Addr: addr})
	if err != nil {
		t.Fatalf("restart on %s: %v", addr, err)
	}
	if b2.Addr() != addr || s.Broker() != b2 {
		t.Fatalf("restarted broker on %s (current %p), want %s (%p)", b2.Addr(), s.Broker(), addr, b2)
	}
	sess, _ := s.OpenSession(user, pass)
	sc, connected := dialBroker(t, b2, sess.ID, sess.Credential)
	if connected.Command != frame.CONNECTED {
		t.Fatalf("CONNECTED = %v", connected.Command)
	}
	sc.subscribe(sess.JobNotificationTopic, "r")
	if _, err := s.StartJob(sess.ID, Job{ID: "after", Script: []Step{{Status: StatusRunning, For: time.Second}, {Status: StatusComplete}}}); err != nil {
		t.Fatal(err)
	}
	clk.Advance(2 * time.Second)
	s.Sync()
	if m := sc.next(); m.Command != frame.MESSAGE || m.Header.Get("job-uri") != JobURI("after") {
		t.Fatalf("after the restart: %s %v", m.Command, m.Header)
	}
}
