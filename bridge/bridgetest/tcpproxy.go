package bridgetest

import (
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TCPProxy forwards TCP connections to a target on 127.0.0.1 and injects
// the network faults a test puts between a client and its server, without
// touching the server (other users of a shared broker keep their
// connections):
//
//   - Cut closes every connection it carries; SetRefusing closes new ones
//     at once, as a link that is down.
//   - Stall makes bytes vanish while connections stay open, as a half-open
//     path: only heart-beats notice.
//   - Freeze holds every byte until Thaw, as a partition that heals.
type TCPProxy struct {
	ln      net.Listener
	target  string
	stalled atomic.Bool

	mu     sync.Mutex
	thawed *sync.Cond // signalled when frozen turns false
	pairs  map[net.Conn]net.Conn
	refuse bool
	frozen bool
}

// NewTCPProxy listens on a random 127.0.0.1 port; the proxy closes when
// the test ends.
func NewTCPProxy(t testing.TB, target string) *TCPProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &TCPProxy{ln: ln, target: target, pairs: map[net.Conn]net.Conn{}}
	p.thawed = sync.NewCond(&p.mu)
	go p.accept()
	t.Cleanup(p.Close)
	return p
}

// Addr is the proxy's host:port, for the client to dial.
func (p *TCPProxy) Addr() string { return p.ln.Addr().String() }

func (p *TCPProxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		refuse := p.refuse
		p.mu.Unlock()
		if refuse {
			c.Close()
			continue
		}
		u, err := net.DialTimeout("tcp", p.target, 5*time.Second)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.pairs[c] = u
		p.mu.Unlock()
		go p.pipe(c, u)
		go p.pipe(u, c)
	}
}

func (p *TCPProxy) pipe(from, to net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := from.Read(buf)
		if n > 0 && !p.stalled.Load() {
			p.mu.Lock()
			for p.frozen {
				p.thawed.Wait()
			}
			p.mu.Unlock()
			if _, werr := to.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			from.Close()
			to.Close()
			return
		}
	}
}

// Cut closes every carried connection and ends a stall, and returns how
// many connections it closed.
func (p *TCPProxy) Cut() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := len(p.pairs)
	for c, u := range p.pairs {
		c.Close()
		u.Close()
	}
	clear(p.pairs)
	p.stalled.Store(false)
	return n
}

// SetRefusing closes new connections at once (true) or carries them again.
func (p *TCPProxy) SetRefusing(refuse bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.refuse = refuse
}

// SetStalled drops every byte in both directions (true) or forwards again.
func (p *TCPProxy) SetStalled(stalled bool) { p.stalled.Store(stalled) }

// Freeze holds every byte in both directions until Thaw.
func (p *TCPProxy) Freeze() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.frozen = true
}

// Thaw delivers what Freeze held and forwards again.
func (p *TCPProxy) Thaw() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.frozen = false
	p.thawed.Broadcast()
}

// Close stops listening and closes every carried connection.
func (p *TCPProxy) Close() {
	p.Thaw()
	p.ln.Close()
	p.Cut()
}
