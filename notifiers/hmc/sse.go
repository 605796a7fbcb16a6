package hmc

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/r3labs/sse/v2"

	hmcpoll "github.com/jobbridge/jobbridge/pollers/hmc"
)

// sseState survives connections: the stream belongs to a session and is
// reused until the HMC says it is gone (404) or the session changes. Only
// the reconnect loop's goroutine touches it.
type sseState struct {
	client   *http.Client
	stream   string
	gen      uint64
	lastID   string
	initWait time.Duration
}

// errStreamGone: the HMC answered 404 to open, so the stream is invalid or
// its session is not fully authenticated any more; a new one is created.
var errStreamGone = errors.New("the HMC does not know the SSE stream (404): creating a new one")

// errCleanEOF: the HMC ended the response normally. r3labs' client treats
// this as the end and never reconnects (#147); here it is one more reason
// to reconnect and reconcile.
var errCleanEOF = errors.New("the HMC ended the SSE stream (clean end of the response)")

// initialEventsWait bounds the wait for initial-events-end before
// reconciling anyway (an HMC that does not send the framing).
const initialEventsWait = 5 * time.Second

func (n *Notifier) sseClient() *http.Client {
	if n.sse.client == nil {
		u, _ := url.Parse(n.opts.BaseURL)
		plain := u == nil || u.Scheme == "http"
		host := ""
		if u != nil {
			host = u.Host
		}
		tr := &http.Transport{
			Proxy:                 http.ProxyFromEnvironment,
			DialContext:           (&net.Dialer{Timeout: n.opts.ConnectTimeout, KeepAlive: 15 * time.Second}).DialContext,
			TLSClientConfig:       n.tlsFor(host, plain),
			TLSHandshakeTimeout:   n.opts.ConnectTimeout,
			ResponseHeaderTimeout: n.opts.ConnectTimeout,
			MaxIdleConnsPerHost:   2,
		}
		n.sse.client = &http.Client{Transport: tr} // no Timeout: the stream is long-lived
		if n.sse.initWait == 0 {
			n.sse.initWait = initialEventsWait
		}
	}
	return n.sse.client
}

