package hmc

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/jobbridge/jobbridge/bridge"
	"github.com/jobbridge/jobbridge/bridge/backoff"
	hmcpoll "github.com/jobbridge/jobbridge/pollers/hmc"
)

// Hinter is what the notifier needs from the bridge (*bridge.Bridge).
type Hinter interface {
	// Hint polls one job now; false when the job is not watched.
	Hint(job bridge.JobRef) bool
	// Reconcile polls every watched job of an instance now and returns how
	// many.
	Reconcile(vendor, instance string) int
}

// ViaHinter is a Hinter that carries the push channel with a hint
// (*bridge.Bridge): with scale-out, the replica polling the job may not be
// the one holding this session, and it marks its own poller from it.
type ViaHinter interface {
	HintVia(job bridge.JobRef, via bridge.Detection) bool
}

// WatchLister lists an instance's watches (*bridge.Bridge), so the STOMP
// receiver can subscribe to the topics they name (VendorOptions
// "notifyTopic": the job topic of the session that started the job).
type WatchLister interface {
	WatchesOf(vendor, instance string) []bridge.Watch
}

// Marker records that the next poll of a job was caused by a push message,
// so its transition says detectedBy stomp or sse (*ViaPoller).
type Marker interface {
	Mark(job bridge.JobRef, via bridge.Detection)
	Unmark(job bridge.JobRef)
}

// NotifyTopicOption is the watch vendor option naming the job notification
// topic of the session that started the job.
const NotifyTopicOption = "notifyTopic"

// LoginMode says how the STOMP receiver logs in to the broker.
type LoginMode string

// Login modes.
const (
	// LoginSession: the API session's id and session-credential, as
	// zhmcclient does; required with MFA, works without it. The default.
	LoginSession LoginMode = "session"
	// LoginPassword: UserID and Password (an HMC without
	// session-credential, or a plain broker in a test).
	LoginPassword LoginMode = "password"
)

// Defaults for zero Options fields.
const (
	DefaultSafetyInterval   = 5 * time.Minute
	DefaultHeartBeat        = 5 * time.Second
	DefaultWatchPoll        = 5 * time.Second
	DefaultDegradedInterval = 30 * time.Second
	DefaultMaxEventBytes    = 1 << 20
	DefaultConnectTimeout   = 15 * time.Second
	DefaultReceiptTimeout   = 10 * time.Second
)

// ErrDisabled: the instance's notifications are "none".
var ErrDisabled = errors.New("HMC notifications are off (notifications: none)")

// Options configure a Notifier. Zero fields take the defaults.
type Options struct {
	// Poller is the instance's HMC poller: the session to log in with and
	// to follow. Required.
	Poller *hmcpoll.Poller
	// Hinter receives hints and reconcile requests. Required.
	Hinter Hinter
	// Watches lists watches for their notifyTopic; default Hinter when it
	// is a WatchLister too.
	Watches WatchLister
	// Marker, when set (the *ViaPoller the bridge polls through), makes a
	// hinted poll report detectedBy stomp or sse.
	Marker Marker
	// Vendor and Instance name the watched jobs; Vendor defaults to "hmc".
	Vendor, Instance string
	// Mode is stomp or sse; default the poller's configured mode.
	Mode hmcpoll.NotificationMode

	// STOMPAddr is the broker's host:port; default the poller's host and
	// STOMP port (61612).
	STOMPAddr string
	// TLS for the broker and the SSE stream (pollkit.TLSConfig builds it
	// from the instance's tls section); nil verifies against the system
	// roots. ServerName defaults to the host.
	TLS *tls.Config
	// PlainSTOMP speaks STOMP without TLS (61613, where the HMC is set up
	// for it, or a test broker).
	PlainSTOMP bool
	// STOMPHost is the CONNECT frame's host header; default the broker's
	// host name (ActiveMQ ignores it; RabbitMQ reads it as the virtual
	// host, "/").
	STOMPHost string
	// Login is session (default) or password; UserID and Password are for
	// password.
	Login    LoginMode
	UserID   string
	Password bridge.Secret
	// HeartBeat is asked for both ways (default 5s; 5000,5000 as zhmcclient).
	HeartBeat time.Duration
	// WatchPoll is how often the watches are read for topics to subscribe
	// to (default 5s).
	WatchPoll time.Duration

	// BaseURL is the Web Services API root (https://host:6794), for SSE.
	BaseURL string
	// SSEIdleTimeout reconnects an SSE stream silent this long (no event,
	// no keep-alive comment); 0 leaves it to TCP keepalive, since whether
	// the HMC sends keep-alives is not documented.
	SSEIdleTimeout time.Duration
	// MaxEventBytes caps one SSE event (default 1 MiB; the 64 KiB default
	// of bufio would drop large events).
	MaxEventBytes int

	// Backoff paces reconnects (default 500ms doubling to 30s, jittered).
	Backoff backoff.Policy
	// DegradedInterval: while the channel is down, every tracked job is
	// polled this often (default 30s), so an outage of the push channel
	// does not leave jobs to the safety interval alone.
	DegradedInterval time.Duration
	// SafetyInterval is the poll interval of HMC jobs between
	// notifications (default 5m); see InstanceInterval.
	SafetyInterval time.Duration
	// ConnectTimeout bounds dial, TLS, login and stream creation (15s);
	// ReceiptTimeout bounds the wait for a SUBSCRIBE receipt (10s).
	ConnectTimeout time.Duration
	ReceiptTimeout time.Duration

	Logger zerolog.Logger
	// Registerer receives the metrics (nil: not registered). Several
	// notifiers may share one.
	Registerer prometheus.Registerer
}

