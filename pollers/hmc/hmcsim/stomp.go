package hmcsim

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-stomp/stomp/v3/frame"
	"github.com/rs/zerolog"
)

// BrokerOptions configure the simulator's STOMP broker (StartBroker).
type BrokerOptions struct {
	// Addr is where clients connect; default 127.0.0.1:0 (a random port).
	Addr string
	// TLS serves STOMP over TLS with the API's certificate, as the HMC
	// uses the same TLS settings for STOMP (61612) as for HTTPS. It needs
	// Options.TLS; without it the broker speaks plain STOMP (61613).
	TLS bool
	// MinHeartBeat is the shortest heart-beat interval the broker agrees
	// to; default 10ms, so tests may use short ones.
	MinHeartBeat time.Duration
}

// BrokerStats counts what the broker saw.
type BrokerStats struct {
	// Connections counts clients that logged in.
	Connections   int
	LoginFailures int
	// Subscriptions counts accepted SUBSCRIBE frames; RefusedTopics those
	// answered with an ERROR frame (unknown or unapproved topic).
	Subscriptions int
	RefusedTopics int
	// Published counts job-completion messages sent to a topic; Unheard
	// those sent while nobody subscribed to it, which are gone: HMC topics
	// are not durable.
	Published int
	Unheard   int
	// Dropped counts connections cut by DropConnections, because their
	// session ended, or because they fell too far behind (SlowConsumers);
	// Stalled those silenced by StallConnections.
	Dropped       int
	Stalled       int
	SlowConsumers int
}

// maxPending is how many frames a connection may have waiting to be
// written before the broker drops it as a slow consumer, as ActiveMQ
// aborts consumers it cannot keep up with [assumed: the HMC's limit is not
// documented]. It is far above what any test publishes at once.
const maxPending = 1 << 17

// Broker is the HMC's STOMP broker, as its ActiveMQ behaves towards a
// notification client: logins with session-id and session-credential (or
// userid and password), STOMP 1.1 with negotiated heart-beats, ERROR
// frames for unknown or unapproved topics, consumers only (no SEND),
// receipts, and the job-completion messages fanned out to every
// subscription of a topic. It also injects network faults.
//
// It does its own fan-out rather than front the go-stomp server package:
// that server's single request processor blocks writing into a
// subscriber's full queue while the subscriber waits for the processor
// (an UNSUBSCRIBE, a reconnect's SUBSCRIBE or a disconnect during a burst
// of messages), and then no client is ever served again.
type Broker struct {
	s      *Server
	log    zerolog.Logger
	front  net.Listener
	minHB  time.Duration
	done   chan struct{}
	wg     sync.WaitGroup
	nextID atomic.Int64

	mu     sync.Mutex
	conns  map[*brokerConn]struct{}
	subs   map[string]int // topic -> live subscriptions over all connections
	refuse bool
	stats  BrokerStats
	closed bool
}

// StartBroker starts the STOMP broker of this HMC. Server.Close stops it.
// Job completions of sessions' jobs go from then on to the job
// notification topic of the session that started the job, with the
// headers the HMC sends (notification-type: job-completion, job-uri,
// global-sequence-nr and session-sequence-nr as strings, an empty body).
func (s *Server) StartBroker(opts BrokerOptions) (*Broker, error) {
	if opts.Addr == "" {
		opts.Addr = "127.0.0.1:0"
	}
	if opts.MinHeartBeat <= 0 {
		opts.MinHeartBeat = 10 * time.Millisecond
	}
	if opts.TLS && (s.ts == nil || s.ts.TLS == nil) {
		return nil, errors.New("a STOMP broker over TLS needs the simulator's TLS option")
	}
	// A closed broker may be started again (a broker restart, on the same
	// Addr when the caller gives the old one).
	if cur := s.push.currentBroker(); cur != nil && !cur.isClosed() {
		return nil, errors.New("the STOMP broker is running already")
	}
	b := &Broker{
		s: s, log: s.log.With().Str("component", "hmcsim-stomp").Logger(), minHB: opts.MinHeartBeat,
		done: make(chan struct{}), conns: make(map[*brokerConn]struct{}), subs: make(map[string]int),
	}
	var err error
	if b.front, err = net.Listen("tcp", opts.Addr); err != nil {
		return nil, err
	}
	if opts.TLS {
		cfg := s.ts.TLS.Clone()
		cfg.NextProtos = nil
		b.front = tls.NewListener(b.front, cfg)
	}
	b.wg.Add(1)
	go b.accept()
	s.push.setBroker(b)
	return b, nil
}

