package hmc

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"regexp"
	"sort"
	"strconv"
	"time"

	"github.com/go-stomp/stomp/v3/frame"

	"github.com/jobbridge/jobbridge/bridge"
	hmcpoll "github.com/jobbridge/jobbridge/pollers/hmc"
)

// stompSub is one subscription of a connection.
type stompSub struct {
	id, topic string
	live      bool // its RECEIPT came
}

// stompState is what one connection has subscribed to.
type stompState struct {
	c        *stompConn
	n        *Notifier
	own      string               // the session's job topic
	byTopic  map[string]*stompSub // topic -> subscription
	byRcpt   map[string]*stompSub // receipt -> subscription awaiting it
	nextID   int
	watchers map[string][]string // topic -> watched jobs naming it
	live     bool                // the first subscriptions are live
}

// stompConnection runs one STOMP connection: log in, subscribe to the
// session's job topic and the watches' topics, wait until every
// subscription is live (its RECEIPT), reconcile, then turn messages into
// hints until the connection fails or the session changes.
func (n *Notifier) stompConnection(ctx context.Context, sess hmcpoll.Session, sessCh <-chan hmcpoll.Session, up *bool) error {
	login, passcode, how := n.stompLogin(sess)
	c, err := dialSTOMP(ctx, stompDial{
		Addr: n.opts.STOMPAddr, TLS: n.tlsFor(n.opts.STOMPAddr, n.opts.PlainSTOMP),
		Login: login, Passcode: passcode, Host: n.opts.STOMPHost,
		HeartBeat: n.opts.HeartBeat, Timeout: n.opts.ConnectTimeout, KeepAlive: 15 * time.Second,
		WriteTimeout: n.opts.ConnectTimeout, FrameBuffer: 1024,
	})
	if err != nil {
		var be *brokerError
		if errors.As(err, &be) && be.During == "CONNECT" && how == LoginSession {
			// The session's credential is refused: the session has ended.
			return fmt.Errorf("%w: STOMP login with the session id of generation %d: %v", errRenew, sess.Generation, err)
		}
		return fmt.Errorf("connecting to the HMC's STOMP broker %s (login with the %s): %w", n.opts.STOMPAddr, how, err)
	}
	defer c.close()
	st := &stompState{c: c, n: n, own: normalizeTopic(sess.JobNotificationTopic), byTopic: map[string]*stompSub{}, byRcpt: map[string]*stompSub{}}
	n.log.Debug().Str("broker", c.server).Str("version", c.version).Dur("send_heartbeat", c.sendHB).Dur("read_timeout", c.readTO).Msg("connected to the HMC's STOMP broker")

	want := st.desired()
	for _, t := range sortedKeys(want) {
		if err := st.subscribe(t); err != nil {
			return err
		}
	}
	deadline := time.NewTimer(n.opts.ReceiptTimeout)
	defer deadline.Stop()
	for len(st.byRcpt) > 0 {
		select {
		case <-ctx.Done():
			c.disconnect(time.Second)
			return ctx.Err()
		case f := <-c.frames:
			if err := st.frame(f); err != nil {
				return err
			}
		case err := <-c.errc:
			return fmt.Errorf("STOMP connection lost while subscribing: %w", err)
		case <-deadline.C:
			return fmt.Errorf("no RECEIPT for SUBSCRIBE from the STOMP broker within %s", n.opts.ReceiptTimeout)
		}
	}
	*up = true
	st.live = true
	n.connectedWith(sess)
	st.publishTopics()
	// Every subscription is live: anything that completes from now on is
	// announced. What completed before, or while we were away, is found by
	// polling every tracked job once.
	n.reconcile("STOMP subscriptions live")

	tick := time.NewTicker(n.opts.WatchPoll)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			c.disconnect(time.Second)
			return ctx.Err()
		case f := <-c.frames:
			if err := st.frame(f); err != nil {
				return err
			}
		case err := <-c.errc:
			return fmt.Errorf("STOMP connection lost: %w", err)
		case s, ok := <-sessCh:
			if ok && s.Generation != sess.Generation {
				c.disconnect(time.Second)
				return &sessionChanged{Next: s}
			}
		case <-tick.C:
			if err := st.resubscribe(); err != nil {
				return err
			}
		}
	}
}

// stompLogin picks the STOMP credentials: the session's id and credential,
// or the configured user (also when the HMC gave no session-credential).
func (n *Notifier) stompLogin(sess hmcpoll.Session) (login, passcode string, how LoginMode) {
	if n.opts.Login == LoginPassword || sess.Credential.IsZero() {
		if n.opts.UserID != "" {
			return n.opts.UserID, n.opts.Password.Reveal(), LoginPassword
		}
	}
	return sess.ID.Reveal(), sess.Credential.Reveal(), LoginSession
}

