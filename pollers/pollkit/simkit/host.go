package simkit

import (
	"bufio"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"time"

	"github.com/rs/zerolog"
)

// LocalAddr is where a NewServer listens: a random port on the loopback.
const LocalAddr = "127.0.0.1:0"

// Host runs a simulator's listeners, in the style of httptest.Server, and
// stops everything the simulator started when it closes. The zero value is
// not usable: call NewHost. It is safe for concurrent use.
type Host struct {
	done      chan struct{}
	closeOnce sync.Once
	wg        sync.WaitGroup

	mu      sync.Mutex
	servers []*httptest.Server
	onClose []func()
}

// NewHost returns a host without listeners: a simulator builds one with
// its state, so that checking options (LoadScenario) listens nowhere.
func NewHost() *Host { return &Host{done: make(chan struct{})} }

// Listen serves handler on addr (host:port; port 0 picks a free one), over
// https with httptest's certificate (valid for 127.0.0.1, ::1 and
// example.com) when useTLS. The first listener is the one Client and
// Certificate speak for; a simulator with a second host name (a separate
// login portal, say) listens again. Close stops them all.
func (h *Host) Listen(addr string, useTLS bool, handler http.Handler) (*httptest.Server, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	ts := httptest.NewUnstartedServer(handler)
	ts.Listener.Close()
	ts.Listener = l
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed() {
		l.Close()
		return nil, errors.New("the simulator is closed")
	}
	if useTLS {
		ts.StartTLS()
	} else {
		ts.Start()
	}
	h.servers = append(h.servers, ts)
	return ts, nil
}

func (h *Host) closed() bool {
	select {
	case <-h.done:
		return true
	default:
		return false
	}
}

// Done is closed when Close begins: a long answer (a stream, a held
// reply) stops on it.
func (h *Host) Done() <-chan struct{} { return h.done }

// Hold waits d in real time, as a delay fault does: it models the network,
// not the vendor, so it ignores the simulator's clock. It reports whether
// to answer after it: false when the client gave up or the simulator is
// closing.
func (h *Host) Hold(r *http.Request, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-r.Context().Done():
	case <-h.done:
	}
	return false
}

// OnClose registers fn to run when Close begins, after Done is closed and
// before the listeners stop (a push broker to shut, streams to drop).
func (h *Host) OnClose(fn func()) {
	h.mu.Lock()
	h.onClose = append(h.onClose, fn)
	h.mu.Unlock()
}

// Go runs fn in a goroutine that Close waits for; fn must return once done
// is closed. Call it before Close.
func (h *Host) Go(fn func(done <-chan struct{})) {
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		fn(h.done)
	}()
}

// Close stops the simulator: Done closes (cutting held answers short), the
// OnClose hooks run in order, the listeners stop and the goroutines of Go
// are waited for. Later calls do nothing.
func (h *Host) Close() {
	h.closeOnce.Do(func() {
		h.mu.Lock()
		close(h.done)
		hooks, servers := h.onClose, h.servers
		h.mu.Unlock()
		for _, fn := range hooks {
			fn()
		}
		for _, ts := range servers {
			ts.Close()
		}
		h.wg.Wait()
	})
}

// primary is the first listener; nil before Listen.
func (h *Host) primary() *httptest.Server {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.servers) == 0 {
		return nil
	}
	return h.servers[0]
}

// Client returns an HTTP client that trusts the first listener's
// certificate.
func (h *Host) Client() *http.Client {
	if ts := h.primary(); ts != nil {
		return ts.Client()
	}
	return &http.Client{}
}

// Certificate returns the first listener's TLS certificate, nil without
// TLS.
func (h *Host) Certificate() *x509.Certificate {
	if ts := h.primary(); ts != nil {
		return ts.Certificate()
	}
	return nil
}

// Must returns s, or panics as httptest.NewServer does when it cannot
// listen: for NewServer, whose callers are tests.
func Must[S any](s S, err error) S {
	if err != nil {
		panic(fmt.Sprintf("%T: %v", s, err))
	}
	return s
}

// LogRequests wraps h to log one debug line per request: method, escaped
// path and status (or that the handler took the connection over). Never
// headers, query or body: credentials travel there.
func LogRequests(log zerolog.Logger, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := &statusRecorder{ResponseWriter: w, code: http.StatusOK}
		defer func() {
			ev := log.Debug().Str("method", r.Method).Str("path", r.URL.EscapedPath())
			if rec.hijacked {
				ev = ev.Bool("hijacked", true)
			} else {
				ev = ev.Int("status", rec.code)
			}
			ev.Msg("request")
		}()
		h.ServeHTTP(rec, r)
	})
}

type statusRecorder struct {
	http.ResponseWriter
	code     int
	hijacked bool
}

func (w *statusRecorder) WriteHeader(code int) {
	w.code = code
	w.ResponseWriter.WriteHeader(code)
}

// Hijack hands the connection to a handler that writes its answer by hand
// (a status line net/http refuses to write, say).
func (w *statusRecorder) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	conn, rw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	w.hijacked = err == nil
	return conn, rw, err
}

// Unwrap lets http.ResponseController reach the Flusher of a stream.
func (w *statusRecorder) Unwrap() http.ResponseWriter { return w.ResponseWriter }
