// Package hmc owns the IBM Z HMC Web Services API poller: one long-lived API
// session per HMC (Logon, X-API-Session on every request, one re-logon on
// HTTP 403 reason 4 or 5, Logoff on Close), Query Job Status
// (GET /api/jobs/{job-id}) and its mapping to the canonical states, where
// success lives in job-status-code rather than in the status, and the
// optional Delete Completed Job Status after a job's terminal event.
// Vendor facts: shared/reference/hmc-notifications.md §1 and §5,
// vendor-apis.md §5.
//
// The push notifiers (STOMP, SSE) build on this package: Session,
// SubscribeSession, EnsureSession and RenewSession expose the session's
// credentials and topic names, which change at every logon, and
// Notifications says what the configuration asked for. HTTP, retries, TLS
// and session renewal are package pollkit's.
package hmc

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/jobbridge/jobbridge/bridge"
	"github.com/jobbridge/jobbridge/pollers/pollkit"
)

// Vendor is the vendor name in JobRefs and subjects.
const Vendor = "hmc"

// DefaultSTOMPPort is the HMC's STOMP-over-TLS port.
const DefaultSTOMPPort = 61612

// NotificationMode says how job completion is pushed, besides polling.
type NotificationMode string

// Notification modes.
const (
	// NotifyNone: polling only.
	NotifyNone NotificationMode = "none"
	// NotifySTOMP: JMS messages over STOMP on Notifications.STOMPPort.
	NotifySTOMP NotificationMode = "stomp"
	// NotifySSE: Server-Sent Events on the API port (HMC 2.16 and later).
	NotifySSE NotificationMode = "sse"
)

// ParseNotificationMode reads a configured mode; empty means NotifyNone.
func ParseNotificationMode(s string) (NotificationMode, error) {
	switch m := NotificationMode(strings.ToLower(strings.TrimSpace(s))); m {
	case "":
		return NotifyNone, nil
	case NotifyNone, NotifySTOMP, NotifySSE:
		return m, nil
	}
	return "", fmt.Errorf("notifications %q: want stomp, sse or none", s)
}

// Notifications is the push configuration, for the notifiers.
type Notifications struct {
	Mode NotificationMode
	// Host is the HMC's host name from the URL, where the STOMP broker runs.
	Host string
	// STOMPPort is the broker's port.
	STOMPPort int
}

// Options configure a Poller.
type Options struct {
	// Instance names this HMC in configuration, logs and errors.
	Instance string
	// BaseURL is the Web Services API root, e.g. https://hmc.example.com:6794.
	// It overrides HTTP.BaseURL.
	BaseURL string
	// UserID and Password are the HMC user that owns the jobs: an HMC job
	// belongs to the API user that started it, and other users get 404.
	UserID   string
	Password bridge.Secret
	// HTTP configures TLS, timeouts, retries and limits. Its Logger is
	// replaced by Logger.
	HTTP pollkit.ClientOptions
	// Logger receives warnings and debug notes; never a secret.
	Logger zerolog.Logger
	// DeleteCompleted makes OnTerminal delete a job's status once its
	// terminal event is acknowledged. Off by default: the job may belong to
	// someone else's workflow that still wants to read its results.
	DeleteCompleted bool
	// Notifications and STOMPPort are decoded for the notifiers (default
	// none and DefaultSTOMPPort); the poller itself only polls.
	Notifications NotificationMode
	STOMPPort     int
	// Now stamps ObservedAt and logons; nil means time.Now.
	Now func() time.Time
}

// Poller polls one HMC. It keeps one API session for all polls, logs on
// again once when a call gets 403 reason 4 or 5, and is safe for concurrent
// use. It implements bridge.Poller and bridge.Closer.
type Poller struct {
	instance        string
	userid          string
	password        bridge.Secret
	client          *pollkit.Client
	auth            *pollkit.TokenSource
	now             func() time.Time
	log             zerolog.Logger
	deleteCompleted bool
	notify          Notifications
	ended           *endedMemo

	smu     sync.Mutex
	sess    Session
	gen     uint64
	subs    map[int]chan Session
	nextSub int
}