// InstanceInterval is the poll interval to give the HMC instance
// (bridge.Instance.Interval) for a notification mode: the safety interval
// (default DefaultSafetyInterval) when a push channel carries completions,
// 0 (keep the configured interval) for none.
func InstanceInterval(mode hmcpoll.NotificationMode, safety time.Duration) time.Duration {
	if mode != hmcpoll.NotifySTOMP && mode != hmcpoll.NotifySSE {
		return 0
	}
	if safety <= 0 {
		return DefaultSafetyInterval
	}
	return safety
}

// Status is a snapshot of the notifier, for tests and diagnostics.
type Status struct {
	Mode      hmcpoll.NotificationMode
	Connected bool
	// Topics are the live subscriptions (STOMP); Refused the topics the
	// broker refused, which are not tried again.
	Topics  []string
	Refused []string
	// Connects counts established connections (the first included),
	// Reconciles the reconcile requests, Notifications the job-completion
	// messages, UnknownJobs those that named no watched job.
	Connects, Reconciles, Notifications, UnknownJobs int
	// SessionGeneration is the poller session the channel is logged in with.
	SessionGeneration uint64
	LastError         string
}

// Notifier runs one HMC instance's push channel.
type Notifier struct {
	opts    Options
	log     zerolog.Logger
	poller  *hmcpoll.Poller
	hinter  Hinter
	watches WatchLister
	via     bridge.Detection
	m       *metrics

	done chan struct{}
	err  error
	stop context.CancelFunc
	sse  sseState // the reconnect loop's own

	mu            sync.Mutex
	status        Status
	refused       map[string]bool
	lastReconcile time.Time
}

