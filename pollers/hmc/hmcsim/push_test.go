package hmcsim

import (
	"bufio"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/go-stomp/stomp/v3/frame"
)

// stompClient is a bare frame-level client: what the broker sends, byte
// for byte, without a client library's interpretation.
type stompClient struct {
	t  *testing.T
	c  net.Conn
	r  *frame.Reader
	w  *frame.Writer
	hb bool
}

func dialBroker(t *testing.T, b *Broker, login, passcode string) (*stompClient, *frame.Frame) {
	t.Helper()
	sc := dialRaw(t, b)
	sc.send(frame.New(frame.STOMP, frame.AcceptVersion, "1.1", frame.Host, "hmc", frame.Login, login, frame.Passcode, passcode, frame.HeartBeat, "0,0"))
	return sc, sc.next()
}

// dialRaw connects without sending anything.
func dialRaw(t *testing.T, b *Broker) *stompClient {
	t.Helper()
	c, err := net.Dial("tcp", b.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &stompClient{t: t, c: c, r: frame.NewReader(c), w: frame.NewWriter(c)}
}

func (sc *stompClient) send(f *frame.Frame) {
	if err := sc.w.Write(f); err != nil {
		sc.t.Fatal(err)
	}
}

// next returns the next frame (heart-beats skipped), failing after 5s.
func (sc *stompClient) next() *frame.Frame {
	sc.t.Helper()
	sc.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		f, err := sc.r.Read()
		if err != nil {
			sc.t.Fatalf("reading a frame: %v", err)
		}
		if f != nil {
			return f
		}
	}
}

// quiet reports whether nothing but heart-beats comes within d.
func (sc *stompClient) quiet(d time.Duration) bool {
	sc.c.SetReadDeadline(time.Now().Add(d))
	for {
		f, err := sc.r.Read()
		if err != nil {
			return true
		}
		if f != nil {
			return false
		}
	}
}

func (sc *stompClient) subscribe(topic, receipt string) *frame.Frame {
	sc.send(frame.New(frame.SUBSCRIBE, frame.Id, "s-"+topic, frame.Destination, "/topic/"+topic, frame.Ack, "auto", frame.Receipt, receipt))
	return sc.next()
}