var (
	_ bridge.Poller = (*Poller)(nil)
	_ bridge.Closer = (*Poller)(nil)
)

// New checks opts and builds a Poller. It does not contact the HMC: the
// first Poll (or EnsureSession) logs on.
func New(opts Options) (*Poller, error) {
	if err := bridge.ValidateName("instance", opts.Instance); err != nil {
		return nil, fmt.Errorf("hmc: %w", err)
	}
	if opts.BaseURL != "" {
		opts.HTTP.BaseURL = opts.BaseURL
	}
	host, err := checkBaseURL(opts.HTTP.BaseURL)
	if err != nil {
		return nil, fmt.Errorf("hmc %s: %w", opts.Instance, err)
	}
	if opts.UserID == "" || opts.Password.IsZero() {
		return nil, fmt.Errorf("hmc %s: the HMC userid and password are both required", opts.Instance)
	}
	mode, err := ParseNotificationMode(string(opts.Notifications))
	if err != nil {
		return nil, fmt.Errorf("hmc %s: %w", opts.Instance, err)
	}
	if opts.STOMPPort == 0 {
		opts.STOMPPort = DefaultSTOMPPort
	}
	if opts.STOMPPort < 1 || opts.STOMPPort > 65535 {
		return nil, fmt.Errorf("hmc %s: STOMP port %d is not a TCP port (1-65535; the HMC's is %d)", opts.Instance, opts.STOMPPort, DefaultSTOMPPort)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	log := opts.Logger.With().Str("vendor", Vendor).Str("instance", opts.Instance).Logger()
	opts.HTTP.Logger = log
	client, err := pollkit.NewClient(opts.HTTP)
	if err != nil {
		return nil, fmt.Errorf("hmc %s: %w", opts.Instance, err)
	}
	p := &Poller{
		instance:        opts.Instance,
		userid:          opts.UserID,
		password:        opts.Password,
		client:          client,
		now:             opts.Now,
		log:             log,
		deleteCompleted: opts.DeleteCompleted,
		notify:          Notifications{Mode: mode, Host: host, STOMPPort: opts.STOMPPort},
		ended:           newEndedMemo(endedMemoMax, endedMemoTTL),
		subs:            make(map[int]chan Session),
	}
	p.auth, err = pollkit.NewTokenSource(pollkit.TokenSourceOptions{
		Name:          fmt.Sprintf("hmc/%s user %s", opts.Instance, opts.UserID),
		Login:         p.logon,
		Apply:         pollkit.ApplyHeader(SessionHeader, ""),
		IsAuthFailure: isSessionFailure,
		Logger:        log,
	})
	if err != nil {
		return nil, err
	}
	return p, nil
}

// checkBaseURL returns the host of the API root and refuses a URL that
// already ends in /api, since every request path starts with it.
func checkBaseURL(s string) (string, error) {
	u, err := url.Parse(s)
	if err != nil {
		return "", nil // pollkit.NewClient explains what is wrong with it
	}
	if p := strings.TrimRight(u.Path, "/"); p == "/api" || strings.HasSuffix(p, "/api") {
		return "", fmt.Errorf("URL %q ends in /api: give the Web Services API root instead, e.g. https://hmc.example.com:6794", u.Redacted())
	}
	return u.Hostname(), nil
}

// Notifications returns the push configuration for the notifiers.
func (p *Poller) Notifications() Notifications { return p.notify }

// JobURI is the job-uri of a job id, as async operations return it and
// job-completion messages carry it.
func JobURI(id string) string { return jobURIPrefix + pollkit.EscapePathSegment(id) }

const jobURIPrefix = "/api/jobs/"

// JobIDFromURI returns the job id of a job-uri (/api/jobs/{job-id}), for a
// notifier that must name the watched job in a hint.
func JobIDFromURI(uri string) (string, bool) {
	rest, ok := strings.CutPrefix(uri, jobURIPrefix)
	if !ok || rest == "" || strings.Contains(rest, "/") {
		return "", false
	}
	id, err := url.PathUnescape(rest)
	if err != nil {
		return "", false
	}
	return id, true
}

// Poll runs Query Job Status (GET /api/jobs/{job-id}). The job id is the
// last segment of the job-uri; a whole job-uri is accepted too. Errors wrap
// bridge.ErrNotFound (404 reason 1: not this user's job, deleted, or past
// the retention interval), bridge.ErrMalformed (no usable status) or
// bridge.ErrAuth. A job whose status this poller deleted after its terminal
// event answers with the terminal observation it had then: it has not
// vanished, jobbridge removed it on purpose.
func (p *Poller) Poll(ctx context.Context, job bridge.JobRef) (bridge.Observation, error) {
	if err := bridge.ValidateJobID(job.ID); err != nil {
		return bridge.Observation{}, fmt.Errorf("hmc %s: %w", p.instance, err)
	}
	id := job.ID
	if fromURI, ok := JobIDFromURI(id); ok {
		id = fromURI
	}
	if obs, ok := p.ended.deleted(id); ok {
		obs.Job = job
		return obs, nil
	}
	resp, err := p.client.Do(ctx, pollkit.Request{Path: JobURI(id), Auth: p.auth})
	if err != nil {
		return bridge.Observation{}, fmt.Errorf("hmc %s: job %q: %w", p.instance, job.ID, err)
	}
	if resp.StatusCode != http.StatusOK {
		return bridge.Observation{}, p.statusError(job.ID, resp)
	}
	obs, err := buildObservation(job, resp.Body, p.now())
	if err != nil {
		return bridge.Observation{}, fmt.Errorf("hmc %s: job %q: %w", p.instance, job.ID, err)
	}
	if p.deleteCompleted && obs.State.Terminal() {
		p.ended.put(id, obs, p.now())
	}
	return obs, nil
}

// statusError explains a non-200 answer to Query Job Status.
func (p *Poller) statusError(id string, resp *pollkit.Response) error {
	e, isHMC := parseAPIError(resp.Body)
	switch {
	case resp.StatusCode == http.StatusNotFound && isHMC && e.Reason == reasonNoSuchJob:
		return fmt.Errorf("%w: HMC %s has no job %q for user %q (%s): it was never this user's job, its status was deleted, or it ended more than the retention interval (at least 4 hours) ago",
			bridge.ErrNotFound, p.instance, id, p.userid, e.describe(resp.StatusCode))
	case resp.StatusCode == http.StatusNotFound && !isHMC:
		return fmt.Errorf("hmc %s: job %q: HTTP 404 without the HMC's error body: check that the URL is the HMC's Web Services API root (https://host:6794), not a proxy: %w",
			p.instance, id, pollkit.UnexpectedStatus(resp))
	case resp.StatusCode == http.StatusForbidden:
		what := "HTTP 403"
		if isHMC {
			what = e.describe(resp.StatusCode)
		}
		return fmt.Errorf("%w: HMC %s refused Query Job Status of job %q for user %q (%s): check the user's authority on the HMC",
			bridge.ErrAuth, p.instance, id, p.userid, what)
	case isHMC:
		return fmt.Errorf("hmc %s: job %q: %s: %w", p.instance, id, e.describe(resp.StatusCode), pollkit.UnexpectedStatus(resp))
	}
	return fmt.Errorf("hmc %s: job %q: %w", p.instance, id, pollkit.UnexpectedStatus(resp))
}

// Close logs off (DELETE /api/sessions/this-session) when a session is open
// and tells session subscribers there is none. A 403 means the session had
// ended already, which is fine. A later Poll logs on again.
func (p *Poller) Close(ctx context.Context) error {
	defer p.client.CloseIdleConnections()
	tok, ok := p.auth.Forget()
	if !ok {
		return nil
	}
	p.clearSession(tok.Value)
	if err := p.logoff(ctx, tok.Value); err != nil {
		return err
	}
	p.log.Debug().Msg("logged off the HMC")
	return nil
}