// Broker returns the running STOMP broker, nil before StartBroker.
func (s *Server) Broker() *Broker { return s.push.currentBroker() }

// Addr is the broker's host:port.
func (b *Broker) Addr() string { return b.front.Addr().String() }

// Port is the broker's TCP port.
func (b *Broker) Port() int { return b.front.Addr().(*net.TCPAddr).Port }

// Stats returns the counters so far.
func (b *Broker) Stats() BrokerStats {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.stats
}

// Subscribers returns how many subscriptions a topic has now.
func (b *Broker) Subscribers(topic string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.subs[topic]
}

// Connections returns how many clients are connected now (stalled ones
// included).
func (b *Broker) Connections() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.conns)
}

// DropConnections cuts every client connection now, as a broker restart or
// a network failure would, and returns how many it cut. Messages sent
// before the client subscribes again are lost.
func (b *Broker) DropConnections() int {
	b.mu.Lock()
	cs := make([]*brokerConn, 0, len(b.conns))
	for c := range b.conns {
		cs = append(cs, c)
	}
	b.stats.Dropped += len(cs)
	b.mu.Unlock()
	for _, c := range cs {
		c.close()
	}
	return len(cs)
}

// StallConnections silences every client connection now without closing
// it, as a half-open TCP connection would: no frames and no heart-beats in
// either direction, and every message for it is lost. Only a client that
// checks heart-beats notices; the connection closes when the client gives
// up.
func (b *Broker) StallConnections() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	for c := range b.conns {
		c.stalled.Store(true)
		// A read already waiting on the heart-beat deadline must not end
		// the connection: it stays open until the client gives up.
		c.client.SetReadDeadline(time.Time{})
		c.wake()
	}
	b.stats.Stalled += len(b.conns)
	return len(b.conns)
}

// SetRefusing makes the broker close new connections at once (true), as a
// broker that is down would, or accept them again (false).
func (b *Broker) SetRefusing(refuse bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.refuse = refuse
}

func (b *Broker) isClosed() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.closed
}

// Close stops the broker and cuts every connection. StartBroker may start
// a new one afterwards, on the same address to model a broker restart.
func (b *Broker) Close() {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return
	}
	b.closed = true
	b.mu.Unlock()
	close(b.done)
	b.front.Close()
	b.DropConnections()
	b.wg.Wait()
}

// publish sends one job-completion message to every subscription of the
// session's job topic. Without a subscriber it is lost, as on the HMC.
// It queues and never waits for a client, because it runs in the
// simulator's clock.
func (b *Broker) publish(m pushMessage) {
	if m.Topic == "" {
		return
	}
	dest := "/topic/" + m.Topic
	headers := m.headers()
	var slow []*brokerConn
	b.mu.Lock()
	b.stats.Published++
	if b.subs[m.Topic] == 0 {
		b.stats.Unheard++
	}
	for c := range b.conns {
		for id, topic := range c.subs {
			if topic != m.Topic {
				continue
			}
			f := frame.New(frame.MESSAGE, append([]string{
				frame.Destination, dest,
				frame.Subscription, id,
				frame.MessageId, c.name + ":1:1:" + strconv.FormatInt(c.nextMsg.Add(1), 10),
			}, headers...)...)
			if !c.enqueue(f) {
				slow = append(slow, c)
			}
		}
	}
	b.stats.SlowConsumers += len(slow)
	b.stats.Dropped += len(slow)
	b.mu.Unlock()
	for _, c := range slow {
		b.log.Warn().Str("connection", c.name).Int("pending", maxPending).Msg("dropping a slow STOMP consumer")
		c.close()
	}
}