func TestBrokerSendsJobCompletionAsTheHMCDoes(t *testing.T) {
	s, clk := newSim(t, Options{})
	b, err := s.StartBroker(BrokerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	sess, _ := s.OpenSession(user, pass)
	other, _ := s.OpenSession(user, pass)
	sc, connected := dialBroker(t, b, sess.ID, sess.Credential)
	if connected.Command != frame.CONNECTED || connected.Header.Get(frame.Version) != "1.1" || !strings.HasPrefix(connected.Header.Get(frame.Server), "ActiveMQ/") {
		t.Fatalf("CONNECTED = %v %v", connected.Command, connected.Header)
	}
	if r := sc.subscribe(sess.JobNotificationTopic, "r1"); r.Command != frame.RECEIPT || r.Header.Get(frame.ReceiptId) != "r1" {
		t.Fatalf("SUBSCRIBE answered %s %v", r.Command, r.Header)
	}
	// Only the starting session's topic hears of a job.
	if _, err := s.StartJob(sess.ID, Job{ID: "mine", Script: []Step{{Status: StatusRunning, For: time.Second}, {Status: StatusComplete}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.StartJob(other.ID, Job{ID: "theirs", Script: []Step{{Status: StatusRunning, For: time.Second}, {Status: StatusComplete}}}); err != nil {
		t.Fatal(err)
	}
	clk.Advance(2 * time.Second)
	s.Sync()
	m := sc.next()
	if m.Command != frame.MESSAGE || len(m.Body) != 0 {
		t.Fatalf("got %s with body %q", m.Command, m.Body)
	}
	want := map[string]string{
		"destination": "/topic/" + sess.JobNotificationTopic, "notification-type": "job-completion", "job-uri": "/api/jobs/mine",
		"global-sequence-nr": "6400", "session-sequence-nr": "1",
	}
	for k, v := range want {
		if got := m.Header.Get(k); got != v {
			t.Errorf("header %s = %q, want %q", k, got, v)
		}
	}
	if _, ok := m.Header.Contains(frame.ContentLength); ok {
		t.Error("a null body came with content-length")
	}
	if !sc.quiet(100 * time.Millisecond) {
		t.Fatal("the other session's job reached this topic")
	}
	if st := b.Stats(); st.Published != 2 || st.Unheard != 1 {
		t.Fatalf("stats %+v: want 2 published, 1 unheard (the other session's topic had no subscriber)", st)
	}
}

func TestBrokerRefusesWhatTheHMCRefuses(t *testing.T) {
	s, _ := newSim(t, Options{})
	b, err := s.StartBroker(BrokerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	sess, _ := s.OpenSession(user, pass)
	if _, f := dialBroker(t, b, sess.ID, "wrong"); f.Command != frame.ERROR || !strings.Contains(f.Header.Get(frame.Message), "password is invalid") {
		t.Fatalf("bad credential: %s %v", f.Command, f.Header)
	}
	// userid and password work too.
	sc, f := dialBroker(t, b, user, pass)
	if f.Command != frame.CONNECTED {
		t.Fatalf("password login: %s %v", f.Command, f.Header)
	}
	e := sc.subscribe(user+".999job", "r9")
	if e.Command != frame.ERROR || e.Header.Get(frame.ReceiptId) != "r9" || !strings.Contains(e.Header.Get(frame.Message), "'topic://"+user+".999job' is not a known or approved topic") {
		t.Fatalf("unknown topic: %s %v", e.Command, e.Header)
	}
	if !sc.quiet(200 * time.Millisecond) {
		t.Fatal("more after the ERROR")
	}
	// Clients only consume.
	sc2, _ := dialBroker(t, b, sess.ID, sess.Credential)
	sc2.send(frame.New(frame.SEND, frame.Destination, "/topic/"+sess.JobNotificationTopic))
	if f := sc2.next(); f.Command != frame.ERROR {
		t.Fatalf("SEND: %s", f.Command)
	}
	// A closed session's topic is unknown, and its connections are cut.
	sc3, _ := dialBroker(t, b, sess.ID, sess.Credential)
	s.ExpireSessions()
	s.Sync()
	sc3.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		if _, err := sc3.r.Read(); err != nil {
			break
		}
	}
	sc4, _ := dialBroker(t, b, user, pass)
	if e := sc4.subscribe(sess.JobNotificationTopic, "r"); e.Command != frame.ERROR {
		t.Fatalf("stale topic: %s", e.Command)
	}
	if st := b.Stats(); st.LoginFailures != 1 || st.RefusedTopics != 2 {
		t.Fatalf("stats %+v", st)
	}
}

func TestBrokerFaults(t *testing.T) {
	s, clk := newSim(t, Options{})
	b, err := s.StartBroker(BrokerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	sess, _ := s.OpenSession(user, pass)
	sc, _ := dialBroker(t, b, sess.ID, sess.Credential)
	sc.subscribe(sess.JobNotificationTopic, "r")
	b.StallConnections()
	s.StartJob(sess.ID, Job{ID: "a", Script: []Step{{Status: StatusRunning, For: time.Second}, {Status: StatusComplete}}})
	clk.Advance(2 * time.Second)
	s.Sync()
	if !sc.quiet(200 * time.Millisecond) {
		t.Fatal("a stalled connection delivered")
	}
	if b.Connections() != 1 {
		t.Fatal("a stalled connection was closed")
	}
	if b.DropConnections() != 1 {
		t.Fatal("nothing dropped")
	}
	b.SetRefusing(true)
	c, err := net.Dial("tcp", b.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatal("a refusing broker talked")
	}
}

func TestSSEStreamOperations(t *testing.T) {
	s, clk := newSim(t, Options{SSEKeepAlive: -1})
	logon := call(t, s, http.MethodPost, "/api/sessions", "", map[string]string{"userid": user, "password": pass})
	id, _ := logon.obj["api-session"].(string)
	cr := call(t, s, http.MethodPost, SSECreatePath, id, map[string]any{})
	stream, _ := cr.obj["stream-id"].(string)
	if cr.code != http.StatusOK || stream == "" {
		t.Fatalf("create: %d %s", cr.code, cr.body)
	}
	if r := call(t, s, http.MethodGet, SSEOpenPath+"?stream-id=nope", id, nil); r.code != http.StatusNotFound {
		t.Fatalf("unknown stream: %d", r.code)
	}
	req, _ := http.NewRequest(http.MethodGet, s.URL+SSEOpenPath+"?stream-id="+stream+"&initial-events=true", nil)
	req.Header.Set(SessionHeader, id)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("open: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	br := bufio.NewReader(resp.Body)
	readEvent := func() string {
		var b strings.Builder
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				return b.String() + "<" + err.Error() + ">"
			}
			if line == "\n" {
				return b.String()
			}
			b.WriteString(line)
		}
	}
	if e := readEvent(); !strings.Contains(e, "event: initial-events-start") {
		t.Fatalf("first event %q", e)
	}
	if e := readEvent(); !strings.Contains(e, "event: initial-events-end") {
		t.Fatalf("second event %q", e)
	}
	s.StartJob(id, Job{ID: "j", Script: []Step{{Status: StatusRunning, For: time.Second}, {Status: StatusComplete}}})
	clk.Advance(2 * time.Second)
	s.Sync()
	e := readEvent()
	for _, want := range []string{"id: 6400\n", "event: job-completion\n", `"job-uri":"/api/jobs/j"`, `"session-sequence-nr":1`} {
		if !strings.Contains(e, want) {
			t.Fatalf("event %q lacks %q", e, want)
		}
	}
	if s.DropSSEStreams() != 1 {
		t.Fatal("nothing dropped")
	}
	if e := readEvent(); !strings.HasSuffix(e, "<EOF>") {
		t.Fatalf("after the drop: %q, want a clean EOF", e)
	}
	// The stream dies with its session.
	s.ExpireSessions()
	s.Sync()
	logon = call(t, s, http.MethodPost, "/api/sessions", "", map[string]string{"userid": user, "password": pass})
	id2, _ := logon.obj["api-session"].(string)
	if r := call(t, s, http.MethodGet, SSEOpenPath+"?stream-id="+stream, id2, nil); r.code != http.StatusNotFound {
		t.Fatalf("stream of a dead session: %d", r.code)
	}
	if st := s.SSEStats(); st.Created != 1 || st.Opened != 1 || st.Delivered != 1 || st.NotFound != 2 {
		t.Fatalf("stats %+v", st)
	}
}