// New checks opts and builds a Notifier; Run starts it. Mode none gives
// ErrDisabled.
func New(opts Options) (*Notifier, error) {
	if opts.Poller == nil {
		return nil, errors.New("hmc notifier: Options.Poller is required")
	}
	if opts.Hinter == nil {
		return nil, errors.New("hmc notifier: Options.Hinter is required (the bridge)")
	}
	if opts.Vendor == "" {
		opts.Vendor = hmcpoll.Vendor
	}
	if err := bridge.ValidateName("instance", opts.Instance); err != nil {
		return nil, fmt.Errorf("hmc notifier: %w", err)
	}
	cfg := opts.Poller.Notifications()
	if opts.Mode == "" {
		opts.Mode = cfg.Mode
	}
	mode, err := hmcpoll.ParseNotificationMode(string(opts.Mode))
	if err != nil {
		return nil, fmt.Errorf("hmc notifier %s: %w", opts.Instance, err)
	}
	opts.Mode = mode
	if mode == hmcpoll.NotifyNone {
		return nil, ErrDisabled
	}
	if opts.Watches == nil {
		opts.Watches, _ = opts.Hinter.(WatchLister)
	}
	if opts.STOMPAddr == "" {
		opts.STOMPAddr = net.JoinHostPort(cfg.Host, strconv.Itoa(cfg.STOMPPort))
	}
	if opts.STOMPHost == "" {
		opts.STOMPHost = hostOf(opts.STOMPAddr)
	}
	switch opts.Login {
	case "":
		opts.Login = LoginSession
	case LoginSession:
	case LoginPassword:
		if opts.UserID == "" || opts.Password.IsZero() {
			return nil, fmt.Errorf("hmc notifier %s: login %q needs UserID and Password", opts.Instance, opts.Login)
		}
	default:
		return nil, fmt.Errorf("hmc notifier %s: login %q: want session or password", opts.Instance, opts.Login)
	}
	if mode == hmcpoll.NotifySSE && opts.BaseURL == "" {
		return nil, fmt.Errorf("hmc notifier %s: SSE needs BaseURL, the Web Services API root (https://host:6794)", opts.Instance)
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&opts.HeartBeat, DefaultHeartBeat)
	def(&opts.WatchPoll, DefaultWatchPoll)
	def(&opts.DegradedInterval, DefaultDegradedInterval)
	def(&opts.SafetyInterval, DefaultSafetyInterval)
	def(&opts.ConnectTimeout, DefaultConnectTimeout)
	def(&opts.ReceiptTimeout, DefaultReceiptTimeout)
	if opts.MaxEventBytes <= 0 {
		opts.MaxEventBytes = DefaultMaxEventBytes
	}
	if opts.Backoff.Initial <= 0 {
		opts.Backoff = backoff.Policy{Initial: 500 * time.Millisecond, Max: 30 * time.Second}
	}
	n := &Notifier{
		opts: opts, poller: opts.Poller, hinter: opts.Hinter, watches: opts.Watches,
		log:     opts.Logger.With().Str("vendor", opts.Vendor).Str("instance", opts.Instance).Str("notifications", string(mode)).Logger(),
		refused: make(map[string]bool),
		done:    make(chan struct{}),
		status:  Status{Mode: mode},
	}
	n.via = bridge.DetectedBySTOMP
	if mode == hmcpoll.NotifySSE {
		n.via = bridge.DetectedBySSE
	}
	n.m, err = newMetrics(opts.Registerer, opts.Instance, string(mode))
	if err != nil {
		return nil, fmt.Errorf("hmc notifier %s: metrics: %w", opts.Instance, err)
	}
	return n, nil
}

// Start builds a Notifier and runs it until ctx ends; Wait waits for that.
func Start(ctx context.Context, opts Options) (*Notifier, error) {
	n, err := New(opts)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	n.stop = cancel
	go n.Run(ctx) //nolint:errcheck // Wait returns it
	return n, nil
}

// Stop ends a started Notifier and waits for it.
func (n *Notifier) Stop() error {
	if n.stop != nil {
		n.stop()
	}
	return n.Wait()
}

// Wait waits until Run has returned and returns its error.
func (n *Notifier) Wait() error {
	<-n.done
	return n.err
}

// InstanceInterval is the poll interval this notifier's instance should
// have (see the package function).
func (n *Notifier) InstanceInterval() time.Duration {
	return InstanceInterval(n.opts.Mode, n.opts.SafetyInterval)
}

// Status returns a snapshot.
func (n *Notifier) Status() Status {
	n.mu.Lock()
	defer n.mu.Unlock()
	s := n.status
	s.Topics = append([]string(nil), s.Topics...)
	for t := range n.refused {
		s.Refused = append(s.Refused, t)
	}
	return s
}