// sessionClosed cuts the connections that logged in with the session's
// id: its credential is no longer valid [assumed: what the HMC does with a
// STOMP connection whose API session ends is not documented].
func (b *Broker) sessionClosed(id string) {
	b.mu.Lock()
	var cs []*brokerConn
	for c := range b.conns {
		if c.session == id {
			cs = append(cs, c)
		}
	}
	b.stats.Dropped += len(cs)
	b.mu.Unlock()
	for _, c := range cs {
		c.close()
	}
}

func (b *Broker) accept() {
	defer b.wg.Done()
	for {
		nc, err := b.front.Accept()
		if err != nil {
			select {
			case <-b.done:
				return
			default:
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return
		}
		b.mu.Lock()
		refuse := b.refuse
		b.mu.Unlock()
		if refuse {
			nc.Close()
			continue
		}
		b.wg.Add(1)
		go func() {
			defer b.wg.Done()
			b.serve(nc)
		}()
	}
}

// brokerConn is one client connection. Its reading goroutine (serve)
// handles the client's frames; its writing goroutine (writeLoop) sends
// what is queued and the heart-beats.
type brokerConn struct {
	b       *Broker
	client  net.Conn
	name    string // ActiveMQ-style connection id, the prefix of message-ids
	session string
	stalled atomic.Bool
	closing atomic.Bool // close once the queue is written (DISCONNECT)
	nextMsg atomic.Int64
	once    sync.Once
	dead    chan struct{}

	// Set at CONNECT, before writeLoop starts.
	sendEvery time.Duration // the broker's heart-beats; 0 for none
	readEvery time.Duration // the client's promised heart-beats; 0 for none

	wmu     sync.Mutex // serialises writes to client
	cw      *frame.Writer
	qmu     sync.Mutex
	pending []*frame.Frame
	signal  chan struct{} // capacity 1: something was queued

	subs map[string]string // subscription id -> topic; guarded by b.mu
}

// close cuts the connection; both goroutines end.
func (c *brokerConn) close() {
	c.once.Do(func() {
		close(c.dead)
		c.client.Close()
	})
}

func (c *brokerConn) wake() {
	select {
	case c.signal <- struct{}{}:
	default:
	}
}

// enqueue queues a frame for the client; false when the client is too far
// behind.
func (c *brokerConn) enqueue(f *frame.Frame) bool {
	c.qmu.Lock()
	if len(c.pending) >= maxPending {
		c.qmu.Unlock()
		return false
	}
	c.pending = append(c.pending, f)
	c.qmu.Unlock()
	c.wake()
	return true
}

func (c *brokerConn) queued() int {
	c.qmu.Lock()
	defer c.qmu.Unlock()
	return len(c.pending)
}

func (c *brokerConn) writeClient(f *frame.Frame) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.client.SetWriteDeadline(time.Now().Add(10 * time.Second))
	return c.cw.Write(f)
}

// writeLoop sends queued frames in order, and a heart-beat whenever the
// connection was quiet for the agreed interval. A stalled connection
// sends nothing and loses what is queued.
func (c *brokerConn) writeLoop() {
	var beat <-chan time.Time
	var t *time.Timer
	if c.sendEvery > 0 {
		t = time.NewTimer(c.sendEvery)
		defer t.Stop()
		beat = t.C
	}
	for {
		select {
		case <-c.dead:
			return
		case <-c.signal:
		case <-beat:
			if !c.stalled.Load() && c.writeClient(nil) != nil {
				c.close()
				return
			}
			t.Reset(c.sendEvery)
			continue
		}
		c.qmu.Lock()
		batch := c.pending
		c.pending = nil
		c.qmu.Unlock()
		if c.stalled.Load() {
			continue
		}
		for _, f := range batch {
			if c.writeClient(f) != nil {
				c.close()
				return
			}
		}
		if c.closing.Load() && c.queued() == 0 {
			c.close()
			return
		}
		if t != nil {
			t.Reset(c.sendEvery)
		}
	}
}