// tlsFor returns the TLS configuration for addr, nil for plain.
func (n *Notifier) tlsFor(addr string, plain bool) *tls.Config {
	if plain {
		return nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if n.opts.TLS != nil {
		cfg = n.opts.TLS.Clone()
	}
	if cfg.ServerName == "" {
		cfg.ServerName = hostOf(addr)
	}
	return cfg
}

func hostOf(addr string) string {
	h, _, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	return h
}

// desired returns the topics to subscribe to, with the jobs that name them.
func (st *stompState) desired() map[string][]string {
	st.watchers = st.n.watchTopics()
	want := map[string][]string{}
	for t, jobs := range st.watchers {
		want[t] = jobs
	}
	if st.own != "" {
		want[st.own] = append(want[st.own], "")
	}
	return want
}

func (st *stompState) subscribe(topic string) error {
	st.nextID++
	s := &stompSub{id: "jobbridge-" + strconv.Itoa(st.nextID), topic: topic}
	rcpt := "sub-" + strconv.Itoa(st.nextID)
	f := frame.New(frame.SUBSCRIBE, frame.Id, s.id, frame.Destination, "/topic/"+topic, frame.Ack, frame.AckAuto, frame.Receipt, rcpt)
	if err := st.c.write(f, st.n.opts.ConnectTimeout); err != nil {
		return fmt.Errorf("sending SUBSCRIBE: %w", err)
	}
	st.byTopic[topic] = s
	st.byRcpt[rcpt] = s
	return nil
}

// resubscribe follows the watches: new topics are subscribed to (and their
// jobs hinted once live, in case they completed before), topics no watch
// names any more are left. The session's own topic always stays.
func (st *stompState) resubscribe() error {
	want := st.desired()
	for _, t := range sortedKeys(want) {
		if _, ok := st.byTopic[t]; !ok {
			if err := st.subscribe(t); err != nil {
				return err
			}
		}
	}
	for t, s := range st.byTopic {
		if _, ok := want[t]; ok {
			continue
		}
		// No receipt: nothing waits for it, so a broker that never answers
		// cannot block us (go-stomp #109).
		if err := st.c.write(frame.New(frame.UNSUBSCRIBE, frame.Id, s.id), st.n.opts.ConnectTimeout); err != nil {
			return fmt.Errorf("sending UNSUBSCRIBE: %w", err)
		}
		delete(st.byTopic, t)
	}
	st.publishTopics()
	return nil
}

// frame handles one frame from the broker.
func (st *stompState) frame(f *frame.Frame) error {
	switch f.Command {
	case frame.MESSAGE:
		c, ok, err := parseCompletion(f.Header.Contains)
		switch {
		case err != nil:
			st.n.log.Warn().Err(err).Str("destination", f.Header.Get(frame.Destination)).Msg("ignoring a malformed HMC notification")
		case ok:
			st.n.handle(c)
		default:
			st.n.m.notifications.WithLabelValues(f.Header.Get(hdrNotificationType)).Inc()
		}
	case frame.RECEIPT:
		rcpt := f.Header.Get(frame.ReceiptId)
		s, ok := st.byRcpt[rcpt]
		if !ok {
			return nil
		}
		delete(st.byRcpt, rcpt)
		s.live = true
		st.publishTopics()
		if st.live && s.topic != st.own {
			// A topic added while connected: its jobs may have completed
			// before the subscription was live, so poll them once (a
			// catch-up poll, not a notification: no Marker).
			for _, job := range st.watchers[s.topic] {
				st.n.hinter.Hint(bridge.JobRef{Vendor: st.n.opts.Vendor, Instance: st.n.opts.Instance, ID: job})
			}
		}
	case frame.ERROR:
		be := newBrokerError(f, "")
		s, ok := st.byRcpt[be.Receipt]
		if !ok {
			s = st.byTopic[topicInError(be.Message+" "+be.Body)]
		}
		if s == nil {
			return be
		}
		be.During = "SUBSCRIBE /topic/" + s.topic
		if s.topic == st.own {
			// Our own job topic unknown: the session is gone.
			return fmt.Errorf("%w: %v", errRenew, be)
		}
		st.n.refuse(s.topic, be)
		// The broker closes the connection after an ERROR; reconnect at
		// once without that topic.
		return fmt.Errorf("topic %s refused; reconnecting without it: %w", s.topic, be)
	}
	return nil
}

// topicRe finds the topic named in an ActiveMQ error message
// ("... destination 'topic://NAME' is not a known or approved topic").
var topicRe = regexp.MustCompile(`topic://([^'"\s]+)`)

func topicInError(msg string) string {
	if m := topicRe.FindStringSubmatch(msg); m != nil {
		return m[1]
	}
	return ""
}

// publishTopics copies the live subscriptions into the status.
func (st *stompState) publishTopics() {
	var live []string
	for t, s := range st.byTopic {
		if s.live {
			live = append(live, t)
		}
	}
	sort.Strings(live)
	st.n.mu.Lock()
	st.n.status.Topics = live
	st.n.mu.Unlock()
}

func sortedKeys(m map[string][]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
