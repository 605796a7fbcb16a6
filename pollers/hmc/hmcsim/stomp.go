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
	"github.com/go-stomp/stomp/v3/server"
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
	// Dropped counts connections cut by DropConnections or because their
	// session ended; Stalled those silenced by StallConnections.
	Dropped int
	Stalled int
}

// Broker is the HMC's STOMP broker: the go-stomp server package does the
// topic fan-out and heart-beats, and a front end in this file applies what
// the HMC's ActiveMQ adds: logins with session-id and session-credential
// (or userid and password), ERROR frames for unknown or unapproved topics,
// consumers only (no SEND), STOMP 1.1, and the job-completion messages
// themselves. It also injects network faults.
//
// The go-stomp server has no shutdown: after Close one of its goroutines
// stays parked for the life of the process (a test-only cost).
type Broker struct {
	s       *Server
	log     zerolog.Logger
	front   net.Listener
	innerL  net.Listener
	inner   string
	tls     bool
	done    chan struct{}
	wg      sync.WaitGroup
	pubMu   sync.Mutex
	pub     net.Conn
	pubW    *frame.Writer
	nextRct atomic.Int64

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
	if s.push.currentBroker() != nil {
		return nil, errors.New("the STOMP broker is running already")
	}
	b := &Broker{
		s: s, log: s.log.With().Str("component", "hmcsim-stomp").Logger(), tls: opts.TLS,
		done: make(chan struct{}), conns: make(map[*brokerConn]struct{}), subs: make(map[string]int),
	}
	var err error
	if b.innerL, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
		return nil, err
	}
	b.inner = b.innerL.Addr().String()
	inner := &server.Server{HeartBeat: opts.MinHeartBeat, Log: stompLog{b.log}}
	go inner.Serve(b.innerL) //nolint:errcheck // ends when innerL closes (see the type's doc)
	if b.front, err = net.Listen("tcp", opts.Addr); err != nil {
		b.innerL.Close()
		return nil, err
	}
	if opts.TLS {
		cfg := s.ts.TLS.Clone()
		cfg.NextProtos = nil
		b.front = tls.NewListener(b.front, cfg)
	}
	if err := b.connectPublisher(); err != nil {
		b.front.Close()
		b.innerL.Close()
		return nil, fmt.Errorf("STOMP publisher: %w", err)
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

// Close stops the broker and cuts every connection.
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
	b.pubMu.Lock()
	if b.pub != nil {
		b.pub.Close()
	}
	b.pubMu.Unlock()
	b.innerL.Close()
	b.wg.Wait()
}

