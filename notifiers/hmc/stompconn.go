package hmc

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/go-stomp/stomp/v3/frame"
)

// stompConn is one STOMP 1.1 connection, built on go-stomp's frame codec.
// go-stomp's own Conn is not used, for reasons found in its code and issue
// tracker (anchors-and-pitfalls.md §8): a receipt on SUBSCRIBE closes the
// subscription's channel, so a client cannot learn when a subscription is
// live (and must be, before reconciling, or a completion can fall between
// the reconcile and the subscription); an ERROR frame is fanned out to
// every subscription without saying which SUBSCRIBE caused it; Disconnect
// and Unsubscribe wait for receipts that may never come (#122, #109); and
// it has no reconnect. Here every wait is bounded, heart-beats are sent
// ahead of the negotiated interval (ActiveMQ closes a connection whose
// heart-beat is even slightly late, #32), a missing server heart-beat ends
// the connection, and frames reach the caller in order on one channel.
type stompConn struct {
	nc      net.Conn
	wmu     sync.Mutex
	w       *frame.Writer
	frames  chan *frame.Frame
	errc    chan error // the reader's terminal error, once
	done    chan struct{}
	once    sync.Once
	wg      sync.WaitGroup
	sendHB  time.Duration
	readTO  time.Duration
	server  string
	version string
}

// stompDial describes one connection attempt.
type stompDial struct {
	Addr string
	// TLS, when set, wraps the connection (the HMC's 61612); nil is plain
	// TCP (61613).
	TLS             *tls.Config
	Login, Passcode string
	Host            string
	HeartBeat       time.Duration // asked for both ways; 0: none
	Timeout         time.Duration // dial, handshake and CONNECTED
	KeepAlive       time.Duration // TCP keepalive period
	WriteTimeout    time.Duration
	FrameBuffer     int
}

// brokerError is an ERROR frame from the broker.
type brokerError struct {
	// During says what the frame answered: "CONNECT", or "SUBSCRIBE" with
	// Receipt, or "" when unsolicited.
	During  string
	Receipt string
	Message string
	Body    string
}

func (e *brokerError) Error() string {
	s := "the STOMP broker sent ERROR"
	if e.During != "" {
		s += " to " + e.During
	}
	s += ": " + clip(e.Message)
	if e.Body != "" {
		s += " (" + clip(e.Body) + ")"
	}
	return s
}

func newBrokerError(f *frame.Frame, during string) *brokerError {
	return &brokerError{During: during, Receipt: f.Header.Get(frame.ReceiptId), Message: f.Header.Get(frame.Message), Body: string(f.Body)}
}

// errHeartBeat: nothing, not even a heart-beat, came in time.
var errHeartBeat = errors.New("no heart-beat from the STOMP broker in time (the connection is half-open or the broker is stuck)")

