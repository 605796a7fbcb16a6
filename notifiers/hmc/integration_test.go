//go:build integration

package hmc

import (
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/go-stomp/stomp/v3"

	"github.com/jobbridge/jobbridge/bridge"
	"github.com/jobbridge/jobbridge/bridge/bridgetest"
)

// The real broker: RabbitMQ with rabbitmq_stomp on this machine
// (JOBBRIDGE_IT_STOMP_ADDR, default 127.0.0.1:61613; guest/guest works
// from localhost only). These tests fail, never skip, without it.
func stompAddr() string {
	if a := os.Getenv("JOBBRIDGE_IT_STOMP_ADDR"); a != "" {
		return a
	}
	return "127.0.0.1:61613"
}

// hmcPublisher sends HMC-shaped job-completion messages through the real
// broker: properties as string headers, empty body.
type hmcPublisher struct {
	t    *testing.T
	c    *stomp.Conn
	gseq int64
}

func newPublisher(t *testing.T) *hmcPublisher {
	c, err := stomp.Dial("tcp", stompAddr(), stomp.ConnOpt.Login("guest", "guest"), stomp.ConnOpt.Host("/"), stomp.ConnOpt.AcceptVersion(stomp.V11),
		stomp.ConnOpt.HeartBeat(0, 0), stomp.ConnOpt.Logger(quietLog{}))
	if err != nil {
		t.Fatalf("RabbitMQ STOMP at %s: %v (enable it: rabbitmq-plugins enable rabbitmq_stomp)", stompAddr(), err)
	}
	t.Cleanup(func() { c.Disconnect() })
	return &hmcPublisher{t: t, c: c, gseq: 6400}
}

func (p *hmcPublisher) complete(topic, jobID string) {
	p.gseq++
	err := p.c.Send("/topic/"+topic, "", nil, stomp.SendOpt.NoContentLength, stomp.SendOpt.Receipt,
		stomp.SendOpt.Header("notification-type", "job-completion"),
		stomp.SendOpt.Header("job-uri", "/api/jobs/"+jobID),
		stomp.SendOpt.Header("global-sequence-nr", strconv.FormatInt(p.gseq, 10)),
		stomp.SendOpt.Header("session-sequence-nr", strconv.FormatInt(p.gseq-6400, 10)))
	if err != nil {
		p.t.Fatalf("publish to RabbitMQ: %v", err)
	}
}

type quietLog struct{}

func (quietLog) Debugf(string, ...any)   {}
func (quietLog) Infof(string, ...any)    {}
func (quietLog) Warningf(string, ...any) {}
func (quietLog) Errorf(string, ...any)   {}
func (quietLog) Debug(string)            {}
func (quietLog) Info(string)             {}
func (quietLog) Warning(string)          {}
func (quietLog) Error(string)            {}

// TestIntegrationRabbitMQ runs the STOMP receiver against a real broker:
// subscription receipts, string headers, empty bodies, heart-beats that a
// real broker accepts, and two cuts of the connection mid-run, each
// followed by a reconnect and a reconcile, with the messages sent while
// cut lost (non-durable topic) and never hinted.
func TestIntegrationRabbitMQ(t *testing.T) {
	r := newRig(t, rigOptions{}) // the REST side (session, topic names)
	proxy := bridgetest.NewTCPProxy(t, stompAddr())
	pub := newPublisher(t)
	h := newFakeHinter()
	opts := r.options(t, h)
	opts.STOMPAddr = proxy.Addr()
	opts.Login, opts.UserID, opts.Password = LoginPassword, "guest", bridge.NewSecret("guest")
	opts.HeartBeat = 500 * time.Millisecond
	opts.STOMPHost = "/"
	n := start(t, opts)
	connected(t, n, h, 1)
	sess, _ := r.poller.Session()
	topic := sess.JobNotificationTopic

	for round := 1; round <= 3; round++ {
		ok, lost := "ok-"+strconv.Itoa(round), "lost-"+strconv.Itoa(round)
		h.watch(ok, "")
		h.watch(lost, "")
		pub.complete(topic, ok)
		waitFor(t, waitLong, "a hint through RabbitMQ", func() bool { return contains(h.hinted(), ok) })
		if round == 3 {
			break
		}
		proxy.SetRefusing(true)
		if proxy.Cut() == 0 {
			t.Fatal("the proxy carried no connection")
		}
		waitFor(t, waitLong, "the cut to be noticed", func() bool { return !n.Status().Connected })
		pub.complete(topic, lost) // nobody subscribed: RabbitMQ drops it
		time.Sleep(100 * time.Millisecond)
		proxy.SetRefusing(false)
		connected(t, n, h, round+1)
	}
	for _, id := range []string{"lost-1", "lost-2"} {
		if contains(h.hinted(), id) {
			t.Fatalf("%s was delivered after the reconnect: the topic should not be durable", id)
		}
	}
	// Heart-beats keep an idle connection up (a late one makes a real
	// broker close it), and a silent path is found by them.
	connects := n.Status().Connects
	time.Sleep(3 * time.Second)
	if s := n.Status(); s.Connects != connects || !s.Connected {
		t.Fatalf("an idle connection was replaced (%d -> %d connects): heart-beats are late; last error %q", connects, s.Connects, s.LastError)
	}
	proxy.SetStalled(true)
	waitFor(t, waitLong, "the stall to be found by heart-beats", func() bool { return !n.Status().Connected })
	proxy.SetStalled(false)
	connected(t, n, h, 4)
	pub.complete(topic, "ok-3")
	h.watch("after-stall", "")
	pub.complete(topic, "after-stall")
	waitFor(t, waitLong, "a hint after the stall", func() bool { return contains(h.hinted(), "after-stall") })
	if s := n.Status(); s.Notifications < 4 {
		t.Fatalf("status %+v", s)
	}
	if err := n.Stop(); err != nil {
		t.Fatal(err)
	}
	checkNoLeak(t)
}