// connectPublisher opens the connection on which the HMC side SENDs its
// messages to the inner broker.
func (b *Broker) connectPublisher() error {
	c, err := net.DialTimeout("tcp", b.inner, 5*time.Second)
	if err != nil {
		return err
	}
	w := frame.NewWriter(c)
	if err := w.Write(frame.New(frame.CONNECT, frame.AcceptVersion, "1.1", frame.Host, "hmcsim", frame.HeartBeat, "0,0")); err != nil {
		c.Close()
		return err
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	f, err := frame.NewReader(c).Read()
	if err != nil {
		c.Close()
		return err
	}
	if f == nil || f.Command != frame.CONNECTED {
		c.Close()
		return errors.New("the inner broker did not answer CONNECTED")
	}
	c.SetReadDeadline(time.Time{})
	b.pub, b.pubW = c, w
	b.wg.Add(1)
	go func() { // drain: the inner broker may write heart-beats or errors
		defer b.wg.Done()
		buf := make([]byte, 512)
		for {
			if _, err := c.Read(buf); err != nil {
				return
			}
		}
	}()
	return nil
}

// publish sends one job-completion message to the session's job topic.
// Without a subscriber it is lost, as on the HMC.
func (b *Broker) publish(m pushMessage) {
	if m.Topic == "" {
		return
	}
	b.mu.Lock()
	b.stats.Published++
	if b.subs[m.Topic] == 0 {
		b.stats.Unheard++
	}
	b.mu.Unlock()
	f := frame.New(frame.SEND, append([]string{frame.Destination, "/topic/" + m.Topic}, m.headers()...)...)
	b.pubMu.Lock()
	defer b.pubMu.Unlock()
	if err := b.pubW.Write(f); err != nil {
		b.log.Debug().Err(err).Msg("publishing a job-completion message failed")
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

// brokerConn is one client connection and its twin on the inner broker.
type brokerConn struct {
	b       *Broker
	client  net.Conn
	inner   net.Conn
	cwMu    sync.Mutex
	cw      *frame.Writer
	session string
	stalled atomic.Bool
	once    sync.Once
	subs    map[string]string // subscription id -> topic; the reading goroutine's own
}

func (c *brokerConn) close() {
	c.once.Do(func() {
		c.client.Close()
		if c.inner != nil {
			c.inner.Close()
		}
	})
}

func (c *brokerConn) writeClient(f *frame.Frame) error {
	c.cwMu.Lock()
	defer c.cwMu.Unlock()
	c.client.SetWriteDeadline(time.Now().Add(10 * time.Second))
	return c.cw.Write(f)
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

// serve runs one client connection: the CONNECT here, then frames both
// ways until either side ends.
func (b *Broker) serve(nc net.Conn) {
	c := &brokerConn{b: b, client: nc, cw: frame.NewWriter(nc), subs: make(map[string]string)}
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
	inner, err := net.DialTimeout("tcp", b.inner, 5*time.Second)
	if err != nil {
		return
	}
	c.inner = inner
	hb := connect.Header.Get(frame.HeartBeat)
	if hb == "" {
		hb = "0,0"
	}
	iw := frame.NewWriter(inner)
	if err := iw.Write(frame.New(frame.CONNECT, frame.AcceptVersion, "1.1", frame.Host, "hmcsim", frame.HeartBeat, hb)); err != nil {
		return
	}
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
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		c.fromInner()
	}()
	c.fromClient(r, iw)
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

func (c *brokerConn) fromClient(r *frame.Reader, iw *frame.Writer) {
	b := c.b
	for {
		f, err := r.Read()
		if err != nil {
			return
		}
		if c.stalled.Load() {
			continue
		}
		if f == nil {
			if iw.Write(nil) != nil {
				return
			}
			continue
		}
		var out []*frame.Frame
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
			if _, dup := c.subs[id]; !dup {
				c.subs[id] = topic
				b.mu.Lock()
				b.subs[topic]++
				b.stats.Subscriptions++
				b.mu.Unlock()
			}
			out = c.withReceipt(f)
		case frame.UNSUBSCRIBE:
			if topic, ok := c.subs[f.Header.Get(frame.Id)]; ok {
				delete(c.subs, f.Header.Get(frame.Id))
				b.mu.Lock()
				b.subs[topic]--
				b.mu.Unlock()
			}
			out = c.withReceipt(f)
		case frame.SEND:
			c.fail(f, "User is not authorized to write to: "+strings.Replace(f.Header.Get(frame.Destination), "/topic/", "topic://", 1),
				"java.lang.SecurityException: only the HMC publishes notifications")
			return
		case frame.ACK, frame.NACK:
			continue // subscriptions are ack=auto
		default:
			out = []*frame.Frame{f}
		}
		for _, o := range out {
			if iw.Write(o) != nil {
				return
			}
		}
	}
}

// withReceipt forwards a SUBSCRIBE or UNSUBSCRIBE to the inner broker,
// which does not answer receipts for them. A receipt asked for comes from
// an empty transaction (BEGIN with the receipt, then ABORT) sent right
// after it: the inner broker handles a connection's frames in order, so
// the RECEIPT means the subscription is in place, as it does on ActiveMQ.
func (c *brokerConn) withReceipt(f *frame.Frame) []*frame.Frame {
	receipt, ok := f.Header.Contains(frame.Receipt)
	if !ok {
		return []*frame.Frame{f}
	}
	f.Header.Del(frame.Receipt)
	tx := "hmcsim-receipt-" + strconv.FormatInt(c.b.nextRct.Add(1), 10)
	return []*frame.Frame{
		f,
		frame.New(frame.BEGIN, frame.Transaction, tx, frame.Receipt, receipt),
		frame.New(frame.ABORT, frame.Transaction, tx),
	}
}

func (c *brokerConn) fromInner() {
	r := frame.NewReader(c.inner)
	for {
		f, err := r.Read()
		if err != nil {
			if !c.stalled.Load() {
				c.close()
			}
			// A stalled connection stays open until the client gives up.
			return
		}
		if c.stalled.Load() {
			continue
		}
		if f != nil {
			switch f.Command {
			case frame.CONNECTED:
				f.Header.Set(frame.Server, "ActiveMQ/5.15.9 (hmcsim)")
				f.Header.Set(frame.Session, "ID:hmcsim-"+strconv.FormatInt(c.b.nextRct.Add(1), 10))
			case frame.MESSAGE:
				f.Header.Del(frame.Id) // the go-stomp server's, not ActiveMQ's
			}
		}
		if c.writeClient(f) != nil {
			c.close()
			return
		}
	}
}

// stompLog sends the go-stomp server's log lines to zerolog at debug level.
type stompLog struct{ l zerolog.Logger }

func (s stompLog) Debugf(format string, v ...any)   { s.l.Debug().Msgf(format, v...) }
func (s stompLog) Infof(format string, v ...any)    { s.l.Debug().Msgf(format, v...) }
func (s stompLog) Warningf(format string, v ...any) { s.l.Debug().Msgf(format, v...) }
func (s stompLog) Errorf(format string, v ...any)   { s.l.Debug().Msgf(format, v...) }
func (s stompLog) Debug(m string)                   { s.l.Debug().Msg(m) }
func (s stompLog) Info(m string)                    { s.l.Debug().Msg(m) }
func (s stompLog) Warning(m string)                 { s.l.Debug().Msg(m) }
func (s stompLog) Error(m string)                   { s.l.Debug().Msg(m) }