// Run keeps the push channel up until ctx ends, reconnecting with backoff,
// following session renewals and reconciling after each (re)connect. It
// returns nil when ctx ends; a Notifier runs once.
func (n *Notifier) Run(ctx context.Context) (err error) {
	defer func() {
		n.setConnected(false)
		n.err = err
		close(n.done)
	}()
	n.log.Info().Str("safety_interval", n.opts.SafetyInterval.String()).Msg("HMC push notifications starting")
	switch n.opts.Mode {
	case hmcpoll.NotifySSE:
		n.loop(ctx, n.sseConnection)
		if n.sse.client != nil {
			n.sse.client.CloseIdleConnections()
		}
	default:
		n.loop(ctx, n.stompConnection)
	}
	return nil
}

// connectionFunc runs one connection with one session until it fails, the
// session changes or ctx ends. up is set once the channel is live (so the
// next failure starts backoff over).
type connectionFunc func(ctx context.Context, sess hmcpoll.Session, sessCh <-chan hmcpoll.Session, up *bool) error

// sessionChanged: the poller logged on again (new credentials and topics)
// or off (Next is zero).
type sessionChanged struct{ Next hmcpoll.Session }

func (e *sessionChanged) Error() string { return "the HMC API session changed" }

// errRenew: the broker or the HMC says the session is no longer valid;
// log on again.
var errRenew = errors.New("the HMC refused the API session")

// loop is the reconnect loop shared by both channels.
func (n *Notifier) loop(ctx context.Context, conn connectionFunc) {
	sessCh, cancel := n.poller.SubscribeSession()
	defer cancel()
	var sess hmcpoll.Session
	attempt := 0
	for ctx.Err() == nil {
		if !sess.Active() {
			s, err := n.poller.EnsureSession(ctx)
			if err != nil {
				n.failed(ctx, err, &attempt, sessCh)
				continue
			}
			sess = s
		}
		sess = newest(sess, sessCh)
		up := false
		err := conn(ctx, sess, sessCh, &up)
		if ctx.Err() != nil {
			return
		}
		if up {
			attempt = 0
		}
		var sc *sessionChanged
		switch {
		case errors.As(err, &sc):
			n.log.Info().Uint64("generation", sc.Next.Generation).Msg("HMC session changed; reconnecting with the new session and topics")
			sess = sc.Next
			if !sess.Active() {
				// Logged off (the poller is closing, or Close was called):
				// wait for the next logon rather than logging on here.
				select {
				case <-ctx.Done():
					return
				case s, ok := <-sessCh:
					if !ok {
						return
					}
					sess = s
				case <-time.After(n.opts.Backoff.Max):
				}
			}
			continue
		case errors.Is(err, errRenew):
			n.log.Warn().Err(err).Msg("logging on to the HMC again for a new session")
			s, rerr := n.poller.RenewSession(ctx, sess)
			if rerr != nil {
				n.failed(ctx, fmt.Errorf("%v; and logging on again failed: %w", err, rerr), &attempt, sessCh)
				sess = hmcpoll.Session{}
				continue
			}
			sess = s
			if !up {
				n.failed(ctx, err, &attempt, sessCh)
			}
			continue
		}
		n.failed(ctx, err, &attempt, sessCh)
	}
}

// newest returns the latest session the poller announced, or cur.
func newest(cur hmcpoll.Session, ch <-chan hmcpoll.Session) hmcpoll.Session {
	select {
	case s, ok := <-ch:
		if ok && s.Active() {
			return s
		}
	default:
	}
	return cur
}

// failed records a failure and waits out the backoff, reconciling while the
// channel stays down.
func (n *Notifier) failed(ctx context.Context, err error, attempt *int, sessCh <-chan hmcpoll.Session) {
	n.setConnected(false)
	if err != nil {
		n.mu.Lock()
		n.status.LastError = err.Error()
		n.mu.Unlock()
		ev := n.log.Warn()
		if *attempt > 0 {
			ev = n.log.Debug()
		}
		ev.Err(err).Int("attempt", *attempt+1).Msg("HMC push channel down; polling covers the gap, reconnecting with backoff")
	}
	d := n.opts.Backoff.Delay(*attempt)
	*attempt++
	n.m.reconnects.Inc()
	n.mu.Lock()
	stale := time.Since(n.lastReconcile) >= n.opts.DegradedInterval
	n.mu.Unlock()
	if stale {
		n.reconcile("push channel down")
	}
	_ = backoff.Sleep(ctx, d)
}