// fail sends an ERROR frame, as ActiveMQ does, and closes the connection.
func (c *brokerConn) fail(cause *frame.Frame, message, body string) {
	e := frame.New(frame.ERROR, frame.Message, message, frame.ContentType, "text/plain")
	if cause != nil {
		if r, ok := cause.Header.Contains(frame.Receipt); ok {
			e.Header.Add(frame.ReceiptId, r)
		}
	}
	e.Body = []byte(body)
	_ = c.writeClient(e)
	c.close()
}

// serve runs one client connection: the CONNECT here, then the client's
// frames until either side ends.
func (b *Broker) serve(nc net.Conn) {
	c := &brokerConn{
		b: b, client: nc, cw: frame.NewWriter(nc), subs: make(map[string]string),
		dead: make(chan struct{}), signal: make(chan struct{}, 1),
		name: "ID:hmcsim-" + strconv.FormatInt(b.nextID.Add(1), 10),
	}
	defer c.close()
	r := frame.NewReader(nc)
	nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	var connect *frame.Frame
	for connect == nil {
		f, err := r.Read()
		if err != nil {
			return
		}
		connect = f // nil is a heart-beat before CONNECT
	}
	nc.SetReadDeadline(time.Time{})
	if connect.Command != frame.CONNECT && connect.Command != frame.STOMP {
		c.fail(connect, "Expected a CONNECT or STOMP frame", "")
		return
	}
	if !acceptsV11(connect.Header.Get(frame.AcceptVersion)) {
		c.fail(connect, "Supported protocol versions are 1.1", "")
		return
	}
	cx, cy, ok := parseHeartBeat(connect.Header.Get(frame.HeartBeat))
	if !ok {
		c.fail(connect, "heart-beat value is invalid: "+connect.Header.Get(frame.HeartBeat), "")
		return
	}
	login, passcode := connect.Header.Get(frame.Login), connect.Header.Get(frame.Passcode)
	session, ok := b.authenticate(login, passcode)
	if !ok {
		b.mu.Lock()
		b.stats.LoginFailures++
		b.mu.Unlock()
		c.fail(connect, fmt.Sprintf("User name [%s] or password is invalid.", login),
			"java.lang.SecurityException: User name ["+login+"] or password is invalid.")
		return
	}
	c.session = session
	// The broker will not beat faster than its minimum, nor ask the client
	// to; it sends as often as the client wants to hear (cy) and expects
	// the client's beats as often as promised (cx).
	c.readEvery, c.sendEvery = b.atLeastMin(cx), b.atLeastMin(cy)
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return
	}
	b.conns[c] = struct{}{}
	b.stats.Connections++
	b.mu.Unlock()
	defer func() {
		b.mu.Lock()
		delete(b.conns, c)
		for _, topic := range c.subs {
			b.subs[topic]--
		}
		b.mu.Unlock()
	}()
	connected := frame.New(frame.CONNECTED, frame.Version, "1.1",
		frame.Server, "ActiveMQ/5.15.9 (hmcsim)",
		frame.Session, c.name,
		frame.HeartBeat, strconv.FormatInt(c.sendEvery.Milliseconds(), 10)+","+strconv.FormatInt(c.readEvery.Milliseconds(), 10))
	if c.writeClient(connected) != nil {
		return
	}
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		c.writeLoop()
	}()
	c.fromClient(r)
}

func (b *Broker) atLeastMin(ms int64) time.Duration {
	if ms <= 0 {
		return 0
	}
	return max(time.Duration(ms)*time.Millisecond, b.minHB)
}

// parseHeartBeat reads a CONNECT heart-beat header ("cx,cy" in ms; none
// means 0,0).
func parseHeartBeat(v string) (cx, cy int64, ok bool) {
	if v == "" {
		return 0, 0, true
	}
	a, bs, found := strings.Cut(v, ",")
	if !found {
		return 0, 0, false
	}
	x, err1 := strconv.ParseInt(strings.TrimSpace(a), 10, 64)
	y, err2 := strconv.ParseInt(strings.TrimSpace(bs), 10, 64)
	if err1 != nil || err2 != nil || x < 0 || y < 0 {
		return 0, 0, false
	}
	return x, y, true
}