// dialSTOMP connects, logs in and negotiates heart-beats. A refused login
// is a *brokerError with During "CONNECT".
func dialSTOMP(ctx context.Context, o stompDial) (*stompConn, error) {
	d := net.Dialer{Timeout: o.Timeout, KeepAlive: o.KeepAlive}
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	nc, err := d.DialContext(ctx, "tcp", o.Addr)
	if err != nil {
		return nil, err
	}
	if o.TLS != nil {
		tc := tls.Client(nc, o.TLS)
		if err := tc.HandshakeContext(ctx); err != nil {
			nc.Close()
			return nil, fmt.Errorf("TLS handshake with %s: %w", o.Addr, err)
		}
		nc = tc
	}
	// Bound the whole login by ctx as well as by the deadline.
	stop := context.AfterFunc(ctx, func() { nc.SetDeadline(time.Now()) })
	defer stop()
	nc.SetDeadline(time.Now().Add(o.Timeout))
	w := frame.NewWriter(nc)
	hb := ms(o.HeartBeat)
	connect := frame.New(frame.STOMP,
		frame.AcceptVersion, "1.1",
		frame.Host, o.Host,
		frame.HeartBeat, hb+","+hb,
		frame.Login, o.Login,
		frame.Passcode, o.Passcode)
	if err := w.Write(connect); err != nil {
		nc.Close()
		return nil, fmt.Errorf("sending CONNECT: %w", err)
	}
	r := frame.NewReader(nc)
	var f *frame.Frame
	for f == nil { // skip heart-beats
		if f, err = r.Read(); err != nil {
			nc.Close()
			if ctx.Err() != nil {
				return nil, fmt.Errorf("no CONNECTED from %s: %w", o.Addr, ctx.Err())
			}
			return nil, fmt.Errorf("no CONNECTED from %s: %w", o.Addr, err)
		}
	}
	if !stop() {
		nc.Close()
		return nil, ctx.Err()
	}
	nc.SetDeadline(time.Time{})
	switch f.Command {
	case frame.CONNECTED:
	case frame.ERROR:
		nc.Close()
		return nil, newBrokerError(f, "CONNECT")
	default:
		nc.Close()
		return nil, fmt.Errorf("the STOMP broker answered CONNECT with %s", f.Command)
	}
	c := &stompConn{
		nc: nc, w: w, frames: make(chan *frame.Frame, o.FrameBuffer), errc: make(chan error, 1),
		done: make(chan struct{}), server: f.Header.Get(frame.Server), version: f.Header.Get(frame.Version),
	}
	if c.version != "" && c.version != "1.1" && c.version != "1.2" {
		nc.Close()
		return nil, fmt.Errorf("the STOMP broker speaks version %q; this client speaks 1.1", c.version)
	}
	c.sendHB, c.readTO = negotiate(o.HeartBeat, f.Header.Get(frame.HeartBeat))
	writeTO := o.WriteTimeout
	c.wg.Add(1)
	go c.readLoop(r)
	if c.sendHB > 0 {
		c.wg.Add(1)
		go c.beatLoop(writeTO)
	}
	return c, nil
}

// negotiate applies STOMP 1.1 heart-beating to what we asked (ours, both
// ways) and what the broker answered (sx: it sends every sx; sy: it wants
// ours every sy). We send a quarter ahead of the agreed interval and give
// the broker twice its interval, as zhmcclient does (+100%).
func negotiate(ours time.Duration, answer string) (send, readTimeout time.Duration) {
	sx, sy, err := frame.ParseHeartBeat(answer)
	if err != nil || ours <= 0 {
		return 0, 0
	}
	if sy > 0 {
		send = max(ours, sy) * 3 / 4
	}
	if sx > 0 {
		readTimeout = 2 * max(ours, sx)
	}
	return send, readTimeout
}

func ms(d time.Duration) string { return strconv.FormatInt(d.Milliseconds(), 10) }

func (c *stompConn) readLoop(r *frame.Reader) {
	defer c.wg.Done()
	for {
		if c.readTO > 0 {
			c.nc.SetReadDeadline(time.Now().Add(c.readTO))
		}
		f, err := r.Read()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				err = errHeartBeat
			}
			select {
			case <-c.done:
			default:
				c.errc <- err
			}
			return
		}
		if f == nil {
			continue // a heart-beat
		}
		select {
		case c.frames <- f:
		case <-c.done:
			return
		}
	}
}

func (c *stompConn) beatLoop(writeTO time.Duration) {
	defer c.wg.Done()
	t := time.NewTicker(c.sendHB)
	defer t.Stop()
	for {
		select {
		case <-c.done:
			return
		case <-t.C:
			if err := c.write(nil, writeTO); err != nil {
				return // the reader sees the broken connection too
			}
		}
	}
}

// write sends one frame (nil: a heart-beat) within timeout.
func (c *stompConn) write(f *frame.Frame, timeout time.Duration) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if timeout > 0 {
		c.nc.SetWriteDeadline(time.Now().Add(timeout))
	}
	return c.w.Write(f)
}

// close ends the connection and waits for its goroutines.
func (c *stompConn) close() {
	c.once.Do(func() {
		close(c.done)
		c.nc.Close()
	})
	c.wg.Wait()
}

// disconnect says goodbye politely: DISCONNECT with a receipt, waiting at
// most timeout for it (a broker may never send it), then closes.
func (c *stompConn) disconnect(timeout time.Duration) {
	defer c.close()
	if c.write(frame.New(frame.DISCONNECT, frame.Receipt, "bye"), timeout) != nil {
		return
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	for {
		select {
		case f := <-c.frames:
			if f.Command == frame.RECEIPT && f.Header.Get(frame.ReceiptId) == "bye" {
				return
			}
		case <-c.errc:
			return
		case <-t.C:
			return
		}
	}
}