func (n *Notifier) setConnected(up bool) {
	n.mu.Lock()
	n.status.Connected = up
	if !up {
		n.status.Topics = nil
	}
	n.mu.Unlock()
	if up {
		n.m.connected.Set(1)
	} else {
		n.m.connected.Set(0)
	}
}

func (n *Notifier) connectedWith(sess hmcpoll.Session) {
	n.mu.Lock()
	n.status.Connects++
	n.status.SessionGeneration = sess.Generation
	n.mu.Unlock()
	n.setConnected(true)
}

// reconcile asks the bridge to poll every tracked job of the instance.
func (n *Notifier) reconcile(why string) {
	count := n.hinter.Reconcile(n.opts.Vendor, n.opts.Instance)
	n.mu.Lock()
	n.status.Reconciles++
	n.lastReconcile = time.Now()
	n.mu.Unlock()
	n.m.reconciles.Inc()
	n.log.Info().Int("jobs", count).Str("why", why).Msg("reconciling: polling every tracked HMC job, since the HMC replays no missed notification")
}

// hint passes a notification's job on, with this session's channel when
// the hinter can carry it.
func (n *Notifier) hint(ref bridge.JobRef) bool {
	if vh, ok := n.hinter.(ViaHinter); ok {
		return vh.HintVia(ref, n.via)
	}
	return n.hinter.Hint(ref)
}

// handle turns a job-completion into a hint.
func (n *Notifier) handle(c completion) {
	n.m.notifications.WithLabelValues(typeJobCompletion).Inc()
	n.mu.Lock()
	n.status.Notifications++
	n.mu.Unlock()
	if c.BadSeq != "" {
		n.log.Debug().Str("job_uri", c.JobURI).Str("bad", c.BadSeq).Msg("job-completion with an unreadable sequence number; hinting anyway")
	}
	// A watch names the job by its id or by its whole job-uri.
	for _, id := range []string{c.JobID, c.JobURI} {
		ref := bridge.JobRef{Vendor: n.opts.Vendor, Instance: n.opts.Instance, ID: id}
		if n.opts.Marker != nil {
			n.opts.Marker.Mark(ref, n.via)
		}
		if n.hint(ref) {
			return
		}
		if n.opts.Marker != nil {
			n.opts.Marker.Unmark(ref)
		}
	}
	n.m.unknown.Inc()
	n.mu.Lock()
	n.status.UnknownJobs++
	n.mu.Unlock()
	n.log.Debug().Str("job_uri", c.JobURI).Int64("global_seq", c.GlobalSeq).Int64("session_seq", c.SessionSeq).
		Msg("job-completion for a job nobody watches; ignored")
}

// watchTopics returns the notifyTopic of every watch and the watches of
// each, refused topics left out.
func (n *Notifier) watchTopics() map[string][]string {
	if n.watches == nil {
		return nil
	}
	out := map[string][]string{}
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, w := range n.watches.WatchesOf(n.opts.Vendor, n.opts.Instance) {
		t := normalizeTopic(w.VendorOptions[NotifyTopicOption])
		if t == "" || n.refused[t] {
			continue
		}
		out[t] = append(out[t], w.Job)
	}
	return out
}

// normalizeTopic accepts a topic name with or without /topic/.
func normalizeTopic(t string) string {
	return strings.TrimPrefix(strings.TrimSpace(t), "/topic/")
}

// refuse drops a topic for good and reports it once.
func (n *Notifier) refuse(topic string, err error) {
	n.mu.Lock()
	already := n.refused[topic]
	n.refused[topic] = true
	n.mu.Unlock()
	if already {
		return
	}
	n.m.refused.Inc()
	n.log.Error().Err(err).Str("topic", topic).
		Msg("the HMC refused a notification topic (unknown or unapproved: its session has probably ended); it is dropped and not retried, and the jobs it would have announced are polled at the safety interval")
}