// acceptsV11 reports whether an accept-version header allows STOMP 1.1
// (no header means 1.0 only).
func acceptsV11(v string) bool {
	for _, x := range strings.Split(v, ",") {
		if strings.TrimSpace(x) == "1.1" {
			return true
		}
	}
	return false
}

// authenticate accepts an open session's id and credential, or a user's
// id and password. It returns the session id of a session login.
func (b *Broker) authenticate(login, passcode string) (string, bool) {
	if b.s.CheckCredential(login, passcode) {
		return login, true
	}
	if want, ok := b.s.opts.Users[login]; ok && passcode == want {
		return "", true
	}
	return "", false
}

// approved reports whether a topic belongs to an open session. Any user
// may subscribe to any session's topic (zhmcclient's reading of the HMC).
func (b *Broker) approved(topic string) bool {
	info, ok := b.s.SessionForTopic(topic)
	return ok && info.Open()
}

// fromClient reads the client's frames until the connection ends. A
// client that promised heart-beats and sends nothing for twice the
// interval is cut, as ActiveMQ's inactivity monitor does.
func (c *brokerConn) fromClient(r *frame.Reader) {
	b := c.b
	for {
		if c.readEvery > 0 && !c.stalled.Load() {
			c.client.SetReadDeadline(time.Now().Add(2 * c.readEvery))
		} else {
			c.client.SetReadDeadline(time.Time{})
		}
		f, err := r.Read()
		if err != nil {
			return
		}
		if f == nil || c.stalled.Load() {
			continue
		}
		switch f.Command {
		case frame.SUBSCRIBE:
			dest := f.Header.Get(frame.Destination)
			topic, isTopic := strings.CutPrefix(dest, "/topic/")
			if !isTopic || !b.approved(topic) {
				b.mu.Lock()
				b.stats.RefusedTopics++
				b.mu.Unlock()
				name := strings.TrimPrefix(dest, "/topic/")
				c.fail(f, fmt.Sprintf("remote addConsumer failed because the specified destination 'topic://%s' is not a known or approved topic", name),
					"java.lang.SecurityException: the specified destination 'topic://"+name+"' is not a known or approved topic")
				return
			}
			id := f.Header.Get(frame.Id)
			b.mu.Lock()
			if _, dup := c.subs[id]; !dup {
				c.subs[id] = topic
				b.subs[topic]++
				b.stats.Subscriptions++
			}
			b.mu.Unlock()
		case frame.UNSUBSCRIBE:
			b.mu.Lock()
			if topic, ok := c.subs[f.Header.Get(frame.Id)]; ok {
				delete(c.subs, f.Header.Get(frame.Id))
				b.subs[topic]--
			}
			b.mu.Unlock()
		case frame.SEND:
			c.fail(f, "User is not authorized to write to: "+strings.Replace(f.Header.Get(frame.Destination), "/topic/", "topic://", 1),
				"java.lang.SecurityException: only the HMC publishes notifications")
			return
		case frame.ACK, frame.NACK:
			continue // subscriptions are ack=auto
		case frame.BEGIN, frame.COMMIT, frame.ABORT:
			// Nothing to do for a consumer; only the receipt matters.
		case frame.DISCONNECT:
			c.receipt(f)
			c.closeWhenFlushed()
			return
		default:
			c.fail(f, "Unknown STOMP action: "+f.Command, "")
			return
		}
		c.receipt(f)
	}
}

// receipt queues the RECEIPT a frame asks for, behind the messages queued
// before it.
func (c *brokerConn) receipt(f *frame.Frame) {
	if r, ok := f.Header.Contains(frame.Receipt); ok {
		c.enqueue(frame.New(frame.RECEIPT, frame.ReceiptId, r))
	}
}

// closeWhenFlushed lets the writer send what is queued (a DISCONNECT's
// receipt) and close the connection then; a second at most.
func (c *brokerConn) closeWhenFlushed() {
	c.closing.Store(true)
	c.wake()
	select {
	case <-c.dead:
	case <-time.After(time.Second):
	}
}