// createStream runs Create Server-Sent Events Stream (assumed, sseapi.go).
func (n *Notifier) createStream(ctx context.Context, sess hmcpoll.Session) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, n.opts.ConnectTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(n.opts.BaseURL, "/")+sseCreatePath, bytes.NewReader(sseCreateBody))
	if err != nil {
		return "", err
	}
	req.Header.Set(hmcpoll.SessionHeader, sess.ID.Reveal())
	req.Header.Set("Content-Type", "application/json")
	resp, err := n.sseClient().Do(req)
	if err != nil {
		return "", fmt.Errorf("creating an SSE stream: %w", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	switch {
	case resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusCreated:
		return parseCreateStream(body)
	case resp.StatusCode == http.StatusForbidden && (hmcReason(body) == 4 || hmcReason(body) == 5):
		return "", fmt.Errorf("%w: creating an SSE stream: HTTP 403 reason %d", errRenew, hmcReason(body))
	case resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusMethodNotAllowed:
		return "", fmt.Errorf("the HMC has no SSE stream creation at POST %s (HTTP %d): that URI is assumed (notifiers/hmc/sseapi.go), SSE needs HMC 2.16 with SSE enabled in Customize API Settings; use notifications: stomp meanwhile", sseCreatePath, resp.StatusCode)
	}
	return "", fmt.Errorf("creating an SSE stream: HTTP %d: %s", resp.StatusCode, clip(string(body)))
}

// sseConnection runs one SSE connection: create a stream if there is none
// for this session, open it with the session header, reconcile once
// initial-events-end says it is live, and turn job-completion events into
// hints until it ends. Guards against the r3labs client's known bugs
// (anchors-and-pitfalls.md §8) by not using its Client at all, only its
// EventStreamReader: every end of the stream, a clean EOF included, goes
// back to the reconnect loop, whose backoff never gives up; the
// Last-Event-ID sent is the last event handled, not the last parsed; and
// events are capped at MaxEventBytes with a clear error, not 64 KiB.
func (n *Notifier) sseConnection(ctx context.Context, sess hmcpoll.Session, sessCh <-chan hmcpoll.Session, up *bool) error {
	if n.sse.stream == "" || n.sse.gen != sess.Generation {
		id, err := n.createStream(ctx, sess)
		if err != nil {
			return err
		}
		n.sse.stream, n.sse.gen, n.sse.lastID = id, sess.Generation, ""
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, sseOpenURL(n.opts.BaseURL, n.sse.stream), nil)
	if err != nil {
		return err
	}
	req.Header.Set(hmcpoll.SessionHeader, sess.ID.Reveal())
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("Cache-Control", "no-cache")
	if n.sse.lastID != "" {
		req.Header.Set("Last-Event-ID", n.sse.lastID)
	}
	resp, err := n.sseClient().Do(req)
	if err != nil {
		return fmt.Errorf("opening the SSE stream: %w", err)
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusOK:
	case resp.StatusCode == http.StatusNotFound:
		n.sse.stream = ""
		return errStreamGone
	case resp.StatusCode == http.StatusForbidden:
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
		if r := hmcReason(body); r == 4 || r == 5 {
			n.sse.stream = ""
			return fmt.Errorf("%w: opening the SSE stream: HTTP 403 reason %d", errRenew, r)
		}
		return fmt.Errorf("opening the SSE stream: HTTP 403 %s: check the user's authority", clip(string(body)))
	default:
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<12))
		return fmt.Errorf("opening the SSE stream: HTTP %d: %s", resp.StatusCode, clip(string(body)))
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") {
		return fmt.Errorf("opening the SSE stream: Content-Type %q, want text/event-stream: is BaseURL the HMC's Web Services API?", ct)
	}

	events := make(chan sseEvent, 256)
	errc := make(chan error, 1)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		r := sse.NewEventStreamReader(resp.Body, n.opts.MaxEventBytes)
		for {
			raw, err := r.ReadEvent()
			if err != nil {
				errc <- err
				return
			}
			select {
			case events <- parseSSEEvent(raw):
			case <-ctx.Done():
				return
			}
		}
	}()
	// The reader ends when the body is closed; wait for it, so no
	// goroutine outlives the connection.
	defer wg.Wait()
	defer resp.Body.Close()
	defer cancel()

	var idle <-chan time.Time
	var idleT *time.Timer
	if n.opts.SSEIdleTimeout > 0 {
		idleT = time.NewTimer(n.opts.SSEIdleTimeout)
		defer idleT.Stop()
		idle = idleT.C
	}
	initT := time.NewTimer(n.sse.initWait)
	defer initT.Stop()
	live := func(why string) {
		if *up {
			return
		}
		*up = true
		n.connectedWith(sess)
		n.reconcile(why)
	}
	for {
		select {
		case ev := <-events:
			if idleT != nil {
				idleT.Reset(n.opts.SSEIdleTimeout)
			}
			switch {
			case ev.Comment:
			case ev.Event == sseInitialStart:
			case ev.Event == sseInitialEnd:
				live("SSE stream live (initial-events-end)")
			default:
				c, ok, err := sseCompletion(ev)
				switch {
				case err != nil:
					n.log.Warn().Err(err).Str("event", ev.Event).Msg("ignoring a malformed HMC SSE event")
				case ok:
					n.handle(c)
				case ev.Event != "":
					n.m.notifications.WithLabelValues(ev.Event).Inc()
				}
				// Stored only now that the event is handled (r3labs stores
				// it when parsed, so a resume would skip a lost one).
				if ev.HasID {
					n.sse.lastID = ev.ID
				}
			}
		case err := <-errc:
			switch {
			case errors.Is(err, io.EOF):
				return errCleanEOF
			case errors.Is(err, bufio.ErrTooLong):
				return fmt.Errorf("an SSE event was larger than MaxEventBytes (%d bytes); raise it: the stream is reopened and every job reconciled", n.opts.MaxEventBytes)
			}
			return fmt.Errorf("SSE stream lost: %w", err)
		case <-idle:
			return fmt.Errorf("the SSE stream was silent for %s (SSEIdleTimeout)", n.opts.SSEIdleTimeout)
		case <-initT.C:
			if !*up {
				n.log.Warn().Dur("waited", n.sse.initWait).Msg("no initial-events-end from the HMC; treating the SSE stream as live")
				live("SSE stream open (no initial-events-end)")
			}
		case s, ok := <-sessCh:
			if ok && s.Generation != sess.Generation {
				return &sessionChanged{Next: s}
			}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
